//! What the `berth` process tests share.

use std::{
    net::TcpListener,
    process::Child,
    time::{Duration, Instant},
};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 30 s for a `berth serve` process to be `serving`; panics with its log (`log`
/// reads it) if it exits or never gets there.
pub fn wait_until_serving(
    child: &mut Child,
    log: impl Fn() -> String,
    mut serving: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !serving() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("berth serve exited with {status}; log: {}", log());
        }
        assert!(
            Instant::now() < deadline,
            "berth serve did not get there within 30 s; log: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! A throwaway `redis-server` for tests: its own port and directory, nothing saved, killed on
//! drop. Unit tests use it directly; integration tests (crates/berth-server/tests/) reach it
//! through the `testing` feature.

use std::{
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Keeps an append-only file, synced at every write, so a stop and start loses nothing.
    persistent: bool,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it accepts connections.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not start within 10 s.
    pub fn start() -> Self {
        Self::started(false)
    }

    /// [`Self::start`], with an append-only file synced at every write: a restart keeps what
    /// it held, as a production Redis would.
    pub fn start_persistent() -> Self {
        Self::started(true)
    }

    fn started(persistent: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = Self {
            port,
            dir,
            child: None,
            persistent,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Wipes everything it holds, as `FLUSHALL` does.
    pub fn flush_all(&self) {
        let flushed = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "FLUSHALL"])
            .output()
            .expect("redis-cli runs (it comes with redis-server)");
        assert!(flushed.status.success(), "FLUSHALL failed: {flushed:?}");
    }

    /// Kills the server and waits for it to exit; unless persistent, its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs).
    pub fn restart(&mut self) {
        self.stop();
        let child = spawn(self.port, self.dir.path(), self.persistent);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(port: u16, dir: &Path, persistent: bool) -> Child {
    let appendonly: &[&str] = if persistent {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args(["--save", "", "--daemonize", "no"])
        .args(appendonly)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server starts (install the redis-server package)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

//! Ports the session's Docker containers publish into it (`docker run -p 8080:80`): the
//! control plane lists them in a file of the session's Docker directory
//! ([`berth_proto::docker::PORT_RELAYS_FILE`]), and the agent listens on each and relays every
//! connection to its container. Nothing is published on the host: the port is the session's
//! own, so `localhost:8080` in the session reaches it, and so does the preview, which finds it
//! listening as it finds any server the session runs.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use berth_proto::docker::PortRelay;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// How often the file is read again: a container that starts is reachable within this.
const POLL: Duration = Duration::from_millis(100);

/// Follows the file until the process ends. Sessions without Docker have no such directory:
/// nothing is spawned.
pub fn spawn() -> Option<JoinHandle<()>> {
    let dir = PathBuf::from(berth_proto::docker::DIR_IN_SESSION);
    if !dir.is_dir() {
        return None;
    }
    let file = dir.join(berth_proto::docker::PORT_RELAYS_FILE);
    Some(tokio::spawn(follow(file)))
}

async fn follow(file: PathBuf) {
    let mut relays = Relays::default();
    let mut last: Option<Vec<u8>> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let text = tokio::fs::read(&file).await.unwrap_or_default();
        // A port whose listener could not bind (a session process holds it) is tried again
        // at every read, not only when the file changes.
        if last.as_ref() == Some(&text) && relays.all_bound() {
            continue;
        }
        let wanted: Vec<PortRelay> = if text.is_empty() {
            Vec::new()
        } else {
            match serde_json::from_slice(&text) {
                Ok(wanted) => wanted,
                Err(err) => {
                    eprintln!("berth-agent: {}: {err}", file.display());
                    last = Some(text);
                    continue;
                }
            }
        };
        relays.set(&wanted).await;
        last = Some(text);
    }
}

/// The relays listening now, by the session's port.
#[derive(Default)]
struct Relays {
    open: BTreeMap<u16, Relay>,
    unbound: usize,
}

struct Relay {
    /// Where the next connection goes: a container started again at another address keeps its
    /// listener, so the port never closes in between.
    target: Arc<RwLock<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relays {
    fn all_bound(&self) -> bool {
        self.unbound == 0
    }

    /// Listens on every wanted port, stops listening on the others, and points each at its
    /// target.
    async fn set(&mut self, wanted: &[PortRelay]) {
        self.open
            .retain(|port, _| wanted.iter().any(|w| w.port == *port));
        self.unbound = 0;
        for relay in wanted {
            if let Some(open) = self.open.get(&relay.port) {
                *open.target.write().unwrap_or_else(|e| e.into_inner()) = relay.target;
                continue;
            }
            match TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], relay.port))).await {
                Ok(listener) => {
                    let target = Arc::new(RwLock::new(relay.target));
                    let task = tokio::spawn(accept(listener, target.clone()));
                    self.open.insert(relay.port, Relay { target, task });
                }
                Err(err) => {
                    self.unbound += 1;
                    eprintln!(
                        "berth-agent: cannot publish port {} of a docker container: {err}",
                        relay.port
                    );
                }
            }
        }
    }
}

async fn accept(listener: TcpListener, target: Arc<RwLock<SocketAddr>>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(POLL).await;
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let target = *target.read().unwrap_or_else(|e| e.into_inner());
        tokio::spawn(async move {
            // A container not listening (yet, or any more) closes the connection, as a port
            // nothing listens on would.
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn free_port() -> u16 {
        let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    async fn round_trip(port: u16) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"ping").await?;
        let mut answer = vec![0; 4];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn a_listed_port_relays_to_its_target_until_it_is_no_longer_listed() {
        let target = echo_server().await;
        let port = free_port().await;
        let mut relays = Relays::default();
        relays.set(&[PortRelay { port, target }]).await;
        assert!(relays.all_bound());
        assert_eq!(round_trip(port).await.unwrap(), b"ping");

        // Moved: the container started again at another address.
        let moved = echo_server().await;
        relays
            .set(&[PortRelay {
                port,
                target: moved,
            }])
            .await;
        assert_eq!(*relays.open[&port].target.read().unwrap(), moved);
        assert_eq!(round_trip(port).await.unwrap(), b"ping");

        relays.set(&[]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(("127.0.0.1", port)).await.is_err(),
            "no longer listed: nothing listens"
        );
    }

    #[tokio::test]
    async fn a_port_the_session_holds_is_reported_unbound_and_others_still_relay() {
        let held = TcpListener::bind("0.0.0.0:0").await.unwrap();
        let held_port = held.local_addr().unwrap().port();
        let target = echo_server().await;
        let port = free_port().await;
        let wanted = [
            PortRelay {
                port: held_port,
                target,
            },
            PortRelay { port, target },
        ];
        let mut relays = Relays::default();
        relays.set(&wanted).await;
        assert!(!relays.all_bound());
        assert_eq!(round_trip(port).await.unwrap(), b"ping");
        drop(held);
        relays.set(&wanted).await;
        assert!(relays.all_bound(), "bound once the session let go of it");
        assert_eq!(round_trip(held_port).await.unwrap(), b"ping");
    }
}

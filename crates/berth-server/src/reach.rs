//! How the control plane reaches a container's address: directly when the container is on this
//! host's engine, through its node's relay (`berth-node`) when it runs on another node of a
//! swarm.
//!
//! Every connection to a session (agent calls, terminals, previews) starts at [`dial`], which
//! looks the address up in one process-wide table of node subnets, as the kernel looks up its
//! routing table: a container's address is unique in the cluster (each node's engine hands out
//! addresses from pools of its own), so the address alone says which relay reaches it. Addresses
//! no node claims are dialled directly, which is the single-host case; on a swarm
//! ([`relays_only`]) they are refused, since the host's own routes would carry them elsewhere.
//!
//! The relay speaks TLS ([`crate::relay_tls`]), then HTTP `CONNECT` with the node key
//! ([`node_key`]) in [`KEY_HEADER`]; after its `200` the stream is the container's.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper::Uri;
use hyper_util::{
    client::legacy::connect::{Connected, Connection},
    rt::TokioIo,
};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::{
    networks::Cidr,
    relay_tls::{self, RelayTlsError},
};

/// The header that carries [`node_key`] to a node's relay.
pub const KEY_HEADER: &str = "x-berth-node-key";

/// Where `berth-node` listens unless told otherwise.
pub const DEFAULT_RELAY_PORT: u16 = 7700;

/// A relay's answer head is a status line and a few headers; anything longer is not a relay.
const MAX_ANSWER_HEAD: usize = 4096;

/// The key control planes present to nodes' relays: derived from the admin secret they share,
/// so it needs no configuration of its own, and never the secret itself.
pub fn node_key(admin_secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"berth node key v1\0");
    hasher.update(admin_secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// What a control plane needs to use relays: the key it presents and the TLS it checks them by,
/// both derived from the admin secret.
#[derive(Clone)]
pub struct RelayAccess {
    key: Arc<str>,
    tls: TlsConnector,
}

impl std::fmt::Debug for RelayAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayAccess")
    }
}

impl RelayAccess {
    pub fn new(admin_secret: &str) -> Result<Self, RelayTlsError> {
        Ok(Self {
            key: node_key(admin_secret).into(),
            tls: TlsConnector::from(relay_tls::client_config(admin_secret)?),
        })
    }

    /// The key, as relays expect it in [`KEY_HEADER`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// An encrypted stream to the relay at `relay`, its certificate checked.
    pub async fn open(&self, relay: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
        let stream = TcpStream::connect(relay).await?;
        stream.set_nodelay(true)?;
        self.tls
            .connect(relay_tls::server_name(), stream)
            .await
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("{relay} is not a relay of this cluster: {err} (do its berth-node and this control plane share the admin token?)"),
                )
            })
    }
}

/// One node's container subnets and the relay in front of them.
#[derive(Debug, Clone)]
pub struct NodeRoute {
    pub node: String,
    pub subnets: Vec<Cidr>,
    pub relay: SocketAddr,
    pub access: RelayAccess,
}

static ROUTES: RwLock<Vec<NodeRoute>> = RwLock::new(Vec::new());

static RELAYS_ONLY: AtomicBool = AtomicBool::new(false);

/// Every container is on a swarm node from now on: an address no node claims yet (its node's
/// relay has not been reached since this process started) is refused rather than dialled,
/// since the host's default route would take it off this machine, and a pooled connection
/// to whatever answered there would outlive the node's return.
pub fn relays_only() {
    RELAYS_ONLY.store(true, Ordering::Relaxed);
}

/// Sets `route.node`'s subnets and relay, replacing what was known of that node. Refused when
/// a subnet overlaps another node's: an address would then not say which node holds it.
pub fn set_route(route: NodeRoute) -> Result<(), String> {
    let mut routes = ROUTES
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for known in routes.iter().filter(|known| known.node != route.node) {
        for ours in &route.subnets {
            if let Some(theirs) = known.subnets.iter().find(|theirs| theirs.overlaps(ours)) {
                return Err(format!(
                    "node {}'s session network {ours} overlaps node {}'s {theirs}; give each \
                     node's engine address pools of its own (default-address-pools, docs/swarm.md)",
                    route.node, known.node
                ));
            }
        }
    }
    routes.retain(|known| known.node != route.node);
    routes.push(route);
    Ok(())
}

/// Whether a node claims `ip`.
pub fn is_routed(ip: IpAddr) -> bool {
    relay_for(ip).is_some()
}

/// The relay that reaches `ip`, if a node claims it.
fn relay_for(ip: IpAddr) -> Option<(SocketAddr, RelayAccess)> {
    let routes = ROUTES
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    routes
        .iter()
        .find(|route| route.subnets.iter().any(|net| net.contains(ip)))
        .map(|route| (route.relay, route.access.clone()))
}

/// A stream to a container: a TCP connection on this host, or a tunnel through a node's relay.
#[derive(Debug)]
pub enum Stream {
    Direct(TcpStream),
    Relayed(Box<TlsStream<TcpStream>>),
}

/// A stream to `addr`, through its node's relay when a node claims it; without Nagle's delay
/// (terminal keystrokes are single bytes), and failing after `timeout` when nothing answers.
pub async fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
    let connected = async {
        match relay_for(addr.ip()) {
            None if RELAYS_ONLY.load(Ordering::Relaxed) => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("no swarm node claims {addr} yet: its node's berth-node has not answered"),
            )),
            None => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Direct(stream))
            }
            Some((relay, access)) => through_relay(relay, &access, addr)
                .await
                .map(|tunnel| Stream::Relayed(Box::new(tunnel))),
        }
    };
    tokio::time::timeout(timeout, connected)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{addr} did not answer")))?
}

async fn through_relay(
    relay: SocketAddr,
    access: &RelayAccess,
    target: SocketAddr,
) -> io::Result<TlsStream<TcpStream>> {
    let mut stream = access.open(relay).await?;
    stream
        .write_all(
            format!(
                "CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n{KEY_HEADER}: {}\r\n\r\n",
                access.key
            )
            .as_bytes(),
        )
        .await?;
    // Byte by byte up to the blank line: what follows it is the container's, not ours to read.
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_ANSWER_HEAD {
            return Err(io::Error::other(format!(
                "{relay} is not a Berth node relay"
            )));
        }
        head.push(stream.read_u8().await?);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(stream),
        _ => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("the node relay at {relay} refused {target}: {status_line}"),
        )),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Relayed(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Direct(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Relayed(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Relayed(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Relayed(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// [`dial`] as a connector for hyper's pooled client.
#[derive(Debug, Clone)]
pub struct ContainerConnector {
    pub timeout: Duration,
}

impl tower::Service<Uri> for ContainerConnector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move {
            let addr = uri
                .authority()
                .and_then(|authority| authority.as_str().parse::<SocketAddr>().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{uri} does not name a container's address and port"),
                    )
                })?;
            dial(addr, timeout).await.map(TokioIo::new)
        })
    }
}

/// A connector for hyper's pooled client that reaches one relay, whatever the request's address:
/// a node's engine API behind its `berth-node`.
#[derive(Debug, Clone)]
pub struct RelayConnector {
    pub relay: SocketAddr,
    pub access: RelayAccess,
}

impl tower::Service<Uri> for RelayConnector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let stream = connector.access.open(connector.relay).await?;
            Ok(TokioIo::new(Stream::Relayed(Box::new(stream))))
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    const SECRET: &str = "reach-test-admin-secret";

    fn access() -> RelayAccess {
        RelayAccess::new(SECRET).unwrap()
    }

    /// A relay that answers with `status` and, after a 200, echoes what it is sent.
    async fn fake_relay(status: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(relay_tls::server_config(SECRET).unwrap());
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = tls.accept(stream).await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(stream.read_u8().await.unwrap());
            }
            stream
                .write_all(format!("HTTP/1.1 {status}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            stream.flush().await.unwrap();
            let mut buf = [0; 5];
            if stream.read_exact(&mut buf).await.is_ok() {
                stream.write_all(&buf).await.unwrap();
                stream.flush().await.unwrap();
            }
            String::from_utf8(head).unwrap()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn addresses_of_a_node_go_through_its_relay_with_the_key() {
        let (relay, asked) = fake_relay("200 Connection established").await;
        set_route(NodeRoute {
            node: "relay-test-ok".into(),
            subnets: vec![Cidr::new("10.251.1.0".parse().unwrap(), 24).unwrap()],
            relay,
            access: access(),
        })
        .unwrap();
        let target: SocketAddr = "10.251.1.7:7681".parse().unwrap();
        let mut stream = dial(target, Duration::from_secs(2)).await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        let mut echoed = [0; 5];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"hello");
        let head = asked.await.unwrap();
        assert!(
            head.starts_with("CONNECT 10.251.1.7:7681 HTTP/1.1\r\n"),
            "{head}"
        );
        let key = node_key(SECRET);
        assert!(head.contains(&format!("{KEY_HEADER}: {key}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn a_relay_refusal_is_an_error_naming_it() {
        let (relay, _) = fake_relay("403 Forbidden").await;
        set_route(NodeRoute {
            node: "relay-test-refuses".into(),
            subnets: vec![Cidr::new("10.251.2.0".parse().unwrap(), 24).unwrap()],
            relay,
            access: access(),
        })
        .unwrap();
        let err = dial("10.251.2.9:80".parse().unwrap(), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("403 Forbidden"), "{err}");
    }

    #[test]
    fn a_node_whose_subnet_overlaps_another_nodes_is_refused() {
        let route = |node: &str, net: &str| NodeRoute {
            node: node.into(),
            subnets: vec![net.parse().unwrap()],
            relay: "127.0.0.1:7700".parse().unwrap(),
            access: access(),
        };
        set_route(route("overlap-a", "10.252.0.0/16")).unwrap();
        let err = set_route(route("overlap-b", "10.252.7.0/24")).unwrap_err();
        assert!(
            err.contains("overlap-b") && err.contains("overlap-a"),
            "{err}"
        );
        // A node's own subnets may change.
        set_route(route("overlap-a", "10.252.7.0/24")).unwrap();
    }

    #[tokio::test]
    async fn addresses_no_node_claims_are_dialled_directly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
        dial(addr, Duration::from_secs(2)).await.unwrap();
        assert!(accepted.await.unwrap());
    }
}

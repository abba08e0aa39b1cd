//! The relay: one TCP listener in front of the node's engine socket and its session containers.
//!
//! Every connection is TLS with a certificate the admin secret vouches for
//! (`berth_server::relay_tls`), and opens with an HTTP request carrying the node key. `CONNECT ip:port` to an
//! address on one of the node's session networks becomes a byte stream to that container;
//! any other request, and the rest of the connection, goes to the engine's socket unchanged (so
//! streamed answers, events and pushes pass as they are).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use berth_proto::{ErrorBody, ErrorCode};
use berth_server::{
    cluster::key_matches,
    networks::Cidr,
    reach::{KEY_HEADER, node_key},
    relay_tls::{self, RelayTlsError},
};
use bollard::{Docker, query_parameters::ListNetworksOptions};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixStream},
    sync::Mutex,
};

/// A request head longer than this is not one a control plane sends.
const MAX_HEAD: usize = 64 * 1024;

/// How long a container gets to accept a tunnelled connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection that has not finished its TLS handshake and sent a complete request head by
/// then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Addresses not on a known session network are looked up again at most this often, so a
/// network made since the last look is found without every stray address costing a query.
const SUBNETS_REFRESH: Duration = Duration::from_secs(1);

/// The bridges of Berth's session networks are named so (`berth_server::networks`).
const SESSION_BRIDGE_PREFIX: &str = berth_server::networks::BRIDGE_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot reach the node's engine at {0}: {1}")]
    Engine(String, String),
    #[error(transparent)]
    Tls(#[from] RelayTlsError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct Relay {
    key: String,
    tls: tokio_rustls::TlsAcceptor,
    engine_socket: PathBuf,
    docker: Docker,
    subnets: Mutex<(Vec<Cidr>, Option<Instant>)>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("engine_socket", &self.engine_socket)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// `engine` is the node's own engine: `unix:///var/run/docker.sock` or a socket path.
    /// `admin_secret` is the control planes': the node key and the TLS certificate derive from it.
    pub fn new(admin_secret: &str, engine: &str) -> Result<Self, RelayError> {
        let path = engine.strip_prefix("unix://").unwrap_or(engine);
        let docker = Docker::connect_with_unix(path, 30, bollard::API_DEFAULT_VERSION)
            .map_err(|e| RelayError::Engine(engine.to_owned(), e.to_string()))?;
        Ok(Self {
            key: node_key(admin_secret),
            tls: tokio_rustls::TlsAcceptor::from(relay_tls::server_config(admin_secret)?),
            engine_socket: PathBuf::from(path),
            docker,
            subnets: Mutex::new((Vec::new(), None)),
        })
    }

    /// Serves connections until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let relay = self.clone();
            tokio::spawn(async move {
                if let Err(err) = relay.handle(stream).await {
                    tracing::debug!(%peer, %err, "relay connection ended");
                }
            });
        }
    }

    async fn handle(&self, client: TcpStream) -> Result<(), RelayError> {
        client.set_nodelay(true)?;
        let opened = async {
            let mut client = self.tls.accept(client).await?;
            let head = read_head(&mut client).await?;
            Ok::<_, std::io::Error>((client, head))
        };
        let Ok(opened) = tokio::time::timeout(HEAD_TIMEOUT, opened).await else {
            return Ok(());
        };
        let (mut client, head) = opened?;
        let Some((head, rest)) = head else {
            return refuse(
                &mut client,
                400,
                ErrorCode::InvalidRequest,
                "not an HTTP request",
            )
            .await;
        };
        let request = Head::parse(&head);
        if !request
            .header(KEY_HEADER)
            .is_some_and(|presented| key_matches(&self.key, presented))
        {
            return refuse(
                &mut client,
                401,
                ErrorCode::Unauthorized,
                "this is a Berth node relay; it answers control planes that present the node key (derived from the admin token they share)",
            )
            .await;
        }
        if request.method == "CONNECT" {
            let Ok(target) = request.target.parse::<SocketAddr>() else {
                return refuse(
                    &mut client,
                    400,
                    ErrorCode::InvalidRequest,
                    "CONNECT needs ip:port",
                )
                .await;
            };
            if !self.is_session_address(target.ip()).await {
                let message = format!("{} is not on a session network of this node", target.ip());
                return refuse(&mut client, 403, ErrorCode::Forbidden, &message).await;
            }
            let container =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        let message = format!("{target} does not answer: {err}");
                        return refuse(&mut client, 502, ErrorCode::SessionFailed, &message).await;
                    }
                    Err(_) => {
                        let message = format!("{target} did not answer within {CONNECT_TIMEOUT:?}");
                        return refuse(&mut client, 504, ErrorCode::SessionFailed, &message).await;
                    }
                };
            container.set_nodelay(true)?;
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
            client.flush().await?;
            splice(client, container, &rest).await
        } else {
            let engine = match UnixStream::connect(&self.engine_socket).await {
                Ok(engine) => engine,
                Err(err) => {
                    let message = format!("the node's engine does not answer: {err}");
                    return refuse(&mut client, 503, ErrorCode::EngineUnavailable, &message).await;
                }
            };
            let mut forwarded = request.without_header(KEY_HEADER);
            forwarded.extend_from_slice(&rest);
            splice(client, engine, &forwarded).await
        }
    }

    /// Whether `ip` is on one of this node's session networks: the only containers a control
    /// plane has any business reaching.
    async fn is_session_address(&self, ip: IpAddr) -> bool {
        let mut subnets = self.subnets.lock().await;
        if subnets.0.iter().any(|net| net.contains(ip)) {
            return true;
        }
        if subnets.1.is_some_and(|at| at.elapsed() < SUBNETS_REFRESH) {
            return false;
        }
        match self.session_subnets().await {
            Ok(found) => *subnets = (found, Some(Instant::now())),
            Err(err) => tracing::warn!(%err, "cannot list the node's networks"),
        }
        subnets.0.iter().any(|net| net.contains(ip))
    }

    async fn session_subnets(&self) -> Result<Vec<Cidr>, bollard::errors::Error> {
        let networks = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await?;
        Ok(networks
            .into_iter()
            .filter(|network| {
                network
                    .options
                    .as_ref()
                    .and_then(|options| options.get("com.docker.network.bridge.name"))
                    .is_some_and(|bridge| bridge.starts_with(SESSION_BRIDGE_PREFIX))
            })
            .flat_map(|network| {
                network
                    .ipam
                    .and_then(|ipam| ipam.config)
                    .unwrap_or_default()
            })
            .filter_map(|config| config.subnet?.parse().ok())
            .collect())
    }
}

/// Reads up to the end of the request head; the bytes read past it come back too. `None` when
/// the head is too long or the connection closes first.
async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A request head, split into what the relay looks at.
struct Head<'a> {
    request_line: &'a str,
    method: &'a str,
    target: &'a str,
    /// The header lines, and the blank ones that end the head.
    headers: Vec<&'a str>,
}

impl<'a> Head<'a> {
    fn parse(head: &'a [u8]) -> Self {
        let text = std::str::from_utf8(head).unwrap_or_default();
        let (request_line, headers) = text.split_once("\r\n").unwrap_or((text, ""));
        let mut parts = request_line.split(' ');
        Self {
            request_line,
            method: parts.next().unwrap_or_default(),
            target: parts.next().unwrap_or_default(),
            headers: headers.split("\r\n").collect(),
        }
    }

    fn is(line: &str, name: &str) -> bool {
        line.split_once(':')
            .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case(name))
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|line| Self::is(line, name))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim())
    }

    /// The head again, without `name`: the node key stays with the relay.
    fn without_header(&self, name: &str) -> Vec<u8> {
        let kept = self.headers.iter().filter(|line| !Self::is(line, name));
        std::iter::once(&self.request_line)
            .chain(kept)
            .copied()
            .collect::<Vec<_>>()
            .join("\r\n")
            .into_bytes()
    }
}

async fn refuse(
    client: &mut (impl AsyncWrite + Unpin),
    status: u16,
    code: ErrorCode,
    message: &str,
) -> Result<(), RelayError> {
    let body = serde_json::to_string(&ErrorBody::new(code, message)).unwrap_or_default();
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Gateway Timeout",
    };
    client
        .write_all(
            format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    client.shutdown().await?;
    Ok(())
}

/// Sends `first` to `upstream`, then copies both ways until either side closes.
async fn splice(
    mut client: impl AsyncRead + AsyncWrite + Unpin,
    mut upstream: impl AsyncRead + AsyncWrite + Unpin,
    first: &[u8],
) -> Result<(), RelayError> {
    upstream.write_all(first).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_header_is_found_in_any_case_and_left_out_of_what_the_engine_gets() {
        let raw = b"POST /containers/create HTTP/1.1\r\nHost: node\r\nX-Berth-Node-Key: s3cret\r\ncontent-length: 2\r\n\r\n";
        let head = Head::parse(raw);
        assert_eq!((head.method, head.target), ("POST", "/containers/create"));
        assert_eq!(head.header(KEY_HEADER), Some("s3cret"));
        let forwarded = String::from_utf8(head.without_header(KEY_HEADER)).unwrap();
        assert_eq!(
            forwarded,
            "POST /containers/create HTTP/1.1\r\nHost: node\r\ncontent-length: 2\r\n\r\n"
        );
    }
}

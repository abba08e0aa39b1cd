//! The `berth-node` binary in front of a stand-in engine socket: it speaks only TLS under the
//! admin secret's authority, refuses callers without the node key, forwards the engine's API
//! without the key, and tunnels only to addresses on the engine's session networks. (The real engine and swarm: `crates/berth-cli/tests/swarm.rs`.)

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixListener},
};

const ADMIN: &str = "relay-test-admin-token-0123456789abcdef";

/// The session network the stand-in engine reports: loopback, so the test's own listener is
/// "a session".
const NETWORKS: &str = r#"[{"Name":"berth-open","Options":{"com.docker.network.bridge.name":"berth-0123abcd"},"IPAM":{"Config":[{"Subnet":"127.0.0.0/8"}]}},{"Name":"bridge","Options":{"com.docker.network.bridge.name":"docker0"},"IPAM":{"Config":[{"Subnet":"172.17.0.0/16"}]}}]"#;

/// Answers `/networks` with [`NETWORKS`] and anything else with the request head it received.
async fn stand_in_engine(socket: &Path) {
    let listener = UnixListener::bind(socket).unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                let body = if head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .ends_with("/networks")
                {
                    NETWORKS.to_owned()
                } else {
                    head
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
}

async fn read_head(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read_u8().await {
            Ok(byte) => head.push(byte),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(dir: &Path) -> (Relay, u16) {
    let engine = dir.join("engine.sock");
    stand_in_engine(&engine).await;
    let config = dir.join("berth.toml");
    std::fs::write(
        &config,
        format!("admin_token = \"{ADMIN}\"\n\n[firewall]\nenabled = false\n"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_berth-node"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--engine")
        .arg(format!("unix://{}", engine.display()))
        .arg("--config")
        .arg(&config)
        .env_remove("BERTH_ADMIN_TOKEN")
        .env_remove("BERTH_ADMIN_TOKEN_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let relay = Relay(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "berth-node never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (relay, port)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Sends `head` on a new connection: the answer's head, and the connection for what follows.
async fn ask(port: u16, head: &str) -> (String, Tls) {
    let access = berth_server::reach::RelayAccess::new(ADMIN).unwrap();
    let mut stream = access.open(([127, 0, 0, 1], port).into()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let answer = read_head(&mut stream).await;
    (answer, stream)
}

fn key() -> String {
    berth_server::reach::node_key(ADMIN)
}

#[tokio::test]
async fn a_caller_without_the_node_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, port) = start(dir.path()).await;
    let (answer, mut rest) = ask(port, "GET /v1.41/info HTTP/1.1\r\nhost: node\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let mut body = String::new();
    rest.read_to_string(&mut body).await.unwrap();
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
    let wrong = "GET /v1.41/info HTTP/1.1\r\nx-berth-node-key: nope\r\n\r\n";
    assert!(ask(port, wrong).await.0.starts_with("HTTP/1.1 401"));
}

#[tokio::test]
async fn only_tls_under_the_admin_secrets_authority_is_spoken() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, port) = start(dir.path()).await;
    let relay = ([127, 0, 0, 1], port).into();
    let stranger = berth_server::reach::RelayAccess::new("another cluster's admin token").unwrap();
    let err = stranger.open(relay).await.unwrap_err();
    assert!(
        err.to_string().contains("not a relay of this cluster"),
        "{err}"
    );

    // Plain HTTP, even with the key, gets no answer: the relay is waiting for a TLS hello.
    let mut plain = TcpStream::connect(relay).await.unwrap();
    let request = format!(
        "GET /v1.41/info HTTP/1.1\r\nx-berth-node-key: {}\r\n\r\n",
        key()
    );
    plain.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn the_engine_api_passes_through_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, port) = start(dir.path()).await;
    let request = format!(
        "GET /v1.41/containers/json HTTP/1.1\r\nhost: node\r\nX-Berth-Node-Key: {}\r\n\r\n",
        key()
    );
    let (answer, mut rest) = ask(port, &request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut seen = String::new();
    rest.read_to_string(&mut seen).await.unwrap();
    assert!(
        seen.starts_with("GET /v1.41/containers/json HTTP/1.1\r\n"),
        "{seen}"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("x-berth-node-key"),
        "{seen}"
    );
}

#[tokio::test]
async fn connect_reaches_session_addresses_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, port) = start(dir.path()).await;
    let session = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let session_port = session.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = session.accept().await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        stream.write_all(&buf).await.unwrap();
    });

    let elsewhere = format!(
        "CONNECT 172.17.0.2:80 HTTP/1.1\r\nx-berth-node-key: {}\r\n\r\n",
        key()
    );
    let (answer, _) = ask(port, &elsewhere).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    let to_session = format!(
        "CONNECT 127.0.0.1:{session_port} HTTP/1.1\r\nx-berth-node-key: {}\r\n\r\n",
        key()
    );
    let (answer, mut tunnel) = ask(port, &to_session).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tunnel.write_all(b"hello").await.unwrap();
    tunnel.flush().await.unwrap();
    let mut echoed = [0u8; 5];
    tunnel.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"hello");
}

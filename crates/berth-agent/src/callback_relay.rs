//! The callback API at `BERTH_API_URL` (`http://127.0.0.1:7682`): every connection to the
//! session's loopback port is relayed, bytes as they come, to the control plane's socket
//! mounted in [`berth_proto::callback::DIR_IN_SESSION`]. The control plane reads the HTTP;
//! the agent only joins the two ends, so it needs no part of the protocol.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use berth_proto::callback::{DIR_IN_SESSION, RELAY_PORT, SOCKET_NAME};
use tokio::{
    net::{TcpListener, TcpStream, UnixStream},
    task::JoinHandle,
};

/// Relays until the process ends. A session without the callback API has no such directory:
/// nothing is spawned.
pub fn spawn() -> Option<JoinHandle<()>> {
    let dir = Path::new(DIR_IN_SESSION);
    if !dir.is_dir() {
        return None;
    }
    let socket = dir.join(SOCKET_NAME);
    Some(tokio::spawn(async move {
        // Loopback only: the port is the session's own, not something for its previews.
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, RELAY_PORT));
        match TcpListener::bind(addr).await {
            Ok(listener) => serve(listener, socket).await,
            Err(err) => eprintln!("berth-agent: callback relay on {addr}: {err}"),
        }
    }))
}

async fn serve(listener: TcpListener, socket: PathBuf) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(relay(client, socket.clone()));
    }
}

async fn relay(mut client: TcpStream, socket: PathBuf) {
    // The control plane opens the socket again in the same place after a restart: each
    // connection finds the current one.
    let Ok(mut upstream) = UnixStream::connect(&socket).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_go_both_ways_between_the_port_and_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join(SOCKET_NAME);
        let upstream = tokio::net::UnixListener::bind(&socket).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, socket));
        tokio::spawn(async move {
            let (mut conn, _) = upstream.accept().await.unwrap();
            let mut asked = [0u8; 4];
            conn.read_exact(&mut asked).await.unwrap();
            conn.write_all(&[asked.as_slice(), b"-back"].concat())
                .await
                .unwrap();
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "ping-back");
    }
}

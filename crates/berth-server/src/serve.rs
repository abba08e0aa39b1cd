//! One listener's accept loop: `axum::serve`'s, with the two bounds `[http]` sets on what a
//! client connection may hold. `axum::serve` gives hyper no timer, so a client that opens a
//! connection and trickles a request head (slowloris) holds it forever, and it accepts every
//! connection offered: here a request head must arrive within `request_head_timeout_seconds`
//! (the first byte too, and the next request's on a kept-alive connection), and past
//! `max_connections` new connections wait in the kernel's backlog.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::ServiceExt;

use crate::config::HttpConfig;

/// How long to wait before accepting again when accepting failed (out of file descriptors,
/// say): at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections as usize));
    let head_timeout = Duration::from_secs(limits.request_head_timeout_seconds);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    // WebSockets over HTTP/2, as `axum::serve` allows them.
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    // Dropped at shutdown: connections still waiting for their first byte give up then, so a
    // stop does not wait out their timeout as it waits for connections being served.
    let (stopping, _) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Terminal keystrokes are single bytes: with Nagle's algorithm each would wait for the
        // peer's delayed ACK (40 ms).
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |request: Request<Incoming>| {
                let mut request = request.map(Body::new);
                // Who connected, for the audit log.
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let (builder, watcher, mut stop) =
            (builder.clone(), graceful.watcher(), stopping.subscribe());
        tokio::spawn(async move {
            // hyper's header timeout starts once the first bytes have told it the HTTP version:
            // a client that sends none would hold its place until `max_connections` is reached.
            let mut first = [0u8; 1];
            tokio::select! {
                sent = tokio::time::timeout(head_timeout, tcp.peek(&mut first)) => {
                    if !matches!(sent, Ok(Ok(1..))) {
                        return;
                    }
                }
                _ = stop.changed() => return,
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .into_owned();
            // A connection's end, whatever its cause, is the client's business.
            let _ = watcher.watch(connection).await;
            drop(permit);
        });
    }
    drop(listener);
    drop(stopping);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;

    async fn start(limits: HttpConfig) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            serve(listener, router, &limits, async {
                let _ = stopped.await;
            })
            .await;
        });
        (addr, stop)
    }

    /// Sends a whole request on `stream`; its answer's first line, if one comes within `wait`.
    async fn ask(stream: &mut TcpStream, wait: Duration) -> Option<String> {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 64];
        let n = tokio::time::timeout(wait, stream.read(&mut answer))
            .await
            .ok()?
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        text.lines().next().map(str::to_owned)
    }

    #[tokio::test]
    async fn a_request_head_that_does_not_arrive_in_time_loses_its_connection() {
        let (addr, _stop) = start(HttpConfig {
            max_connections: 10,
            request_head_timeout_seconds: 1,
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost: te").await.unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection was still open after 5 s");
        assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
        // A prompt client is served as ever.
        let mut prompt = TcpStream::connect(addr).await.unwrap();
        let answer = ask(&mut prompt, Duration::from_secs(5)).await;
        assert_eq!(answer.as_deref(), Some("HTTP/1.1 200 OK"));
    }

    #[tokio::test]
    async fn idle_connections_are_closed_silent_or_kept_alive() {
        let (addr, _stop) = start(HttpConfig {
            max_connections: 10,
            request_head_timeout_seconds: 1,
        })
        .await;
        // One that never sends a byte, and one that idles after its first answer.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut kept = TcpStream::connect(addr).await.unwrap();
        let answer = ask(&mut kept, Duration::from_secs(5)).await;
        assert_eq!(answer.as_deref(), Some("HTTP/1.1 200 OK"));
        for (which, stream) in [("silent", &mut silent), ("kept-alive", &mut kept)] {
            let mut rest = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "the {which} connection was open after 5 s");
        }
    }

    #[tokio::test]
    async fn past_the_connection_cap_a_client_waits_for_a_place() {
        let (addr, _stop) = start(HttpConfig {
            max_connections: 2,
            request_head_timeout_seconds: 30,
        })
        .await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        assert!(ask(&mut first, Duration::from_secs(5)).await.is_some());
        let second = TcpStream::connect(addr).await.unwrap();
        // Accepted by the kernel, but not served while two connections are open.
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut third, Duration::from_millis(500)).await, None);
        drop(second);
        let mut answer = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut answer))
            .await
            .expect("the waiting client was served once a place was free")
            .unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200 OK"));
    }
}

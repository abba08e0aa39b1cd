//! The engine's own API, spoken raw over its unix socket: the session API forwards requests
//! byte for byte (streams and hijacked connections included), which bollard's typed calls
//! cannot do.

use std::{path::PathBuf, time::Duration};

use axum::body::Body;
use http_body_util::BodyExt;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::policy::DockerApiError;

/// What the engine's Go server requires of every HTTP/1.1 request; any name does.
const HOST: &str = "docker";

#[derive(Debug, Clone)]
pub struct Engine {
    socket: PathBuf,
    /// Bounds each lookup (`get_json`): `docker.timeout_seconds`. Forwarded calls have none,
    /// since `logs -f`, `attach` and builds rightly take as long as they take.
    timeout: Duration,
}

impl Engine {
    /// The engine at `unix://PATH`; `None` for any other address (the session API needs the
    /// engine on this host).
    pub fn from_address(address: &str, timeout: Duration) -> Option<Self> {
        let path = address.strip_prefix("unix://")?;
        Some(Self::at_socket(PathBuf::from(path), timeout))
    }

    /// The API behind a unix socket: the engine's, or a session's own.
    pub fn at_socket(socket: PathBuf, timeout: Duration) -> Self {
        Self { socket, timeout }
    }

    /// Sends one request on a connection of its own, kept open for an upgrade (attach, exec).
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Incoming>, DockerApiError> {
        let unreachable = |e: &dyn std::fmt::Display| DockerApiError::Engine(e.to_string());
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            // Ends with the request (or the upgraded stream); its error is the request's.
            let _ = connection.with_upgrades().await;
        });
        sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))
    }

    /// [`Self::send`] with `docker.timeout_seconds` to the answer's head; its body may take
    /// as long as it takes (a log, an exec's output).
    pub async fn send_bounded(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, DockerApiError> {
        let what = format!("{} {}", request.method(), request.uri().path());
        tokio::time::timeout(self.timeout, self.send(request))
            .await
            .unwrap_or_else(|_| {
                Err(DockerApiError::Engine(format!(
                    "{what} took longer than {} s (docker.timeout_seconds)",
                    self.timeout.as_secs()
                )))
            })
    }

    /// `GET path` as JSON; `None` when the engine says 404.
    pub async fn get_json(&self, path: &str) -> Result<Option<Value>, DockerApiError> {
        tokio::time::timeout(self.timeout, self.get_json_unbounded(path))
            .await
            .unwrap_or_else(|_| {
                Err(DockerApiError::Engine(format!(
                    "GET {path} took longer than {} s (docker.timeout_seconds)",
                    self.timeout.as_secs()
                )))
            })
    }

    async fn get_json_unbounded(&self, path: &str) -> Result<Option<Value>, DockerApiError> {
        let request = Request::get(path)
            .header(hyper::header::HOST, HOST)
            .body(Body::empty())
            .map_err(|e| DockerApiError::Invalid(e.to_string()))?;
        let response = self.send(request).await?;
        let status = response.status();
        if status == hyper::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| DockerApiError::Engine(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(DockerApiError::Engine(format!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| DockerApiError::Engine(format!("GET {path}: {e}")))
    }
}

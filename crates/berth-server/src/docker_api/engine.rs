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

    /// One call with a JSON body (or none) and its answer read whole, within
    /// `docker.timeout_seconds`: the status, and the body as JSON (`Null` when empty or not
    /// JSON).
    pub async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(hyper::StatusCode, Value), DockerApiError> {
        let what = format!("{method} {path}");
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, HOST);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .map_err(|e| DockerApiError::Invalid(e.to_string()))?;
        let call = async {
            let response = self.send(request).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| DockerApiError::Engine(e.to_string()))?
                .to_bytes();
            Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ))
        };
        tokio::time::timeout(self.timeout, call)
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
        let (status, body) = self.call(hyper::Method::GET, path, None).await?;
        if status == hyper::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(DockerApiError::Engine(format!(
                "GET {path}: {status} {body}"
            )));
        }
        Ok(Some(body))
    }
}

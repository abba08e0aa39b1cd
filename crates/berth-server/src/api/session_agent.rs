//! A session's agent as handlers outside Berth's own `/api/v1` routes work with it (the E2B
//! and seed-compatibility layers): JSON calls, streamed requests and WebSockets, with the
//! agent's errors turned into Berth's.

use std::net::SocketAddr;

use axum::{
    body::{Body, Bytes},
    http::{Method, header},
};
use berth_proto::{ErrorBody, ErrorCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::{AppState, error::ApiError};
use crate::{auth::Principal, proxy::AgentSocket};

/// The largest JSON answer read from an agent: a listing of a huge directory is refused rather
/// than held whole.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// An agent's answer, whole, if it is at most `limit` bytes; `payload_too_large` otherwise, so
/// a session cannot make the control plane hold what it likes.
pub async fn read_limited(
    response: hyper::Response<Body>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::coded(
            ErrorCode::PayloadTooLarge,
            format!(
                "the answer is larger than {} MiB; download files through \
                 GET /api/v1/sessions/{{id}}/files/content, which streams",
                limit >> 20
            ),
        )
    };
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(response.into_body(), limit)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(err) => Err(ApiError::coded(ErrorCode::SessionFailed, err.to_string())),
    }
}

/// A session a caller may work in, and where its agent listens.
pub struct SessionAgent {
    pub id: String,
    endpoint: (SocketAddr, String),
}

impl SessionAgent {
    /// The caller's session `id`, woken if it sleeps, as any access to a session wakes it.
    pub async fn reach(state: &AppState, caller: &Principal, id: &str) -> Result<Self, ApiError> {
        let endpoint = state.sessions.agent_endpoint(caller, id).await?;
        Ok(Self::at(state, id, endpoint))
    }

    /// A session whose agent endpoint the caller looked up itself; counts as work in it.
    pub fn at(state: &AppState, id: &str, endpoint: (SocketAddr, String)) -> Self {
        state.sessions.touch(id);
        Self {
            id: id.to_owned(),
            endpoint,
        }
    }
}

impl SessionAgent {
    /// Refuses an upload of `declared` bytes that would take the session past its template's
    /// `disk_mb`, before a byte reaches it (`413`).
    pub async fn refuse_past_disk_room(
        &self,
        state: &AppState,
        declared: u64,
    ) -> Result<(), ApiError> {
        let room = state.sessions.disk_room_reached(&self.id).await;
        crate::api::files::refuse_past_room(room, declared)
    }

    /// The session container's address: where its own servers listen.
    pub fn ip(&self) -> std::net::IpAddr {
        self.endpoint.0.ip()
    }

    /// Sends one request to the agent; an answer other than a success becomes its error.
    pub async fn send(
        &self,
        state: &AppState,
        request: hyper::Request<Body>,
    ) -> Result<hyper::Response<Body>, ApiError> {
        let (addr, secret) = &self.endpoint;
        let response = state.agent.send(*addr, secret, request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = axum::body::to_bytes(Body::new(response.into_body()), 64 * 1024)
            .await
            .unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => ApiError::coded(error.error.code, error.error.message),
            Err(_) => ApiError::coded(
                ErrorCode::SessionFailed,
                format!("the session's agent answered HTTP {status}"),
            ),
        })
    }

    /// A JSON call to the agent.
    pub async fn call<T: DeserializeOwned>(
        &self,
        state: &AppState,
        method: Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ApiError> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::CONTENT_TYPE, "application/json");
        let body = match body {
            Some(value) => Body::from(serde_json::to_vec(&value).map_err(ApiError::internal)?),
            None => Body::empty(),
        };
        let response = self
            .send(state, request.body(body).map_err(ApiError::internal)?)
            .await?;
        let bytes = read_limited(response, MAX_ANSWER_BYTES).await?;
        // Some agent routes answer 204: read that as JSON null.
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(ApiError::internal)
    }

    /// Opens one of the agent's WebSockets.
    pub async fn websocket(&self, path_and_query: &str) -> Result<AgentSocket, ApiError> {
        crate::proxy::agent_websocket(self.endpoint.clone(), path_and_query).await
    }
}

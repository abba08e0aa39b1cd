//! The one place where errors become HTTP responses.

use axum::{
    Json,
    extract::{
        rejection::{BytesRejection, JsonRejection, QueryRejection},
        ws::rejection::WebSocketUpgradeRejection,
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use berth_proto::{ErrorBody, ErrorCode};

use crate::{
    agent_client::AgentError, docker_api::policy::DockerApiError, sessions::SessionError,
    store::StoreError,
};

/// An error on its way to the client: a status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// When a retry will be let through (`rate_limited`): the `Retry-After` header.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// Private: a status comes from its code (`coded`), decided in this file alone.
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A caller over its rate (`[quota] requests_per_second`), free again after `wait`.
    pub fn rate_limited(per_second: f64, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        Self::limited(
            format!(
                "too many requests for this token: at most {per_second} a second; retry in {seconds} s"
            ),
            wait,
        )
    }

    /// `429 rate_limited` with `Retry-After`: free again after `wait` (whole seconds, at
    /// least one).
    pub fn limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        Self {
            retry_after: Some(std::time::Duration::from_secs(seconds)),
            ..Self::coded(ErrorCode::RateLimited, message)
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or unknown token: send `Authorization: Bearer <token>` (see `berth user create`)",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// What E2B's sandbox proxy answers for a sandbox that is not (or no longer) there: a 502
    /// whose message the SDKs recognise ("was not found") and turn into their
    /// sandbox-not-running error.
    pub fn e2b_sandbox_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::SessionFailed,
            format!("The sandbox {id} was not found"),
        )
    }

    /// A failure of the server itself, never of the request: a 500.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::coded(ErrorCode::Internal, format!("internal error: {err}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = %self.code, message = %self.message, "request failed");
        }
        let mut body = ErrorBody::new(self.code, self.message);
        let Some(retry_after) = self.retry_after else {
            return (self.status, Json(body)).into_response();
        };
        body.error.retry_after = Some(retry_after.as_secs());
        let header = [(axum::http::header::RETRY_AFTER, retry_after.as_secs())];
        (self.status, header, Json(body)).into_response()
    }
}

/// The status that goes with each error code: the one table of it.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidJson | ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnknownTemplate | ErrorCode::InvalidTtl => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::QuotaExceeded | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::EngineUnavailable | ErrorCode::StoreUnavailable | ErrorCode::SessionFailed => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::UpstreamFailed => StatusCode::BAD_GATEWAY,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Misconfigured | ErrorCode::Internal | ErrorCode::Unknown => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl ApiError {
    /// An error with the status its code calls for.
    pub fn coded(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(status_for(code), code, message)
    }
}

impl ApiError {
    /// The same error for a session's Docker API: the `docker` CLI prints the top-level
    /// `message` of an error body, so it is there as well as in `error`.
    pub fn into_docker_response(self) -> Response {
        let body = serde_json::json!({
            "message": self.message,
            "error": ErrorBody::new(self.code, self.message.clone()).error,
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<DockerApiError> for ApiError {
    fn from(err: DockerApiError) -> Self {
        let code = match err {
            DockerApiError::Refused { .. } => ErrorCode::Forbidden,
            DockerApiError::NotFound { .. } => ErrorCode::NotFound,
            DockerApiError::Quota(_) => ErrorCode::QuotaExceeded,
            DockerApiError::Conflict(_) => ErrorCode::Conflict,
            DockerApiError::Invalid(_) => ErrorCode::InvalidRequest,
            DockerApiError::Engine(_) => ErrorCode::EngineUnavailable,
        };
        Self::coded(code, err.to_string())
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        Self::coded(err.code(), err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::coded(err.code(), err.to_string())
    }
}

impl From<AgentError> for ApiError {
    fn from(err: AgentError) -> Self {
        Self::coded(ErrorCode::SessionFailed, err.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (code, message) = match &rejection {
            JsonRejection::JsonSyntaxError(_) => (ErrorCode::InvalidJson, rejection.body_text()),
            JsonRejection::MissingJsonContentType(_) => (
                ErrorCode::InvalidRequest,
                "send the body as JSON with `Content-Type: application/json`".to_owned(),
            ),
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (ErrorCode::PayloadTooLarge, rejection.body_text())
            }
            _ => (ErrorCode::InvalidRequest, rejection.body_text()),
        };
        Self::coded(code, message)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::InvalidRequest
        };
        Self::coded(code, rejection.body_text())
    }
}

impl From<WebSocketUpgradeRejection> for ApiError {
    fn from(rejection: WebSocketUpgradeRejection) -> Self {
        Self::invalid_request(format!(
            "this route is a WebSocket: {}",
            rejection.body_text()
        ))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid_request(rejection.body_text())
    }
}

/// An error on an E2B control-plane or envd HTTP route: Berth's status, E2B's body
/// (`{"code": <status>, "message"}`, what the SDKs read).
#[derive(Debug)]
pub struct E2bError(pub ApiError);

impl<E> From<E> for E2bError
where
    ApiError: From<E>,
{
    fn from(err: E) -> Self {
        Self(ApiError::from(err))
    }
}

impl IntoResponse for E2bError {
    fn into_response(self) -> Response {
        let ApiError {
            status, message, ..
        } = self.0;
        if status.is_server_error() {
            tracing::warn!(%status, %message, "E2B request failed");
        }
        let body = serde_json::json!({ "code": status.as_u16(), "message": message });
        (status, Json(body)).into_response()
    }
}

/// An error on a seed-compatibility route (`[compat]`): Berth's status, and the body NestJS
/// answers with (`{"statusCode", "message", "error"}`, what the seed's frontend reads), plus
/// Berth's stable `code`.
#[derive(Debug)]
pub struct CompatError(pub ApiError);

impl<E> From<E> for CompatError
where
    ApiError: From<E>,
{
    fn from(err: E) -> Self {
        Self(ApiError::from(err))
    }
}

impl CompatError {
    pub fn body(&self) -> serde_json::Value {
        let ApiError {
            status,
            code,
            message,
            ..
        } = &self.0;
        serde_json::json!({
            "statusCode": status.as_u16(),
            "message": message,
            "error": status.canonical_reason().unwrap_or("Error"),
            "code": code,
        })
    }
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        if self.0.status.is_server_error() {
            tracing::warn!(status = %self.0.status, message = %self.0.message, "compat request failed");
        }
        (self.0.status, Json(self.body())).into_response()
    }
}

/// An error on an envd Connect RPC route. Unary calls answer it as their response (the status
/// Connect's protocol gives its code, `{"code": "not_found", "message"}`); streams send it in
/// their end-of-stream message ([`ConnectError::end_of_stream`]).
#[derive(Debug)]
pub struct ConnectError {
    error: ApiError,
    /// Connect's `already_exists`, which envd answers for a directory made twice and Berth's
    /// own routes have no code for (they make directories idempotently).
    already_exists: bool,
}

impl<E> From<E> for ConnectError
where
    ApiError: From<E>,
{
    fn from(err: E) -> Self {
        Self {
            error: ApiError::from(err),
            already_exists: false,
        }
    }
}

impl ConnectError {
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self {
            error: ApiError::coded(ErrorCode::Conflict, message),
            already_exists: true,
        }
    }

    /// Connect's name for this error's code.
    pub fn code(&self) -> &'static str {
        if self.already_exists {
            return "already_exists";
        }
        match self.error.code {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRequest
            | ErrorCode::UnknownTemplate
            | ErrorCode::InvalidTtl => "invalid_argument",
            ErrorCode::Unauthorized => "unauthenticated",
            ErrorCode::Forbidden => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "unimplemented",
            ErrorCode::Conflict => "failed_precondition",
            ErrorCode::PayloadTooLarge | ErrorCode::QuotaExceeded | ErrorCode::RateLimited => {
                "resource_exhausted"
            }
            ErrorCode::EngineUnavailable
            | ErrorCode::StoreUnavailable
            | ErrorCode::SessionFailed
            | ErrorCode::UpstreamFailed => "unavailable",
            ErrorCode::Timeout => "deadline_exceeded",
            ErrorCode::Misconfigured | ErrorCode::Internal | ErrorCode::Unknown => "internal",
        }
    }

    /// The HTTP status Connect's protocol pairs with [`ConnectError::code`].
    fn status(&self) -> StatusCode {
        match self.code() {
            "invalid_argument" => StatusCode::BAD_REQUEST,
            "already_exists" => StatusCode::CONFLICT,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "unimplemented" => StatusCode::NOT_IMPLEMENTED,
            "failed_precondition" => StatusCode::PRECONDITION_FAILED,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded" => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code(), "message": self.error.message })
    }

    /// The JSON of a stream's end-of-stream message that ends it with this error.
    pub fn end_of_stream(&self) -> serde_json::Value {
        if self.error.status.is_server_error() {
            tracing::warn!(code = self.code(), message = %self.error.message, "envd stream failed");
        }
        serde_json::json!({ "error": self.body() })
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        if self.error.status.is_server_error() {
            tracing::warn!(code = self.code(), message = %self.error.message, "envd call failed");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

//! The one place where errors become HTTP responses.

use axum::{
    Json,
    extract::{
        rejection::{JsonRejection, QueryRejection},
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
}

impl ApiError {
    /// Private: a status comes from its code (`coded`), decided in this file alone.
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
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
        (self.status, Json(ErrorBody::new(self.code, self.message))).into_response()
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
        ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::EngineUnavailable | ErrorCode::StoreUnavailable | ErrorCode::SessionFailed => {
            StatusCode::SERVICE_UNAVAILABLE
        }
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
            DockerApiError::NameTaken(_) => ErrorCode::Conflict,
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

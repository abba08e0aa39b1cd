//! The one place where errors become HTTP responses.

use axum::{
    Json,
    extract::rejection::{JsonRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use berth_proto::{ErrorBody, ErrorCode};

use crate::{runtime::RuntimeError, sessions::SessionError, store::StoreError};

/// An error on its way to the client: a status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = %self.code, message = %self.message, "request failed");
        }
        (self.status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        use StatusCode as S;
        let message = err.to_string();
        let (status, code) = match &err {
            SessionError::NotFound(_) => (S::NOT_FOUND, ErrorCode::NotFound),
            SessionError::UnknownTemplate { .. } => {
                (S::UNPROCESSABLE_ENTITY, ErrorCode::UnknownTemplate)
            }
            SessionError::InvalidTtl(_) => (S::UNPROCESSABLE_ENTITY, ErrorCode::InvalidTtl),
            SessionError::InvalidRequest(_) => (S::BAD_REQUEST, ErrorCode::InvalidRequest),
            SessionError::QuotaExceeded { .. } => (S::TOO_MANY_REQUESTS, ErrorCode::QuotaExceeded),
            SessionError::NotRunning { .. }
            | SessionError::Unavailable { .. }
            | SessionError::DeletedDuringCreate(_) => (S::CONFLICT, ErrorCode::Conflict),
            SessionError::Runtime(runtime) => return runtime_error(runtime, message),
            SessionError::AgentNotReady { .. }
            | SessionError::Seed { .. }
            | SessionError::Agent { .. } => (S::SERVICE_UNAVAILABLE, ErrorCode::SessionFailed),
            SessionError::Store(store) => return store.to_api_error(),
            SessionError::ManagerGone => (S::SERVICE_UNAVAILABLE, ErrorCode::Internal),
        };
        Self::new(status, code, message)
    }
}

fn runtime_error(err: &RuntimeError, message: String) -> ApiError {
    let (status, code) = match err {
        RuntimeError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::EngineUnavailable,
        ),
        RuntimeError::ImageMissing(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::SessionFailed)
        }
        RuntimeError::NotFound(_) | RuntimeError::Engine(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::SessionFailed)
        }
    };
    ApiError::new(status, code, message)
}

impl StoreError {
    fn to_api_error(&self) -> ApiError {
        let message = self.to_string();
        match self {
            StoreError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
            }
            StoreError::NotFound(_) => ApiError::not_found(message),
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StoreUnavailable,
                message,
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        err.to_api_error()
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
            _ => (ErrorCode::InvalidRequest, rejection.body_text()),
        };
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid_request(rejection.body_text())
    }
}

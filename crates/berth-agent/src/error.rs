//! Agent errors, in the same JSON shape as the control plane's, so the control plane can pass
//! them through unchanged.

use std::{io, path::Path};

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use berth_proto::{ErrorBody, ErrorCode};

#[derive(Debug)]
pub struct AgentError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl AgentError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the file is larger than the session's limit of {limit} bytes"),
        )
    }

    /// An I/O error on `path`, with the status that says what happened.
    pub fn io(err: &io::Error, path: &Path) -> Self {
        let path = path.display();
        match err.kind() {
            io::ErrorKind::NotFound => {
                Self::not_found(format!("{path}: no such file or directory"))
            }
            io::ErrorKind::PermissionDenied => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!("{path}: permission denied"),
            ),
            io::ErrorKind::AlreadyExists => Self::conflict(format!("{path}: already exists")),
            io::ErrorKind::IsADirectory => Self::conflict(format!("{path}: is a directory")),
            io::ErrorKind::NotADirectory => Self::conflict(format!("{path}: not a directory")),
            io::ErrorKind::DirectoryNotEmpty => Self::conflict(format!(
                "{path}: directory not empty; pass recursive=true to delete it"
            )),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidFilename => {
                Self::bad_request(format!("{path}: {err}"))
            }
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::PayloadTooLarge,
                format!("{path}: {err}"),
            ),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                format!("{path}: {err}"),
            ),
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

impl From<axum::extract::rejection::QueryRejection> for AgentError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<axum::extract::rejection::JsonRejection> for AgentError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let code = match rejection {
            axum::extract::rejection::JsonRejection::JsonSyntaxError(_) => ErrorCode::InvalidJson,
            _ => ErrorCode::InvalidRequest,
        };
        Self::new(StatusCode::BAD_REQUEST, code, rejection.body_text())
    }
}

/// `axum::extract::Query` answering bad input with a JSON error.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AgentError))]
pub struct AgentQuery<T>(pub T);

/// `axum::Json` answering bad input with a JSON error, that also takes an integer written with
/// a zero fraction (`5.0`), as the control plane's API document allows.
#[derive(Debug)]
pub struct AgentJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for AgentJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AgentError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, AgentError> {
        use axum::extract::rejection::{JsonRejection, MissingJsonContentType};
        let json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| {
                let essence = essence.trim().to_ascii_lowercase();
                essence == "application/json"
                    || (essence.starts_with("application/") && essence.ends_with("+json"))
            });
        if !json {
            return Err(JsonRejection::from(MissingJsonContentType::default()).into());
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|err| Self::Rejection::bad_request(err.body_text()))?;
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => berth_proto::json::with_whole_numbers(&bytes)
                .map(Self)
                .ok_or_else(|| rejection.into()),
        }
    }
}

use berth_proto::ErrorCode;

use crate::{agent_client::AgentError, runtime::RuntimeError, store::StoreError};

/// Why a session operation failed. `api::error` maps each to an HTTP status, in one place.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {0} not found")]
    NotFound(String),
    #[error("unknown template {name:?}; known templates: {known}")]
    UnknownTemplate { name: String, known: String },
    #[error("{0}")]
    InvalidTtl(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "{owner} already holds {limit} live sessions, the most allowed; delete one (berth session rm ID) and try again"
    )]
    QuotaExceeded { owner: String, limit: u32 },
    #[error("session {id} is {state}; only running sessions can be extended")]
    NotRunning {
        id: String,
        state: berth_proto::SessionState,
    },
    #[error("session {0} was deleted while it was being created")]
    DeletedDuringCreate(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("session {id} failed to start: {source}")]
    AgentNotReady { id: String, source: AgentError },
    #[error("session {id}: seeding the workspace failed: {message}")]
    Seed { id: String, message: String },
    #[error("session {id} is {state}; it must be running for this")]
    Unavailable {
        id: String,
        state: berth_proto::SessionState,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the session manager has stopped")]
    ManagerGone,
    /// A queued create that ended without a session (failed, or cancelled).
    #[error("{message}")]
    Queued { code: ErrorCode, message: String },
}

impl SessionError {
    /// The stable code clients see; `api::error` turns it into a status.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::UnknownTemplate { .. } => ErrorCode::UnknownTemplate,
            Self::InvalidTtl(_) => ErrorCode::InvalidTtl,
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::NotRunning { .. } | Self::Unavailable { .. } | Self::DeletedDuringCreate(_) => {
                ErrorCode::Conflict
            }
            Self::Runtime(RuntimeError::Unavailable(_)) => ErrorCode::EngineUnavailable,
            Self::Runtime(_) | Self::AgentNotReady { .. } | Self::Seed { .. } => {
                ErrorCode::SessionFailed
            }
            Self::Store(store) => store.code(),
            Self::ManagerGone => ErrorCode::Internal,
            Self::Queued { code, .. } => *code,
        }
    }
}

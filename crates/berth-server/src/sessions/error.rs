use berth_proto::ErrorCode;

use crate::{agent_client::AgentError, runtime::RuntimeError, store::StoreError};

/// Why a session operation failed. `api::error` maps each to an HTTP status, in one place.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {0} not found")]
    NotFound(String),
    #[error("home {0} not found")]
    HomeNotFound(String),
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
    #[error(
        "{owner} already holds {limit} hibernated sessions, the most allowed; delete one (berth session rm ID) and try again"
    )]
    HibernatedQuotaExceeded { owner: String, limit: u32 },
    #[error("session {id} is {state}; only running sessions can be {action}")]
    NotRunning {
        id: String,
        state: berth_proto::SessionState,
        action: &'static str,
    },
    #[error("session {0} was deleted while it was being created")]
    DeletedDuringCreate(String),
    /// A persistent home is mounted by one session at a time.
    #[error(
        "{owner}'s home for template {template:?} is in use by {holder}: a persistent home is used by one session at a time, until that session is deleted (berth session rm ID)"
    )]
    HomeInUse {
        owner: String,
        template: String,
        holder: String,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("session {id} failed to start: {source}")]
    AgentNotReady { id: String, source: AgentError },
    #[error(
        "session {id} was not ready within {seconds} s (lifecycle.create_timeout_seconds); try again"
    )]
    CreateTimedOut { id: String, seconds: u64 },
    #[error(
        "session {id} is waking up (or waiting for room on the host to wake) and was not ready within {seconds} s; try again in a moment"
    )]
    WakeTimedOut { id: String, seconds: u64 },
    #[error(
        "session {id} is running but was not reached within {seconds} s: its control plane is still reading its address from the engine; try again in a moment"
    )]
    AddressPending { id: String, seconds: u64 },
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
    /// A lifecycle call reached an instance that does not lead (any longer): the caller asks
    /// the leader of the moment.
    #[error("this instance does not lead lifecycle; send the call to the one that does")]
    NotLeader,
    /// No instance leads lifecycle, or the leader could not be reached or stopped while
    /// answering: retrying is safe once one leads again.
    #[error(
        "no control plane instance leads session lifecycle right now ({0}); retry in a few seconds"
    )]
    NoLeader(String),
    /// Something that should not happen did (a panic in the manager or one of its tasks); the
    /// request is answered with this and the manager goes on.
    #[error("internal error: {0}; the server log has the details")]
    Internal(String),
    /// An error that reached this request second-hand, with the code of the original: a queued
    /// create that failed or was cancelled, or a removal several deleters waited for.
    #[error("{message}")]
    Reported { code: ErrorCode, message: String },
}

impl SessionError {
    /// The stable code clients see; `api::error` turns it into a status.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) | Self::HomeNotFound(_) => ErrorCode::NotFound,
            Self::UnknownTemplate { .. } => ErrorCode::UnknownTemplate,
            Self::InvalidTtl(_) => ErrorCode::InvalidTtl,
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::QuotaExceeded { .. } | Self::HibernatedQuotaExceeded { .. } => {
                ErrorCode::QuotaExceeded
            }
            Self::NotRunning { .. }
            | Self::Unavailable { .. }
            | Self::DeletedDuringCreate(_)
            | Self::HomeInUse { .. } => ErrorCode::Conflict,
            Self::Runtime(RuntimeError::Unavailable(_)) => ErrorCode::EngineUnavailable,
            Self::Runtime(RuntimeError::ImageMissing(_)) => ErrorCode::Misconfigured,
            Self::Runtime(RuntimeError::InUse(_)) => ErrorCode::Conflict,
            Self::Runtime(_)
            | Self::AgentNotReady { .. }
            | Self::CreateTimedOut { .. }
            | Self::WakeTimedOut { .. }
            | Self::AddressPending { .. }
            | Self::Seed { .. } => ErrorCode::SessionFailed,
            Self::Store(store) => store.code(),
            Self::ManagerGone | Self::Internal(_) => ErrorCode::Internal,
            Self::NotLeader | Self::NoLeader(_) => ErrorCode::StoreUnavailable,
            Self::Reported { code, .. } => *code,
        }
    }
}

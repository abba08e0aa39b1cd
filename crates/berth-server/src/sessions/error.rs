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
    #[error("session {id}: {source}")]
    Agent { id: String, source: AgentError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the session manager has stopped")]
    ManagerGone,
}

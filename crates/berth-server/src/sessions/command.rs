//! The closed set of requests the session manager accepts. Handlers and background tasks send
//! these; only the manager acts on them, so every state transition has one author.

use berth_proto::{CreateSession, Session};
use tokio::sync::oneshot;

use super::SessionError;
use crate::{auth::Principal, runtime::ManagedContainer};

pub type Reply<T> = oneshot::Sender<Result<T, SessionError>>;

#[derive(Debug)]
pub enum Command {
    /// Create a session owned by `caller`; replies once it is `running` (or has failed).
    Create {
        caller: Principal,
        request: CreateSession,
        reply: Reply<Created>,
    },
    /// Give up a queued create.
    CancelQueued {
        caller: Principal,
        ticket: String,
        reply: Reply<()>,
    },
    /// Stop and remove a session; replies once its container is gone. Idempotent.
    Delete {
        caller: Principal,
        id: String,
        reply: Reply<()>,
    },
    /// Move the expiry to `ttl_seconds` from now, within the template's maximum lifetime.
    Extend {
        caller: Principal,
        id: String,
        ttl_seconds: u64,
        reply: Reply<Session>,
    },

    /// A create task finished: the container is up, its agent answered and the workspace is
    /// seeded, or it failed and the task already removed whatever it had made.
    CreateFinished {
        id: String,
        outcome: Result<Started, SessionError>,
    },
    /// A removal task finished.
    RemoveFinished {
        id: String,
        outcome: Result<(), SessionError>,
    },
    /// Stop sessions past their expiry; retry removals that failed.
    Reap,
    /// How the warm pools stand.
    PoolStatus {
        reply: oneshot::Sender<Vec<berth_proto::pool::PoolStatus>>,
    },
    /// Converge the store with the containers the engine reported.
    Reconcile {
        observed: Vec<ManagedContainer>,
        reply: oneshot::Sender<ReconcileReport>,
    },
}

/// The answer to a create.
#[derive(Debug)]
pub enum Created {
    Running(Session),
    /// Waiting for capacity; the receiver follows the request to its end.
    Queued(tokio::sync::watch::Receiver<berth_proto::queue::QueueStatus>),
}

/// A container whose agent answered.
#[derive(Debug)]
pub struct Started {
    pub container_id: String,
    pub agent_addr: std::net::SocketAddr,
}

/// What one reconcile pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Containers removed because no live session claims them.
    pub orphans_removed: usize,
    /// Sessions marked failed because their container vanished, exited or never finished.
    pub sessions_failed: usize,
}

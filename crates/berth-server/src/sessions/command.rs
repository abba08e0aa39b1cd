//! The closed set of requests the session manager accepts. Handlers and background tasks send
//! these; only the manager acts on them, so every state transition has one author.

use berth_proto::{CreateSession, Session};
use tokio::sync::oneshot;

use super::{
    SessionError,
    actor::{Observed, Slept},
};
use crate::{auth::Principal, runtime::ContainerEvent};

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
    /// Put a running session to sleep: its files into a snapshot image, its container removed.
    /// Replies once it is `hibernated`.
    Hibernate {
        caller: Principal,
        id: String,
        reply: Reply<Session>,
    },
    /// Wake a hibernated session (or one hibernating, once it has slept); replies once it is
    /// `running`. Many callers, one restore.
    Resume {
        caller: Principal,
        id: String,
        reply: Reply<Session>,
    },
    /// Keep a running session awake `seconds` from now, whatever its idle policy says.
    Keepalive {
        caller: Principal,
        id: String,
        seconds: u64,
        reply: Reply<Session>,
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
    /// A hibernation's engine work finished: the snapshot image it made, or why it failed
    /// (the container is then still there, stopped).
    HibernateFinished {
        id: String,
        outcome: Result<Slept, SessionError>,
    },
    /// A periodic checkpoint's commit finished: its image, or why not.
    CheckpointFinished {
        id: String,
        outcome: Result<String, SessionError>,
    },
    /// A restore's container is up and its agent answered, or the restore failed (and removed
    /// whatever container it had made).
    RestoreFinished {
        id: String,
        outcome: Result<Started, SessionError>,
    },
    /// A session near its idle deadline was asked whether it runs `keepalive` processes.
    KeepaliveProbed {
        id: String,
        deadline: chrono::DateTime<chrono::Utc>,
        busy: bool,
    },
    /// The disk watchdog measured these running sessions' files.
    DisksMeasured { measured: Vec<super::disk::DiskUse> },
    /// Stop sessions past their expiry; retry removals that failed.
    Reap,
    /// These containers' node is being emptied: hibernate their sessions (to wake on another
    /// node), remove pooled ones (the pool refills elsewhere).
    Evict { containers: Vec<String> },
    /// How the warm pools stand.
    PoolStatus {
        reply: oneshot::Sender<Vec<berth_proto::pool::PoolStatus>>,
    },
    /// How full the host is, who waits, the pools.
    Capacity {
        reply: Reply<berth_proto::pool::Capacity>,
    },
    /// Converge the store with what the engine holds; `reply`, if any, hears once done.
    Reconcile {
        observed: Observed,
        reply: Option<oneshot::Sender<ReconcileReport>>,
    },

    /// The engine's event stream is (again) connected: a new generation of the engine.
    EngineConnected,
    /// The connection to the engine broke: it stopped, is restarting, or cannot be reached.
    EngineLost { reason: String },
    /// One of this instance's containers changed behind the actor's back, or by its own hand.
    ContainerChanged(ContainerEvent),
    /// A session's stopped container was started again and its agent answered at this address
    /// (read anew from the engine), or that failed.
    RestartFinished {
        id: String,
        /// Whether the session's timeline tells of it (not for a start someone else made).
        announce: bool,
        outcome: Result<std::net::SocketAddr, SessionError>,
    },
}

impl Command {
    /// The command's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::CancelQueued { .. } => "cancel_queued",
            Self::Delete { .. } => "delete",
            Self::Hibernate { .. } => "hibernate",
            Self::Resume { .. } => "resume",
            Self::Extend { .. } => "extend",
            Self::Keepalive { .. } => "keepalive",
            Self::CreateFinished { .. } => "create_finished",
            Self::RemoveFinished { .. } => "remove_finished",
            Self::HibernateFinished { .. } => "hibernate_finished",
            Self::RestoreFinished { .. } => "restore_finished",
            Self::CheckpointFinished { .. } => "checkpoint_finished",
            Self::KeepaliveProbed { .. } => "keepalive_probed",
            Self::DisksMeasured { .. } => "disks_measured",
            Self::Reap => "reap",
            Self::Evict { .. } => "evict",
            Self::PoolStatus { .. } => "pool_status",
            Self::Capacity { .. } => "capacity",
            Self::Reconcile { .. } => "reconcile",
            Self::EngineConnected => "engine_connected",
            Self::EngineLost { .. } => "engine_lost",
            Self::ContainerChanged(_) => "container_changed",
            Self::RestartFinished { .. } => "restart_finished",
        }
    }
}

/// The answer to a create.
#[derive(Debug)]
pub enum Created {
    /// Boxed: a session is large beside a receiver.
    Running(Box<Session>),
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

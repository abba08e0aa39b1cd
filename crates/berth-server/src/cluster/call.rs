//! The lifecycle requests an instance that does not lead sends to the one that does: the
//! closed set of what changes sessions on behalf of a caller, and their answers.

use berth_proto::{
    CreateSession, Session,
    pool::{Capacity, PoolStatus},
    queue::QueueStatus,
    snapshot::Snapshot,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{auth::Principal, sessions::SessionError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// Create, or queue when the host is full.
    Create {
        caller: Principal,
        request: CreateSession,
    },
    CancelQueued {
        caller: Principal,
        ticket: String,
    },
    QueueStatus {
        caller: Principal,
        ticket: String,
    },
    Delete {
        caller: Principal,
        id: String,
    },
    Extend {
        caller: Principal,
        id: String,
        ttl_seconds: u64,
    },
    Hibernate {
        caller: Principal,
        id: String,
    },
    Resume {
        caller: Principal,
        id: String,
    },
    Keepalive {
        caller: Principal,
        id: String,
        seconds: u64,
    },
    PoolStatus,
    Capacity,
    CreateSnapshot {
        caller: Principal,
        session_id: String,
        name: String,
    },
    DeleteSnapshot {
        caller: Principal,
        id: String,
    },
    /// Work seen in sessions on the sending instance, for the leader's idle policy.
    Activity {
        seen: Vec<(String, DateTime<Utc>)>,
    },
}

impl Call {
    /// Whether sending it twice does no harm, so a call whose answer was lost may be sent
    /// again (to the same or a new leader).
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, Self::Create { .. } | Self::CreateSnapshot { .. })
    }
}

/// A call's answer in this process.
#[derive(Debug)]
pub enum Answer {
    Done,
    Session(Session),
    /// A create waiting for capacity; the receiver follows it to its end.
    Queued(watch::Receiver<QueueStatus>),
    Queue(QueueStatus),
    Pools(Vec<PoolStatus>),
    Capacity(Box<Capacity>),
    Snapshot(Snapshot),
}

/// A call's answer between instances: a queued create travels as its status at that moment.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", content = "value", rename_all = "snake_case")]
pub enum WireAnswer {
    Done,
    Session(Session),
    Queued(QueueStatus),
    Queue(QueueStatus),
    Pools(Vec<PoolStatus>),
    Capacity(Box<Capacity>),
    Snapshot(Snapshot),
}

impl From<Answer> for WireAnswer {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Done => Self::Done,
            Answer::Session(session) => Self::Session(session),
            Answer::Queued(status) => Self::Queued(status.borrow().clone()),
            Answer::Queue(status) => Self::Queue(status),
            Answer::Pools(pools) => Self::Pools(pools),
            Answer::Capacity(capacity) => Self::Capacity(capacity),
            Answer::Snapshot(snapshot) => Self::Snapshot(snapshot),
        }
    }
}

fn unexpected(answer: &Answer) -> SessionError {
    SessionError::Internal(format!("the leading instance answered {answer:?}"))
}

impl Answer {
    pub fn done(self) -> Result<(), SessionError> {
        match self {
            Self::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    pub fn session(self) -> Result<Session, SessionError> {
        match self {
            Self::Session(session) => Ok(session),
            other => Err(unexpected(&other)),
        }
    }

    pub fn queue(self) -> Result<QueueStatus, SessionError> {
        match self {
            Self::Queue(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }

    pub fn pools(self) -> Result<Vec<PoolStatus>, SessionError> {
        match self {
            Self::Pools(pools) => Ok(pools),
            other => Err(unexpected(&other)),
        }
    }

    pub fn capacity(self) -> Result<Capacity, SessionError> {
        match self {
            Self::Capacity(capacity) => Ok(*capacity),
            other => Err(unexpected(&other)),
        }
    }

    pub fn snapshot(self) -> Result<Snapshot, SessionError> {
        match self {
            Self::Snapshot(snapshot) => Ok(snapshot),
            other => Err(unexpected(&other)),
        }
    }
}

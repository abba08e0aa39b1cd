//! The session lifecycle. [`SessionManager`] is the handle the API uses; behind it one task,
//! the actor in `actor.rs`, owns every state transition. Reads go straight to the store.

mod activity;
mod actor;
mod command;
mod engine;
mod error;
mod pool;
mod queue;
mod restore_times;
mod snapshots;
mod validate;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use berth_proto::{
    CreateSession, ErrorDetail, Session, SessionState,
    queue::{QueueState, QueueStatus},
};
use tokio::sync::{mpsc, oneshot};

pub use activity::{Activity, Tap};
pub use command::{Command, Created, ReconcileReport, Started};
pub use engine::EngineState;
pub use error::SessionError;
pub use queue::QueueTickets;
pub use restore_times::RestoreTimes;
pub use snapshots::snapshot_repository;
pub use validate::label_filter as parse_label_filter;

use crate::{
    agent_client::AgentClient,
    auth::Principal,
    config::TemplateConfig,
    runtime::Runtime,
    store::{SessionFilter, Store},
};

/// The longest a request waits for a sleeping session to wake before it answers 503.
const WAKE_WAIT: Duration = Duration::from_secs(60);

/// What the session manager needs to do its work.
#[derive(Debug, Clone)]
pub struct ManagerContext {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn Runtime>,
    pub agent: AgentClient,
    pub templates: Arc<BTreeMap<String, TemplateConfig>>,
    pub sessions_per_user: u32,
    /// Hibernated sessions one user may keep.
    pub max_hibernated: u32,
    /// How long a session may stay hibernated before it is deleted.
    pub hibernated_ttl: Duration,
    /// A hibernation that gives a snapshot more layers of its own folds them into one.
    pub compact_after_layers: u32,
    /// Where hibernations' and checkpoints' images go: `berth-snapshot`, or
    /// `<registry>/berth-snapshot` with `snapshots.registry`, whose images are pushed.
    pub snapshot_repository: String,
    /// With a registry: keep the engine's copy of a pushed image.
    pub keep_local_snapshots: bool,
    pub agent_ready_timeout: Duration,
    /// Largest file one upload may write inside a session.
    pub max_file_bytes: u64,
    /// Containers being created at once, at most.
    pub create_slots: Arc<tokio::sync::Semaphore>,
    pub capacity: crate::config::CapacityConfig,
    pub tickets: QueueTickets,
    /// How long a create or claim may take from its container's creation to `running`.
    pub create_timeout: Duration,
    pub engine: Arc<EngineState>,
    pub activity: Arc<Activity>,
    /// How long restores take lately, recorded by the actor's restores.
    pub restore_times: Arc<RestoreTimes>,
}

#[derive(Debug, Clone)]
pub struct SessionManager {
    commands: mpsc::Sender<Command>,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    tickets: QueueTickets,
    engine: Arc<EngineState>,
    activity: Arc<Activity>,
    restore_times: Arc<RestoreTimes>,
}

impl SessionManager {
    /// Starts the actor. It runs until every handle is dropped.
    pub fn spawn(ctx: ManagerContext) -> Self {
        let (commands, inbox) = mpsc::channel(1024);
        let manager = Self {
            commands: commands.clone(),
            store: ctx.store.clone(),
            runtime: ctx.runtime.clone(),
            tickets: ctx.tickets.clone(),
            engine: ctx.engine.clone(),
            activity: ctx.activity.clone(),
            restore_times: ctx.restore_times.clone(),
        };
        // Before anyone looks at the engine: the watcher replays what happened from here on.
        let started = std::time::SystemTime::now();
        tokio::spawn(actor::Actor::new(ctx, commands.downgrade(), inbox).run(started));
        manager
    }

    /// Someone worked in the session just now (a file, an exec, a preview, the UI's beacon).
    pub fn touch(&self, id: &str) {
        self.activity.touch(id);
    }

    /// For relaying one of the session's WebSockets: its input counts as activity, and with
    /// `notices` the client also hears the control plane's idle warnings.
    pub fn tap(&self, id: &str, notices: bool) -> Tap {
        Tap::new(self.activity.clone(), id, notices)
    }

    /// Keeps a session awake `seconds` from now, whatever its idle policy says.
    pub async fn keepalive(
        &self,
        caller: Principal,
        id: String,
        seconds: u64,
    ) -> Result<Session, SessionError> {
        self.ask(|reply| Command::Keepalive {
            caller,
            id,
            seconds,
            reply,
        })
        .await
    }

    /// What the manager knows of the engine.
    pub fn engine(&self) -> &EngineState {
        &self.engine
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(command::Reply<T>) -> Command,
    ) -> Result<T, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| SessionError::ManagerGone)?;
        // A reply dropped unanswered means the command failed inside the actor (which logged
        // it and went on), not that the manager stopped.
        answer.await.map_err(|_| {
            SessionError::Internal("the session manager could not finish this request".into())
        })?
    }

    /// Creates a session, waiting in the queue as long as it takes when the host is full.
    pub async fn create(
        &self,
        caller: Principal,
        request: CreateSession,
    ) -> Result<Session, SessionError> {
        match self.create_or_queue(caller, request).await? {
            Created::Running(session) => Ok(session),
            Created::Queued(mut status) => loop {
                let current = status.borrow_and_update().clone();
                match current.state {
                    QueueState::Admitted => {
                        return current.session.ok_or(SessionError::ManagerGone);
                    }
                    QueueState::Failed => {
                        let error = current.error.unwrap_or(ErrorDetail {
                            code: berth_proto::ErrorCode::Internal,
                            message: "the queued create failed".into(),
                        });
                        return Err(SessionError::Reported {
                            code: error.code,
                            message: error.message,
                        });
                    }
                    QueueState::Queued => status
                        .changed()
                        .await
                        .map_err(|_| SessionError::ManagerGone)?,
                }
            },
        }
    }

    /// Creates a session, or answers at once with a queue ticket when the host is full.
    pub async fn create_or_queue(
        &self,
        caller: Principal,
        request: CreateSession,
    ) -> Result<Created, SessionError> {
        self.ask(|reply| Command::Create {
            caller,
            request,
            reply,
        })
        .await
    }

    /// Where a queued create stands; someone else's ticket is not found.
    pub fn queue_status(
        &self,
        caller: &Principal,
        ticket: &str,
    ) -> Result<QueueStatus, SessionError> {
        self.tickets
            .status(caller, ticket)
            .ok_or_else(|| SessionError::NotFound(format!("queued request {ticket}")))
    }

    pub async fn cancel_queued(
        &self,
        caller: Principal,
        ticket: String,
    ) -> Result<(), SessionError> {
        self.ask(|reply| Command::CancelQueued {
            caller,
            ticket,
            reply,
        })
        .await
    }

    pub async fn delete(&self, caller: Principal, id: String) -> Result<(), SessionError> {
        self.ask(|reply| Command::Delete { caller, id, reply })
            .await
    }

    pub async fn extend(
        &self,
        caller: Principal,
        id: String,
        ttl_seconds: u64,
    ) -> Result<Session, SessionError> {
        self.ask(|reply| Command::Extend {
            caller,
            id,
            ttl_seconds,
            reply,
        })
        .await
    }

    /// Puts a running session to sleep; answers once it is `hibernated`.
    pub async fn hibernate(&self, caller: Principal, id: String) -> Result<Session, SessionError> {
        self.ask(|reply| Command::Hibernate { caller, id, reply })
            .await
    }

    /// Wakes a hibernated session; answers once it is `running` (at once if it is).
    pub async fn resume(&self, caller: Principal, id: String) -> Result<Session, SessionError> {
        self.ask(|reply| Command::Resume { caller, id, reply })
            .await
    }

    pub async fn get(&self, caller: &Principal, id: &str) -> Result<Session, SessionError> {
        match self.store.get_session(id).await? {
            Some(record) if caller.may_access(&record.owner) => {
                let mut session = record.to_public();
                if matches!(
                    session.state,
                    SessionState::Hibernating | SessionState::Hibernated | SessionState::Restoring
                ) {
                    session.wake_estimate_ms = self
                        .restore_times
                        .typical()
                        .map(|typical| typical.as_millis() as u64);
                }
                Ok(session)
            }
            // Someone else's session is reported exactly like a missing one.
            _ => Err(SessionError::NotFound(id.to_owned())),
        }
    }

    /// What happened to a session that its user should know, oldest first.
    pub async fn timeline(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<berth_proto::Timeline, SessionError> {
        self.get(caller, id).await?;
        let events = self
            .store
            .events(id)
            .await?
            .into_iter()
            .map(|event| berth_proto::TimelineEvent {
                at: event.at,
                kind: event.kind,
                message: event.message,
            })
            .collect();
        Ok(berth_proto::Timeline { events })
    }

    /// The caller's sessions (all sessions for the admin) with every given label. Ended
    /// sessions are included only when `include_ended` is set.
    pub async fn list(
        &self,
        caller: &Principal,
        labels: Vec<(String, String)>,
        include_ended: bool,
    ) -> Result<Vec<Session>, SessionError> {
        let base = if include_ended {
            SessionFilter::default()
        } else {
            SessionFilter::kept()
        };
        let filter = SessionFilter {
            owner: (!caller.admin).then(|| caller.name.clone()),
            labels,
            ..base
        };
        // Pool sessions (ready or failed to warm) belong to no one; `GET /api/v1/pool` shows them.
        Ok(self
            .store
            .list_sessions(&filter)
            .await?
            .iter()
            .filter(|r| !r.owner.is_empty())
            .map(|r| r.to_public())
            .collect())
    }

    /// Where a running session's agent listens and the secret it wants, for relaying work to it.
    pub async fn agent_endpoint(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<(std::net::SocketAddr, String), SessionError> {
        let mut record = match self.store.get_session(id).await? {
            Some(record) if caller.may_access(&record.owner) => record,
            _ => return Err(SessionError::NotFound(id.to_owned())),
        };
        // A session's container is down with its engine: say so, not that the session failed.
        self.engine.check()?;
        // Any access wakes a sleeping session; the request then goes on as if it never slept.
        if matches!(
            record.state,
            SessionState::Hibernated | SessionState::Hibernating | SessionState::Restoring
        ) {
            let woken = self.resume(caller.clone(), id.to_owned());
            tokio::time::timeout(WAKE_WAIT, woken).await.map_err(|_| {
                SessionError::WakeTimedOut {
                    id: id.to_owned(),
                    seconds: WAKE_WAIT.as_secs(),
                }
            })??;
            record = self
                .store
                .get_session(id)
                .await?
                .ok_or_else(|| SessionError::NotFound(id.to_owned()))?;
        }
        let addr = record.agent_addr.as_deref().and_then(|a| a.parse().ok());
        match (record.state, addr) {
            (SessionState::Running, Some(addr)) => Ok((addr, record.agent_secret)),
            (state, _) => Err(SessionError::Unavailable {
                id: record.id,
                state,
            }),
        }
    }

    /// Ready, warming and claimed counts of every template's warm pool.
    pub async fn pool_status(&self) -> Result<Vec<berth_proto::pool::PoolStatus>, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::PoolStatus { reply })
            .await
            .map_err(|_| SessionError::ManagerGone)?;
        answer
            .await
            .map_err(|_| SessionError::Internal("the pool status was not answered".into()))
    }

    /// Asks the actor to stop expired sessions now.
    pub async fn reap(&self) -> Result<(), SessionError> {
        self.commands
            .send(Command::Reap)
            .await
            .map_err(|_| SessionError::ManagerGone)
    }

    /// Lists the engine's containers and has the actor converge the store with them.
    pub async fn reconcile(&self) -> Result<ReconcileReport, SessionError> {
        let observed = actor::observe(self.runtime.as_ref(), self.store.as_ref()).await?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Reconcile {
                observed,
                reply: Some(reply),
            })
            .await
            .map_err(|_| SessionError::ManagerGone)?;
        answer
            .await
            .map_err(|_| SessionError::Internal("the reconcile was not answered".into()))
    }
}

#[cfg(test)]
mod tests;

//! The session lifecycle. [`SessionManager`] is the handle the API uses; behind it one task,
//! the actor in `actor.rs`, owns every state transition. Reads go straight to the store.

mod activity;
mod actor;
mod calls;
mod command;
mod disk;
mod engine;
mod error;
mod homes;
mod pool;
mod queue;
mod reached;
mod readiness;
mod snapshots;
pub mod timeline;
pub(crate) mod validate;
mod wake_outlook;

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::Duration,
};

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
use reached::Reached;
pub use readiness::Readiness;
pub use snapshots::snapshot_repository;
pub use validate::label_filter as parse_label_filter;
pub use wake_outlook::{WakeEstimate, WakeOutlook};

use crate::{
    agent_client::AgentClient,
    auth::Principal,
    cluster::{Answer, Call, LeaderClient},
    config::TemplateConfig,
    runtime::Runtime,
    store::{SessionFilter, Store, StoreError},
};

/// The longest a request waits for a sleeping session to wake before it answers 503.
const WAKE_WAIT: Duration = Duration::from_secs(60);
/// How long a request waits for the address of a running session whose row was just written
/// again from its container.
const ADDRESS_WAIT: Duration = Duration::from_secs(10);

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
    /// How long restores take lately and which wait for room, kept by the actor.
    pub wake_outlook: Arc<WakeOutlook>,
    /// Where lifecycle events go for webhooks.
    pub webhooks: crate::webhooks::Emitter,
    /// Collects sessions' agent journals into their timelines.
    pub journals: timeline::Collector,
}

#[derive(Debug, Clone)]
pub struct SessionManager {
    /// This instance's actor while it leads lifecycle; `None` while another instance does.
    actor: Arc<RwLock<Option<mpsc::Sender<Command>>>>,
    /// How lifecycle calls reach the leading instance when this one does not lead; `None`
    /// for a lone instance, which always leads.
    leader: Option<Arc<LeaderClient>>,
    /// What a new actor is made of when this instance comes to lead.
    ctx: ManagerContext,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    tickets: QueueTickets,
    engine: Arc<EngineState>,
    activity: Arc<Activity>,
    wake_outlook: Arc<WakeOutlook>,
    reached: Reached,
}

impl SessionManager {
    /// A lone instance: it leads lifecycle from the start. The actor runs until every handle
    /// is dropped.
    pub fn spawn(ctx: ManagerContext) -> Self {
        let manager = Self::without_actor(ctx, None);
        manager.lead();
        manager
    }

    /// One of several instances on a shared store: it leads only once [`Self::lead`] is
    /// called (by `cluster::leadership`), and until then sends lifecycle calls to the
    /// instance that does.
    pub fn clustered(ctx: ManagerContext, leader: LeaderClient) -> Self {
        Self::without_actor(ctx, Some(Arc::new(leader)))
    }

    fn without_actor(ctx: ManagerContext, leader: Option<Arc<LeaderClient>>) -> Self {
        Self {
            actor: Arc::default(),
            leader,
            store: ctx.store.clone(),
            runtime: ctx.runtime.clone(),
            tickets: ctx.tickets.clone(),
            engine: ctx.engine.clone(),
            activity: ctx.activity.clone(),
            wake_outlook: ctx.wake_outlook.clone(),
            reached: Reached::default(),
            ctx,
        }
    }

    /// Starts an actor here, unless one runs. Returns whether this instance just came to lead
    /// (it then reconciles before anything else: a leader's first act).
    pub fn lead(&self) -> bool {
        let mut actor = self.actor.write().unwrap_or_else(|p| p.into_inner());
        if actor.is_some() {
            return false;
        }
        let (commands, inbox) = mpsc::channel(1024);
        // Before anyone looks at the engine: the watcher replays what happened from here on.
        let started = std::time::SystemTime::now();
        tokio::spawn(actor::Actor::new(self.ctx.clone(), commands.downgrade(), inbox).run(started));
        *actor = Some(commands);
        true
    }

    /// Another instance leads now. This one's actor gets no more calls and ends once the
    /// tasks it started have reported (their writes are fenced out by then); what it kept in
    /// memory (pools, queue) the new leader rebuilds from the store and the engine.
    pub fn follow(&self) {
        self.actor.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Whether this instance leads lifecycle now.
    pub fn leads(&self) -> bool {
        self.here().is_some()
    }

    fn here(&self) -> Option<mpsc::Sender<Command>> {
        self.actor.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Someone worked in the session just now (a file, an exec, a preview, the UI's beacon).
    pub fn touch(&self, id: &str) {
        self.activity.touch(id);
    }

    /// Tells whoever watches the session's events, on whichever instance.
    pub fn notify(&self, id: &str, event: berth_proto::ports::SessionEvent) {
        self.activity.notify(id, event);
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
        self.call(Call::Keepalive {
            caller,
            id,
            seconds,
        })
        .await?
        .session()
    }

    /// What the manager knows of the engine.
    pub fn engine(&self) -> &EngineState {
        &self.engine
    }

    /// Creates a session, waiting in the queue as long as it takes when the host is full.
    pub async fn create(
        &self,
        caller: Principal,
        request: CreateSession,
    ) -> Result<Session, SessionError> {
        match self.create_or_queue(caller, request).await? {
            Created::Running(session) => Ok(*session),
            Created::Queued(mut status) => loop {
                let current = status.borrow_and_update().clone();
                match current.state {
                    QueueState::Admitted => {
                        return current.session.ok_or(SessionError::ManagerGone);
                    }
                    QueueState::Failed => {
                        let error = current.error.unwrap_or_else(|| {
                            ErrorDetail::new(
                                berth_proto::ErrorCode::Internal,
                                "the queued create failed",
                            )
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
        match self.call(Call::Create { caller, request }).await? {
            Answer::Session(session) => Ok(Created::Running(Box::new(session))),
            Answer::Queued(status) => Ok(Created::Queued(status)),
            other => Err(SessionError::Internal(format!(
                "a create was answered {other:?}"
            ))),
        }
    }

    /// Where a queued create stands; someone else's ticket is not found.
    pub async fn queue_status(
        &self,
        caller: &Principal,
        ticket: &str,
    ) -> Result<QueueStatus, SessionError> {
        self.call(Call::QueueStatus {
            caller: caller.clone(),
            ticket: ticket.to_owned(),
        })
        .await?
        .queue()
    }

    pub async fn cancel_queued(
        &self,
        caller: Principal,
        ticket: String,
    ) -> Result<(), SessionError> {
        self.call(Call::CancelQueued { caller, ticket })
            .await?
            .done()
    }

    pub async fn delete(&self, caller: Principal, id: String) -> Result<(), SessionError> {
        self.call(Call::Delete { caller, id }).await?.done()
    }

    pub async fn extend(
        &self,
        caller: Principal,
        id: String,
        ttl_seconds: u64,
    ) -> Result<Session, SessionError> {
        self.call(Call::Extend {
            caller,
            id,
            ttl_seconds,
        })
        .await?
        .session()
    }

    /// Puts a running session to sleep; answers once it is `hibernated`.
    pub async fn hibernate(&self, caller: Principal, id: String) -> Result<Session, SessionError> {
        self.call(Call::Hibernate { caller, id }).await?.session()
    }

    /// Wakes a hibernated session; answers once it is `running` (at once if it is).
    pub async fn resume(&self, caller: Principal, id: String) -> Result<Session, SessionError> {
        self.call(Call::Resume { caller, id }).await?.session()
    }

    pub async fn get(&self, caller: &Principal, id: &str) -> Result<Session, SessionError> {
        self.get_record(caller, id)
            .await
            .map(|(session, _)| session)
    }

    /// [`Self::get`] with what an app inside said of its readiness (`GET .../sessions/{id}`):
    /// one more store read, which the other callers of `get` need not pay.
    pub async fn get_with_readiness(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Session, SessionError> {
        let (mut session, record) = self.get_record(caller, id).await?;
        if session.state == SessionState::Running {
            match Readiness::of(self.store.as_ref(), &record).await {
                Ok(Some(ready)) => {
                    session.ready_at = Some(ready.at);
                    session.ready_message = ready.message;
                }
                Ok(None) => {}
                // Unreadable, it is as if never said: the session itself is fine.
                Err(err) => tracing::warn!(%err, session = id, "readiness unreadable"),
            }
        }
        Ok(session)
    }

    async fn get_record(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<(Session, crate::store::SessionRecord), SessionError> {
        match self.store.get_session(id).await? {
            Some(record) if caller.may_access(&record.owner) => {
                let mut session = record.to_public();
                if matches!(
                    session.state,
                    SessionState::Hibernating | SessionState::Hibernated | SessionState::Restoring
                ) {
                    let estimate = self.wake_outlook.estimate(&session.id);
                    session.wake_estimate_ms = estimate.millis;
                    session.wake_queue_position = estimate.position;
                }
                Ok((session, record))
            }
            // Someone else's session is reported exactly like a missing one.
            _ => Err(SessionError::NotFound(id.to_owned())),
        }
    }

    /// What happened to a session and who did it, oldest first; what its agent noted since the
    /// last look (terminal commands, ports, processes ending) is collected first.
    pub async fn timeline(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<berth_proto::Timeline, SessionError> {
        self.get(caller, id).await?;
        self.collect_journal(id).await;
        let events = self
            .store
            .events(id)
            .await?
            .into_iter()
            .map(|event| berth_proto::TimelineEvent {
                at: event.at,
                kind: event.kind,
                message: event.message,
                actor: event.actor,
                data: event.data,
            })
            .collect();
        Ok(berth_proto::Timeline { events })
    }

    /// Moves what a running session's agent journaled into its timeline (nothing for a
    /// session that is not running: its agent's journal went with its container).
    pub async fn collect_journal(&self, id: &str) {
        if let Ok(Some(record)) = self.store.get_session(id).await {
            self.ctx.journals.collect(&record).await;
        }
    }

    /// Collects every running session's journal while this instance leads, every `every`,
    /// so ports reach webhooks and the timeline soon after they open, until aborted.
    pub fn sweep_journals(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        self.every_while_leading(every, |manager| async move {
            manager.ctx.journals.sweep().await;
            true
        })
    }

    /// Runs `work` every `every` while this instance leads, until aborted or `work` answers
    /// `false` (the actor is gone).
    fn every_while_leading<F, Fut>(
        &self,
        every: Duration,
        mut work: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut(SessionManager) -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let manager = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if manager.leads() && !work(manager.clone()).await {
                    return;
                }
            }
        })
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
        let mut record = match self.store.get_session(id).await {
            Ok(Some(record)) if caller.may_access(&record.owner) => record,
            Ok(_) => return Err(SessionError::NotFound(id.to_owned())),
            // The store does not answer: a running session this instance reached before is
            // reached again, so terminals, files and previews outlive a store outage.
            Err(err @ StoreError::Unavailable(_)) => {
                return self.reached.get(caller, id).ok_or(err.into());
            }
            Err(err) => return Err(err.into()),
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
        // A row written again from its container (the store had lost it) is running before
        // its address is read from the engine: that takes a moment, not a refusal.
        let deadline = tokio::time::Instant::now() + ADDRESS_WAIT;
        while record.state == SessionState::Running && record.agent_addr.is_none() {
            if tokio::time::Instant::now() >= deadline {
                return Err(SessionError::AddressPending {
                    id: record.id,
                    seconds: ADDRESS_WAIT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            record = self
                .store
                .get_session(id)
                .await?
                .ok_or_else(|| SessionError::NotFound(id.to_owned()))?;
        }
        let addr = record.agent_addr.as_deref().and_then(|a| a.parse().ok());
        match (record.state, addr) {
            (SessionState::Running, Some(addr)) => {
                self.reached
                    .remember(&record.id, &record.owner, addr, &record.agent_secret);
                Ok((addr, record.agent_secret))
            }
            (state, _) => {
                self.reached.forget(&record.id);
                Err(SessionError::Unavailable {
                    id: record.id,
                    state,
                })
            }
        }
    }

    /// How full the host is, who waits for room, and the warm pools.
    pub async fn capacity(&self) -> Result<berth_proto::pool::Capacity, SessionError> {
        self.call(Call::Capacity).await?.capacity()
    }

    /// Ready, warming and claimed counts of every template's warm pool.
    pub async fn pool_status(&self) -> Result<Vec<berth_proto::pool::PoolStatus>, SessionError> {
        self.call(Call::PoolStatus).await?.pools()
    }

    /// Asks the actor to stop expired sessions now, and to move sessions off nodes that drain;
    /// only the leading instance reaps, so this does nothing elsewhere.
    pub async fn reap(&self) -> Result<(), SessionError> {
        let Some(actor) = self.here() else {
            return Ok(());
        };
        actor
            .send(Command::Reap)
            .await
            .map_err(|_| SessionError::ManagerGone)?;
        match self.runtime.leaving().await {
            Ok(containers) if !containers.is_empty() => actor
                .send(Command::Evict { containers })
                .await
                .map_err(|_| SessionError::ManagerGone),
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::warn!(%err, "cannot tell which nodes drain; asked again at the next reap");
                Ok(())
            }
        }
    }

    /// Lists the engine's containers and has the actor converge the store with them. Only
    /// the leading instance reconciles (`NotLeader` elsewhere): once per cluster.
    pub async fn reconcile(&self) -> Result<ReconcileReport, SessionError> {
        let actor = self.here().ok_or(SessionError::NotLeader)?;
        let observed = actor::observe(self.runtime.as_ref(), self.store.as_ref()).await?;
        let (reply, answer) = oneshot::channel();
        actor
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

    /// The work seen here since the last call, for the leader's idle policy (see
    /// `cluster::leadership`, which sends it).
    pub fn activity_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
        self.activity.seen_since(since)
    }
}

#[cfg(test)]
mod tests;

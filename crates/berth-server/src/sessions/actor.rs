//! The one task that moves sessions between states.
//!
//! Slow work (engine calls, waiting for an agent) runs in tasks the actor spawns; they report
//! back with a command, and the actor applies the outcome. Because everything that changes a
//! session passes through this loop, delete-during-create, double delete and reconcile racing a
//! create are each decided in one place.

use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use berth_proto::{
    CreateSession, ErrorCode, ErrorDetail, Session, SessionState,
    agent::{MAX_FILE_BYTES_ENV, SECRET_ENV},
    queue::{QueueState, QueueStatus},
};
use chrono::{Duration as ChronoDuration, Utc};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::{
    Command, Created, ManagerContext, ReconcileReport, SessionError, Started,
    command::Reply,
    pool::Pool,
    queue::{FairQueue, Waiting},
    validate,
};
use crate::{
    auth::Principal,
    config::TemplateConfig,
    ids,
    runtime::{ContainerSpec, ManagedContainer, RuntimeError},
    store::{SessionFilter, SessionRecord},
};

const INTERRUPTED: &str = "interrupted: the control plane stopped during create";

/// The longest a busy actor puts off refilling the pools.
const REFILL_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// How many containers reconcile removes at once.
const REMOVAL_CONCURRENCY: usize = 16;

/// Who hears how a create ended.
#[derive(Debug)]
enum Responder {
    /// The request that asked, waiting for the answer.
    Caller(Reply<Created>),
    /// A request that waited in the queue; it hears through its ticket.
    Ticket(watch::Sender<QueueStatus>),
    /// A pool warm-up: no one is waiting.
    Pool,
}

impl Responder {
    fn is_pool(&self) -> bool {
        matches!(self, Self::Pool)
    }

    fn answer(self, result: Result<Session, SessionError>) {
        match self {
            Self::Caller(reply) => {
                let _ = reply.send(result.map(Created::Running));
            }
            Self::Ticket(status) => status.send_modify(|status| {
                status.position = None;
                status.estimated_wait_seconds = None;
                match result {
                    Ok(session) => {
                        status.state = QueueState::Admitted;
                        status.session = Some(session);
                    }
                    Err(err) => {
                        status.state = QueueState::Failed;
                        status.error = Some(ErrorDetail {
                            code: err.code(),
                            message: err.to_string(),
                        });
                    }
                }
            }),
            Self::Pool => {}
        }
    }
}

/// A claim from the pool whose row is not yet committed.
#[derive(Debug)]
struct PendingClaim {
    record: SessionRecord,
    responder: Responder,
    started: Instant,
    /// Env and seed for the agent, when the request or the template has any.
    agent_work: Option<(
        std::collections::BTreeMap<String, String>,
        Option<std::path::PathBuf>,
    )>,
}

/// The most claims one commit carries, so the first of a long burst is not kept waiting.
const MAX_CLAIMS_PER_COMMIT: usize = 64;

/// A create whose container is being made, or a claim whose agent is being configured.
#[derive(Debug)]
struct PendingCreate {
    responder: Responder,
    /// Set when the session was deleted meanwhile; holds the deleters waiting for removal.
    deleted_by: Option<Vec<Reply<()>>>,
    started: Instant,
}

#[derive(Debug)]
pub(super) struct Actor {
    ctx: ManagerContext,
    /// Lets spawned tasks report back without keeping the actor alive after every handle is gone.
    commands: mpsc::WeakSender<Command>,
    inbox: mpsc::Receiver<Command>,
    creating: HashMap<String, PendingCreate>,
    /// Sessions whose container is being removed, with the callers waiting for it.
    removing: HashMap<String, Vec<Reply<()>>>,
    pool: Pool,
    queue: FairQueue,
    /// How many seconds apart sessions have been ending lately (moving average), for the
    /// queue's wait estimates.
    seconds_between_ends: f64,
    last_end: Option<Instant>,
    last_refill: Instant,
    /// A command changed what the pools hold and their refill was put off.
    refill_owed: bool,
    pending_claims: Vec<PendingClaim>,
}

impl Actor {
    pub(super) fn new(
        ctx: ManagerContext,
        commands: mpsc::WeakSender<Command>,
        inbox: mpsc::Receiver<Command>,
    ) -> Self {
        Self {
            ctx,
            commands,
            inbox,
            creating: HashMap::new(),
            removing: HashMap::new(),
            pool: Pool::default(),
            queue: FairQueue::default(),
            seconds_between_ends: 30.0,
            last_end: None,
            last_refill: Instant::now(),
            refill_owed: false,
            pending_claims: Vec::new(),
        }
    }

    pub(super) async fn run(mut self) {
        while let Some(command) = self.inbox.recv().await {
            self.handle(command).await;
        }
    }

    async fn handle(&mut self, command: Command) {
        // Claims of a burst wait for one commit together; any other command sees them
        // committed, so nothing reads or changes a claimed row before it is durable.
        if !matches!(command, Command::Create { .. }) {
            self.commit_claims().await;
        }
        // Anything but a read may have changed what the pools hold or may hold.
        let refill = !matches!(command, Command::Extend { .. } | Command::PoolStatus { .. });
        if matches!(
            command,
            Command::RemoveFinished {
                outcome: Ok(()),
                ..
            }
        ) {
            self.session_ended();
        }
        self.dispatch(command).await;
        if refill {
            self.admit_waiting().await;
            self.refill_owed = true;
        }
        if self.inbox.is_empty() || self.pending_claims.len() >= MAX_CLAIMS_PER_COMMIT {
            self.commit_claims().await;
        }
        // Commands already waiting go first: a burst of claims is answered before the pool
        // starts warming replacements, which costs engine calls and store writes per session.
        // The refill is owed, not dropped: the next command to find the inbox empty (there is
        // one, since this one did not) pays it, and a steady stream still refills every so often.
        if self.refill_owed
            && (self.inbox.is_empty() || self.last_refill.elapsed() >= REFILL_AT_LEAST_EVERY)
        {
            self.refill_owed = false;
            self.last_refill = Instant::now();
            self.refill().await;
        }
    }

    async fn dispatch(&mut self, command: Command) {
        match command {
            Command::Create {
                caller,
                request,
                reply,
            } => self.create(caller, request, reply).await,
            Command::Delete { caller, id, reply } => self.delete(&caller, &id, reply).await,
            Command::Extend {
                caller,
                id,
                ttl_seconds,
                reply,
            } => {
                let _ = reply.send(self.extend(&caller, &id, ttl_seconds).await);
            }
            Command::CreateFinished { id, outcome } => self.create_finished(&id, outcome).await,
            Command::RemoveFinished { id, outcome } => self.remove_finished(&id, outcome).await,
            Command::Reap => self.reap().await,
            Command::CancelQueued {
                caller,
                ticket,
                reply,
            } => {
                let _ = reply.send(self.cancel_queued(&caller, &ticket));
            }
            Command::PoolStatus { reply } => {
                let _ = reply.send(self.pool.status(&self.ctx.templates));
            }
            Command::Reconcile { observed, reply } => {
                let _ = reply.send(self.reconcile(observed).await);
            }
        }
    }

    /// Runs `work` off the actor and feeds its result back in as a command.
    fn spawn_reporting<F>(&self, work: F)
    where
        F: Future<Output = Command> + Send + 'static,
    {
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let command = work.await;
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(command).await;
            }
        });
    }

    fn template(&self, name: &str) -> Result<&TemplateConfig, SessionError> {
        self.ctx
            .templates
            .get(name)
            .ok_or_else(|| SessionError::UnknownTemplate {
                name: name.to_owned(),
                known: self
                    .ctx
                    .templates
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    async fn find(&self, caller: &Principal, id: &str) -> Result<SessionRecord, SessionError> {
        match self.ctx.store.get_session(id).await? {
            Some(record) if caller.may_access(&record.owner) => Ok(record),
            _ => Err(SessionError::NotFound(id.to_owned())),
        }
    }

    async fn create(&mut self, caller: Principal, request: CreateSession, reply: Reply<Created>) {
        let started = Instant::now();
        let ttl = match self.admit(&caller, &request).await {
            Ok(ttl) => ttl,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        // A pooled session is already counted against capacity: claiming it never waits.
        if let Some(id) = self.pool.take(&request.template) {
            return self
                .claim(id, caller, request, ttl, Responder::Caller(reply), started)
                .await;
        }
        if self
            .template(&request.template)
            .is_ok_and(|t| t.pool.min_ready > 0)
        {
            crate::metrics::pool_miss(&request.template);
        }
        // Behind anyone already waiting, even if a slot just opened: first come, first served.
        if !self.queue.is_empty() || self.at_capacity().await {
            let status = self.enqueue(caller, request, ttl);
            let _ = reply.send(Ok(Created::Queued(status)));
            return;
        }
        self.create_cold(caller, request, ttl, Responder::Caller(reply))
            .await;
    }

    /// Checks a create request: template, TTL, env, labels, quota. Returns the TTL to use.
    /// Nothing is written before this passes, so a refusal leaves nothing behind.
    async fn admit(
        &self,
        caller: &Principal,
        request: &CreateSession,
    ) -> Result<u64, SessionError> {
        let template = self.template(&request.template)?;
        let ttl = request.ttl_seconds.unwrap_or(template.ttl_seconds);
        if ttl == 0 || ttl > template.max_ttl_seconds {
            return Err(SessionError::InvalidTtl(format!(
                "ttl_seconds must be between 1 and {} for template {:?}",
                template.max_ttl_seconds, request.template
            )));
        }
        validate::env(&request.env)?;
        validate::labels(&request.labels)?;
        if !caller.admin {
            let live = SessionFilter {
                owner: Some(caller.name.clone()),
                ..SessionFilter::live()
            };
            let held = self.ctx.store.list_sessions(&live).await?.len();
            // Requests waiting in the queue count too: queuing is no way around the quota. So
            // do claims not yet committed.
            let uncommitted = self
                .pending_claims
                .iter()
                .filter(|claim| claim.record.owner == caller.name)
                .count();
            let held = held + self.queue.held_by(&caller.name) + uncommitted;
            if held >= self.ctx.sessions_per_user as usize {
                return Err(SessionError::QuotaExceeded {
                    owner: caller.name.clone(),
                    limit: self.ctx.sessions_per_user,
                });
            }
        }
        Ok(ttl)
    }

    /// Writes the `creating` row and starts a task that makes the container. With no `reply`,
    /// the session is a pool warm-up owned by no one, and becomes `pooled` instead of `running`.
    async fn create_cold(
        &mut self,
        caller: Principal,
        request: CreateSession,
        ttl: u64,
        responder: Responder,
    ) {
        let Ok(template) = self.template(&request.template).cloned() else {
            return;
        };
        let now = Utc::now();
        let record = SessionRecord {
            id: ids::session_id(),
            owner: caller.name,
            template: request.template,
            state: SessionState::Creating,
            labels: request.labels,
            created_at: now,
            expires_at: now + seconds(ttl),
            last_activity: now,
            container_id: None,
            agent_addr: None,
            stop_reason: None,
            agent_secret: ids::secret(),
        };
        let mut env = template.env.clone();
        env.extend(request.env);
        env.insert(SECRET_ENV.to_owned(), record.agent_secret.clone());
        env.insert("BERTH_SESSION_ID".to_owned(), record.id.clone());
        env.insert(
            MAX_FILE_BYTES_ENV.to_owned(),
            self.ctx.max_file_bytes.to_string(),
        );
        let spec = ContainerSpec {
            session_id: record.id.clone(),
            owner: record.owner.clone(),
            template: record.template.clone(),
            image: template.image.clone(),
            memory_bytes: i64::try_from(template.memory_mb.saturating_mul(1024 * 1024))
                .unwrap_or(i64::MAX),
            nano_cpus: (template.cpus * 1e9) as i64,
            pids_limit: template.pids,
            env,
        };
        if let Err(err) = self.ctx.store.insert_session(&record).await {
            responder.answer(Err(err.into()));
            return;
        }
        // A pooled session gets its seed when it is claimed: the seed belongs to the claim.
        let seed = if responder.is_pool() {
            self.pool.warming_started(&record.template);
            None
        } else {
            template.workspace_seed.clone()
        };
        let id = record.id.clone();
        self.creating.insert(
            id.clone(),
            PendingCreate {
                responder,
                deleted_by: None,
                started: Instant::now(),
            },
        );
        let ctx = self.ctx.clone();
        let secret = record.agent_secret;
        self.spawn_reporting(async move {
            let outcome = make_container(&ctx, &spec, &secret, seed).await;
            Command::CreateFinished { id, outcome }
        });
    }

    /// Hands pooled session `id` to `caller`. The rewritten row joins the claims waiting to be
    /// committed together (`commit_claims`); the caller hears once it is durable, or, with a
    /// per-claim env or seed for the agent, after that, through `creating` like any create.
    async fn claim(
        &mut self,
        id: String,
        caller: Principal,
        request: CreateSession,
        ttl: u64,
        responder: Responder,
        started: Instant,
    ) {
        let record = match self.ctx.store.get_session(&id).await {
            Ok(Some(record)) if record.state == SessionState::Pooled => record,
            // Gone from under the pool (failed, deleted): make one the slow way.
            _ => return self.create_cold(caller, request, ttl, responder).await,
        };
        let seed = self
            .template(&record.template)
            .ok()
            .and_then(|t| t.workspace_seed.clone());
        let now = Utc::now();
        let mut claimed = SessionRecord {
            owner: caller.name,
            labels: request.labels,
            created_at: now,
            expires_at: now + seconds(ttl),
            last_activity: now,
            ..record
        };
        let agent_work = (!request.env.is_empty() || seed.is_some()).then_some((request.env, seed));
        claimed.state = if agent_work.is_some() {
            SessionState::Creating
        } else {
            SessionState::Running
        };
        self.pending_claims.push(PendingClaim {
            record: claimed,
            responder,
            started,
            agent_work,
        });
    }

    /// Writes the waiting claims in one commit (one fsync for a whole burst), then answers them,
    /// or starts the agent work of those that have some. A failed write puts the sessions back
    /// in the pool, untouched.
    async fn commit_claims(&mut self) {
        if self.pending_claims.is_empty() {
            return;
        }
        let claims = std::mem::take(&mut self.pending_claims);
        let records: Vec<SessionRecord> = claims.iter().map(|c| c.record.clone()).collect();
        if let Err(err) = self.ctx.store.update_sessions(&records).await {
            for claim in claims {
                self.pool
                    .add_ready(&claim.record.template, claim.record.id.clone());
                claim.responder.answer(Err(copy_error(&err)));
            }
            return;
        }
        for PendingClaim {
            record,
            responder,
            started,
            agent_work,
        } in claims
        {
            crate::metrics::pool_hit(&record.template, started.elapsed());
            match agent_work {
                None => responder.answer(Ok(record.to_public())),
                Some((env, seed)) => {
                    let pending = PendingCreate {
                        responder,
                        deleted_by: None,
                        started,
                    };
                    self.configure_claimed(record, pending, env, seed);
                }
            }
        }
    }

    /// Hands a claimed session's env and seed to its agent; the claim answers on
    /// `CreateFinished`, like a cold create.
    fn configure_claimed(
        &mut self,
        record: SessionRecord,
        pending: PendingCreate,
        env: std::collections::BTreeMap<String, String>,
        seed: Option<std::path::PathBuf>,
    ) {
        let id = record.id.clone();
        self.creating.insert(id.clone(), pending);
        let agent = self.ctx.agent.clone();
        let container_id = record.container_id.unwrap_or_default();
        let addr = record.agent_addr;
        let secret = record.agent_secret;
        self.spawn_reporting(async move {
            let outcome = async {
                let agent_addr: std::net::SocketAddr = addr
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| SessionError::Seed {
                        id: id.clone(),
                        message: "no agent address".into(),
                    })?;
                configure_agent(&agent, agent_addr, &secret, &id, env, seed).await?;
                Ok(Started {
                    container_id,
                    agent_addr,
                })
            }
            .await;
            Command::CreateFinished { id, outcome }
        });
    }

    /// At capacity: as many live sessions as allowed, or too little free memory on the host.
    async fn at_capacity(&self) -> bool {
        let live: u64 = match self.ctx.store.count_by_state().await {
            Ok(counts) => counts
                .iter()
                .filter(|(state, _)| state.is_live())
                .map(|(_, n)| n)
                .sum(),
            Err(_) => return false,
        };
        if live >= u64::from(self.ctx.capacity.max_sessions) {
            return true;
        }
        let floor = self.ctx.capacity.min_free_memory_mb;
        floor > 0 && crate::host::available_memory_mb().is_some_and(|free| free < floor)
    }

    fn enqueue(
        &mut self,
        caller: Principal,
        request: CreateSession,
        ttl: u64,
    ) -> watch::Receiver<QueueStatus> {
        let ticket = format!("q{}", ids::secret());
        let (status, watcher) = watch::channel(QueueStatus {
            ticket: ticket.clone(),
            state: QueueState::Queued,
            position: None,
            estimated_wait_seconds: None,
            status_url: format!("/api/v1/queue/{ticket}"),
            session: None,
            error: None,
        });
        self.ctx
            .tickets
            .insert(&ticket, &caller.name, watcher.clone());
        self.queue.push(Waiting {
            ticket,
            caller,
            request,
            ttl,
            status,
        });
        self.update_positions();
        watcher
    }

    /// Tells every waiting request where it stands.
    fn update_positions(&self) {
        for (index, waiting) in self.queue.in_order().into_iter().enumerate() {
            let position = index + 1;
            let estimate = (position as f64 * self.seconds_between_ends).ceil() as u64;
            waiting.status.send_modify(|status| {
                status.position = Some(position);
                status.estimated_wait_seconds = Some(estimate);
            });
        }
    }

    /// Admits waiting requests, fairly across owners, while capacity lasts.
    async fn admit_waiting(&mut self) {
        let mut admitted = false;
        while !self.queue.is_empty() && !self.at_capacity().await {
            let Some(waiting) = self.queue.pop() else {
                break;
            };
            admitted = true;
            let responder = Responder::Ticket(waiting.status);
            self.create_cold(waiting.caller, waiting.request, waiting.ttl, responder)
                .await;
        }
        if admitted {
            self.update_positions();
        }
    }

    fn cancel_queued(&mut self, caller: &Principal, ticket: &str) -> Result<(), SessionError> {
        let owned = self
            .queue
            .in_order()
            .iter()
            .any(|w| w.ticket == ticket && caller.may_access(&w.caller.name));
        let waiting = owned.then(|| self.queue.remove(ticket)).flatten();
        let waiting =
            waiting.ok_or_else(|| SessionError::NotFound(format!("queued request {ticket}")))?;
        Responder::Ticket(waiting.status).answer(Err(SessionError::Queued {
            code: ErrorCode::Conflict,
            message: format!("queued request {ticket} was cancelled"),
        }));
        self.update_positions();
        Ok(())
    }

    fn session_ended(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.last_end.replace(now) {
            let gap = now.duration_since(last).as_secs_f64();
            self.seconds_between_ends = 0.8 * self.seconds_between_ends + 0.2 * gap;
        }
    }

    /// Starts warming whatever the pools are short of, when nobody waits for capacity.
    async fn refill(&mut self) {
        // The shortfall is in memory and almost always empty; the store is asked about
        // capacity only when there is something to warm, and before each warm-up, so a pool
        // never pushes the host past `max_sessions`.
        if !self.queue.is_empty() {
            return;
        }
        for (template, missing) in self.pool.shortfall(&self.ctx.templates) {
            for _ in 0..missing {
                if self.at_capacity().await {
                    return;
                }
                let request = CreateSession {
                    template: template.clone(),
                    ..CreateSession::default()
                };
                let ttl = self
                    .ctx
                    .templates
                    .get(&template)
                    .map_or(1, |t| t.max_ttl_seconds);
                let pool_owner = Principal {
                    name: String::new(),
                    admin: true,
                };
                self.create_cold(pool_owner, request, ttl, Responder::Pool)
                    .await;
            }
        }
    }

    async fn create_finished(&mut self, id: &str, outcome: Result<Started, SessionError>) {
        let Some(pending) = self.creating.remove(id) else {
            return;
        };
        let record = match self.ctx.store.get_session(id).await {
            Ok(Some(record)) => record,
            other => {
                let err = match other {
                    Err(err) => err.into(),
                    _ => SessionError::NotFound(id.to_owned()),
                };
                pending.responder.answer(Err(err));
                return;
            }
        };
        let warming = pending.responder.is_pool();
        if warming {
            self.pool.warming_ended(&record.template, outcome.is_ok());
        } else {
            crate::metrics::session_created(pending.started.elapsed(), outcome.is_ok());
        }
        match (outcome, pending.deleted_by) {
            (Ok(started), None) => {
                let mut ready = record;
                ready.state = if warming {
                    SessionState::Pooled
                } else {
                    SessionState::Running
                };
                ready.container_id = Some(started.container_id);
                ready.agent_addr = Some(started.agent_addr.to_string());
                ready.last_activity = Utc::now();
                match self.ctx.store.update_session(&ready).await {
                    Ok(()) if warming => self.pool.add_ready(&ready.template, ready.id.clone()),
                    Ok(()) => pending.responder.answer(Ok(ready.to_public())),
                    Err(err) => {
                        // Without a durable row the session cannot be handed out. A removal
                        // failing here is retried by reconcile: the row is `failed`.
                        if let Some(container) =
                            self.fail(ready, "store write failed after create").await
                        {
                            let runtime = self.ctx.runtime.clone();
                            tokio::spawn(async move { runtime.remove(&container).await });
                        }
                        pending.responder.answer(Err(err.into()));
                    }
                }
            }
            (Ok(started), Some(deleters)) => {
                let mut stopping = record;
                stopping.container_id = Some(started.container_id);
                pending
                    .responder
                    .answer(Err(SessionError::DeletedDuringCreate(id.to_owned())));
                self.begin_removal(stopping, deleters).await;
            }
            (Err(err), deleters) => {
                if warming {
                    tracing::warn!(template = %record.template, %err, "warming a pooled session failed");
                }
                // The create task already removed whatever container it had made (a claim's
                // container is removed with the failed session by reconcile).
                let mut ended = record;
                match &deleters {
                    Some(_) => ended.state = SessionState::Stopped,
                    None => {
                        ended.state = SessionState::Failed;
                        ended.stop_reason = Some(format!("create_failed: {err}"));
                    }
                }
                let saved = self.ctx.store.update_session(&ended).await;
                for deleter in deleters.into_iter().flatten() {
                    let _ = deleter.send(saved.as_ref().map(|_| ()).map_err(copy_error));
                }
                pending.responder.answer(Err(err));
            }
        }
    }

    async fn delete(&mut self, caller: &Principal, id: &str, reply: Reply<()>) {
        let mut record = match self.find(caller, id).await {
            Ok(record) => record,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        match record.state {
            SessionState::Stopped | SessionState::Failed => {
                let _ = reply.send(Ok(()));
            }
            SessionState::Creating | SessionState::Stopping if self.creating.contains_key(id) => {
                record.state = SessionState::Stopping;
                record.stop_reason = Some("deleted".to_owned());
                if let Err(err) = self.ctx.store.update_session(&record).await {
                    let _ = reply.send(Err(err.into()));
                    return;
                }
                if let Some(pending) = self.creating.get_mut(id) {
                    pending.deleted_by.get_or_insert_with(Vec::new).push(reply);
                }
            }
            SessionState::Creating
            | SessionState::Pooled
            | SessionState::Running
            | SessionState::Stopping => {
                self.pool.forget(id);
                if record.state != SessionState::Stopping {
                    record.stop_reason = Some("deleted".to_owned());
                }
                self.begin_removal(record, vec![reply]).await;
            }
        }
    }

    /// Moves a session to `stopping` and removes its container; it becomes `stopped` when the
    /// removal succeeds. A removal already under way just gains more waiters.
    async fn begin_removal(&mut self, mut record: SessionRecord, waiters: Vec<Reply<()>>) {
        if let Some(existing) = self.removing.get_mut(&record.id) {
            existing.extend(waiters);
            return;
        }
        if record.state != SessionState::Stopping {
            record.state = SessionState::Stopping;
            if let Err(err) = self.ctx.store.update_session(&record).await {
                for waiter in waiters {
                    let _ = waiter.send(Err(copy_error(&err)));
                }
                return;
            }
        }
        self.removing.insert(record.id.clone(), waiters);
        let runtime = self.ctx.runtime.clone();
        let id = record.id;
        let container_id = record.container_id;
        self.spawn_reporting(async move {
            let outcome = match container_id {
                Some(container_id) => runtime
                    .remove(&container_id)
                    .await
                    .map_err(SessionError::from),
                None => Ok(()),
            };
            Command::RemoveFinished { id, outcome }
        });
    }

    async fn remove_finished(&mut self, id: &str, outcome: Result<(), SessionError>) {
        let waiters = self.removing.remove(id).unwrap_or_default();
        let result = match outcome {
            Ok(()) => self.mark_stopped(id).await,
            // The row stays `stopping`; the next reap retries the removal.
            Err(err) => Err(err),
        };
        for waiter in waiters {
            let _ = waiter.send(result.as_ref().map(|_| ()).map_err(copy_session_error));
        }
    }

    async fn mark_stopped(&self, id: &str) -> Result<(), SessionError> {
        let Some(mut record) = self.ctx.store.get_session(id).await? else {
            return Ok(());
        };
        record.state = SessionState::Stopped;
        record
            .stop_reason
            .get_or_insert_with(|| "deleted".to_owned());
        self.ctx.store.update_session(&record).await?;
        Ok(())
    }

    /// Marks a session failed with `reason`; returns its container, which the caller removes.
    async fn fail(&mut self, mut record: SessionRecord, reason: &str) -> Option<String> {
        self.pool.forget(&record.id);
        tracing::warn!(session = %record.id, reason, "session failed");
        record.state = SessionState::Failed;
        record.stop_reason = Some(reason.to_owned());
        if let Err(err) = self.ctx.store.update_session(&record).await {
            tracing::error!(session = %record.id, %err, "could not record the failure");
        }
        record.container_id
    }

    async fn extend(
        &self,
        caller: &Principal,
        id: &str,
        ttl_seconds: u64,
    ) -> Result<Session, SessionError> {
        let mut record = self.find(caller, id).await?;
        if record.state != SessionState::Running {
            return Err(SessionError::NotRunning {
                id: record.id,
                state: record.state,
            });
        }
        let max_ttl = self.template(&record.template)?.max_ttl_seconds;
        let latest = record.created_at + seconds(max_ttl);
        let now = Utc::now();
        let wanted = now + seconds(ttl_seconds);
        if ttl_seconds == 0 || wanted > latest {
            let remaining = (latest - now).num_seconds().max(0);
            return Err(SessionError::InvalidTtl(format!(
                "sessions of template {:?} live at most {max_ttl} s; this one can be extended by at most {remaining} s",
                record.template
            )));
        }
        record.expires_at = wanted;
        record.last_activity = now;
        self.ctx.store.update_session(&record).await?;
        Ok(record.to_public())
    }

    async fn reap(&mut self) {
        let now = Utc::now();
        let expired = SessionFilter {
            states: Some(vec![SessionState::Running]),
            expired_at: Some(now),
            ..SessionFilter::default()
        };
        let stuck = SessionFilter {
            states: Some(vec![SessionState::Stopping]),
            ..SessionFilter::default()
        };
        for filter in [expired, stuck] {
            let records = match self.ctx.store.list_sessions(&filter).await {
                Ok(records) => records,
                Err(err) => {
                    tracing::warn!(%err, "reap: store unavailable");
                    return;
                }
            };
            for mut record in records {
                if self.creating.contains_key(&record.id) || self.removing.contains_key(&record.id)
                {
                    continue;
                }
                if record.state == SessionState::Running {
                    tracing::info!(session = %record.id, "ttl expired");
                    record.stop_reason = Some("ttl_expired".to_owned());
                }
                self.begin_removal(record, Vec::new()).await;
            }
        }
    }

    /// Converges the store with the engine. `observed` was listed before this runs, so a
    /// container missing from it may have appeared since: absences are confirmed with the
    /// engine before a session is failed for them.
    async fn reconcile(&mut self, observed: Vec<ManagedContainer>) -> ReconcileReport {
        let started = Instant::now();
        let mut report = ReconcileReport::default();
        let live = match self.ctx.store.list_sessions(&SessionFilter::live()).await {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(%err, "reconcile: store unavailable");
                return report;
            }
        };
        let mut live: HashMap<String, SessionRecord> = live
            .into_iter()
            .map(|record| (record.id.clone(), record))
            .collect();
        let mut seen = HashSet::new();
        // Containers to remove, all at once at the end: concurrently, and before this pass
        // reports, so a startup reconcile leaves a clean engine behind it.
        let mut doomed = Vec::new();

        for container in observed {
            let in_flight = self.creating.contains_key(&container.session_id)
                || self.removing.contains_key(&container.session_id);
            seen.insert(container.session_id.clone());
            let Some(record) = live.get(&container.session_id).cloned() else {
                // No live session claims it: left over from a crash or from a removal that failed.
                report.orphans_removed += 1;
                tracing::info!(container = %container.id, session = %container.session_id, "removing orphan container");
                doomed.push(container.id);
                continue;
            };
            if in_flight {
                continue;
            }
            let record = SessionRecord {
                container_id: Some(container.id.clone()),
                ..record
            };
            match record.state {
                SessionState::Creating => {
                    report.sessions_failed += 1;
                    doomed.extend(self.fail(record, INTERRUPTED).await);
                }
                SessionState::Running | SessionState::Pooled if !container.running => {
                    report.sessions_failed += 1;
                    doomed.extend(self.fail(record, "container_exited").await);
                }
                // Ready from before a restart: back into the pool.
                SessionState::Pooled => self.pool.add_ready(&record.template, record.id),
                SessionState::Stopping => self.begin_removal(record, Vec::new()).await,
                _ => {}
            }
        }

        live.retain(|id, _| {
            !seen.contains(id) && !self.creating.contains_key(id) && !self.removing.contains_key(id)
        });
        for record in live.into_values() {
            match record.state {
                SessionState::Creating => {
                    report.sessions_failed += 1;
                    doomed.extend(self.fail(record, INTERRUPTED).await);
                }
                SessionState::Running | SessionState::Pooled => {
                    let container = match &record.container_id {
                        Some(container_id) => self.ctx.runtime.inspect(container_id).await,
                        None => Ok(None),
                    };
                    match container {
                        Ok(None) => {
                            report.sessions_failed += 1;
                            doomed.extend(self.fail(record, "container_vanished").await);
                        }
                        Ok(Some(container)) if !container.running => {
                            report.sessions_failed += 1;
                            doomed.extend(self.fail(record, "container_exited").await);
                        }
                        Ok(Some(_)) if record.state == SessionState::Pooled => {
                            self.pool.add_ready(&record.template, record.id);
                        }
                        Ok(Some(_)) => {}
                        Err(err) => tracing::warn!(%err, "reconcile: engine unavailable"),
                    }
                }
                // Its container is already gone: the stop is complete.
                SessionState::Stopping => {
                    if let Err(err) = self.mark_stopped(&record.id).await {
                        tracing::warn!(%err, session = %record.id, "could not mark stopped");
                    }
                }
                SessionState::Stopped | SessionState::Failed => {}
            }
        }
        let runtime = &self.ctx.runtime;
        futures_util::stream::iter(doomed)
            .for_each_concurrent(REMOVAL_CONCURRENCY, |container| async move {
                if let Err(err) = runtime.remove(&container).await {
                    tracing::warn!(%err, %container, "could not remove; the next reconcile retries");
                }
            })
            .await;
        crate::metrics::reconciled(started.elapsed());
        report
    }
}

/// Makes, starts and waits for one session's container, then seeds its workspace. On any
/// failure it removes what it made, so a failed create leaves nothing on the engine.
async fn make_container(
    ctx: &ManagerContext,
    spec: &ContainerSpec,
    secret: &str,
    seed: Option<std::path::PathBuf>,
) -> Result<Started, SessionError> {
    // Bounded, so a burst of creates queues here instead of overwhelming the engine.
    let _slot = ctx
        .create_slots
        .acquire()
        .await
        .map_err(|_| SessionError::ManagerGone)?;
    let container_id = ctx.runtime.create(spec).await?;
    let started = async {
        let agent_addr = ctx.runtime.start(&container_id).await?;
        let agent_error = |source| SessionError::AgentNotReady {
            id: spec.session_id.clone(),
            source,
        };
        ctx.agent
            .wait_ready(agent_addr, secret, ctx.agent_ready_timeout)
            .await
            .map_err(agent_error)?;
        let no_env = std::collections::BTreeMap::new();
        configure_agent(
            &ctx.agent,
            agent_addr,
            secret,
            &spec.session_id,
            no_env,
            seed,
        )
        .await?;
        Ok::<_, SessionError>(agent_addr)
    }
    .await;
    match started {
        Ok(agent_addr) => Ok(Started {
            container_id,
            agent_addr,
        }),
        Err(err) => {
            if let Err(cleanup) = ctx.runtime.remove(&container_id).await {
                tracing::warn!(%cleanup, container = %container_id, "cleanup after failed create; reconcile will retry");
            }
            Err(err)
        }
    }
}

/// Gives a session what its owner brings: variables for the processes it starts from now on,
/// and the workspace seed unpacked into its home.
async fn configure_agent(
    agent: &crate::agent_client::AgentClient,
    addr: std::net::SocketAddr,
    secret: &str,
    id: &str,
    env: std::collections::BTreeMap<String, String>,
    seed: Option<std::path::PathBuf>,
) -> Result<(), SessionError> {
    let seed_error = |message: String| SessionError::Seed {
        id: id.to_owned(),
        message,
    };
    if !env.is_empty() {
        agent
            .set_env(addr, secret, &env)
            .await
            .map_err(|e| seed_error(e.to_string()))?;
    }
    if let Some(seed) = seed {
        let tar = tokio::task::spawn_blocking(move || seed_archive(&seed))
            .await
            .map_err(|e| seed_error(e.to_string()))?
            .map_err(|e| seed_error(e.to_string()))?;
        agent
            .upload_archive(addr, secret, ".", tar)
            .await
            .map_err(|e| seed_error(e.to_string()))?;
    }
    Ok(())
}

/// A workspace seed as a tar: a `.tar` file as it is, or a directory's contents at the
/// archive's root. Seeds are small (starter files), so the archive is held in memory.
fn seed_archive(seed: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if seed.is_file() {
        return std::fs::read(seed);
    }
    let dir = seed;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()
}

fn seconds(n: u64) -> ChronoDuration {
    ChronoDuration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

/// Errors are not `Clone` (their sources are not); several waiters get one copy each.
fn copy_session_error(err: &SessionError) -> SessionError {
    match err {
        SessionError::Runtime(RuntimeError::Unavailable(msg)) => {
            RuntimeError::Unavailable(msg.clone()).into()
        }
        SessionError::Store(store) => copy_error(store),
        other => RuntimeError::Engine(other.to_string()).into(),
    }
}

fn copy_error(err: &crate::store::StoreError) -> SessionError {
    crate::store::StoreError::Unavailable(err.to_string()).into()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::seed_archive;

    #[test]
    fn a_seed_is_a_directory_packed_or_a_tar_passed_through() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("case")).unwrap();
        std::fs::write(dir.path().join("case/brief.txt"), "facts").unwrap();
        let packed = seed_archive(dir.path()).unwrap();
        let mut archive = tar::Archive::new(packed.as_slice());
        let mut found = String::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().ends_with("case/brief.txt") {
                entry.read_to_string(&mut found).unwrap();
            }
        }
        assert_eq!(found, "facts");

        let file = dir.path().join("seed.tar");
        std::fs::write(&file, &packed).unwrap();
        assert_eq!(seed_archive(&file).unwrap(), packed);
    }
}

//! The one task that moves sessions between states.
//!
//! Slow work (engine calls, waiting for an agent) runs in tasks the actor spawns; they report
//! back with a command, and the actor applies the outcome. Because everything that changes a
//! session passes through this loop, delete-during-create, double delete and reconcile racing a
//! create are each decided in one place.
//!
//! The loop is here; each concern has a file of its own behind the same [`Command`] enum:
//! `admission.rs` (checks, quota, capacity and the fair queue), `create.rs` (cold creates, pool
//! claims and refills), `stop.rs` (delete, extend, expiry, failures) and `reconcile.rs`.

mod admission;
mod compact;
mod create;
mod disk;
mod engine;
mod idle;
mod reconcile;
mod snapshot;
mod stop;

use std::{
    collections::{HashMap, HashSet},
    panic::AssertUnwindSafe,
    time::Instant,
};

use berth_proto::{ErrorDetail, Session, queue::QueueStatus};
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};

use super::{Command, Created, ManagerContext, SessionError, command::Reply, pool::Pool};
use crate::{auth::Principal, config::TemplateConfig, store::SessionRecord};

/// The longest a busy actor puts off refilling the pools.
const REFILL_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Who hears how a create ended.
#[derive(Debug)]
enum Responder {
    /// The request that asked, waiting for the answer.
    Caller(Reply<Created>),
    /// A request that waited in the queue; it hears through its ticket.
    Ticket(watch::Sender<QueueStatus>),
    /// A pool warm-up of `template`: no one is waiting.
    Pool { template: String },
}

impl Responder {
    fn is_pool(&self) -> bool {
        matches!(self, Self::Pool { .. })
    }

    fn answer(self, result: Result<Session, SessionError>) {
        match self {
            Self::Caller(reply) => {
                let _ = reply.send(result.map(|session| Created::Running(Box::new(session))));
            }
            Self::Ticket(status) => status.send_modify(|status| {
                use berth_proto::queue::QueueState;
                status.position = None;
                status.estimated_wait_seconds = None;
                match result {
                    Ok(session) => {
                        status.state = QueueState::Admitted;
                        status.session = Some(session);
                    }
                    Err(err) => {
                        status.state = QueueState::Failed;
                        status.error = Some(ErrorDetail::new(err.code(), err.to_string()));
                    }
                }
            }),
            Self::Pool { .. } => {}
        }
    }
}

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
    queue: super::queue::FairQueue,
    /// When a session last ended; how far apart they end lately is kept in
    /// `ctx.wake_outlook` (`room_every`), for the queue's and waking sessions' estimates.
    last_end: Option<Instant>,
    last_refill: Instant,
    /// A command changed what the pools hold and their refill was put off.
    refill_owed: bool,
    /// A reconcile has run. Until then the pools are not refilled: what the engine already
    /// holds (ready pooled containers from before a restart) is not known yet.
    reconciled: bool,
    pending_claims: Vec<create::PendingClaim>,
    /// Sessions whose container is being started again.
    restarting: HashSet<String>,
    /// Of those, the ones whose container died while the restart was under way.
    died_while_restarting: HashSet<String>,
    /// Sessions going to sleep, with the callers waiting for it.
    hibernating: HashMap<String, Vec<Reply<Session>>>,
    /// Sessions being woken (or to be woken once asleep), with the callers waiting for it.
    waking: HashMap<String, Vec<Reply<Session>>>,
    /// Sessions being made again from their snapshot after their container vanished.
    recovering: HashMap<String, String>,
    /// Sessions whose hibernation failed, being started again in their own container.
    reviving: HashSet<String>,
    /// Sessions whose periodic checkpoint is being committed, and whether their container
    /// died or went meanwhile (an event the actor ignores while the checkpoint is in flight).
    checkpointing: HashMap<String, bool>,
    /// Sessions near their idle deadline, asked (or answered) whether they run `keepalive`
    /// processes, with the deadline the question was for.
    keepalive_probes: HashMap<String, KeepaliveProbe>,
    /// Sessions warned that they will be idle-stopped, and when.
    idle_warned: HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// Sessions warned that their disk is nearly full, until it is not.
    disk_warned: HashSet<String>,
    /// When each session's container last had a process killed at its memory limit.
    oom_killed: HashMap<String, Instant>,
    /// A CPU-time sample of each container, about a minute old, for the idle policy.
    cpu_samples: HashMap<String, (Instant, std::time::Duration)>,
    /// When each session was last restarted, and under which engine generation.
    last_restart: HashMap<String, (u64, Instant)>,
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
            queue: Default::default(),
            last_end: None,
            last_refill: Instant::now(),
            refill_owed: false,
            reconciled: false,
            pending_claims: Vec::new(),
            restarting: HashSet::new(),
            died_while_restarting: HashSet::new(),
            hibernating: HashMap::new(),
            waking: HashMap::new(),
            recovering: HashMap::new(),
            reviving: HashSet::new(),
            checkpointing: HashMap::new(),
            keepalive_probes: HashMap::new(),
            idle_warned: HashMap::new(),
            disk_warned: HashSet::new(),
            oom_killed: HashMap::new(),
            cpu_samples: HashMap::new(),
            last_restart: HashMap::new(),
        }
    }

    /// Serves commands until every handle is gone. A command that panics is contained: its
    /// caller is answered with an internal error (its reply is dropped), the panic is logged, and
    /// the actor goes on, because every other session's management must not stop with it. What
    /// the command may have left half-done in memory or on the engine, the reconcile asked for
    /// here repairs from the store and the engine's labels.
    /// The engine's events are followed from `started` on.
    pub(super) async fn run(mut self, started: std::time::SystemTime) {
        let watcher = tokio::spawn(super::engine::watch(
            self.ctx.runtime.clone(),
            self.commands.clone(),
            started,
        ));
        while let Some(command) = self.inbox.recv().await {
            let kind = command.kind();
            if let Err(panic) = AssertUnwindSafe(self.handle(command)).catch_unwind().await {
                tracing::error!(
                    command = kind,
                    panic = panic_message(panic.as_ref()),
                    "a session command failed unexpectedly; its caller got an internal error, \
                     and a reconcile repairs whatever it left half-done"
                );
                crate::metrics::actor_panic(kind);
                self.request_reconcile();
            }
        }
        watcher.abort();
    }

    async fn handle(&mut self, command: Command) {
        // Claims of a burst wait for one commit together; any other command sees them
        // committed, so nothing reads or changes a claimed row before it is durable.
        if !matches!(command, Command::Create { .. }) {
            self.commit_claims().await;
        }
        // Anything but a read may have changed what the pools hold or may hold.
        let refill = !matches!(
            command,
            Command::Extend { .. } | Command::PoolStatus { .. } | Command::Capacity { .. }
        );
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
        if self.inbox.is_empty() || self.claims_due() {
            self.commit_claims().await;
        }
        // Commands already waiting go first: a burst of claims is answered before the pool
        // starts warming replacements, which costs engine calls and store writes per session.
        // The refill is owed, not dropped: the next command to find the inbox empty (there is
        // one, since this one did not) pays it, and a steady stream still refills every so often.
        if self.refill_owed
            && self.reconciled
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
            Command::Hibernate { caller, id, reply } => self.hibernate(&caller, &id, reply).await,
            Command::Resume { caller, id, reply } => self.resume(&caller, &id, reply).await,
            Command::HibernateFinished { id, outcome } => {
                self.hibernate_finished(&id, outcome).await
            }
            Command::RestoreFinished { id, outcome } => self.restore_finished(&id, outcome).await,
            Command::CheckpointFinished { id, outcome } => {
                self.checkpoint_finished(&id, outcome).await
            }
            Command::KeepaliveProbed { id, deadline, busy } => {
                self.keepalive_probed(&id, deadline, busy).await
            }
            Command::DisksMeasured { measured } => self.disks_measured(measured).await,
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
            Command::Reap => {
                self.reap().await;
                self.check_idle().await;
            }
            Command::Evict { containers } => self.evict(containers).await,
            Command::Keepalive {
                caller,
                id,
                seconds,
                reply,
            } => {
                let _ = reply.send(self.keepalive(&caller, &id, seconds).await);
            }
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
            Command::Capacity { reply } => {
                let _ = reply.send(self.capacity().await);
            }
            Command::Reconcile { observed, reply } => self.reconcile(observed, reply).await,
            Command::EngineConnected => self.engine_connected(),
            Command::EngineLost { reason } => self.engine_lost(&reason),
            Command::ContainerChanged(event) => self.container_changed(event).await,
            Command::RestartFinished {
                id,
                announce,
                outcome,
            } => self.restart_finished(&id, announce, outcome).await,
        }
    }

    /// Runs `work` off the actor and feeds its result back in as a command. The result always
    /// comes back: should the work panic, `failed` turns the panic into the command to send,
    /// so no session waits forever for a task that is gone, and a reconcile removes whatever
    /// the task had made.
    fn spawn_reporting<F>(
        &self,
        work: F,
        failed: impl FnOnce(SessionError) -> Command + Send + 'static,
    ) where
        F: Future<Output = Command> + Send + 'static,
    {
        let commands = self.commands.clone();
        let reconcile = self.reconciler();
        tokio::spawn(async move {
            match AssertUnwindSafe(work).catch_unwind().await {
                Ok(command) => report(&commands, command).await,
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    tracing::error!(panic = message, "a session task failed unexpectedly");
                    let err =
                        SessionError::Internal(format!("a background task failed: {message}"));
                    report(&commands, failed(err)).await;
                    reconcile.await;
                }
            }
        });
    }

    /// Lists the engine off the actor and reconciles with what it finds, as the periodic loop
    /// does, without anyone waiting for the report.
    fn request_reconcile(&self) {
        tokio::spawn(self.reconciler());
    }

    /// `request_reconcile`, after `delay`.
    fn request_reconcile_after(&self, delay: std::time::Duration) {
        let reconcile = self.reconciler();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            reconcile.await;
        });
    }

    /// A reconcile to run off the actor: `observe`, then the command.
    fn reconciler(&self) -> impl Future<Output = ()> + Send + 'static {
        let runtime = self.ctx.runtime.clone();
        let store = self.ctx.store.clone();
        let commands = self.commands.clone();
        async move {
            match observe(runtime.as_ref(), store.as_ref()).await {
                Ok(observed) => {
                    let reconcile = Command::Reconcile {
                        observed,
                        reply: None,
                    };
                    report(&commands, reconcile).await;
                }
                Err(err) => tracing::warn!(%err, "reconcile put off; the periodic one retries"),
            }
        }
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

    /// `find`, for what only a running session can do (`action`, for the error).
    async fn find_running(
        &self,
        caller: &Principal,
        id: &str,
        action: &'static str,
    ) -> Result<SessionRecord, SessionError> {
        let record = self.find(caller, id).await?;
        if record.state != berth_proto::SessionState::Running {
            return Err(SessionError::NotRunning {
                id: record.id,
                state: record.state,
                action,
            });
        }
        Ok(record)
    }

    async fn find(&self, caller: &Principal, id: &str) -> Result<SessionRecord, SessionError> {
        match self.ctx.store.get_session(id).await? {
            Some(record) if caller.may_access(&record.owner) => Ok(record),
            _ => Err(SessionError::NotFound(id.to_owned())),
        }
    }
}

pub use compact::Slept;
use idle::KeepaliveProbe;
pub use reconcile::{Observed, observe};

/// Sends a command to the actor, if it is still there.
async fn report(commands: &mpsc::WeakSender<Command>, command: Command) {
    if let Some(commands) = commands.upgrade() {
        let _ = commands.send(command).await;
    }
}

/// What a panic carried, when it was a message.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Session errors are not `Clone` (an agent error's source is not); several waiters get one
/// copy each, with the same code as the original.
fn copy_session_error(err: &SessionError) -> SessionError {
    match err {
        SessionError::Runtime(runtime) => runtime.clone().into(),
        SessionError::Store(store) => store.clone().into(),
        other => SessionError::Reported {
            code: other.code(),
            message: other.to_string(),
        },
    }
}

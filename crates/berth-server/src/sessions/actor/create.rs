//! Making sessions: cold creates, claims from the warm pool, and the warm-ups that refill it.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Instant};

use berth_proto::{
    CreateSession, SessionState,
    agent::{MAX_FILE_BYTES_ENV, SECRET_ENV},
};
use chrono::Utc;

use super::{Actor, PendingCreate, Responder};
use crate::{
    auth::Principal,
    config::{HomeMode, TemplateConfig},
    ids,
    runtime::{ContainerSpec, HomeSpec},
    sessions::{Command, Created, ManagerContext, SessionError, Started, command::Reply, validate},
    store::SessionRecord,
};

/// The most claims one commit carries, so the first of a long burst is not kept waiting.
const MAX_CLAIMS_PER_COMMIT: usize = 64;

/// The longest a claim waits for its commit while other commands keep the inbox busy.
const MAX_CLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// A claim from the pool whose row is not yet committed.
#[derive(Debug)]
pub(super) struct PendingClaim {
    pub(super) record: SessionRecord,
    responder: Responder,
    started: Instant,
    /// Env and seed for the agent, when the request or the template has any.
    agent_work: Option<(BTreeMap<String, String>, Option<PathBuf>)>,
}

impl Actor {
    pub(super) async fn create(
        &mut self,
        caller: Principal,
        request: CreateSession,
        reply: Reply<Created>,
    ) {
        let started = Instant::now();
        let ttl = match self.admit(&caller, &request).await {
            Ok(ttl) => ttl,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        // Without an engine nothing can be handed out: a pooled container is stopped when its
        // engine goes down, and a cold create would only time out.
        if let Err(err) = self.engine_up() {
            let _ = reply.send(Err(err));
            return;
        }
        // A pooled session is already counted against capacity: claiming it never waits. A
        // fork starts from its snapshot's files, which no pooled session has.
        if request.from_snapshot.is_none()
            && let Some(id) = self.pool.take(&request.template, self.engine_generation())
        {
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

    /// Writes the `creating` row and starts a task that makes the container. With no `reply`,
    /// the session is a pool warm-up owned by no one, and becomes `pooled` instead of `running`.
    pub(super) async fn create_cold(
        &mut self,
        caller: Principal,
        request: CreateSession,
        ttl: u64,
        responder: Responder,
    ) {
        let template = match self.template(&request.template) {
            Ok(template) => template.clone(),
            Err(err) => return responder.answer(Err(err)),
        };
        // A fork's image is its snapshot's; admission checked that the caller may use it.
        let image = match &request.from_snapshot {
            Some(snapshot) => match self.ctx.store.get_snapshot(snapshot).await {
                Ok(Some(snapshot)) => snapshot.image,
                Ok(None) => {
                    let err = SessionError::NotFound(format!("snapshot {snapshot}"));
                    return responder.answer(Err(err));
                }
                Err(err) => return responder.answer(Err(err.into())),
            },
            None => template.image.clone(),
        };
        let now = Utc::now();
        let expires_at = match validate::after(now, ttl) {
            Ok(at) => at,
            Err(err) => return responder.answer(Err(err)),
        };
        let record = SessionRecord {
            id: ids::session_id(),
            owner: caller.name,
            template: request.template,
            state: SessionState::Creating,
            labels: request.labels,
            created_at: now,
            expires_at,
            last_activity: now,
            container_id: None,
            agent_addr: None,
            stop_reason: None,
            agent_secret: ids::secret(),
            snapshot: None,
            hibernated_at: None,
            keepalive_until: None,
        };
        let spec = self.container_spec(&record, &template, &image, request.env);
        if let Err(err) = self.ctx.store.insert_session(&record).await {
            responder.answer(Err(err.into()));
            return;
        }
        // A pooled session gets its seed when it is claimed: the seed belongs to the claim.
        let seed = if responder.is_pool() {
            self.pool.warming_started(&record.template);
            None
        } else {
            self.ctx
                .webhooks
                .announce("session.created", &record, serde_json::Value::Null);
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
        let failed_id = id.clone();
        self.spawn_reporting(
            async move {
                let outcome = make_container(&ctx, &spec, &secret, seed).await;
                Command::CreateFinished { id, outcome }
            },
            |err| Command::CreateFinished {
                id: failed_id,
                outcome: Err(err),
            },
        );
    }

    /// Hands pooled session `id` to `caller`. The rewritten row joins the claims waiting to be
    /// committed together (`commit_claims`); the caller hears once it is durable, or, with a
    /// per-claim env or seed for the agent, after that, through `creating` like any create.
    pub(super) async fn claim(
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
        let expires_at = match validate::after(now, ttl) {
            Ok(at) => at,
            Err(err) => {
                self.pool_ready(&record.template, record.id);
                return responder.answer(Err(err));
            }
        };
        let mut claimed = SessionRecord {
            owner: caller.name,
            labels: request.labels,
            created_at: now,
            expires_at,
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
    pub(super) async fn commit_claims(&mut self) {
        if self.pending_claims.is_empty() {
            return;
        }
        let claims = std::mem::take(&mut self.pending_claims);
        let records: Vec<SessionRecord> = claims.iter().map(|c| c.record.clone()).collect();
        if let Err(err) = self.ctx.store.update_sessions(&records).await {
            for claim in claims {
                self.pool_ready(&claim.record.template, claim.record.id.clone());
                claim.responder.answer(Err(err.clone().into()));
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
            let webhooks = &self.ctx.webhooks;
            webhooks.announce("session.created", &record, serde_json::Value::Null);
            match agent_work {
                None => {
                    webhooks.announce("session.running", &record, serde_json::Value::Null);
                    responder.answer(Ok(record.to_public()))
                }
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

    /// Claims wait for their commit until the inbox is empty, but no longer than this allows.
    pub(super) fn claims_due(&self) -> bool {
        self.pending_claims.len() >= MAX_CLAIMS_PER_COMMIT
            || self
                .pending_claims
                .first()
                .is_some_and(|claim| claim.started.elapsed() >= MAX_CLAIM_WAIT)
    }

    /// Hands a claimed session's env and seed to its agent; the claim answers on
    /// `CreateFinished`, like a cold create.
    pub(super) fn configure_claimed(
        &mut self,
        record: SessionRecord,
        pending: PendingCreate,
        env: BTreeMap<String, String>,
        seed: Option<PathBuf>,
    ) {
        let id = record.id.clone();
        self.creating.insert(id.clone(), pending);
        let agent = self.ctx.agent.clone();
        let deadline = self.ctx.create_timeout;
        let container_id = record.container_id.unwrap_or_default();
        let addr = record.agent_addr;
        let secret = record.agent_secret;
        let failed_id = id.clone();
        self.spawn_reporting(
            async move {
                let outcome = async {
                    let agent_addr: SocketAddr =
                        addr.and_then(|a| a.parse().ok())
                            .ok_or_else(|| SessionError::Seed {
                                id: id.clone(),
                                message: "no agent address".into(),
                            })?;
                    let configured = configure_agent(&agent, agent_addr, &secret, &id, env, seed);
                    tokio::time::timeout(deadline, configured)
                        .await
                        .map_err(|_| timed_out(&id, deadline))??;
                    Ok(Started {
                        container_id,
                        agent_addr,
                    })
                }
                .await;
                Command::CreateFinished { id, outcome }
            },
            |err| Command::CreateFinished {
                id: failed_id,
                outcome: Err(err),
            },
        );
    }

    /// Starts warming whatever the pools are short of, when nobody waits for capacity and the
    /// engine answers.
    pub(super) async fn refill(&mut self) {
        // The shortfall is in memory and almost always empty; the store is asked about
        // capacity only when there is something to warm, and before each warm-up, so a pool
        // never pushes the host past `max_sessions`.
        if !self.queue.is_empty() || self.engine_up().is_err() {
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
                    role: berth_proto::user::Role::User,
                    scopes: None,
                };
                let responder = Responder::Pool {
                    template: template.clone(),
                };
                self.create_cold(pool_owner, request, ttl, responder).await;
            }
        }
    }

    pub(super) async fn create_finished(
        &mut self,
        id: &str,
        outcome: Result<Started, SessionError>,
    ) {
        let Some(pending) = self.creating.remove(id) else {
            return;
        };
        let warming = pending.responder.is_pool();
        if let Responder::Pool { template } = &pending.responder {
            // Before anything that can fail: a warm-up that ended never counts as warming.
            self.pool.warming_ended(template, outcome.is_ok());
        } else {
            crate::metrics::session_created(pending.started.elapsed(), outcome.is_ok());
        }
        let record = match self.ctx.store.get_session(id).await {
            Ok(Some(record)) => record,
            other => {
                let err = match other {
                    Err(err) => err.into(),
                    _ => SessionError::NotFound(id.to_owned()),
                };
                if let Ok(started) = &outcome {
                    self.remove_in_background(started.container_id.clone());
                }
                pending.responder.answer(Err(err));
                return;
            }
        };
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
                    Ok(()) if warming => self.pool_ready(&ready.template, ready.id.clone()),
                    Ok(()) => {
                        self.ctx.webhooks.announce(
                            "session.running",
                            &ready,
                            serde_json::Value::Null,
                        );
                        pending.responder.answer(Ok(ready.to_public()))
                    }
                    Err(err) => {
                        // Without a durable row the session cannot be handed out. A removal
                        // failing here is retried by reconcile: the row is `failed`.
                        if let Some(container) =
                            self.fail(ready, "store write failed after create").await
                        {
                            self.remove_in_background(container);
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
                // A cold create's task already removed whatever container it had made; a
                // claim's container came from the pool and goes now.
                if let Some(container) = record.container_id.clone() {
                    self.remove_in_background(container);
                }
                let mut ended = record;
                ended.forget_agent();
                match &deleters {
                    Some(_) => ended.state = SessionState::Stopped,
                    None => {
                        ended.state = SessionState::Failed;
                        ended.stop_reason = Some(format!("create_failed: {err}"));
                    }
                }
                let saved = self.ctx.store.update_session(&ended).await;
                for deleter in deleters.into_iter().flatten() {
                    let _ = deleter.send(saved.clone().map_err(SessionError::from));
                }
                pending.responder.answer(Err(err));
            }
        }
    }

    /// What the engine needs to make `record`'s container from `image`: the template's limits
    /// and environment, `env` on top, and the session's id and agent secret, fresh from the
    /// store every time (a snapshot image carries none of them).
    pub(super) fn container_spec(
        &self,
        record: &SessionRecord,
        template: &TemplateConfig,
        image: &str,
        env: BTreeMap<String, String>,
    ) -> ContainerSpec {
        let mut full_env = template.env.clone();
        full_env.extend(env);
        full_env.insert(SECRET_ENV.to_owned(), record.agent_secret.clone());
        full_env.insert("BERTH_SESSION_ID".to_owned(), record.id.clone());
        full_env.insert(
            MAX_FILE_BYTES_ENV.to_owned(),
            self.ctx.max_file_bytes.to_string(),
        );
        if template.docker.enabled {
            full_env.insert("DOCKER_HOST".to_owned(), crate::docker_api::docker_host());
            // BuildKit needs a session endpoint the API refuses; the legacy builder streams
            // the context like any other call.
            full_env.insert("DOCKER_BUILDKIT".to_owned(), "0".to_owned());
        }
        ContainerSpec {
            session_id: record.id.clone(),
            owner: record.owner.clone(),
            template: record.template.clone(),
            image: image.to_owned(),
            memory_bytes: i64::try_from(template.memory_mb.saturating_mul(1024 * 1024))
                .unwrap_or(i64::MAX),
            nano_cpus: (template.cpus * 1e9) as i64,
            pids_limit: template.pids,
            env: full_env,
            docker_api: template.docker.enabled,
            node_labels: template.node_labels.clone(),
            // The owner's, whatever the image: a fork of someone else's snapshot mounts the
            // forking user's home, never the snapshot owner's.
            home: (template.home == HomeMode::Persistent).then(|| HomeSpec {
                volume: self
                    .ctx
                    .runtime
                    .home_volume(&record.owner, &record.template),
                size_mb: (template.home_size_mb > 0).then_some(template.home_size_mb),
            }),
            disk_mb: (template.disk_mb > 0).then_some(template.disk_mb),
            oci_runtime: template.runtime.clone(),
        }
    }

    /// Removes a container without waiting for it. A removal that fails is retried by
    /// reconcile, since no live session claims the container any more.
    pub(super) fn remove_in_background(&self, container: String) {
        let runtime = self.ctx.runtime.clone();
        tokio::spawn(async move {
            if let Err(err) = runtime.remove(&container).await {
                tracing::warn!(%err, %container, "could not remove; the next reconcile retries");
            }
        });
    }
}

/// Makes, starts and waits for one session's container, then seeds its workspace. On any
/// failure it removes what it made, so a failed create leaves nothing on the engine. A
/// persistent home is made first when it is new, and only a new one is seeded: the files of
/// one that exists are the user's.
pub(super) async fn make_container(
    ctx: &ManagerContext,
    spec: &ContainerSpec,
    secret: &str,
    seed: Option<PathBuf>,
) -> Result<Started, SessionError> {
    // Bounded, so a burst of creates queues here instead of overwhelming the engine.
    let _slot = ctx
        .create_slots
        .acquire()
        .await
        .map_err(|_| SessionError::ManagerGone)?;
    let new_home = ctx.runtime.ensure_home(spec).await?;
    let seed = seed.filter(|_| spec.home.is_none() || new_home.is_some());
    let started = start_container(ctx, spec, secret, seed).await;
    if started.is_err()
        && let Some(volume) = new_home
        && let Err(cleanup) = ctx.runtime.remove_home(&volume).await
    {
        // Left as an empty (or half-seeded) home, which the next create seeds no more.
        tracing::warn!(%cleanup, %volume, "a new home stays after its failed create");
    }
    started
}

/// [`make_container`] past its home.
async fn start_container(
    ctx: &ManagerContext,
    spec: &ContainerSpec,
    secret: &str,
    seed: Option<PathBuf>,
) -> Result<Started, SessionError> {
    let container_id = ctx.runtime.create(spec).await?;
    let started = tokio::time::timeout(ctx.create_timeout, async {
        let agent_addr = ctx.runtime.start(&container_id).await?;
        let agent_error = |source| SessionError::AgentNotReady {
            id: spec.session_id.clone(),
            source,
        };
        ctx.agent
            .wait_ready(agent_addr, secret, ctx.agent_ready_timeout)
            .await
            .map_err(agent_error)?;
        let no_env = BTreeMap::new();
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
    })
    .await
    .unwrap_or_else(|_| Err(timed_out(&spec.session_id, ctx.create_timeout)));
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

fn timed_out(id: &str, deadline: std::time::Duration) -> SessionError {
    SessionError::CreateTimedOut {
        id: id.to_owned(),
        seconds: deadline.as_secs(),
    }
}

/// Gives a session what its owner brings: variables for the processes it starts from now on,
/// and the workspace seed unpacked into its home.
async fn configure_agent(
    agent: &crate::agent_client::AgentClient,
    addr: SocketAddr,
    secret: &str,
    id: &str,
    env: BTreeMap<String, String>,
    seed: Option<PathBuf>,
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
        let tar =
            tokio::task::spawn_blocking(move || crate::agent_client::directory_archive(&seed))
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

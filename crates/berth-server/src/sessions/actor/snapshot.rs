//! Hibernation and restore: a running session's files go into a snapshot image and its
//! container away; any access brings it back in a new container from that image.
//!
//! ```text
//! running ──hibernate──▶ hibernating ──(stop, commit, remove)──▶ hibernated
//!    ▲                        │ failure: the same container is started again
//!    └──────── restoring ◀────┴──── resume, or any access (agent_endpoint) ◀──┘
//! ```

use std::time::Duration;

use berth_proto::{Session, SessionState};
use chrono::{DateTime, Utc};

use super::{
    Actor,
    compact::{Slept, compact_if_deep},
    copy_session_error,
    create::make_container,
};
use crate::{
    auth::Principal,
    ids,
    runtime::{RuntimeError, registry_of},
    sessions::{Command, SessionError, Started, command::Reply},
    store::{SessionFilter, SessionRecord},
};

/// How long the agent has after SIGTERM to save its terminals before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The `stop_reason` of a `restoring` row whose container is the session's own, started again
/// after a failed hibernation.
pub(super) const REVIVING: &str = "hibernate_failed";

/// After a restore, the idle policy waits at least this long before it acts again.
const RESTORE_GRACE_SECONDS: i64 = 300;

impl Actor {
    pub(super) async fn hibernate(&mut self, caller: &Principal, id: &str, reply: Reply<Session>) {
        let mut record = match self.find(caller, id).await {
            Ok(record) => record,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        match record.state {
            SessionState::Hibernated => {
                let _ = reply.send(Ok(record.to_public()));
                return;
            }
            SessionState::Hibernating => {
                self.hibernating.entry(record.id).or_default().push(reply);
                return;
            }
            SessionState::Running if !self.in_flight(id) => {}
            state => {
                let _ = reply.send(Err(SessionError::NotRunning {
                    id: record.id,
                    state,
                    action: "hibernated",
                }));
                return;
            }
        }
        if let Err(err) = self.check_hibernated_quota(caller, &record.owner).await {
            let _ = reply.send(Err(err));
            return;
        }
        record.stop_reason = Some("requested".to_owned());
        self.begin_hibernate(record, vec![reply]).await;
    }

    /// Moves a running session to `hibernating` and starts the engine work: stop, commit,
    /// remove. `record.stop_reason` says why (`requested`, `idle`, `ttl_expired`).
    pub(super) async fn begin_hibernate(
        &mut self,
        mut record: SessionRecord,
        waiters: Vec<Reply<Session>>,
    ) {
        let id = record.id.clone();
        let Some(container_id) = record.container_id.clone() else {
            for waiter in waiters {
                let _ = waiter.send(Err(SessionError::Internal(format!(
                    "running session {id} has no container"
                ))));
            }
            return;
        };
        let collect_journal = self.ctx.journals.before_removal(&record);
        record.state = SessionState::Hibernating;
        if let Err(err) = self.ctx.store.update_session(&record).await {
            for waiter in waiters {
                let _ = waiter.send(Err(err.clone().into()));
            }
            return;
        }
        self.hibernating.insert(record.id.clone(), waiters);
        // A new name per hibernation: the previous snapshot stays whole until this one is.
        let image = self.snapshot_name(&record.id);
        let runtime = self.ctx.runtime.clone();
        let compact_after = self.ctx.compact_after_layers;
        // A template gone from the config: its snapshot cannot be compacted, only kept.
        let base = self
            .template(&record.template)
            .map(|template| template.image.clone())
            .unwrap_or_default();
        let woke_from = record.snapshot;
        let id = record.id;
        let failed_id = id.clone();
        self.spawn_reporting(
            async move {
                let started = std::time::Instant::now();
                let outcome = async {
                    collect_journal.await;
                    runtime.stop(&container_id, STOP_GRACE).await?;
                    // Its Docker children sleep with it (nothing can start them now); a wake
                    // starts them again. Not a reason to keep it awake.
                    if let Err(err) = runtime.stop_children(&id).await {
                        tracing::warn!(session = %id, %err, "docker children left running");
                    }
                    let slept =
                        match unchanged_since(runtime.as_ref(), &container_id, woke_from).await {
                            Some(snapshot) => Slept {
                                image: snapshot,
                                compacted: None,
                            },
                            None => {
                                runtime.commit(&container_id, &image, false).await?;
                                compact_if_deep(runtime.as_ref(), image, &base, compact_after).await
                            }
                        };
                    // The image holds the files now; a container that will not go is an
                    // orphan for reconcile, not a reason to undo the hibernation.
                    if let Err(err) = runtime.remove(&container_id).await {
                        tracing::warn!(%err, container = %container_id, "left for reconcile");
                    }
                    Ok::<_, SessionError>(slept)
                }
                .await;
                crate::metrics::hibernation(started.elapsed(), outcome.is_ok());
                Command::HibernateFinished { id, outcome }
            },
            |err| Command::HibernateFinished {
                id: failed_id,
                outcome: Err(err),
            },
        );
    }

    /// A hibernation a dead control plane began and left with the container still there: this
    /// one finishes it, as asked. Never undone by starting the container: the dead one's stop
    /// may still be under way in the engine (which lists a container as running until its stop
    /// ends) and would stop it under the requests it serves; a stop of this one's waits for it.
    pub(super) async fn finish_interrupted_hibernation(&mut self, record: SessionRecord) {
        tracing::info!(session = %record.id, "finishing a hibernation a stopped control plane began");
        self.begin_hibernate(record, Vec::new()).await;
    }

    /// Hibernated sessions hold no container but keep an image: `quota.max_hibernated` per user.
    async fn check_hibernated_quota(
        &self,
        caller: &Principal,
        owner: &str,
    ) -> Result<(), SessionError> {
        if caller.admin {
            return Ok(());
        }
        let hibernated = SessionFilter {
            owner: Some(owner.to_owned()),
            states: Some(vec![SessionState::Hibernated, SessionState::Hibernating]),
            ..SessionFilter::default()
        };
        let held = self.ctx.store.list_sessions(&hibernated).await?.len();
        if held >= self.ctx.max_hibernated as usize {
            return Err(SessionError::HibernatedQuotaExceeded {
                owner: owner.to_owned(),
                limit: self.ctx.max_hibernated,
            });
        }
        Ok(())
    }

    pub(super) async fn hibernate_finished(
        &mut self,
        id: &str,
        outcome: Result<Slept, SessionError>,
    ) {
        let waiters = self.hibernating.remove(id).unwrap_or_default();
        let mut record = match self.ctx.store.get_session(id).await {
            Ok(Some(record)) if record.state == SessionState::Hibernating => record,
            other => {
                let err = match other {
                    Err(err) => err.into(),
                    _ => SessionError::NotFound(id.to_owned()),
                };
                for waiter in waiters {
                    let _ = waiter.send(Err(copy_session_error(&err)));
                }
                return;
            }
        };
        match outcome {
            Ok(Slept { image, compacted }) => {
                let previous = record.snapshot.replace(image);
                record.state = SessionState::Hibernated;
                record.hibernated_at = Some(Utc::now());
                record.container_id = None;
                record.forget_agent();
                if let Err(err) = self.ctx.store.update_session(&record).await {
                    // The row still says `hibernating`: reconcile finds the image and finishes.
                    for waiter in waiters {
                        let _ = waiter.send(Err(err.clone().into()));
                    }
                    return;
                }
                let reused = previous == record.snapshot;
                if let Some(previous) = previous.filter(|_| !reused) {
                    self.remove_snapshot_in_background(previous);
                }
                self.push_in_background(record.snapshot.clone());
                tracing::info!(session = id, compacted, reused, "hibernated");
                self.ctx
                    .webhooks
                    .announce("session.hibernated", &record, serde_json::Value::Null);
                if let Some(layers) = compacted {
                    let message = format!("the snapshot's {layers} layers were folded into one");
                    self.record_event(id, "compacted", &message).await;
                }
                for waiter in waiters {
                    let _ = waiter.send(Ok(record.to_public()));
                }
                // Someone touched it while it went to sleep: wake it at once.
                if self.waking.contains_key(id) {
                    self.begin_restore(record).await;
                }
            }
            Err(err) => {
                tracing::warn!(session = id, %err, "hibernation failed; starting the session again");
                for waiter in waiters {
                    let _ = waiter.send(Err(copy_session_error(&err)));
                }
                self.record_event(id, "hibernate_failed", &err.to_string())
                    .await;
                self.revive(record).await;
            }
        }
    }

    /// Starts the container of a hibernation that failed again, as a restore: requests wait
    /// for its agent (`restoring`) instead of meeting a stopped container. The row says so
    /// ([`REVIVING`]): after a crash, reconcile must start that container, which holds the
    /// newest files, not remove it as a half-made restore's.
    async fn revive(&mut self, mut record: SessionRecord) {
        let id = record.id.clone();
        let Some(container_id) = record.container_id.clone() else {
            self.fail(record, "hibernate_failed: no container").await;
            return;
        };
        record.state = SessionState::Restoring;
        record.stop_reason = Some(REVIVING.to_owned());
        if let Err(err) = self.ctx.store.update_session(&record).await {
            // Still `hibernating` in the store: reconcile finds the container and wakes it.
            return self.answer_waking(&id, Err(err.into()));
        }
        self.waking.entry(id.clone()).or_default();
        self.reviving.insert(id.clone());
        let runtime = self.ctx.runtime.clone();
        let agent = self.ctx.agent.clone();
        let ready_timeout = self.ctx.agent_ready_timeout;
        let secret = record.agent_secret;
        let failed_id = id.clone();
        self.spawn_reporting(
            async move {
                let outcome = async {
                    let agent_addr = runtime.start(&container_id).await?;
                    agent
                        .wait_ready(agent_addr, &secret, ready_timeout)
                        .await
                        .map_err(|source| SessionError::AgentNotReady {
                            id: id.clone(),
                            source,
                        })?;
                    wake_children(runtime.as_ref(), &id).await;
                    Ok(Started {
                        container_id,
                        agent_addr,
                    })
                }
                .await;
                Command::RestoreFinished { id, outcome }
            },
            |err| Command::RestoreFinished {
                id: failed_id,
                outcome: Err(err),
            },
        );
    }

    pub(super) async fn resume(&mut self, caller: &Principal, id: &str, reply: Reply<Session>) {
        let record = match self.find(caller, id).await {
            Ok(record) => record,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        match record.state {
            SessionState::Running => {
                let _ = reply.send(Ok(record.to_public()));
            }
            // Restored once asleep, or once the restore under way ends.
            SessionState::Hibernating | SessionState::Restoring => {
                self.waking.entry(record.id).or_default().push(reply);
            }
            SessionState::Hibernated => {
                // Its restore may be waiting for capacity already: one more waiter.
                self.waking
                    .entry(record.id.clone())
                    .or_default()
                    .push(reply);
                self.begin_restore(record).await;
            }
            state => {
                let _ = reply.send(Err(SessionError::Unavailable {
                    id: record.id,
                    state,
                }));
            }
        }
    }

    /// A running session whose container is gone: made again from its newest snapshot when
    /// its template says `recover` and it has one (the timeline says what window was lost),
    /// else failed with `reason`. Returns whether it lives on.
    pub(super) async fn recover_from_snapshot(
        &mut self,
        record: SessionRecord,
        reason: &str,
    ) -> bool {
        let recover = self.template(&record.template).is_ok_and(|t| t.recover);
        if !(recover && record.snapshot.is_some()) {
            self.fail(record, reason).await;
            return false;
        }
        tracing::warn!(session = %record.id, reason, "recovering from the newest snapshot");
        self.recovering.insert(record.id.clone(), reason.to_owned());
        self.begin_restore(record).await;
        true
    }

    /// Makes a new container from the session's snapshot with a fresh configuration (limits
    /// and environment from the template, a new agent secret) and waits for its agent.
    async fn begin_restore(&mut self, mut record: SessionRecord) {
        let id = record.id.clone();
        // Counted as in flight from here: reconcile and the engine's events leave it alone.
        self.waking.entry(id.clone()).or_default();
        if let Err(err) = self.engine_up() {
            return self.answer_waking(&id, Err(err));
        }
        // Awake, it counts toward capacity again: at capacity it waits, its waiters with it.
        // (A running session recovered from its snapshot is counted already.)
        if record.state == SessionState::Hibernated && self.at_capacity().await {
            tracing::info!(session = %id, "at capacity: the restore waits for room");
            self.ctx.wake_outlook.wait_for_room(&id);
            return;
        }
        self.ctx.wake_outlook.stop_waiting(&id);
        let (template, image) = match (self.template(&record.template), &record.snapshot) {
            (Ok(template), Some(image)) => (template.clone(), image.clone()),
            (Err(err), _) => return self.answer_waking(&id, Err(err)),
            (_, None) => {
                let err =
                    SessionError::Internal(format!("hibernated session {id} has no snapshot"));
                return self.answer_waking(&id, Err(err));
            }
        };
        record.state = SessionState::Restoring;
        record.agent_secret = ids::secret();
        if let Err(err) = self.ctx.store.update_session(&record).await {
            return self.answer_waking(&id, Err(err.into()));
        }
        let spec = self.container_spec(&record, &template, &image, Default::default());
        let ctx = self.ctx.clone();
        let secret = record.agent_secret;
        let failed_id = id.clone();
        self.spawn_reporting(
            async move {
                let started = std::time::Instant::now();
                let outcome = make_container(&ctx, &spec, &secret, None).await;
                crate::metrics::restore(started.elapsed(), outcome.is_ok());
                if outcome.is_ok() {
                    ctx.wake_outlook.record(started.elapsed());
                    wake_children(ctx.runtime.as_ref(), &id).await;
                }
                Command::RestoreFinished { id, outcome }
            },
            |err| Command::RestoreFinished {
                id: failed_id,
                outcome: Err(err),
            },
        );
    }

    pub(super) async fn restore_finished(
        &mut self,
        id: &str,
        outcome: Result<Started, SessionError>,
    ) {
        let mut record = match self.ctx.store.get_session(id).await {
            Ok(Some(record)) if record.state == SessionState::Restoring => record,
            other => {
                let err = match other {
                    Err(err) => err.into(),
                    _ => SessionError::NotFound(id.to_owned()),
                };
                if let Ok(started) = outcome {
                    self.remove_in_background(started.container_id);
                }
                return self.answer_waking(id, Err(err));
            }
        };
        match outcome {
            Ok(started) => {
                self.reviving.remove(id);
                record.state = SessionState::Running;
                record.container_id = Some(started.container_id.clone());
                record.agent_addr = Some(started.agent_addr.to_string());
                record.hibernated_at = None;
                record.stop_reason = None;
                // Woken by someone: the idle policy leaves it alone a while whatever follows.
                let now = Utc::now();
                record.last_activity = now;
                let grace = now + chrono::TimeDelta::seconds(RESTORE_GRACE_SECONDS);
                record.keepalive_until =
                    Some(record.keepalive_until.map_or(grace, |k| k.max(grace)));
                if let Err(err) = self.ctx.store.update_session(&record).await {
                    // Back to sleep: the snapshot is intact, the next access tries again.
                    self.remove_in_background(started.container_id);
                    self.back_to_sleep(record).await;
                    return self.answer_waking(id, Err(err.into()));
                }
                tracing::info!(session = id, "restored");
                let event = if self.recovering.contains_key(id) {
                    "session.recovered"
                } else {
                    "session.restored"
                };
                self.ctx
                    .webhooks
                    .announce(event, &record, serde_json::Value::Null);
                if let Some(reason) = self.recovering.remove(id) {
                    let taken = record
                        .snapshot
                        .as_deref()
                        .and_then(snapshot_time)
                        .map_or_else(|| "an unknown time".to_owned(), |at| at.to_rfc3339());
                    let message = format!(
                        "its container was gone ({reason}); it was made again from its snapshot \
                         of {taken}: changes since then were lost"
                    );
                    self.record_event(id, "recovered", &message).await;
                }
                self.answer_waking(id, Ok(record.to_public()));
            }
            // Its image is gone: nothing can bring the session back. Say so, never hang.
            Err(err @ SessionError::Runtime(RuntimeError::ImageMissing(_))) => {
                self.recovering.remove(id);
                let reason = format!("restore_failed: {err}");
                self.fail(record, &reason).await;
                self.answer_waking(id, Err(err));
            }
            // A revived container that will not start: running in name, for reconcile (which
            // restarts or recovers it) to act on; its files are in that container, not asleep.
            Err(err) if self.reviving.remove(id) => {
                record.state = SessionState::Running;
                record.stop_reason = None;
                if let Err(err) = self.ctx.store.update_session(&record).await {
                    tracing::warn!(session = id, %err, "could not record; reconcile retries");
                }
                self.request_reconcile_after(Duration::from_secs(2));
                self.answer_waking(id, Err(err));
            }
            Err(err) => {
                tracing::warn!(session = id, %err, "restore failed; the session sleeps on");
                self.recovering.remove(id);
                self.back_to_sleep(record).await;
                self.answer_waking(id, Err(err));
            }
        }
    }

    /// A restore that did not finish: the session is `hibernated` again, its snapshot intact.
    pub(super) async fn back_to_sleep(&mut self, mut record: SessionRecord) {
        record.state = SessionState::Hibernated;
        record.container_id = None;
        record.forget_agent();
        if let Err(err) = self.ctx.store.update_session(&record).await {
            tracing::warn!(%err, session = %record.id, "could not record; reconcile retries");
        }
    }

    /// Answers everyone waiting for the session to wake.
    /// Starts the restores that waited for capacity, oldest first, while there is room.
    /// Returns whether it started any.
    pub(super) async fn admit_waiting_restores(&mut self) -> bool {
        let mut started = false;
        while self.ctx.wake_outlook.any_waiting() {
            if self.at_capacity().await {
                break;
            }
            let Some(id) = self.ctx.wake_outlook.next_waiting() else {
                break;
            };
            // Everyone who asked has given up (their wait is bounded): nothing to wake it for.
            if self
                .waking
                .get(&id)
                .is_some_and(|waiters| !waiters.is_empty() && waiters.iter().all(|w| w.is_closed()))
            {
                self.waking.remove(&id);
                continue;
            }
            match self.ctx.store.get_session(&id).await {
                Ok(Some(record)) if record.state == SessionState::Hibernated => {
                    started = true;
                    self.begin_restore(record).await;
                }
                // Deleted or expired while it waited.
                Ok(_) => self.answer_waking(&id, Err(SessionError::NotFound(id.clone()))),
                Err(err) => {
                    tracing::warn!(%err, session = %id, "store unavailable; the restore waits on");
                    self.ctx.wake_outlook.keep_first(id);
                    break;
                }
            }
        }
        started
    }

    /// A restore that waits for capacity and will not happen (its session is being removed,
    /// the engine is gone): its callers hear why now rather than at their deadline.
    pub(super) fn give_up_waiting_restore(&mut self, id: &str, why: SessionError) {
        if self.ctx.wake_outlook.stop_waiting(id) {
            self.answer_waking(id, Err(why));
        }
    }

    fn answer_waking(&mut self, id: &str, result: Result<Session, SessionError>) {
        for waiter in self.waking.remove(id).unwrap_or_default() {
            let _ = waiter.send(match &result {
                Ok(session) => Ok(session.clone()),
                Err(err) => Err(copy_session_error(err)),
            });
        }
    }

    /// Whether `record` is due a periodic checkpoint: its template asks for them, the last
    /// snapshot is older than the interval, and someone worked in it since.
    pub(super) fn checkpoint_due(&self, record: &SessionRecord, now: DateTime<Utc>) -> bool {
        let Ok(interval) = self
            .template(&record.template)
            .map(|t| t.checkpoint_interval_seconds)
        else {
            return false;
        };
        let last = record
            .snapshot
            .as_deref()
            .and_then(snapshot_time)
            .unwrap_or(record.created_at);
        let worked = [
            Some(record.last_activity),
            self.ctx.activity.last(&record.id),
        ]
        .into_iter()
        .flatten()
        .max()
        .is_some_and(|at| at > last);
        interval > 0
            && worked
            && i64::try_from(interval).is_ok_and(|interval| (now - last).num_seconds() >= interval)
    }

    /// Commits a running session's files, pausing it for the copy, as its newest snapshot.
    pub(super) fn begin_checkpoint(&mut self, record: &SessionRecord) {
        let Some(container_id) = record.container_id.clone() else {
            return;
        };
        let id = record.id.clone();
        self.checkpointing.insert(id.clone(), false);
        let image = self.snapshot_name(&id);
        let runtime = self.ctx.runtime.clone();
        let failed_id = id.clone();
        self.spawn_reporting(
            async move {
                let outcome = runtime
                    .commit(&container_id, &image, true)
                    .await
                    .map(|()| image)
                    .map_err(SessionError::from);
                Command::CheckpointFinished { id, outcome }
            },
            |err| Command::CheckpointFinished {
                id: failed_id,
                outcome: Err(err),
            },
        );
    }

    pub(super) async fn checkpoint_finished(
        &mut self,
        id: &str,
        outcome: Result<String, SessionError>,
    ) {
        // Its container's death was not acted on while the checkpoint ran (and a failed
        // checkpoint may be the first sign of it): reconcile looks at the session now.
        let container_went = self.checkpointing.remove(id).unwrap_or(false);
        if container_went || outcome.is_err() {
            self.request_reconcile();
        }
        let image = match outcome {
            Ok(image) => image,
            Err(err) => {
                tracing::warn!(session = id, %err, "checkpoint failed; the next one retries");
                return;
            }
        };
        let mut record = match self.ctx.store.get_session(id).await {
            Ok(Some(record)) if record.state == SessionState::Running => record,
            // Ended or asleep meanwhile: this image is not needed.
            _ => return self.remove_snapshot_in_background(image),
        };
        let previous = record.snapshot.replace(image.clone());
        match self.ctx.store.update_session(&record).await {
            Ok(()) => {
                if let Some(previous) = previous {
                    self.remove_snapshot_in_background(previous);
                }
                self.push_in_background(Some(image));
            }
            Err(err) => {
                tracing::warn!(session = id, %err, "could not record the checkpoint");
                self.remove_snapshot_in_background(image);
            }
        }
    }

    /// A new snapshot image's name: tagged with the time, so the newest is known without the
    /// store; in the registry's repository when there is one.
    fn snapshot_name(&self, session_id: &str) -> String {
        format!(
            "{}/{session_id}:{}",
            self.ctx.snapshot_repository,
            Utc::now().timestamp_millis()
        )
    }

    /// Pushes a snapshot image that names a registry, after its commit and outside anyone's
    /// wait, and drops the engine's copy once pushed unless `snapshots.keep_local`. A failed
    /// push leaves the image local: nothing is lost, the next snapshot is pushed anew.
    fn push_in_background(&self, image: Option<String>) {
        let Some(image) = image.filter(|image| registry_of(image).is_some()) else {
            return;
        };
        let runtime = self.ctx.runtime.clone();
        let keep_local = self.ctx.keep_local_snapshots;
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            if let Err(err) = runtime.push_snapshot(&image).await {
                tracing::warn!(%err, %image, "could not push the snapshot; it stays local");
                return;
            }
            tracing::info!(%image, elapsed = ?started.elapsed(), "snapshot pushed");
            if !keep_local && let Err(err) = runtime.drop_local_snapshot(&image).await {
                tracing::warn!(%err, %image, "could not drop the local copy of a pushed snapshot");
            }
        });
    }

    /// Removes a snapshot image without waiting for it; reconcile retries a failure.
    pub(super) fn remove_snapshot_in_background(&self, image: String) {
        let runtime = self.ctx.runtime.clone();
        tokio::spawn(async move {
            if let Err(err) = runtime.remove_snapshot(&image).await {
                tracing::warn!(%err, %image, "could not remove a snapshot; reconcile retries");
            }
        });
    }
}

/// When a snapshot image was taken: its tag is the commit's time in milliseconds.
pub(super) fn snapshot_time(image: &str) -> Option<DateTime<Utc>> {
    let (_, tag) = image.rsplit_once(':')?;
    DateTime::from_timestamp_millis(tag.parse().ok()?)
}

/// Starts the Docker children a hibernation stopped. A child that will not start is the
/// user's to look at (`docker ps -a`), not a reason to fail the wake.
async fn wake_children(runtime: &dyn crate::runtime::Runtime, id: &str) {
    if let Err(err) = runtime.start_children(id).await {
        tracing::warn!(session = %id, %err, "docker children not started again");
    }
}

/// The snapshot a stopped session woke from, when its container holds nothing beyond it: that
/// snapshot is the session's files still, and a hibernation keeps it rather than commit an
/// empty layer. A session never hibernated, or one checkpointed since it woke (its container
/// is older than its newest snapshot), commits as usual; so does any doubt.
async fn unchanged_since(
    runtime: &dyn crate::runtime::Runtime,
    container_id: &str,
    woke_from: Option<String>,
) -> Option<String> {
    let snapshot = woke_from?;
    match runtime.unchanged_image(container_id).await {
        Ok(image) => image.filter(|image| *image == snapshot),
        Err(err) => {
            tracing::debug!(%err, container = container_id, "cannot tell whether anything changed; committing");
            None
        }
    }
}

//! The engine's side of a session's life: the engine going away and coming back, containers
//! that stop, start or vanish behind the actor's back, and restarting a session whose
//! container stopped with its files intact.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use berth_proto::SessionState;

use super::Actor;
use crate::{
    runtime::{ContainerEvent, ContainerEventKind, RuntimeError},
    sessions::{Command, SessionError},
    store::{SessionEvent, SessionRecord},
};

/// A session whose container stops again this soon after a restart, under the same engine,
/// is failed instead of restarted: something in it keeps killing it.
const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);

/// A restart the engine was too busy for is tried again after this.
const RETRY_RESTART_AFTER: Duration = Duration::from_secs(2);

/// A container's death this soon after an `oom` event of its was the kernel's OOM kill.
const OOM_EXPLAINS_DEATH_FOR: Duration = Duration::from_secs(10);

/// What the timeline says of a restart, for people.
const RESTARTED: &str = "the container stopped and was started again (an engine restart, or \
                         everything in it ended): files are intact; programs that were running \
                         were stopped (terminals stopped gracefully reopen in their directory \
                         with their scrollback)";

impl Actor {
    /// Fails with `engine_unavailable` while the engine is lost.
    pub(super) fn engine_up(&self) -> Result<(), SessionError> {
        self.ctx.engine.check()
    }

    pub(super) fn engine_generation(&self) -> u64 {
        self.ctx.engine.generation()
    }

    /// Puts a pooled session whose container was seen running into its pool, under the
    /// engine generation it was seen in.
    pub(super) fn pool_ready(&mut self, template: &str, id: String) {
        let generation = self.engine_generation();
        self.pool.add_ready(template, id, generation);
    }

    pub(super) fn engine_connected(&mut self) {
        let generation = self.ctx.engine.connected();
        tracing::info!(generation, "following the container engine's events");
        // Whatever happened while nobody watched (an engine restart stops every container
        // and may hand their addresses to others): one reconcile restarts stopped sessions,
        // pools running pooled ones under this generation and fails the vanished.
        self.request_reconcile();
    }

    pub(super) fn engine_lost(&mut self, reason: &str) {
        self.ctx.engine.lost();
        for id in self.ctx.wake_outlook.waiting() {
            if let Err(lost) = self.engine_up() {
                self.give_up_waiting_restore(&id, lost);
            }
        }
        tracing::warn!(
            reason,
            "lost the container engine; creates answer engine_unavailable until it is back"
        );
    }

    pub(super) async fn container_changed(&mut self, event: ContainerEvent) {
        let id = &event.session_id;
        // A death during a restart may come after the restart looked at the container: the
        // restart's outcome must hear of it (it then announces, and has reconcile look again).
        if self.restarting.contains(id) && event.kind == ContainerEventKind::Die {
            self.died_while_restarting.insert(id.clone());
            return;
        }
        // A checkpoint under way: what happened to the container is looked at once it ends.
        if let Some(went) = self.checkpointing.get_mut(id) {
            *went |= matches!(
                event.kind,
                ContainerEventKind::Die | ContainerEventKind::Destroy
            );
            return;
        }
        // The actor's own creates, removals and restarts make events too; those it already
        // accounts for.
        if self.in_flight(id) || self.restarting.contains(id) {
            return;
        }
        let record = match self.ctx.store.get_session(id).await {
            Ok(Some(record)) if record.state.is_live() => record,
            _ => return,
        };
        // Only the session's current container speaks for it.
        if record.container_id.as_deref() != Some(event.container_id.as_str()) {
            return;
        }
        match (event.kind, record.state) {
            (ContainerEventKind::Die, SessionState::Running | SessionState::Pooled) => {
                self.recover(record, false).await;
            }
            // Started by someone else: its address may be new, and is read again before the
            // next request reaches it.
            (ContainerEventKind::Start, SessionState::Running) => self.restart(record, false),
            (ContainerEventKind::Destroy, SessionState::Running) => {
                self.recover_from_snapshot(record, "container_vanished")
                    .await;
            }
            (ContainerEventKind::Destroy, SessionState::Pooled) => {
                self.fail(record, "container_vanished").await;
            }
            // A hibernation a dead control plane left behind (none of this one's is in
            // flight), whose stop finished only now: this one finishes it.
            (ContainerEventKind::Die, SessionState::Hibernating) => {
                self.finish_interrupted_hibernation(record).await;
            }
            // A restore or stop a dead control plane left behind: reconcile removes its
            // container whether it runs or not.
            (
                ContainerEventKind::Die | ContainerEventKind::Destroy,
                SessionState::Restoring | SessionState::Stopping,
            ) => self.request_reconcile(),
            // The kernel killed a process at the memory limit. The container lives on unless
            // that was its first process: then its `die` follows, and `recover` gives it
            // `oom_killed` as the reason.
            (ContainerEventKind::Oom, _) => {
                tracing::warn!(session = %id, "a process in the session ran out of memory");
                let now = Instant::now();
                self.oom_killed
                    .retain(|_, at| now.duration_since(*at) < OOM_EXPLAINS_DEATH_FOR);
                self.oom_killed.insert(id.clone(), now);
                let limit_mb = self.template(&record.template).map_or(0, |t| t.memory_mb);
                let detail = serde_json::json!({ "limit_mb": limit_mb });
                self.ctx
                    .webhooks
                    .announce("session.oom_killed", &record, detail);
            }
            _ => {}
        }
    }

    /// A live session's container stopped without Berth stopping it. A running session is
    /// started again (same container, files intact) unless its template says otherwise or it
    /// is crash-looping; a pooled one is dropped, and the pool warms another. `died_of_memory`:
    /// the engine said its first process was killed at the memory limit (its `oom` event may
    /// have said so already). Returns whether the session lives on.
    pub(super) async fn recover(&mut self, record: SessionRecord, died_of_memory: bool) -> bool {
        if self.restarting.contains(&record.id) {
            return true;
        }
        let oom_event = self
            .oom_killed
            .remove(&record.id)
            .is_some_and(|at| at.elapsed() < OOM_EXPLAINS_DEATH_FOR);
        let reason = if died_of_memory || oom_event {
            "oom_killed"
        } else {
            "container_exited"
        };
        let restartable = record.state == SessionState::Running
            && self
                .template(&record.template)
                .is_ok_and(|t| t.restart_after_engine_restart);
        let generation = self.engine_generation();
        let looping = self
            .last_restart
            .get(&record.id)
            .is_some_and(|(seen, at)| *seen == generation && at.elapsed() < CRASH_LOOP_WINDOW);
        if restartable && !looping {
            self.restart(record, true);
            return true;
        }
        if let Some(container) = self.fail(record, reason).await {
            self.remove_in_background(container);
        }
        false
    }

    /// A revive (a failed hibernation's container started again) a dead control plane left
    /// behind: the session is awake again, and its container started if it has `stopped`.
    /// Started whatever the template says of restarts and crash loops: the stop was Berth's
    /// own, and the container holds the newest files.
    pub(super) async fn finish_interrupted_revive(
        &mut self,
        mut record: SessionRecord,
        stopped: bool,
    ) {
        record.state = SessionState::Running;
        record.stop_reason = None;
        if self.ctx.store.update_session(&record).await.is_ok() && stopped {
            self.restart(record, false);
        }
    }

    /// Starts a session's container (a no-op when it runs), reads its address anew from the
    /// engine and waits for its agent; reports with `RestartFinished`. `announce` puts the
    /// restart on the session's timeline: not for a container someone else already started.
    pub(super) fn restart(&mut self, record: SessionRecord, announce: bool) {
        let Some(container_id) = record.container_id else {
            return;
        };
        self.restarting.insert(record.id.clone());
        let runtime = self.ctx.runtime.clone();
        let agent = self.ctx.agent.clone();
        let ready_timeout = self.ctx.agent_ready_timeout;
        let id = record.id;
        let failed_id = id.clone();
        let secret = record.agent_secret;
        self.spawn_reporting(
            async move {
                // A reconcile that saw the container stopped may come after someone (another
                // reconcile, its events) started it again: then there is nothing to announce.
                let mut announce = announce;
                let outcome = async {
                    let was_running = runtime
                        .inspect(&container_id)
                        .await?
                        .is_some_and(|container| container.running);
                    announce &= !was_running;
                    let addr = runtime.start(&container_id).await?;
                    agent
                        .wait_ready(addr, &secret, ready_timeout)
                        .await
                        .map_err(|source| SessionError::AgentNotReady {
                            id: id.clone(),
                            source,
                        })?;
                    // Docker children a hibernation stopped wake with it.
                    if let Err(err) = runtime.start_children(&id).await {
                        tracing::warn!(session = %id, %err, "docker children not started again");
                    }
                    Ok(addr)
                }
                .await;
                Command::RestartFinished {
                    id,
                    announce,
                    outcome,
                }
            },
            move |err| Command::RestartFinished {
                id: failed_id,
                announce,
                outcome: Err(err),
            },
        );
    }

    pub(super) async fn restart_finished(
        &mut self,
        id: &str,
        announce: bool,
        outcome: Result<SocketAddr, SessionError>,
    ) {
        self.restarting.remove(id);
        let died_meanwhile = self.died_while_restarting.remove(id);
        if died_meanwhile {
            // Whether it died before this restart's start (which revived it) or after, a
            // fresh look settles it.
            self.request_reconcile_after(RETRY_RESTART_AFTER);
        }
        let announce = announce || died_meanwhile;
        let mut record = match self.ctx.store.get_session(id).await {
            // Deleted or failed meanwhile: whoever did that also handles its container.
            Ok(Some(record)) if record.state == SessionState::Running => record,
            _ => return,
        };
        match outcome {
            Ok(addr) => {
                let address_changed = record.agent_addr.as_deref() != Some(&addr.to_string());
                record.agent_addr = Some(addr.to_string());
                record.stop_reason = None;
                if let Err(err) = self.ctx.store.update_session(&record).await {
                    tracing::warn!(%err, session = id, "could not record the restart; reconcile retries");
                    return;
                }
                tracing::info!(session = id, %addr, address_changed, announce, "session restarted");
                if announce {
                    self.last_restart
                        .retain(|_, (_, at)| at.elapsed() < CRASH_LOOP_WINDOW);
                    self.last_restart
                        .insert(id.to_owned(), (self.engine_generation(), Instant::now()));
                    self.record_event(id, "restarted", RESTARTED).await;
                }
            }
            // The engine went away again: the reconcile after it returns tries once more.
            Err(_) if self.engine_up().is_err() => {}
            // The engine is there but did not answer in time (busy with this container: a
            // commit a dead control plane started, say): try again shortly.
            Err(SessionError::Runtime(RuntimeError::Unavailable(err))) => {
                tracing::warn!(session = id, %err, "restart timed out; trying again shortly");
                self.request_reconcile_after(RETRY_RESTART_AFTER);
            }
            // Gone while it was being started again (`docker rm -f` sends die, then destroy).
            Err(SessionError::Runtime(RuntimeError::NotFound(_))) => {
                self.recover_from_snapshot(record, "container_vanished")
                    .await;
            }
            Err(err) => {
                let reason = format!("restart_failed: {err}");
                if let Some(container) = self.fail(record, &reason).await {
                    self.remove_in_background(container);
                }
            }
        }
    }

    /// Adds to a session's timeline; a store that cannot take it costs only the entry.
    pub(super) async fn record_event(&self, id: &str, kind: &str, message: &str) {
        let event = SessionEvent::now(id, kind, message);
        if let Err(err) = self.ctx.store.add_event(&event).await {
            tracing::warn!(%err, session = id, kind, "could not add to the session's timeline");
        }
    }
}

//! Ending sessions: delete, expiry, failures, and the one change to a live one, extend.

use berth_proto::{Session, SessionState};
use chrono::{DateTime, Utc};

use super::{Actor, copy_session_error};
use crate::{
    auth::Principal,
    config::ExpiryAction,
    sessions::{Command, SessionError, command::Reply, validate},
    store::{SessionFilter, SessionRecord, StateScope},
};

impl Actor {
    pub(super) async fn delete(&mut self, caller: &Principal, id: &str, reply: Reply<()>) {
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
            // Its engine work must finish first: that decides whether a container or an
            // image is left to remove.
            SessionState::Hibernating | SessionState::Restoring => {
                let _ = reply.send(Err(SessionError::Unavailable {
                    id: record.id,
                    state: record.state,
                }));
            }
            SessionState::Creating
            | SessionState::Pooled
            | SessionState::Running
            | SessionState::Hibernated
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
    pub(super) async fn begin_removal(
        &mut self,
        mut record: SessionRecord,
        waiters: Vec<Reply<()>>,
    ) {
        if let Some(existing) = self.removing.get_mut(&record.id) {
            existing.extend(waiters);
            return;
        }
        self.give_up_waiting_restore(&record.id, SessionError::NotFound(record.id.clone()));
        let collect_journal = self.ctx.journals.before_removal(&record);
        if record.state != SessionState::Stopping {
            record.state = SessionState::Stopping;
            if let Err(err) = self.ctx.store.update_session(&record).await {
                for waiter in waiters {
                    let _ = waiter.send(Err(err.clone().into()));
                }
                return;
            }
        }
        self.removing.insert(record.id.clone(), waiters);
        let runtime = self.ctx.runtime.clone();
        let id = record.id;
        let failed_id = id.clone();
        let store = self.ctx.store.clone();
        let container_id = record.container_id;
        let snapshot = record.snapshot;
        self.spawn_reporting(
            async move {
                // Deleting a session deletes its files, wherever they are: its container, its
                // hibernation image and its named snapshots.
                let outcome = async {
                    collect_journal.await;
                    if let Some(container_id) = container_id {
                        runtime.remove(&container_id).await?;
                    }
                    // After the session's container: nothing can make more children then.
                    runtime.remove_children(&id).await?;
                    if let Some(snapshot) = snapshot {
                        runtime.remove_snapshot(&snapshot).await?;
                    }
                    for named in store.list_snapshots(Some(&id)).await? {
                        runtime.remove_snapshot(&named.image).await?;
                        store.delete_snapshot(&named.id).await?;
                    }
                    Ok::<_, SessionError>(())
                }
                .await;
                Command::RemoveFinished { id, outcome }
            },
            |err| Command::RemoveFinished {
                id: failed_id,
                outcome: Err(err),
            },
        );
    }

    pub(super) async fn remove_finished(&mut self, id: &str, outcome: Result<(), SessionError>) {
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

    pub(super) async fn mark_stopped(&self, id: &str) -> Result<(), SessionError> {
        let Some(mut record) = self.ctx.store.get_session(id).await? else {
            return Ok(());
        };
        record.state = SessionState::Stopped;
        record
            .stop_reason
            .get_or_insert_with(|| "deleted".to_owned());
        record.forget_agent();
        record.snapshot = None;
        self.ctx.activity.forget(id);
        self.ctx.store.update_session(&record).await?;
        if !record.owner.is_empty() {
            let reason = serde_json::json!({ "reason": record.stop_reason });
            self.ctx
                .webhooks
                .announce("session.stopped", &record, reason);
        }
        self.forget_callback_state(id).await;
        Ok(())
    }

    /// An ended session's callback state ends with it (its owner's, `user-state`, stays).
    async fn forget_callback_state(&self, id: &str) {
        for scope in [
            StateScope::Session(id.to_owned()),
            StateScope::Platform(id.to_owned()),
        ] {
            if let Err(err) = self.ctx.store.clear_state(&scope).await {
                tracing::warn!(%err, session = id, "could not forget the session's callback state");
            }
        }
    }

    /// Marks a session failed with `reason`; returns its container, which the caller removes.
    pub(super) async fn fail(&mut self, mut record: SessionRecord, reason: &str) -> Option<String> {
        self.pool.forget(&record.id);
        tracing::warn!(session = %record.id, reason, "session failed");
        record.state = SessionState::Failed;
        record.stop_reason = Some(reason.to_owned());
        record.forget_agent();
        self.ctx.activity.forget(&record.id);
        if let Err(err) = self.ctx.store.update_session(&record).await {
            tracing::error!(session = %record.id, %err, "could not record the failure");
        }
        self.forget_callback_state(&record.id).await;
        // Pooled sessions belong to no one: nobody reads their timeline or hears of them.
        if !record.owner.is_empty() {
            self.record_event(&record.id, "failed", reason).await;
            let reason = serde_json::json!({ "reason": reason });
            self.ctx
                .webhooks
                .announce("session.failed", &record, reason);
        }
        record.container_id
    }

    pub(super) async fn extend(
        &self,
        caller: &Principal,
        id: &str,
        ttl_seconds: u64,
    ) -> Result<Session, SessionError> {
        let mut record = self.find_running(caller, id, "extended").await?;
        let max_ttl = self.template(&record.template)?.max_ttl_seconds;
        // Checked before any arithmetic: a TTL can be anything a u64 holds.
        let latest = validate::after(record.created_at, max_ttl)?;
        let now = Utc::now();
        let wanted = (ttl_seconds <= max_ttl)
            .then(|| validate::after(now, ttl_seconds))
            .transpose()?;
        if ttl_seconds == 0 || wanted.is_none_or(|wanted| wanted > latest) {
            let remaining = (latest - now).num_seconds().max(0);
            return Err(SessionError::InvalidTtl(format!(
                "sessions of template {:?} live at most {max_ttl} s; this one can be extended by at most {remaining} s",
                record.template
            )));
        }
        record.expires_at = wanted.unwrap_or(latest);
        record.last_activity = now;
        self.ctx.store.update_session(&record).await?;
        Ok(record.to_public())
    }

    /// For a running session past its expiry whose template says `on_expiry = "hibernate"`,
    /// the end of its maximum lifetime, when that is still ahead.
    fn sleeps_on_expiry(
        &self,
        record: &SessionRecord,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let template = self.template(&record.template).ok()?;
        if record.state != SessionState::Running || template.on_expiry != ExpiryAction::Hibernate {
            return None;
        }
        validate::after(record.created_at, template.max_ttl_seconds)
            .ok()
            .filter(|latest| *latest > now)
    }

    /// Hibernated sessions asleep longer than `snapshots.hibernated_ttl_seconds` are deleted.
    async fn reap_long_asleep(&mut self, now: DateTime<Utc>) {
        let asleep = SessionFilter {
            states: Some(vec![SessionState::Hibernated]),
            ..SessionFilter::default()
        };
        let Ok(records) = self.ctx.store.list_sessions(&asleep).await else {
            return;
        };
        let ttl =
            chrono::TimeDelta::from_std(self.ctx.hibernated_ttl).unwrap_or(chrono::TimeDelta::MAX);
        for mut record in records {
            let too_long = record
                .hibernated_at
                .is_some_and(|at| at.checked_add_signed(ttl).is_some_and(|end| end <= now));
            if too_long && !self.in_flight(&record.id) {
                tracing::info!(session = %record.id, "hibernated too long");
                record.stop_reason = Some("hibernated_ttl_expired".to_owned());
                self.begin_removal(record, Vec::new()).await;
            }
        }
    }

    /// Sessions on a node being drained: running ones hibernate (reason `drain`) and wake on
    /// another node at their next access; pooled ones go, and the pool refills elsewhere.
    pub(super) async fn evict(&mut self, containers: Vec<String>) {
        let leaving: std::collections::HashSet<String> = containers.into_iter().collect();
        let on_node = SessionFilter {
            states: Some(vec![SessionState::Running, SessionState::Pooled]),
            ..SessionFilter::default()
        };
        let records = match self.ctx.store.list_sessions(&on_node).await {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(%err, "drain: store unavailable; retried at the next reap");
                return;
            }
        };
        for mut record in records {
            let on_leaving_node = record
                .container_id
                .as_ref()
                .is_some_and(|container| leaving.contains(container));
            if !on_leaving_node || self.in_flight(&record.id) {
                continue;
            }
            tracing::info!(session = %record.id, state = ?record.state, "its node drains; moving it");
            record.stop_reason = Some("drain".to_owned());
            if record.state == SessionState::Pooled {
                self.pool.forget(&record.id);
                self.begin_removal(record, Vec::new()).await;
            } else {
                self.begin_hibernate(record, Vec::new()).await;
            }
        }
    }

    pub(super) async fn reap(&mut self) {
        let now = Utc::now();
        self.reap_long_asleep(now).await;
        let expired = SessionFilter {
            states: Some(vec![SessionState::Running, SessionState::Hibernated]),
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
                if self.in_flight(&record.id) {
                    continue;
                }
                if record.state != SessionState::Stopping {
                    tracing::info!(session = %record.id, "ttl expired");
                    record.stop_reason = Some("ttl_expired".to_owned());
                }
                if let Some(latest) = self.sleeps_on_expiry(&record, now) {
                    // It sleeps until its maximum lifetime instead, and wakes on access.
                    record.expires_at = latest;
                    self.begin_hibernate(record, Vec::new()).await;
                    continue;
                }
                self.begin_removal(record, Vec::new()).await;
            }
        }
    }
}

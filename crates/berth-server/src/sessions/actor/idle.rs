//! The idle policy: a session nobody works in is warned, then hibernated (or stopped). What
//! counts as work is recorded by the API in [`Activity`](crate::sessions::Activity), plus the
//! CPU its processes use and any keepalive its owner asked for.

use std::time::Instant;

use berth_proto::{Session, SessionState, ports::SessionEvent};
use chrono::{DateTime, TimeDelta, Utc};

use super::Actor;
use crate::{
    auth::Principal,
    config::{IdleAction, IdleConfig},
    sessions::Command,
    sessions::{SessionError, activity::PERSIST_EVERY, validate},
    store::{SessionFilter, SessionRecord},
};

/// CPU use is measured over roughly this window.
const CPU_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a session runs `keepalive` processes is asked of its agent once per idle deadline,
/// before the warning: the only moment it matters, so a quiet host asks nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveProbe {
    Asked(DateTime<Utc>),
    Answered(DateTime<Utc>),
}

impl Actor {
    /// Runs with every reap: persists activity, takes due checkpoints, warns, acts.
    pub(super) async fn check_idle(&mut self) {
        let running = SessionFilter {
            states: Some(vec![SessionState::Running]),
            ..SessionFilter::default()
        };
        let Ok(sessions) = self.ctx.store.list_sessions(&running).await else {
            return;
        };
        let now = Utc::now();
        let mut seen_since = Vec::new();
        // Samples of containers that are no longer running go, and probes of their sessions.
        self.cpu_samples.retain(|container, _| {
            sessions
                .iter()
                .any(|s| s.container_id.as_deref() == Some(container.as_str()))
        });
        self.keepalive_probes
            .retain(|id, _| sessions.iter().any(|s| s.id == *id));
        for mut record in sessions {
            if self.in_flight(&record.id) || self.restarting.contains(&record.id) {
                continue;
            }
            let Ok(idle) = self.template(&record.template).map(|t| t.idle.clone()) else {
                continue;
            };
            if self.cpu_busy(&record, &idle) {
                self.ctx.activity.touch(&record.id);
            }
            if let Some(seen) = self.ctx.activity.last(&record.id)
                && seen - record.last_activity
                    >= TimeDelta::from_std(PERSIST_EVERY).unwrap_or_default()
            {
                record.last_activity = seen;
                seen_since.push(record.clone());
            }
            if self.checkpoint_due(&record, now) {
                self.begin_checkpoint(&record);
                continue;
            }
            if idle.timeout_seconds == 0 {
                continue;
            }
            let acts_at = self.idle_deadline(&record, &idle);
            let warns_at = acts_at - TimeDelta::seconds(seconds(idle.warning_seconds));
            if now >= warns_at && !self.runs_no_keepalive_process(&record, acts_at) {
                continue;
            }
            if now >= acts_at {
                self.idle_warned.remove(&record.id);
                self.act_on_idle(record, idle.action).await;
            } else if now >= warns_at {
                if self.idle_warned.get(&record.id) != Some(&acts_at) {
                    self.idle_warned.insert(record.id.clone(), acts_at);
                    tracing::info!(session = %record.id, at = %acts_at, "idle warning");
                    self.ctx
                        .activity
                        .notify(&record.id, SessionEvent::IdleWarning { at: acts_at });
                    let at = serde_json::json!({ "at": acts_at, "action": idle.action });
                    self.ctx
                        .webhooks
                        .announce("session.idle_warning", &record, at);
                }
            } else if self.idle_warned.remove(&record.id).is_some() {
                self.ctx
                    .activity
                    .notify(&record.id, SessionEvent::IdleCancelled);
            }
        }
        // One write for the lot, at most every 30 s per session: never one per keystroke.
        if !seen_since.is_empty()
            && let Err(err) = self.ctx.store.update_sessions(&seen_since).await
        {
            tracing::warn!(%err, "could not record activity; the next check retries");
        }
    }

    /// When the idle policy acts on `record` unless something counts as activity first.
    fn idle_deadline(&self, record: &SessionRecord, idle: &IdleConfig) -> DateTime<Utc> {
        let seen = [
            Some(record.last_activity),
            self.ctx.activity.last(&record.id),
            record.keepalive_until,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(record.last_activity);
        seen + TimeDelta::seconds(seconds(idle.timeout_seconds))
    }

    /// Whether the session's agent said it runs no `keepalive` process for this `deadline`;
    /// asks it (off the actor) when it has not yet. An agent that cannot answer counts as
    /// running none: a session must not stay awake for ever because it is unreachable.
    fn runs_no_keepalive_process(
        &mut self,
        record: &SessionRecord,
        deadline: DateTime<Utc>,
    ) -> bool {
        match self.keepalive_probes.get(&record.id) {
            Some(KeepaliveProbe::Answered(at)) if *at == deadline => return true,
            Some(KeepaliveProbe::Asked(at)) if *at == deadline => return false,
            _ => {}
        }
        let Some(addr) = record.agent_addr.as_deref().and_then(|a| a.parse().ok()) else {
            return true;
        };
        self.keepalive_probes
            .insert(record.id.clone(), KeepaliveProbe::Asked(deadline));
        let agent = self.ctx.agent.clone();
        let secret = record.agent_secret.clone();
        let id = record.id.clone();
        let failed_id = id.clone();
        self.spawn_reporting(
            async move {
                let busy = agent
                    .runs_keepalive_process(addr, &secret)
                    .await
                    .unwrap_or(false);
                Command::KeepaliveProbed { id, deadline, busy }
            },
            move |_| Command::KeepaliveProbed {
                id: failed_id,
                deadline,
                busy: false,
            },
        );
        false
    }

    /// A `keepalive` process is work: the session's deadline moves on, and the next one is
    /// asked about again. Without one, the policy goes on at once (warns, or acts).
    pub(super) async fn keepalive_probed(&mut self, id: &str, deadline: DateTime<Utc>, busy: bool) {
        if busy {
            self.keepalive_probes.remove(id);
            self.ctx.activity.touch(id);
            if self.idle_warned.remove(id).is_some() {
                self.ctx.activity.notify(id, SessionEvent::IdleCancelled);
            }
        } else {
            self.keepalive_probes
                .insert(id.to_owned(), KeepaliveProbe::Answered(deadline));
            self.check_idle().await;
        }
    }

    async fn act_on_idle(&mut self, mut record: SessionRecord, action: IdleAction) {
        tracing::info!(session = %record.id, ?action, "idle: acting");
        record.stop_reason = Some("idle".to_owned());
        match action {
            IdleAction::Hibernate => self.begin_hibernate(record, Vec::new()).await,
            IdleAction::Stop => self.begin_removal(record, Vec::new()).await,
        }
    }

    /// Whether the session's processes used more CPU than the template's threshold over about
    /// the last minute, read from its cgroups on this host (`Runtime::cpu_time`).
    fn cpu_busy(&mut self, record: &SessionRecord, idle: &IdleConfig) -> bool {
        let Some(container) = record.container_id.as_deref() else {
            return false;
        };
        if idle.busy_cpu_percent == 0 {
            return false;
        }
        let Some(used) = self.ctx.runtime.cpu_time(&record.id, container) else {
            return false;
        };
        let now = Instant::now();
        let (since, before) = *self
            .cpu_samples
            .entry(container.to_owned())
            .or_insert((now, used));
        let wall = now.duration_since(since);
        if wall >= CPU_WINDOW {
            self.cpu_samples.insert(container.to_owned(), (now, used));
        }
        if wall.is_zero() {
            return false;
        }
        let percent = used.saturating_sub(before).as_secs_f64() / wall.as_secs_f64() * 100.0;
        percent >= f64::from(idle.busy_cpu_percent)
    }

    pub(super) async fn keepalive(
        &mut self,
        caller: &Principal,
        id: &str,
        seconds_awake: u64,
    ) -> Result<Session, SessionError> {
        let mut record = self.find_running(caller, id, "kept awake").await?;
        let max = self.template(&record.template)?.max_ttl_seconds;
        if seconds_awake == 0 || seconds_awake > max {
            return Err(SessionError::InvalidTtl(format!(
                "seconds must be between 1 and {max} (the template's max_ttl_seconds)"
            )));
        }
        let until = validate::after(Utc::now(), seconds_awake)?;
        record.keepalive_until = Some(until);
        self.ctx.store.update_session(&record).await?;
        self.ctx.activity.touch(id);
        if self.idle_warned.remove(id).is_some() {
            self.ctx.activity.notify(id, SessionEvent::IdleCancelled);
        }
        Ok(record.to_public())
    }
}

fn seconds(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

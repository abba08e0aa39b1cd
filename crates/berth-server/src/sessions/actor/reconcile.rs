//! Converging the store with the engine, whatever crashed in between.
//!
//! The engine is read off the actor ([`observe`]), the actor decides, and removals run in a
//! task of their own: the actor never waits on the engine here.

use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use berth_proto::SessionState;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::{Actor, snapshot::REVIVING};
use crate::{
    runtime::{ContainerOrigin, ManagedContainer, ManagedSnapshot, Runtime},
    sessions::{ReconcileReport, SessionError},
    store::{SessionFilter, SessionRecord, Store},
};

const INTERRUPTED: &str = "interrupted: the control plane stopped during create";

/// How many containers reconcile removes at once.
const REMOVAL_CONCURRENCY: usize = 16;

/// What the engine holds, as reconcile needs it.
#[derive(Debug, Default)]
pub struct Observed {
    /// Every container of this instance, listed before the store was read (so each one's row,
    /// written before its container was created, is in the store when the actor reads it),
    /// plus those the listing missed but an inspection found.
    pub containers: Vec<ManagedContainer>,
    /// Containers of live sessions that the listing lacked and an inspection confirmed gone,
    /// and why they went ([`Runtime::vanished_reason`]).
    pub vanished: HashMap<String, &'static str>,
    /// Live sessions whose engine could not be asked ([`Runtime::unanswered`]): left as they
    /// are, since nothing is known of their containers.
    pub unanswered: HashSet<String>,
    /// Each live session's state when the store was read. A container listed while its
    /// session was in another state than it is now was seen before a change the actor made
    /// since (a create that had not started it yet): the next reconcile looks again.
    pub states: HashMap<String, SessionState>,
    /// Stopped containers of live sessions whose first process was killed at the memory limit.
    pub oom_killed: HashSet<String>,
    /// Every snapshot image of this instance, listed before the store was read.
    pub snapshots: Vec<ManagedSnapshot>,
    /// Images of named snapshots, which are kept whatever their session does.
    pub named: HashSet<String>,
    /// Containers of sessions the store has no row for at all: rows are written before
    /// containers and never deleted, so the store lost them (a flushed Redis, say).
    pub lost: Vec<ContainerOrigin>,
}

/// Reads the engine for a reconcile: the listing first, then the store, then an inspection of
/// each live session's container the listing lacks, so an absence is confirmed before anyone
/// is failed for it (the container may have been created after the listing).
pub async fn observe(runtime: &dyn Runtime, store: &dyn Store) -> Result<Observed, SessionError> {
    let mut containers = runtime.list().await?;
    let snapshots = runtime.snapshots().await?;
    let listed: HashSet<String> = containers.iter().map(|c| c.id.clone()).collect();
    let named = store
        .list_snapshots(None)
        .await?
        .into_iter()
        .map(|snapshot| snapshot.image)
        .collect();
    let live = store.list_sessions(&SessionFilter::live()).await?;
    let live_ids: HashSet<&str> = live.iter().map(|record| record.id.as_str()).collect();
    let states = live
        .iter()
        .map(|record| (record.id.clone(), record.state))
        .collect();
    let mut lost = Vec::new();
    for container in &containers {
        if live_ids.contains(container.session_id.as_str())
            || store.get_session(&container.session_id).await?.is_some()
        {
            continue;
        }
        if let Some(origin) = runtime.origin(&container.id).await? {
            lost.push(origin);
        }
    }
    let mut oom_killed = HashSet::new();
    for container in &containers {
        if !container.running
            && live_ids.contains(container.session_id.as_str())
            && runtime.oom_killed(&container.id).await?
        {
            oom_killed.insert(container.id.clone());
        }
    }
    let mut vanished = HashMap::new();
    let mut unanswered = HashSet::new();
    for record in live {
        let Some(container_id) = record.container_id else {
            continue;
        };
        if listed.contains(&container_id) {
            continue;
        }
        if runtime.unanswered(&container_id) {
            unanswered.insert(record.id);
            continue;
        }
        match runtime.inspect(&container_id).await? {
            Some(container) => containers.push(container),
            None => {
                let reason = runtime.vanished_reason(&container_id);
                vanished.insert(container_id, reason);
            }
        }
    }
    Ok(Observed {
        containers,
        states,
        oom_killed,
        vanished,
        unanswered,
        snapshots,
        named,
        lost,
    })
}

impl Actor {
    /// Converges the store with what `observe` found. Containers to remove are removed in a
    /// task, concurrently, and `reply` hears once they are gone, so a startup reconcile leaves
    /// a clean engine behind it.
    pub(super) async fn reconcile(
        &mut self,
        observed: Observed,
        reply: Option<oneshot::Sender<ReconcileReport>>,
    ) {
        let started = Instant::now();
        let mut report = ReconcileReport::default();
        let kept = match self.ctx.store.list_sessions(&SessionFilter::kept()).await {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(%err, "reconcile: store unavailable");
                return;
            }
        };
        self.reconciled = true;
        let kept: HashMap<String, SessionRecord> = kept
            .into_iter()
            .map(|record| (record.id.clone(), record))
            .collect();
        let doomed_snapshots = self.unclaimed_snapshots(&observed, &kept);
        let mut live = kept;
        for origin in observed.lost {
            if let Some(record) = self.rebuild(origin).await {
                live.insert(record.id.clone(), record);
            }
        }
        live.retain(|_, record| record.state.is_live());
        let mut seen = observed.unanswered;
        let mut doomed = Vec::new();

        for container in observed.containers {
            // Its create, removal, hibernation (compaction included) or restore is under way,
            // and will account for its containers.
            if self.in_flight(&container.session_id) {
                seen.insert(container.session_id.clone());
                continue;
            }
            // The session's container, or one a crash left beside it (a compaction's, a
            // create's that never wrote its id back is the row's as long as it has none).
            let record = live.get(&container.session_id).filter(|record| {
                record
                    .container_id
                    .as_ref()
                    .is_none_or(|id| *id == container.id)
            });
            let Some(record) = record.cloned() else {
                // No live session claims it: left over from a crash or from a removal that failed.
                report.orphans_removed += 1;
                tracing::info!(container = %container.id, session = %container.session_id, "removing orphan container");
                doomed.push(container.id);
                continue;
            };
            seen.insert(container.session_id.clone());
            if observed
                .states
                .get(&container.session_id)
                .is_some_and(|then| *then != record.state)
            {
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
                    let died_of_memory = observed.oom_killed.contains(&container.id);
                    let lives_on = self.recover(record, died_of_memory).await;
                    report.sessions_failed += usize::from(!lives_on);
                }
                // Written again from its container: its address is read from the engine.
                SessionState::Running if record.agent_addr.is_none() => {
                    self.restart(record, false);
                }
                SessionState::Hibernating => self.finish_interrupted_hibernation(record).await,
                // The session's own container, started again after a failed hibernation: it
                // holds the newest files, so it is started, never removed.
                SessionState::Restoring if record.stop_reason.as_deref() == Some(REVIVING) => {
                    self.finish_interrupted_revive(record, !container.running)
                        .await;
                }
                // A restore the control plane died in: its half-made container goes, the
                // snapshot is intact, the next access wakes it again.
                SessionState::Restoring => {
                    doomed.extend(record.container_id.clone());
                    self.back_to_sleep(record).await;
                }
                // Ready from before a restart: back into the pool.
                SessionState::Pooled => self.pool_ready(&record.template, record.id),
                SessionState::Stopping => self.begin_removal(record, Vec::new()).await,
                _ => {}
            }
        }

        live.retain(|id, _| !seen.contains(id) && !self.in_flight(id));
        for record in live.into_values() {
            match record.state {
                SessionState::Creating => {
                    report.sessions_failed += 1;
                    doomed.extend(self.fail(record, INTERRUPTED).await);
                }
                SessionState::Running | SessionState::Pooled => {
                    // Not vanished means its row appeared after `observe` read the store: the
                    // next pass looks at it.
                    let vanished = match &record.container_id {
                        None => Some("container_vanished"),
                        Some(id) => observed.vanished.get(id).copied(),
                    };
                    match vanished {
                        Some(reason) if record.state == SessionState::Running => {
                            let lives_on = self.recover_from_snapshot(record, reason).await;
                            report.sessions_failed += usize::from(!lives_on);
                        }
                        Some(reason) => {
                            report.sessions_failed += 1;
                            doomed.extend(self.fail(record, reason).await);
                        }
                        None => {}
                    }
                }
                SessionState::Hibernating => {
                    // The newest image of a hibernation that finished on the engine, else the
                    // previous one: the container is gone either way.
                    let newest = newest_snapshot(&observed.snapshots, &record.id)
                        .or_else(|| record.snapshot.clone());
                    match newest {
                        Some(image) => {
                            let mut asleep = record;
                            asleep.snapshot = Some(image);
                            asleep.hibernated_at = Some(chrono::Utc::now());
                            self.back_to_sleep(asleep).await;
                        }
                        None => {
                            report.sessions_failed += 1;
                            self.fail(record, "container_vanished").await;
                        }
                    }
                }
                SessionState::Restoring => self.back_to_sleep(record).await,
                // Its container is already gone: the stop is complete.
                SessionState::Stopping => {
                    if let Err(err) = self.mark_stopped(&record.id).await {
                        tracing::warn!(%err, session = %record.id, "could not mark stopped");
                    }
                }
                SessionState::Stopped | SessionState::Failed | SessionState::Hibernated => {}
            }
        }
        let runtime = self.ctx.runtime.clone();
        tokio::spawn(async move {
            futures_util::stream::iter(doomed)
                .for_each_concurrent(REMOVAL_CONCURRENCY, |container| {
                    let runtime = runtime.clone();
                    async move {
                        if let Err(err) = runtime.remove(&container).await {
                            tracing::warn!(%err, %container, "could not remove; the next reconcile retries");
                        }
                    }
                })
                .await;
            for image in doomed_snapshots {
                if let Err(err) = runtime.remove_snapshot(&image).await {
                    tracing::warn!(%err, %image, "could not remove; the next reconcile retries");
                }
            }
            crate::metrics::reconciled(started.elapsed());
            if let Some(reply) = reply {
                let _ = reply.send(report);
            }
        });
    }

    /// Writes again the row of a session whose container outlived its row (see
    /// [`Observed::lost`]), from what the container says: its owner keeps it. A warm pool's
    /// container, nobody's yet, is left to go as an orphan. Returns the row written.
    async fn rebuild(&mut self, origin: ContainerOrigin) -> Option<SessionRecord> {
        if origin.owner.is_empty() || origin.agent_secret.is_empty() {
            return None;
        }
        let ttl = self
            .template(&origin.template)
            .map(|template| template.ttl_seconds)
            .unwrap_or_else(|_| crate::config::TemplateConfig::default().ttl_seconds);
        let now = chrono::Utc::now();
        let record = SessionRecord {
            id: origin.session_id,
            owner: origin.owner,
            template: origin.template,
            state: SessionState::Running,
            labels: Default::default(),
            created_at: origin.created_at,
            expires_at: now + chrono::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX)),
            last_activity: now,
            container_id: Some(origin.container_id),
            agent_addr: None,
            stop_reason: None,
            agent_secret: origin.agent_secret,
            snapshot: None,
            hibernated_at: None,
            keepalive_until: None,
        };
        if let Err(err) = self.ctx.store.insert_session(&record).await {
            tracing::warn!(%err, session = %record.id, "could not write a lost session again");
            return None;
        }
        tracing::warn!(session = %record.id, owner = %record.owner, "the store had lost this session; written again from its container");
        self.record_event(
            &record.id,
            "rebuilt",
            "the store had lost this session; it was written again from its container (its \
             labels and expiry were reset)",
        )
        .await;
        Some(record)
    }

    /// Snapshot images no session needs: of a session that ended, or an older one of a
    /// session whose row names a newer; never a named snapshot's. A hibernation's image may be newer than its row says
    /// (the control plane died between commit and write): that one is kept for the session.
    fn unclaimed_snapshots(
        &self,
        observed: &Observed,
        kept: &HashMap<String, SessionRecord>,
    ) -> Vec<String> {
        let snapshots = &observed.snapshots;
        snapshots
            .iter()
            .filter(|snapshot| !observed.named.contains(&snapshot.image))
            .filter(|snapshot| match kept.get(&snapshot.session_id) {
                None => true,
                Some(_) if self.in_flight(&snapshot.session_id) => false,
                Some(record) if record.state == SessionState::Hibernating => {
                    newest_snapshot(snapshots, &record.id).as_ref() != Some(&snapshot.image)
                        && record.snapshot.as_ref() != Some(&snapshot.image)
                }
                Some(record) => record.snapshot.as_ref() != Some(&snapshot.image),
            })
            .map(|snapshot| snapshot.image.clone())
            .collect()
    }

    /// A create, removal, hibernation or restore of this session is under way; reconcile
    /// and the engine's events leave it alone.
    pub(super) fn in_flight(&self, id: &str) -> bool {
        self.creating.contains_key(id)
            || self.removing.contains_key(id)
            || self.hibernating.contains_key(id)
            || self.waking.contains_key(id)
            || self.checkpointing.contains_key(id)
    }
}

/// The newest snapshot image of a session: tags are the commit's time in milliseconds.
fn newest_snapshot(snapshots: &[ManagedSnapshot], session_id: &str) -> Option<String> {
    snapshots
        .iter()
        .filter(|snapshot| snapshot.session_id == session_id)
        .max_by_key(|snapshot| {
            snapshot
                .image
                .rsplit_once(':')
                .and_then(|(_, tag)| tag.parse::<i64>().ok())
        })
        .map(|snapshot| snapshot.image.clone())
}

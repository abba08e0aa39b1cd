//! Adding to sessions' timelines off the request's path, and forgetting old ones.
//!
//! Who writes what: the actor its own findings (`restarted`, `failed`, `oom`...), the webhook
//! intake the lifecycle it announces (`webhooks::Dispatcher`), the API what callers do (exec,
//! processes, files, snapshots, hibernate and resume, with who did it), the terminal relay
//! the commands a shell reports (`terminal_commands`), the callback API custom events.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    agent_client::AgentClient,
    store::{SessionEvent, SessionRecord, Store},
};

/// Entries waiting for the store; a flood beyond this is dropped (and logged), never queued
/// without bound.
const QUEUE: usize = 10_000;
/// How often timelines past their retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Where entries go; cheap to clone. The default writes nothing (unit tests of other parts).
#[derive(Debug, Clone, Default)]
pub struct TimelineWriter(Option<mpsc::Sender<SessionEvent>>);

impl TimelineWriter {
    /// The writer and its task, which also forgets timelines `retention` after their last entry.
    pub fn spawn(store: Arc<dyn Store>, retention: Duration) -> (Self, JoinHandle<()>) {
        let (sender, mut entries) = mpsc::channel::<SessionEvent>(QUEUE);
        let task = tokio::spawn(async move {
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! {
                    entry = entries.recv() => {
                        let Some(entry) = entry else { return };
                        if let Err(err) = store.add_event(&entry).await {
                            tracing::warn!(%err, session = entry.session_id, kind = entry.kind,
                                "a timeline entry was not kept");
                        }
                    }
                    _ = prune.tick() => {
                        let before = Utc::now() - retention;
                        if let Err(err) = store.prune_timelines(before).await {
                            tracing::warn!(%err, "old timelines not pruned; retrying later");
                        }
                    }
                }
            }
        });
        (Self(Some(sender)), task)
    }

    pub fn add(&self, entry: SessionEvent) {
        let Some(sender) = &self.0 else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(entry)) = sender.try_send(entry) {
            tracing::warn!(
                session = entry.session_id,
                kind = entry.kind,
                "the timeline's queue is full; an entry was dropped"
            );
        }
    }
}

/// Collects sessions' agent journals into their timelines one collection per session at a
/// time: a take empties the journal, so a timeline read waits for a collection under way (a
/// terminal just closed) and then sees what it took.
#[derive(Debug, Clone, Default)]
pub struct Journals(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl Journals {
    /// Moves what the session's agent journaled (terminal commands, processes ending, ports)
    /// into its timeline. Best effort: an agent that does not answer keeps its journal.
    pub async fn collect(
        &self,
        agent: &AgentClient,
        store: &dyn Store,
        id: &str,
        agent_at: (SocketAddr, &str),
    ) {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(id.to_owned()).or_default().clone()
        };
        {
            let _one_at_a_time = lock.lock().await;
            collect_journal(agent, store, id, agent_at).await;
        }
        let mut locks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this call hold it: nobody waits, so the entry goes.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(id);
        }
    }
}

async fn collect_journal(
    agent: &AgentClient,
    store: &dyn Store,
    id: &str,
    (addr, secret): (SocketAddr, &str),
) {
    let taken = match agent.take_journal(addr, secret).await {
        Ok(taken) => taken,
        Err(err) => {
            tracing::debug!(session = id, %err, "the agent's journal was not collected");
            return;
        }
    };
    let mut entries: Vec<SessionEvent> = taken
        .entries
        .into_iter()
        .map(|entry| SessionEvent {
            session_id: id.to_owned(),
            at: entry.at,
            kind: entry.kind,
            message: entry.message,
            actor: None,
            data: Some(entry.data).filter(|data| !data.is_null()),
        })
        .collect();
    if taken.dropped > 0 {
        let message = format!(
            "{} earlier entries of the session's own were not kept (too many at once)",
            taken.dropped
        );
        let first = entries.first().map_or_else(Utc::now, |entry| entry.at);
        let mut gap = SessionEvent::now(id, "journal_overflow", &message);
        gap.at = first;
        entries.insert(0, gap);
    }
    for entry in entries {
        if let Err(err) = store.add_event(&entry).await {
            tracing::warn!(%err, session = id, "the agent's journal was not kept");
            return;
        }
    }
}

/// Collects a running session's journal; for the actor to await before its container goes
/// (hibernation, deletion), when the journal would go with it.
pub fn collect_before_removal(
    journals: Journals,
    agent: AgentClient,
    store: Arc<dyn Store>,
    record: &SessionRecord,
) -> impl Future<Output = ()> + Send + 'static {
    // Pooled sessions belong to no one: nobody reads their timeline.
    let reachable = (record.state == berth_proto::SessionState::Running
        && !record.owner.is_empty())
    .then(|| record.agent_addr.as_deref()?.parse::<SocketAddr>().ok())
    .flatten();
    let (id, secret) = (record.id.clone(), record.agent_secret.clone());
    async move {
        if let Some(addr) = reachable {
            let agent_at = (addr, secret.as_str());
            journals
                .collect(&agent, store.as_ref(), &id, agent_at)
                .await;
        }
    }
}

/// The timeline's entry for a lifecycle event the actor announces (`session.running`...), or
/// `None` for those the actor or the callback API write themselves.
pub fn lifecycle_entry(
    event: &str,
    session_id: &str,
    detail: &serde_json::Value,
) -> Option<SessionEvent> {
    let kind = event.strip_prefix("session.")?;
    let message = match kind {
        "created" => "created".to_owned(),
        "running" => "running".to_owned(),
        "idle_warning" => format!(
            "idle: it will {} at {} unless used",
            detail["action"].as_str().unwrap_or("stop"),
            detail["at"].as_str().unwrap_or("soon")
        ),
        "hibernated" => "hibernated: its files and state are kept; any access wakes it".to_owned(),
        "restored" => "woke from hibernation".to_owned(),
        "stopped" => format!(
            "stopped ({})",
            detail["reason"].as_str().unwrap_or("deleted")
        ),
        // `failed` and `recovered` are the actor's, with their reasons; `custom` the callback's.
        _ => return None,
    };
    let entry = SessionEvent::now(session_id, kind, &message);
    Some(match detail {
        serde_json::Value::Object(fields) if !fields.is_empty() => entry.with_data(detail.clone()),
        _ => entry,
    })
}

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
use tokio::task::JoinHandle;

use berth_proto::SessionState;
use futures_util::StreamExt;

use crate::{
    agent_client::AgentClient,
    queued::Queued,
    store::{SessionEvent, SessionFilter, SessionRecord, Store},
    webhooks::Emitter,
};

/// Entries waiting for the store; a flood beyond this is dropped (and logged), never queued
/// without bound.
const QUEUE: usize = 10_000;
/// Entries taken from the queue at once.
const BATCH: usize = 64;
/// How often timelines past their retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Where entries go; cheap to clone. The default writes nothing (unit tests of other parts).
#[derive(Debug, Clone, Default)]
pub struct TimelineWriter(Queued<SessionEvent>);

impl TimelineWriter {
    /// The writer and its task, which also forgets timelines `retention` after their last entry.
    pub fn spawn(store: Arc<dyn Store>, retention: Duration) -> (Self, JoinHandle<()>) {
        let pruned = store.clone();
        let write = move |entries: Vec<SessionEvent>| {
            let store = store.clone();
            async move {
                for entry in entries {
                    if let Err(err) = store.add_event(&entry).await {
                        tracing::warn!(%err, session = entry.session_id, kind = entry.kind,
                            "a timeline entry was not kept");
                    }
                }
            }
        };
        let prune = move || {
            let store = pruned.clone();
            async move {
                let before = Utc::now() - retention;
                if let Err(err) = store.prune_timelines(before).await {
                    tracing::warn!(%err, "old timelines not pruned; retrying later");
                }
            }
        };
        let (queue, task) = Queued::spawn(QUEUE, BATCH, write, PRUNE_EVERY, prune);
        (Self(queue), task)
    }

    pub fn add(&self, entry: SessionEvent) {
        if let Err(entry) = self.0.push(entry) {
            tracing::warn!(
                session = entry.session_id,
                kind = entry.kind,
                "the timeline's queue is full; an entry was dropped"
            );
        }
    }
}

/// Collects sessions' agent journals into their timelines, one collection per session at a
/// time: a take empties the journal, so a timeline read waits for a collection under way (a
/// terminal just closed) and then sees what it took. Cheap to clone, for spawned tasks.
#[derive(Debug, Clone)]
pub struct Collector {
    in_progress: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    agent: AgentClient,
    store: Arc<dyn Store>,
    webhooks: Emitter,
}

/// A session's place in line for collection; the line goes with its last holder, also when
/// a collection is dropped halfway (a reader that went away).
struct Turn<'a> {
    lines: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Turn<'a> {
    fn new(lines: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>, id: &str) -> Self {
        let lock = lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone();
        Self {
            lines,
            id: id.to_owned(),
            lock,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this turn hold it: nobody waits, so the line goes.
        if Arc::strong_count(&self.lock) == 2 {
            lines.remove(&self.id);
        }
    }
}

/// Running sessions' journals collected at once, at most: the periodic sweep's width.
const SWEEP_CONCURRENCY: usize = 16;

impl Collector {
    pub fn new(agent: AgentClient, store: Arc<dyn Store>, webhooks: Emitter) -> Self {
        Self {
            in_progress: Arc::default(),
            agent,
            store,
            webhooks,
        }
    }

    /// Moves what a running session's agent journaled (terminal commands, processes ending,
    /// ports) into its timeline, and announces its ports to webhooks. Nothing for a session
    /// that is not running, or is pooled (it belongs to no one). Best effort: an agent that
    /// does not answer keeps its journal for the next collection.
    pub async fn collect(&self, record: &SessionRecord) {
        let addr = record.agent_addr.as_deref().and_then(|a| a.parse().ok());
        let (SessionState::Running, Some(addr), false) =
            (record.state, addr, record.owner.is_empty())
        else {
            return;
        };
        let turn = Turn::new(&self.in_progress, &record.id);
        let _one_at_a_time = turn.lock.lock().await;
        self.collect_from(record, addr).await;
    }

    /// Collects every running session's journal, a few at a time (the leader's sweep).
    pub async fn sweep(&self) {
        let running = SessionFilter {
            states: Some(vec![SessionState::Running]),
            ..SessionFilter::default()
        };
        let sessions = match self.store.list_sessions(&running).await {
            Ok(sessions) => sessions,
            Err(err) => {
                tracing::debug!(%err, "journals not swept; the store does not answer");
                return;
            }
        };
        futures_util::stream::iter(sessions)
            .for_each_concurrent(SWEEP_CONCURRENCY, |record| async move {
                self.collect(&record).await;
            })
            .await;
    }

    /// A collection to await before a session's container goes (hibernation, deletion), when
    /// its journal would go with it.
    pub fn before_removal(&self, record: &SessionRecord) -> impl Future<Output = ()> + use<> {
        let (collector, record) = (self.clone(), record.clone());
        async move { collector.collect(&record).await }
    }

    async fn collect_from(&self, record: &SessionRecord, addr: SocketAddr) {
        let id = record.id.as_str();
        let taken = match self.agent.take_journal(addr, &record.agent_secret).await {
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
            // The agent's journal is emptied: what the store refuses is lost, the rest kept.
            if let Err(err) = self.store.add_event(&entry).await {
                tracing::warn!(%err, session = id, kind = entry.kind, "a journal entry was lost");
                continue;
            }
            let event = match entry.kind.as_str() {
                "port_opened" => "session.port_opened",
                "port_closed" => "session.port_closed",
                _ => continue,
            };
            let detail = entry.data.clone().unwrap_or_default();
            self.webhooks.announce(event, record, detail);
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
        "disk_warning" => format!(
            "its files take {} MiB of the {} MiB its template allows; past that it is stopped",
            detail["used_mb"], detail["limit_mb"]
        ),
        "oom_killed" => format!(
            "out of memory: the kernel killed a process in it (the template allows {} MiB)",
            detail["limit_mb"]
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

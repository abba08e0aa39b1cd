//! Adding to sessions' timelines off the request's path, and forgetting old ones.
//!
//! Who writes what: the actor its own findings (`restarted`, `failed`, `oom`...), the webhook
//! intake the lifecycle it announces (`webhooks::Dispatcher`), the API what callers do (exec,
//! processes, files, snapshots, hibernate and resume, with who did it), the terminal relay
//! the commands a shell reports (`terminal_commands`), the callback API custom events.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use tokio::task::JoinHandle;

use berth_proto::{SessionState, agent::JournalAck};
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
/// time: a collection acknowledges what it kept, so a timeline read waits for one under way
/// (a terminal just closed) and then sees what it kept. Cheap to clone, for spawned tasks.
#[derive(Debug, Clone)]
pub struct Collector {
    in_progress: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Sessions whose journal's entries this instance kept but could not acknowledge: the
    /// next read shows them again, and they are not kept twice.
    unacknowledged: Arc<Mutex<HashMap<String, JournalAck>>>,
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
/// Sessions whose acknowledgement an instance remembers at most (a follower's collections
/// are pruned by no sweep).
const MAX_UNACKNOWLEDGED: usize = 1024;

impl Collector {
    pub fn new(agent: AgentClient, store: Arc<dyn Store>, webhooks: Emitter) -> Self {
        Self {
            in_progress: Arc::default(),
            unacknowledged: Arc::default(),
            agent,
            store,
            webhooks,
        }
    }

    /// Moves what a running session's agent journaled (terminal commands, processes ending,
    /// ports) into its timeline, and announces its ports to webhooks. Nothing for a session
    /// that is not running, or is pooled (it belongs to no one). Best effort: an agent that
    /// does not answer, or whose answer is lost, keeps its journal for the next collection.
    pub async fn collect(&self, record: &SessionRecord) {
        let addr = record.agent_addr.as_deref().and_then(|a| a.parse().ok());
        let (SessionState::Running, Some(addr), false) =
            (record.state, addr, record.owner.is_empty())
        else {
            self.unacknowledged().remove(&record.id);
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
        let ids: HashSet<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        self.unacknowledged()
            .retain(|id, _| ids.contains(id.as_str()));
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

    fn unacknowledged(&self) -> std::sync::MutexGuard<'_, HashMap<String, JournalAck>> {
        self.unacknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    async fn collect_from(&self, record: &SessionRecord, addr: SocketAddr) {
        let id = record.id.as_str();
        let journal = match self.agent.read_journal(addr, &record.agent_secret).await {
            Ok(journal) => journal,
            Err(err) => {
                tracing::debug!(session = id, %err, "the agent's journal was not collected");
                return;
            }
        };
        // An agent of an older image forgot what it answered: there is nothing to acknowledge.
        let acknowledged = !journal.boot.is_empty();
        // What the timeline has already: acknowledged, or kept here and not acknowledged.
        let remembered = self
            .unacknowledged()
            .get(id)
            .filter(|ack| ack.boot == journal.boot)
            .map(|ack| ack.seq);
        let kept_through = remembered.unwrap_or(0).max(journal.acked);
        let first_seq = journal.entries.first().map(|entry| entry.seq);
        let dropped = match (acknowledged, first_seq) {
            (true, Some(first)) => first.saturating_sub(kept_through + 1),
            (true, None) => 0,
            (false, _) => journal.dropped,
        };
        let mut entries: Vec<(u64, SessionEvent)> = journal
            .entries
            .into_iter()
            .filter(|entry| !acknowledged || entry.seq > kept_through)
            .map(|entry| {
                let event = SessionEvent {
                    session_id: id.to_owned(),
                    at: entry.at,
                    kind: entry.kind,
                    message: entry.message,
                    actor: None,
                    data: Some(entry.data).filter(|data| !data.is_null()),
                };
                (entry.seq, event)
            })
            .collect();
        if dropped > 0 {
            let message = format!(
                "{dropped} earlier entries of the session's own were not kept (too many at once)"
            );
            let first = entries.first().map_or_else(Utc::now, |(_, entry)| entry.at);
            let mut gap = SessionEvent::now(id, "journal_overflow", &message);
            gap.at = first;
            // Noted, the dropped ones count as kept: the last of them is the gap's number (0
            // from an older agent, which numbers nothing).
            let last_dropped = first_seq.map_or(0, |seq| seq.saturating_sub(1));
            entries.insert(0, (last_dropped, gap));
        }
        let mut ack = JournalAck {
            boot: journal.boot.clone(),
            seq: kept_through,
        };
        for (seq, entry) in entries {
            if let Err(err) = self.store.add_event(&entry).await {
                if !acknowledged {
                    tracing::warn!(%err, session = id, kind = entry.kind, "a journal entry was lost");
                    continue;
                }
                // The rest waits in the agent's journal for the next collection, in order.
                tracing::warn!(%err, session = id, kind = entry.kind,
                    "journal entries not kept yet; the next collection retries");
                break;
            }
            ack.seq = seq;
            let event = match entry.kind.as_str() {
                "port_opened" => "session.port_opened",
                "port_closed" => "session.port_closed",
                _ => continue,
            };
            let detail = entry.data.clone().unwrap_or_default();
            self.webhooks.announce(event, record, detail);
        }
        if !acknowledged || ack.seq == journal.acked {
            self.unacknowledged().remove(id);
            return;
        }
        // Retried once at once: an acknowledgement lost for good may let another instance's
        // collection keep these entries again.
        let secret = &record.agent_secret;
        let acked = match self.agent.ack_journal(addr, secret, &ack).await {
            Ok(()) => Ok(()),
            Err(_) => self.agent.ack_journal(addr, secret, &ack).await,
        };
        let mut unacknowledged = self.unacknowledged();
        match acked {
            Ok(()) => {
                unacknowledged.remove(id);
            }
            Err(err) => {
                tracing::debug!(session = id, %err, "the agent's journal was not acknowledged");
                // Bounded: forgetting costs at most a repeated entry, never a lost one.
                if unacknowledged.len() >= MAX_UNACKNOWLEDGED {
                    unacknowledged.clear();
                }
                unacknowledged.insert(id.to_owned(), ack);
            }
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{
        Json, Router,
        extract::State,
        http::StatusCode,
        routing::{get, post},
    };
    use berth_proto::{
        SessionState,
        agent::{Journal, JournalAck, JournalEntry},
    };

    use super::Collector;
    use crate::{
        agent_client::AgentClient,
        store::{SessionRecord, SqliteStore, Store},
        webhooks::Emitter,
    };

    /// An agent's journal as collectors meet it: what it answers, the acknowledgements it was
    /// sent, and how many more it fails. One that succeeds forgets, as the agent does.
    #[derive(Default)]
    struct StandIn {
        journal: Option<Journal>,
        acks: Vec<JournalAck>,
        failing_acks: usize,
        /// Speaks only the older images' `POST /journal/take`.
        hands_over_once: bool,
    }

    type Shared = Arc<Mutex<StandIn>>;

    async fn read(State(agent): State<Shared>) -> Result<Json<Journal>, StatusCode> {
        let agent = agent.lock().unwrap();
        match (&agent.journal, agent.hands_over_once) {
            (Some(journal), false) => Ok(Json(journal.clone())),
            _ => Err(StatusCode::NOT_FOUND),
        }
    }

    async fn take(State(agent): State<Shared>) -> Result<Json<Journal>, StatusCode> {
        let mut agent = agent.lock().unwrap();
        match (agent.journal.take(), agent.hands_over_once) {
            (Some(journal), true) => Ok(Json(journal)),
            _ => Err(StatusCode::NOT_FOUND),
        }
    }

    async fn ack(State(agent): State<Shared>, Json(ack): Json<JournalAck>) -> StatusCode {
        let mut agent = agent.lock().unwrap();
        agent.acks.push(ack.clone());
        if agent.failing_acks > 0 {
            agent.failing_acks -= 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if let Some(journal) = agent.journal.as_mut() {
            journal.entries.retain(|entry| entry.seq > ack.seq);
            journal.acked = journal.acked.max(ack.seq);
        }
        StatusCode::NO_CONTENT
    }

    fn journal(boot: &str, seqs: std::ops::RangeInclusive<u64>, acked: u64) -> Journal {
        let entry = |seq| JournalEntry {
            seq,
            at: chrono::Utc::now(),
            kind: "command".to_owned(),
            message: format!("command {seq}"),
            data: serde_json::Value::Null,
        };
        Journal {
            boot: boot.to_owned(),
            acked,
            entries: seqs.map(entry).collect(),
            dropped: 0,
        }
    }

    fn session(addr: std::net::SocketAddr) -> SessionRecord {
        let now = chrono::Utc::now();
        SessionRecord {
            id: "s1".into(),
            owner: "alice".into(),
            template: "default".into(),
            state: SessionState::Running,
            labels: Default::default(),
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
            last_activity: now,
            container_id: None,
            agent_addr: Some(addr.to_string()),
            stop_reason: None,
            agent_secret: "secret".into(),
            snapshot: None,
            hibernated_at: None,
            keepalive_until: None,
        }
    }

    #[tokio::test]
    async fn entries_reach_the_timeline_once_when_acknowledgements_are_lost_or_agents_restart() {
        let agent: Shared = Arc::default();
        let app = Router::new()
            .route("/journal", get(read))
            .route("/journal/take", post(take))
            .route("/journal/ack", post(ack))
            .with_state(agent.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let session = session(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("berth.db"))
                .await
                .unwrap(),
        );
        let collector =
            || Collector::new(AgentClient::default(), store.clone(), Emitter::default());
        let (here, elsewhere) = (collector(), collector());
        let messages = || async {
            let events = store.events("s1").await.unwrap();
            events.into_iter().map(|e| e.message).collect::<Vec<_>>()
        };
        let set = |journal: Journal, failing_acks: usize| {
            let mut agent = agent.lock().unwrap();
            agent.journal = Some(journal);
            agent.failing_acks = failing_acks;
        };

        // Two entries, the two before them pushed out; the acknowledgement is lost, and lost
        // again when retried.
        set(journal("run-1", 3..=4, 0), 2);
        here.collect(&session).await;
        assert_eq!(messages().await[1..], ["command 3", "command 4"]);
        assert!(messages().await[0].starts_with("2 earlier entries"));
        assert_eq!(agent.lock().unwrap().acks.len(), 2, "retried once");

        // The agent still shows 4 beside new ones (3 pushed out, kept already): only the new
        // ones are kept, and no gap is told of twice.
        // Their acknowledgement is lost too: `here` remembers run-1 up to 6.
        set(journal("run-1", 4..=6, 0), 2);
        here.collect(&session).await;
        assert_eq!(messages().await[3..], ["command 5", "command 6"]);
        let last = agent.lock().unwrap().acks.last().cloned().unwrap();
        assert_eq!((last.boot.as_str(), last.seq), ("run-1", 6));

        // Another instance knows only what the agent acknowledged (6, say `here` got through
        // after all); a gap shows in the numbers.
        set(journal("run-1", 9..=9, 6), 0);
        elsewhere.collect(&session).await;
        assert_eq!(messages().await.len(), 7, "{:?}", messages().await);
        assert!(messages().await[5].starts_with("2 earlier entries"));

        // The agent restarted: its numbers start again, and nothing of it is skipped, though
        // `here` remembers run-1 further on.
        set(journal("run-2", 1..=1, 0), 0);
        here.collect(&session).await;
        assert_eq!(messages().await.len(), 8);
        assert_eq!(messages().await[7], "command 1");

        // An older image's agent hands its journal over once, counting what it dropped, and
        // is not acknowledged.
        let acks = agent.lock().unwrap().acks.len();
        agent.lock().unwrap().hands_over_once = true;
        set(
            Journal {
                dropped: 3,
                ..journal("", 0..=0, 0)
            },
            0,
        );
        here.collect(&session).await;
        here.collect(&session).await;
        assert_eq!(
            messages().await[8..],
            [
                "3 earlier entries of the session's own were not kept (too many at once)",
                "command 0"
            ]
        );
        assert_eq!(agent.lock().unwrap().acks.len(), acks);
    }
}

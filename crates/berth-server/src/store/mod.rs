//! Durable state: sessions and users.
//!
//! [`Store`] is the seam between the control plane and its database. SQLite is the embedded
//! default; Redis serves several control-plane instances (and is their coordination). Both
//! pass the same [`contract`] tests; [`open`] picks one by URL, [`copy`] moves data between them.

mod copy;
pub mod redis;
mod sqlite;

#[cfg(test)]
mod contract;
#[cfg(test)]
pub mod faulty;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use berth_proto::{Session, SessionState};
use chrono::{DateTime, Utc};

pub use self::redis::RedisStore;
pub use copy::{CopyProgress, copy};
pub use sqlite::SqliteStore;

use crate::cluster::{Coordination, LocalCoordination};

/// The schemes `[store] url` (and `--store`) accept.
pub const STORE_SCHEMES: &str = "sqlite://PATH, redis://HOST:PORT/DB, rediss://HOST:PORT/DB";

/// Which backend a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    /// The whole URL, as the Redis client parses it.
    Redis(String),
}

impl StoreUrl {
    /// `None` is the default: `berth.db` in the data dir.
    pub fn parse(url: Option<&str>, data_dir: &Path) -> Result<Self, String> {
        let Some(url) = url else {
            return Ok(Self::Sqlite(data_dir.join("berth.db")));
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a path (sqlite://data/berth.db)".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            // Parsing connects to nothing: a malformed URL is refused with the config.
            ::redis::Client::open(url)
                .map_err(|err| format!("store URL {:?}: {err}", redact(url)))?;
            return Ok(Self::Redis(url.to_owned()));
        }
        Err(format!(
            "unknown store URL {:?}; expected one of {STORE_SCHEMES}",
            redact(url)
        ))
    }
}

/// `url` with any password replaced, for logs and messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{path}"),
        None => url.to_owned(),
    }
}

/// A store and the coordination that goes with it.
#[derive(Debug, Clone)]
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub coordination: Arc<dyn Coordination>,
}

/// Opens the store `url` names (see [`StoreUrl::parse`]). SQLite serves one process, which
/// coordinates with itself; Redis is shared by every instance and coordinates them.
pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Opened, StoreError> {
    match StoreUrl::parse(url, data_dir).map_err(StoreError::Unavailable)? {
        StoreUrl::Sqlite(path) => {
            tracing::info!(path = %path.display(), "store: SQLite");
            Ok(Opened {
                store: Arc::new(SqliteStore::open(&path).await?),
                coordination: Arc::new(LocalCoordination::default()),
            })
        }
        StoreUrl::Redis(url) => {
            tracing::info!(url = %redact(&url), "store: Redis");
            let redis = Arc::new(RedisStore::open(&url).await?);
            Ok(Opened {
                store: redis.clone(),
                coordination: redis,
            })
        }
    }
}

/// A session as stored: the public view plus what only the control plane may know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub owner: String,
    pub template: String,
    pub state: SessionState,
    pub labels: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
    pub container_id: Option<String>,
    /// Where the session's agent listens (`ip:port`, or `host:port` on an overlay network).
    pub agent_addr: Option<String>,
    pub stop_reason: Option<String>,
    /// Authenticates the control plane to this session's agent. Never leaves the control plane.
    pub agent_secret: String,
    /// The image holding the session's files while it hibernates (and after, until the next
    /// hibernation replaces it).
    pub snapshot: Option<String>,
    pub hibernated_at: Option<DateTime<Utc>>,
    /// Its owner asked it to stay awake until then, whatever the idle policy says.
    pub keepalive_until: Option<DateTime<Utc>>,
}

impl SessionRecord {
    /// Drops what reached the session's agent: an ended session's secret and address must
    /// open nothing, even if its container (or its IP) lives on somewhere.
    pub fn forget_agent(&mut self) {
        self.agent_secret.clear();
        self.agent_addr = None;
    }

    pub fn to_public(&self) -> Session {
        Session {
            id: self.id.clone(),
            owner: self.owner.clone(),
            template: self.template.clone(),
            state: self.state,
            labels: self.labels.clone(),
            created_at: as_stored(self.created_at),
            expires_at: as_stored(self.expires_at),
            last_activity: as_stored(self.last_activity),
            stop_reason: self.stop_reason.clone(),
            hibernated_at: self.hibernated_at.map(as_stored),
            keepalive_until: self.keepalive_until.map(as_stored),
            wake_estimate_ms: None,
            wake_queue_position: None,
            ready_at: None,
            ready_message: None,
        }
    }
}

/// `at` as every store keeps it, to the millisecond: an answer made from a record in memory
/// then shows the same times as a later read of it.
fn as_stored(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    at.trunc_subsecs(3)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the token, hex. API tokens are long random strings, so a fast hash is as safe
    /// as a slow one here and keeps per-request authentication cheap.
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub role: berth_proto::user::Role,
    /// Refused at login and on every token (`PATCH /api/v1/users/{name}`).
    pub disabled: bool,
}

/// One entry of a session's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub session_id: String,
    pub at: DateTime<Utc>,
    /// Stable, for programs: `restarted`, `failed`, `oom`.
    pub kind: String,
    /// For people.
    pub message: String,
    /// Who did it (a user's name, `admin`); `None`: the platform.
    pub actor: Option<String>,
    /// Details for programs: a command and its exit code, a path, a port.
    pub data: Option<serde_json::Value>,
}

/// A session's timeline keeps its newest this many entries.
pub const TIMELINE_LIMIT: usize = 1000;

impl SessionEvent {
    pub fn now(session_id: &str, kind: &str, message: &str) -> Self {
        Self {
            session_id: session_id.to_owned(),
            at: Utc::now(),
            kind: kind.to_owned(),
            message: message.to_owned(),
            actor: None,
            data: None,
        }
    }

    /// The same entry, done by `actor`.
    pub fn by(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_owned());
        self
    }

    /// The same entry, with details for programs.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// A named snapshot of a session's files, to fork new sessions from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: String,
    pub session_id: String,
    pub owner: String,
    pub name: String,
    /// The engine's image (`repository:tag`).
    pub image: String,
    pub created_at: DateTime<Utc>,
}

impl SnapshotRecord {
    pub fn to_public(&self) -> berth_proto::snapshot::Snapshot {
        berth_proto::snapshot::Snapshot {
            id: self.id.clone(),
            session_id: self.session_id.clone(),
            owner: self.owner.clone(),
            name: self.name.clone(),
            created_at: as_stored(self.created_at),
            size_bytes: None,
            pause_ms: None,
        }
    }
}

/// A user's attempt at a lab, kept whole: the judge, hints and resets rewrite it as one
/// document, and nothing queries inside it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    pub attempt: berth_proto::lab::LabAttempt,
    /// The named snapshot taken when the lab started, which "restart the lab" goes back to.
    pub start_snapshot: Option<String>,
    /// The static hints shown, per step (1-based), so a page reload does not restart a ladder.
    pub hints_shown: BTreeMap<u32, u32>,
}

/// Which sessions to list. Every condition set must hold.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub owner: Option<String>,
    pub states: Option<Vec<SessionState>>,
    pub labels: Vec<(String, String)>,
    /// Only sessions whose `expires_at` is at or before this time.
    pub expired_at: Option<DateTime<Utc>>,
}

impl SessionFilter {
    pub fn live() -> Self {
        Self::states_where(SessionState::is_live)
    }

    /// Sessions that have not ended: live ones and hibernated ones.
    pub fn kept() -> Self {
        Self::states_where(SessionState::is_kept)
    }

    fn states_where(keep: fn(SessionState) -> bool) -> Self {
        Self {
            states: Some(SessionState::ALL.into_iter().filter(|s| keep(*s)).collect()),
            ..Self::default()
        }
    }

    pub fn matches(&self, record: &SessionRecord) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|owner| *owner == record.owner)
            && self
                .states
                .as_ref()
                .is_none_or(|states| states.contains(&record.state))
            && self
                .labels
                .iter()
                .all(|(k, v)| record.labels.get(k) == Some(v))
            && self.expired_at.is_none_or(|at| record.expires_at <= at)
    }
}

/// Which audit entries to list: all those given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub session_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
}

impl AuditFilter {
    pub fn matches(&self, entry: &berth_proto::audit::AuditEntry) -> bool {
        self.actor
            .as_ref()
            .is_none_or(|actor| *actor == entry.actor)
            && self
                .session_id
                .as_ref()
                .is_none_or(|id| entry.session_id.as_ref() == Some(id))
            && self.since.is_none_or(|since| entry.at >= since)
            && self.until.is_none_or(|until| entry.at < until)
    }
}

/// A user's API token as kept: the public view and its secret's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    pub token: berth_proto::token::ApiToken,
    pub hash: String,
}

/// A user's webhook as kept: the public view and its signing secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookRecord {
    pub webhook: berth_proto::webhook::Webhook,
    /// `whsec_...`.
    pub secret: String,
}

/// One event for one webhook: its delivery log and the body every attempt posts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryRecord {
    pub delivery: berth_proto::webhook::Delivery,
    pub payload: String,
}

/// Whose a callback state value is: a session's (`/api/v1/self/state`), a user's across their
/// sessions (`/self/user-state`), or the platform's own notes on a session (its readiness),
/// which no route lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateScope {
    Session(String),
    User(String),
    Platform(String),
}

impl StateScope {
    /// The scope as the stores key it.
    pub fn key(&self) -> String {
        match self {
            Self::Session(id) => format!("session:{id}"),
            Self::User(name) => format!("user:{name}"),
            Self::Platform(id) => format!("platform:{id}"),
        }
    }
}

/// One state value: JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateValue {
    pub value: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A write of a leader whose lease another instance took over (see `cluster`).
    #[error(
        "this instance no longer leads lifecycle (its lease, epoch {0}, passed to another); retry the request"
    )]
    Fenced(u64),
}

impl StoreError {
    pub fn code(&self) -> berth_proto::ErrorCode {
        match self {
            Self::Conflict(_) => berth_proto::ErrorCode::Conflict,
            Self::NotFound(_) => berth_proto::ErrorCode::NotFound,
            Self::Unavailable(_) | Self::Corrupt(_) | Self::Fenced(_) => {
                berth_proto::ErrorCode::StoreUnavailable
            }
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Succeeds when the store answers queries.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Durable when it returns. Fails with `Conflict` when the id exists.
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// Replaces the stored row; durable when it returns. Fails with `NotFound` when absent.
    async fn update_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.update_sessions(std::slice::from_ref(session)).await
    }

    /// Replaces every row, all or none, durable when it returns (one commit for the lot, which
    /// is what a burst of pool claims needs). Fails with `NotFound`, changing nothing, when one
    /// is absent.
    async fn update_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError>;

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Matching sessions, oldest first.
    async fn list_sessions(&self, filter: &SessionFilter)
    -> Result<Vec<SessionRecord>, StoreError>;

    /// How many sessions are in each state; states with none are left out.
    async fn count_by_state(&self) -> Result<Vec<(SessionState, u64)>, StoreError>;

    /// Adds to a session's timeline, which keeps its newest [`TIMELINE_LIMIT`] entries;
    /// durable when it returns. Any instance may add (entries are facts, not lifecycle).
    async fn add_event(&self, event: &SessionEvent) -> Result<(), StoreError>;

    /// Forgets every timeline whose newest entry is older than `before`: a session's
    /// timeline outlives it by `timeline.retention_days`.
    async fn prune_timelines(&self, before: DateTime<Utc>) -> Result<(), StoreError>;

    /// A session's timeline, oldest first.
    async fn events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError>;

    /// Fails with `Conflict` when the id exists.
    async fn insert_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError>;

    async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError>;

    /// The snapshots of one session, or every one with `None`; oldest first.
    async fn list_snapshots(
        &self,
        session_id: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, StoreError>;

    /// Succeeds when it is already gone.
    async fn delete_snapshot(&self, id: &str) -> Result<(), StoreError>;

    /// Fails with `Conflict` when the name is taken.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Every user, oldest first (what `berth store copy` moves).
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Changes what `change` names of one user, in one step; the user as changed. Fails with
    /// `NotFound` when there is no user of that name.
    async fn update_user(
        &self,
        name: &str,
        change: &berth_proto::user::UpdateUser,
    ) -> Result<UserRecord, StoreError>;

    /// Forgets a user and their login token; whether they were there. Their API tokens,
    /// state and sessions are the caller's to end (`api/users.rs`).
    async fn delete_user(&self, name: &str) -> Result<bool, StoreError>;

    /// Inserts or replaces an attempt at a lab.
    async fn put_attempt(&self, attempt: &AttemptRecord) -> Result<(), StoreError>;

    /// The owner's attempts, newest first.
    async fn list_attempts(&self, owner: &str) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Inserts or replaces a class.
    async fn put_class(&self, class: &berth_proto::lab::Class) -> Result<(), StoreError>;

    async fn get_class(&self, id: &str) -> Result<Option<berth_proto::lab::Class>, StoreError>;

    /// Every class, oldest first.
    async fn list_classes(&self) -> Result<Vec<berth_proto::lab::Class>, StoreError>;

    /// Succeeds when it is already gone.
    async fn delete_class(&self, id: &str) -> Result<(), StoreError>;

    /// Writes `key` of `scope` (JSON text); `false`, writing nothing, when the key is new and
    /// the scope already holds `max_keys`.
    async fn put_state(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<bool, StoreError>;

    /// Writes `key` of `scope` unless it is there; whether it wrote. Of two callers racing for
    /// one key, one writes and the other is told `false`: a claim.
    async fn insert_state(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError>;

    async fn get_state(
        &self,
        scope: &StateScope,
        key: &str,
    ) -> Result<Option<StateValue>, StoreError>;

    /// Whether it was there.
    async fn delete_state(&self, scope: &StateScope, key: &str) -> Result<bool, StoreError>;

    /// Deletes `key` of `scope` only while it holds `value`; whether it did. Lets go of a
    /// claim without taking one another caller made since.
    async fn delete_state_if(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError>;

    /// Every key of `scope` in key order, with its value's size.
    async fn list_state(
        &self,
        scope: &StateScope,
    ) -> Result<Vec<berth_proto::callback::StateKey>, StoreError>;

    /// Forgets the whole scope (a session that ended).
    async fn clear_state(&self, scope: &StateScope) -> Result<(), StoreError>;

    /// Appends entries to the audit log.
    async fn add_audit(&self, entries: &[berth_proto::audit::AuditEntry])
    -> Result<(), StoreError>;

    /// The audit entries `filter` selects, newest first, at most `filter.limit`.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<berth_proto::audit::AuditEntry>, StoreError>;

    /// Forgets the entries from before `before`.
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<(), StoreError>;

    /// Adds an API token; `Conflict` when its id or hash is taken.
    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// `owner`'s tokens (`None`: everyone's), oldest first.
    async fn list_tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>, StoreError>;

    /// Whether it was there.
    async fn delete_token(&self, id: &str) -> Result<bool, StoreError>;

    /// Sets a token's `last_used_at`; a token gone meanwhile is no error.
    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Adds a user's webhook.
    async fn put_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError>;

    /// Every user's webhook, oldest first.
    async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError>;

    /// Whether it was there. Its deliveries stay, for their log.
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;

    /// Writes a delivery whole (new, or after an attempt).
    async fn put_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError>;

    /// Pending deliveries whose next attempt is due at `now`, soonest first, at most `limit`.
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Forgets the deliveries made before `before` that are no longer pending.
    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<(), StoreError>;

    /// A webhook's deliveries, newest first, at most `limit`.
    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_their_backend_and_unknown_schemes_are_refused() {
        let dir = Path::new("/var/lib/berth");
        assert_eq!(
            StoreUrl::parse(None, dir),
            Ok(StoreUrl::Sqlite(dir.join("berth.db")))
        );
        assert_eq!(
            StoreUrl::parse(Some("sqlite:///tmp/x.db"), dir),
            Ok(StoreUrl::Sqlite("/tmp/x.db".into()))
        );
        assert_eq!(
            StoreUrl::parse(Some("rediss://:pw@cache:6380/2"), dir),
            Ok(StoreUrl::Redis("rediss://:pw@cache:6380/2".into()))
        );
        let err = StoreUrl::parse(Some("postgres://u:secret@db/berth"), dir).unwrap_err();
        assert!(err.contains("redis://") && !err.contains("secret"), "{err}");
        let err = StoreUrl::parse(Some("redis://:secret@cache:port/0"), dir).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[tokio::test]
    async fn open_gives_sqlite_by_default_and_redis_by_url_as_store_and_coordination() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = open(None, dir.path()).await.unwrap();
        sqlite.store.ping().await.unwrap();
        assert!(dir.path().join("berth.db").exists());

        let server = redis::test_server::RedisServer::start();
        let redis = open(Some(&server.url()), dir.path()).await.unwrap();
        redis.store.ping().await.unwrap();
        let lease = redis
            .coordination
            .claim_lease("a", "http://a", std::time::Duration::from_secs(5))
            .await
            .unwrap();
        // One Redis behind both: fencing through the coordination guards the store's writes.
        redis.coordination.fence(Some(lease.epoch + 1));
        assert!(matches!(
            redis.store.delete_snapshot("k-open").await,
            Err(StoreError::Fenced(_))
        ));
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("redis://user:pw@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(redact("sqlite:///a@b/c.db"), "sqlite:///a@b/c.db");
    }
}

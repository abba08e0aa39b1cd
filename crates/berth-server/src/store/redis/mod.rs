//! The store for several control-plane instances: one Redis (single node, or a primary with
//! replicas behind one address), which is also their [`Coordination`](crate::cluster::Coordination)
//! (see `coordination.rs`).
//!
//! Every write that spans keys or must check the lease is one Lua script (`scripts.rs`);
//! reads are plain commands, pipelined. Every call is bounded: when Redis is down a call fails
//! with [`StoreError::Unavailable`] within [`CALL_TIMEOUT`], and the connection manager
//! reconnects in the background, so the same store works again once Redis is back.

mod coordination;
mod keys;
mod records;
mod scripts;
#[cfg(any(test, feature = "testing"))]
pub mod test_server;

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use berth_proto::{SessionState, lab::Class};
use redis::{
    Client, Cmd, FromRedisValue, RedisResult, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::{
    AttemptRecord, AuditFilter, DeliveryRecord, SessionEvent, SessionFilter, SessionRecord,
    SnapshotRecord, StateScope, StateValue, Store, StoreError, TokenRecord, UserRecord,
    WebhookRecord,
};

/// The backstop around every call, below the 5 s a caller may wait for an answer: the
/// connection manager's own timeouts cover one attempt, not its reconnect retries.
const CALL_TIMEOUT: Duration = Duration::from_millis(4500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Audit entries read per round trip while filtering.
const AUDIT_PAGE: usize = 500;

/// The scripts, hashed once: each call sends EVALSHA and loads the source only when Redis
/// does not know it yet (after a restart).
struct Scripts {
    insert_session: Script,
    update_sessions: Script,
    add_event: Script,
    insert_snapshot: Script,
    update_user: Script,
    delete_user: Script,
    delete_snapshot: Script,
    insert_user: Script,
    claim_lease: Script,
    release_lease: Script,
    put_state: Script,
    delete_state_if: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            insert_session: Script::new(scripts::INSERT_SESSION),
            update_sessions: Script::new(scripts::UPDATE_SESSIONS),
            add_event: Script::new(scripts::ADD_EVENT),
            insert_snapshot: Script::new(scripts::INSERT_SNAPSHOT),
            update_user: Script::new(scripts::UPDATE_USER),
            delete_user: Script::new(scripts::DELETE_USER),
            delete_snapshot: Script::new(scripts::DELETE_SNAPSHOT),
            insert_user: Script::new(scripts::INSERT_USER),
            claim_lease: Script::new(scripts::CLAIM_LEASE),
            release_lease: Script::new(scripts::RELEASE_LEASE),
            put_state: Script::new(scripts::PUT_STATE),
            delete_state_if: Script::new(scripts::DELETE_STATE_IF),
        }
    }
}

pub struct RedisStore {
    /// Opens the dedicated connection each subscriber needs (a subscribed connection can do
    /// nothing else).
    client: Client,
    conn: ConnectionManager,
    /// The epoch fenced writes must find on the lease; 0: unchecked.
    fence: AtomicU64,
    scripts: Scripts,
    /// The URL without its password, for messages.
    address: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: the client's connection info holds the password.
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .field("fence", &self.fence.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a write script answers.
enum Outcome {
    Done,
    Fenced,
    Conflict,
    NotFound(String),
}

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host:port/db`, or `rediss://` for TLS) and
    /// checks it answers.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let address = super::redact(url);
        let client = Client::open(url)
            .map_err(|err| StoreError::Unavailable(format!("Redis URL {address}: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Few, short retries: a caller waits on them, and the next call retries anyway.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = bounded(ConnectionManager::new_with_config(client.clone(), config))
            .await
            .map_err(|err| match err {
                StoreError::Unavailable(msg) => {
                    StoreError::Unavailable(format!("{address}: {msg}"))
                }
                other => other,
            })?;
        let store = Self {
            client,
            conn,
            fence: AtomicU64::new(0),
            scripts: Scripts::new(),
            address,
        };
        store.ping().await?;
        Ok(store)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        bounded(cmd.query_async(&mut conn)).await
    }

    async fn pipeline<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        bounded(pipe.query_async(&mut conn)).await
    }

    async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        bounded(invocation.invoke_async(&mut conn)).await
    }

    /// The user an index of users (a hash of something unique to their id) finds by `key`.
    async fn user_by(&self, index: &str, key: &str) -> Result<Option<UserRecord>, StoreError> {
        let id: Option<String> = self.query(redis::cmd("HGET").arg(index).arg(key)).await?;
        let Some(id) = id else { return Ok(None) };
        let raw: Option<String> = self
            .query(redis::cmd("HGET").arg(keys::USERS).arg(&id))
            .await?;
        raw.as_deref().map(records::user_from_json).transpose()
    }

    /// The JSON documents at `keys` (MGET), those still there, in the keys' order.
    async fn documents<T: serde::de::DeserializeOwned>(
        &self,
        keys: impl Iterator<Item = String>,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let keys: Vec<String> = keys.collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let raws: Vec<Option<String>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
        raws.iter()
            .flatten()
            .map(|raw| from_json(raw, what))
            .collect()
    }

    /// Runs a fenced write script: the lease is its first key, the epoch its first argument.
    async fn fenced_write(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        what: &str,
    ) -> Result<(), StoreError> {
        let epoch = self.fence.load(Ordering::SeqCst);
        let epoch_arg = epoch.to_string();
        let keys = [&[keys::LEASE][..], keys].concat();
        let args = [&[epoch_arg.as_str()][..], args].concat();
        let reply: String = self.script(script, &keys, &args).await?;
        match parse_outcome(&reply)? {
            Outcome::Done => Ok(()),
            Outcome::Fenced => Err(StoreError::Fenced(epoch)),
            Outcome::Conflict => Err(StoreError::Conflict(format!("{what} already exists"))),
            Outcome::NotFound(id) => Err(StoreError::NotFound(format!("session {id}"))),
        }
    }

    /// Every row of `keys`, in order; rows deleted meanwhile come back as empty maps.
    async fn hashes(&self, keys: &[String]) -> Result<Vec<HashMap<String, String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HGETALL").arg(key);
        }
        self.pipeline(&pipe).await
    }

    async fn snapshots_in(&self, index: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        // Equal scores sort by member: created_at, then id, as SQLite orders them.
        let ids: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(index).arg(0).arg(-1))
            .await?;
        let keys: Vec<String> = ids.iter().map(|id| keys::snapshot(id)).collect();
        let mut snapshots = Vec::with_capacity(keys.len());
        for fields in self.hashes(&keys).await? {
            snapshots.extend(records::snapshot_from_fields(fields)?);
        }
        Ok(snapshots)
    }
}

fn parse_outcome(reply: &str) -> Result<Outcome, StoreError> {
    Ok(match reply {
        "OK" => Outcome::Done,
        "FENCED" => Outcome::Fenced,
        "CONFLICT" => Outcome::Conflict,
        other => match other.strip_prefix("NOTFOUND:") {
            Some(id) => Outcome::NotFound(id.to_owned()),
            None => return Err(StoreError::Corrupt(format!("script answered {other:?}"))),
        },
    })
}

/// Bounds a call and turns Redis's errors into the store's: whatever fails talking to Redis
/// (refused, dropped, timed out, an error reply) leaves the store unavailable to the caller.
async fn bounded<T>(call: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(StoreError::Unavailable(format!("Redis: {err}"))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "Redis did not answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

fn flatten<'a>(fields: &'a [(&'static str, String)]) -> Vec<&'a str> {
    fields
        .iter()
        .flat_map(|(name, value)| [*name, value.as_str()])
        .collect()
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let key = keys::session(&s.id);
        let created = records::score(s.created_at).to_string();
        let fields = records::session_fields(s);
        let mut args = vec![s.id.as_str(), &s.owner, s.state.as_str(), &created];
        args.extend(flatten(&fields));
        self.fenced_write(
            &self.scripts.insert_session,
            &[&key],
            &args,
            &format!("session {}", s.id),
        )
        .await
    }

    async fn update_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = sessions
            .iter()
            .map(|s| {
                let fields = records::session_fields(s);
                (
                    records::score(s.created_at).to_string(),
                    (fields.len() * 2).to_string(),
                    fields,
                )
            })
            .collect();
        let mut args = Vec::new();
        for (s, (created, count, fields)) in sessions.iter().zip(&rows) {
            args.extend([s.id.as_str(), &s.owner, s.state.as_str(), created, count]);
            args.extend(flatten(fields));
        }
        self.fenced_write(&self.scripts.update_sessions, &[], &args, "session")
            .await
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let fields = self
            .query(redis::cmd("HGETALL").arg(keys::session(id)))
            .await?;
        records::session_from_fields(fields)
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        // The narrowest index gives the candidates; `matches` checks every condition on the
        // decoded rows, as SQLite does for labels.
        let ids: Vec<String> = match (&filter.owner, &filter.states) {
            (Some(owner), _) => {
                self.query(redis::cmd("SMEMBERS").arg(keys::owner_sessions(owner)))
                    .await?
            }
            (None, Some(states)) if states.is_empty() => Vec::new(),
            (None, Some(states)) => {
                let keys: Vec<String> = states
                    .iter()
                    .map(|s| keys::state_sessions(s.as_str()))
                    .collect();
                self.query(redis::cmd("SUNION").arg(keys)).await?
            }
            (None, None) => {
                self.query(redis::cmd("ZRANGE").arg(keys::SESSIONS).arg(0).arg(-1))
                    .await?
            }
        };
        let keys: Vec<String> = ids.iter().map(|id| keys::session(id)).collect();
        let mut sessions = Vec::with_capacity(keys.len());
        for fields in self.hashes(&keys).await? {
            if let Some(session) = records::session_from_fields(fields)?
                && filter.matches(&session)
            {
                sessions.push(session);
            }
        }
        // Oldest first, ties by id: SQLite's ORDER BY created_at, id.
        sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(sessions)
    }

    async fn count_by_state(&self) -> Result<Vec<(SessionState, u64)>, StoreError> {
        let mut pipe = redis::pipe();
        for state in SessionState::ALL {
            pipe.cmd("SCARD").arg(keys::state_sessions(state.as_str()));
        }
        let counts: Vec<u64> = self.pipeline(&pipe).await?;
        Ok(SessionState::ALL
            .into_iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    async fn add_event(&self, event: &SessionEvent) -> Result<(), StoreError> {
        let key = keys::events(&event.session_id);
        let json = records::event_json(event);
        let at = event.at.timestamp_millis().to_string();
        let limit = crate::store::TIMELINE_LIMIT.to_string();
        let _: String = self
            .script(
                &self.scripts.add_event,
                &[&key, keys::TIMELINES],
                &[&json, &event.session_id, &at, &limit],
            )
            .await?;
        Ok(())
    }

    async fn prune_timelines(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        // A page at a time, until none is left: sessions may end faster than one page an hour.
        const PAGE: usize = 1000;
        loop {
            let stale: Vec<String> = self
                .query(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(keys::TIMELINES)
                        .arg("-inf")
                        .arg(format!("({}", before.timestamp_millis()))
                        .arg("LIMIT")
                        .arg(0)
                        .arg(PAGE),
                )
                .await?;
            if stale.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for session in &stale {
                pipe.cmd("DEL").arg(keys::events(session)).ignore();
            }
            pipe.cmd("ZREM").arg(keys::TIMELINES).arg(&stale).ignore();
            self.pipeline::<()>(&pipe).await?;
            if stale.len() < PAGE {
                return Ok(());
            }
        }
    }

    async fn events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        let raw: Vec<String> = self
            .query(
                redis::cmd("LRANGE")
                    .arg(keys::events(session_id))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        let mut events = raw
            .iter()
            .map(|raw| records::event_from_json(session_id, raw))
            .collect::<Result<Vec<_>, _>>()?;
        // The list keeps the order they were added in; a stable sort by time keeps it for
        // equal times, as SQLite's ORDER BY at, rowid does.
        events.sort_by_key(|e| e.at);
        Ok(events)
    }

    async fn insert_snapshot(&self, s: &SnapshotRecord) -> Result<(), StoreError> {
        let key = keys::snapshot(&s.id);
        let by_session = keys::session_snapshots(&s.session_id);
        let created = records::score(s.created_at).to_string();
        let fields = records::snapshot_fields(s);
        let mut args = vec![s.id.as_str(), &created];
        args.extend(flatten(&fields));
        self.fenced_write(
            &self.scripts.insert_snapshot,
            &[&key, keys::SNAPSHOTS, &by_session],
            &args,
            &format!("snapshot {}", s.id),
        )
        .await
    }

    async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        let fields = self
            .query(redis::cmd("HGETALL").arg(keys::snapshot(id)))
            .await?;
        records::snapshot_from_fields(fields)
    }

    async fn list_snapshots(
        &self,
        session_id: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        match session_id {
            Some(id) => self.snapshots_in(&keys::session_snapshots(id)).await,
            None => self.snapshots_in(keys::SNAPSHOTS).await,
        }
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        let key = keys::snapshot(id);
        self.fenced_write(
            &self.scripts.delete_snapshot,
            &[&key, keys::SNAPSHOTS],
            &[id],
            "snapshot",
        )
        .await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let json = records::user_json(user);
        let reply: String = self
            .script(
                &self.scripts.insert_user,
                &[keys::USERS, keys::USER_NAMES, keys::USER_TOKENS],
                &[&user.id, &user.name, &user.token_hash, &json],
            )
            .await?;
        match reply.as_str() {
            "OK" => Ok(()),
            "CONFLICT:id" => Err(StoreError::Conflict(format!(
                "user {:?} already exists",
                user.id
            ))),
            "CONFLICT:name" => Err(StoreError::Conflict(format!(
                "user {:?} already exists",
                user.name
            ))),
            other => Err(StoreError::Corrupt(format!("script answered {other:?}"))),
        }
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRecord>, StoreError> {
        self.user_by(keys::USER_TOKENS, token_hash).await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.user_by(keys::USER_NAMES, name).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let all: HashMap<String, String> =
            self.query(redis::cmd("HGETALL").arg(keys::USERS)).await?;
        let mut users = all
            .values()
            .map(|raw| records::user_from_json(raw))
            .collect::<Result<Vec<_>, _>>()?;
        users.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(users)
    }

    async fn update_user(
        &self,
        name: &str,
        change: &berth_proto::user::UpdateUser,
    ) -> Result<UserRecord, StoreError> {
        let role = change.role.map_or("", berth_proto::user::Role::as_str);
        let disabled = match change.disabled {
            None => "",
            Some(true) => "1",
            Some(false) => "0",
        };
        let reply: String = self
            .script(
                &self.scripts.update_user,
                &[keys::USERS, keys::USER_NAMES],
                &[name, role, disabled],
            )
            .await?;
        match reply.as_str() {
            "MISSING" => Err(StoreError::NotFound(format!("user {name:?}"))),
            json => records::user_from_json(json),
        }
    }

    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let deleted: i64 = self
            .script(
                &self.scripts.delete_user,
                &[keys::USERS, keys::USER_NAMES, keys::USER_TOKENS],
                &[name],
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn put_class(&self, class: &Class) -> Result<(), StoreError> {
        let json = serde_json::to_string(class)
            .map_err(|err| StoreError::Corrupt(format!("class {}: {err}", class.id)))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(keys::class(&class.id))
            .arg(json)
            .ignore()
            .cmd("ZADD")
            .arg(keys::CLASSES)
            .arg(class.created_at.timestamp_millis())
            .arg(&class.id)
            .ignore();
        self.pipeline::<()>(&pipe).await
    }

    async fn get_class(&self, id: &str) -> Result<Option<Class>, StoreError> {
        let raw: Option<String> = self.query(redis::cmd("GET").arg(keys::class(id))).await?;
        raw.as_deref()
            .map(|raw| from_json(raw, "class"))
            .transpose()
    }

    async fn list_classes(&self) -> Result<Vec<Class>, StoreError> {
        let ids: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(keys::CLASSES).arg(0).arg(-1))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.documents(ids.iter().map(|id| keys::class(id)), "class")
            .await
    }

    async fn put_state(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<bool, StoreError> {
        let entry = records::StateEntry::now(value).to_json()?;
        let written: i64 = self
            .script(
                &self.scripts.put_state,
                &[&keys::callback_state(scope)],
                &[key, &entry, &max_keys.to_string()],
            )
            .await?;
        Ok(written == 1)
    }

    async fn insert_state(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let entry = records::StateEntry::now(value).to_json()?;
        let written: i64 = self
            .query(
                redis::cmd("HSETNX")
                    .arg(keys::callback_state(scope))
                    .arg(key)
                    .arg(entry),
            )
            .await?;
        Ok(written == 1)
    }

    async fn get_state(
        &self,
        scope: &StateScope,
        key: &str,
    ) -> Result<Option<StateValue>, StoreError> {
        let entry: Option<String> = self
            .query(redis::cmd("HGET").arg(keys::callback_state(scope)).arg(key))
            .await?;
        entry
            .map(|entry| StateValue::try_from(records::StateEntry::from_json(&entry)?))
            .transpose()
    }

    async fn delete_state(&self, scope: &StateScope, key: &str) -> Result<bool, StoreError> {
        let deleted: i64 = self
            .query(redis::cmd("HDEL").arg(keys::callback_state(scope)).arg(key))
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_state_if(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let deleted: i64 = self
            .script(
                &self.scripts.delete_state_if,
                &[&keys::callback_state(scope)],
                &[key, value],
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn list_state(
        &self,
        scope: &StateScope,
    ) -> Result<Vec<berth_proto::callback::StateKey>, StoreError> {
        let entries: std::collections::BTreeMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(keys::callback_state(scope)))
            .await?;
        entries
            .into_iter()
            .map(|(key, entry)| {
                let value = StateValue::try_from(records::StateEntry::from_json(&entry)?)?;
                Ok(berth_proto::callback::StateKey {
                    key,
                    bytes: value.value.len() as u64,
                    updated_at: value.updated_at,
                })
            })
            .collect()
    }

    async fn clear_state(&self, scope: &StateScope) -> Result<(), StoreError> {
        self.query(redis::cmd("DEL").arg(keys::callback_state(scope)))
            .await
    }

    async fn add_audit(
        &self,
        entries: &[berth_proto::audit::AuditEntry],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut add = redis::cmd("ZADD");
        add.arg(keys::AUDIT);
        for entry in entries {
            // A set's members are unique: the id keeps two equal calls two entries.
            let stored = records::AuditMember {
                id: crate::ids::user_id(),
                entry: entry.clone(),
            };
            add.arg(entry.at.timestamp_millis())
                .arg(to_json(&stored, "audit entry")?);
        }
        self.query(&add).await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<berth_proto::audit::AuditEntry>, StoreError> {
        let newest = filter.until.map_or_else(
            || "+inf".to_owned(),
            |t| format!("({}", t.timestamp_millis()),
        );
        let oldest = filter
            .since
            .map_or_else(|| "-inf".to_owned(), |t| t.timestamp_millis().to_string());
        let mut found = Vec::new();
        let mut offset = 0;
        // Pages, newest first, until enough match: the filters on actor and session are
        // applied here.
        while found.len() < filter.limit {
            let page: Vec<String> = self
                .query(
                    redis::cmd("ZRANGE")
                        .arg(keys::AUDIT)
                        .arg(&newest)
                        .arg(&oldest)
                        .arg("BYSCORE")
                        .arg("REV")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(AUDIT_PAGE),
                )
                .await?;
            offset += page.len();
            let last = page.len() < AUDIT_PAGE;
            for raw in page {
                let stored: records::AuditMember = from_json(&raw, "audit entry")?;
                if filter.matches(&stored.entry) && found.len() < filter.limit {
                    found.push(stored.entry);
                }
            }
            if last {
                break;
            }
        }
        Ok(found)
    }

    async fn prune_audit(&self, before: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError> {
        self.query(
            redis::cmd("ZREMRANGEBYSCORE")
                .arg(keys::AUDIT)
                .arg("-inf")
                .arg(format!("({}", before.timestamp_millis())),
        )
        .await
    }

    async fn put_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let token = &record.token;
        // The hash's key first, alone: a taken hash (or id) writes nothing else.
        let claimed: bool = self
            .query(
                redis::cmd("SET")
                    .arg(keys::token_hash(&record.hash))
                    .arg(&token.id)
                    .arg("NX"),
            )
            .await?;
        let taken = || StoreError::Conflict(format!("token {} already exists", token.id));
        if !claimed {
            return Err(taken());
        }
        let written: bool = self
            .query(
                redis::cmd("SET")
                    .arg(keys::token(&token.id))
                    .arg(to_json(record, "token")?)
                    .arg("NX"),
            )
            .await?;
        if !written {
            // The id is taken: the hash claimed above goes back.
            self.query::<()>(redis::cmd("DEL").arg(keys::token_hash(&record.hash)))
                .await?;
            return Err(taken());
        }
        let created = token.created_at.timestamp_millis();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(keys::TOKENS)
            .arg(created)
            .arg(&token.id)
            .ignore()
            .cmd("ZADD")
            .arg(keys::owner_tokens(&token.owner))
            .arg(created)
            .arg(&token.id)
            .ignore();
        self.pipeline::<()>(&pipe).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let id: Option<String> = self
            .query(redis::cmd("GET").arg(keys::token_hash(hash)))
            .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        Ok(self
            .documents(std::iter::once(keys::token(&id)), "token")
            .await?
            .pop())
    }

    async fn list_tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let index = owner.map_or_else(|| keys::TOKENS.to_owned(), keys::owner_tokens);
        let ids: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(index).arg(0).arg(-1))
            .await?;
        self.documents(ids.iter().map(|id| keys::token(id)), "token")
            .await
    }

    async fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        let Some(record) = self
            .documents::<TokenRecord>(std::iter::once(keys::token(id)), "token")
            .await?
            .pop()
        else {
            return Ok(false);
        };
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(keys::token(id))
            .arg(keys::token_hash(&record.hash))
            .ignore()
            .cmd("ZREM")
            .arg(keys::TOKENS)
            .arg(id)
            .ignore()
            .cmd("ZREM")
            .arg(keys::owner_tokens(&record.token.owner))
            .arg(id)
            .ignore();
        self.pipeline::<()>(&pipe).await?;
        Ok(true)
    }

    async fn touch_token(
        &self,
        id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let Some(mut record) = self
            .documents::<TokenRecord>(std::iter::once(keys::token(id)), "token")
            .await?
            .pop()
        else {
            return Ok(());
        };
        record.token.last_used_at = Some(at);
        // XX: a token deleted meanwhile stays deleted.
        self.query(
            redis::cmd("SET")
                .arg(keys::token(id))
                .arg(to_json(&record, "token")?)
                .arg("XX"),
        )
        .await
    }

    async fn put_webhook(&self, record: &WebhookRecord) -> Result<(), StoreError> {
        let webhook = &record.webhook;
        let created = webhook.created_at.unwrap_or_else(chrono::Utc::now);
        let written: bool = self
            .query(
                redis::cmd("SET")
                    .arg(keys::webhook(&webhook.id))
                    .arg(to_json(record, "webhook")?)
                    .arg("NX"),
            )
            .await?;
        if !written {
            return Err(StoreError::Conflict(format!(
                "webhook {} already exists",
                webhook.id
            )));
        }
        self.query(
            redis::cmd("ZADD")
                .arg(keys::WEBHOOKS)
                .arg(created.timestamp_millis())
                .arg(&webhook.id),
        )
        .await
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let ids: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(keys::WEBHOOKS).arg(0).arg(-1))
            .await?;
        self.documents(ids.iter().map(|id| keys::webhook(id)), "webhook")
            .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(keys::webhook(id))
            .cmd("ZREM")
            .arg(keys::WEBHOOKS)
            .arg(id)
            .ignore();
        let (deleted,): (i64,) = self.pipeline(&pipe).await?;
        Ok(deleted > 0)
    }

    async fn put_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        let delivery = &record.delivery;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(keys::delivery(&delivery.id))
            .arg(to_json(record, "delivery")?)
            .ignore()
            .cmd("ZADD")
            .arg(keys::webhook_deliveries(&delivery.webhook_id))
            .arg(delivery.created_at.timestamp_millis())
            .arg(&delivery.id)
            .ignore()
            .cmd("ZADD")
            .arg(keys::DELIVERIES)
            .arg(delivery.created_at.timestamp_millis())
            .arg(&delivery.id)
            .ignore();
        if delivery.status == berth_proto::webhook::DeliveryStatus::Pending {
            let next = delivery.next_attempt_at.unwrap_or(delivery.created_at);
            pipe.cmd("ZADD")
                .arg(keys::DUE_DELIVERIES)
                .arg(next.timestamp_millis())
                .arg(&delivery.id)
                .ignore();
        } else {
            pipe.cmd("ZREM")
                .arg(keys::DUE_DELIVERIES)
                .arg(&delivery.id)
                .ignore();
        }
        self.pipeline::<()>(&pipe).await
    }

    async fn due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(keys::DUE_DELIVERIES)
                    .arg("-inf")
                    .arg(now.timestamp_millis())
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .await?;
        self.documents(ids.iter().map(|id| keys::delivery(id)), "delivery")
            .await
    }

    async fn prune_deliveries(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(keys::DELIVERIES)
                    .arg("-inf")
                    .arg(format!("({}", before.timestamp_millis()))
                    .arg("BYSCORE"),
            )
            .await?;
        let records: Vec<DeliveryRecord> = self
            .documents(ids.iter().map(|id| keys::delivery(id)), "delivery")
            .await?;
        let pending = berth_proto::webhook::DeliveryStatus::Pending;
        for delivery in records
            .iter()
            .map(|r| &r.delivery)
            .filter(|d| d.status != pending)
        {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("DEL")
                .arg(keys::delivery(&delivery.id))
                .ignore()
                .cmd("ZREM")
                .arg(keys::webhook_deliveries(&delivery.webhook_id))
                .arg(&delivery.id)
                .ignore()
                .cmd("ZREM")
                .arg(keys::DELIVERIES)
                .arg(&delivery.id)
                .ignore();
            self.pipeline::<()>(&pipe).await?;
        }
        Ok(())
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        // Newest first; equal times by id, descending, as SQLite orders them.
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(keys::webhook_deliveries(webhook_id))
                    .arg("+inf")
                    .arg("-inf")
                    .arg("BYSCORE")
                    .arg("REV")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .await?;
        self.documents(ids.iter().map(|id| keys::delivery(id)), "delivery")
            .await
    }

    async fn delete_class(&self, id: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(keys::class(id))
            .ignore()
            .cmd("ZREM")
            .arg(keys::CLASSES)
            .arg(id)
            .ignore();
        self.pipeline::<()>(&pipe).await
    }

    async fn put_attempt(&self, record: &AttemptRecord) -> Result<(), StoreError> {
        let attempt = &record.attempt;
        let json = serde_json::to_string(record)
            .map_err(|err| StoreError::Corrupt(format!("attempt {}: {err}", attempt.id)))?;
        // MULTI/EXEC: the document and its index land together; nothing is read first.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(keys::attempt(&attempt.id))
            .arg(json)
            .ignore()
            .cmd("ZADD")
            .arg(keys::owner_attempts(&attempt.owner))
            .arg(attempt.started_at.timestamp_millis())
            .arg(&attempt.id)
            .ignore();
        self.pipeline::<()>(&pipe).await
    }

    async fn list_attempts(&self, owner: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        // Newest first; equal times by id, descending, as SQLite orders them.
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(keys::owner_attempts(owner))
                    .arg("+inf")
                    .arg("-inf")
                    .arg("BYSCORE")
                    .arg("REV"),
            )
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.documents(ids.iter().map(|id| keys::attempt(id)), "attempt")
            .await
    }
}

fn from_json<T: serde::de::DeserializeOwned>(raw: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

#[cfg(test)]
mod tests;

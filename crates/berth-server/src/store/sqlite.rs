//! The embedded default store: one SQLite file in WAL mode, `synchronous=FULL` so a session's
//! state survives power loss once a write returns.

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use berth_proto::{SessionState, lab::Class, user::Role};
use chrono::{DateTime, Utc};
use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use berth_proto::audit::AuditEntry;

use super::{
    AttemptRecord, AuditFilter, DeliveryRecord, SessionEvent, SessionFilter, SessionRecord,
    SnapshotRecord, StateScope, StateValue, Store, StoreError, TokenRecord, UserRecord,
    WebhookRecord,
};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date. The file
    /// is readable by its owner only (it holds every session's agent secret); SQLite gives its
    /// WAL and shared-memory files the database file's permissions.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        owner_only(path).map_err(|err| {
            StoreError::Unavailable(format!("cannot create {}: {err}", path.display()))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // Writers queue for the one write lock; on a disk busy with commits each one's
            // fsync can take a second, and a short wait turned that into 503s.
            .busy_timeout(Duration::from_secs(15));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        Self::migrated(pool).await
    }

    /// A private database in memory, for tests. One connection: each in-memory connection would
    /// otherwise see a database of its own.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(unavailable)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<Self, StoreError> {
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|err| StoreError::Unavailable(format!("migrating the database: {err}")))?;
        Ok(Self { pool })
    }
}

/// Creates `path` with mode 0600, or narrows an existing file to it.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// A row's `body` column, a JSON document of `what`.
fn json_body<T: serde::de::DeserializeOwned>(row: &SqliteRow, what: &str) -> Result<T, StoreError> {
    let body: String = row.try_get("body").map_err(unavailable)?;
    serde_json::from_str(&body).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms}")))
}

fn session_from_row(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    let state: String = row.try_get("state").map_err(unavailable)?;
    let labels: String = row.try_get("labels").map_err(unavailable)?;
    Ok(SessionRecord {
        id: row.try_get("id").map_err(unavailable)?,
        owner: row.try_get("owner").map_err(unavailable)?,
        template: row.try_get("template").map_err(unavailable)?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        labels: serde_json::from_str(&labels).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: from_millis(row.try_get("created_at").map_err(unavailable)?)?,
        expires_at: from_millis(row.try_get("expires_at").map_err(unavailable)?)?,
        last_activity: from_millis(row.try_get("last_activity").map_err(unavailable)?)?,
        container_id: row.try_get("container_id").map_err(unavailable)?,
        agent_addr: row.try_get("agent_addr").map_err(unavailable)?,
        stop_reason: row.try_get("stop_reason").map_err(unavailable)?,
        agent_secret: row.try_get("agent_secret").map_err(unavailable)?,
        snapshot: row.try_get("snapshot").map_err(unavailable)?,
        hibernated_at: optional_time(row, "hibernated_at")?,
        keepalive_until: optional_time(row, "keepalive_until")?,
    })
}

fn optional_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<i64>, _>(column)
        .map_err(unavailable)?
        .map(from_millis)
        .transpose()
}

fn snapshot_from_row(row: &SqliteRow) -> Result<SnapshotRecord, StoreError> {
    Ok(SnapshotRecord {
        id: row.try_get("id").map_err(unavailable)?,
        session_id: row.try_get("session_id").map_err(unavailable)?,
        owner: row.try_get("owner").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
        image: row.try_get("image").map_err(unavailable)?,
        created_at: from_millis(row.try_get("created_at").map_err(unavailable)?)?,
    })
}

fn user_from_row(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.try_get("id").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
        token_hash: row.try_get("token_hash").map_err(unavailable)?,
        created_at: from_millis(row.try_get("created_at").map_err(unavailable)?)?,
        role: role_from_text(&row.try_get::<String, _>("role").map_err(unavailable)?)?,
        disabled: row.try_get("disabled").map_err(unavailable)?,
    })
}

fn role_from_text(text: &str) -> Result<Role, StoreError> {
    [Role::User, Role::Instructor]
        .into_iter()
        .find(|role| role.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt(format!("role {text:?}")))
}

fn labels_json(session: &SessionRecord) -> String {
    // Serialising a map of strings cannot fail.
    serde_json::to_string(&session.labels).unwrap_or_else(|_| "{}".to_owned())
}

/// Binds a session's columns in the order both `insert_session` and `update_sessions` name
/// them: every column, `id` last.
fn bind_session<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    s: &'q SessionRecord,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(&s.owner)
        .bind(&s.template)
        .bind(s.state.as_str())
        .bind(labels_json(s))
        .bind(millis(s.created_at))
        .bind(millis(s.expires_at))
        .bind(millis(s.last_activity))
        .bind(&s.container_id)
        .bind(&s.agent_addr)
        .bind(&s.stop_reason)
        .bind(&s.agent_secret)
        .bind(&s.snapshot)
        .bind(s.hibernated_at.map(millis))
        .bind(s.keepalive_until.map(millis))
        .bind(&s.id)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        bind_session(
            sqlx::query(
                "INSERT INTO sessions (owner, template, state, labels, created_at, expires_at, \
                 last_activity, container_id, agent_addr, stop_reason, agent_secret, snapshot, \
                 hibernated_at, keepalive_until, id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            s,
        )
        .execute(&self.pool)
        .await
        .map_err(|err| match err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("session {} already exists", s.id))
            }
            other => unavailable(other),
        })?;
        Ok(())
    }

    async fn update_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        for s in sessions {
            let done = bind_session(
                sqlx::query(
                    "UPDATE sessions SET owner = ?, template = ?, state = ?, labels = ?, \
                     created_at = ?, expires_at = ?, last_activity = ?, container_id = ?, \
                     agent_addr = ?, stop_reason = ?, agent_secret = ?, snapshot = ?, \
                     hibernated_at = ?, keepalive_until = ? \
                     WHERE id = ?",
                ),
                s,
            )
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            // Dropping the transaction rolls back what the batch did so far.
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("session {}", s.id)));
            }
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        // The indexed conditions go to SQL; labels are checked on the decoded rows.
        let mut sql = String::from("SELECT * FROM sessions WHERE 1 = 1");
        if filter.owner.is_some() {
            sql.push_str(" AND owner = ?");
        }
        if let Some(states) = &filter.states {
            let marks = vec!["?"; states.len()].join(", ");
            sql.push_str(&format!(" AND state IN ({marks})"));
        }
        if filter.expired_at.is_some() {
            sql.push_str(" AND expires_at <= ?");
        }
        sql.push_str(" ORDER BY created_at, id");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(owner) = &filter.owner {
            query = query.bind(owner);
        }
        for state in filter.states.iter().flatten() {
            query = query.bind(state.as_str());
        }
        if let Some(at) = filter.expired_at {
            query = query.bind(millis(at));
        }
        let rows = query.fetch_all(&self.pool).await.map_err(unavailable)?;
        let mut sessions = Vec::with_capacity(rows.len());
        for row in &rows {
            let session = session_from_row(row)?;
            if filter.matches(&session) {
                sessions.push(session);
            }
        }
        Ok(sessions)
    }

    async fn count_by_state(&self) -> Result<Vec<(SessionState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM sessions GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state").map_err(unavailable)?;
                let n: i64 = row.try_get("n").map_err(unavailable)?;
                Ok((
                    state.parse().map_err(StoreError::Corrupt)?,
                    n.unsigned_abs(),
                ))
            })
            .collect()
    }

    async fn add_event(&self, event: &SessionEvent) -> Result<(), StoreError> {
        let data = event.data.as_ref().map(serde_json::Value::to_string);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO session_events (session_id, at, kind, message, actor, data) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.session_id)
        .bind(millis(event.at))
        .bind(&event.kind)
        .bind(&event.message)
        .bind(&event.actor)
        .bind(data)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        // Past the limit, the entry added first goes (as Redis' list trims): one row per
        // insert, found by the index. An entry may come late with an older time (an agent's
        // journal), and is kept as new.
        sqlx::query(
            "DELETE FROM session_events WHERE rowid IN (SELECT rowid FROM session_events \
             WHERE session_id = ? ORDER BY rowid DESC LIMIT -1 OFFSET ?)",
        )
        .bind(&event.session_id)
        .bind(i64::try_from(super::TIMELINE_LIMIT).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    async fn prune_timelines(&self, before: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM session_events WHERE session_id IN (SELECT session_id \
             FROM session_events GROUP BY session_id HAVING MAX(at) < ?)",
        )
        .bind(millis(before))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM session_events WHERE session_id = ? ORDER BY at, rowid")
                .bind(session_id)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(SessionEvent {
                    session_id: row.try_get("session_id").map_err(unavailable)?,
                    at: from_millis(row.try_get("at").map_err(unavailable)?)?,
                    kind: row.try_get("kind").map_err(unavailable)?,
                    message: row.try_get("message").map_err(unavailable)?,
                    actor: row.try_get("actor").map_err(unavailable)?,
                    data: row
                        .try_get::<Option<String>, _>("data")
                        .map_err(unavailable)?
                        .and_then(|data| serde_json::from_str(&data).ok()),
                })
            })
            .collect()
    }

    async fn insert_snapshot(&self, s: &SnapshotRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (id, session_id, owner, name, image, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.session_id)
        .bind(&s.owner)
        .bind(&s.name)
        .bind(&s.image)
        .bind(millis(s.created_at))
        .execute(&self.pool)
        .await
        .map_err(|err| match err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("snapshot {} already exists", s.id))
            }
            other => unavailable(other),
        })?;
        Ok(())
    }

    async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM snapshots WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    async fn list_snapshots(
        &self,
        session_id: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let rows = match session_id {
            Some(id) => {
                sqlx::query("SELECT * FROM snapshots WHERE session_id = ? ORDER BY created_at, id")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM snapshots ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(unavailable)?;
        rows.iter().map(snapshot_from_row).collect()
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM snapshots WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, name, token_hash, created_at, role, disabled) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(&user.token_hash)
        .bind(millis(user.created_at))
        .bind(user.role.as_str())
        .bind(user.disabled)
        .execute(&self.pool)
        .await
        .map_err(|err| match err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("user {:?} already exists", user.name))
            }
            other => unavailable(other),
        })?;
        Ok(())
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(
        &self,
        name: &str,
        change: &berth_proto::user::UpdateUser,
    ) -> Result<UserRecord, StoreError> {
        let row = sqlx::query(
            "UPDATE users SET role = COALESCE(?, role), disabled = COALESCE(?, disabled) \
             WHERE name = ? RETURNING *",
        )
        .bind(change.role.map(Role::as_str))
        .bind(change.disabled)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        match row {
            Some(row) => user_from_row(&row),
            None => Err(StoreError::NotFound(format!("user {name:?}"))),
        }
    }

    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_class(&self, class: &Class) -> Result<(), StoreError> {
        let body = serde_json::to_string(class)
            .map_err(|err| StoreError::Corrupt(format!("class {}: {err}", class.id)))?;
        sqlx::query(
            "INSERT INTO classes (id, instructor, created_at, body) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        )
        .bind(&class.id)
        .bind(&class.instructor)
        .bind(millis(class.created_at))
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn get_class(&self, id: &str) -> Result<Option<Class>, StoreError> {
        let row = sqlx::query("SELECT body FROM classes WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|row| json_body(&row, "class")).transpose()
    }

    async fn list_classes(&self) -> Result<Vec<Class>, StoreError> {
        let rows = sqlx::query("SELECT body FROM classes ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(|row| json_body(row, "class")).collect()
    }

    async fn put_state(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<bool, StoreError> {
        // One statement: the count and the write cannot be split by another writer.
        let written = sqlx::query(
            "INSERT INTO callback_state (scope, key, value, updated_at) \
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS \
               (SELECT 1 FROM callback_state WHERE scope = ?1 AND key = ?2) \
             OR (SELECT COUNT(*) FROM callback_state WHERE scope = ?1) < ?5 \
             ON CONFLICT (scope, key) DO UPDATE \
             SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(scope.key())
        .bind(key)
        .bind(value)
        .bind(millis(Utc::now()))
        .bind(i64::try_from(max_keys).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(written.rows_affected() > 0)
    }

    async fn insert_state(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let written = sqlx::query(
            "INSERT INTO callback_state (scope, key, value, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(scope.key())
        .bind(key)
        .bind(value)
        .bind(millis(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(written.rows_affected() > 0)
    }

    async fn get_state(
        &self,
        scope: &StateScope,
        key: &str,
    ) -> Result<Option<StateValue>, StoreError> {
        let row =
            sqlx::query("SELECT value, updated_at FROM callback_state WHERE scope = ? AND key = ?")
                .bind(scope.key())
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        row.map(|row| {
            Ok(StateValue {
                value: row.try_get("value").map_err(unavailable)?,
                updated_at: from_millis(row.try_get("updated_at").map_err(unavailable)?)?,
            })
        })
        .transpose()
    }

    async fn delete_state(&self, scope: &StateScope, key: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM callback_state WHERE scope = ? AND key = ?")
            .bind(scope.key())
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn delete_state_if(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let deleted =
            sqlx::query("DELETE FROM callback_state WHERE scope = ? AND key = ? AND value = ?")
                .bind(scope.key())
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn list_state(
        &self,
        scope: &StateScope,
    ) -> Result<Vec<berth_proto::callback::StateKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, length(CAST(value AS BLOB)) AS bytes, updated_at FROM callback_state \
             WHERE scope = ? ORDER BY key",
        )
        .bind(scope.key())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(berth_proto::callback::StateKey {
                    key: row.try_get("key").map_err(unavailable)?,
                    bytes: row.try_get::<i64, _>("bytes").map_err(unavailable)?.max(0) as u64,
                    updated_at: from_millis(row.try_get("updated_at").map_err(unavailable)?)?,
                })
            })
            .collect()
    }

    async fn clear_state(&self, scope: &StateScope) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM callback_state WHERE scope = ?")
            .bind(scope.key())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn add_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        for entry in entries {
            let body = serde_json::to_string(entry)
                .map_err(|err| StoreError::Corrupt(format!("audit entry: {err}")))?;
            sqlx::query("INSERT INTO audit_log (at, actor, session_id, body) VALUES (?, ?, ?, ?)")
                .bind(millis(entry.at))
                .bind(&entry.actor)
                .bind(&entry.session_id)
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM audit_log WHERE (?1 IS NULL OR actor = ?1) \
             AND (?2 IS NULL OR session_id = ?2) AND (?3 IS NULL OR at >= ?3) \
             AND (?4 IS NULL OR at < ?4) ORDER BY at DESC, id DESC LIMIT ?5",
        )
        .bind(&filter.actor)
        .bind(&filter.session_id)
        .bind(filter.since.map(millis))
        .bind(filter.until.map(millis))
        .bind(i64::try_from(filter.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| json_body(row, "audit entry"))
            .collect()
    }

    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM audit_log WHERE at < ?")
            .bind(millis(before))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn put_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let token = &record.token;
        let body = serde_json::to_string(record)
            .map_err(|err| StoreError::Corrupt(format!("token {}: {err}", token.id)))?;
        sqlx::query(
            "INSERT INTO api_tokens (id, owner, hash, created_at, body) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.owner)
        .bind(&record.hash)
        .bind(millis(token.created_at))
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(|err| match err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("token {} already exists", token.id))
            }
            other => unavailable(other),
        })?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT body FROM api_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|row| json_body(&row, "token")).transpose()
    }

    async fn list_tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM api_tokens WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(|row| json_body(row, "token")).collect()
    }

    async fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM api_tokens WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at = serde_json::to_value(at)
            .map_err(|err| StoreError::Corrupt(format!("token {id}: {err}")))?;
        sqlx::query(
            "UPDATE api_tokens SET body = json_set(body, '$.token.last_used_at', ?) WHERE id = ?",
        )
        .bind(at.as_str().unwrap_or_default().to_owned())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn put_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        let id = &webhook.webhook.id;
        let body = serde_json::to_string(webhook)
            .map_err(|err| StoreError::Corrupt(format!("webhook {id}: {err}")))?;
        sqlx::query("INSERT INTO webhooks (id, created_at, body) VALUES (?, ?, ?)")
            .bind(id)
            .bind(millis(webhook.webhook.created_at.unwrap_or_else(Utc::now)))
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(|err| match err {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Conflict(format!("webhook {id} already exists"))
                }
                other => unavailable(other),
            })?;
        Ok(())
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = sqlx::query("SELECT body FROM webhooks ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(|row| json_body(row, "webhook")).collect()
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM webhooks WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn put_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        let delivery = &record.delivery;
        let body = serde_json::to_string(record)
            .map_err(|err| StoreError::Corrupt(format!("delivery {}: {err}", delivery.id)))?;
        let next = (delivery.status == berth_proto::webhook::DeliveryStatus::Pending)
            .then(|| millis(delivery.next_attempt_at.unwrap_or(delivery.created_at)));
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, created_at, next_attempt_at, body) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE \
             SET next_attempt_at = excluded.next_attempt_at, body = excluded.body",
        )
        .bind(&delivery.id)
        .bind(&delivery.webhook_id)
        .bind(millis(delivery.created_at))
        .bind(next)
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM webhook_deliveries WHERE next_attempt_at <= ? \
             ORDER BY next_attempt_at, id LIMIT ?",
        )
        .bind(millis(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(|row| json_body(row, "delivery")).collect()
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE created_at < ? AND next_attempt_at IS NULL",
        )
        .bind(millis(before))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM webhook_deliveries WHERE webhook_id = ? \
             ORDER BY created_at DESC, id DESC LIMIT ?",
        )
        .bind(webhook_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(|row| json_body(row, "delivery")).collect()
    }

    async fn delete_class(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM classes WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn put_attempt(&self, attempt: &AttemptRecord) -> Result<(), StoreError> {
        let body = serde_json::to_string(attempt)
            .map_err(|err| StoreError::Corrupt(format!("attempt {}: {err}", attempt.attempt.id)))?;
        sqlx::query(
            "INSERT INTO lab_attempts (id, owner, started_at, body) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        )
        .bind(&attempt.attempt.id)
        .bind(&attempt.attempt.owner)
        .bind(millis(attempt.attempt.started_at))
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_attempts(&self, owner: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM lab_attempts WHERE owner = ? ORDER BY started_at DESC, id DESC",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(|row| json_body(row, "attempt")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_in_memory_passes_the_store_contract() {
        let store = SqliteStore::in_memory().await.unwrap();
        super::super::contract::run(&store).await;
    }

    #[tokio::test]
    async fn sqlite_file_passes_the_store_contract_and_keeps_data_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let store = SqliteStore::open(&path).await.unwrap();
        super::super::contract::run(&store).await;
        let before = store
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap();
        drop(store);

        let reopened = SqliteStore::open(&path).await.unwrap();
        let after = reopened
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap();
        assert_eq!(before, after);
        assert!(!after.is_empty());
    }

    #[tokio::test]
    async fn the_database_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = SqliteStore::open(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

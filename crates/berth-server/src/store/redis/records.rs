//! Rows to Redis values and back: sessions and snapshots as hashes (one field per column,
//! optional ones absent when unset), events and users as JSON. Times are milliseconds since
//! the epoch, as in SQLite.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{
    SessionEvent, SessionRecord, SnapshotRecord, StateValue, StoreError, UserRecord,
};

fn millis(at: DateTime<Utc>) -> String {
    at.timestamp_millis().to_string()
}

fn from_millis(raw: &str) -> Result<DateTime<Utc>, StoreError> {
    let ms = raw
        .parse::<i64>()
        .map_err(|_| StoreError::Corrupt(format!("timestamp {raw:?}")))?;
    from_ms(ms)
}

fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms}")))
}

/// A session's hash fields, in field/value order.
pub fn session_fields(s: &SessionRecord) -> Vec<(&'static str, String)> {
    // Serialising a map of strings cannot fail.
    let labels = serde_json::to_string(&s.labels).unwrap_or_else(|_| "{}".to_owned());
    let mut fields = vec![
        ("id", s.id.clone()),
        ("owner", s.owner.clone()),
        ("template", s.template.clone()),
        ("state", s.state.as_str().to_owned()),
        ("labels", labels),
        ("created_at", millis(s.created_at)),
        ("expires_at", millis(s.expires_at)),
        ("last_activity", millis(s.last_activity)),
        ("agent_secret", s.agent_secret.clone()),
    ];
    let optional = [
        ("container_id", s.container_id.clone()),
        ("agent_addr", s.agent_addr.clone()),
        ("stop_reason", s.stop_reason.clone()),
        ("snapshot", s.snapshot.clone()),
        ("hibernated_at", s.hibernated_at.map(millis)),
        ("keepalive_until", s.keepalive_until.map(millis)),
    ];
    fields.extend(
        optional
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v))),
    );
    fields
}

struct Fields(HashMap<String, String>);

impl Fields {
    fn required(&self, name: &str) -> Result<String, StoreError> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("field {name} missing")))
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        from_millis(&self.required(name)?)
    }

    fn optional_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.0.get(name).map(|raw| from_millis(raw)).transpose()
    }
}

/// `None` for an empty hash: Redis answers a missing key with one.
pub fn session_from_fields(
    fields: HashMap<String, String>,
) -> Result<Option<SessionRecord>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let f = Fields(fields);
    Ok(Some(SessionRecord {
        id: f.required("id")?,
        owner: f.required("owner")?,
        template: f.required("template")?,
        state: f.required("state")?.parse().map_err(StoreError::Corrupt)?,
        labels: serde_json::from_str(&f.required("labels")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: f.time("created_at")?,
        expires_at: f.time("expires_at")?,
        last_activity: f.time("last_activity")?,
        container_id: f.0.get("container_id").cloned(),
        agent_addr: f.0.get("agent_addr").cloned(),
        stop_reason: f.0.get("stop_reason").cloned(),
        agent_secret: f.required("agent_secret")?,
        snapshot: f.0.get("snapshot").cloned(),
        hibernated_at: f.optional_time("hibernated_at")?,
        keepalive_until: f.optional_time("keepalive_until")?,
    }))
}

pub fn snapshot_fields(s: &SnapshotRecord) -> Vec<(&'static str, String)> {
    vec![
        ("id", s.id.clone()),
        ("session_id", s.session_id.clone()),
        ("owner", s.owner.clone()),
        ("name", s.name.clone()),
        ("image", s.image.clone()),
        ("created_at", millis(s.created_at)),
    ]
}

pub fn snapshot_from_fields(
    fields: HashMap<String, String>,
) -> Result<Option<SnapshotRecord>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let f = Fields(fields);
    Ok(Some(SnapshotRecord {
        id: f.required("id")?,
        session_id: f.required("session_id")?,
        owner: f.required("owner")?,
        name: f.required("name")?,
        image: f.required("image")?,
        created_at: f.time("created_at")?,
    }))
}

/// One timeline entry as kept in the session's list; the list's key names the session.
#[derive(Serialize, Deserialize)]
struct StoredEvent {
    at: i64,
    kind: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
}

pub fn event_json(e: &SessionEvent) -> String {
    let stored = StoredEvent {
        at: e.at.timestamp_millis(),
        kind: e.kind.clone(),
        message: e.message.clone(),
        actor: e.actor.clone(),
        data: e.data.clone(),
    };
    // Serialising strings and a number cannot fail.
    serde_json::to_string(&stored).unwrap_or_default()
}

pub fn event_from_json(session_id: &str, raw: &str) -> Result<SessionEvent, StoreError> {
    let stored: StoredEvent =
        serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(SessionEvent {
        session_id: session_id.to_owned(),
        at: from_ms(stored.at)?,
        kind: stored.kind,
        message: stored.message,
        actor: stored.actor,
        data: stored.data,
    })
}

#[derive(Serialize, Deserialize)]
struct StoredUser {
    id: String,
    name: String,
    token_hash: String,
    created_at: i64,
    /// Absent in users stored before roles: `user`.
    #[serde(default)]
    role: berth_proto::user::Role,
    #[serde(default)]
    disabled: bool,
}

pub fn user_json(u: &UserRecord) -> String {
    let stored = StoredUser {
        id: u.id.clone(),
        name: u.name.clone(),
        token_hash: u.token_hash.clone(),
        created_at: u.created_at.timestamp_millis(),
        role: u.role,
        disabled: u.disabled,
    };
    // Serialising strings and a number cannot fail.
    serde_json::to_string(&stored).unwrap_or_default()
}

pub fn user_from_json(raw: &str) -> Result<UserRecord, StoreError> {
    let stored: StoredUser =
        serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(UserRecord {
        id: stored.id,
        name: stored.name,
        token_hash: stored.token_hash,
        created_at: from_ms(stored.created_at)?,
        role: stored.role,
        disabled: stored.disabled,
    })
}

/// An audit entry as a member of the log's sorted set.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditMember {
    pub id: String,
    pub entry: berth_proto::audit::AuditEntry,
}

/// One callback state value in its scope's hash.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateEntry {
    value: String,
    at: i64,
}

impl StateEntry {
    pub fn now(value: &str) -> Self {
        Self {
            value: value.to_owned(),
            at: Utc::now().timestamp_millis(),
        }
    }

    pub fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(self).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    pub fn from_json(raw: &str) -> Result<Self, StoreError> {
        serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

impl TryFrom<StateEntry> for StateValue {
    type Error = StoreError;

    fn try_from(entry: StateEntry) -> Result<Self, StoreError> {
        Ok(StateValue {
            value: entry.value,
            updated_at: from_ms(entry.at)?,
        })
    }
}

/// A time as a sorted set's score: milliseconds fit a double exactly (below 2^53).
pub fn score(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

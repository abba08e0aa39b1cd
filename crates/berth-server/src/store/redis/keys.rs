//! Where everything lives in Redis. ARCHITECTURE.md (store) describes the layout; `scripts.rs`
//! builds the same names in Lua for the keys it derives from stored rows. Session ids are
//! base32 (`ids.rs`, no `:`), so `berth:session:{id}:events` never names another session's hash.

pub const SESSIONS: &str = "berth:sessions";
pub const SNAPSHOTS: &str = "berth:snapshots";
pub const USERS: &str = "berth:users";
/// Sessions with a timeline, scored by its newest entry's time (ms): what retention prunes.
pub const TIMELINES: &str = "berth:timelines";
pub const USER_NAMES: &str = "berth:users:by-name";
pub const USER_TOKENS: &str = "berth:users:by-token";
pub const LEASE: &str = "berth:lease";
pub const LEASE_EPOCH: &str = "berth:lease:epoch";
pub const NOTICES: &str = "berth:notices";
pub const CLASSES: &str = "berth:classes";

pub fn session(id: &str) -> String {
    format!("berth:session:{id}")
}

pub fn owner_sessions(owner: &str) -> String {
    format!("berth:user:{owner}:sessions")
}

pub fn state_sessions(state: &str) -> String {
    format!("berth:state:{state}")
}

pub fn events(session_id: &str) -> String {
    format!("berth:session:{session_id}:events")
}

pub fn snapshot(id: &str) -> String {
    format!("berth:snapshot:{id}")
}

pub fn session_snapshots(session_id: &str) -> String {
    format!("berth:session:{session_id}:snapshots")
}

pub fn class(id: &str) -> String {
    format!("berth:class:{id}")
}

pub fn attempt(id: &str) -> String {
    format!("berth:attempt:{id}")
}

pub fn owner_attempts(owner: &str) -> String {
    format!("berth:user:{owner}:attempts")
}

/// A callback state scope's hash: its keys, each a [`super::records::StateEntry`].
pub fn callback_state(scope: &crate::store::StateScope) -> String {
    format!("berth:kv:{}", scope.key())
}

/// The audit log: entries (JSON with a unique id) by time (ms).
pub const AUDIT: &str = "berth:audit";

/// Every API token by creation time (ms).
pub const TOKENS: &str = "berth:apitokens";

pub fn token(id: &str) -> String {
    format!("berth:apitoken:{id}")
}

/// An API token's id by its secret's hash.
pub fn token_hash(hash: &str) -> String {
    format!("berth:apitoken-hash:{hash}")
}

/// A user's API tokens by creation time (ms).
pub fn owner_tokens(owner: &str) -> String {
    format!("berth:user:{owner}:apitokens")
}

/// Users' webhooks by creation time (ms).
pub const WEBHOOKS: &str = "berth:webhooks";
/// Every delivery by creation time (ms), for pruning.
pub const DELIVERIES: &str = "berth:deliveries";
/// Pending deliveries by the time of their next attempt (ms).
pub const DUE_DELIVERIES: &str = "berth:deliveries:due";

pub fn webhook(id: &str) -> String {
    format!("berth:webhook:{id}")
}

pub fn delivery(id: &str) -> String {
    format!("berth:delivery:{id}")
}

/// A webhook's deliveries by creation time (ms).
pub fn webhook_deliveries(webhook_id: &str) -> String {
    format!("berth:webhook:{webhook_id}:deliveries")
}

pub fn ticket(ticket: &str) -> String {
    format!("berth:ticket:{ticket}")
}

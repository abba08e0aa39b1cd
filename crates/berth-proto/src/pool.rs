//! The warm pool, as `GET /api/v1/pool` shows it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolStatus {
    pub template: String,
    pub min_ready: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Running, agent answering, waiting for a user.
    pub ready: usize,
    /// Being created.
    pub warming: usize,
    /// Handed out since the control plane started.
    pub claimed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolList {
    pub pools: Vec<PoolStatus>,
}

/// `GET /api/v1/capacity` (admin): how full the host is, who waits for room, the warm pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capacity {
    /// `capacity.max_sessions`: live sessions (not hibernated, not ended) allowed at once.
    pub max_sessions: u32,
    /// Live sessions now: creating, running, hibernating, restoring, stopping.
    pub live: u64,
    /// Sessions by state, the ended ones included, pooled ones included.
    pub by_state: std::collections::BTreeMap<String, u64>,
    /// Creates waiting for room, in the order they will be served.
    pub queued: Vec<QueuedCreate>,
    pub pools: Vec<PoolStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuedCreate {
    pub ticket: String,
    pub owner: String,
    pub template: String,
    /// 1 for the next to be admitted.
    pub position: usize,
}

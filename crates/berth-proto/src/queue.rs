//! The admission queue: where a create waits when the host is at capacity.

use serde::{Deserialize, Serialize};

use crate::{ErrorDetail, Session};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Waiting for capacity.
    Queued,
    /// Capacity was found and the session made: see `session`.
    Admitted,
    /// The create failed or was cancelled: see `error`.
    Failed,
}

/// `202` from `POST /api/v1/sessions` at capacity, and `GET /api/v1/queue/{ticket}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStatus {
    pub ticket: String,
    pub state: QueueState,
    /// 1 for the next request to be admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// A rough estimate from how often sessions have been ending lately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_seconds: Option<u64>,
    /// Poll this (GET) to follow the request; DELETE it to give up.
    pub status_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

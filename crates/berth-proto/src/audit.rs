//! The audit log (`GET /api/v1/audit`, the admin's): every call that changes something.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One state-changing call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// Who: a user's name, `admin`, `session:<id>` for a session's callback token, or `-`
    /// when the call did not authenticate.
    pub actor: String,
    pub method: String,
    /// The path called, ids included (no query: it may carry tickets).
    pub path: String,
    /// The session the path names, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The answer's status code.
    pub status: u16,
    /// The client's address as the control plane saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

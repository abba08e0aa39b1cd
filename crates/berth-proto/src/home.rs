//! Persistent homes: a user's `/home/user` for one template (`home = "persistent"`), kept on
//! a volume between that user's sessions of the template (`/api/v1/homes`, `berth home`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Home {
    /// The volume's name on the engine; what `DELETE /api/v1/homes/{name}` takes.
    pub name: String,
    /// Whose home it is.
    pub user: String,
    /// The template whose sessions mount it.
    pub template: String,
    /// Its size limit in MiB; `null` when it has none (no `home_size_mb`, or an engine that
    /// cannot limit a volume).
    pub size_mb: Option<u64>,
    /// The session that has it mounted (or will again, when it wakes): running, hibernated or
    /// on its way; `null` when none does.
    pub used_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HomeList {
    pub homes: Vec<Home>,
}

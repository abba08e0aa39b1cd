//! Users and their API tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /api/v1/users` (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1 to 32 characters: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
    pub name: String,
}

/// The answer to `POST /api/v1/users`. The token is shown this once; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserCreated {
    pub id: String,
    pub name: String,
    pub token: String,
    pub created_at: DateTime<Utc>,
}

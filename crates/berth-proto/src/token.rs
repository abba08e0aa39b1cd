//! API tokens: several per user, each named, with scopes and an optional expiry, listed
//! without their secret and revocable (`/api/v1/tokens`, `berth token`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a token may do. A user's own login token, and the admin token, may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    /// Read sessions, their timelines, snapshots, templates, persistent homes and the queue.
    #[serde(rename = "sessions:read")]
    SessionsRead,
    /// Create, delete, hibernate, resume, extend and snapshot sessions; delete persistent
    /// homes.
    #[serde(rename = "sessions:write")]
    SessionsWrite,
    /// Read and write files in sessions.
    #[serde(rename = "files")]
    Files,
    /// Run commands, processes and terminals, and a session's Docker.
    #[serde(rename = "exec")]
    Exec,
    /// Reach servers in sessions (previews, their links, port events).
    #[serde(rename = "previews")]
    Previews,
    /// Labs and classes.
    #[serde(rename = "labs")]
    Labs,
    /// The caller's webhooks.
    #[serde(rename = "webhooks")]
    Webhooks,
    /// Users and the pool: the admin's (a token of the admin with this scope acts as the
    /// admin there; anyone else's is refused as the user is).
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::SessionsRead,
        Scope::SessionsWrite,
        Scope::Files,
        Scope::Exec,
        Scope::Previews,
        Scope::Labs,
        Scope::Webhooks,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::SessionsRead => "sessions:read",
            Scope::SessionsWrite => "sessions:write",
            Scope::Files => "files",
            Scope::Exec => "exec",
            Scope::Previews => "previews",
            Scope::Labs => "labs",
            Scope::Webhooks => "webhooks",
            Scope::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?}; one of {}", all.join(", "))
            })
    }
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 64 characters, unique among the caller's tokens.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = r"\S")
    )]
    pub name: String,
    /// At least one.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub scopes: Vec<Scope>,
    /// It stops working this long from now; never, when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 157680000))]
    pub expires_in_seconds: Option<u64>,
}

/// A token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    /// `tok_...`: what `DELETE /api/v1/tokens/{id}` takes.
    pub id: String,
    pub name: String,
    pub owner: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request (to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The answer to `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token: ApiToken,
    /// Send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

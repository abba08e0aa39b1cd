//! Users and their API tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /api/v1/users` (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1 to 32 characters: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,31}$"))]
    pub name: String,
    /// `user` when omitted.
    #[serde(default, skip_serializing_if = "Role::is_user")]
    pub role: Role,
}

/// What a user may do beyond their own sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Their own sessions and labs.
    #[default]
    User,
    /// Also classes: a roster's labs started, followed live, reset, terminals shadowed.
    Instructor,
}

impl Role {
    pub fn is_user(&self) -> bool {
        *self == Self::User
    }

    /// As the wire and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Instructor => "instructor",
        }
    }
}

/// `PATCH /api/v1/users/{name}` (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// Unchanged when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// `true`: their sessions stop, their tokens and logins fail, and they cannot log in
    /// until enabled again. Unchanged when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// A user as the admin lists them (`GET /api/v1/users`), without their token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Set by the admin (`PATCH /api/v1/users/{name}`): nothing of theirs works.
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<User>,
}

/// The answer to `POST /api/v1/users`. The token is shown this once; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserCreated {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub role: Role,
    pub token: String,
    pub created_at: DateTime<Utc>,
}

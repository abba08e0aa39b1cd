//! The callback API (seed 001): how code inside a session talks back to the platform.
//!
//! Every session's environment names [`API_URL_ENV`], an address on the session's own loopback
//! where its agent relays to the control plane, and [`TOKEN_ENV`], a token that serves only
//! the `/api/v1/self` routes of that one session, for an hour. The platform keeps a current
//! one in [`TOKEN_FILE`]: a program that runs longer than an hour reads it from there.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where the control plane's callback socket and the current token are, in the session: a
/// directory of the host, mounted read-only.
pub const DIR_IN_SESSION: &str = "/run/berth/api";
/// The socket in [`DIR_IN_SESSION`] that serves the `/api/v1/self` routes.
pub const SOCKET_NAME: &str = "api.sock";
/// The file in [`DIR_IN_SESSION`] holding a token valid for at least half an hour more.
pub const TOKEN_FILE_NAME: &str = "token";
/// [`TOKEN_FILE_NAME`] in the session.
pub const TOKEN_FILE: &str = "/run/berth/api/token";
/// The port on the session's loopback where its agent relays to [`SOCKET_NAME`].
pub const RELAY_PORT: u16 = 7682;
/// `http://127.0.0.1:7682`: the callback API's address in the session.
pub const API_URL_ENV: &str = "BERTH_API_URL";
/// The session token when the container was made; [`TOKEN_FILE`] has the current one.
pub const TOKEN_ENV: &str = "BERTH_SESSION_TOKEN";
/// [`TOKEN_FILE`], so programs need not hard-code it.
pub const TOKEN_FILE_ENV: &str = "BERTH_TOKEN_FILE";
/// How a session token starts: told apart from users' tokens without a lookup.
pub const TOKEN_PREFIX: &str = "bst_";

/// The largest value one state key holds, in bytes of JSON.
pub const MAX_STATE_VALUE_BYTES: usize = 64 * 1024;
/// The most keys one session (or one user) keeps.
pub const MAX_STATE_KEYS: usize = 256;
/// The longest key: letters, digits, `.`, `_` and `-`.
pub const MAX_STATE_KEY_LEN: usize = 128;

/// `GET /api/v1/self`: the session the token is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SelfSession {
    pub session_id: String,
    pub owner: String,
    pub template: String,
    pub labels: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
    /// When the token this call presented stops working; the token file has a newer one well
    /// before then.
    pub token_expires_at: DateTime<Utc>,
}

/// `GET /api/v1/self/state` (or `user-state`): the keys kept, without their values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateKeys {
    pub keys: Vec<StateKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateKey {
    pub key: String,
    /// The value's size in bytes of JSON.
    pub bytes: u64,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/self/events`: a custom event, on the session's events WebSocket (as
/// `{"type":"custom","name":...,"data":...}`) and in its timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomEvent {
    /// Letters, digits, `.`, `_`, `-` and `:`; at most 64.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$"))]
    pub name: String,
    /// Any JSON, at most 16 KiB of it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub data: serde_json::Value,
}

/// The largest `data` of a [`CustomEvent`], in bytes of JSON.
pub const MAX_EVENT_DATA_BYTES: usize = 16 * 1024;

/// `POST /api/v1/self/ready`: an app inside says it is ready to serve.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Ready {
    /// Shown with the session (`ready_message`); at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Whether `key` may name a state value.
pub fn valid_state_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_STATE_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `name` may name a custom event.
pub fn valid_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_event_names_are_plain() {
        assert!(valid_state_key("cart.items-2_v1"));
        assert!(!valid_state_key(""));
        assert!(!valid_state_key("a/b"));
        assert!(!valid_state_key(&"k".repeat(MAX_STATE_KEY_LEN + 1)));
        assert!(valid_event_name("build:done"));
        assert!(!valid_event_name("two words"));
    }
}

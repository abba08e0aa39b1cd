//! Webhooks: lifecycle and custom events of sessions, posted to endpoints their operators
//! (`[[webhooks]]` in the config) and users (`POST /api/v1/webhooks`) register, signed the
//! Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Every event type, as `type` in a payload and in a webhook's `events`.
pub const EVENT_TYPES: &[&str] = &[
    "session.created",
    "session.running",
    "session.idle_warning",
    "session.disk_warning",
    "session.oom_killed",
    "session.hibernated",
    "session.restored",
    "session.recovered",
    "session.stopped",
    "session.failed",
    "session.port_opened",
    "session.port_closed",
    "session.custom",
];

/// Whether a webhook subscribed to `events` takes `event` (`*` takes all).
pub fn wants(events: &[String], event: &str) -> bool {
    events.iter().any(|e| e == "*" || e == event)
}

/// `POST /api/v1/webhooks`: an endpoint for the caller's own sessions' events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` or `https://`, at most 2048 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2048,
            pattern = r"^https?://[A-Za-z][A-Za-z0-9-]*(\.[A-Za-z][A-Za-z0-9-]*)*(:[0-9]{1,4})?(/[A-Za-z0-9._~/-]*)?$"
        )
    )]
    pub url: String,
    /// Event types (see `EVENT_TYPES`), or `["*"]` (the default) for all.
    #[serde(default = "all_events")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schemas::webhook_events))]
    pub events: Vec<String>,
    /// `whsec_` and base64 of 24 to 64 bytes; one is made when left out. Shown only in this
    /// answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^whsec_(([A-Za-z0-9+/]{4}){8,20}([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?|([A-Za-z0-9+/]{4}){21}([A-Za-z0-9+/][AQgw]==)?)$"
        )
    )]
    pub secret: Option<String>,
}

fn all_events() -> Vec<String> {
    vec!["*".to_owned()]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    /// `wh_...`, or `config-N` for the config's `[[webhooks]]` (the N-th, from 0).
    pub id: String,
    /// Whose sessions it hears; absent for the operator's, which hear every session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not answered with a 2xx yet; `next_attempt_at` says when it is tried again.
    Pending,
    Delivered,
    /// Every attempt of the retry schedule failed (or the webhook was deleted).
    Failed,
}

/// One event for one webhook, and every attempt to post it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    /// `msg_...`: the `webhook-id` header, the same on every attempt (receivers dedupe by it).
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub session_id: String,
    pub created_at: DateTime<Utc>,
    pub status: DeliveryStatus,
    pub attempts: Vec<DeliveryAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    pub at: DateTime<Utc>,
    /// The receiver's status code, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why it did not count: no answer, a timeout, a status that is not 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<Delivery>,
}

//! Ports that servers inside a session listen on, their events and preview links.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One TCP port something in the session listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListeningPort {
    pub port: u16,
    /// Where the owner opens it through the control plane (set by the control plane, relative
    /// to its base URL; absent in the agent's answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortList {
    pub ports: Vec<ListeningPort>,
}

/// A text frame of `GET /api/v1/sessions/{id}/events`. On connect, one `port-open` comes for
/// each port already listening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SessionEvent {
    PortOpen {
        port: u16,
    },
    PortClosed {
        port: u16,
    },
    /// Nobody has worked in the session for a while: at `at` it hibernates (or stops, as its
    /// template says) unless someone does. Also sent as a text frame on its terminals.
    IdleWarning {
        at: DateTime<Utc>,
    },
    /// Activity came after a warning: the session stays.
    IdleCancelled,
    /// The session's files take 90% of its template's `disk_mb`: past it, the session is
    /// stopped (`disk_quota`).
    DiskWarning {
        used_mb: u64,
        limit_mb: u64,
    },
    /// Sent by code inside the session (`POST /api/v1/self/events`).
    Custom {
        name: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        data: serde_json::Value,
    },
}

/// `POST /api/v1/sessions/{id}/preview-links`: a signed link to one port that works without
/// logging in, until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatePreviewLink {
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: u16,
    /// Lifetime; default 3600, at most 7 days.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604800))]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviewLink {
    /// Path-based link, relative to the control plane's base URL.
    pub path: String,
    /// Host-based link, when a preview domain is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub expires_at: DateTime<Utc>,
}

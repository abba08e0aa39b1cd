//! Sessions: one user's isolated container and its lifecycle.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a session is in its life. Only the control plane's session manager moves a session
/// between these states:
///
/// ```text
///            ┌──▶ pooled ──(claim)──┐
/// creating ──┴──────────────────────┴──▶ running ──▶ stopping ──▶ stopped
///     │                                  │   ▲
///     │                      hibernating │   │ restoring
///     │                                  ▼   │
///     │                                hibernated ──(expiry, delete)──▶ stopping
///     └─────────────────────────────────────┴──────▶ failed
/// ```
///
/// `pooled` sessions are warm and ready but belong to no one yet; users never see them.
/// `hibernated` sessions hold no container: their files wait in a snapshot image, and any
/// access wakes them (`restoring`, then `running`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Creating,
    Pooled,
    Running,
    Stopping,
    Stopped,
    Failed,
    Hibernating,
    Hibernated,
    Restoring,
}

impl SessionState {
    pub const ALL: [SessionState; 9] = [
        Self::Creating,
        Self::Pooled,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
        Self::Hibernating,
        Self::Hibernated,
        Self::Restoring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Pooled => "pooled",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Hibernating => "hibernating",
            Self::Hibernated => "hibernated",
            Self::Restoring => "restoring",
        }
    }

    /// A session that holds (or is about to hold) a container.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Creating
                | Self::Pooled
                | Self::Running
                | Self::Stopping
                | Self::Hibernating
                | Self::Restoring
        )
    }

    /// A session that has not ended: live, or hibernated and waiting for its owner.
    pub fn is_kept(self) -> bool {
        self.is_live() || self == Self::Hibernated
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SessionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown session state {s:?}"))
    }
}

/// A session as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    pub id: String,
    pub owner: String,
    pub template: String,
    pub state: SessionState,
    pub labels: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    /// The session is stopped and removed at this time unless extended.
    pub expires_at: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
    /// Why the session stopped, failed or hibernated: `deleted`, `ttl_expired`, `requested`,
    /// `container_vanished`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// When it last went to sleep; set while `hibernated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernated_at: Option<DateTime<Utc>>,
    /// Kept awake until then by `POST .../keepalive`, whatever its idle policy says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_until: Option<DateTime<Utc>>,
    /// While asleep or waking (`GET .../sessions/{id}` only): how long until it is awake, for a
    /// "waking up" view: a restore as long as the median of the last twenty on this control
    /// plane, after the room it waits for when the host is full. Absent before the first
    /// restore unless it waits for room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_estimate_ms: Option<u64>,
    /// While its restore waits for room, the host at capacity (`GET .../sessions/{id}` only):
    /// its place among the waiting restores, 1 next. The session stays `hibernated` meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_queue_position: Option<u32>,
    /// When an app inside said it is ready (`POST /api/v1/self/ready`), for the container it
    /// runs in now (`GET .../sessions/{id}` only): a restart or a wake clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<DateTime<Utc>>,
    /// What it said with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_message: Option<String>,
}

/// `POST /api/v1/sessions/{id}/keepalive`: stay awake `seconds` from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub seconds: u64,
}

/// `POST /api/v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Template name; `default` when omitted.
    #[serde(default = "default_template")]
    pub template: String,
    /// Lifetime in seconds; the template's default when omitted, at most its maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub ttl_seconds: Option<u64>,
    /// Extra environment variables for the session, on top of the template's: at most 128,
    /// names of letters, digits and `_` not starting with a digit (`BERTH_` is reserved),
    /// values at most 32 KiB without NUL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schemas::env))]
    pub env: BTreeMap<String, String>,
    /// Free-form labels to find sessions by (`GET /api/v1/sessions?label=k=v`): at most 32,
    /// keys 1 to 63 of letters, digits, `.`, `_`, `-` and `/` starting with a letter or digit,
    /// values at most 256 bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schemas::labels))]
    pub labels: BTreeMap<String, String>,
    /// Fork: start from this named snapshot's files (yours; any for the admin) instead of the
    /// template's image. The template still gives limits and environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_snapshot: Option<String>,
}

impl Default for CreateSession {
    fn default() -> Self {
        Self {
            template: default_template(),
            ttl_seconds: None,
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            from_snapshot: None,
        }
    }
}

fn default_template() -> String {
    "default".to_owned()
}

/// `POST /api/v1/sessions/{id}/extend`: the session now expires `ttl_seconds` from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtendSession {
    pub ttl_seconds: u64,
}

/// `GET /api/v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_defaults_to_the_default_template() {
        let req: CreateSession = serde_json::from_str("{}").unwrap();
        assert_eq!(req, CreateSession::default());
        assert_eq!(req.template, "default");
        assert_eq!(req.ttl_seconds, None);
    }

    #[test]
    fn create_request_rejects_unknown_fields() {
        let err = serde_json::from_str::<CreateSession>(r#"{"tempalte":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in SessionState::ALL {
            assert_eq!(state.as_str().parse::<SessionState>().unwrap(), state);
        }
        assert!("paused".parse::<SessionState>().is_err());
    }
}

/// One entry of a session's timeline: what happened to it and who did it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEvent {
    pub at: DateTime<Utc>,
    /// Lifecycle: `created`, `running`, `idle_warning`, `hibernated`, `restored`, `stopped`
    /// (with the reason), `failed` (with the reason), `restarted` (its container stopped and was
    /// started again: files intact, processes and terminals lost), `oom_killed` (the kernel
    /// killed a process at the memory limit), `disk_warning` (its files take 90% of its
    /// `disk_mb`), `disk_quota` (stopped past it), `recovered` (made again from its newest
    /// snapshot), `hibernate_failed` (awake again, with why), `compacted` (its snapshot's
    /// layers folded into one).
    /// Work: `exec` (a command and its exit code), `process_started`, `command` (a line run in
    /// a terminal, with its exit code), `file_written`, `file_deleted`, `file_moved`,
    /// `directory_created`, `files_uploaded`, `snapshot`, `hibernate_requested`,
    /// `resume_requested`, `delete_requested`, `extended`, `custom` (from code inside).
    pub kind: String,
    pub message: String,
    /// Who did it: a user's name, `admin`; absent for the platform's own doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Details for programs: `command`, `exit_code`, `path`, `reason`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timeline {
    /// Oldest first.
    pub events: Vec<TimelineEvent>,
}

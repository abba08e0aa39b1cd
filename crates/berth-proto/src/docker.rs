//! The runner's view of a session's Docker (seed 004): builds for programs, without a shell.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/sessions/{id}/docker/build`: build the directory `context_path` of the
/// session as `tag`, through the session's own Docker API (its policy applies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DockerBuild {
    /// Directory in the session; relative paths start at /home/user.
    pub context_path: String,
    /// The image's tag, in the session's namespace (`app` is `SESSION/app:latest`).
    pub tag: String,
    /// The Dockerfile, relative to the context; `Dockerfile` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
}

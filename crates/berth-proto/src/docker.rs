//! The runner's view of a session's Docker (seed 004): builds, runs and execs for programs,
//! without a shell.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a session of a template with Docker finds its Docker API: a directory of the host,
/// mounted read-only, holding the socket `DOCKER_HOST` names and [`PORT_RELAYS_FILE`].
pub const DIR_IN_SESSION: &str = "/run/berth/docker";

/// The file in [`DIR_IN_SESSION`] listing the ports the session's Docker containers publish
/// into it (`-p 8080:80`): a JSON list of [`PortRelay`], written by the control plane as they
/// start and stop, read by the session's agent.
pub const PORT_RELAYS_FILE: &str = "ports.json";

/// One published port: the agent listens on `port` in the session (every address, so the
/// session's `localhost` and its preview both reach it) and relays each connection to
/// `target`, the container's address and port on the session's network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRelay {
    pub port: u16,
    pub target: std::net::SocketAddr,
}

/// `POST /api/v1/sessions/{id}/docker/build`: build the directory `context_path` of the
/// session as `tag`, through the session's own Docker API (its policy applies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DockerBuild {
    /// Directory in the session; relative paths start at /home/user.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub context_path: String,
    /// The image's tag, in the session's namespace (`app` is `SESSION/app:latest`).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._/:-]{1,256}$"))]
    pub tag: String,
    /// The Dockerfile, relative to the context; `Dockerfile` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
}

/// `POST /api/v1/sessions/{id}/docker/run`: run a container in the session's Docker as
/// `docker run` does (its policy applies), and answer with its output once it exits, or with
/// its id once it has started (`detach`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DockerRun {
    /// An image the session may use: one of its template's `docker.base_images`, or one it
    /// built (`app:1`). A reference as Docker writes them: ASCII, no spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,255}$")
    )]
    pub image: String,
    /// The command; the image's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schemas::env))]
    pub env: BTreeMap<String, String>,
    /// Ports to publish, as `-p` takes them (`"8080:80"`): into the session, as `docker run
    /// -p` in it does (`localhost:8080` there, and its preview), never on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^\+?0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]):\+?0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])(/(tcp|udp))?$"
        )
    )]
    pub ports: Vec<String>,
    /// Answer once it has started, with its id (`docker run -d`).
    #[serde(default)]
    pub detach: bool,
    /// Remove it once it has exited (`docker run --rm`).
    #[serde(default)]
    pub rm: bool,
    /// How long to wait for it to exit before it is killed (default 60, at most 600); not
    /// with `detach`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 600))]
    pub timeout_seconds: Option<u64>,
}

/// `POST /api/v1/sessions/{id}/docker/exec`: run a command in one of the session's running
/// containers (`docker exec`), and answer with its output once it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DockerExec {
    /// One of the session's containers, by id or name.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"))]
    pub container: String,
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schemas::env))]
    pub env: BTreeMap<String, String>,
    /// How long to wait for it to exit (default 60, at most 600). One still running then is
    /// left to run; the answer says `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 600))]
    pub timeout_seconds: Option<u64>,
}

/// What a `docker/run` or `docker/exec` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DockerOutcome {
    /// The container: its id for a run, the id or name the request gave for an exec.
    pub container: String,
    /// `None` while it runs (`detach`, or still running at `timed_out` for an exec).
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    /// Output beyond the cap (1 MiB per stream) was dropped.
    pub truncated: bool,
    /// It outlived `timeout_seconds`: a run's container was killed, an exec's command left.
    pub timed_out: bool,
    pub duration_ms: u64,
}

//! Where session containers run. [`Runtime`] is the seam between the session manager and the
//! container engine: the Docker engine on one host today, Swarm services later, and an
//! in-process fake for fast tests.
//!
//! The runtime only does lifecycle. Work inside a session goes to its agent, never through the
//! engine, so the same path works on a single host and across Swarm nodes.

mod docker;
#[cfg(test)]
pub mod fake;
mod swarm;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::SystemTime,
};

use async_trait::async_trait;

pub use docker::{DockerRuntime, parse_cpuset};
pub use swarm::SwarmRuntime;

/// Labels on every container Berth owns. With them, the engine alone is enough to rebuild
/// which container belongs to which session after a crash.
pub mod labels {
    pub const SESSION: &str = "berth.session";
    pub const OWNER: &str = "berth.owner";
    pub const TEMPLATE: &str = "berth.template";
    /// Which Berth installation owns the container; see `docker.instance` in the config.
    pub const INSTANCE: &str = "berth.instance";
    /// On what a session makes through its Docker API (containers, images): the session.
    /// Not `SESSION`, so reconcile and the event watcher never take one for a session's own
    /// container.
    pub const PARENT: &str = "berth.parent";
    /// The instance of the session in `PARENT`, so two installations' sweeps stay apart.
    pub const PARENT_INSTANCE: &str = "berth.parent-instance";
    /// On a session's Docker container: the ports it publishes into the session,
    /// `SESSION_PORT:CONTAINER_PORT` joined by commas.
    pub const PUBLISHED_PORTS: &str = "berth.ports";
    /// On a session's Docker network: whether the session asked for an internal one. Every
    /// such network is internal; this is what inspecting it reports back.
    pub const INTERNAL_ASKED: &str = "berth.internal";
    /// The memory limit a session's container was made with, in bytes: what a swarm node has
    /// promised its sessions, read back by placement after a restart.
    pub const MEMORY: &str = "berth.memory-bytes";
    /// The cores a session's container is pinned to (`docker.pin_cpus`), as its `CpusetCpus`
    /// says them: read back by placement after a restart, and given to the session's children.
    pub const CPUSET: &str = "berth.cpuset";
    /// On a persistent home's volume (with `INSTANCE`, `OWNER` and `TEMPLATE`): what it is.
    pub const HOME: &str = "berth.home";
    /// On a persistent home's volume: the size limit the engine applied to it, in MiB; absent
    /// when it has none.
    pub const HOME_SIZE_MB: &str = "berth.home-size-mb";
}

/// The name of a session's own container on its engine.
pub fn container_name(session_id: &str) -> String {
    format!("berth-{session_id}")
}

/// Where a session's home is, in its container: what a persistent home's volume is mounted on.
pub const HOME_DIR: &str = "/home/user";

/// The volume holding `owner`'s persistent home for `template`:
/// `berth-home-<owner>-<template>-<hash>`. The names are cut to the engine's volume-name
/// characters (`[a-zA-Z0-9_.-]`) and 32 characters each, so people can tell whose it is; the
/// hash of the instance, owner and template keeps apart what cutting would merge (`a-b`'s
/// `c` and `a`'s `b-c`) and two installations sharing an engine.
pub fn home_volume_name(instance: &str, owner: &str, template: &str) -> String {
    use sha2::Digest;
    let readable = |name: &str| -> String {
        name.chars()
            .take(32)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let digest = sha2::Sha256::digest(format!("{instance}\0{owner}\0{template}"));
    let hash = hex::encode(&digest[..5]);
    format!(
        "berth-home-{}-{}-{hash}",
        readable(owner),
        readable(template)
    )
}

/// A session's persistent home, in the spec of its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeSpec {
    /// The volume, from [`home_volume_name`].
    pub volume: String,
    /// The size limit to make it with, in MiB, where the engine can set one.
    pub size_mb: Option<u64>,
}

/// A persistent home on the engine, as its volume's labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedHome {
    pub volume: String,
    pub owner: String,
    pub template: String,
    /// The limit the engine applied, in MiB.
    pub size_mb: Option<u64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Everything the engine needs to make one session's container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub session_id: String,
    pub owner: String,
    pub template: String,
    pub image: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    /// The container's whole environment, the agent's secret included.
    pub env: BTreeMap<String, String>,
    /// Mount the session's Docker API socket directory (`crate::docker_api`) into it.
    pub docker_api: bool,
    /// On a swarm, only nodes with every one of these labels may run it.
    pub node_labels: BTreeMap<String, String>,
    /// The owner's persistent home, mounted on [`HOME_DIR`]; `None`: the home is the
    /// container's own.
    pub home: Option<HomeSpec>,
    /// The size limit of its writable layer in MiB, set where the engine can
    /// ([`Runtime::limits_disk`]); the disk watchdog enforces it elsewhere.
    pub disk_mb: Option<u64>,
    /// The OCI runtime to run it under; `None`: the engine's default.
    pub oci_runtime: Option<String>,
}

/// A container the engine reports as Berth's (of this instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedContainer {
    pub id: String,
    pub session_id: String,
    pub running: bool,
}

/// What a container says of the session it was made for (its labels and environment):
/// enough to write the session's row again when the store lost it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerOrigin {
    pub container_id: String,
    pub session_id: String,
    /// Empty for a warm pool's container, which belongs to no one yet.
    pub owner: String,
    pub template: String,
    pub agent_secret: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub running: bool,
}

/// What a container was made for includes what it is.
impl From<ContainerOrigin> for ManagedContainer {
    fn from(origin: ContainerOrigin) -> Self {
        Self {
            id: origin.container_id,
            session_id: origin.session_id,
            running: origin.running,
        }
    }
}

/// A snapshot image of this instance, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedSnapshot {
    /// The image's reference (`repository:tag`, or its id once untagged), which
    /// `remove_snapshot` takes.
    pub image: String,
    pub session_id: String,
}

/// A change in the life of one of this instance's containers, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub container_id: String,
    pub session_id: String,
    pub kind: ContainerEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEventKind {
    /// Started, by anyone: its address may have changed.
    Start,
    /// Its main process ended (stopped, killed, or the engine shutting down).
    Die,
    /// The kernel killed a process in it for memory.
    Oom,
    /// Removed with its filesystem.
    Destroy,
}

/// Events until the connection to the engine breaks; then the stream ends.
pub type EventStream = futures_util::stream::BoxStream<'static, ContainerEvent>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("the container engine is unreachable: {0}")]
    Unavailable(String),
    #[error("image {0} is not on the engine; build the session images with `scripts/build-images`")]
    ImageMissing(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("the container engine refused: {0}")]
    Engine(String),
    /// A volume a container still mounts.
    #[error("{0}")]
    InUse(String),
}

/// A snapshot image's own part, above its template's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotDepth {
    /// One per commit since the template's image; one after a compaction.
    pub layers: u32,
    /// What those layers hold.
    pub bytes: u64,
}

/// The registry an image reference names, as the engine reads one: a first path component
/// with a dot or a port, or `localhost`.
pub fn registry_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// An image reference's repository and tag (`latest` when it names none); a registry's port
/// is not a tag.
pub fn split_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image, "latest"),
    }
}

#[async_trait]
pub trait Runtime: Send + Sync + std::fmt::Debug + 'static {
    /// Succeeds when the engine answers.
    async fn ping(&self) -> Result<(), RuntimeError>;

    /// Makes what every session needs on the engine (the session networks). Idempotent.
    async fn prepare(&self) -> Result<(), RuntimeError>;

    /// Creates the container without starting it; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;

    /// Starts a created container; returns where its agent listens.
    async fn start(&self, container_id: &str) -> Result<SocketAddr, RuntimeError>;

    /// Kills and removes a container with its filesystem. Succeeds when it is already gone.
    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError>;

    /// Stops a container: SIGTERM to its init (the agent saves its terminals), SIGKILL after
    /// `grace`. Succeeds when it is already stopped.
    async fn stop(
        &self,
        container_id: &str,
        grace: std::time::Duration,
    ) -> Result<(), RuntimeError>;

    /// Makes `image` (a `repository:tag` reference) of a container's filesystem, labelled with
    /// its session and this instance so reconcile can find it; a running one is paused for the
    /// copy with `pause`. The agent's secret is not kept in the image's configuration.
    async fn commit(
        &self,
        container_id: &str,
        image: &str,
        pause: bool,
    ) -> Result<(), RuntimeError>;

    /// The image a stopped container was made from, when its filesystem holds nothing beyond
    /// that image; `None` when something changed. A hibernation with nothing new to keep reuses
    /// the snapshot the session woke from instead of committing one more layer of nothing.
    async fn unchanged_image(&self, container_id: &str) -> Result<Option<String>, RuntimeError>;

    /// What of the snapshot `image` is its own, above `base`, its session's template image.
    async fn snapshot_depth(&self, image: &str, base: &str) -> Result<SnapshotDepth, RuntimeError>;

    /// Makes `target` of `base` (the session's template image, which `image` sits on) and one
    /// layer holding everything `image`'s own layers hold, labelled as `image` is. `image`
    /// stays.
    async fn compact_snapshot(
        &self,
        image: &str,
        base: &str,
        target: &str,
    ) -> Result<(), RuntimeError>;

    /// Removes a snapshot image, and its manifest from the registry its reference names.
    /// Succeeds when it is already gone.
    async fn remove_snapshot(&self, image: &str) -> Result<(), RuntimeError>;

    /// Pushes a snapshot image to the registry its reference names.
    async fn push_snapshot(&self, image: &str) -> Result<(), RuntimeError>;

    /// Removes the engine's copy of a pushed snapshot image; the registry keeps it, and a
    /// create from it pulls it again.
    async fn drop_local_snapshot(&self, image: &str) -> Result<(), RuntimeError>;

    /// Every snapshot image of this instance.
    async fn snapshots(&self) -> Result<Vec<ManagedSnapshot>, RuntimeError>;

    /// The volume of `owner`'s persistent home for `template` on this instance
    /// ([`home_volume_name`]).
    fn home_volume(&self, owner: &str, template: &str) -> String;

    /// Makes the volume of `spec.home`, labelled with its owner, template and this instance,
    /// unless the engine has it; its name when this call made it (a new home, which the
    /// workspace seed fills), `None` when it was there or `spec` has no home. Where the engine
    /// cannot limit a volume's size, it is made without a limit (the log says so once).
    async fn ensure_home(&self, spec: &ContainerSpec) -> Result<Option<String>, RuntimeError>;

    /// Every persistent home of this instance.
    async fn homes(&self) -> Result<Vec<ManagedHome>, RuntimeError>;

    /// Removes a home's volume, with the files in it. Succeeds when it is already gone;
    /// [`RuntimeError::InUse`] while a container mounts it.
    async fn remove_home(&self, volume: &str) -> Result<(), RuntimeError>;

    /// Every container of this Berth instance, running or not.
    async fn list(&self) -> Result<Vec<ManagedContainer>, RuntimeError>;

    /// One container of this instance, or `None` when the engine no longer has it.
    async fn inspect(&self, container_id: &str) -> Result<Option<ManagedContainer>, RuntimeError>;

    /// What one container of this instance was made for, or `None` when the engine no longer
    /// has it.
    async fn origin(&self, container_id: &str) -> Result<Option<ContainerOrigin>, RuntimeError>;

    /// Removes everything a session made through its Docker API: containers (killed, with
    /// their anonymous volumes) and images. Succeeds when there is nothing.
    async fn remove_children(&self, session_id: &str) -> Result<(), RuntimeError>;

    /// Stops a session's running Docker children, remembering which, for `start_children`:
    /// they sleep while it hibernates.
    async fn stop_children(&self, session_id: &str) -> Result<(), RuntimeError>;

    /// Starts again the children `stop_children` stopped. Succeeds when there are none.
    async fn start_children(&self, session_id: &str) -> Result<(), RuntimeError>;

    /// The sessions of this instance that have containers or images made through their
    /// Docker API on the engine.
    async fn child_owners(&self) -> Result<BTreeSet<String>, RuntimeError>;

    /// CPU time the session's processes have used so far (with its Docker containers where
    /// they share its cgroup), read from the cgroups of this host: a file read, not an engine
    /// call, so cheap enough to ask of every session each second. `None` where it cannot be
    /// read (another cgroup layout, an engine on another host).
    fn cpu_time(&self, _session_id: &str, _container_id: &str) -> Option<std::time::Duration> {
        None
    }

    /// Whether a stopped container's first process was killed at its memory limit.
    async fn oom_killed(&self, container_id: &str) -> Result<bool, RuntimeError>;

    /// Whether the engine itself keeps containers within their `disk_mb` (writes past it
    /// fail); where it does not, the disk watchdog measures them with [`Runtime::disk_used`].
    fn limits_disk(&self) -> bool {
        false
    }

    /// Bytes a container of this instance wrote to its own files (its writable layer), or
    /// `None` when the engine no longer has it.
    async fn disk_used(&self, container_id: &str) -> Result<Option<u64>, RuntimeError>;

    /// Why a container the engine no longer has went, for the sessions it held:
    /// `node_lost` when its whole node did (a swarm node down or gone), else
    /// `container_vanished`.
    fn vanished_reason(&self, _container_id: &str) -> &'static str {
        "container_vanished"
    }

    /// Whether the last [`Runtime::list`] could not ask the engine that holds this container
    /// (a swarm node whose `berth-node` does not answer, though the swarm says the node is
    /// up): nothing is known of it, so reconcile leaves its session alone until it can.
    fn unanswered(&self, _container_id: &str) -> bool {
        false
    }

    /// This instance's containers on nodes being emptied (a swarm node set to `drain`): their
    /// sessions hibernate and wake elsewhere. A single engine has none.
    async fn leaving(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Follows the engine's events for this instance's containers, starting with those it
    /// still holds from `since` on (so a container that changed between a look at the engine
    /// and the subscription is still heard of). Succeeds once the engine answers; the stream
    /// ends when the connection to it breaks (an engine restart always breaks it).
    async fn events(&self, since: SystemTime) -> Result<EventStream, RuntimeError>;
}

#[cfg(test)]
mod tests {
    use super::home_volume_name;

    #[test]
    fn home_volumes_are_named_for_people_and_never_shared() {
        let name = home_volume_name("default", "alice", "python dev");
        assert!(name.starts_with("berth-home-alice-python_dev-"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')),
            "{name}"
        );
        assert_eq!(name, home_volume_name("default", "alice", "python dev"));
        // Names that cut alike, and other installations, get volumes of their own.
        assert_ne!(
            home_volume_name("default", "a-b", "c"),
            home_volume_name("default", "a", "b-c")
        );
        assert_ne!(name, home_volume_name("default", "alice", "python_dev"));
        assert_ne!(name, home_volume_name("other", "alice", "python dev"));
        assert!(home_volume_name("default", &"x".repeat(500), &"y".repeat(500)).len() < 100);
    }
}

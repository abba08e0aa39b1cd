//! Docker inside a session, without `--privileged`: each session of a template with
//! `docker.enabled` gets a unix socket of its own, in a host directory mounted read-only into
//! its container at [`SOCKET_DIR_IN_SESSION`], where `DOCKER_HOST` points. Behind it Berth speaks
//! the Docker Engine API, checks every call against the session's policy (`policy.rs`), and
//! forwards it to the engine (`serve.rs`, `engine.rs`). The socket a connection arrives on is
//! the session it acts for: nothing the session sends can claim another.
//!
//! A session's socket opens with its container ([`Sockets::ensure_open`], called by the runtime
//! as it makes the container), so it is there before anything in the session runs.
//! [`DockerApi::spawn`] keeps one socket open per session that has not ended (a restarted
//! control plane opens them again), closes ended sessions' sockets, and removes what
//! sessions that have ended left on the engine (their removal does it too; this catches a crash
//! in between). See docs/docker-in-session.md.

mod context;
mod engine;
mod networks;
pub mod policy;
mod published;
mod serve;
mod sockets;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

pub use engine::Engine;
pub use sockets::Sockets;

use crate::{
    cluster::Serving,
    runtime::Runtime,
    store::{SessionFilter, Store},
};

/// Where the session's socket directory is mounted in its container.
pub const SOCKET_DIR_IN_SESSION: &str = berth_proto::docker::DIR_IN_SESSION;
const SOCKET_NAME: &str = "docker.sock";

/// How often the open sockets are matched with the sessions: an ended session's socket closes
/// within this, and a restarted control plane's sessions get theirs back.
const SYNC_PERIOD: Duration = Duration::from_millis(250);
/// How often ended sessions' children are looked for.
const SWEEP_PERIOD: Duration = Duration::from_secs(30);
/// How often the published ports are matched with what runs: a container that stops by
/// itself stops being published within this (a start or stop through the API is at once).
const PUBLISH_PERIOD: Duration = Duration::from_secs(1);

/// `DOCKER_HOST` inside a session.
pub fn docker_host() -> String {
    format!("unix://{SOCKET_DIR_IN_SESSION}/{SOCKET_NAME}")
}

/// One session's socket on the host.
pub fn socket_path(root: &Path, session_id: &str) -> PathBuf {
    session_dir(root, session_id).join(SOCKET_NAME)
}

/// The host directory holding one session's socket.
pub fn session_dir(root: &Path, session_id: &str) -> PathBuf {
    root.join(session_id)
}

#[derive(Debug)]
pub struct DockerApi {
    sockets: Sockets,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    serving: Serving,
}

impl DockerApi {
    pub fn new(
        sockets: Sockets,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        serving: Serving,
    ) -> Self {
        Self {
            sockets,
            store,
            runtime,
            serving,
        }
    }

    /// Keeps the sockets matched with the sessions until the task is aborted, while this
    /// instance is `serving`: in a host dir of its own, always; in one the instances on an
    /// engine share (`cluster.host_dir`), while it leads, since one listener at a time can
    /// serve a path and the leader makes the containers that mount them (a new leader serves
    /// them all again). The sockets close with the last clone of their [`Sockets`] (the
    /// runtime holds one).
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut sync = tokio::time::interval(SYNC_PERIOD);
            sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sweep = tokio::time::interval(SWEEP_PERIOD);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut publish = tokio::time::interval(PUBLISH_PERIOD);
            publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = sync.tick() => match self.serving.now() {
                        true => self.sync().await,
                        false => self.sockets.close_all(),
                    },
                    _ = sweep.tick(), if self.serving.now() => self.sweep().await,
                    _ = publish.tick(), if self.serving.now() => self.publish().await,
                }
            }
        })
    }

    /// Opens a socket for every kept session of a template with Docker (a new session's is
    /// open already: its container's creation opened it), closes the others.
    async fn sync(&self) {
        let listed = Instant::now();
        let sessions = match self.store.list_sessions(&SessionFilter::kept()).await {
            Ok(sessions) => sessions,
            Err(err) => {
                tracing::warn!(%err, "docker api: cannot list sessions; sockets unchanged");
                return;
            }
        };
        let wanted: BTreeMap<String, String> = sessions
            .into_iter()
            .filter(|s| self.sockets.serves(&s.template))
            .map(|s| (s.id, s.template))
            .collect();
        self.sockets
            .close_all_but(&wanted.keys().cloned().collect(), listed);
        for (id, template) in wanted {
            if let Err(err) = self.sockets.ensure_open(&id, &template) {
                tracing::warn!(session = %id, %err, "docker api: cannot open the socket");
            }
        }
    }

    async fn publish(&self) {
        let sockets = &self.sockets;
        if let Err(err) =
            published::publish(sockets.engine(), sockets.dir(), sockets.instance(), None).await
        {
            tracing::debug!(%err, "docker api: published ports not updated");
        }
    }

    /// Removes the children of sessions that have ended: a removal that failed, or a control
    /// plane that died between a session's end and its children's removal.
    async fn sweep(&self) {
        let owners = match self.runtime.child_owners().await {
            Ok(owners) => owners,
            Err(err) => {
                tracing::debug!(%err, "docker api: sweep skipped");
                return;
            }
        };
        // Socket directories of sessions that ended while no control plane ran. Dot
        // directories are the API's own (`.contexts`, `.hibernated`).
        let dirs: Vec<String> = std::fs::read_dir(self.sockets.dir())
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect();
        if owners.is_empty() && dirs.is_empty() {
            return;
        }
        // The engine and the directory first, then the store: a session created after the
        // listing cannot have children or a directory in it.
        let kept = match self.store.list_sessions(&SessionFilter::kept()).await {
            Ok(sessions) => sessions
                .into_iter()
                .map(|s| s.id)
                .collect::<std::collections::BTreeSet<_>>(),
            Err(_) => return,
        };
        for dir in dirs.iter().filter(|d| !kept.contains(*d)) {
            let _ = std::fs::remove_dir_all(session_dir(self.sockets.dir(), dir));
        }
        for owner in owners.difference(&kept) {
            match self.runtime.remove_children(owner).await {
                Ok(()) => {
                    tracing::info!(session = %owner, "removed an ended session's docker children")
                }
                Err(err) => {
                    tracing::warn!(session = %owner, %err, "could not remove an ended session's docker children; will retry")
                }
            }
        }
    }
}

//! Docker inside a session, without `--privileged`: each session of a template with
//! `docker.enabled` gets a unix socket of its own, in a host directory mounted read-only into
//! its container at [`SOCKET_DIR_IN_SESSION`], where `DOCKER_HOST` points. Behind it Berth speaks
//! the Docker Engine API, checks every call against the session's policy (`policy.rs`), and
//! forwards it to the engine (`serve.rs`, `engine.rs`). The socket a connection arrives on is
//! the session it acts for: nothing the session sends can claim another.
//!
//! [`DockerApi::spawn`] keeps one socket open per session that has not ended, and removes what
//! sessions that have ended left on the engine (their removal does it too; this catches a crash
//! in between). See docs/docker-in-session.md.

mod context;
mod engine;
pub mod policy;
mod serve;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::task::JoinHandle;

pub use engine::Engine;
use policy::Scope;
use serve::SessionApi;

use crate::{
    config::{Config, TemplateConfig},
    networks::SessionNetworks,
    runtime::Runtime,
    store::{SessionFilter, Store},
};

/// Where the session's socket directory is mounted in its container.
pub const SOCKET_DIR_IN_SESSION: &str = "/run/berth/docker";
const SOCKET_NAME: &str = "docker.sock";

/// How often the open sockets are matched with the sessions: a new session's socket opens
/// within this (its container takes longer to start).
const SYNC_PERIOD: Duration = Duration::from_millis(250);
/// How often ended sessions' children are looked for.
const SWEEP_PERIOD: Duration = Duration::from_secs(30);

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

/// One session's socket, served until dropped.
struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
pub struct DockerApi {
    dir: PathBuf,
    engine: Engine,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    templates: Arc<BTreeMap<String, TemplateConfig>>,
    networks: SessionNetworks,
    instance: String,
    log_max_size: String,
}

impl DockerApi {
    pub fn new(
        config: &Config,
        dir: PathBuf,
        engine: Engine,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        networks: SessionNetworks,
    ) -> Self {
        Self {
            dir,
            engine,
            store,
            runtime,
            templates: Arc::new(config.templates.clone()),
            networks,
            instance: config.docker.instance.clone(),
            log_max_size: config.docker.log_max_size.clone(),
        }
    }

    /// Serves the sessions' sockets until the task is aborted (which closes them all).
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut open: HashMap<String, Listener> = HashMap::new();
            let mut sync = tokio::time::interval(SYNC_PERIOD);
            sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sweep = tokio::time::interval(SWEEP_PERIOD);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = sync.tick() => self.sync(&mut open).await,
                    _ = sweep.tick() => self.sweep().await,
                }
            }
        })
    }

    /// Opens a socket for every kept session of a template with Docker, closes the others.
    async fn sync(&self, open: &mut HashMap<String, Listener>) {
        let sessions = match self.store.list_sessions(&SessionFilter::kept()).await {
            Ok(sessions) => sessions,
            Err(err) => {
                tracing::warn!(%err, "docker api: cannot list sessions; sockets unchanged");
                return;
            }
        };
        let wanted: BTreeMap<String, String> = sessions
            .into_iter()
            .filter(|s| {
                self.templates
                    .get(&s.template)
                    .is_some_and(|t| t.docker.enabled)
            })
            .map(|s| (s.id, s.template))
            .collect();
        open.retain(|id, listener| {
            let keep = wanted.contains_key(id) && !listener.0.is_finished();
            if !keep {
                let _ = std::fs::remove_dir_all(session_dir(&self.dir, id));
            }
            keep
        });
        for (id, template) in wanted {
            if open.contains_key(&id) {
                continue;
            }
            match self.open(&id, &template) {
                Ok(task) => {
                    open.insert(id, Listener(task));
                }
                Err(err) => {
                    tracing::warn!(session = %id, %err, "docker api: cannot open the socket")
                }
            }
        }
    }

    fn open(&self, session_id: &str, template: &str) -> std::io::Result<JoinHandle<()>> {
        use std::os::unix::fs::PermissionsExt;
        let config = &self.templates[template];
        let network = self
            .networks
            .for_template(template)
            .map(|n| n.name.clone())
            .ok_or_else(|| std::io::Error::other(format!("no network for template {template}")))?;
        let dir = session_dir(&self.dir, session_id);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let path = socket_path(&self.dir, session_id);
        // A socket left by a control plane that stopped: its listener is gone.
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path)?;
        // The session's user is uid 1000; the directory's mode keeps everyone else on the host
        // out (the data dir is 0700).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        let api = Arc::new(SessionApi {
            scope: Scope {
                session_id: session_id.to_owned(),
                instance: self.instance.clone(),
                network,
                memory_bytes: i64::try_from(config.memory_mb.saturating_mul(1024 * 1024))
                    .unwrap_or(i64::MAX),
                nano_cpus: (config.cpus * 1e9) as i64,
                pids: config.pids,
                base_images: config.docker.base_images.clone(),
                max_containers: config.docker.max_containers,
                max_images: config.docker.max_images,
                log_max_size: self.log_max_size.clone(),
            },
            engine: self.engine.clone(),
            // Beside the sessions' directories, never in one: each is mounted in a session.
            spool_dir: self.dir.join(".contexts"),
        });
        let router = axum::Router::new().fallback(serve::handle).with_state(api);
        let session = session_id.to_owned();
        Ok(tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::warn!(%session, %err, "docker api: socket closed");
            }
        }))
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
        let dirs: Vec<String> = std::fs::read_dir(&self.dir)
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
            let _ = std::fs::remove_dir_all(session_dir(&self.dir, dir));
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

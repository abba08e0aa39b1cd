//! The sessions' sockets: one listener per session, opened when its container is made (so
//! the socket is there before anything in the session can call it) and kept matched with the
//! store by [`super::DockerApi`] (so a control plane that restarts opens them again).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::task::JoinHandle;

use super::{Engine, policy::Scope, serve, session_dir, socket_path};
use crate::session_socket::{self, still_bound};
use crate::{
    config::{Config, TemplateConfig},
    networks::SessionNetworks,
};

/// The sessions' open sockets; cheap to clone, every clone the same set.
#[derive(Debug, Clone)]
pub struct Sockets(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    engine: Engine,
    templates: BTreeMap<String, TemplateConfig>,
    networks: SessionNetworks,
    instance: String,
    log_max_size: String,
    network_pool: crate::networks::Cidr,
    network_lock: Arc<tokio::sync::Mutex<()>>,
    open: Mutex<HashMap<String, Listener>>,
}

/// One session's socket, served until dropped.
#[derive(Debug)]
struct Listener {
    task: JoinHandle<()>,
    opened: Instant,
    /// The socket file's, to tell whether the path is still this socket.
    inode: u64,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sockets {
    /// Sockets under `dir` (one directory per session), forwarding to `engine`.
    pub fn new(config: &Config, dir: PathBuf, engine: Engine, networks: SessionNetworks) -> Self {
        Self(Arc::new(Shared {
            dir,
            engine,
            templates: config.templates.clone(),
            networks,
            instance: config.docker.instance.clone(),
            log_max_size: config.docker.log_max_size.clone(),
            network_pool: config.docker.child_network_pool,
            network_lock: Arc::default(),
            open: Mutex::default(),
        }))
    }

    /// The directory holding every session's socket directory.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    /// `docker.instance`: which of the engine's children are this installation's.
    pub fn instance(&self) -> &str {
        &self.0.instance
    }

    /// Whether sessions of `template` get a socket.
    pub fn serves(&self, template: &str) -> bool {
        self.0
            .templates
            .get(template)
            .is_some_and(|t| t.docker.enabled)
    }

    /// Serves `session_id`'s socket unless it already is; the directory that holds it, which
    /// the session's container mounts.
    pub fn ensure_open(&self, session_id: &str, template: &str) -> std::io::Result<PathBuf> {
        let mut open = self.lock();
        let path = socket_path(&self.0.dir, session_id);
        match open.get(session_id) {
            Some(listener)
                if !listener.task.is_finished() && still_bound(&path, listener.inode) => {}
            _ => {
                let (task, inode) = self.open(session_id, template)?;
                let opened = Instant::now();
                let listener = Listener {
                    task,
                    opened,
                    inode,
                };
                open.insert(session_id.to_owned(), listener);
            }
        }
        Ok(session_dir(&self.0.dir, session_id))
    }

    /// Closes the sockets of sessions not in `wanted` (and removes their directories), except
    /// those opened after `listed`: their sessions were made after the listing was taken.
    /// A wanted session's socket whose listener ended is closed too, for `ensure_open` to
    /// open again in the same directory.
    pub fn close_all_but(&self, wanted: &BTreeSet<String>, listed: Instant) {
        self.lock().retain(|id, listener| {
            let wanted = wanted.contains(id);
            let keep = listener.opened > listed || (wanted && !listener.task.is_finished());
            // A wanted session's directory is mounted in its container: its socket opens
            // again in it. An ended session's goes.
            if !keep && !wanted {
                let _ = std::fs::remove_dir_all(session_dir(&self.0.dir, id));
            }
            keep
        });
    }

    /// Stops serving every socket, leaving the files for the instance that leads next.
    pub fn close_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Listener>> {
        // A panic while holding it leaves the map whole: every change is one insert or retain.
        self.0.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, session_id: &str, template: &str) -> std::io::Result<(JoinHandle<()>, u64)> {
        use std::os::unix::fs::PermissionsExt;
        let shared = &self.0;
        let config = shared.templates.get(template).ok_or_else(|| {
            std::io::Error::other(format!("template {template} is not configured"))
        })?;
        let network = shared
            .networks
            .for_template(template)
            .map(|n| n.name.clone())
            .ok_or_else(|| std::io::Error::other(format!("no network for template {template}")))?;
        let dir = session_dir(&shared.dir, session_id);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let (listener, inode) = session_socket::bind(&socket_path(&shared.dir, session_id))?;
        let api = Arc::new(serve::SessionApi {
            scope: Scope {
                session_id: session_id.to_owned(),
                instance: shared.instance.clone(),
                network,
                memory_bytes: i64::try_from(config.memory_mb.saturating_mul(1024 * 1024))
                    .unwrap_or(i64::MAX),
                nano_cpus: (config.cpus * 1e9) as i64,
                pids: config.pids,
                base_images: config.docker.base_images.clone(),
                allow_pull: config.docker.allow_pull,
                max_containers: config.docker.max_containers,
                max_images: config.docker.max_images,
                max_networks: config.docker.max_networks,
                log_max_size: shared.log_max_size.clone(),
            },
            engine: shared.engine.clone(),
            sockets_dir: shared.dir.clone(),
            network_pool: shared.network_pool,
            network_lock: shared.network_lock.clone(),
        });
        let router = axum::Router::new().fallback(serve::handle).with_state(api);
        let session = session_id.to_owned();
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::warn!(%session, %err, "docker api: socket closed");
            }
        });
        Ok((task, inode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TemplateDockerConfig;

    fn sockets(dir: &Path) -> Sockets {
        let mut config = Config::default();
        config.templates.insert(
            "docker".into(),
            TemplateConfig {
                docker: TemplateDockerConfig {
                    enabled: true,
                    ..TemplateDockerConfig::default()
                },
                ..TemplateConfig::default()
            },
        );
        let config = config.finish().unwrap();
        let engine = Engine::at_socket(
            dir.join("no-engine.sock"),
            std::time::Duration::from_secs(1),
        );
        let networks = SessionNetworks::new(&config).unwrap();
        Sockets::new(&config, dir.to_owned(), engine, networks)
    }

    #[tokio::test]
    async fn a_socket_opens_at_once_and_a_sync_listed_before_it_leaves_it_open() {
        let dir = tempfile::tempdir().unwrap();
        let sockets = sockets(dir.path());
        let listed = Instant::now();
        let session_dir = sockets.ensure_open("s1", "docker").unwrap();
        assert_eq!(session_dir, dir.path().join("s1"));
        tokio::net::UnixStream::connect(socket_path(dir.path(), "s1"))
            .await
            .expect("the socket accepts as soon as ensure_open returns");

        // A listing taken before the session existed does not know it: the socket stays.
        sockets.close_all_but(&BTreeSet::new(), listed);
        assert!(socket_path(dir.path(), "s1").exists());
        // Opening again is a no-op on an open socket.
        sockets.ensure_open("s1", "docker").unwrap();

        // A later listing without it closes it and removes its directory.
        sockets.close_all_but(&BTreeSet::new(), Instant::now());
        assert!(!session_dir.exists());
        assert!(
            sockets.ensure_open("s2", "nope").is_err(),
            "unknown template"
        );
        assert!(!sockets.serves("nope") && sockets.serves("docker"));
    }
}

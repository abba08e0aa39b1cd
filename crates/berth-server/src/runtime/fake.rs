//! An in-process [`Runtime`] for fast tests. "Starting" a container serves the real agent
//! router on a loopback port, so the control plane's readiness check runs for real.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use berth_agent::AgentConfig;
use berth_proto::agent::SECRET_ENV;
use futures_util::StreamExt;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    ContainerEvent, ContainerEventKind, ContainerOrigin, ContainerSpec, EventStream,
    ManagedContainer, ManagedHome, ManagedSnapshot, Runtime, RuntimeError, SnapshotDepth,
};

#[derive(Debug)]
struct FakeContainer {
    spec: ContainerSpec,
    /// The agent serving it while it "runs", and where.
    agent: Option<JoinHandle<()>>,
    addr: Option<SocketAddr>,
    /// The container's `/home/user`: its own, or its persistent home's volume.
    home: Arc<tempfile::TempDir>,
    /// Its first process was killed at the memory limit.
    oom_killed: bool,
}

#[derive(Debug, Default)]
pub struct FakeRuntime {
    containers: Mutex<HashMap<String, FakeContainer>>,
    next_id: AtomicU64,
    /// While set, every call fails as if the engine were unreachable.
    pub down: AtomicBool,
    /// Delay before `start` returns, to hold sessions in `creating`.
    pub start_delay: Mutex<Duration>,
    /// While set, commits fail as an engine refusing one would (too many layers, say).
    pub refuse_commits: AtomicBool,
    /// Event streams handed out; dropped (ending the streams) when the engine "stops".
    subscribers: Mutex<Vec<mpsc::UnboundedSender<ContainerEvent>>>,
    /// Snapshot images: a copy of the committed container's home, by image reference.
    images: Mutex<HashMap<String, FakeImage>>,
    /// Persistent homes' volumes, by name.
    volumes: Mutex<HashMap<String, FakeVolume>>,
}

#[derive(Debug)]
struct FakeVolume {
    home: Arc<tempfile::TempDir>,
    owner: String,
    template: String,
    size_mb: Option<u64>,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug)]
struct FakeImage {
    session_id: String,
    home: tempfile::TempDir,
    /// One per commit since the template's image, as the engine's history counts them.
    layers: u32,
}

impl FakeRuntime {
    pub fn container_count(&self) -> usize {
        self.lock().len()
    }

    fn spec_of(&self, container_id: &str) -> Option<ContainerSpec> {
        self.lock().get(container_id).map(|c| c.spec.clone())
    }

    pub fn spec_of_session(&self, session_id: &str) -> Option<ContainerSpec> {
        self.lock()
            .values()
            .find(|c| c.spec.session_id == session_id)
            .map(|c| c.spec.clone())
    }

    /// Makes a container vanish behind the control plane's back.
    pub fn vanish(&self, session_id: &str) {
        self.lock().retain(|_, c| c.spec.session_id != session_id);
    }

    /// Ends a container's main process behind the control plane's back, as `docker kill` does.
    pub fn kill(&self, session_id: &str) {
        let killed: Vec<String> = self
            .lock()
            .iter_mut()
            .filter(|(_, c)| c.spec.session_id == session_id)
            .filter_map(|(id, c)| c.agent.take().map(|agent| (id, agent)))
            .map(|(id, agent)| {
                agent.abort();
                id.clone()
            })
            .collect();
        for id in killed {
            self.emit(&id, session_id, ContainerEventKind::Die);
        }
    }

    /// What a container's first process killed at its memory limit looks like: the engine's
    /// `oom` event, then its `die`.
    pub fn kill_out_of_memory(&self, session_id: &str) {
        let ids: Vec<String> = self
            .lock()
            .iter_mut()
            .filter(|(_, c)| c.spec.session_id == session_id)
            .map(|(id, c)| {
                c.oom_killed = true;
                id.clone()
            })
            .collect();
        for id in ids {
            self.emit(&id, session_id, ContainerEventKind::Oom);
        }
        self.kill(session_id);
    }

    /// Whether anyone follows the engine's events.
    pub fn followed(&self) -> bool {
        !self
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The `/home/user` of a session's container, to write files in as its processes would.
    pub fn home_of(&self, session_id: &str) -> Option<std::path::PathBuf> {
        self.lock()
            .values()
            .find(|c| c.spec.session_id == session_id)
            .map(|c| c.home.path().to_owned())
    }

    /// Stops the engine as a restart does: every container stops, every event stream ends,
    /// and calls fail until [`FakeRuntime::start_engine`].
    pub fn stop_engine(&self) {
        self.down.store(true, Ordering::SeqCst);
        for container in self.lock().values_mut() {
            if let Some(agent) = container.agent.take() {
                agent.abort();
            }
        }
        self.end_event_streams();
    }

    /// Ends every event stream with the engine still up, as a swarm's runtime does when its
    /// nodes change.
    pub fn end_event_streams(&self) {
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn start_engine(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// How many snapshot images there are.
    pub fn snapshot_count(&self) -> usize {
        self.images().len()
    }

    /// Makes a snapshot image vanish behind the control plane's back.
    pub fn drop_snapshot(&self, image: &str) {
        self.images().remove(image);
    }

    fn images(&self) -> std::sync::MutexGuard<'_, HashMap<String, FakeImage>> {
        self.images.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn volumes(&self) -> std::sync::MutexGuard<'_, HashMap<String, FakeVolume>> {
        self.volumes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `spec`'s home volume, made (empty) when missing, as the engine does for a mount.
    fn volume_for(
        &self,
        spec: &ContainerSpec,
    ) -> Result<Option<(Arc<tempfile::TempDir>, bool)>, RuntimeError> {
        let Some(home) = &spec.home else {
            return Ok(None);
        };
        let mut volumes = self.volumes();
        if let Some(volume) = volumes.get(&home.volume) {
            return Ok(Some((volume.home.clone(), false)));
        }
        let dir = Arc::new(tempfile::tempdir().map_err(|e| RuntimeError::Engine(e.to_string()))?);
        volumes.insert(
            home.volume.clone(),
            FakeVolume {
                home: dir.clone(),
                owner: spec.owner.clone(),
                template: spec.template.clone(),
                size_mb: home.size_mb,
                created_at: chrono::Utc::now(),
            },
        );
        Ok(Some((dir, true)))
    }

    fn emit(&self, container_id: &str, session_id: &str, kind: ContainerEventKind) {
        let event = ContainerEvent {
            container_id: container_id.to_owned(),
            session_id: session_id.to_owned(),
            kind,
        };
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|subscriber| subscriber.send(event.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, FakeContainer>> {
        self.containers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_up(&self) -> Result<(), RuntimeError> {
        if self.down.load(Ordering::SeqCst) {
            Err(RuntimeError::Unavailable("fake engine is down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.check_up()
    }

    async fn prepare(&self) -> Result<(), RuntimeError> {
        self.check_up()
    }

    /// The fake serves no Docker API, so no session has anything made through one.
    async fn remove_children(&self, _session_id: &str) -> Result<(), RuntimeError> {
        self.check_up()
    }

    async fn stop_children(&self, _session_id: &str) -> Result<(), RuntimeError> {
        self.check_up()
    }

    async fn start_children(&self, _session_id: &str) -> Result<(), RuntimeError> {
        self.check_up()
    }

    async fn child_owners(&self) -> Result<std::collections::BTreeSet<String>, RuntimeError> {
        self.check_up().map(|()| Default::default())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.check_up()?;
        if spec.image.contains("missing") {
            return Err(RuntimeError::ImageMissing(spec.image.clone()));
        }
        let id = format!("fake{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        if !self.images().contains_key(&spec.image) && spec.image.starts_with("berth-snapshot/") {
            return Err(RuntimeError::ImageMissing(spec.image.clone()));
        }
        // A persistent home's volume hides the image's home: the fake's images hold nothing
        // else.
        let home = match self.volume_for(spec)? {
            Some((volume, _)) => volume,
            None => {
                let home = tempfile::tempdir().map_err(|e| RuntimeError::Engine(e.to_string()))?;
                // From a snapshot: its files, as Docker's image layer gives them.
                if let Some(image) = self.images().get(&spec.image) {
                    copy_tree(image.home.path(), home.path())
                        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
                }
                Arc::new(home)
            }
        };
        self.lock().insert(
            id.clone(),
            FakeContainer {
                spec: spec.clone(),
                agent: None,
                addr: None,
                home,
                oom_killed: false,
            },
        );
        Ok(id)
    }

    async fn start(&self, container_id: &str) -> Result<SocketAddr, RuntimeError> {
        self.check_up()?;
        let delay = *self.start_delay.lock().unwrap_or_else(|p| p.into_inner());
        tokio::time::sleep(delay).await;
        if self
            .spec_of(container_id)
            .is_some_and(|spec| spec.image.contains("panic"))
        {
            panic!("the fake engine panics on images named panic");
        }
        // Like Docker: starting a running container changes nothing.
        if let Some(addr) = self
            .lock()
            .get(container_id)
            .filter(|c| c.agent.is_some())
            .and_then(|c| c.addr)
        {
            return Ok(addr);
        }
        let (config, session_id) = {
            let containers = self.lock();
            let container = containers
                .get(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.into()))?;
            let config = AgentConfig {
                secret: container
                    .spec
                    .env
                    .get(SECRET_ENV)
                    .cloned()
                    .unwrap_or_default(),
                home: container.home.path().to_owned(),
                max_file_bytes: 1 << 30,
            };
            (config, container.spec.session_id.clone())
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let agent = tokio::spawn(async move {
            let _ = axum::serve(listener, berth_agent::router(config)).await;
        });
        match self.lock().get_mut(container_id) {
            Some(container) => {
                if let Some(running) = container.agent.replace(agent) {
                    running.abort();
                }
                container.addr = Some(addr);
            }
            None => agent.abort(),
        }
        self.emit(container_id, &session_id, ContainerEventKind::Start);
        Ok(addr)
    }

    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.check_up()?;
        let Some(removed) = self.lock().remove(container_id) else {
            return Ok(());
        };
        if let Some(agent) = removed.agent {
            agent.abort();
        }
        self.emit(
            container_id,
            &removed.spec.session_id,
            ContainerEventKind::Destroy,
        );
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ManagedContainer>, RuntimeError> {
        self.check_up()?;
        Ok(self
            .lock()
            .iter()
            .map(|(id, c)| ManagedContainer {
                id: id.clone(),
                session_id: c.spec.session_id.clone(),
                running: c.agent.is_some(),
            })
            .collect())
    }

    async fn inspect(&self, container_id: &str) -> Result<Option<ManagedContainer>, RuntimeError> {
        self.check_up()?;
        Ok(self.lock().get(container_id).map(|c| ManagedContainer {
            id: container_id.to_owned(),
            session_id: c.spec.session_id.clone(),
            running: c.agent.is_some(),
        }))
    }

    async fn oom_killed(&self, container_id: &str) -> Result<bool, RuntimeError> {
        self.check_up()?;
        Ok(self.lock().get(container_id).is_some_and(|c| c.oom_killed))
    }

    /// What the files in its home take, as the engine counts its writable layer.
    async fn disk_used(&self, container_id: &str) -> Result<Option<u64>, RuntimeError> {
        self.check_up()?;
        let home = self.lock().get(container_id).map(|c| c.home.clone());
        Ok(home.map(|home| bytes_under(home.path())))
    }

    async fn origin(&self, container_id: &str) -> Result<Option<ContainerOrigin>, RuntimeError> {
        self.check_up()?;
        Ok(self.lock().get(container_id).map(|c| ContainerOrigin {
            container_id: container_id.to_owned(),
            session_id: c.spec.session_id.clone(),
            owner: c.spec.owner.clone(),
            template: c.spec.template.clone(),
            agent_secret: c.spec.env.get(SECRET_ENV).cloned().unwrap_or_default(),
            created_at: chrono::Utc::now(),
            running: c.agent.is_some(),
        }))
    }

    /// Delivers from the subscription on: the fake keeps no history to replay.
    async fn events(&self, _since: SystemTime) -> Result<EventStream, RuntimeError> {
        self.check_up()?;
        let (sender, receiver) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sender);
        let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|event| (event, receiver))
        });
        Ok(events.boxed())
    }

    async fn stop(&self, container_id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        self.check_up()?;
        let session_id = {
            let mut containers = self.lock();
            let container = containers
                .get_mut(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.into()))?;
            let Some(agent) = container.agent.take() else {
                return Ok(());
            };
            agent.abort();
            container.spec.session_id.clone()
        };
        self.emit(container_id, &session_id, ContainerEventKind::Die);
        Ok(())
    }

    async fn commit(
        &self,
        container_id: &str,
        image: &str,
        _pause: bool,
    ) -> Result<(), RuntimeError> {
        self.check_up()?;
        if self.refuse_commits.load(Ordering::SeqCst) {
            return Err(RuntimeError::Engine("max depth exceeded".into()));
        }
        let home = tempfile::tempdir().map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let (session_id, from) = {
            let containers = self.lock();
            let container = containers
                .get(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.into()))?;
            // A commit leaves volumes out, as the engine's does.
            if container.spec.home.is_none() {
                copy_tree(container.home.path(), home.path())
                    .map_err(|e| RuntimeError::Engine(e.to_string()))?;
            }
            (
                container.spec.session_id.clone(),
                container.spec.image.clone(),
            )
        };
        let mut images = self.images();
        let layers = images.get(&from).map_or(0, |image| image.layers) + 1;
        images.insert(
            image.to_owned(),
            FakeImage {
                session_id,
                home,
                layers,
            },
        );
        Ok(())
    }

    async fn unchanged_image(&self, container_id: &str) -> Result<Option<String>, RuntimeError> {
        self.check_up()?;
        // One lock at a time, as `commit` takes them: the container's, then the images'.
        let (from, home, on_volume) = {
            let containers = self.lock();
            let container = containers
                .get(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.into()))?;
            (
                container.spec.image.clone(),
                container.home.path().to_owned(),
                container.spec.home.is_some(),
            )
        };
        let images = self.images();
        let Some(image) = images.get(&from) else {
            return Ok(None);
        };
        // Everything such a container changes is on its volume.
        if on_volume {
            return Ok(Some(from));
        }
        let same =
            same_tree(&home, image.home.path()).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        Ok(same.then_some(from))
    }

    async fn snapshot_depth(
        &self,
        image: &str,
        _base: &str,
    ) -> Result<SnapshotDepth, RuntimeError> {
        self.check_up()?;
        let images = self.images();
        let image = images
            .get(image)
            .ok_or_else(|| RuntimeError::NotFound(image.into()))?;
        let bytes =
            tree_bytes(image.home.path()).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        Ok(SnapshotDepth {
            layers: image.layers,
            bytes,
        })
    }

    async fn compact_snapshot(
        &self,
        image: &str,
        _base: &str,
        target: &str,
    ) -> Result<(), RuntimeError> {
        self.check_up()?;
        let home = tempfile::tempdir().map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let mut images = self.images();
        let session_id = {
            let source = images
                .get(image)
                .ok_or_else(|| RuntimeError::NotFound(image.into()))?;
            copy_tree(source.home.path(), home.path())
                .map_err(|e| RuntimeError::Engine(e.to_string()))?;
            source.session_id.clone()
        };
        images.insert(
            target.to_owned(),
            FakeImage {
                session_id,
                home,
                layers: 1,
            },
        );
        Ok(())
    }

    /// The fake has no registry: its images are always "local".
    async fn push_snapshot(&self, _image: &str) -> Result<(), RuntimeError> {
        self.check_up()
    }

    async fn drop_local_snapshot(&self, _image: &str) -> Result<(), RuntimeError> {
        self.check_up()
    }

    async fn remove_snapshot(&self, image: &str) -> Result<(), RuntimeError> {
        self.check_up()?;
        self.images().remove(image);
        Ok(())
    }

    fn home_volume(&self, owner: &str, template: &str) -> String {
        super::home_volume_name("fake", owner, template)
    }

    async fn ensure_home(&self, spec: &ContainerSpec) -> Result<Option<String>, RuntimeError> {
        self.check_up()?;
        Ok(self
            .volume_for(spec)?
            .filter(|(_, made)| *made)
            .and(spec.home.as_ref())
            .map(|home| home.volume.clone()))
    }

    async fn homes(&self) -> Result<Vec<ManagedHome>, RuntimeError> {
        self.check_up()?;
        Ok(self
            .volumes()
            .iter()
            .map(|(name, volume)| ManagedHome {
                volume: name.clone(),
                owner: volume.owner.clone(),
                template: volume.template.clone(),
                size_mb: volume.size_mb,
                created_at: volume.created_at,
            })
            .collect())
    }

    async fn remove_home(&self, volume: &str) -> Result<(), RuntimeError> {
        self.check_up()?;
        let mounted = self
            .lock()
            .values()
            .any(|c| c.spec.home.as_ref().is_some_and(|h| h.volume == volume));
        if mounted {
            return Err(RuntimeError::InUse(format!("volume {volume} is in use")));
        }
        self.volumes().remove(volume);
        Ok(())
    }

    async fn snapshots(&self) -> Result<Vec<ManagedSnapshot>, RuntimeError> {
        self.check_up()?;
        Ok(self
            .images()
            .iter()
            .map(|(image, fake)| ManagedSnapshot {
                image: image.clone(),
                session_id: fake.session_id.clone(),
            })
            .collect())
    }
}

/// What the files of a directory tree hold.
fn tree_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        bytes += if entry.file_type()?.is_dir() {
            tree_bytes(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(bytes)
}

/// Whether two directory trees hold the same names and contents (files and directories only).
fn same_tree(a: &std::path::Path, b: &std::path::Path) -> std::io::Result<bool> {
    let entries = |dir: &std::path::Path| -> std::io::Result<std::collections::BTreeMap<_, _>> {
        std::fs::read_dir(dir)?
            .map(|entry| {
                let entry = entry?;
                Ok((
                    entry.file_name(),
                    (entry.path(), entry.file_type()?.is_dir()),
                ))
            })
            .collect()
    };
    let (left, right) = (entries(a)?, entries(b)?);
    if !left.keys().eq(right.keys()) {
        return Ok(false);
    }
    for ((path, is_dir), (other, other_is_dir)) in left.values().zip(right.values()) {
        let same = match (is_dir, other_is_dir) {
            (true, true) => same_tree(path, other)?,
            (false, false) => std::fs::read(path)? == std::fs::read(other)?,
            _ => false,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies a directory tree, files and directories only (what the fake's homes hold).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The bytes of every file under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => bytes_under(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

//! An in-process [`Runtime`] for fast tests. "Starting" a container serves the real agent
//! router on a loopback port, so the control plane's readiness check runs for real.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use berth_agent::AgentConfig;
use berth_proto::agent::SECRET_ENV;
use tokio::task::JoinHandle;

use super::{ContainerSpec, ManagedContainer, Runtime, RuntimeError};

#[derive(Debug)]
struct FakeContainer {
    spec: ContainerSpec,
    agent: Option<JoinHandle<()>>,
    /// The container's `/home/user`.
    home: tempfile::TempDir,
}

#[derive(Debug, Default)]
pub struct FakeRuntime {
    containers: Mutex<HashMap<String, FakeContainer>>,
    next_id: AtomicU64,
    /// While set, every call fails as if the engine were unreachable.
    pub down: AtomicBool,
    /// Delay before `start` returns, to hold sessions in `creating`.
    pub start_delay: Mutex<Duration>,
}

impl FakeRuntime {
    pub fn container_count(&self) -> usize {
        self.lock().len()
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

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.check_up()?;
        if spec.image.contains("missing") {
            return Err(RuntimeError::ImageMissing(spec.image.clone()));
        }
        let id = format!("fake{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        let home = tempfile::tempdir().map_err(|e| RuntimeError::Engine(e.to_string()))?;
        self.lock().insert(
            id.clone(),
            FakeContainer {
                spec: spec.clone(),
                agent: None,
                home,
            },
        );
        Ok(id)
    }

    async fn start(&self, container_id: &str) -> Result<SocketAddr, RuntimeError> {
        self.check_up()?;
        let delay = *self.start_delay.lock().unwrap_or_else(|p| p.into_inner());
        tokio::time::sleep(delay).await;
        let config = {
            let containers = self.lock();
            let container = containers
                .get(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.into()))?;
            AgentConfig {
                secret: container
                    .spec
                    .env
                    .get(SECRET_ENV)
                    .cloned()
                    .unwrap_or_default(),
                home: container.home.path().to_owned(),
                max_file_bytes: 1 << 30,
            }
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
            Some(container) => container.agent = Some(agent),
            None => agent.abort(),
        }
        Ok(addr)
    }

    async fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        self.check_up()?;
        if let Some(agent) = self.lock().remove(container_id).and_then(|c| c.agent) {
            agent.abort();
        }
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
}

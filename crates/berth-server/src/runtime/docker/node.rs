//! What the swarm runtime asks of one node's engine beyond [`Runtime`](super::Runtime): its
//! session subnets (for [`crate::reach`]), its images, and what its sessions hold of it.

use bollard::Docker;

use super::{DockerRuntime, RuntimeError, labels};
use crate::{
    config::DockerConfig,
    networks::{Cidr, SessionNetworks},
};

impl DockerRuntime {
    /// A runtime on an engine reached by `engine` (a node's, through its relay) rather than by
    /// `docker.host`.
    pub(in crate::runtime) fn on_engine(
        config: DockerConfig,
        networks: SessionNetworks,
        engine: Docker,
    ) -> Self {
        Self {
            engine: Some(engine),
            ..Self::new(config, networks)
        }
    }

    /// The subnets of the session networks on this engine, every shard's, as its IPAM reports
    /// them.
    pub(in crate::runtime) async fn session_subnets(&self) -> Result<Vec<Cidr>, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let networks = self
                .call("list_networks", docker.list_networks(None))
                .await?;
            Ok(networks
                .into_iter()
                .filter(|network| {
                    network
                        .name
                        .as_deref()
                        .is_some_and(|name| self.networks.is_session_network(name))
                })
                .flat_map(|network| {
                    network
                        .ipam
                        .and_then(|ipam| ipam.config)
                        .unwrap_or_default()
                })
                .filter_map(|config| config.subnet?.parse::<Cidr>().ok())
                .collect())
        })
        .await
    }

    /// Whether the engine holds `image`.
    pub(in crate::runtime) async fn has_image(&self, image: &str) -> Result<bool, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            match self
                .call("inspect_image", docker.inspect_image(image))
                .await
            {
                Ok(_) => Ok(true),
                Err(RuntimeError::NotFound(_)) => Ok(false),
                Err(err) => Err(err),
            }
        })
        .await
    }

    /// What this instance's containers on the engine hold of it, running or not (a stopped
    /// one may start again).
    pub(in crate::runtime) async fn load(&self) -> Result<NodeLoad, RuntimeError> {
        self.within(async {
            let containers = self.instance_containers().await?;
            Ok(NodeLoad {
                promised_bytes: containers
                    .iter()
                    .filter_map(|c| c.labels.as_ref()?.get(labels::MEMORY)?.parse::<i64>().ok())
                    .sum(),
                containers: containers.len(),
            })
        })
        .await
    }
}

/// [`DockerRuntime::load`]'s answer.
#[derive(Debug, Clone, Copy, Default)]
pub(in crate::runtime) struct NodeLoad {
    /// The memory limits of the containers, in bytes.
    pub promised_bytes: i64,
    pub containers: usize,
}

//! What the swarm runtime asks of one node's engine beyond [`Runtime`](super::Runtime): its
//! session subnets (for [`crate::reach`]), its images, and what its sessions hold of its memory.

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

    /// The subnets of the session networks on this engine, as its IPAM reports them.
    pub(in crate::runtime) async fn session_subnets(&self) -> Result<Vec<Cidr>, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let mut subnets = Vec::new();
            for network in self.networks.iter() {
                let inspected = self
                    .call(
                        "inspect_network",
                        docker.inspect_network(&network.name, None),
                    )
                    .await?;
                subnets.extend(
                    inspected
                        .ipam
                        .and_then(|ipam| ipam.config)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|config| config.subnet?.parse::<Cidr>().ok()),
                );
            }
            Ok(subnets)
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

    /// The memory limits of this instance's containers on the engine, running or not (a
    /// stopped one may start again), in bytes.
    pub(in crate::runtime) async fn promised_memory(&self) -> Result<i64, RuntimeError> {
        self.within(async {
            Ok(self
                .instance_containers()
                .await?
                .iter()
                .filter_map(|c| c.labels.as_ref()?.get(labels::MEMORY)?.parse::<i64>().ok())
                .sum())
        })
        .await
    }
}

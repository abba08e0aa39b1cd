//! A session's Docker children (containers, images, volumes and networks it made through its
//! Docker API, `crate::docker_api`): removed with it, stopped while it sleeps and started when
//! it wakes (its new container joining its networks again), and found by the sweep that
//! removes those of ended sessions.

use std::time::Duration;

use bollard::{
    models::{NetworkConnectRequest, NetworkDisconnectRequest},
    query_parameters::{
        ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
        ListVolumesOptionsBuilder, RemoveImageOptionsBuilder, RemoveVolumeOptionsBuilder,
    },
};

use super::DockerRuntime;
use crate::runtime::{Runtime, RuntimeError, labels};

/// How long a session's Docker children get to stop when it hibernates.
const CHILD_STOP_GRACE: Duration = Duration::from_secs(5);

impl DockerRuntime {
    pub(super) async fn session_remove_children(
        &self,
        session_id: &str,
    ) -> Result<(), RuntimeError> {
        // Not `within`: a session may hold many children, each removal one call under the
        // deadline.
        let docker = self.docker().await?;
        let filters = self.children_filter(Some(session_id));
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .call("list_containers", docker.list_containers(Some(options)))
            .await?;
        for id in containers.into_iter().filter_map(|c| c.id) {
            self.remove(&id).await?;
        }
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let images = self
            .call("list_images", docker.list_images(Some(options)))
            .await?;
        if let Some(record) = self.hibernated_children(session_id) {
            let _ = std::fs::remove_file(record);
        }
        // Networks once their containers are gone, the session's own container leaving first
        // (it may still be there: its removal comes after its children's).
        for network in self.session_networks(session_id).await? {
            let leave = NetworkDisconnectRequest {
                container: crate::runtime::container_name(session_id),
                force: Some(true),
            };
            let _ = self
                .call(
                    "disconnect_network",
                    docker.disconnect_network(&network, leave),
                )
                .await;
            match self
                .call("remove_network", docker.remove_network(&network))
                .await
            {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        // Volumes once their containers are gone: a volume in use cannot be removed.
        let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let volumes = self
            .call("list_volumes", docker.list_volumes(Some(options)))
            .await?;
        for volume in volumes.volumes.unwrap_or_default() {
            let options = RemoveVolumeOptionsBuilder::new().force(true).build();
            match self
                .call(
                    "remove_volume",
                    docker.remove_volume(&volume.name, Some(options)),
                )
                .await
            {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        for image in images {
            let options = RemoveImageOptionsBuilder::new().force(true).build();
            match self
                .call(
                    "remove_image",
                    docker.remove_image(&image.id, Some(options), None),
                )
                .await
            {
                Ok(_) | Err(RuntimeError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        // Empty once its container and children are gone; kept (for the sweep) otherwise.
        if let Some(budgets) = self.budgets().await {
            budgets.remove(session_id);
        }
        Ok(())
    }

    pub(super) async fn session_stop_children(&self, session_id: &str) -> Result<(), RuntimeError> {
        let Some(record) = self.hibernated_children(session_id) else {
            return Ok(());
        };
        let docker = self.docker().await?;
        let mut filters = self.children_filter(Some(session_id));
        filters.insert("status".to_owned(), vec!["running".to_owned()]);
        let options = ListContainersOptionsBuilder::new()
            .filters(&filters)
            .build();
        let running: Vec<String> = self
            .call("list_containers", docker.list_containers(Some(options)))
            .await?
            .into_iter()
            .filter_map(|c| c.id)
            .collect();
        // Written first, added to what an earlier attempt wrote: a stop that fails half-way
        // still starts again what it stopped.
        if running.is_empty() {
            return Ok(());
        }
        let mut ids = read_ids(&record);
        ids.extend(running.iter().cloned());
        ids.sort();
        ids.dedup();
        write_ids(&record, &ids)?;
        // All at once: each may take the whole grace.
        let stops = running.iter().map(|id| self.stop(id, CHILD_STOP_GRACE));
        futures_util::future::join_all(stops)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    pub(super) async fn session_start_children(
        &self,
        session_id: &str,
    ) -> Result<(), RuntimeError> {
        let Some(record) = self.hibernated_children(session_id) else {
            return Ok(());
        };
        // The session's container is a new one after a hibernation: it joins its networks
        // again, so it reaches its children (and their published ports) as before.
        let docker = self.docker().await?;
        for network in self.session_networks(session_id).await? {
            let join = NetworkConnectRequest {
                container: crate::runtime::container_name(session_id),
                endpoint_config: None,
            };
            match self
                .call("connect_network", docker.connect_network(&network, join))
                .await
            {
                Ok(()) => {}
                Err(RuntimeError::Engine(message)) if message.contains("already exists") => {}
                Err(err) => return Err(err),
            }
        }
        let ids = read_ids(&record);
        if ids.is_empty() {
            return Ok(());
        }
        for id in &ids {
            match self
                .call("start_container", docker.start_container(id, None))
                .await
            {
                // Removed meanwhile, or started by someone: nothing to do.
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let _ = std::fs::remove_file(&record);
        Ok(())
    }

    pub(super) async fn child_owners_of_sessions(
        &self,
    ) -> Result<std::collections::BTreeSet<String>, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let filters = self.children_filter(None);
            let options = ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build();
            let containers = self
                .call("list_containers", docker.list_containers(Some(options)))
                .await?;
            let options = ListImagesOptionsBuilder::new().filters(&filters).build();
            let images = self
                .call("list_images", docker.list_images(Some(options)))
                .await?;
            let from_containers = containers
                .into_iter()
                .filter_map(|c| c.labels?.remove(labels::PARENT));
            let from_images = images
                .into_iter()
                .filter_map(|mut i| i.labels.remove(labels::PARENT));
            let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
            let volumes = self
                .call("list_volumes", docker.list_volumes(Some(options)))
                .await?;
            let from_volumes = volumes
                .volumes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|mut v| v.labels.remove(labels::PARENT));
            let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
            let networks = self
                .call("list_networks", docker.list_networks(Some(options)))
                .await?;
            let from_networks = networks
                .into_iter()
                .filter_map(|n| n.labels?.remove(labels::PARENT));
            let with_budget = match self.budgets().await {
                Some(budgets) => budgets.sessions(),
                None => Vec::new(),
            };
            Ok(from_containers
                .chain(from_images)
                .chain(from_volumes)
                .chain(from_networks)
                .chain(with_budget)
                .collect())
        })
        .await
    }

    /// The names of the networks a session made (its default one included).
    async fn session_networks(&self, session_id: &str) -> Result<Vec<String>, RuntimeError> {
        let docker = self.docker().await?;
        let filters = self.children_filter(Some(session_id));
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let networks = self
            .call("list_networks", docker.list_networks(Some(options)))
            .await?;
        Ok(networks.into_iter().filter_map(|n| n.name).collect())
    }
}

fn read_ids(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_ids(path: &std::path::Path, ids: &[String]) -> Result<(), RuntimeError> {
    let write = || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, ids.join("\n"))
    };
    write().map_err(|e| RuntimeError::Engine(format!("cannot write {}: {e}", path.display())))
}

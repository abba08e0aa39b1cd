//! Compacting a snapshot: its own layers (one per hibernation) folded into one, on top of the
//! same template image, whose layers every session keeps sharing.
//!
//! The engine offers no such operation, so it is made of three it does offer: a container of
//! the template image that is never started takes, in its upper directory, the snapshot's own
//! overlay layers merged ([`super::overlay`]); committing it makes the image. That needs the
//! engine's `overlay2` storage on this host (the control plane runs beside its engine); where
//! it is not, compaction answers an error saying so and the snapshot stays as deep as it is.

use std::{collections::HashMap, path::PathBuf};

use bollard::{
    models::{ContainerConfig, ContainerCreateBody, HostConfig},
    query_parameters::{CommitContainerOptions, CreateContainerOptions},
};

use super::{DockerRuntime, overlay, within_transfer};
use crate::runtime::{Runtime, RuntimeError, SnapshotDepth};

/// The comment of every snapshot commit: the image's history tells its own layers from its
/// template's by it.
pub(super) const SNAPSHOT_COMMENT: &str = "berth snapshot";

impl DockerRuntime {
    /// The history of `image`, newest first: what of it is snapshots' own, and the id of the
    /// image below.
    pub(super) async fn snapshot_lineage(
        &self,
        image: &str,
    ) -> Result<(SnapshotDepth, String), RuntimeError> {
        let docker = self.docker().await?;
        let history = self
            .call("image_history", docker.image_history(image))
            .await?;
        let own: Vec<_> = history
            .iter()
            .take_while(|entry| entry.comment.starts_with(SNAPSHOT_COMMENT))
            .collect();
        let depth = SnapshotDepth {
            layers: own.len() as u32,
            bytes: own.iter().map(|entry| entry.size.max(0) as u64).sum(),
        };
        let base = history
            .get(own.len())
            .map(|entry| entry.id.clone())
            .unwrap_or_default();
        Ok((depth, base))
    }

    pub(super) async fn compact(&self, image: &str, target: &str) -> Result<(), RuntimeError> {
        within_transfer(format!("compacting {image}"), async {
            let (own, base) = self.snapshot_lineage(image).await?;
            if base.is_empty() || base == "<missing>" {
                return Err(RuntimeError::Engine(format!(
                    "{image} does not sit on an image of this engine's: it cannot be compacted"
                )));
            }
            let (layers, labels) = self.own_layers(image, own.layers as usize).await?;
            let docker = self.docker().await?;
            // Never started: it only lends its upper directory and its commit.
            let body = ContainerCreateBody {
                image: Some(base),
                labels,
                host_config: Some(HostConfig {
                    network_mode: Some("none".to_owned()),
                    ..HostConfig::default()
                }),
                ..ContainerCreateBody::default()
            };
            let container = self
                .call(
                    "create_container",
                    docker.create_container(None::<CreateContainerOptions>, body),
                )
                .await?
                .id;
            let made = self.fill_and_commit(&container, layers, target).await;
            if let Err(err) = self.remove(&container).await {
                tracing::warn!(%err, %container, "compaction container left for reconcile");
            }
            made
        })
        .await
    }

    /// The directories of `image`'s top `own` layers, lowest first, as its storage keeps
    /// them, and its labels.
    async fn own_layers(
        &self,
        image: &str,
        own: usize,
    ) -> Result<(Vec<PathBuf>, Option<HashMap<String, String>>), RuntimeError> {
        let docker = self.docker().await?;
        let inspected = self
            .call("inspect_image", docker.inspect_image(image))
            .await?;
        let labels = inspected.config.and_then(|config| config.labels);
        let driver = inspected.graph_driver.unwrap_or_default();
        let unsupported = |why: &str| {
            RuntimeError::Engine(format!(
                "compacting snapshots needs the engine's overlay2 storage on this host: {why}"
            ))
        };
        if driver.name != "overlay2" {
            return Err(unsupported(&format!("the engine uses {}", driver.name)));
        }
        // Top first: the image's own upper directory, then its lower ones.
        let mut dirs: Vec<PathBuf> = driver
            .data
            .get("UpperDir")
            .into_iter()
            .chain(driver.data.get("LowerDir"))
            .flat_map(|dirs| dirs.split(':'))
            .map(PathBuf::from)
            .collect();
        if dirs.len() < own {
            return Err(unsupported("the image has fewer layers than its history"));
        }
        dirs.truncate(own);
        if let Some(missing) = dirs.iter().find(|dir| !dir.is_dir()) {
            return Err(unsupported(&format!("{} is not here", missing.display())));
        }
        dirs.reverse();
        Ok((dirs, labels))
    }

    async fn fill_and_commit(
        &self,
        container: &str,
        layers: Vec<PathBuf>,
        target: &str,
    ) -> Result<(), RuntimeError> {
        let docker = self.docker().await?;
        let inspected = self
            .call(
                "inspect_container",
                docker.inspect_container(container, None),
            )
            .await?;
        let upper = inspected
            .graph_driver
            .and_then(|mut driver| driver.data.remove("UpperDir"))
            .map(PathBuf::from)
            .ok_or_else(|| RuntimeError::Engine(format!("{container} has no upper directory")))?;
        tokio::task::spawn_blocking(move || overlay::merge_layers(&layers, &upper))
            .await
            .map_err(|err| err.to_string())
            .and_then(|merged| merged.map_err(|err| err.to_string()))
            .map_err(|err| RuntimeError::Engine(format!("merging layers: {err}")))?;
        let (repository, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
        let options = CommitContainerOptions {
            container: Some(container.to_owned()),
            repo: Some(repository.to_owned()),
            tag: Some(tag.to_owned()),
            comment: Some(format!("{SNAPSHOT_COMMENT} (compacted)")),
            pause: false,
            ..CommitContainerOptions::default()
        };
        self.call(
            "commit_container",
            docker.commit_container(options, ContainerConfig::default()),
        )
        .await
        .map(drop)
    }
}

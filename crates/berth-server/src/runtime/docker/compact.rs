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

use super::{COMMIT_DEADLINE, DockerRuntime, overlay, within_transfer};
use crate::runtime::{Runtime, RuntimeError, SnapshotDepth};

/// The comment of every snapshot commit, for people reading an image's history.
pub(super) const SNAPSHOT_COMMENT: &str = "berth snapshot";

impl DockerRuntime {
    /// What of `image` is its own above `base` (the session's template image): the layers past
    /// the template's, which must be the first of the image's. Counted from the images' root
    /// filesystems, not their histories: a pulled image has no local history ids, and a commit
    /// that changed nothing has a history entry but no layer.
    pub(super) async fn snapshot_lineage(
        &self,
        image: &str,
        base: &str,
    ) -> Result<SnapshotDepth, RuntimeError> {
        let docker = self.docker().await?;
        let (snapshot, template) = tokio::try_join!(
            self.call("inspect_image", docker.inspect_image(image)),
            self.call("inspect_image", docker.inspect_image(base)),
        )?;
        let layers = |inspected: &bollard::models::ImageInspect| {
            inspected
                .root_fs
                .as_ref()
                .and_then(|root| root.layers.clone())
                .unwrap_or_default()
        };
        let (own, shared) = (layers(&snapshot), layers(&template));
        if !own.starts_with(&shared) {
            return Err(RuntimeError::Engine(format!(
                "{image} does not sit on {base} as the engine has it now (was the template's image rebuilt?)"
            )));
        }
        Ok(SnapshotDepth {
            layers: (own.len() - shared.len()) as u32,
            bytes: (snapshot.size.unwrap_or(0) - template.size.unwrap_or(0)).max(0) as u64,
        })
    }

    pub(super) async fn compact(
        &self,
        image: &str,
        base: &str,
        target: &str,
    ) -> Result<(), RuntimeError> {
        within_transfer(format!("compacting {image}"), async {
            let own = self.snapshot_lineage(image, base).await?;
            let base = base.to_owned();
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
        let transfer = self.transfer_client().await?;
        let commit = transfer.commit_container(options, ContainerConfig::default());
        self.call_within("commit_container", COMMIT_DEADLINE, commit)
            .await
            .map(drop)
    }
}

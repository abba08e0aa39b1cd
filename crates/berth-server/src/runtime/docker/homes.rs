//! Persistent homes: a named volume per user and template, labelled so the engine alone says
//! whose each is, mounted on `/home/user` of every container made for one of their sessions.

use std::{collections::HashMap, sync::atomic::Ordering};

use bollard::{
    models::{
        Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig, Volume,
        VolumeCreateRequest,
    },
    query_parameters::{ListVolumesOptionsBuilder, RemoveVolumeOptionsBuilder},
};

use super::DockerRuntime;
use crate::runtime::{ContainerSpec, HOME_DIR, HomeSpec, ManagedHome, RuntimeError, labels};

/// The local driver's option for a volume's size. It needs the engine's data root on XFS
/// mounted with project quotas (`pquota`); elsewhere the engine refuses the volume.
const SIZE_OPTION: &str = "size";

impl DockerRuntime {
    /// The labels and driver options a home's volume is made with: a size only while the
    /// engine has not refused one.
    fn home_volume_config(
        &self,
        spec: &ContainerSpec,
        home: &HomeSpec,
    ) -> (HashMap<String, String>, HashMap<String, String>) {
        let mut volume_labels = HashMap::from([
            (labels::INSTANCE.to_owned(), self.config.instance.clone()),
            (labels::HOME.to_owned(), "true".to_owned()),
            (labels::OWNER.to_owned(), spec.owner.clone()),
            (labels::TEMPLATE.to_owned(), spec.template.clone()),
        ]);
        let mut options = HashMap::new();
        if let Some(size_mb) = home.size_mb
            && !self.no_volume_quota.load(Ordering::Relaxed)
        {
            options.insert(SIZE_OPTION.to_owned(), format!("{size_mb}m"));
            volume_labels.insert(labels::HOME_SIZE_MB.to_owned(), size_mb.to_string());
        }
        (volume_labels, options)
    }

    /// The mount of `spec`'s home, when it has one. It names the volume's labels and options
    /// too, so a volume removed between [`Self::make_home`] and the create comes back as a
    /// home, listed and owned, not as an anonymous volume.
    pub(super) fn home_mount(&self, spec: &ContainerSpec) -> Option<Mount> {
        let home = spec.home.as_ref()?;
        let (volume_labels, options) = self.home_volume_config(spec, home);
        Some(Mount {
            target: Some(HOME_DIR.to_owned()),
            source: Some(home.volume.clone()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                // The engine copies the image's home (its files and their owners) into the
                // volume while the volume is empty: a new home starts as the template's.
                no_copy: Some(false),
                labels: Some(volume_labels),
                driver_config: (!options.is_empty()).then_some(MountVolumeOptionsDriverConfig {
                    name: None,
                    options: Some(options),
                }),
                ..MountVolumeOptions::default()
            }),
            ..Mount::default()
        })
    }

    pub(super) async fn make_home(
        &self,
        spec: &ContainerSpec,
    ) -> Result<Option<String>, RuntimeError> {
        let Some(home) = &spec.home else {
            return Ok(None);
        };
        self.within(async {
            let docker = self.docker().await?;
            match self
                .call("inspect_volume", docker.inspect_volume(&home.volume))
                .await
            {
                Ok(_) => return Ok(None),
                Err(RuntimeError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
            let create = |(volume_labels, options): (HashMap<_, _>, HashMap<_, _>)| {
                docker.create_volume(VolumeCreateRequest {
                    name: Some(home.volume.clone()),
                    driver: Some("local".to_owned()),
                    driver_opts: Some(options),
                    labels: Some(volume_labels),
                    ..VolumeCreateRequest::default()
                })
            };
            let config = self.home_volume_config(spec, home);
            let sized = config.1.contains_key(SIZE_OPTION);
            match self.call("create_volume", create(config)).await {
                Ok(_) => {}
                Err(RuntimeError::Engine(msg)) if sized && msg.contains("quota") => {
                    if !self.no_volume_quota.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            engine = %msg,
                            "this engine cannot limit a volume's size (it needs its data root on \
                             XFS with project quotas): persistent homes are made without \
                             home_size_mb's limit"
                        );
                    }
                    let config = self.home_volume_config(spec, home);
                    self.call("create_volume", create(config)).await?;
                }
                Err(err) => return Err(err),
            }
            Ok(Some(home.volume.clone()))
        })
        .await
    }

    pub(super) async fn home_volumes(&self) -> Result<Vec<ManagedHome>, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let filters = HashMap::from([(
                "label".to_owned(),
                vec![
                    format!("{}={}", labels::INSTANCE, self.config.instance),
                    labels::HOME.to_owned(),
                ],
            )]);
            let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
            let listed = self
                .call("list_volumes", docker.list_volumes(Some(options)))
                .await?;
            Ok(listed
                .volumes
                .unwrap_or_default()
                .into_iter()
                .filter_map(managed_home)
                .collect())
        })
        .await
    }

    pub(super) async fn remove_home_volume(&self, volume: &str) -> Result<(), RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let options = RemoveVolumeOptionsBuilder::new().force(false).build();
            match self
                .call("remove_volume", docker.remove_volume(volume, Some(options)))
                .await
            {
                Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
                // The engine's 409: a container, running or not, still mounts it.
                Err(RuntimeError::Engine(msg)) if msg.contains("in use") => Err(
                    RuntimeError::InUse(format!("volume {volume} is in use by a container: {msg}")),
                ),
                Err(err) => Err(err),
            }
        })
        .await
    }
}

/// A listed volume as a home, when its labels say whose.
fn managed_home(mut volume: Volume) -> Option<ManagedHome> {
    let created_at = volume
        .created_at
        .as_deref()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .map_or_else(chrono::Utc::now, |at| at.with_timezone(&chrono::Utc));
    Some(ManagedHome {
        owner: volume.labels.remove(labels::OWNER)?,
        template: volume.labels.remove(labels::TEMPLATE)?,
        size_mb: volume
            .labels
            .get(labels::HOME_SIZE_MB)
            .and_then(|size| size.parse().ok()),
        created_at,
        volume: volume.name,
    })
}

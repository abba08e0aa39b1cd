//! A session's disk: the size limit of its container's writable layer where the engine can set
//! one, and what the layer holds, for the disk watchdog where it cannot.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU8, Ordering},
};

use bollard::query_parameters::InspectContainerOptionsBuilder;

use super::DockerRuntime;
use crate::runtime::{ContainerSpec, RuntimeError};

/// Whether this engine limits a container's writable layer (`--storage-opt size`): 0 while
/// unknown, then [`YES`] or [`NO`].
#[derive(Debug, Default)]
pub(super) struct LayerQuota(AtomicU8);

const YES: u8 = 1;
const NO: u8 = 2;

impl LayerQuota {
    /// Known to hold only after a create with a limit succeeded: until then the watchdog
    /// measures, which costs little and misses nothing.
    pub(super) fn enforced(&self) -> bool {
        self.0.load(Ordering::Relaxed) == YES
    }

    fn worth_trying(&self) -> bool {
        self.0.load(Ordering::Relaxed) != NO
    }

    /// What `docker info` says of the storage: overlay2 sets a size only on XFS (mounted with
    /// `pquota`, which `info` does not show: a create finds out), and most hosts are not, so
    /// they never send a create bound to fail.
    pub(super) fn learn_from_info(&self, driver: &str, driver_status: &[Vec<String>]) {
        let backing = driver_status
            .iter()
            .find(|pair| pair.first().is_some_and(|key| key == "Backing Filesystem"))
            .and_then(|pair| pair.get(1));
        let cannot = match driver {
            "overlay2" => backing.is_some_and(|fs| fs != "xfs"),
            // btrfs, zfs and the Windows and devicemapper drivers can; vfs and the others
            // cannot.
            "btrfs" | "zfs" | "devicemapper" | "windowsfilter" => false,
            _ => true,
        };
        if cannot {
            self.refused(&format!("the {driver} storage driver here sets no size"));
        }
    }

    fn refused(&self, why: &str) {
        if self.0.swap(NO, Ordering::Relaxed) != NO {
            tracing::info!(
                why,
                "this engine cannot limit a container's disk: templates' disk_mb is kept by the \
                 disk watchdog (lifecycle.disk_check_seconds), which stops a session past it"
            );
        }
    }
}

/// The engine's answer when it cannot set a container's size.
fn refuses_size(err: &RuntimeError) -> bool {
    matches!(err, RuntimeError::Engine(msg)
        if msg.contains("storage-opt") || msg.contains("storage opt"))
}

impl DockerRuntime {
    /// The `StorageOpt` of `spec`'s container, when it has a limit this engine may enforce.
    pub(super) fn storage_opt(&self, spec: &ContainerSpec) -> Option<HashMap<String, String>> {
        let size_mb = spec.disk_mb.filter(|_| self.layer_quota.worth_trying())?;
        Some(HashMap::from([("size".to_owned(), format!("{size_mb}M"))]))
    }

    /// Learns from a create whether the engine took `storage_opt`'s limit; `true` when it
    /// refused it, and the create should be made again without.
    pub(super) fn retry_without_size(
        &self,
        sized: bool,
        created: &Result<String, RuntimeError>,
    ) -> bool {
        match created {
            Ok(_) if sized => {
                self.layer_quota.0.store(YES, Ordering::Relaxed);
                false
            }
            Err(err) if sized && refuses_size(err) => {
                self.layer_quota.refused(&err.to_string());
                true
            }
            _ => false,
        }
    }

    /// Bytes in `container_id`'s writable layer, or `None` when the engine no longer has it.
    /// The engine walks the layer to count, so this is asked sparingly.
    pub(super) async fn layer_bytes(
        &self,
        container_id: &str,
    ) -> Result<Option<u64>, RuntimeError> {
        self.within(async {
            let docker = self.docker().await?;
            let options = InspectContainerOptionsBuilder::new().size(true).build();
            match self
                .call(
                    "inspect_container",
                    docker.inspect_container(container_id, Some(options)),
                )
                .await
            {
                Ok(inspected) => Ok(Some(
                    inspected
                        .size_rw
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                )),
                Err(RuntimeError::NotFound(_)) => Ok(None),
                Err(err) => Err(err),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(fs: &str) -> Vec<Vec<String>> {
        vec![vec!["Backing Filesystem".to_owned(), fs.to_owned()]]
    }

    #[test]
    fn overlay_on_anything_but_xfs_is_known_unable_before_any_create() {
        let quota = LayerQuota::default();
        quota.learn_from_info("overlay2", &status("extfs"));
        assert!(!quota.worth_trying());
        let quota = LayerQuota::default();
        quota.learn_from_info("overlay2", &status("xfs"));
        assert!(quota.worth_trying());
        assert!(!quota.enforced(), "only a create proves pquota");
        let quota = LayerQuota::default();
        quota.learn_from_info("vfs", &[]);
        assert!(!quota.worth_trying());
    }

    #[test]
    fn the_engines_refusal_is_recognised() {
        let refusal = RuntimeError::Engine(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
                .to_owned(),
        );
        assert!(refuses_size(&refusal));
        assert!(!refuses_size(&RuntimeError::Engine(
            "no such image".to_owned()
        )));
    }
}

//! Compaction: every hibernation adds a layer to a session's snapshot and the engine refuses
//! an image deeper than 125, so a hibernation whose snapshot has more layers of its own than
//! `snapshots.compact_after_layers` folds them into one before the session is asleep.
//!
//! It is part of the hibernation, not a task after it: a session woken at once (an idle
//! policy and a user who comes back) would otherwise always win the race, and its depth would
//! grow until a hibernation failed. It costs that one hibernation a copy of the session's
//! files, once every `compact_after_layers` hibernations.

use crate::runtime::Runtime;

use super::snapshot::snapshot_time;

/// What a hibernation made: the snapshot image, and how many layers were folded into one if
/// it was compacted.
#[derive(Debug)]
pub struct Slept {
    pub image: String,
    pub compacted: Option<u32>,
}

/// Compacts the snapshot `image` just committed on `base` (its template's image) if it has
/// more than `threshold` layers of its own. A compaction that fails leaves `image` as it is:
/// deep, but whole.
pub(super) async fn compact_if_deep(
    runtime: &dyn Runtime,
    image: String,
    base: &str,
    threshold: u32,
) -> Slept {
    let depth = match runtime.snapshot_depth(&image, base).await {
        Ok(depth) => depth,
        Err(err) => {
            tracing::warn!(%err, %image, "could not read the snapshot's depth; not compacting it this time");
            return Slept {
                image,
                compacted: None,
            };
        }
    };
    crate::metrics::snapshot_committed(depth.bytes);
    let layers = depth.layers;
    if layers <= threshold {
        return Slept {
            image,
            compacted: None,
        };
    }
    // One millisecond later than the image it replaces: still the newest, never the same name.
    let (repository, _) = image.rsplit_once(':').unwrap_or((&image, ""));
    let millis = snapshot_time(&image).map_or(0, |at| at.timestamp_millis()) + 1;
    let target = format!("{repository}:{millis}");
    match runtime.compact_snapshot(&image, base, &target).await {
        Ok(()) => {
            if let Err(err) = runtime.remove_snapshot(&image).await {
                tracing::warn!(%err, %image, "could not remove; reconcile retries");
            }
            Slept {
                image: target,
                compacted: Some(layers),
            }
        }
        Err(err) => {
            tracing::warn!(%err, %image, layers, "compaction failed; the snapshot stays as deep as it is and the next hibernation tries again");
            Slept {
                image,
                compacted: None,
            }
        }
    }
}

//! The disk watchdog, for engines that cannot limit a container's writable layer (overlay2
//! off XFS, most hosts): while this instance leads, every `lifecycle.disk_check_seconds` it
//! measures each running session whose template has a `disk_mb`, off the actor, and hands the
//! figures to the actor, which warns at 90% and stops a session past its limit
//! (`disk_quota`). Stopping returns the space at once: the container goes with its layer.
//! Between two looks a session can write past its limit by what it writes in that time.

use std::time::Duration;

use berth_proto::SessionState;
use futures_util::StreamExt;

use super::{Command, SessionManager};
use crate::store::{SessionFilter, SessionRecord};

/// Containers measured at once: the engine walks each one's layer.
const MEASURED_AT_ONCE: usize = 4;

/// One look at a running session's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUse {
    pub session_id: String,
    pub container_id: String,
    pub bytes: u64,
}

impl SessionManager {
    /// Measures running sessions' disks every `every` while this instance leads and the
    /// engine does not limit them itself, until aborted.
    pub fn watch_disks(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        self.every_while_leading(every, |manager| async move {
            if manager.runtime.limits_disk() {
                return true;
            }
            let measured = manager.measure_disks().await;
            match manager.here() {
                Some(actor) => actor
                    .send(Command::DisksMeasured { measured })
                    .await
                    .is_ok(),
                None => true,
            }
        })
    }

    async fn measure_disks(&self) -> Vec<DiskUse> {
        let running = SessionFilter {
            states: Some(vec![SessionState::Running]),
            ..SessionFilter::default()
        };
        let Ok(sessions) = self.store.list_sessions(&running).await else {
            return Vec::new();
        };
        let limited = sessions.into_iter().filter_map(|record| {
            let limited = self
                .ctx
                .templates
                .get(&record.template)
                .is_some_and(|template| template.disk_mb > 0);
            Some((record.id, record.container_id.filter(|_| limited)?))
        });
        futures_util::stream::iter(limited)
            .map(|(session_id, container_id)| async move {
                match self.runtime.disk_used(&container_id).await {
                    Ok(Some(bytes)) => Some(DiskUse {
                        session_id,
                        container_id,
                        bytes,
                    }),
                    Ok(None) => None,
                    Err(err) => {
                        tracing::debug!(session = %session_id, %err, "disk not measured");
                        None
                    }
                }
            })
            .buffer_unordered(MEASURED_AT_ONCE)
            .filter_map(std::future::ready)
            .collect()
            .await
    }
}

impl SessionManager {
    /// Bytes `caller` may still write into session `id` before its template's `disk_mb`, where
    /// the watchdog keeps that limit; `None` when nothing is known to stop a write (no limit,
    /// the engine enforces it itself, the session is not the caller's or not running, or the
    /// engine could not say).
    pub async fn disk_room(&self, caller: &crate::auth::Principal, id: &str) -> Option<u64> {
        let record = self.store.get_session(id).await.ok()??;
        if !(caller.admin || record.owner == caller.name) {
            return None;
        }
        self.room_of(record).await
    }

    /// [`Self::disk_room`] for a session whose caller is known to reach it already (through
    /// [`crate::api::session_agent::SessionAgent`]).
    pub async fn disk_room_reached(&self, id: &str) -> Option<u64> {
        self.room_of(self.store.get_session(id).await.ok()??).await
    }

    async fn room_of(&self, record: SessionRecord) -> Option<u64> {
        if self.runtime.limits_disk() || record.state != SessionState::Running {
            return None;
        }
        let limit_mb = self.ctx.templates.get(&record.template)?.disk_mb;
        if limit_mb == 0 {
            return None;
        }
        let used = self
            .runtime
            .disk_used(record.container_id.as_deref()?)
            .await
            .ok()??;
        Some(limit_mb.saturating_mul(1024 * 1024).saturating_sub(used))
    }
}

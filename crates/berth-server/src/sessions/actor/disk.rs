//! What the actor makes of the disk watchdog's figures ([`crate::sessions::disk`]).

use berth_proto::{SessionState, ports::SessionEvent};

use super::Actor;
use crate::sessions::disk::DiskUse;

const MIB: u64 = 1024 * 1024;

impl Actor {
    /// Warns a session that reached 90% of its `disk_mb` (once, until it is back under 80%),
    /// and stops one past it.
    pub(super) async fn disks_measured(&mut self, measured: Vec<DiskUse>) {
        self.disk_warned
            .retain(|id| measured.iter().any(|m| m.session_id == *id));
        for DiskUse {
            session_id: id,
            container_id,
            bytes,
        } in measured
        {
            if self.in_flight(&id) || self.restarting.contains(&id) {
                continue;
            }
            let record = match self.ctx.store.get_session(&id).await {
                Ok(Some(record))
                    if record.state == SessionState::Running
                        && record.container_id.as_deref() == Some(container_id.as_str()) =>
                {
                    record
                }
                _ => continue,
            };
            let Ok(limit_mb) = self.template(&record.template).map(|t| t.disk_mb) else {
                continue;
            };
            let limit = limit_mb.saturating_mul(MIB);
            let used_mb = bytes / MIB;
            if limit == 0 {
                continue;
            }
            if bytes > limit {
                tracing::warn!(session = %id, used_mb, limit_mb, "past its disk limit: stopping it");
                self.disk_warned.remove(&id);
                let message = format!(
                    "stopped: its files took {used_mb} MiB, past the template's disk_mb of {limit_mb}"
                );
                self.record_event(&id, "disk_quota", &message).await;
                let mut record = record;
                record.stop_reason = Some("disk_quota".to_owned());
                self.begin_removal(record, Vec::new()).await;
            } else if bytes >= limit / 10 * 9 {
                if self.disk_warned.insert(id.clone()) {
                    tracing::info!(session = %id, used_mb, limit_mb, "disk warning");
                    self.ctx
                        .activity
                        .notify(&id, SessionEvent::DiskWarning { used_mb, limit_mb });
                    let detail = serde_json::json!({ "used_mb": used_mb, "limit_mb": limit_mb });
                    self.ctx
                        .webhooks
                        .announce("session.disk_warning", &record, detail);
                }
            } else if bytes < limit / 10 * 8 {
                self.disk_warned.remove(&id);
            }
        }
    }
}

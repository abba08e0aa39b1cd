//! Named snapshots of running sessions, to fork new sessions from. They are not session state
//! (the actor does not move them): a snapshot's row is written before its image is committed,
//! as a session's row precedes its container, so reconcile never mistakes a fresh image for an
//! orphan; a failed commit deletes the row again.

use std::time::Instant;

use berth_proto::{SessionState, snapshot::Snapshot};
use chrono::Utc;

use super::{SessionError, SessionManager};
use crate::{auth::Principal, cluster::Call, ids, store::SnapshotRecord};

/// Where every snapshot image lives in the engine's image store: hibernations and checkpoints
/// tagged with their commit time, named snapshots with their own id.
pub(super) const SNAPSHOT_REPOSITORY: &str = "berth-snapshot";

/// The repository of hibernations' and checkpoints' images: in `registry` when there is one.
pub fn snapshot_repository(registry: Option<&str>) -> String {
    match registry {
        Some(registry) => format!("{registry}/{SNAPSHOT_REPOSITORY}"),
        None => SNAPSHOT_REPOSITORY.to_owned(),
    }
}
const MAX_NAME: usize = 64;

impl SessionManager {
    /// Copies a running session's files into a named snapshot, pausing it for the copy.
    pub async fn create_snapshot(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<Snapshot, SessionError> {
        self.call(Call::CreateSnapshot {
            caller: caller.clone(),
            session_id: session_id.to_owned(),
            name: name.to_owned(),
        })
        .await?
        .snapshot()
    }

    /// [`Self::create_snapshot`] on the leading instance, whose writes the store accepts.
    pub(super) async fn snapshot_here(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<Snapshot, SessionError> {
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(SessionError::InvalidRequest(format!(
                "name must be 1 to {MAX_NAME} characters, none of them control characters"
            )));
        }
        let record = match self.store.get_session(session_id).await? {
            Some(record) if caller.may_access(&record.owner) => record,
            _ => return Err(SessionError::NotFound(session_id.to_owned())),
        };
        let (SessionState::Running, Some(container)) = (record.state, &record.container_id) else {
            return Err(SessionError::NotRunning {
                id: record.id,
                state: record.state,
                action: "snapshotted",
            });
        };
        self.engine.check()?;
        let id = ids::snapshot_id();
        let snapshot = SnapshotRecord {
            image: format!("{SNAPSHOT_REPOSITORY}/{session_id}:{id}"),
            id,
            session_id: record.id.clone(),
            owner: record.owner.clone(),
            name: name.to_owned(),
            created_at: Utc::now(),
        };
        self.store.insert_snapshot(&snapshot).await?;
        let started = Instant::now();
        if let Err(err) = self.runtime.commit(container, &snapshot.image, true).await {
            self.store.delete_snapshot(&snapshot.id).await?;
            return Err(err.into());
        }
        // The commit pauses the container for as long as it copies.
        let pause = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(Snapshot {
            pause_ms: Some(pause),
            ..self.sized(&snapshot, &record.template).await
        })
    }

    /// `snapshot` as the API shows it, with what its image holds above `template`'s.
    async fn sized(&self, snapshot: &SnapshotRecord, template: &str) -> Snapshot {
        let size_bytes = match self.ctx.templates.get(template) {
            Some(template) => self
                .runtime
                .snapshot_depth(&snapshot.image, &template.image)
                .await
                .ok()
                .map(|depth| depth.bytes),
            None => None,
        };
        Snapshot {
            size_bytes,
            ..snapshot.to_public()
        }
    }

    /// A session's named snapshots, oldest first, each with its size.
    pub async fn list_snapshots(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<Vec<Snapshot>, SessionError> {
        let session = self.get(caller, session_id).await?;
        let records = self.store.list_snapshots(Some(session_id)).await?;
        Ok(futures_util::future::join_all(
            records
                .iter()
                .map(|record| self.sized(record, &session.template)),
        )
        .await)
    }

    /// Deletes a named snapshot and its image. Sessions forked from it keep their files.
    pub async fn delete_snapshot(&self, caller: &Principal, id: &str) -> Result<(), SessionError> {
        self.call(Call::DeleteSnapshot {
            caller: caller.clone(),
            id: id.to_owned(),
        })
        .await?
        .done()
    }

    /// [`Self::delete_snapshot`] on the leading instance.
    pub(super) async fn delete_snapshot_here(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<(), SessionError> {
        let snapshot = match self.store.get_snapshot(id).await? {
            Some(snapshot) if caller.may_access(&snapshot.owner) => snapshot,
            _ => return Err(SessionError::NotFound(format!("snapshot {id}"))),
        };
        self.store.delete_snapshot(id).await?;
        // An image that will not go now is unclaimed: reconcile removes it.
        if let Err(err) = self.runtime.remove_snapshot(&snapshot.image).await {
            tracing::warn!(%err, image = %snapshot.image, "left for reconcile");
        }
        Ok(())
    }
}

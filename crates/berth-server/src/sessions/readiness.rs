//! An app inside a session saying it is ready (`POST /api/v1/self/ready`). Kept in the
//! platform's part of the session's state with the container it was said in: a wake or a
//! recovery (a new container) clears it without anyone having to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{SessionRecord, StateScope, Store, StoreError};

const KEY: &str = "ready";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub at: DateTime<Utc>,
    pub message: Option<String>,
    container_id: Option<String>,
}

impl Readiness {
    /// Records that the app in `session`'s current container is ready.
    pub async fn record(
        store: &dyn Store,
        session: &SessionRecord,
        message: Option<String>,
    ) -> Result<(), StoreError> {
        let readiness = Self {
            at: Utc::now(),
            message,
            container_id: session.container_id.clone(),
        };
        let json = serde_json::to_string(&readiness)
            .map_err(|err| StoreError::Corrupt(format!("readiness: {err}")))?;
        // One key in a scope of its own: never full.
        store
            .put_state(&StateScope::Platform(session.id.clone()), KEY, &json, 1)
            .await
            .map(drop)
    }

    /// What the app in `session`'s current container said, if it did.
    pub async fn of(
        store: &dyn Store,
        session: &SessionRecord,
    ) -> Result<Option<Self>, StoreError> {
        let Some(stored) = store
            .get_state(&StateScope::Platform(session.id.clone()), KEY)
            .await?
        else {
            return Ok(None);
        };
        let readiness: Self = serde_json::from_str(&stored.value)
            .map_err(|err| StoreError::Corrupt(format!("readiness of {}: {err}", session.id)))?;
        Ok((readiness.container_id == session.container_id).then_some(readiness))
    }
}

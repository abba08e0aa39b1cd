//! A [`Store`] that passes everything to a real one, except the faults a test switches on: for
//! tests of what the session manager does when its store fails or one of its commands panics.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use berth_proto::SessionState;

use super::{
    AttemptRecord, AuditFilter, DeliveryRecord, SessionEvent, SessionFilter, SessionRecord,
    SnapshotRecord, StateScope, StateValue, Store, StoreError, TokenRecord, UserRecord,
    WebhookRecord,
};

#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    /// While set, every session read and write fails as if the database were unreachable.
    pub unreachable: AtomicBool,
    /// Writing a session that carries this label panics, as a bug in a command would.
    pub panic_on_label: Mutex<Option<(String, String)>>,
}

impl<S: Store> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            unreachable: AtomicBool::new(false),
            panic_on_label: Mutex::new(None),
        }
    }

    fn check_write(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        let trigger = self
            .panic_on_label
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((key, value)) = trigger
            && sessions.iter().any(|s| s.labels.get(&key) == Some(&value))
        {
            panic!("injected fault: writing a session labelled {key}={value}");
        }
        self.check_reachable()
    }

    fn check_reachable(&self) -> Result<(), StoreError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "injected fault: unreachable".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.check_write(std::slice::from_ref(session))?;
        self.inner.insert_session(session).await
    }

    async fn update_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        self.check_write(sessions)?;
        self.inner.update_sessions(sessions).await
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.get_session(id).await
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.list_sessions(filter).await
    }

    async fn count_by_state(&self) -> Result<Vec<(SessionState, u64)>, StoreError> {
        self.check_reachable()?;
        self.inner.count_by_state().await
    }

    async fn prune_timelines(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.prune_timelines(before).await
    }

    async fn add_event(&self, event: &SessionEvent) -> Result<(), StoreError> {
        self.inner.add_event(event).await
    }

    async fn events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        self.inner.events(session_id).await
    }

    async fn insert_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.insert_snapshot(snapshot).await
    }

    async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.get_snapshot(id).await
    }

    async fn list_snapshots(
        &self,
        session_id: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.list_snapshots(session_id).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.delete_snapshot(id).await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.inner.insert_user(user).await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.user_by_token_hash(token_hash).await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.user_by_name(name).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.list_users().await
    }

    async fn update_user(
        &self,
        name: &str,
        change: &berth_proto::user::UpdateUser,
    ) -> Result<UserRecord, StoreError> {
        self.inner.update_user(name, change).await
    }

    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        self.check_reachable()?;
        self.inner.delete_user(name).await
    }

    async fn put_class(&self, class: &berth_proto::lab::Class) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.put_class(class).await
    }

    async fn get_class(&self, id: &str) -> Result<Option<berth_proto::lab::Class>, StoreError> {
        self.check_reachable()?;
        self.inner.get_class(id).await
    }

    async fn list_classes(&self) -> Result<Vec<berth_proto::lab::Class>, StoreError> {
        self.check_reachable()?;
        self.inner.list_classes().await
    }

    async fn delete_class(&self, id: &str) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.delete_class(id).await
    }

    async fn put_state(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
        max_keys: usize,
    ) -> Result<bool, StoreError> {
        self.check_reachable()?;
        self.inner.put_state(scope, key, value, max_keys).await
    }

    async fn insert_state(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.check_reachable()?;
        self.inner.insert_state(scope, key, value).await
    }

    async fn get_state(
        &self,
        scope: &StateScope,
        key: &str,
    ) -> Result<Option<StateValue>, StoreError> {
        self.check_reachable()?;
        self.inner.get_state(scope, key).await
    }

    async fn delete_state(&self, scope: &StateScope, key: &str) -> Result<bool, StoreError> {
        self.check_reachable()?;
        self.inner.delete_state(scope, key).await
    }

    async fn delete_state_if(
        &self,
        scope: &StateScope,
        key: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.check_reachable()?;
        self.inner.delete_state_if(scope, key, value).await
    }

    async fn list_state(
        &self,
        scope: &StateScope,
    ) -> Result<Vec<berth_proto::callback::StateKey>, StoreError> {
        self.check_reachable()?;
        self.inner.list_state(scope).await
    }

    async fn clear_state(&self, scope: &StateScope) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.clear_state(scope).await
    }

    async fn add_audit(
        &self,
        entries: &[berth_proto::audit::AuditEntry],
    ) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.add_audit(entries).await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<berth_proto::audit::AuditEntry>, StoreError> {
        self.check_reachable()?;
        self.inner.list_audit(filter).await
    }

    async fn prune_audit(&self, before: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.prune_audit(before).await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.put_token(token).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.token_by_hash(hash).await
    }

    async fn list_tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.list_tokens(owner).await
    }

    async fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        self.check_reachable()?;
        self.inner.delete_token(id).await
    }

    async fn touch_token(
        &self,
        id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.touch_token(id, at).await
    }

    async fn put_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.put_webhook(webhook).await
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.list_webhooks().await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        self.check_reachable()?;
        self.inner.delete_webhook(id).await
    }

    async fn put_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.put_delivery(delivery).await
    }

    async fn due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.due_deliveries(now, limit).await
    }

    async fn prune_deliveries(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.prune_deliveries(before).await
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.list_deliveries(webhook_id, limit).await
    }

    async fn put_attempt(&self, attempt: &AttemptRecord) -> Result<(), StoreError> {
        self.check_reachable()?;
        self.inner.put_attempt(attempt).await
    }

    async fn list_attempts(&self, owner: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        self.check_reachable()?;
        self.inner.list_attempts(owner).await
    }
}

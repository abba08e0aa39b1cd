//! Several control planes on one store: who leads lifecycle, and what every instance shares
//! besides the store's rows (single-use tickets, notices).
//!
//! [`Coordination`] is the seam. [`LocalCoordination`] serves one process (SQLite, the
//! embedded default: it always leads); the Redis store implements it for several instances.
//! Both pass the same [`contract`] tests.

mod call;
mod leadership;
mod local;
pub mod notices;
mod remote;

#[cfg(test)]
pub mod contract;

use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

pub use call::{Answer, Call, WireAnswer};
pub use leadership::Leadership;
pub use local::LocalCoordination;
pub use remote::{CALLS_PATH, KEY_HEADER, LeaderClient, cluster_key, key_matches};

use crate::store::StoreError;

/// Whether this instance serves, now, what one instance at a time may serve (sessions'
/// sockets in a host dir the instances share: the leader does).
#[derive(Clone)]
pub struct Serving(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl Serving {
    pub fn new(leads: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(leads))
    }

    pub fn now(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Serving").field(&self.now()).finish()
    }
}

/// The right to author lifecycle (creates, claims, hibernations, the reaper, reconcile) for
/// every instance on the store: one holder at a time, for a bounded time unless renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holding instance's id, new at every start.
    pub holder: String,
    /// Where the other instances reach the holder (`http://host:port`).
    pub address: String,
    /// Grows at every change of hands; the store refuses a fenced write from an older one.
    pub epoch: u64,
}

#[async_trait]
pub trait Coordination: Send + Sync + std::fmt::Debug + 'static {
    /// Takes the lease for `holder` when nobody holds it or it expired, or renews it for `ttl`
    /// when `holder` holds it already. Answers the lease as it stands afterwards: someone
    /// else's while they hold it. Each change of hands takes a new, larger epoch.
    async fn claim_lease(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Gives the lease up at once when `epoch` still holds it (a graceful stop); otherwise
    /// does nothing.
    async fn release_lease(&self, epoch: u64) -> Result<(), StoreError>;

    /// The unexpired lease, when someone holds it.
    async fn lease(&self) -> Result<Option<Lease>, StoreError>;

    /// From now on the store's session, event and snapshot writes made through this instance
    /// succeed only while `epoch` holds the lease (else `StoreError::Fenced`); `None` writes
    /// unchecked. A leader that lost its lease without noticing can then change nothing.
    fn fence(&self, epoch: Option<u64>);

    /// Keeps `value` under `ticket` for `ttl`, for one [`Coordination::take_ticket`] on any
    /// instance.
    async fn put_ticket(&self, ticket: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;

    /// The ticket's value, once: taking it removes it. An expired ticket is gone.
    async fn take_ticket(&self, ticket: &str) -> Result<Option<String>, StoreError>;

    /// Sends `message` to every subscriber on every instance, this one's included.
    async fn publish(&self, message: &str) -> Result<(), StoreError>;

    /// The messages published from now on. The stream ends when the store's connection does;
    /// the subscriber subscribes again.
    async fn subscribe(&self) -> Result<BoxStream<'static, String>, StoreError>;
}

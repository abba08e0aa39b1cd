//! Redis as every instance's [`Coordination`]: the lease is one hash with a TTL beside an
//! epoch counter that outlives it, tickets are keys with a TTL taken by GETDEL, notices go
//! through one pub/sub channel.

use std::{sync::atomic::Ordering, time::Duration};

use async_trait::async_trait;
use futures_util::{StreamExt, stream::BoxStream};

use super::{RedisStore, bounded, keys};
use crate::{
    cluster::{Coordination, Lease},
    store::StoreError,
};

fn ttl_ms(ttl: Duration) -> String {
    // Redis rejects a zero TTL; a lease or ticket lives at least a millisecond.
    ttl.as_millis().max(1).to_string()
}

fn lease_from(fields: [Option<String>; 3]) -> Result<Option<Lease>, StoreError> {
    match fields {
        [Some(holder), Some(address), Some(epoch)] => Ok(Some(Lease {
            holder,
            address,
            epoch: epoch
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("lease epoch {epoch:?}")))?,
        })),
        [None, None, None] => Ok(None),
        other => Err(StoreError::Corrupt(format!("lease {other:?}"))),
    }
}

#[async_trait]
impl Coordination for RedisStore {
    async fn claim_lease(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let reply: Vec<Option<String>> = self
            .script(
                &self.scripts.claim_lease,
                &[keys::LEASE, keys::LEASE_EPOCH],
                &[holder, address, &ttl_ms(ttl)],
            )
            .await?;
        let fields: [Option<String>; 3] = reply
            .try_into()
            .map_err(|reply| StoreError::Corrupt(format!("lease claim answered {reply:?}")))?;
        lease_from(fields)?.ok_or_else(|| StoreError::Corrupt("lease claim answered none".into()))
    }

    async fn release_lease(&self, epoch: u64) -> Result<(), StoreError> {
        let _: String = self
            .script(
                &self.scripts.release_lease,
                &[keys::LEASE],
                &[&epoch.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn lease(&self) -> Result<Option<Lease>, StoreError> {
        let (holder, address, epoch) = self
            .query(
                redis::cmd("HMGET")
                    .arg(keys::LEASE)
                    .arg("holder")
                    .arg("address")
                    .arg("epoch"),
            )
            .await?;
        lease_from([holder, address, epoch])
    }

    fn fence(&self, epoch: Option<u64>) {
        self.fence.store(epoch.unwrap_or(0), Ordering::SeqCst);
    }

    async fn put_ticket(&self, ticket: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let _: String = self
            .query(
                redis::cmd("SET")
                    .arg(keys::ticket(ticket))
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms(ttl)),
            )
            .await?;
        Ok(())
    }

    async fn take_ticket(&self, ticket: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("GETDEL").arg(keys::ticket(ticket)))
            .await
    }

    async fn publish(&self, message: &str) -> Result<(), StoreError> {
        let _: u64 = self
            .query(redis::cmd("PUBLISH").arg(keys::NOTICES).arg(message))
            .await?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, String>, StoreError> {
        // A subscribed connection can do nothing else, so each subscriber has its own; it is
        // subscribed when this returns, so nothing published afterwards is missed.
        let mut pubsub = bounded(self.client.get_async_pubsub()).await?;
        bounded(pubsub.subscribe(keys::NOTICES)).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|message| async move { message.get_payload::<String>().ok() })
            .boxed())
    }
}

//! Coordination for one process: the embedded default beside SQLite, where no other instance
//! shares the store. It leads from the start and keeps tickets and notices in memory.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures_util::{StreamExt, stream::BoxStream};
use tokio::sync::broadcast;

use super::{Coordination, Lease};
use crate::store::StoreError;

/// Messages queued for a slow subscriber before the oldest are dropped.
const BACKLOG: usize = 256;

#[derive(Debug)]
pub struct LocalCoordination {
    lease: Mutex<Option<(Lease, Instant)>>,
    tickets: Mutex<HashMap<String, (String, Instant)>>,
    messages: broadcast::Sender<String>,
}

impl Default for LocalCoordination {
    fn default() -> Self {
        Self {
            lease: Mutex::default(),
            tickets: Mutex::default(),
            messages: broadcast::channel(BACKLOG).0,
        }
    }
}

#[async_trait]
impl Coordination for LocalCoordination {
    async fn claim_lease(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let mut lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let epoch = match lease.as_ref() {
            Some((held, until)) if *until > now && held.holder != holder => return Ok(held.clone()),
            Some((held, until)) if *until > now => held.epoch,
            Some((held, _)) => held.epoch + 1,
            None => 1,
        };
        let claimed = Lease {
            holder: holder.to_owned(),
            address: address.to_owned(),
            epoch,
        };
        *lease = Some((claimed.clone(), now + ttl));
        Ok(claimed)
    }

    async fn release_lease(&self, epoch: u64) -> Result<(), StoreError> {
        let mut lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((held, until)) = lease.as_mut()
            && held.epoch == epoch
        {
            // Kept, expired, so the next holder's epoch still grows.
            *until = Instant::now();
        }
        Ok(())
    }

    async fn lease(&self) -> Result<Option<Lease>, StoreError> {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        Ok(lease
            .as_ref()
            .filter(|(_, until)| *until > Instant::now())
            .map(|(held, _)| held.clone()))
    }

    /// One process writes alone: there is nobody to fence out.
    fn fence(&self, _epoch: Option<u64>) {}

    async fn put_ticket(&self, ticket: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        tickets.retain(|_, (_, until)| *until > now);
        tickets.insert(ticket.to_owned(), (value.to_owned(), now + ttl));
        Ok(())
    }

    async fn take_ticket(&self, ticket: &str) -> Result<Option<String>, StoreError> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        Ok(tickets
            .remove(ticket)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(value, _)| value))
    }

    async fn publish(&self, message: &str) -> Result<(), StoreError> {
        // Nobody subscribed is fine.
        let _ = self.messages.send(message.to_owned());
        Ok(())
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, String>, StoreError> {
        let receiver = self.messages.subscribe();
        Ok(
            futures_util::stream::unfold(receiver, |mut receiver| async move {
                loop {
                    match receiver.recv().await {
                        Ok(message) => return Some((message, receiver)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .boxed(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_coordination_contract() {
        super::super::contract::run(&LocalCoordination::default()).await;
    }
}

//! Who leads lifecycle: every instance claims the lease a few times per lease term; the one
//! that holds it runs the actor (creates, claims, the reaper, the idle policy, reconcile,
//! pool refills), the others send it their lifecycle calls and the activity they see.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio::task::JoinHandle;

use super::{Call, Coordination};
use crate::sessions::SessionManager;

/// How often a follower sends the leader the activity it saw, so the idle policy (which runs
/// on the leader) hears of work done through any instance.
const ACTIVITY_EVERY: Duration = Duration::from_secs(2);

/// The longest a follower goes without trying for the lease.
const CLAIM_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// This instance's part in leading lifecycle.
#[derive(Debug, Clone)]
pub struct Leadership {
    coordination: Arc<dyn Coordination>,
    sessions: SessionManager,
    holder: String,
    address: String,
    ttl: Duration,
    /// The epoch this instance leads under; 0 while it does not.
    epoch: Arc<AtomicU64>,
    /// When the lease was last claimed or renewed, by the clock here.
    last_held: Arc<Mutex<Option<Instant>>>,
}

impl Leadership {
    pub fn new(
        coordination: Arc<dyn Coordination>,
        sessions: SessionManager,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Self {
        Self {
            coordination,
            sessions,
            holder: holder.to_owned(),
            address: address.to_owned(),
            ttl,
            epoch: Arc::default(),
            last_held: Arc::default(),
        }
    }

    /// Claims (or renews) the lease once, and leads or follows as it says. A new leader
    /// reconciles before it answers anything else.
    pub async fn claim(&self) -> bool {
        let took_lead = self.claim_without_reconcile().await;
        if took_lead {
            self.reconcile().await;
        }
        self.sessions.leads()
    }

    /// A new leader's first act: converging the store with the engine.
    pub async fn reconcile(&self) {
        match self.sessions.reconcile().await {
            Ok(report) => tracing::info!(?report, "reconciled on taking the lead"),
            Err(err) => tracing::warn!(%err, "reconcile on taking the lead failed"),
        }
    }

    /// [`Self::claim`] without the reconcile, for the start, which reconciles once the engine
    /// is prepared. Returns whether this instance just took the lead.
    pub async fn claim_without_reconcile(&self) -> bool {
        let asked = Instant::now();
        match self
            .coordination
            .claim_lease(&self.holder, &self.address, self.ttl)
            .await
        {
            Ok(lease) if lease.holder == self.holder => {
                *self.last_held.lock().unwrap_or_else(|p| p.into_inner()) = Some(asked);
                if self.epoch.swap(lease.epoch, Ordering::SeqCst) != lease.epoch {
                    self.coordination.fence(Some(lease.epoch));
                }
                let took_lead = self.sessions.lead();
                if took_lead {
                    tracing::info!(epoch = lease.epoch, "leading session lifecycle");
                }
                took_lead
            }
            Ok(lease) => {
                self.step_down(&format!("{} at {} leads", lease.holder, lease.address));
                false
            }
            // The store does not answer: the lease may have run out meanwhile, and then someone
            // else may lead. Lead no longer than it surely still holds.
            Err(err) => {
                let expired = self
                    .last_held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_none_or(|held| held.elapsed() >= self.ttl);
                if expired {
                    self.step_down(&format!("the lease could not be renewed: {err}"));
                }
                false
            }
        }
    }

    /// Stops leading, keeping the fence: whatever this instance's last tasks still write is
    /// refused by the store.
    fn step_down(&self, why: &str) {
        if self.epoch.swap(0, Ordering::SeqCst) != 0 {
            tracing::warn!(why, "no longer leading session lifecycle");
        }
        self.sessions.follow();
    }

    /// Renews or claims the lease three times per term, and at least every second (a lease a
    /// leader gave up on its way out is taken within a second), and sends the leader the
    /// activity seen here while following.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut activity_sent = Utc::now();
            let mut last_activity_push = Instant::now();
            let mut tick = tokio::time::interval((self.ttl / 3).min(CLAIM_AT_LEAST_EVERY));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let leads = self.claim().await;
                if leads || last_activity_push.elapsed() < ACTIVITY_EVERY {
                    continue;
                }
                last_activity_push = Instant::now();
                let now = Utc::now();
                let seen = self.sessions.activity_since(activity_sent);
                if seen.is_empty() {
                    continue;
                }
                match self.sessions.call(Call::Activity { seen }).await {
                    Ok(_) => activity_sent = now,
                    Err(err) => {
                        tracing::debug!(%err, "activity not sent to the leader; will retry")
                    }
                }
            }
        })
    }

    /// A graceful stop: the lease is given up at once, so another instance leads within one
    /// renewal period instead of a whole term.
    pub async fn release(&self) {
        let epoch = self.epoch.swap(0, Ordering::SeqCst);
        self.sessions.follow();
        if epoch != 0 {
            match self.coordination.release_lease(epoch).await {
                Ok(()) => tracing::info!(epoch, "handed the lead over"),
                Err(err) => {
                    tracing::warn!(%err, "could not release the lease; it runs out by itself")
                }
            }
        }
    }
}

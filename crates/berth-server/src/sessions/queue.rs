//! The admission queue: creates that wait for capacity, served round-robin across owners so
//! one user's burst cannot starve everyone else.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use berth_proto::{
    CreateSession,
    queue::{QueueState, QueueStatus},
};
use tokio::sync::watch;

use crate::auth::Principal;

#[derive(Debug)]
pub struct Waiting {
    pub ticket: String,
    pub caller: Principal,
    pub request: CreateSession,
    pub ttl: u64,
    pub status: watch::Sender<QueueStatus>,
}

#[derive(Debug, Default)]
pub struct FairQueue {
    by_owner: HashMap<String, VecDeque<Waiting>>,
    /// Owners with something waiting, in the order they will next be served.
    ring: VecDeque<String>,
}

impl FairQueue {
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn push(&mut self, waiting: Waiting) {
        let owner = waiting.caller.name.clone();
        let queue = self.by_owner.entry(owner.clone()).or_default();
        if queue.is_empty() {
            self.ring.push_back(owner);
        }
        queue.push_back(waiting);
    }

    /// The next request: the oldest of the owner whose turn it is.
    pub fn pop(&mut self) -> Option<Waiting> {
        let owner = self.ring.pop_front()?;
        let queue = self.by_owner.get_mut(&owner)?;
        let next = queue.pop_front();
        if queue.is_empty() {
            self.by_owner.remove(&owner);
        } else {
            self.ring.push_back(owner);
        }
        next
    }

    pub fn remove(&mut self, ticket: &str) -> Option<Waiting> {
        let owner = self
            .by_owner
            .iter()
            .find(|(_, q)| q.iter().any(|w| w.ticket == ticket))?
            .0
            .clone();
        let queue = self.by_owner.get_mut(&owner)?;
        let index = queue.iter().position(|w| w.ticket == ticket)?;
        let removed = queue.remove(index);
        if queue.is_empty() {
            self.by_owner.remove(&owner);
            self.ring.retain(|o| *o != owner);
        }
        removed
    }

    /// Removes the first request, in serving order, that `wanted` accepts.
    pub fn take_first(&mut self, wanted: impl Fn(&Waiting) -> bool) -> Option<Waiting> {
        let ticket = self
            .in_order()
            .into_iter()
            .find(|waiting| wanted(waiting))?
            .ticket
            .clone();
        self.remove(&ticket)
    }

    /// Requests `owner` has waiting.
    pub fn held_by(&self, owner: &str) -> usize {
        self.by_owner.get(owner).map_or(0, VecDeque::len)
    }

    /// Every waiting request in the order it will be served.
    pub fn in_order(&self) -> Vec<&Waiting> {
        let mut order = Vec::new();
        for round in 0.. {
            let before = order.len();
            for owner in &self.ring {
                if let Some(waiting) = self.by_owner.get(owner).and_then(|q| q.get(round)) {
                    order.push(waiting);
                }
            }
            if order.len() == before {
                return order;
            }
        }
        order
    }
}

/// Every ticket handed out, so `GET /api/v1/queue/{ticket}` can answer without asking the
/// actor. Finished tickets are forgotten ten minutes after they were issued.
#[derive(Debug, Default, Clone)]
pub struct QueueTickets(Arc<Mutex<HashMap<String, Ticket>>>);

#[derive(Debug)]
struct Ticket {
    owner: String,
    status: watch::Receiver<QueueStatus>,
    issued: Instant,
}

const KEEP_FINISHED: Duration = Duration::from_secs(600);

impl QueueTickets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ticket>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn insert(&self, ticket: &str, owner: &str, status: watch::Receiver<QueueStatus>) {
        let mut tickets = self.lock();
        tickets.retain(|_, t| {
            t.borrow_state() == QueueState::Queued || t.issued.elapsed() < KEEP_FINISHED
        });
        tickets.insert(
            ticket.to_owned(),
            Ticket {
                owner: owner.to_owned(),
                status,
                issued: Instant::now(),
            },
        );
    }

    /// The ticket's status, if `caller` may see it.
    pub fn status(&self, caller: &Principal, ticket: &str) -> Option<QueueStatus> {
        let tickets = self.lock();
        let found = tickets
            .get(ticket)
            .filter(|t| caller.may_access(&t.owner))?;
        Some(found.status.borrow().clone())
    }
}

impl Ticket {
    fn borrow_state(&self) -> QueueState {
        self.status.borrow().state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(owner: &str, ticket: &str) -> Waiting {
        let status = QueueStatus {
            ticket: ticket.into(),
            state: QueueState::Queued,
            position: None,
            estimated_wait_seconds: None,
            status_url: String::new(),
            session: None,
            error: None,
        };
        Waiting {
            ticket: ticket.into(),
            caller: Principal {
                name: owner.into(),
                admin: false,
                role: berth_proto::user::Role::User,
                scopes: None,
            },
            request: CreateSession::default(),
            ttl: 60,
            status: watch::channel(status).0,
        }
    }

    #[test]
    fn owners_take_turns() {
        let mut queue = FairQueue::default();
        for (owner, ticket) in [
            ("a", "a1"),
            ("a", "a2"),
            ("a", "a3"),
            ("b", "b1"),
            ("c", "c1"),
            ("b", "b2"),
        ] {
            queue.push(waiting(owner, ticket));
        }
        let order: Vec<String> = queue.in_order().iter().map(|w| w.ticket.clone()).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "b2", "a3"]);
        let popped: Vec<String> = std::iter::from_fn(|| queue.pop())
            .map(|w| w.ticket)
            .collect();
        assert_eq!(popped, order);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_cancelled_request_leaves_the_order_intact() {
        let mut queue = FairQueue::default();
        for (owner, ticket) in [("a", "a1"), ("b", "b1"), ("a", "a2")] {
            queue.push(waiting(owner, ticket));
        }
        assert!(queue.remove("b1").is_some());
        assert_eq!(queue.held_by("a"), 2);
        assert_eq!(
            queue
                .in_order()
                .iter()
                .map(|w| w.ticket.as_str())
                .collect::<Vec<_>>(),
            ["a1", "a2"]
        );
        assert!(queue.remove("nope").is_none());
    }
}

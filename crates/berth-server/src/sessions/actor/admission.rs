//! Admission: what a create may ask for, the quota, the host's capacity, and the fair queue
//! creates wait in when the host is full.

use std::time::Instant;

use berth_proto::{
    CreateSession, ErrorCode,
    queue::{QueueState, QueueStatus},
};
use tokio::sync::watch;

use super::{Actor, Responder};
use crate::{
    auth::Principal,
    config::HomeMode,
    ids,
    sessions::{SessionError, queue::Waiting, validate},
    store::SessionFilter,
};

impl Actor {
    /// Checks a create request: template, TTL, env, labels, quota. Returns the TTL to use.
    /// Nothing is written before this passes, so a refusal leaves nothing behind.
    pub(super) async fn admit(
        &self,
        caller: &Principal,
        request: &CreateSession,
    ) -> Result<u64, SessionError> {
        let template = self.template(&request.template)?;
        let ttl = request.ttl_seconds.unwrap_or(template.ttl_seconds);
        if ttl == 0 || ttl > template.max_ttl_seconds {
            return Err(SessionError::InvalidTtl(format!(
                "ttl_seconds must be between 1 and {} for template {:?}",
                template.max_ttl_seconds, request.template
            )));
        }
        validate::env(&request.env)?;
        validate::labels(&request.labels)?;
        if template.home == HomeMode::Persistent {
            self.home_free(&caller.name, &request.template).await?;
        }
        if let Some(snapshot) = &request.from_snapshot {
            match self.ctx.store.get_snapshot(snapshot).await? {
                Some(found) if caller.may_access(&found.owner) => {}
                // Someone else's snapshot does not exist for them.
                _ => return Err(SessionError::NotFound(format!("snapshot {snapshot}"))),
            }
        }
        if !caller.admin {
            let live = SessionFilter {
                owner: Some(caller.name.clone()),
                ..SessionFilter::live()
            };
            let held = self.ctx.store.list_sessions(&live).await?.len();
            // Requests waiting in the queue count too: queuing is no way around the quota. So
            // do claims not yet committed.
            let uncommitted = self
                .pending_claims
                .iter()
                .filter(|claim| claim.record.owner == caller.name)
                .count();
            let held = held + self.queue.held_by(&caller.name) + uncommitted;
            if held >= self.ctx.sessions_per_user as usize {
                return Err(SessionError::QuotaExceeded {
                    owner: caller.name.clone(),
                    limit: self.ctx.sessions_per_user,
                });
            }
        }
        Ok(ttl)
    }

    /// Refuses a create of `template` for `owner` while another session of theirs holds their
    /// persistent home for it: one not ended, hibernated included (it mounts the home again
    /// as it wakes), or a create waiting in the queue. Two containers writing one home would
    /// tread on each other's files, and terminals saved in it would be restored twice.
    async fn home_free(&self, owner: &str, template: &str) -> Result<(), SessionError> {
        let kept = SessionFilter {
            owner: Some(owner.to_owned()),
            ..SessionFilter::kept()
        };
        let session = self
            .ctx
            .store
            .list_sessions(&kept)
            .await?
            .into_iter()
            .find(|session| session.template == template);
        let holder = match session {
            Some(session) => format!("session {} ({})", session.id, session.state),
            None => match self
                .queue
                .in_order()
                .into_iter()
                .find(|w| w.caller.name == owner && w.request.template == template)
            {
                Some(waiting) => format!("the queued create {}", waiting.ticket),
                None => return Ok(()),
            },
        };
        Err(SessionError::HomeInUse {
            owner: owner.to_owned(),
            template: template.to_owned(),
            holder,
        })
    }

    /// How full the host is (`GET /api/v1/capacity`).
    pub(super) async fn capacity(&self) -> Result<berth_proto::pool::Capacity, SessionError> {
        let counts = self.ctx.store.count_by_state().await?;
        let queued = self
            .queue
            .in_order()
            .into_iter()
            .enumerate()
            .map(|(index, waiting)| berth_proto::pool::QueuedCreate {
                ticket: waiting.ticket.clone(),
                owner: waiting.caller.name.clone(),
                template: waiting.request.template.clone(),
                position: index + 1,
            })
            .collect();
        Ok(berth_proto::pool::Capacity {
            max_sessions: self.ctx.capacity.max_sessions,
            live: counts
                .iter()
                .filter(|(state, _)| state.is_live())
                .map(|(_, n)| n)
                .sum(),
            by_state: counts
                .iter()
                .map(|(state, n)| (state.as_str().to_owned(), *n))
                .collect(),
            queued,
            pools: self.pool.status(&self.ctx.templates),
        })
    }

    /// At capacity: as many live sessions as allowed, or too little free memory on the host.
    pub(super) async fn at_capacity(&self) -> bool {
        let live: u64 = match self.ctx.store.count_by_state().await {
            Ok(counts) => counts
                .iter()
                .filter(|(state, _)| state.is_live())
                .map(|(_, n)| n)
                .sum(),
            Err(_) => return false,
        };
        if live >= u64::from(self.ctx.capacity.max_sessions) {
            return true;
        }
        let floor = self.ctx.capacity.min_free_memory_mb;
        floor > 0 && crate::host::available_memory_mb().is_some_and(|free| free < floor)
    }

    pub(super) fn enqueue(
        &mut self,
        caller: Principal,
        request: CreateSession,
        ttl: u64,
    ) -> watch::Receiver<QueueStatus> {
        let ticket = format!("q{}", ids::secret());
        let (status, watcher) = watch::channel(QueueStatus {
            ticket: ticket.clone(),
            state: QueueState::Queued,
            position: None,
            estimated_wait_seconds: None,
            status_url: format!("/api/v1/queue/{ticket}"),
            session: None,
            error: None,
        });
        self.ctx
            .tickets
            .insert(&ticket, &caller.name, watcher.clone());
        self.queue.push(Waiting {
            ticket,
            caller,
            request,
            ttl,
            status,
        });
        self.update_positions();
        watcher
    }

    /// Tells every waiting request where it stands.
    pub(super) fn update_positions(&self) {
        let room_every = self.ctx.wake_outlook.room_every().as_secs_f64();
        for (index, waiting) in self.queue.in_order().into_iter().enumerate() {
            let position = index + 1;
            let estimate = (position as f64 * room_every).ceil() as u64;
            waiting.status.send_modify(|status| {
                status.position = Some(position);
                status.estimated_wait_seconds = Some(estimate);
            });
        }
    }

    /// Admits waiting requests, fairly across owners, while capacity lasts.
    pub(super) async fn admit_waiting(&mut self) {
        // Without an engine an admitted request could only fail: it keeps its place instead.
        if self.engine_up().is_err() {
            return;
        }
        // Restores go first: their sessions were admitted once, and a restore is quick.
        let mut admitted = self.admit_waiting_restores().await;
        // A request whose template has a ready pooled session takes it at once: it is already
        // counted against capacity, so claiming it never waits for a slot.
        let generation = self.engine_generation();
        while let Some(waiting) = self
            .queue
            .take_first(|waiting| self.pool.has_ready(&waiting.request.template, generation))
        {
            let Some(id) = self.pool.take(&waiting.request.template, generation) else {
                // `has_ready` said there is one; should that ever be wrong, the request waits on.
                self.queue.push(waiting);
                break;
            };
            admitted = true;
            let responder = Responder::Ticket(waiting.status);
            self.claim(
                id,
                waiting.caller,
                waiting.request,
                waiting.ttl,
                responder,
                Instant::now(),
            )
            .await;
        }
        while !self.queue.is_empty() && !self.at_capacity().await {
            let Some(waiting) = self.queue.pop() else {
                break;
            };
            admitted = true;
            let responder = Responder::Ticket(waiting.status);
            self.create_cold(waiting.caller, waiting.request, waiting.ttl, responder)
                .await;
        }
        if admitted {
            self.update_positions();
        }
    }

    pub(super) fn cancel_queued(
        &mut self,
        caller: &Principal,
        ticket: &str,
    ) -> Result<(), SessionError> {
        let owned = self
            .queue
            .in_order()
            .iter()
            .any(|w| w.ticket == ticket && caller.may_access(&w.caller.name));
        let waiting = owned.then(|| self.queue.remove(ticket)).flatten();
        let waiting =
            waiting.ok_or_else(|| SessionError::NotFound(format!("queued request {ticket}")))?;
        Responder::Ticket(waiting.status).answer(Err(SessionError::Reported {
            code: ErrorCode::Conflict,
            message: format!("queued request {ticket} was cancelled"),
        }));
        self.update_positions();
        Ok(())
    }

    pub(super) fn session_ended(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.last_end.replace(now) {
            self.ctx
                .wake_outlook
                .session_ended_after(now.duration_since(last));
        }
    }
}

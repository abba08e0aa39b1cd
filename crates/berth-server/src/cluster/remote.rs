//! Sending lifecycle calls to the instance that leads, over HTTP on its main listener
//! (`POST /internal/v1/calls`, authenticated by a key derived from the shared admin secret).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Body;
use berth_proto::{
    ErrorBody, ErrorCode,
    queue::{QueueState, QueueStatus},
};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{Answer, Call, Coordination, Lease, WireAnswer};
use crate::sessions::SessionError;

/// Where instances send each other lifecycle calls.
pub const CALLS_PATH: &str = "/internal/v1/calls";

/// The header that carries [`cluster_key`].
pub const KEY_HEADER: &str = "x-berth-cluster-key";

/// How long a call waits for a leader (through a failover) before it answers `NoLeader`.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// How often a create queued on the leader is asked how it stands.
const QUEUE_POLL: Duration = Duration::from_millis(250);

/// The key instances prove they share the admin secret with: derived from it, so it needs no
/// configuration of its own, and never the secret itself.
pub fn cluster_key(admin_secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"berth cluster key v1\0");
    hasher.update(admin_secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// Compares a presented key with ours in time that does not depend on where they differ.
pub fn key_matches(ours: &str, presented: &str) -> bool {
    ours.len() == presented.len()
        && ours
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[derive(Debug, Clone)]
pub struct LeaderClient {
    coordination: Arc<dyn Coordination>,
    /// This instance's lease holder id: a lease it holds is not a remote leader.
    holder: String,
    key: String,
    http: Client<HttpConnector, Body>,
}

/// How one attempt at a call ended.
enum Attempt {
    Answered(Box<WireAnswer>),
    /// Nothing happened on the leader (it was not reached, or does not lead): ask again.
    Retry(String),
    Failed(SessionError),
}

impl LeaderClient {
    pub fn new(coordination: Arc<dyn Coordination>, holder: &str, admin_secret: &str) -> Self {
        Self {
            coordination,
            holder: holder.to_owned(),
            key: cluster_key(admin_secret),
            http: crate::agent_client::http_client(Duration::from_secs(2)),
        }
    }

    /// Sends `call` to the leader of the moment, following a failover for up to
    /// [`LEADER_WAIT`] from `since`. A call the leader may have started before it died is sent
    /// again only when it is idempotent; otherwise its caller hears to retry. `Ok(None)`: this
    /// instance holds the lease now, and serves the call itself.
    pub async fn send(&self, call: &Call, since: Instant) -> Result<Option<Answer>, SessionError> {
        loop {
            let attempt = match self.coordination.lease().await? {
                Some(lease) if lease.holder != self.holder => self.post(&lease, call).await,
                Some(_) => return Ok(None),
                None => Attempt::Retry("no instance holds the lifecycle lease".into()),
            };
            match attempt {
                Attempt::Answered(answer) => return Ok(Some(self.answer(call, *answer))),
                Attempt::Failed(err) => return Err(err),
                Attempt::Retry(why) if since.elapsed() >= LEADER_WAIT => {
                    return Err(SessionError::NoLeader(why));
                }
                Attempt::Retry(why) => {
                    tracing::debug!(why, "lifecycle call waits for a leader");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Whether a call that started at `since` may still wait for a leader.
    pub fn may_wait(since: Instant) -> bool {
        since.elapsed() < LEADER_WAIT
    }

    async fn post(&self, lease: &Lease, call: &Call) -> Attempt {
        let body = match serde_json::to_vec(call) {
            Ok(body) => body,
            Err(err) => return Attempt::Failed(SessionError::Internal(err.to_string())),
        };
        let request = hyper::Request::post(format!("{}{CALLS_PATH}", lease.address))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(KEY_HEADER, &self.key)
            .body(Body::from(body));
        let request = match request {
            Ok(request) => request,
            Err(err) => {
                return Attempt::Failed(SessionError::Internal(format!(
                    "the leader's address {:?}: {err}",
                    lease.address
                )));
            }
        };
        let response = match self.http.request(request).await {
            Ok(response) => response,
            Err(err) if err.is_connect() => {
                return Attempt::Retry(format!("the leader at {} is not reachable", lease.address));
            }
            Err(err) => return self.interrupted(call, err),
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => return self.interrupted(call, err),
        };
        if status == StatusCode::MISDIRECTED_REQUEST {
            return Attempt::Retry("the instance asked no longer leads".into());
        }
        if status.is_success() {
            return match serde_json::from_slice::<WireAnswer>(&body) {
                Ok(answer) => Attempt::Answered(Box::new(answer)),
                Err(err) => Attempt::Failed(SessionError::Internal(format!(
                    "the leader's answer: {err}"
                ))),
            };
        }
        let error = serde_json::from_slice::<ErrorBody>(&body).map_or_else(
            |_| SessionError::Reported {
                code: ErrorCode::Internal,
                message: format!("the leading instance answered HTTP {status}"),
            },
            |body| SessionError::Reported {
                code: body.error.code,
                message: body.error.message,
            },
        );
        Attempt::Failed(error)
    }

    /// The leader went away while it handled `call`.
    fn interrupted(&self, call: &Call, err: impl std::fmt::Display) -> Attempt {
        if call.is_idempotent() {
            return Attempt::Retry(format!("the leader stopped while answering: {err}"));
        }
        Attempt::Failed(SessionError::NoLeader(format!(
            "the leading instance stopped while handling this request ({err}); it may or may not \
             have taken effect: check, then retry"
        )))
    }

    fn answer(&self, call: &Call, answer: WireAnswer) -> Answer {
        match answer {
            WireAnswer::Done => Answer::Done,
            WireAnswer::Session(session) => Answer::Session(session),
            WireAnswer::Queued(status) => self.follow_queue(call, status),
            WireAnswer::Queue(status) => Answer::Queue(status),
            WireAnswer::Pools(pools) => Answer::Pools(pools),
            WireAnswer::Capacity(capacity) => Answer::Capacity(capacity),
            WireAnswer::Snapshot(snapshot) => Answer::Snapshot(snapshot),
        }
    }

    /// A create queued on the leader is followed from here, by asking how it stands until it
    /// ends or nobody waits for it any more.
    fn follow_queue(&self, call: &Call, status: QueueStatus) -> Answer {
        let (sender, receiver) = watch::channel(status.clone());
        let Call::Create { caller, .. } = call else {
            return Answer::Queued(receiver);
        };
        let client = self.clone();
        let caller = caller.clone();
        let ticket = status.ticket;
        tokio::spawn(async move {
            while !sender.is_closed() {
                tokio::time::sleep(QUEUE_POLL).await;
                let asked = Call::QueueStatus {
                    caller: caller.clone(),
                    ticket: ticket.clone(),
                };
                let answer = client.send(&asked, Instant::now()).await;
                let status = match answer.and_then(|answer| {
                    answer
                        .ok_or_else(|| SessionError::NoLeader("the lead moved here".into()))?
                        .queue()
                }) {
                    Ok(status) => status,
                    // The queue lived in the memory of a leader that stopped.
                    Err(err) => lost_in_queue(&sender.borrow(), &err),
                };
                let ended = status.state != QueueState::Queued;
                sender.send_replace(status);
                if ended {
                    return;
                }
            }
        });
        Answer::Queued(receiver)
    }
}

fn lost_in_queue(last: &QueueStatus, err: &SessionError) -> QueueStatus {
    QueueStatus {
        state: QueueState::Failed,
        position: None,
        estimated_wait_seconds: None,
        error: Some(berth_proto::ErrorDetail::new(
            ErrorCode::StoreUnavailable,
            format!(
                "the queued create was lost when the instance holding the queue stopped ({err}); \
                 create the session again"
            ),
        )),
        ..last.clone()
    }
}

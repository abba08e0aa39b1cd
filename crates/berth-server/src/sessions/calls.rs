//! Where a lifecycle call is decided: this instance's actor when it leads, else the leading
//! instance (`cluster::remote`). The one mapping of [`Call`]s to actor [`Command`]s.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Command, Created, SessionError, SessionManager, command};
use crate::cluster::{Answer, Call, LeaderClient};

impl SessionManager {
    /// Runs a lifecycle call where it is decided: by this instance's actor when it leads, else
    /// by the leading instance.
    pub async fn call(&self, call: Call) -> Result<Answer, SessionError> {
        let since = std::time::Instant::now();
        loop {
            match (self.here(), &self.leader) {
                (Some(actor), _) => return self.serve_with(actor, call).await,
                (None, Some(leader)) => {
                    if let Some(answer) = leader.send(&call, since).await? {
                        return Ok(answer);
                    }
                    // This instance holds the lease and is about to lead.
                    if !LeaderClient::may_wait(since) {
                        return Err(SessionError::NoLeader(
                            "this instance is taking the lead".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (None, None) => return Err(SessionError::ManagerGone),
            }
        }
    }

    /// Runs a call another instance sent, here: never passed on again.
    pub async fn serve(&self, call: Call) -> Result<Answer, SessionError> {
        let actor = self.here().ok_or(SessionError::NotLeader)?;
        self.serve_with(actor, call).await
    }

    async fn serve_with(
        &self,
        actor: mpsc::Sender<Command>,
        call: Call,
    ) -> Result<Answer, SessionError> {
        let session = Answer::Session;
        match call {
            Call::Create { caller, request } => {
                let created = ask(&actor, |reply| Command::Create {
                    caller,
                    request,
                    reply,
                })
                .await?;
                Ok(match created {
                    Created::Running(running) => session(*running),
                    Created::Queued(status) => Answer::Queued(status),
                })
            }
            Call::CancelQueued { caller, ticket } => ask(&actor, |reply| Command::CancelQueued {
                caller,
                ticket,
                reply,
            })
            .await
            .map(|()| Answer::Done),
            Call::QueueStatus { caller, ticket } => self
                .tickets
                .status(&caller, &ticket)
                .map(Answer::Queue)
                .ok_or_else(|| SessionError::NotFound(format!("queued request {ticket}"))),
            Call::Delete { caller, id } => {
                ask(&actor, |reply| Command::Delete { caller, id, reply })
                    .await
                    .map(|()| Answer::Done)
            }
            Call::Extend {
                caller,
                id,
                ttl_seconds,
            } => ask(&actor, |reply| Command::Extend {
                caller,
                id,
                ttl_seconds,
                reply,
            })
            .await
            .map(session),
            Call::Hibernate { caller, id } => {
                ask(&actor, |reply| Command::Hibernate { caller, id, reply })
                    .await
                    .map(session)
            }
            Call::Resume { caller, id } => {
                ask(&actor, |reply| Command::Resume { caller, id, reply })
                    .await
                    .map(session)
            }
            Call::Keepalive {
                caller,
                id,
                seconds,
            } => ask(&actor, |reply| Command::Keepalive {
                caller,
                id,
                seconds,
                reply,
            })
            .await
            .map(session),
            Call::PoolStatus => {
                let (reply, answer) = oneshot::channel();
                actor
                    .send(Command::PoolStatus { reply })
                    .await
                    .map_err(|_| SessionError::ManagerGone)?;
                answer
                    .await
                    .map(Answer::Pools)
                    .map_err(|_| SessionError::Internal("the pool status was not answered".into()))
            }
            Call::Capacity => ask(&actor, |reply| Command::Capacity { reply })
                .await
                .map(|capacity| Answer::Capacity(Box::new(capacity))),
            Call::CreateSnapshot {
                caller,
                session_id,
                name,
            } => self
                .snapshot_here(&caller, &session_id, &name)
                .await
                .map(Answer::Snapshot),
            Call::DeleteSnapshot { caller, id } => self
                .delete_snapshot_here(&caller, &id)
                .await
                .map(|()| Answer::Done),
            Call::Activity { seen } => {
                for (id, at) in seen {
                    self.activity.touch_at(&id, at);
                }
                Ok(Answer::Done)
            }
        }
    }
}

/// Sends one command to `actor` and waits for its reply.
async fn ask<T>(
    actor: &mpsc::Sender<Command>,
    make: impl FnOnce(command::Reply<T>) -> Command,
) -> Result<T, SessionError> {
    let (reply, answer) = oneshot::channel();
    actor
        .send(make(reply))
        .await
        .map_err(|_| SessionError::ManagerGone)?;
    // A reply dropped unanswered means the command failed inside the actor (which logged it
    // and went on), or the actor ended because this instance stopped leading.
    answer.await.map_err(|_| {
        SessionError::Internal("the session manager could not finish this request".into())
    })?
}

//! Notices (idle warnings) to every instance: the leader's idle policy raises them, and the
//! clients that should hear them may be connected anywhere. They travel through the store's
//! publish/subscribe; every instance delivers what it hears to its own clients.

use std::{sync::Arc, time::Duration};

use berth_proto::ports::SessionEvent;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinHandle};

use super::Coordination;
use crate::sessions::Activity;

#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    session: String,
    event: SessionEvent,
}

/// Routes `activity`'s notices through `coordination`; returns the publishing and the
/// subscribing task.
pub fn relay(coordination: Arc<dyn Coordination>, activity: Arc<Activity>) -> [JoinHandle<()>; 2] {
    let (outgoing, mut to_publish) = mpsc::unbounded_channel::<(String, SessionEvent)>();
    activity.relay_through(outgoing);
    let publisher = {
        let coordination = coordination.clone();
        tokio::spawn(async move {
            while let Some((session, event)) = to_publish.recv().await {
                let Ok(message) = serde_json::to_string(&Notice { session, event }) else {
                    continue;
                };
                if let Err(err) = coordination.publish(&message).await {
                    tracing::warn!(%err, "a notice was not sent to the other instances");
                }
            }
        })
    };
    let subscriber = tokio::spawn(async move {
        loop {
            match coordination.subscribe().await {
                Ok(mut messages) => {
                    while let Some(message) = messages.next().await {
                        if let Ok(notice) = serde_json::from_str::<Notice>(&message) {
                            activity.deliver(&notice.session, notice.event);
                        }
                    }
                }
                Err(err) => tracing::warn!(%err, "not hearing other instances' notices; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    [publisher, subscriber]
}

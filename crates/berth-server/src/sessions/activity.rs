//! What keeps a session awake, seen where it happens and kept in memory: the API's handlers
//! and relays record activity here (a map insert, never a store write per keystroke), and the
//! actor reads it when it checks for idle sessions, persisting `last_activity` at most every
//! [`PERSIST_EVERY`]. The same place carries the notices (idle warnings) that the control plane
//! adds to a session's event and terminal streams.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use berth_proto::ports::SessionEvent;
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc};

/// `last_activity` in the store lags the truth by at most this.
pub const PERSIST_EVERY: Duration = Duration::from_secs(30);

/// Notices queued for a slow client before the oldest are dropped.
const NOTICE_BACKLOG: usize = 16;

#[derive(Debug, Default)]
pub struct Activity {
    seen: Mutex<HashMap<String, DateTime<Utc>>>,
    notices: Mutex<HashMap<String, broadcast::Sender<SessionEvent>>>,
    /// With several instances, notices go out through the store to every instance (this one's
    /// included), which [`Activity::deliver`] them to the clients connected there.
    relay: OnceLock<mpsc::UnboundedSender<(String, SessionEvent)>>,
}

impl Activity {
    /// Someone worked in the session just now.
    pub fn touch(&self, id: &str) {
        let now = Utc::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(id) {
            Some(at) => *at = now,
            None => {
                seen.insert(id.to_owned(), now);
            }
        }
    }

    /// Someone worked in the session at `at` (seen by another instance): kept if newer.
    pub fn touch_at(&self, id: &str, at: DateTime<Utc>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let latest = seen.entry(id.to_owned()).or_insert(at);
        *latest = (*latest).max(at);
    }

    /// Every session worked in after `since`, with when it was last.
    pub fn seen_since(&self, since: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, at)| **at > since)
            .map(|(id, at)| (id.clone(), *at))
            .collect()
    }

    /// The latest activity seen since the control plane started.
    pub fn last(&self, id: &str) -> Option<DateTime<Utc>> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// Notices for the session's event and terminal streams, from now on.
    pub fn subscribe(&self, id: &str) -> broadcast::Receiver<SessionEvent> {
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_insert_with(|| broadcast::channel(NOTICE_BACKLOG).0)
            .subscribe()
    }

    /// From now on, notices go to `relay` instead of straight to this instance's clients.
    pub fn relay_through(&self, relay: mpsc::UnboundedSender<(String, SessionEvent)>) {
        let _ = self.relay.set(relay);
    }

    /// Tells whoever watches the session, on whichever instance; nobody watching is fine.
    pub fn notify(&self, id: &str, notice: SessionEvent) {
        match self.relay.get() {
            Some(relay) => {
                // A relay gone means the instance is stopping: nobody is left to tell.
                let _ = relay.send((id.to_owned(), notice));
            }
            None => self.deliver(id, notice),
        }
    }

    /// Tells the clients connected to this instance that watch the session.
    pub fn deliver(&self, id: &str, notice: SessionEvent) {
        let mut notices = self.notices.lock().unwrap_or_else(|p| p.into_inner());
        // No receiver left: the channel goes until someone subscribes again.
        if let Some(sender) = notices.get(id)
            && sender.send(notice).is_err()
        {
            notices.remove(id);
        }
    }

    /// The session ended: nothing of it is kept.
    pub fn forget(&self, id: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// What a relay of one of a session's WebSockets does besides copying frames: the client's
/// frames (keys, resizes, stdin) count as activity, and, on terminals and the event stream,
/// the control plane's notices go to the client as text frames.
#[derive(Debug)]
pub struct Tap {
    pub input: Input,
    pub notices: Notices,
}

impl Tap {
    pub fn new(activity: Arc<Activity>, session: &str, with_notices: bool) -> Self {
        let notices = Notices(with_notices.then(|| activity.subscribe(session)));
        let input = Input {
            activity,
            session: session.to_owned(),
        };
        Self { input, notices }
    }
}

#[derive(Debug)]
pub struct Input {
    activity: Arc<Activity>,
    session: String,
}

impl Input {
    /// A frame from the client: someone is working.
    pub fn seen(&self) {
        self.activity.touch(&self.session);
    }
}

#[derive(Debug)]
pub struct Notices(Option<broadcast::Receiver<SessionEvent>>);

impl Notices {
    /// The next notice; never resolves on a stream that carries none.
    pub async fn next(&mut self) -> SessionEvent {
        loop {
            match self.0.as_mut() {
                Some(notices) => match notices.recv().await {
                    Ok(notice) => return notice,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => self.0 = None,
                },
                None => std::future::pending::<()>().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touches_are_remembered_and_notices_reach_subscribers_only() {
        let activity = Activity::default();
        assert_eq!(activity.last("s1"), None);
        activity.touch("s1");
        assert!(activity.last("s1").is_some());
        activity.notify("s1", SessionEvent::IdleCancelled);
        let mut watching = activity.subscribe("s1");
        activity.notify("s1", SessionEvent::IdleCancelled);
        assert_eq!(watching.try_recv().unwrap(), SessionEvent::IdleCancelled);
        assert!(
            watching.try_recv().is_err(),
            "nothing sent before subscribing"
        );
        activity.forget("s1");
        assert_eq!(activity.last("s1"), None);
    }
}

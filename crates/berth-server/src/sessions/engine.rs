//! Watching the container engine: its event stream, and whether it answers at all.
//!
//! The watcher runs off the actor and only reports: every change it sees becomes a
//! [`Command`], so the actor stays the one author of session state. Reconcile remains the
//! safety net for anything the stream misses.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::{Command, SessionError};
use crate::runtime::{Runtime, RuntimeError};

/// How long the watcher waits before reconnecting, at first and at most.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// What the control plane knows of its engine, shared by the actor (its only writer) and the
/// handlers. A *generation* is one connection to the engine's event stream: an engine restart
/// always breaks the stream, so anything learnt under an earlier generation (a pooled
/// container's address, say) may be stale.
#[derive(Debug)]
pub struct EngineState {
    lost: AtomicBool,
    generation: watch::Sender<u64>,
}

impl Default for EngineState {
    fn default() -> Self {
        Self {
            lost: AtomicBool::new(false),
            generation: watch::Sender::new(0),
        }
    }
}

impl EngineState {
    /// Fails with `engine_unavailable` while the engine is lost.
    pub fn check(&self) -> Result<(), SessionError> {
        if self.lost.load(Ordering::SeqCst) {
            Err(RuntimeError::Unavailable(
                "the container engine is not answering; Berth reconnects by itself, try again shortly"
                    .into(),
            )
            .into())
        } else {
            Ok(())
        }
    }

    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Hears of every new generation: what the engine rebuilds when it starts (its network
    /// rules, say), whoever depends on it can check again.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// A new connection: returns the generation it starts.
    pub(super) fn connected(&self) -> u64 {
        self.lost.store(false, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
        self.generation()
    }

    pub(super) fn lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }
}

/// Follows the engine's events for as long as the actor lives, reconnecting with backoff.
///
/// The first subscription replays what the engine still holds from `since` (the manager's
/// start) on: the startup reconcile looked at the engine before the watcher subscribed, and the
/// engine's listing lags its events (a container is listed running until its cleanup ends,
/// after its `die` went out), so a container that stopped meanwhile, say one a dead control
/// plane was stopping, is heard of here or nowhere. A reconnection replays from the moment the
/// stream broke.
pub(super) async fn watch(
    runtime: Arc<dyn Runtime>,
    commands: mpsc::WeakSender<Command>,
    mut since: SystemTime,
) {
    let mut retry = FIRST_RETRY;
    let mut reported_lost = false;
    // Streams in a row that ended soon after they began.
    let mut quick_ends = 0;
    loop {
        let lost = match runtime.events(since).await {
            Ok(mut events) => {
                let followed_from = Instant::now();
                reported_lost = false;
                if !send(&commands, Command::EngineConnected).await {
                    return;
                }
                while let Some(event) = events.next().await {
                    if !send(&commands, Command::ContainerChanged(event)).await {
                        return;
                    }
                }
                since = SystemTime::now();
                if followed_from.elapsed() >= LAST_RETRY {
                    retry = FIRST_RETRY;
                    quick_ends = 0;
                } else {
                    quick_ends += 1;
                }
                // A stream that ends is followed anew at once, and is an outage only if that
                // fails: a swarm's stream ends when its nodes change, and an engine that went
                // away fails the next subscription. One that keeps ending as soon as it began
                // is an outage too (and is not followed ten times a second).
                (quick_ends > 1).then(|| "the engine's event stream keeps ending".to_owned())
            }
            Err(err) => Some(err.to_string()),
        };
        let Some(reason) = lost else { continue };
        // One report per outage: the actor needs to hear it once, not at every retry.
        if !reported_lost {
            reported_lost = true;
            if !send(&commands, Command::EngineLost { reason }).await {
                return;
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// Sends to the actor; false once it is gone.
async fn send(commands: &mpsc::WeakSender<Command>, command: Command) -> bool {
    match commands.upgrade() {
        Some(commands) => commands.send(command).await.is_ok(),
        None => false,
    }
}

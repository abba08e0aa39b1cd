//! Watches read by polling (`POST /watches`, `GET /watches/{id}/events`,
//! `DELETE /watches/{id}`): a directory's changes kept here between polls, for clients that
//! cannot hold a stream open (E2B's `CreateWatcher`). Kept in the agent rather than in the
//! control plane, so a poll may reach any instance of a cluster, and survives a control
//! plane's restart; a session that restarts or hibernates ends them with its agent.

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use berth_proto::{
    ErrorCode,
    files::{FileEvent, PolledWatch, PolledWatchEvents, StartPolledWatch},
};

use crate::{AgentError, AgentState};

/// Events kept per watch between polls; past it the oldest go, as E2B's envd drops them too.
pub const MAX_EVENTS: usize = 10_000;
/// Watches a session may hold at once: each is a thread and a kernel inotify instance.
pub const MAX_WATCHES: usize = 64;
/// A watch nobody polled for this long is ended: its client went without removing it, and
/// inotify instances are counted per user of the host, every session's.
const UNPOLLED_EXPIRY: Duration = Duration::from_secs(3600);

/// The session's polled watches; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PolledWatches(Arc<Mutex<HashMap<String, Kept>>>);

#[derive(Debug)]
struct Kept {
    dir: PathBuf,
    events: Arc<Mutex<VecDeque<FileEvent>>>,
    /// Reads the watch's changes into `events`; aborting it drops the receiver, which ends
    /// the watch's thread. It ends by itself when the watch fails (an error reading events).
    reader: tokio::task::JoinHandle<()>,
    polled: Instant,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl PolledWatches {
    /// The watches, less those nobody polled for [`UNPOLLED_EXPIRY`]: every call ends them.
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|_, watch| watch.polled.elapsed() < UNPOLLED_EXPIRY);
        kept
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found(id: &str) -> AgentError {
    AgentError::not_found(format!(
        "watch {id} not found: it was removed or unpolled for an hour, or the session \
         restarted or hibernated since"
    ))
}

fn too_many() -> AgentError {
    AgentError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::QuotaExceeded,
        format!("a session may hold {MAX_WATCHES} watches; remove one first"),
    )
}

pub async fn start(
    State(state): State<AgentState>,
    Json(request): Json<StartPolledWatch>,
) -> Result<(StatusCode, Json<PolledWatch>), AgentError> {
    let watches = &state.polled_watches;
    if watches.live().len() >= MAX_WATCHES {
        return Err(too_many());
    }
    let (dir, mut changes) = crate::watch::start(&state, &request.path, request.recursive).await?;
    let events = Arc::new(Mutex::new(VecDeque::new()));
    let filled = events.clone();
    let reader = tokio::spawn(async move {
        while let Some(event) = changes.recv().await {
            let mut events = lock(&filled);
            if events.len() == MAX_EVENTS {
                events.pop_front();
            }
            events.push_back(event);
        }
    });
    let path = dir.display().to_string();
    let watch = Kept {
        dir,
        events,
        reader,
        polled: Instant::now(),
    };
    let mut kept = watches.live();
    // Starts at once may all have passed the count: the one past it ends (with `watch`).
    if kept.len() >= MAX_WATCHES {
        return Err(too_many());
    }
    let id = crate::journal::mark_key();
    kept.insert(id.clone(), watch);
    Ok((StatusCode::CREATED, Json(PolledWatch { id, path })))
}

/// What changed since the last poll, oldest first. A watch that failed answers what it saw,
/// then 404.
pub async fn events(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<Json<PolledWatchEvents>, AgentError> {
    let mut kept = state.polled_watches.live();
    let watch = kept.get_mut(&id).ok_or_else(|| not_found(&id))?;
    watch.polled = Instant::now();
    let events: Vec<FileEvent> = lock(&watch.events).drain(..).collect();
    if events.is_empty() && watch.reader.is_finished() {
        kept.remove(&id);
        return Err(AgentError::not_found(format!(
            "watch {id} ended: its directory can no longer be watched"
        )));
    }
    Ok(Json(PolledWatchEvents {
        path: watch.dir.display().to_string(),
        events,
    }))
}

pub async fn remove(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AgentError> {
    match state.polled_watches.live().remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(not_found(&id)),
    }
}

//! Watches read by polling (`POST /watches`, `GET /watches/{id}/events`,
//! `DELETE /watches/{id}`): a directory's changes kept here between polls, for clients that
//! cannot hold a stream open (E2B's `CreateWatcher`). Kept in the agent rather than in the
//! control plane, so a poll may reach any instance of a cluster, and survives a control
//! plane's restart; a session that restarts or hibernates ends them with its agent.

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex},
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

/// The session's polled watches; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PolledWatches(Arc<Mutex<HashMap<String, Kept>>>);

#[derive(Debug)]
struct Kept {
    dir: PathBuf,
    events: Arc<Mutex<VecDeque<FileEvent>>>,
    /// Reads the watch's changes into `events`; aborting it drops the receiver, which ends
    /// the watch's thread.
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl PolledWatches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found(id: &str) -> AgentError {
    AgentError::not_found(format!(
        "watch {id} not found: it was removed, or the session restarted or hibernated since"
    ))
}

pub async fn start(
    State(state): State<AgentState>,
    Json(request): Json<StartPolledWatch>,
) -> Result<(StatusCode, Json<PolledWatch>), AgentError> {
    let watches = &state.polled_watches;
    if watches.lock().len() >= MAX_WATCHES {
        return Err(AgentError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::QuotaExceeded,
            format!("a session may hold {MAX_WATCHES} watches; remove one first"),
        ));
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
    };
    let mut kept = watches.lock();
    // Starts at once may all have passed the count: the one past it ends (with `watch`).
    if kept.len() >= MAX_WATCHES {
        return Err(AgentError::conflict(
            "too many watches started at once; try again",
        ));
    }
    let id = crate::journal::mark_key();
    kept.insert(id.clone(), watch);
    Ok((StatusCode::CREATED, Json(PolledWatch { id, path })))
}

/// What changed since the last poll, oldest first.
pub async fn events(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<Json<PolledWatchEvents>, AgentError> {
    let kept = state.polled_watches.lock();
    let watch = kept.get(&id).ok_or_else(|| not_found(&id))?;
    let events = lock(&watch.events).drain(..).collect();
    Ok(Json(PolledWatchEvents {
        path: watch.dir.display().to_string(),
        events,
    }))
}

pub async fn remove(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AgentError> {
    match state.polled_watches.lock().remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(not_found(&id)),
    }
}

//! envd's polling watchers (`CreateWatcher`, `GetWatcherEvents`, `RemoveWatcher`), which the
//! sync SDK's `files.watch_dir` uses. The one state of the E2B layer: a watcher is the agent's
//! watch WebSocket, read by a task into a bounded buffer that polls drain. It lives in memory,
//! so a control-plane restart ends every watcher (the next poll answers `not_found`).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use axum::{body::Body, extract::State, http::HeaderMap, response::Response};
use berth_proto::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    connect,
    envd::sandbox,
    filesystem::{WatchDirRequest, next_event, open_watch},
};
use crate::api::{
    AppState,
    error::{ApiError, ConnectError},
};

/// Events kept per watcher between polls; past it the oldest go, as envd drops them too.
const MAX_EVENTS: usize = 10_000;
/// Watchers one sandbox may hold: each is a task and a connection to its agent.
const MAX_PER_SANDBOX: usize = 64;

#[derive(Debug, Default)]
pub struct Watchers {
    by_id: Mutex<HashMap<String, Watcher>>,
}

#[derive(Debug)]
struct Watcher {
    sandbox: String,
    buffer: Arc<Mutex<Buffer>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Buffer {
    events: VecDeque<Value>,
    /// The agent's socket closed: the sandbox stopped, slept or restarted.
    ended: bool,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WatcherRequest {
    watcher_id: String,
}

fn reply(result: Result<Value, ConnectError>) -> Response {
    match result {
        Ok(message) => connect::reply(message),
        Err(err) => axum::response::IntoResponse::into_response(err),
    }
}

/// `CreateWatcher`: starts watching; events wait for `GetWatcherEvents`.
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    reply(
        async {
            let request: WatchDirRequest = connect::unary(&headers, body).await?;
            let sandbox = sandbox(&state, &headers).await?;
            let watchers = &state.e2b_watchers;
            let held = {
                let mut by_id = lock(&watchers.by_id);
                // Watchers whose sandbox went are dead: a late poll of one hears not_found.
                by_id.retain(|_, w| !lock(&w.buffer).ended);
                by_id.values().filter(|w| w.sandbox == sandbox.id).count()
            };
            if held >= MAX_PER_SANDBOX {
                return Err(ApiError::coded(
                    ErrorCode::QuotaExceeded,
                    format!("a sandbox may hold {MAX_PER_SANDBOX} watchers; remove one first"),
                )
                .into());
            }
            let (dir, mut socket) =
                open_watch(&state, &sandbox, &request.path, request.recursive).await?;
            let buffer = Arc::new(Mutex::new(Buffer::default()));
            let filled = buffer.clone();
            let task = tokio::spawn(async move {
                while let Some(event) = next_event(&mut socket, &dir).await {
                    let mut buffer = lock(&filled);
                    if buffer.events.len() == MAX_EVENTS {
                        buffer.events.pop_front();
                    }
                    buffer.events.push_back(event);
                }
                lock(&filled).ended = true;
            });
            let id = crate::ids::watcher_id();
            lock(&watchers.by_id).insert(
                id.clone(),
                Watcher {
                    sandbox: sandbox.id,
                    buffer,
                    task,
                },
            );
            Ok(json!({ "watcherId": id }))
        }
        .await,
    )
}

/// `GetWatcherEvents`: what happened since the last poll.
pub async fn events(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    reply(
        async {
            let request: WatcherRequest = connect::unary(&headers, body).await?;
            let sandbox = sandbox(&state, &headers).await?;
            let mut watchers = lock(&state.e2b_watchers.by_id);
            let watcher = watchers
                .get(&request.watcher_id)
                .filter(|w| w.sandbox == sandbox.id)
                .ok_or_else(|| not_found(&request.watcher_id))?;
            let (events, ended) = {
                let mut buffer = lock(&watcher.buffer);
                (buffer.events.drain(..).collect::<Vec<_>>(), buffer.ended)
            };
            if ended && events.is_empty() {
                watchers.remove(&request.watcher_id);
                return Err(ApiError::not_found(format!(
                    "watcher {} ended: the sandbox was paused or restarted",
                    request.watcher_id
                ))
                .into());
            }
            Ok(json!({ "events": events }))
        }
        .await,
    )
}

/// `RemoveWatcher`.
pub async fn remove(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    reply(
        async {
            let request: WatcherRequest = connect::unary(&headers, body).await?;
            let sandbox = sandbox(&state, &headers).await?;
            let mut watchers = lock(&state.e2b_watchers.by_id);
            if watchers
                .get(&request.watcher_id)
                .is_none_or(|w| w.sandbox != sandbox.id)
            {
                return Err(not_found(&request.watcher_id));
            }
            watchers.remove(&request.watcher_id);
            Ok(json!({}))
        }
        .await,
    )
}

fn not_found(id: &str) -> ConnectError {
    ApiError::not_found(format!("watcher {id} not found")).into()
}

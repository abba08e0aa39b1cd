//! envd's polling watchers (`CreateWatcher`, `GetWatcherEvents`, `RemoveWatcher`), which the
//! sync SDK's `files.watch_dir` uses: the agent's polled watches (`POST /watches`), so the
//! layer keeps no state and any instance of a cluster answers any poll. A watcher ends with
//! its sandbox's agent (a pause or a restart): the next poll answers `not_found`.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, Method},
    response::Response,
};
use berth_proto::files::{PolledWatch, PolledWatchEvents};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    connect,
    envd::sandbox,
    filesystem::{WatchDirRequest, envd_event, stat_dir},
};
use crate::api::{
    AppState,
    error::{ApiError, ConnectError},
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WatcherRequest {
    watcher_id: String,
}

impl WatcherRequest {
    /// The watch's path at the agent. Ids are the agent's hex; anything else names no watch
    /// (and never reaches the agent as a path).
    fn agent_path(&self) -> Result<String, ConnectError> {
        let id = &self.watcher_id;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::not_found(format!("watcher {id} not found")).into());
        }
        Ok(format!("/watches/{id}"))
    }
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
            let dir = stat_dir(&state, &sandbox, &request.path).await?;
            let started = json!({ "path": dir, "recursive": request.recursive });
            let watch: PolledWatch = sandbox
                .call(&state, Method::POST, "/watches", Some(started))
                .await?;
            Ok(json!({ "watcherId": watch.id }))
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
            let target = format!("{}/events", request.agent_path()?);
            let polled: PolledWatchEvents =
                sandbox.call(&state, Method::GET, &target, None).await?;
            let events: Vec<Value> = polled
                .events
                .iter()
                .map(|event| envd_event(event, &polled.path))
                .collect();
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
            let target = request.agent_path()?;
            sandbox
                .call::<Value>(&state, Method::DELETE, &target, None)
                .await?;
            Ok(json!({}))
        }
        .await,
    )
}

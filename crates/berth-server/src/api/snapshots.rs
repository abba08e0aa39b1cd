//! Named snapshots: make one of a running session, list a session's, delete one. Forking is
//! `POST /api/v1/sessions` with `from_snapshot`.

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use berth_proto::{
    ErrorBody,
    snapshot::{CreateSnapshot, Snapshot, SnapshotList},
};

use super::{AppState, error::ApiError, extract::ApiJson};
use crate::auth::Principal;

/// Copy a running session's files into a named snapshot. The session is paused while its files
/// are copied; the answer says for how long (`pause_ms`).
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/snapshots", tag = "snapshots", operation_id = "create_snapshot",
    params(("id" = String, Path, description = "Session id")),
    request_body = CreateSnapshot,
    responses(
        (status = 201, body = Snapshot),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CreateSnapshot>,
) -> Result<(StatusCode, axum::Json<Snapshot>), ApiError> {
    let snapshot = state
        .sessions
        .create_snapshot(&caller, &id, &request.name)
        .await?;
    let message = format!("took the snapshot {:?} ({})", snapshot.name, snapshot.id);
    let entry = crate::store::SessionEvent::now(&id, "snapshot", &message)
        .by(&caller.name)
        .with_data(serde_json::json!({"snapshot": snapshot.id, "name": snapshot.name}));
    state.timeline.add(entry);
    Ok((StatusCode::CREATED, axum::Json(snapshot)))
}

/// A session's named snapshots, oldest first.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/snapshots", tag = "snapshots", operation_id = "list_snapshots",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = SnapshotList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<SnapshotList>, ApiError> {
    let snapshots = state.sessions.list_snapshots(&caller, &id).await?;
    Ok(axum::Json(SnapshotList { snapshots }))
}

/// Delete a named snapshot and its image; sessions forked from it keep their files.
#[utoipa::path(
    delete, path = "/api/v1/snapshots/{id}", tag = "snapshots", operation_id = "delete_snapshot",
    params(("id" = String, Path, description = "Snapshot id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sessions.delete_snapshot(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

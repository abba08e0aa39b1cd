//! `/api/v1/sessions`.

use std::time::Duration;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use berth_proto::{
    CreateSession, ErrorBody, ExtendSession, Keepalive, Session, SessionList, Timeline,
    queue::{QueueState, QueueStatus},
};
use serde::Deserialize;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ApiQuery},
};
use crate::{auth::Principal, sessions::Created};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// When the host is at capacity, wait in the queue up to this many seconds (at most 300)
    /// before answering 202 with a ticket.
    #[serde(default)]
    wait: u64,
}

/// Create a session from a template. Answers `201` once the session is `running`. At capacity
/// the request joins a queue served fairly across users: it waits up to `?wait=` seconds, then
/// answers `202` with its position, an estimated wait and a status URL to poll.
#[utoipa::path(
    post, path = "/api/v1/sessions", tag = "sessions", operation_id = "create_session",
    params(("wait" = Option<u64>, Query, description = "At capacity, seconds to wait in the queue (at most 300) before answering 202")),
    request_body = CreateSession,
    responses(
        (status = 201, description = "The session is running", body = Session),
        (status = 202, description = "Queued for capacity; poll status_url", body = QueueStatus),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 404, description = "No such snapshot to fork (`from_snapshot`)", body = ErrorBody),
        (status = 409, description = "Deleted while being created", body = ErrorBody),
        (status = 422, description = "Unknown template or TTL out of range", body = ErrorBody),
        (status = 429, description = "The caller holds too many sessions", body = ErrorBody),
        (status = 503, description = "Engine unavailable or the session failed to start", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Principal,
    ApiQuery(query): ApiQuery<CreateQuery>,
    ApiJson(request): ApiJson<CreateSession>,
) -> Result<Response, ApiError> {
    let mut status = match state.sessions.create_or_queue(caller, request).await? {
        Created::Running(session) => {
            return Ok((StatusCode::CREATED, axum::Json(session)).into_response());
        }
        Created::Queued(status) => status,
    };
    let wait = Duration::from_secs(query.wait.min(MAX_WAIT_SECONDS));
    let _ = tokio::time::timeout(wait, status.wait_for(|s| s.state != QueueState::Queued)).await;
    let current = status.borrow().clone();
    queue_answer(current)
}

const MAX_WAIT_SECONDS: u64 = 300;

/// A queued request as HTTP: the session once admitted, the error if it failed, else `202`.
fn queue_answer(status: QueueStatus) -> Result<Response, ApiError> {
    match (status.state, status.session, status.error) {
        (QueueState::Admitted, Some(session), _) => {
            Ok((StatusCode::CREATED, axum::Json(session)).into_response())
        }
        (QueueState::Failed, _, Some(error)) => Err(ApiError::coded(error.code, error.message)),
        (state, session, error) => {
            let status = QueueStatus {
                state,
                session,
                error,
                ..status
            };
            Ok((StatusCode::ACCEPTED, axum::Json(status)).into_response())
        }
    }
}

/// Where a queued create stands: `202` while it waits, `201` with the session once admitted,
/// its error if it failed.
#[utoipa::path(
    get, path = "/api/v1/queue/{ticket}", tag = "sessions",
    params(("ticket" = String, Path)),
    responses(
        (status = 201, description = "Admitted", body = Session),
        (status = 202, description = "Still queued", body = QueueStatus),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn queue_status(
    State(state): State<AppState>,
    caller: Principal,
    Path(ticket): Path<String>,
) -> Result<Response, ApiError> {
    queue_answer(state.sessions.queue_status(&caller, &ticket).await?)
}

/// Give up a queued create.
#[utoipa::path(
    delete, path = "/api/v1/queue/{ticket}", tag = "sessions",
    params(("ticket" = String, Path)),
    responses((status = 204), (status = 404, description = "Unknown, or no longer queued", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn cancel_queued(
    State(state): State<AppState>,
    caller: Principal,
    Path(ticket): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sessions.cancel_queued(caller, ticket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List the caller's sessions (every session for the admin).
#[utoipa::path(
    get, path = "/api/v1/sessions", tag = "sessions", operation_id = "list_sessions",
    params(
        ("label" = Option<Vec<String>>, Query, pattern = "^[^=]+=", description = "`key=value`; repeat to require several labels"),
        ("all" = Option<bool>, Query, description = "Include stopped and failed sessions"),
    ),
    responses(
        (status = 200, body = SessionList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
) -> Result<axum::Json<SessionList>, ApiError> {
    let mut labels = Vec::new();
    let mut all = false;
    for (key, value) in query {
        match key.as_str() {
            "label" => labels.push(value),
            "all" => {
                all = value
                    .parse()
                    .map_err(|_| ApiError::invalid_request("all must be true or false"))?
            }
            other => {
                return Err(ApiError::invalid_request(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let labels = crate::sessions::parse_label_filter(&labels)?;
    let sessions = state.sessions.list(&caller, labels, all).await?;
    Ok(axum::Json(SessionList { sessions }))
}

/// One session. Sessions of other users are reported as not found.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}", tag = "sessions", operation_id = "get_session",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<Session>, ApiError> {
    Ok(axum::Json(
        state.sessions.get_with_readiness(&caller, &id).await?,
    ))
}

/// What happened to a session and who did it, oldest first: its lifecycle with reasons, exec
/// and terminal commands with their exit codes, files, processes, ports, snapshots. Kept
/// after the session ends for `timeline.retention_days`. Reading it collects what the
/// session's agent noted since the last collection.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/timeline", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Timeline), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn timeline(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<Timeline>, ApiError> {
    Ok(axum::Json(state.sessions.timeline(&caller, &id).await?))
}

/// Stop a session and remove its container. Answers once the container is gone; deleting an
/// ended session again also answers 204.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}", tag = "sessions", operation_id = "delete_session",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "The session is stopped"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let asked = request(&id, &caller, "delete_requested", "asked to delete it");
    state.sessions.delete(caller, id).await?;
    state.timeline.add(asked);
    Ok(StatusCode::NO_CONTENT)
}

/// Move the expiry to `ttl_seconds` from now, up to the template's maximum lifetime.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/extend", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    request_body = ExtendSession,
    responses(
        (status = 200, body = Session),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 422, description = "Beyond the template's maximum lifetime", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn extend(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ExtendSession>,
) -> Result<axum::Json<Session>, ApiError> {
    let actor = caller.name.clone();
    let session: Session = state
        .sessions
        .extend(caller, id.clone(), request.ttl_seconds)
        .await?;
    let until = session.expires_at.to_rfc3339();
    let message = format!("extended it until {until}");
    let entry = crate::store::SessionEvent::now(&id, "extended", &message).by(&actor);
    state.timeline.add(entry);
    Ok(axum::Json(session))
}

/// Put a running session to sleep: its files go into a snapshot image and its container away,
/// so it holds no memory or CPU. Answers once it is `hibernated`. Any later access (terminal,
/// files, exec, previews, `resume`) wakes it.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/hibernate", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Hibernated", body = Session),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 429, description = "Too many hibernated sessions (`quota.max_hibernated`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn hibernate(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<Session>, ApiError> {
    let asked = request(&id, &caller, "hibernate_requested", "asked to hibernate it");
    let session = state.sessions.hibernate(caller, id).await?;
    state.timeline.add(asked);
    Ok(axum::Json(session))
}

/// The timeline's entry for what `caller` asks of a session, timed as it is asked (before
/// what it sets off) and added once it is done.
fn request(id: &str, caller: &Principal, kind: &str, message: &str) -> crate::store::SessionEvent {
    crate::store::SessionEvent::now(id, kind, message).by(&caller.name)
}

/// Wake a hibernated session: a new container from its snapshot, with its files. Answers once
/// it is `running` (at once when it already is); concurrent wakes share one restore.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/resume", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Running", body = Session),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
        (status = 503, description = "The restore failed or the engine is down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn resume(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<Session>, ApiError> {
    let asked = request(&id, &caller, "resume_requested", "asked to wake it");
    let session = state.sessions.resume(caller, id).await?;
    state.timeline.add(asked);
    Ok(axum::Json(session))
}

/// Keep a running session awake `seconds` from now (at most the template's
/// `max_ttl_seconds`), whatever its idle policy says. The session shows `keepalive_until`.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/keepalive", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    request_body = Keepalive,
    responses(
        (status = 200, body = Session),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 422, description = "Longer than the template's maximum lifetime", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn keepalive(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<Keepalive>,
) -> Result<axum::Json<Session>, ApiError> {
    Ok(axum::Json(
        state
            .sessions
            .keepalive(caller, id, request.seconds)
            .await?,
    ))
}

/// The browser workspace's presence beacon: someone is at the keyboard or mouse (sent at
/// most once a minute). It counts as activity; an open tab alone sends nothing.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/activity", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn activity(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sessions.get(&caller, &id).await?;
    state.sessions.touch(&id);
    Ok(StatusCode::NO_CONTENT)
}

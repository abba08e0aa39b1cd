//! `/api/v1/sessions`.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use berth_proto::{CreateSession, ErrorBody, ExtendSession, Session, SessionList};

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ApiQuery},
};
use crate::{auth::Principal, sessions::SessionError};

/// Create a session from a template. Answers once the session is `running`.
#[utoipa::path(
    post, path = "/api/v1/sessions", tag = "sessions",
    request_body = CreateSession,
    responses(
        (status = 201, description = "The session is running", body = Session),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
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
    ApiJson(request): ApiJson<CreateSession>,
) -> Result<impl IntoResponse, ApiError> {
    let session = state.sessions.create(caller, request).await?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// List the caller's sessions (every session for the admin).
#[utoipa::path(
    get, path = "/api/v1/sessions", tag = "sessions",
    params(
        ("label" = Option<Vec<String>>, Query, description = "`key=value`; repeat to require several labels"),
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
    get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<Session>, ApiError> {
    Ok(axum::Json(state.sessions.get(&caller, &id).await?))
}

/// Stop a session and remove its container. Answers once the container is gone; deleting an
/// ended session again also answers 204.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}", tag = "sessions",
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
    state.sessions.delete(caller, id).await?;
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
    let session: Result<Session, SessionError> =
        state.sessions.extend(caller, id, request.ttl_seconds).await;
    Ok(axum::Json(session?))
}

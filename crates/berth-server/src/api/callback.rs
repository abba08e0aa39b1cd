//! `/api/v1/self`: the callback API for code inside a session (seed 001), authenticated by the
//! session's own token (`berth_proto::callback`). Served on the main listener and on each
//! session's socket (`crate::callback`), where the token must also name the session the
//! socket is for. A session token opens nothing else, and nothing else opens these routes.

use axum::{
    Router,
    extract::{FromRequestParts, Path, State},
    http::{StatusCode, request::Parts},
    response::IntoResponse,
};
use berth_proto::{
    ErrorBody, ErrorCode, Keepalive, Session, SessionState,
    callback::{
        CustomEvent, MAX_EVENT_DATA_BYTES, MAX_STATE_KEYS, MAX_STATE_VALUE_BYTES, Ready,
        SelfSession, StateKeys, valid_event_name, valid_state_key,
    },
    ports::SessionEvent,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState,
    extract::{ApiJson, ApiJsonOrDefault, bearer},
};
use crate::{
    auth::Principal,
    callback::ArrivedOn,
    sessions::Readiness,
    store::{SessionEvent as TimelineEntry, SessionRecord, StateScope},
};

/// The routes, for the main router and the sessions' sockets.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_self))
        .routes(routes!(list_state))
        .routes(routes!(get_state, put_state, delete_state))
        .routes(routes!(list_user_state))
        .routes(routes!(get_user_state, put_user_state, delete_user_state))
        .routes(routes!(post_event))
        .routes(routes!(keepalive_self))
        .routes(routes!(report_ready))
}

/// What a session's socket serves: these routes and nothing else, recorded in the audit log
/// as the main listener's are.
pub fn socket_router(state: AppState) -> Router {
    let (routes, _) = routes().split_for_parts();
    let routes = routes
        .fallback(|| async {
            ApiError::not_found("this socket serves only the /api/v1/self routes")
        })
        .with_state(state.clone());
    super::behind_layers(routes).layer(axum::middleware::from_fn_with_state(
        state,
        super::audit::record,
    ))
}

/// Calls one session's code may make, per second and at once: enough for any app, not
/// enough to flood the store (state, timeline, webhook deliveries) from a loop.
pub const RATE_PER_SECOND: u32 = 20;
pub const RATE_BURST: u32 = 100;

/// The caller of a `/api/v1/self` route: a session that is still there, by its token.
pub struct SelfCaller {
    session: SessionRecord,
    token_expires: i64,
}

impl FromRequestParts<AppState> for SelfCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::coded(
                ErrorCode::Unauthorized,
                "send the session's token: `Authorization: Bearer $BERTH_SESSION_TOKEN` (or the \
                 newer one in $BERTH_TOKEN_FILE)",
            )
        })?;
        let now = chrono::Utc::now().timestamp();
        let (session_id, token_expires) = state
            .signer
            .check_session_token(token, now)
            .map_err(|denied| ApiError::coded(ErrorCode::Unauthorized, denied.to_string()))?;
        if let Some(ArrivedOn(socket_session)) = parts.extensions.get::<ArrivedOn>()
            && *socket_session != session_id
        {
            return Err(ApiError::forbidden(
                "this token is another session's; use this session's own",
            ));
        }
        if let Err(wait) = state
            .callback_rate
            .take(&session_id, std::time::Instant::now())
        {
            return Err(ApiError::rate_limited(
                state.callback_rate.per_second(),
                wait,
            ));
        }
        match state.store.get_session(&session_id).await? {
            Some(session)
                if session.state.is_kept()
                    && !matches!(session.state, SessionState::Stopping | SessionState::Pooled) =>
            {
                Ok(Self {
                    session,
                    token_expires,
                })
            }
            _ => Err(ApiError::coded(
                ErrorCode::Unauthorized,
                "this token's session has ended",
            )),
        }
    }
}

impl SelfCaller {
    fn owner(&self) -> Principal {
        Principal::user(&self.session.owner)
    }

    fn scope(&self, of_user: bool) -> StateScope {
        if of_user {
            StateScope::User(self.session.owner.clone())
        } else {
            StateScope::Session(self.session.id.clone())
        }
    }
}

/// The session this token is for.
#[utoipa::path(
    get, path = "/api/v1/self", tag = "callback",
    responses((status = 200, body = SelfSession), (status = 401, body = ErrorBody)),
    security(("session_token" = []))
)]
pub async fn get_self(caller: SelfCaller) -> axum::Json<SelfSession> {
    let session = caller.session;
    axum::Json(SelfSession {
        session_id: session.id,
        owner: session.owner,
        template: session.template,
        labels: session.labels,
        expires_at: session.expires_at,
        token_expires_at: chrono::DateTime::from_timestamp(caller.token_expires, 0)
            .unwrap_or_default(),
    })
}

async fn keys_of(state: &AppState, scope: StateScope) -> Result<axum::Json<StateKeys>, ApiError> {
    Ok(axum::Json(StateKeys {
        keys: state.store.list_state(&scope).await?,
    }))
}

async fn value_of(
    state: &AppState,
    scope: StateScope,
    key: &str,
) -> Result<impl IntoResponse + use<>, ApiError> {
    let stored = state
        .store
        .get_state(&scope, checked_key(key)?)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no state under {key:?}")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        stored.value,
    ))
}

async fn write_value(
    state: &AppState,
    scope: StateScope,
    key: &str,
    value: serde_json::Value,
) -> Result<StatusCode, ApiError> {
    let key = checked_key(key)?;
    let json = value.to_string();
    if json.len() > MAX_STATE_VALUE_BYTES {
        return Err(ApiError::coded(
            ErrorCode::PayloadTooLarge,
            format!(
                "a state value is at most {MAX_STATE_VALUE_BYTES} bytes of JSON; this one is {}",
                json.len()
            ),
        ));
    }
    if !state
        .store
        .put_state(&scope, key, &json, MAX_STATE_KEYS)
        .await?
    {
        return Err(ApiError::coded(
            ErrorCode::QuotaExceeded,
            format!("at most {MAX_STATE_KEYS} keys are kept; delete one first"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_value(
    state: &AppState,
    scope: StateScope,
    key: &str,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_state(&scope, checked_key(key)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no state under {key:?}")))
    }
}

fn checked_key(key: &str) -> Result<&str, ApiError> {
    if valid_state_key(key) {
        Ok(key)
    } else {
        Err(ApiError::invalid_request(format!(
            "state key {key:?} must be 1 to {} letters, digits, '.', '_' or '-'",
            berth_proto::callback::MAX_STATE_KEY_LEN
        )))
    }
}

/// The session's state keys: a small key-value store the platform keeps for the session,
/// through hibernation, restarts and crashes, until the session ends.
#[utoipa::path(
    get, path = "/api/v1/self/state", tag = "callback",
    responses((status = 200, body = StateKeys)),
    security(("session_token" = []))
)]
pub async fn list_state(
    State(state): State<AppState>,
    caller: SelfCaller,
) -> Result<axum::Json<StateKeys>, ApiError> {
    keys_of(&state, caller.scope(false)).await
}

/// One value of the session's state, as the JSON it was written as.
#[utoipa::path(
    get, path = "/api/v1/self/state/{key}", tag = "callback",
    params(("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "1 to 128 letters, digits, '.', '_' and '-'")),
    responses((status = 200, description = "The value", body = serde_json::Value), (status = 404, body = ErrorBody)),
    security(("session_token" = []))
)]
pub async fn get_state(
    State(state): State<AppState>,
    caller: SelfCaller,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    value_of(&state, caller.scope(false), &key).await
}

/// Writes one value (any JSON, at most 64 KiB; at most 256 keys).
#[utoipa::path(
    put, path = "/api/v1/self/state/{key}", tag = "callback",
    params(("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "1 to 128 letters, digits, '.', '_' and '-'")),
    request_body(content = serde_json::Value, description = "Any JSON value"),
    responses(
        (status = 204),
        (status = 413, description = "Over 64 KiB", body = ErrorBody),
        (status = 429, description = "256 keys already (`quota_exceeded`)", body = ErrorBody),
    ),
    security(("session_token" = []))
)]
pub async fn put_state(
    State(state): State<AppState>,
    caller: SelfCaller,
    Path(key): Path<String>,
    ApiJson(value): ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    write_value(&state, caller.scope(false), &key, value).await
}

#[utoipa::path(
    delete, path = "/api/v1/self/state/{key}", tag = "callback",
    params(("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "1 to 128 letters, digits, '.', '_' and '-'")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("session_token" = []))
)]
pub async fn delete_state(
    State(state): State<AppState>,
    caller: SelfCaller,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_value(&state, caller.scope(false), &key).await
}

/// The owner's state keys: kept across all their sessions (seed 000's central state).
#[utoipa::path(
    get, path = "/api/v1/self/user-state", tag = "callback",
    responses((status = 200, body = StateKeys)),
    security(("session_token" = []))
)]
pub async fn list_user_state(
    State(state): State<AppState>,
    caller: SelfCaller,
) -> Result<axum::Json<StateKeys>, ApiError> {
    keys_of(&state, caller.scope(true)).await
}

#[utoipa::path(
    get, path = "/api/v1/self/user-state/{key}", tag = "callback",
    params(("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "1 to 128 letters, digits, '.', '_' and '-'")),
    responses((status = 200, description = "The value", body = serde_json::Value), (status = 404, body = ErrorBody)),
    security(("session_token" = []))
)]
pub async fn get_user_state(
    State(state): State<AppState>,
    caller: SelfCaller,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    value_of(&state, caller.scope(true), &key).await
}

#[utoipa::path(
    put, path = "/api/v1/self/user-state/{key}", tag = "callback",
    params(("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "1 to 128 letters, digits, '.', '_' and '-'")),
    request_body(content = serde_json::Value, description = "Any JSON value"),
    responses(
        (status = 204),
        (status = 413, description = "Over 64 KiB", body = ErrorBody),
        (status = 429, description = "256 keys already (`quota_exceeded`)", body = ErrorBody),
    ),
    security(("session_token" = []))
)]
pub async fn put_user_state(
    State(state): State<AppState>,
    caller: SelfCaller,
    Path(key): Path<String>,
    ApiJson(value): ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    write_value(&state, caller.scope(true), &key, value).await
}

#[utoipa::path(
    delete, path = "/api/v1/self/user-state/{key}", tag = "callback",
    params(("key" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "1 to 128 letters, digits, '.', '_' and '-'")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("session_token" = []))
)]
pub async fn delete_user_state(
    State(state): State<AppState>,
    caller: SelfCaller,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove_value(&state, caller.scope(true), &key).await
}

/// A custom event: to whoever watches the session's events WebSocket
/// (`{"type":"custom","name":...,"data":...}`) and into its timeline.
#[utoipa::path(
    post, path = "/api/v1/self/events", tag = "callback",
    request_body = CustomEvent,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("session_token" = []))
)]
pub async fn post_event(
    State(state): State<AppState>,
    caller: SelfCaller,
    ApiJson(event): ApiJson<CustomEvent>,
) -> Result<StatusCode, ApiError> {
    if !valid_event_name(&event.name) {
        return Err(ApiError::invalid_request(format!(
            "event name {:?} must be 1 to 64 letters, digits, '.', '_', '-' or ':'",
            event.name
        )));
    }
    let data = event.data.to_string();
    if data.len() > MAX_EVENT_DATA_BYTES {
        return Err(ApiError::coded(
            ErrorCode::PayloadTooLarge,
            format!("an event's data is at most {MAX_EVENT_DATA_BYTES} bytes of JSON"),
        ));
    }
    let id = &caller.session.id;
    let entry = TimelineEntry::now(id, "custom", &format!("{} {data}", event.name));
    state.store.add_event(&entry).await?;
    let detail = serde_json::json!({ "name": event.name, "data": event.data });
    state
        .webhooks
        .announce("session.custom", &caller.session, detail);
    state.sessions.notify(
        id,
        SessionEvent::Custom {
            name: event.name,
            data: event.data,
        },
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Keeps the session awake `seconds` from now, as its owner's
/// `POST /api/v1/sessions/{id}/keepalive` does.
#[utoipa::path(
    post, path = "/api/v1/self/keepalive", tag = "callback",
    request_body = Keepalive,
    responses((status = 200, body = Session), (status = 422, body = ErrorBody)),
    security(("session_token" = []))
)]
pub async fn keepalive_self(
    State(state): State<AppState>,
    caller: SelfCaller,
    ApiJson(request): ApiJson<Keepalive>,
) -> Result<axum::Json<Session>, ApiError> {
    let id = caller.session.id.clone();
    Ok(axum::Json(
        state
            .sessions
            .keepalive(caller.owner(), id, request.seconds)
            .await?,
    ))
}

/// An app inside says it is ready to serve: `GET /api/v1/sessions/{id}` shows `ready_at` (and
/// `ready_message`) until the session's container changes (a wake, a recovery).
#[utoipa::path(
    post, path = "/api/v1/self/ready", tag = "callback",
    request_body(content = Option<Ready>, description = "May be left out"),
    responses((status = 204), (status = 400, body = ErrorBody)),
    security(("session_token" = []))
)]
pub async fn report_ready(
    State(state): State<AppState>,
    caller: SelfCaller,
    ApiJsonOrDefault(request): ApiJsonOrDefault<Ready>,
) -> Result<StatusCode, ApiError> {
    if request
        .message
        .as_ref()
        .is_some_and(|m| m.chars().count() > 256)
    {
        return Err(ApiError::invalid_request(
            "a ready message is at most 256 characters",
        ));
    }
    Readiness::record(state.store.as_ref(), &caller.session, request.message).await?;
    state
        .store
        .add_event(&TimelineEntry::now(
            &caller.session.id,
            "ready",
            "the app inside is ready",
        ))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! E2B's control-plane REST, on the session manager: a sandbox is a session, its timeout the
//! session's TTL, its metadata the session's labels, pause and resume hibernation and waking.
//! Callers send a Berth token as `X-API-KEY`. A stopped or failed session does not exist here,
//! as an E2B sandbox that was killed or timed out does not.

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use berth_proto::{CreateSession, ErrorCode, Session, SessionState};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::ENVD_VERSION;
use crate::{
    api::{
        AppState,
        error::{ApiError, E2bError},
        extract::bearer,
    },
    auth::Principal,
    sessions::Created,
};

/// The caller: `X-API-KEY` (what the SDKs send), or a bearer token. SDKs up to 2.4x refuse keys
/// other than `e2b_` and hex digits; for them a Berth token travels hex-encoded behind that
/// prefix (docs/e2b.md).
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let unauthorized = || {
        ApiError::coded(
            ErrorCode::Unauthorized,
            "missing or unknown API key: set E2B_API_KEY to a Berth token (docs/e2b.md)",
        )
    };
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(headers))
        .ok_or_else(unauthorized)?;
    let decoded = key
        .strip_prefix("e2b_")
        .and_then(|hex| hex::decode(hex).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    state
        .auth
        .authenticate(decoded.as_deref().unwrap_or(key))
        .await?
        .ok_or_else(unauthorized)
}

/// A JSON body; an empty one is `{}`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes = if bytes.is_empty() { &b"{}"[..] } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::coded(ErrorCode::InvalidJson, format!("invalid body: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: String,
    timeout: Option<u64>,
    metadata: Option<BTreeMap<String, String>>,
    env_vars: Option<BTreeMap<String, String>>,
    auto_pause: Option<bool>,
    secure: Option<bool>,
    /// Spelled so by E2B's earlier OpenAPI document (the SDKs up to 2.4x).
    #[serde(alias = "allow_internet_access")]
    allow_internet_access: Option<bool>,
    /// Any access wakes a hibernated Berth session, whatever this says (docs/e2b.md).
    #[serde(rename = "autoResume")]
    _auto_resume: Option<Value>,
    /// What Berth cannot honour (MCP, volume mounts, network rules, IAM) is
    /// refused by name rather than ignored.
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// `POST /sandboxes` and `/v2/sandboxes`: answers when the sandbox is running. At capacity it
/// answers 503 at once: E2B's clients do not follow Berth's queue.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, E2bError> {
    let caller = caller(&state, &headers).await?;
    let request: NewSandbox = body(&bytes)?;
    if let Some((name, _)) = request.other.iter().find(|(_, v)| !v.is_null()) {
        return Err(ApiError::invalid_request(format!(
            "{name} is not supported by Berth's E2B layer (docs/e2b.md)"
        ))
        .into());
    }
    if request.auto_pause == Some(true) {
        return Err(ApiError::invalid_request(
            "autoPause is not supported: a template's on_expiry = \"hibernate\" does this in Berth",
        )
        .into());
    }
    if request.allow_internet_access == Some(false) {
        return Err(ApiError::invalid_request(
            "allowInternetAccess = false is not supported: use a template whose egress is \"deny\"",
        )
        .into());
    }
    // Every sandbox is secured (its envd needs the access token), so `secure` changes nothing.
    let _ = request.secure;
    let template = state
        .e2b_templates
        .get(&request.template_id)
        .cloned()
        .unwrap_or_else(|| request.template_id.clone());
    let create = CreateSession {
        template,
        ttl_seconds: request.timeout,
        env: request.env_vars.unwrap_or_default(),
        labels: request.metadata.unwrap_or_default(),
        from_snapshot: None,
    };
    let session = match state
        .sessions
        .create_or_queue(caller.clone(), create)
        .await?
    {
        Created::Running(session) => *session,
        Created::Queued(status) => {
            let ticket = status.borrow().ticket.clone();
            // Admitted between the answer and this cancel: the session is then the caller's.
            if let Err(err) = state.sessions.cancel_queued(caller, ticket).await {
                tracing::debug!(%err, "queued E2B create could not be cancelled");
            }
            return Err(ApiError::coded(
                ErrorCode::EngineUnavailable,
                "Berth is at capacity: no sandbox can start now; try again later",
            )
            .into());
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(sandbox(&state, &session, &request.template_id)),
    )
        .into_response())
}

/// E2B's `Sandbox`: what a create, connect or resume answers. Its `domain` is Berth's preview
/// domain, so the SDK's `get_host(port)`, `{port}-{id}.{domain}`, names the session's host
/// preview.
fn sandbox(state: &AppState, session: &Session, alias: &str) -> Value {
    json!({
        "templateID": session.template,
        "alias": alias,
        "sandboxID": session.id,
        "clientID": "berth",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": state.signer.e2b_access_token(&session.id),
        // What the code interpreter's SDK sends to port 49999; the same token.
        "trafficAccessToken": state.signer.e2b_access_token(&session.id),
        "domain": state.preview.domain,
    })
}

/// E2B's `ListedSandbox` and, with `detail`, `SandboxDetail`.
fn describe(state: &AppState, session: &Session, detail: bool) -> Value {
    let template = state.templates.get(&session.template);
    let paused = matches!(
        session.state,
        SessionState::Hibernated | SessionState::Hibernating
    );
    let mut value = json!({
        "templateID": session.template,
        "alias": session.template,
        "sandboxID": session.id,
        "clientID": "berth",
        "startedAt": session.created_at,
        "endAt": session.expires_at,
        "cpuCount": template.map_or(1, |t| t.cpus.ceil() as u64),
        "memoryMB": template.map_or(0, |t| t.memory_mb),
        // The writable layer has no size limit of its own on a plain Docker engine.
        "diskSizeMB": 0,
        "state": if paused { "paused" } else { "running" },
        "envdVersion": ENVD_VERSION,
        "metadata": session.labels,
    });
    if detail {
        value["envdAccessToken"] = json!(state.signer.e2b_access_token(&session.id));
        value["domain"] = json!(state.preview.domain);
    }
    value
}

/// A session the caller may see that has not ended; anything else is E2B's 404.
async fn kept(state: &AppState, caller: &Principal, id: &str) -> Result<Session, ApiError> {
    let session = state.sessions.get(caller, id).await?;
    if session.state.is_kept() {
        Ok(session)
    } else {
        Err(ApiError::not_found(format!("sandbox {id} not found")))
    }
}

/// `GET /sandboxes` and `/v2/sandboxes`: the caller's sandboxes, running and paused;
/// `metadata=k=v&...` (URL-encoded) filters by labels, `state=running,paused` by state.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<Value>>, E2bError> {
    let caller = caller(&state, &headers).await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let mut labels = Vec::new();
    let mut states: Option<Vec<String>> = None;
    for (key, value) in pairs {
        match key.as_str() {
            "metadata" => {
                let filter: Vec<(String, String)> = serde_urlencoded::from_str(&value)
                    .map_err(|e| ApiError::invalid_request(format!("metadata: {e}")))?;
                labels.extend(filter.into_iter().map(|(k, v)| format!("{k}={v}")));
            }
            "state" => {
                let wanted: Vec<String> = value.split(',').map(str::to_owned).collect();
                if let Some(bad) = wanted.iter().find(|s| *s != "running" && *s != "paused") {
                    return Err(ApiError::invalid_request(format!(
                        "state must be running or paused, not {bad:?}"
                    ))
                    .into());
                }
                states = Some(wanted);
            }
            // Every sandbox is answered on one page: `limit` and `nextToken` change nothing.
            "limit" => {
                value
                    .parse::<u32>()
                    .map_err(|_| ApiError::invalid_request("limit must be a number"))?;
            }
            "nextToken" => {}
            other => {
                return Err(ApiError::invalid_request(format!(
                    "unknown query parameter {other:?}"
                ))
                .into());
            }
        }
    }
    let labels = crate::sessions::parse_label_filter(&labels)?;
    let sessions = state.sessions.list(&caller, labels, false).await?;
    let listed = sessions
        .iter()
        .map(|session| describe(&state, session, false))
        .filter(|value| {
            states
                .as_ref()
                .is_none_or(|states| states.iter().any(|s| value["state"] == s.as_str()))
        })
        .collect();
    Ok(Json(listed))
}

/// `GET /sandboxes/{id}`.
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, E2bError> {
    let caller = caller(&state, &headers).await?;
    let session = kept(&state, &caller, &id).await?;
    Ok(Json(describe(&state, &session, true)))
}

/// `DELETE /sandboxes/{id}`: answers once the container is gone.
pub async fn kill(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    let caller = caller(&state, &headers).await?;
    kept(&state, &caller, &id).await?;
    state.sessions.delete(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    timeout: u64,
}

/// `POST /sandboxes/{id}/timeout`: the sandbox now ends `timeout` seconds from now.
pub async fn set_timeout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, E2bError> {
    let caller = caller(&state, &headers).await?;
    let Timeout { timeout } = body(&bytes)?;
    kept(&state, &caller, &id).await?;
    state.sessions.extend(caller, id, timeout).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    #[serde(default)]
    duration: Option<u64>,
}

/// `POST /sandboxes/{id}/refreshes`: keeps the sandbox `duration` seconds (default 60) more
/// from now.
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, E2bError> {
    let caller = caller(&state, &headers).await?;
    let Refresh { duration } = body(&bytes)?;
    let session = kept(&state, &caller, &id).await?;
    let left = (session.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(0) as u64;
    let wanted = duration.unwrap_or(60);
    if wanted > left {
        state.sessions.extend(caller, id, wanted).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pause {
    /// Berth always keeps the files and never the memory: `true` (the SDKs' default) is taken
    /// to mean "pause", as the processes would be lost on any engine restart anyway.
    #[serde(default, rename = "memory")]
    _memory: Option<bool>,
    #[serde(default, rename = "requireHealthyGuest")]
    _require_healthy_guest: Option<bool>,
}

/// `POST /sandboxes/{id}/pause`: hibernation; 409 when it is already paused.
pub async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, E2bError> {
    let caller = caller(&state, &headers).await?;
    let _: Pause = body(&bytes)?;
    let session = kept(&state, &caller, &id).await?;
    if session.state == SessionState::Hibernated {
        return Err(ApiError::coded(
            ErrorCode::Conflict,
            format!("sandbox {id} is already paused"),
        )
        .into());
    }
    state.sessions.hibernate(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resume {
    timeout: Option<u64>,
    #[serde(default)]
    auto_pause: Option<bool>,
    /// Berth's resume never restores memory; either value starts it from its files.
    #[serde(default, rename = "memory")]
    _memory: Option<bool>,
}

/// `POST /sandboxes/{id}/resume` (older SDKs): wakes a paused sandbox; 409 when it runs.
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, E2bError> {
    let caller = caller(&state, &headers).await?;
    let request: Resume = body(&bytes)?;
    let session = kept(&state, &caller, &id).await?;
    if session.state == SessionState::Running {
        return Err(ApiError::coded(
            ErrorCode::Conflict,
            format!("sandbox {id} is already running"),
        )
        .into());
    }
    wake(&state, caller, &id, request).await
}

/// `POST /sandboxes/{id}/connect` and `/v2/...`: the sandbox, running: 201 when it had to be
/// woken, 200 when it was running. A timeout longer than what is left extends it.
pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, E2bError> {
    let caller = caller(&state, &headers).await?;
    let request: Resume = body(&bytes)?;
    let session = kept(&state, &caller, &id).await?;
    if session.state == SessionState::Running {
        if let Some(timeout) = request.timeout {
            let left = (session.expires_at - chrono::Utc::now())
                .num_seconds()
                .max(0) as u64;
            if timeout > left {
                state.sessions.extend(caller, id.clone(), timeout).await?;
            }
        }
        return Ok((
            StatusCode::OK,
            Json(sandbox(&state, &session, &session.template)),
        )
            .into_response());
    }
    wake(&state, caller, &id, request).await
}

async fn wake(
    state: &AppState,
    caller: Principal,
    id: &str,
    request: Resume,
) -> Result<Response, E2bError> {
    if request.auto_pause == Some(true) {
        return Err(ApiError::invalid_request(
            "autoPause is not supported: a template's on_expiry = \"hibernate\" does this in Berth",
        )
        .into());
    }
    let mut session = state.sessions.resume(caller.clone(), id.to_owned()).await?;
    if let Some(timeout) = request.timeout {
        session = state
            .sessions
            .extend(caller, id.to_owned(), timeout)
            .await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(sandbox(state, &session, &session.template)),
    )
        .into_response())
}

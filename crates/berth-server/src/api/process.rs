//! `/api/v1/sessions/{id}/exec`, `/exec/stream`, `/terminal` and `/tickets`: running things in
//! a session.

use axum::{
    body::Body,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use berth_proto::{
    ErrorBody,
    process::{
        ExecOnce, ExecRequest, ExecResult, ProcessInfo, ProcessList, PtySize, SignalRequest,
        TerminalQuery,
    },
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    AppState,
    error::ApiError,
    extract::websocket_caller,
    files::relay,
    noted::{Note, relay_noted},
};
use crate::{
    auth::{Principal, TICKET_LIFETIME},
    proxy::WebSocketRequest,
};

/// Run a command and answer when it ends, with its exit code and output (1 MiB per stream at
/// most). On `timeout_ms` the whole process group is killed and `timed_out` is set.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/exec", tag = "processes", operation_id = "exec",
    params(("id" = String, Path)), request_body = ExecOnce,
    responses(
        (status = 200, body = ExecResult),
        (status = 400, description = "Empty command, or it cannot be started", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session is not running", body = ErrorBody),
        (status = 422, description = "No such program or working directory in the session", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn exec(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let parts = (Method::POST, None, &h, body);
    relay_noted(&s, &caller, &id, "/exec", parts, Note::Exec).await
}

/// WebSocket carrying one process, E2B envd style. The first text frame is an `ExecRequest`.
/// Then the client sends binary frames (stdin) and text frames `{"type":"close_stdin"}` or
/// `{"type":"signal","signal":15}`; the server sends `{"type":"start","pid":..}`, binary frames
/// whose first byte is 1 (stdout) or 2 (stderr), and `{"type":"end","exit_code":..}`.
/// Authenticate with the `Authorization` header or a `ticket` query parameter.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/exec/stream", tag = "processes",
    params(("id" = String, Path), ("ticket" = Option<String>, Query, description = "From POST .../tickets, for browsers")),
    responses((status = 101, description = "Switching to WebSocket"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn exec_stream(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketRequest,
) -> Result<Response, ApiError> {
    let (caller, _) = websocket_caller(
        &s,
        &headers,
        &id,
        query.as_deref(),
        berth_proto::token::Scope::Exec,
    )
    .await?;
    let endpoint = s.sessions.agent_endpoint(&caller, &id).await?;
    let tap = s.sessions.tap(&id, false);
    crate::proxy::websocket(endpoint, "/exec/stream", upgrade, tap).await
}

/// WebSocket terminal. Binary frames carry raw bytes both ways; text frames carry JSON control
/// messages: `{"type":"resize","cols":..,"rows":..}` from the client, `{"type":"ready",
/// "terminal_id":..}` first and `{"type":"exit","code":..}` last from the server. Reattach with
/// `terminal_id` (the scrollback is replayed first); watch without typing with `readonly=true`.
/// Authenticate with the `Authorization` header or a `ticket` query parameter.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/terminal", tag = "processes",
    params(("id" = String, Path), TerminalQuery, ("ticket" = Option<String>, Query, description = "From POST .../tickets, for browsers")),
    responses(
        (status = 101, description = "Switching to WebSocket"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown session or terminal", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn terminal(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketRequest,
) -> Result<Response, ApiError> {
    let (caller, query) = websocket_caller(
        &s,
        &headers,
        &id,
        query.as_deref(),
        berth_proto::token::Scope::Exec,
    )
    .await?;
    let query: TerminalQuery =
        serde_urlencoded::from_str(&query).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let endpoint = s.sessions.agent_endpoint(&caller, &id).await?;
    let target = format!(
        "/terminal?{}",
        serde_urlencoded::to_string(&query).unwrap_or_default()
    );
    let tap = s.sessions.tap(&id, true);
    // What was run in the terminal reaches the timeline once the user leaves it.
    let sessions = s.sessions.clone();
    let collect = async move { sessions.collect_journal(&id).await };
    crate::proxy::websocket_then(endpoint, &target, upgrade, tap, collect).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketIssued {
    /// Pass as `?ticket=` to a WebSocket route of this session; single use.
    pub ticket: String,
    pub expires_in_seconds: u64,
}

/// A short-lived, single-use ticket for this session's WebSockets, for clients (browsers) that
/// cannot set an `Authorization` header on a WebSocket.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/tickets", tag = "processes",
    params(("id" = String, Path)),
    responses((status = 201, body = TicketIssued), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn ticket(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.sessions.get(&caller, &id).await?;
    let ticket = s.tickets.issue(caller, &id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TicketIssued {
            ticket,
            expires_in_seconds: TICKET_LIFETIME.as_secs(),
        }),
    ))
}

/// The agent path of a process, refusing ids that could reach another agent route.
fn process_route(pid: &str, rest: &str) -> Result<String, ApiError> {
    if pid.is_empty() || !pid.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::not_found(format!("process {pid:?} not found")));
    }
    Ok(format!("/processes/{pid}{rest}"))
}

/// Start a background process. It keeps running without any client; attach to it, write its
/// stdin and signal it by the returned id.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/processes", tag = "processes",
    params(("id" = String, Path)), request_body = ExecRequest,
    responses(
        (status = 201, body = ProcessInfo),
        (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, description = "No such program or working directory in the session", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn start_process(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    relay_noted(
        &s,
        &caller,
        &id,
        "/processes",
        (Method::POST, None, &h, body),
        Note::ProcessStarted,
    )
    .await
}

/// Background processes: running ones and recently ended ones.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/processes", tag = "processes",
    params(("id" = String, Path)),
    responses((status = 200, body = ProcessList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_processes(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        "/processes",
        (Method::GET, None, &h, Body::empty()),
    )
    .await
}

/// WebSocket attached to a process by id, in the `exec/stream` format: `start`, the recent
/// output, live output, `end`. Any number of clients may attach; stdin and signals sent here
/// reach the process.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/processes/{pid}/attach", tag = "processes",
    params(("id" = String, Path), ("pid" = String, Path, description = "Process id from POST .../processes"),
           ("ticket" = Option<String>, Query)),
    responses((status = 101, description = "Switching to WebSocket"), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn attach_process(
    State(s): State<AppState>,
    Path((id, pid)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketRequest,
) -> Result<Response, ApiError> {
    let (caller, _) = websocket_caller(
        &s,
        &headers,
        &id,
        query.as_deref(),
        berth_proto::token::Scope::Exec,
    )
    .await?;
    let endpoint = s.sessions.agent_endpoint(&caller, &id).await?;
    let tap = s.sessions.tap(&id, false);
    crate::proxy::websocket(endpoint, &process_route(&pid, "/attach")?, upgrade, tap).await
}

/// Write the body to a process's standard input.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/processes/{pid}/stdin", tag = "processes",
    params(("id" = String, Path), ("pid" = String, Path)),
    request_body(content = super::extract::RawBytes, content_type = "application/octet-stream"),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "Stdin is closed", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn write_process_stdin(
    State(s): State<AppState>,
    caller: Principal,
    Path((id, pid)): Path<(String, String)>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        &process_route(&pid, "/stdin")?,
        (Method::POST, None, &h, body),
    )
    .await
}

/// Close a process's standard input.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/processes/{pid}/stdin/close", tag = "processes",
    params(("id" = String, Path), ("pid" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn close_process_stdin(
    State(s): State<AppState>,
    caller: Principal,
    Path((id, pid)): Path<(String, String)>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        &process_route(&pid, "/stdin/close")?,
        (Method::POST, None, &h, Body::empty()),
    )
    .await
}

/// Send a signal to a process's whole group.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/processes/{pid}/signal", tag = "processes",
    params(("id" = String, Path), ("pid" = String, Path)), request_body = SignalRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Already ended", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn signal_process(
    State(s): State<AppState>,
    caller: Principal,
    Path((id, pid)): Path<(String, String)>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        &process_route(&pid, "/signal")?,
        (Method::POST, None, &h, body),
    )
    .await
}

/// Resize the terminal of a process started with `pty`.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/processes/{pid}/resize", tag = "processes",
    params(("id" = String, Path), ("pid" = String, Path)), request_body = PtySize,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Not started with pty", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn resize_process(
    State(s): State<AppState>,
    caller: Principal,
    Path((id, pid)): Path<(String, String)>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        &process_route(&pid, "/resize")?,
        (Method::POST, None, &h, body),
    )
    .await
}

//! `/api/v1/sessions/{id}/files...`: relayed to the session's agent, bodies streaming.
//! The path is always the `path` query parameter, so any file name works.

use axum::{
    body::Body,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, Method, header},
    response::Response,
};
use berth_proto::{
    ErrorBody, ErrorCode,
    files::{FileEntry, FileEvent, FileList, MakeDir, MoveFile},
};

use super::{
    AppState,
    error::ApiError,
    noted::{Note, relay_noted},
};
use crate::auth::Principal;

/// Relays one request to `agent_path` on the session's agent, query and body untouched.
pub(super) async fn relay(
    state: &AppState,
    caller: &Principal,
    id: &str,
    agent_path: &str,
    (method, query, headers, body): (Method, Option<String>, &HeaderMap, Body),
) -> Result<Response, ApiError> {
    let endpoint = state.sessions.agent_endpoint(caller, id).await?;
    state.sessions.touch(id);
    let target = match query {
        Some(query) => format!("{agent_path}?{query}"),
        None => agent_path.to_owned(),
    };
    crate::proxy::http(&state.agent, endpoint, method, &target, headers, body).await
}

/// List a directory: directories first, then by name.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/files", tag = "files", operation_id = "list_files",
    params(("id" = String, Path), ("path" = String, Query, min_length = 1, pattern = "^[^\\u0000]*$", description = "Directory; relative paths start at /home/user")),
    responses(
        (status = 200, body = FileList),
        (status = 400, description = "Malformed path", body = ErrorBody),
        (status = 403, description = "Permission denied", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not a directory, or the session is not running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        "/files",
        (Method::GET, q, &h, Body::empty()),
    )
    .await
}

/// Delete a file, or a directory (non-empty ones only with `recursive=true`).
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}/files", tag = "files", operation_id = "remove_file",
    params(("id" = String, Path), ("path" = String, Query, min_length = 1, pattern = "^[^\\u0000]*$"), ("recursive" = Option<bool>, Query)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "Directory not empty", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn remove(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    relay_noted(
        &s,
        &caller,
        &id,
        "/files",
        (Method::DELETE, q, &h, Body::empty()),
        Note::FileDeleted,
    )
    .await
}

/// One entry: type, size, mode, mtime (symlinks are not followed).
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/files/stat", tag = "files",
    params(("id" = String, Path), ("path" = String, Query, min_length = 1, pattern = "^[^\\u0000]*$")),
    responses((status = 200, body = FileEntry), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn stat(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        "/files/stat",
        (Method::GET, q, &h, Body::empty()),
    )
    .await
}

/// Download a file's bytes, streamed.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/files/content", tag = "files",
    params(("id" = String, Path), ("path" = String, Query, min_length = 1, pattern = "^[^\\u0000]*$")),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A directory", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        "/files/content",
        (Method::GET, q, &h, Body::empty()),
    )
    .await
}

/// Upload a file: the body is the bytes, streamed; missing parents are created; the old file
/// is replaced only once the upload is complete.
#[utoipa::path(
    put, path = "/api/v1/sessions/{id}/files/content", tag = "files",
    params(("id" = String, Path), ("path" = String, Query, min_length = 1, pattern = "^[^\\u0000]*$")),
    request_body(content = Option<super::extract::RawBytes>, content_type = "application/octet-stream", description = "The file; empty when left out"),
    responses(
        (status = 200, body = FileEntry),
        (status = 409, description = "A directory is in the way", body = ErrorBody),
        (status = 413, description = "Over the configured size limit", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn write(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // A declared size over the limit is refused before a byte is sent on.
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|size| size > s.max_file_bytes) {
        return Err(ApiError::coded(
            ErrorCode::PayloadTooLarge,
            format!(
                "the file is larger than the session's limit of {} bytes",
                s.max_file_bytes
            ),
        ));
    }
    refuse_past_disk_limit(&s, &caller, &id, declared).await?;
    relay_noted(
        &s,
        &caller,
        &id,
        "/files/content",
        (Method::PUT, q, &h, body),
        Note::FileWritten,
    )
    .await
}

/// An upload of `declared` bytes that would take the session past its template's `disk_mb`
/// is refused before a byte reaches it: the disk watchdog would stop the session for it.
async fn refuse_past_disk_limit(
    s: &AppState,
    caller: &Principal,
    id: &str,
    declared: Option<u64>,
) -> Result<(), ApiError> {
    let Some(declared) = declared else {
        return Ok(());
    };
    refuse_past_room(s.sessions.disk_room(caller, id).await, declared)
}

/// Refuses an upload of `declared` bytes into a session with `room` bytes left.
pub(crate) fn refuse_past_room(room: Option<u64>, declared: u64) -> Result<(), ApiError> {
    match room {
        Some(room) if declared > room => Err(ApiError::coded(
            ErrorCode::PayloadTooLarge,
            format!(
                "the upload ({declared} bytes) would take the session past its disk limit: \
                 {room} bytes are left (the template's disk_mb); delete files first"
            ),
        )),
        _ => Ok(()),
    }
}

/// Create a directory and its missing parents.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/files/mkdir", tag = "files",
    params(("id" = String, Path)), request_body = MakeDir,
    responses((status = 200, body = FileEntry), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn mkdir(
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
        "/files/mkdir",
        (Method::POST, None, &h, body),
        Note::DirectoryCreated,
    )
    .await
}

/// Rename or move; refuses to replace an existing target.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/files/move", tag = "files",
    params(("id" = String, Path)), request_body = MoveFile,
    responses((status = 200, body = FileEntry), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn rename(
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
        "/files/move",
        (Method::POST, None, &h, body),
        Note::FileMoved,
    )
    .await
}

/// Download a directory as a tar (symlinks kept), streamed.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/files/archive", tag = "files",
    params(("id" = String, Path), ("path" = String, Query, min_length = 1, pattern = "^[^\\u0000]*$")),
    responses((status = 200, content_type = "application/x-tar"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn download_archive(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    relay(
        &s,
        &caller,
        &id,
        "/files/archive",
        (Method::GET, q, &h, Body::empty()),
    )
    .await
}

/// Upload a tar and unpack it into a directory (created if missing), keeping modes and symlinks.
#[utoipa::path(
    put, path = "/api/v1/sessions/{id}/files/archive", tag = "files",
    params(("id" = String, Path), ("path" = String, Query, min_length = 1, pattern = "^[^\\u0000]*$")),
    request_body(content = Option<super::extract::RawBytes>, content_type = "application/x-tar", description = "A tar; nothing is unpacked when left out"),
    responses(
        (status = 204),
        (status = 400, description = "Not a tar", body = ErrorBody),
        (status = 413, description = "Past the session's disk limit", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload_archive(
    State(s): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    refuse_past_disk_limit(&s, &caller, &id, declared).await?;
    relay_noted(
        &s,
        &caller,
        &id,
        "/files/archive",
        (Method::PUT, q, &h, body),
        Note::FilesUploaded,
    )
    .await
}

/// WebSocket of change events under a directory (subdirectories too unless `recursive=false`):
/// text frames `{"change":"created"|"modified"|"removed","path":...}`. Authenticate with the
/// `Authorization` header or a `ticket` query parameter.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/files/watch", tag = "files",
    params(("id" = String, Path), ("path" = String, Query, min_length = 1, pattern = "^[^\\u0000]*$"), ("recursive" = Option<bool>, Query),
           ("ticket" = Option<String>, Query, description = "From POST .../tickets, for browsers")),
    responses(
        (status = 101, description = "Switching to WebSocket; frames are FileEvent", body = FileEvent),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not a directory", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn watch(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: crate::proxy::WebSocketRequest,
) -> Result<Response, ApiError> {
    let (caller, rest) = super::extract::websocket_caller(
        &s,
        &headers,
        &id,
        query.as_deref(),
        berth_proto::token::Scope::Files,
    )
    .await?;
    let endpoint = s.sessions.agent_endpoint(&caller, &id).await?;
    let tap = s.sessions.tap(&id, false);
    crate::proxy::websocket(endpoint, &format!("/files/watch?{rest}"), upgrade, tap).await
}

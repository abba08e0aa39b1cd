//! The seed's WebContainer-compatible REST: `/webcontainer/boot`, then a container's files,
//! commands and status under `/webcontainer/{id}/...`. Relative paths start at
//! `compat.workdir`; a path in the URL is URL-encoded (`encodeURIComponent`), so any name works.

use std::collections::{BTreeMap, HashMap};

use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use super::{
    Caller, CompatResult, ContainerInfo, answer,
    containers::start,
    workspace::{self, Contents, Encoding, TreeNode, Workspace, decode},
};
use crate::api::{AppState, error::ApiError};

/// A JSON body, its errors Berth's (`invalid_json`, `payload_too_large`) in the compat shape.
fn body<T: DeserializeOwned>(bytes: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = bytes?;
    let bytes = if bytes.is_empty() {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::coded(
            berth_proto::ErrorCode::InvalidJson,
            format!("invalid request body: {e}"),
        )
    })
}

/// The answer of a change to one path: `{success, path}`.
fn done(path: &str, set_cookie: Option<axum::http::HeaderValue>) -> axum::response::Response {
    answer(
        StatusCode::OK,
        json!({ "success": true, "path": path }),
        set_cookie,
    )
}

fn at_workdir(state: &AppState, path: &str) -> String {
    workspace::resolve(&state.compat.workdir, path)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    #[serde(default)]
    files: Option<BTreeMap<String, TreeNode>>,
}

/// `POST /webcontainer/boot {files?}`: a new container with `files` mounted in its working
/// directory.
pub async fn boot(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> CompatResult {
    let request: Boot = body(bytes)?;
    // A boot is whole or not at all: files that cannot be mounted delete the container.
    let session = start(&state, &caller, move |state, workspace| async move {
        match &request.files {
            Some(files) => workspace
                .mount(&state, &state.compat.workdir, files)
                .await
                .map(drop),
            None => Ok(()),
        }
    })
    .await?;
    let info = ContainerInfo::of(&state, &headers, &session);
    Ok(answer(
        StatusCode::CREATED,
        json!({
            "containerId": info.id,
            "url": info.preview_url,
            "status": info.status,
            "websocketUrl": info.websocket_url,
            "workdir": state.compat.workdir,
        }),
        set_cookie,
    ))
}

/// `GET /webcontainer/{id}/status`.
pub async fn status(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> CompatResult {
    let session = state.sessions.get(&caller, &id).await?;
    let info = ContainerInfo::of(&state, &headers, &session);
    Ok(answer(
        StatusCode::OK,
        json!({ "containerId": id, "status": info.status, "state": info.state }),
        set_cookie,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    files: BTreeMap<String, TreeNode>,
    /// Where, relative to the working directory; the working directory itself by default.
    #[serde(default)]
    mount_point: Option<String>,
}

/// `POST /webcontainer/{id}/mount {files, mountPoint?}`.
pub async fn mount(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> CompatResult {
    let request: Mount = body(bytes)?;
    let workspace = Workspace::open(&state, &caller, &id).await?;
    let at = at_workdir(&state, request.mount_point.as_deref().unwrap_or_default());
    let files = workspace.mount(&state, &at, &request.files).await?;
    Ok(answer(
        StatusCode::OK,
        json!({ "success": true, "files": files, "mountPoint": at }),
        set_cookie,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spawn {
    command: String,
    /// With `args`, `command` is the program and these its arguments, as WebContainer's
    /// `spawn(command, args)`; without, `command` is a shell line (`sh -c`), as the seed ran it.
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    options: SpawnOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnOptions {
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Milliseconds before the command's process group is killed.
    #[serde(default)]
    timeout: Option<u64>,
}

/// `POST /webcontainer/{id}/spawn`: runs the command to its end; answers its real exit code and
/// output (`output` is stdout then stderr; the gateway and the TypeScript package stream).
pub async fn spawn(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> CompatResult {
    let request: Spawn = body(bytes)?;
    let workspace = Workspace::open(&state, &caller, &id).await?;
    let cmd = workspace::command(request.command, request.args);
    let cwd = at_workdir(&state, request.options.cwd.as_deref().unwrap_or_default());
    let result = workspace
        .run(
            &state,
            cmd,
            &cwd,
            request.options.env,
            request.options.timeout,
        )
        .await?;
    Ok(answer(
        StatusCode::OK,
        json!({
            "exitCode": result.exit_code,
            "signal": result.signal,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "output": format!("{}{}", result.stdout, result.stderr),
            "timedOut": result.timed_out,
            "truncated": result.truncated,
        }),
        set_cookie,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    path: String,
    #[serde(alias = "content")]
    contents: String,
    #[serde(default)]
    encoding: Encoding,
}

/// `POST /webcontainer/{id}/fs/writeFile {path, contents, encoding?}`: the file is exactly
/// `contents`, parents made.
pub async fn write_file(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> CompatResult {
    let request: WriteFile = body(bytes)?;
    let contents = decode(&request.contents, request.encoding)?;
    let workspace = Workspace::open(&state, &caller, &id).await?;
    let path = at_workdir(&state, &request.path);
    workspace.write(&state, &path, contents).await?;
    Ok(done(&path, set_cookie))
}

/// The path in `.../readFile/{*path}` and `.../readdir/{*path}`, decoded; the working
/// directory when the route has none.
fn url_path(state: &AppState, params: &HashMap<String, String>) -> String {
    at_workdir(
        state,
        params.get("path").map(String::as_str).unwrap_or_default(),
    )
}

/// `GET /webcontainer/{id}/fs/readFile/{path}`: `{path, contents, encoding}`: text, or base64
/// when the file is not UTF-8.
pub async fn read_file(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(params): Path<HashMap<String, String>>,
) -> CompatResult {
    let id = params.get("id").map(String::as_str).unwrap_or_default();
    let workspace = Workspace::open(&state, &caller, id).await?;
    let path = url_path(&state, &params);
    let Contents { contents, encoding } = Contents::of(workspace.read(&state, &path).await?);
    Ok(answer(
        StatusCode::OK,
        json!({ "path": path, "contents": contents, "encoding": encoding }),
        set_cookie,
    ))
}

/// `GET /webcontainer/{id}/fs/readdir/{path}`: directories first, then by name.
pub async fn readdir(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(params): Path<HashMap<String, String>>,
) -> CompatResult {
    let id = params.get("id").map(String::as_str).unwrap_or_default();
    let workspace = Workspace::open(&state, &caller, id).await?;
    let path = url_path(&state, &params);
    let entries = workspace.readdir(&state, &path).await?;
    Ok(answer(StatusCode::OK, entries, set_cookie))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRequest {
    path: String,
    /// Accepted for Node's signature: parents are always made (`mkdir`); required to remove a
    /// non-empty directory (`rm`).
    #[serde(default)]
    recursive: bool,
    /// `rm` of a missing path is no error.
    #[serde(default)]
    force: bool,
}

/// `POST /webcontainer/{id}/fs/mkdir {path, recursive?}`.
pub async fn mkdir(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> CompatResult {
    let request: PathRequest = body(bytes)?;
    let workspace = Workspace::open(&state, &caller, &id).await?;
    let path = at_workdir(&state, &request.path);
    workspace.mkdir(&state, &path).await?;
    Ok(done(&path, set_cookie))
}

/// `DELETE /webcontainer/{id}/fs/rm {path, recursive?, force?}` (a JSON body, as the seed's
/// frontend sends it).
pub async fn rm(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> CompatResult {
    let request: PathRequest = body(bytes)?;
    let workspace = Workspace::open(&state, &caller, &id).await?;
    let path = at_workdir(&state, &request.path);
    workspace
        .remove(&state, &path, request.recursive, request.force)
        .await?;
    Ok(done(&path, set_cookie))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rename {
    old_path: String,
    new_path: String,
}

/// `POST /webcontainer/{id}/fs/rename {oldPath, newPath}`: replaces `newPath`, as `fs.rename`.
pub async fn rename(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> CompatResult {
    let request: Rename = body(bytes)?;
    let workspace = Workspace::open(&state, &caller, &id).await?;
    let (from, to) = (
        at_workdir(&state, &request.old_path),
        at_workdir(&state, &request.new_path),
    );
    workspace.rename(&state, &from, &to).await?;
    Ok(done(&to, set_cookie))
}

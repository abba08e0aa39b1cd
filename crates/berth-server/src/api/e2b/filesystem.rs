//! envd's `filesystem.Filesystem` service over the agent's file routes.

use std::path::Path;

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, Method},
    response::{IntoResponse, Response},
};
use berth_proto::{
    ErrorCode,
    files::{FileChange, FileEntry, FileEvent, FileKind, FileList},
};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{
    connect::{self, invalid},
    envd::{Sandbox, sandbox},
};
use crate::{
    api::{
        AppState,
        error::{ApiError, ConnectError},
    },
    proxy::encode_query,
};

/// The deepest `ListDir` walks: each level is one call to the agent per directory.
const MAX_DEPTH: u32 = 16;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PathRequest {
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListDirRequest {
    path: String,
    #[serde(default)]
    depth: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MoveRequest {
    source: String,
    destination: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct WatchDirRequest {
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
    #[serde(default, rename = "includeEntry")]
    _include_entry: bool,
    #[serde(default, rename = "allowNetworkMounts")]
    _allow_network_mounts: bool,
}

/// envd's `EntryInfo`. Every file of a session belongs to its user.
fn entry_info(entry: &FileEntry) -> Value {
    let kind = match entry.kind {
        FileKind::File => "FILE_TYPE_FILE",
        FileKind::Dir => "FILE_TYPE_DIRECTORY",
        FileKind::Symlink | FileKind::Other => "FILE_TYPE_UNSPECIFIED",
    };
    let mut info = json!({
        "name": entry.name,
        "type": kind,
        "path": entry.path,
        // int64 travels as a string in protobuf's JSON.
        "size": entry.size.to_string(),
        "mode": entry.mode,
        "permissions": permissions(entry.kind, entry.mode),
        "owner": "user",
        "group": "user",
        "modifiedTime": entry.mtime.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "isSymlink": entry.kind == FileKind::Symlink,
    });
    if let Some(target) = &entry.target {
        info["symlinkTarget"] = json!(target);
    }
    info
}

/// `ls -l`'s first column, as Go's `FileMode.String()` writes it.
fn permissions(kind: FileKind, mode: u32) -> String {
    let mut text = String::with_capacity(10);
    text.push(match kind {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'L',
        FileKind::File | FileKind::Other => '-',
    });
    for (bit, c) in (0..9).rev().zip("rwxrwxrwx".chars()) {
        text.push(if mode & (1 << bit) != 0 { c } else { '-' });
    }
    text
}

async fn stat_path(state: &AppState, sandbox: &Sandbox, path: &str) -> Result<FileEntry, ApiError> {
    let target = format!("/files/stat?path={}", encode_query(path));
    sandbox.call(state, Method::GET, &target, None).await
}

fn answer(result: Result<Value, ConnectError>) -> Response {
    match result {
        Ok(message) => connect::reply(message),
        Err(err) => err.into_response(),
    }
}

/// `Stat`.
pub async fn stat(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    answer(
        async {
            let request: PathRequest = connect::unary(&headers, body).await?;
            let sandbox = sandbox(&state, &headers).await?;
            let entry = stat_path(&state, &sandbox, &request.path).await?;
            Ok(json!({ "entry": entry_info(&entry) }))
        }
        .await,
    )
}

/// `MakeDir`: with its missing parents; `already_exists` when the path is taken.
pub async fn make_dir(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    answer(
        async {
            let request: PathRequest = connect::unary(&headers, body).await?;
            let sandbox = sandbox(&state, &headers).await?;
            match stat_path(&state, &sandbox, &request.path).await {
                Ok(_) => {
                    return Err(ConnectError::already_exists(format!(
                        "{} already exists",
                        request.path
                    )));
                }
                Err(err) if err.code == ErrorCode::NotFound => {}
                Err(err) => return Err(err.into()),
            }
            let entry: FileEntry = sandbox
                .call(
                    &state,
                    Method::POST,
                    "/files/mkdir",
                    Some(json!({ "path": request.path })),
                )
                .await?;
            Ok(json!({ "entry": entry_info(&entry) }))
        }
        .await,
    )
}

/// `Move`: renames; the destination must not exist.
pub async fn rename(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    answer(
        async {
            let request: MoveRequest = connect::unary(&headers, body).await?;
            let sandbox = sandbox(&state, &headers).await?;
            sandbox
                .call::<Value>(
                    &state,
                    Method::POST,
                    "/files/move",
                    Some(json!({ "from": request.source, "to": request.destination })),
                )
                .await?;
            let entry = stat_path(&state, &sandbox, &request.destination).await?;
            Ok(json!({ "entry": entry_info(&entry) }))
        }
        .await,
    )
}

/// `ListDir`: entries down to `depth` levels (1 when 0).
pub async fn list_dir(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    answer(
        async {
            let request: ListDirRequest = connect::unary(&headers, body).await?;
            if request.depth > MAX_DEPTH {
                return Err(invalid(format!("depth may be at most {MAX_DEPTH}")));
            }
            let sandbox = sandbox(&state, &headers).await?;
            let mut entries = Vec::new();
            let mut level = vec![request.path];
            for _ in 0..request.depth.max(1) {
                let mut next = Vec::new();
                for dir in level {
                    let target = format!("/files?path={}", encode_query(&dir));
                    let list: FileList = sandbox.call(&state, Method::GET, &target, None).await?;
                    for entry in list.entries {
                        if entry.kind == FileKind::Dir {
                            next.push(entry.path.clone());
                        }
                        entries.push(entry_info(&entry));
                    }
                }
                level = next;
            }
            Ok(json!({ "entries": entries }))
        }
        .await,
    )
}

/// `Remove`: a file, or a directory with everything in it.
pub async fn remove(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    answer(
        async {
            let request: PathRequest = connect::unary(&headers, body).await?;
            let sandbox = sandbox(&state, &headers).await?;
            let target = format!("/files?path={}&recursive=true", encode_query(&request.path));
            sandbox
                .call::<Value>(&state, Method::DELETE, &target, None)
                .await?;
            Ok(json!({}))
        }
        .await,
    )
}

/// The absolute path of the directory at `path`, which must be one.
pub(super) async fn stat_dir(
    state: &AppState,
    sandbox: &Sandbox,
    path: &str,
) -> Result<String, ConnectError> {
    let dir = stat_path(state, sandbox, path).await?;
    if dir.kind != FileKind::Dir {
        return Err(invalid(format!("{path} is not a directory")));
    }
    Ok(dir.path)
}

/// The next change the agent reports on a watch socket, as envd's `FilesystemEvent`; `None`
/// once the socket has closed.
async fn next_event(socket: &mut crate::proxy::AgentSocket, dir: &str) -> Option<Value> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => match serde_json::from_str::<FileEvent>(&text) {
                Ok(event) => return Some(envd_event(&event, dir)),
                Err(_) => continue,
            },
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A change as envd's `FilesystemEvent`, named relative to the watched directory `dir`.
pub(super) fn envd_event(event: &FileEvent, dir: &str) -> Value {
    let name = Path::new(&event.path)
        .strip_prefix(dir)
        .map_or(event.path.clone(), |p| p.to_string_lossy().into_owned());
    let kind = match event.change {
        FileChange::Created => "EVENT_TYPE_CREATE",
        FileChange::Modified => "EVENT_TYPE_WRITE",
        FileChange::Removed => "EVENT_TYPE_REMOVE",
    };
    json!({ "name": name, "type": kind })
}

/// `WatchDir` (server stream): a start event, then one event per change under the directory,
/// until the client goes.
pub async fn watch_dir(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let keepalive = connect::keepalive(&headers);
    let opened = async {
        let request: WatchDirRequest = connect::stream_request(&headers, body).await?;
        let sandbox = sandbox(&state, &headers).await?;
        let dir = stat_dir(&state, &sandbox, &request.path).await?;
        let target = format!(
            "/files/watch?path={}&recursive={}",
            encode_query(&dir),
            request.recursive
        );
        let socket = sandbox.websocket(&target).await?;
        Ok::<_, ConnectError>((dir, socket))
    };
    let (response, stream) = connect::stream();
    let (dir, mut socket) = match opened.await {
        Ok(opened) => opened,
        Err(err) => {
            stream.end(Some(err)).await;
            return response;
        }
    };
    tokio::spawn(async move {
        if !stream.send(json!({ "start": {} })).await {
            return;
        }
        let mut ticks = tokio::time::interval(keepalive);
        ticks.reset();
        loop {
            let message = tokio::select! {
                event = next_event(&mut socket, &dir) => match event {
                    Some(event) => json!({ "filesystem": event }),
                    None => {
                        let error = ApiError::coded(
                            ErrorCode::SessionFailed,
                            "the session's agent closed the watch",
                        );
                        stream.end(Some(error.into())).await;
                        return;
                    }
                },
                _ = ticks.tick() => json!({ "keepalive": {} }),
            };
            if !stream.send(message).await {
                return;
            }
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_like_ls() {
        assert_eq!(permissions(FileKind::File, 0o644), "-rw-r--r--");
        assert_eq!(permissions(FileKind::Dir, 0o755), "drwxr-xr-x");
    }
}

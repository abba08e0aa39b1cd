//! What a compat container can be asked to do, for the REST routes and the gateway alike: files
//! by path (relative ones from a working directory), commands, and mounting a WebContainer file
//! tree. Every call goes to the session's agent, which is byte-exact: nothing is added to or
//! trimmed from a file, and commands run as argument vectors, never pasted into a shell line.

use std::collections::BTreeMap;

use axum::{
    body::Body,
    http::{Method, header},
};
use base64::Engine as _;
use berth_proto::{
    ErrorCode,
    files::{FileEntry, FileKind, FileList},
    process::{ExecRequest, ExecResult},
};
use serde::{Deserialize, Serialize};

use crate::{
    api::{
        AppState,
        error::ApiError,
        session_agent::{SessionAgent, read_limited},
    },
    auth::Principal,
    proxy::encode_query,
};

/// The largest file read into a JSON answer (it is held whole, and grows by a third in base64).
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// A command's longest run before it is killed, unless the caller asks for less.
pub const COMMAND_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// How file contents travel in JSON: text as it is, or any bytes as base64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    #[serde(alias = "utf-8")]
    Utf8,
    Base64,
}

/// File contents as JSON carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contents {
    pub contents: String,
    pub encoding: Encoding,
}

impl Contents {
    /// Text when the bytes are UTF-8, else base64: a binary file survives the trip.
    pub fn of(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(contents) => Self {
                contents,
                encoding: Encoding::Utf8,
            },
            Err(not_text) => Self {
                contents: base64::engine::general_purpose::STANDARD.encode(not_text.as_bytes()),
                encoding: Encoding::Base64,
            },
        }
    }
}

/// Bytes from JSON `contents` in `encoding`.
pub fn decode(contents: &str, encoding: Encoding) -> Result<Vec<u8>, ApiError> {
    match encoding {
        Encoding::Utf8 => Ok(contents.as_bytes().to_vec()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(contents)
            .map_err(|e| ApiError::invalid_request(format!("contents is not base64: {e}"))),
    }
}

/// One directory entry as `readdir` answers it (Node's `Dirent`, as data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub is_file: bool,
    pub is_directory: bool,
}

impl From<FileEntry> for DirEntry {
    fn from(entry: FileEntry) -> Self {
        Self {
            kind: match entry.kind {
                FileKind::File => "file",
                FileKind::Dir => "directory",
                FileKind::Symlink => "symlink",
                FileKind::Other => "other",
            },
            is_file: entry.kind == FileKind::File,
            is_directory: entry.kind == FileKind::Dir,
            name: entry.name,
        }
    }
}

/// WebContainer's `FileSystemTree`: names to `{file: {contents}}`, `{file: {symlink}}` or
/// `{directory: {...}}`. Contents are text, or base64 with `"encoding": "base64"` (JSON has no
/// `Uint8Array`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum TreeNode {
    File(FileNode),
    Directory(BTreeMap<String, TreeNode>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNode {
    pub contents: Option<String>,
    #[serde(default)]
    pub encoding: Encoding,
    pub symlink: Option<String>,
}

/// A container (a compat session) that a caller may work in.
pub struct Workspace {
    agent: SessionAgent,
}

impl Workspace {
    pub async fn open(state: &AppState, caller: &Principal, id: &str) -> Result<Self, ApiError> {
        Ok(Self {
            agent: SessionAgent::reach(state, caller, id).await?,
        })
    }

    pub fn id(&self) -> &str {
        &self.agent.id
    }

    pub async fn read(&self, state: &AppState, path: &str) -> Result<Vec<u8>, ApiError> {
        let request = hyper::Request::get(format!("/files/content?path={}", encode_query(path)))
            .body(Body::empty())
            .map_err(ApiError::internal)?;
        let response = self.agent.send(state, request).await?;
        Ok(read_limited(response, MAX_FILE_BYTES).await?.to_vec())
    }

    /// Writes the file whole, making its parents.
    pub async fn write(
        &self,
        state: &AppState,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ApiError> {
        self.agent
            .refuse_past_disk_room(state, bytes.len() as u64)
            .await?;
        let request = hyper::Request::put(format!("/files/content?path={}", encode_query(path)))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(bytes))
            .map_err(ApiError::internal)?;
        self.agent.send(state, request).await.map(drop)
    }

    pub async fn readdir(&self, state: &AppState, path: &str) -> Result<Vec<DirEntry>, ApiError> {
        let list: FileList = self
            .agent
            .call(
                state,
                Method::GET,
                &format!("/files?path={}", encode_query(path)),
                None,
            )
            .await?;
        Ok(list.entries.into_iter().map(DirEntry::from).collect())
    }

    /// Makes the directory and its missing parents.
    pub async fn mkdir(&self, state: &AppState, path: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({ "path": path });
        let _: FileEntry = self
            .agent
            .call(state, Method::POST, "/files/mkdir", Some(body))
            .await?;
        Ok(())
    }

    /// `force`: a missing path is no error, as Node's `rm` with `force`.
    pub async fn remove(
        &self,
        state: &AppState,
        path: &str,
        recursive: bool,
        force: bool,
    ) -> Result<(), ApiError> {
        let target = format!("/files?path={}&recursive={recursive}", encode_query(path));
        match self
            .agent
            .call::<serde_json::Value>(state, Method::DELETE, &target, None)
            .await
        {
            Err(err) if force && err.code == ErrorCode::NotFound => Ok(()),
            other => other.map(drop),
        }
    }

    /// Replaces `to` if it exists, as Node's `fs.rename` does.
    pub async fn rename(&self, state: &AppState, from: &str, to: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({ "from": from, "to": to, "overwrite": true });
        let _: FileEntry = self
            .agent
            .call(state, Method::POST, "/files/move", Some(body))
            .await?;
        Ok(())
    }

    /// Runs `cmd` (an argument vector) in `cwd` and answers when it ends; output capped as
    /// `POST .../exec` caps it.
    pub async fn run(
        &self,
        state: &AppState,
        cmd: Vec<String>,
        cwd: &str,
        env: BTreeMap<String, String>,
        timeout_ms: Option<u64>,
    ) -> Result<ExecResult, ApiError> {
        if cmd.first().is_none_or(|program| program.is_empty()) {
            return Err(ApiError::invalid_request("the command is empty"));
        }
        let request = ExecRequest {
            cmd,
            cwd: Some(cwd.to_owned()),
            env,
            timeout_ms: Some(timeout_ms.unwrap_or(COMMAND_TIMEOUT_MS)),
            ..ExecRequest::default()
        };
        let body = serde_json::to_value(&request).map_err(ApiError::internal)?;
        self.agent
            .call(state, Method::POST, "/exec", Some(body))
            .await
    }

    /// Writes `tree` under the directory `at` (made if missing) in one upload: a tar the agent
    /// unpacks. Returns how many files and links it held.
    pub async fn mount(
        &self,
        state: &AppState,
        at: &str,
        tree: &BTreeMap<String, TreeNode>,
    ) -> Result<usize, ApiError> {
        let mut archive = tar::Builder::new(Vec::new());
        let written = pack(&mut archive, "", tree)?;
        let bytes = archive.into_inner().map_err(ApiError::internal)?;
        self.agent
            .refuse_past_disk_room(state, bytes.len() as u64)
            .await?;
        let request = hyper::Request::put(format!("/files/archive?path={}", encode_query(at)))
            .header(header::CONTENT_TYPE, "application/x-tar")
            .body(Body::from(bytes))
            .map_err(ApiError::internal)?;
        self.agent.send(state, request).await?;
        Ok(written)
    }

    /// Opens one of the agent's WebSockets (a terminal).
    pub async fn websocket(
        &self,
        path_and_query: &str,
    ) -> Result<crate::proxy::AgentSocket, ApiError> {
        self.agent.websocket(path_and_query).await
    }
}

/// Adds `tree` to `archive` under `prefix`; names are single path components.
fn pack(
    archive: &mut tar::Builder<Vec<u8>>,
    prefix: &str,
    tree: &BTreeMap<String, TreeNode>,
) -> Result<usize, ApiError> {
    let mut written = 0;
    for (name, node) in tree {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(ApiError::invalid_request(format!(
                "{name:?} is not a file name: a tree names one path component per level"
            )));
        }
        let path = format!("{prefix}{name}");
        let mut header = tar::Header::new_gnu();
        match node {
            TreeNode::Directory(children) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                archive
                    .append_data(&mut header, format!("{path}/"), std::io::empty())
                    .map_err(ApiError::internal)?;
                written += pack(archive, &format!("{path}/"), children)?;
            }
            TreeNode::File(FileNode {
                symlink: Some(target),
                contents: None,
                ..
            }) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                archive
                    .append_link(&mut header, &path, target)
                    .map_err(ApiError::internal)?;
                written += 1;
            }
            TreeNode::File(FileNode {
                contents: Some(contents),
                encoding,
                symlink: None,
            }) => {
                let bytes = decode(contents, *encoding)?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                archive
                    .append_data(&mut header, &path, bytes.as_slice())
                    .map_err(ApiError::internal)?;
                written += 1;
            }
            TreeNode::File(_) => {
                return Err(ApiError::invalid_request(format!(
                    "{path}: a file has either contents or a symlink target"
                )));
            }
        }
    }
    Ok(written)
}

/// The argument vector of a command: `command` run with `args` as they are, or, without
/// `args`, `command` as a shell line (`sh -c`), as the seed's frontends send whole lines.
pub fn command(command: String, args: Option<Vec<String>>) -> Vec<String> {
    match args {
        Some(args) => std::iter::once(command).chain(args).collect(),
        None => vec!["sh".into(), "-c".into(), command],
    }
}

/// `path` from `cwd`: an absolute one as it is, a relative one joined to `cwd`, an empty one
/// `cwd` itself. The agent resolves `.` and `..`.
pub fn resolve(cwd: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else if path.is_empty() || path == "." {
        cwd.to_owned()
    } else {
        format!("{}/{path}", cwd.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_from_the_working_directory() {
        assert_eq!(resolve("/workspace", "a b/c.txt"), "/workspace/a b/c.txt");
        assert_eq!(resolve("/workspace/", "x"), "/workspace/x");
        assert_eq!(resolve("/workspace", "/etc/hosts"), "/etc/hosts");
        assert_eq!(resolve("/workspace", ""), "/workspace");
        assert_eq!(resolve("/", "x"), "/x");
    }

    #[test]
    fn contents_are_text_when_they_can_be_and_base64_otherwise() {
        let text = Contents::of("héllo\n".as_bytes().to_vec());
        assert_eq!(
            (text.contents.as_str(), text.encoding),
            ("héllo\n", Encoding::Utf8)
        );
        let binary = Contents::of(vec![0, 159, 146, 150]);
        assert_eq!(binary.encoding, Encoding::Base64);
        assert_eq!(
            decode(&binary.contents, binary.encoding).unwrap(),
            [0, 159, 146, 150]
        );
    }

    #[test]
    fn a_tree_packs_into_a_tar_and_bad_names_are_refused() {
        let tree: BTreeMap<String, TreeNode> = serde_json::from_value(serde_json::json!({
            "package.json": {"file": {"contents": "{}"}},
            "src": {"directory": {
                "index.js": {"file": {"contents": "AAE=", "encoding": "base64"}},
                "link": {"file": {"symlink": "index.js"}},
            }},
        }))
        .unwrap();
        let mut archive = tar::Builder::new(Vec::new());
        assert_eq!(pack(&mut archive, "", &tree).unwrap(), 3);
        let bytes = archive.into_inner().unwrap();
        let mut unpacked = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = unpacked
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["package.json", "src/", "src/index.js", "src/link"]);

        for bad in ["..", "a/b", ""] {
            let tree = BTreeMap::from([(
                bad.to_owned(),
                TreeNode::File(FileNode {
                    contents: Some(String::new()),
                    encoding: Encoding::Utf8,
                    symlink: None,
                }),
            )]);
            let mut archive = tar::Builder::new(Vec::new());
            assert!(pack(&mut archive, "", &tree).is_err(), "{bad:?}");
        }
    }
}

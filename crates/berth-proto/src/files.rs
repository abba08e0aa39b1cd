//! Files inside a session. Paths are absolute, or relative to `/home/user`, and always travel
//! as a query parameter (`?path=`), so any file name works.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One directory entry, or the answer to `stat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileEntry {
    pub name: String,
    /// Absolute path.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits, e.g. `0o644` = 420.
    pub mode: u32,
    pub mtime: DateTime<Utc>,
    /// Where a symlink points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileList {
    pub path: String,
    pub entries: Vec<FileEntry>,
}

/// `POST .../files/mkdir`: creates the directory and its missing parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MakeDir {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"^[^\u0000]*$"))]
    pub path: String,
}

/// `POST .../files/move`: renames `from` to `to`; refuses to replace an existing `to` unless
/// `overwrite` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveFile {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"^[^\u0000]*$"))]
    pub from: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"^[^\u0000]*$"))]
    pub to: String,
    /// Replace `to` as Node's `fs.rename` and POSIX `rename(2)` do: a file by a file, an
    /// empty directory by a directory, atomically.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
}

/// The kind of change `GET .../files/watch` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileChange {
    Created,
    Modified,
    Removed,
}

/// The agent's `POST /watches`: a watch whose changes wait for polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartPolledWatch {
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
}

/// A started polled watch: its id and the directory's absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolledWatch {
    pub id: String,
    pub path: String,
}

/// `GET /watches/{id}/events`: the changes since the last poll, oldest first, under `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolledWatchEvents {
    pub path: String,
    pub events: Vec<FileEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileEvent {
    pub change: FileChange,
    pub path: String,
    /// `file` or `dir` (a symlink, socket or fifo is `other`); what the path was when it
    /// changed, so a removed directory is told from a removed file.
    #[serde(rename = "type")]
    pub kind: FileKind,
}

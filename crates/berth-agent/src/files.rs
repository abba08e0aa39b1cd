//! File routes. Contents stream both ways, never held whole in memory; uploads land in a
//! temporary file that is renamed into place only when complete, so a failed upload leaves the
//! old file as it was.

use std::{
    io,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use berth_proto::files::{FileEntry, FileKind, FileList, MakeDir, MoveFile};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::{
    AgentError, AgentState,
    dockerignore::DockerIgnore,
    error::{AgentJson, AgentQuery},
};

#[derive(Debug, Deserialize)]
pub struct PathQuery {
    path: String,
}

#[derive(Debug, Deserialize)]
pub struct ArchiveQuery {
    path: String,
    /// Leave out what the directory's `.dockerignore` lists, as the docker CLI does when it
    /// sends a build context.
    #[serde(default)]
    dockerignore: bool,
    /// With `dockerignore`: the build's Dockerfile, relative to the directory, sent whatever
    /// `.dockerignore` says (`Dockerfile` when omitted).
    #[serde(default)]
    dockerfile: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RemoveQuery {
    path: String,
    #[serde(default)]
    recursive: bool,
}

/// `dir`'s entries under `prefix` in the archive, in name order, leaving out what `ignore`
/// excludes (a directory it excludes is walked only when a `!` line may bring some back).
fn append_filtered<W: io::Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    ignore: &DockerIgnore,
) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let relative = format!("{prefix}{name}");
        let excluded = ignore.excludes(&relative);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            if !excluded {
                builder.append_dir(&relative, entry.path())?;
            }
            append_filtered(builder, &entry.path(), &format!("{relative}/"), ignore)?;
        } else if !excluded {
            builder.append_path_with_name(entry.path(), &relative)?;
        }
    }
    Ok(())
}

/// Absolute paths as given; relative ones from the home directory.
pub(crate) fn resolve(state: &AgentState, raw: &str) -> Result<PathBuf, AgentError> {
    if raw.is_empty() {
        return Err(AgentError::bad_request("path must not be empty"));
    }
    if raw.contains('\0') {
        return Err(AgentError::bad_request("path must not contain NUL"));
    }
    let path = Path::new(raw);
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        state.config.home.join(path)
    })
}

fn entry(path: &Path, meta: &std::fs::Metadata) -> FileEntry {
    let kind = if meta.is_symlink() {
        FileKind::Symlink
    } else if meta.is_dir() {
        FileKind::Dir
    } else if meta.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    FileEntry {
        name: path
            .file_name()
            .map_or_else(|| "/".to_owned(), |n| n.to_string_lossy().into_owned()),
        path: path.display().to_string(),
        kind,
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        mtime: DateTime::<Utc>::from_timestamp(meta.mtime(), 0).unwrap_or_default(),
        target: meta
            .is_symlink()
            .then(|| {
                std::fs::read_link(path)
                    .ok()
                    .map(|t| t.display().to_string())
            })
            .flatten(),
    }
}

/// The entry at `path`, not following a final symlink.
async fn lstat(path: &Path) -> Result<std::fs::Metadata, AgentError> {
    tokio::fs::symlink_metadata(path)
        .await
        .map_err(|e| AgentError::io(&e, path))
}

async fn entry_at(path: &Path) -> Result<Json<FileEntry>, AgentError> {
    Ok(Json(entry(path, &lstat(path).await?)))
}

/// Resolves `raw` and checks that it names a directory (404 if missing, 409 if not a directory).
pub(crate) async fn existing_dir(state: &AgentState, raw: &str) -> Result<PathBuf, AgentError> {
    let dir = resolve(state, raw)?;
    let meta = tokio::fs::metadata(&dir)
        .await
        .map_err(|e| AgentError::io(&e, &dir))?;
    if !meta.is_dir() {
        return Err(AgentError::conflict(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    Ok(dir)
}

pub async fn list(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<PathQuery>,
) -> Result<Json<FileList>, AgentError> {
    let dir = existing_dir(&state, &q.path).await?;
    let mut reader = tokio::fs::read_dir(&dir)
        .await
        .map_err(|e| AgentError::io(&e, &dir))?;
    let mut entries = Vec::new();
    while let Some(item) = reader
        .next_entry()
        .await
        .map_err(|e| AgentError::io(&e, &dir))?
    {
        let path = item.path();
        if let Ok(meta) = tokio::fs::symlink_metadata(&path).await {
            entries.push(entry(&path, &meta));
        }
    }
    // Directories first, then by name: what a file tree shows.
    entries.sort_by(|a, b| {
        (a.kind != FileKind::Dir, &a.name).cmp(&(b.kind != FileKind::Dir, &b.name))
    });
    Ok(Json(FileList {
        path: dir.display().to_string(),
        entries,
    }))
}

pub async fn stat(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<PathQuery>,
) -> Result<Json<FileEntry>, AgentError> {
    entry_at(&resolve(&state, &q.path)?).await
}

pub async fn read(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<PathQuery>,
) -> Result<Response, AgentError> {
    let path = resolve(&state, &q.path)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| AgentError::io(&e, &path))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| AgentError::io(&e, &path))?;
    if meta.is_dir() {
        return Err(AgentError::conflict(format!(
            "{}: is a directory; download it with files/archive",
            path.display()
        )));
    }
    let body = Body::from_stream(ReaderStream::with_capacity(file, 256 * 1024));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_LENGTH, &meta.len().to_string()),
        ],
        body,
    )
        .into_response())
}

pub async fn write(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<PathQuery>,
    body: Body,
) -> Result<Json<FileEntry>, AgentError> {
    let path = resolve(&state, &q.path)?;
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        return Err(AgentError::conflict(format!(
            "{}: is a directory",
            path.display()
        )));
    }
    let parent = path
        .parent()
        .ok_or_else(|| AgentError::bad_request("cannot write to /"))?;
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| AgentError::io(&e, parent))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per upload, so concurrent uploads of one file cannot interleave in one temp file.
    static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = parent.join(format!(
        ".{name}.berth-upload-{}-{serial}",
        std::process::id()
    ));
    let written = copy_limited(body, &temp, state.config.max_file_bytes).await;
    if let Err(err) = written {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(err);
    }
    tokio::fs::rename(&temp, &path)
        .await
        .map_err(|e| AgentError::io(&e, &path))?;
    entry_at(&path).await
}

async fn copy_limited(body: Body, temp: &Path, limit: u64) -> Result<(), AgentError> {
    let mut file = tokio::fs::File::create(temp)
        .await
        .map_err(|e| AgentError::io(&e, temp))?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| AgentError::bad_request(format!("upload interrupted: {e}")))?;
        total += chunk.len() as u64;
        if total > limit {
            // Read the rest before answering: a client still sending would otherwise see the
            // connection reset instead of the 413.
            while stream.next().await.is_some() {}
            return Err(AgentError::too_large(limit));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| AgentError::io(&e, temp))?;
    }
    file.flush().await.map_err(|e| AgentError::io(&e, temp))?;
    Ok(())
}

pub async fn mkdir(
    State(state): State<AgentState>,
    AgentJson(req): AgentJson<MakeDir>,
) -> Result<Json<FileEntry>, AgentError> {
    let path = resolve(&state, &req.path)?;
    if tokio::fs::symlink_metadata(&path)
        .await
        .is_ok_and(|m| !m.is_dir())
    {
        return Err(AgentError::conflict(format!(
            "{}: exists and is not a directory",
            path.display()
        )));
    }
    tokio::fs::create_dir_all(&path)
        .await
        .map_err(|e| AgentError::io(&e, &path))?;
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| AgentError::io(&e, &path))?;
    Ok(Json(entry(&path, &meta)))
}

pub async fn rename(
    State(state): State<AgentState>,
    AgentJson(req): AgentJson<MoveFile>,
) -> Result<Json<FileEntry>, AgentError> {
    let from = resolve(&state, &req.from)?;
    let to = resolve(&state, &req.to)?;
    lstat(&from).await?;
    if !req.overwrite && tokio::fs::symlink_metadata(&to).await.is_ok() {
        return Err(AgentError::conflict(format!(
            "{}: already exists",
            to.display()
        )));
    }
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| AgentError::io(&e, parent))?;
    }
    tokio::fs::rename(&from, &to)
        .await
        .map_err(|e| AgentError::io(&e, &from))?;
    entry_at(&to).await
}

pub async fn remove(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<RemoveQuery>,
) -> Result<StatusCode, AgentError> {
    let path = resolve(&state, &q.path)?;
    let meta = lstat(&path).await?;
    let removed = match (meta.is_dir(), q.recursive) {
        (true, true) => tokio::fs::remove_dir_all(&path).await,
        (true, false) => tokio::fs::remove_dir(&path).await,
        (false, _) => tokio::fs::remove_file(&path).await,
    };
    removed.map_err(|e| AgentError::io(&e, &path))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unpacks an uploaded tar into a directory (created if missing), keeping modes and symlinks.
pub async fn upload_archive(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<PathQuery>,
    body: Body,
) -> Result<StatusCode, AgentError> {
    let dir = resolve(&state, &q.path)?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| AgentError::io(&e, &dir))?;
    let reader = StreamReader::new(body.into_data_stream().map_err(io::Error::other));
    let target = dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(SyncIoBridge::new(reader));
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        // `unpack` refuses entries that would land outside `target`.
        archive.unpack(&target)
    })
    .await
    .map_err(|e| AgentError::bad_request(format!("unpacking failed: {e}")))?
    .map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::StorageFull => AgentError::io(&e, &dir),
        _ => AgentError::bad_request(format!("not a valid tar archive: {e}")),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Streams a directory as a tar: entries relative to it, symlinks kept as symlinks.
pub async fn download_archive(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<ArchiveQuery>,
) -> Result<Response, AgentError> {
    let dir = existing_dir(&state, &q.path).await?;
    let ignore = if q.dockerignore {
        let text = tokio::fs::read_to_string(dir.join(".dockerignore"))
            .await
            .unwrap_or_default();
        Some(DockerIgnore::parse(&text, q.dockerfile.as_deref()))
    } else {
        None
    };
    let (writer, reader) = tokio::io::duplex(256 * 1024);
    tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(SyncIoBridge::new(writer));
        builder.follow_symlinks(false);
        let appended = match &ignore {
            None => builder.append_dir_all(".", &dir),
            Some(ignore) => append_filtered(&mut builder, &dir, "", ignore),
        };
        // A failure midway ends the stream early; the client sees a truncated archive.
        if appended.is_ok() {
            let _ = builder.finish();
        }
    });
    let body = Body::from_stream(ReaderStream::with_capacity(reader, 256 * 1024));
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

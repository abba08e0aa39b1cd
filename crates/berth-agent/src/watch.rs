//! `GET /files/watch?path=DIR`: a WebSocket of change events under a directory, from inotify.
//! Each event is a text frame `{"change":"created"|"modified"|"removed","path":...,"type":...}`.
//!
//! The kernel counts inotify instances and watches per user of the host, and every session runs
//! as the same uid: another session can take them all. The watch then comes from comparing the
//! directory tree every second instead ([`Poller`]), the same events a little later.

use std::{
    collections::HashMap,
    mem::MaybeUninit,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use axum::{
    extract::{State, WebSocketUpgrade, ws::Message},
    response::Response,
};
use berth_proto::files::{FileChange, FileEvent, FileKind};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::{AgentError, AgentState, error::AgentQuery, files::existing_dir};

/// Directories watched at most per connection (each costs a kernel inotify watch).
const MAX_WATCHED_DIRS: usize = 4096;

/// Entries a polled watch compares at most: a second's scan must stay cheap.
const MAX_POLLED_ENTRIES: usize = 20_000;

/// How often a polled watch compares the tree.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// How soon a watch's thread notices that its client has gone.
const CLIENT_CHECK: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    path: String,
    /// Also watch subdirectories, including ones created later.
    #[serde(default = "yes")]
    recursive: bool,
}

fn yes() -> bool {
    true
}

struct Watcher {
    fd: OwnedFd,
    dirs: HashMap<i32, PathBuf>,
    recursive: bool,
}

impl Watcher {
    fn add(&mut self, dir: &Path) {
        if self.dirs.len() >= MAX_WATCHED_DIRS {
            return;
        }
        let flags = WatchFlags::CREATE
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::ONLYDIR;
        if let Ok(wd) = inotify::add_watch(&self.fd, dir, flags) {
            self.dirs.insert(wd, dir.to_owned());
        }
        if self.recursive
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    self.add(&entry.path());
                }
            }
        }
    }

    /// Reads whatever events are queued, without blocking.
    fn drain(&mut self) -> std::io::Result<Vec<FileEvent>> {
        let mut raw = Vec::new();
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    let name = event.file_name().map(|n| n.to_string_lossy().into_owned());
                    raw.push((event.wd(), event.events(), name));
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(err) => return Err(err.into()),
            }
        }
        let mut events = Vec::new();
        for (wd, flags, name) in raw {
            let (Some(dir), Some(name)) = (self.dirs.get(&wd).cloned(), name) else {
                continue;
            };
            // Uploads land in a temporary file first; only the final rename is news.
            if name.contains(".berth-upload-") {
                continue;
            }
            let path = dir.join(&name);
            let change = if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                if self.recursive && flags.contains(ReadFlags::ISDIR) {
                    self.add(&path);
                }
                FileChange::Created
            } else if flags.contains(ReadFlags::CLOSE_WRITE) {
                FileChange::Modified
            } else {
                FileChange::Removed
            };
            // inotify says whether the entry is a directory; of the rest, only a stat now can
            // tell a file from a symlink, and a removed entry is past asking.
            let kind = if flags.contains(ReadFlags::ISDIR) {
                FileKind::Dir
            } else {
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if !meta.is_file() => FileKind::Other,
                    _ => FileKind::File,
                }
            };
            events.push(FileEvent {
                change,
                path: path.display().to_string(),
                kind,
            });
        }
        Ok(events)
    }
}

/// A file's state as a polled watch compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    kind: FileKind,
    len: u64,
    modified: Option<SystemTime>,
}

/// The watch without inotify: the tree under `root` scanned every [`POLL_EVERY`] and compared
/// with the scan before.
struct Poller {
    root: PathBuf,
    recursive: bool,
    seen: HashMap<PathBuf, Stamp>,
}

impl Poller {
    fn new(root: PathBuf, recursive: bool) -> Self {
        let mut poller = Self {
            root,
            recursive,
            seen: HashMap::new(),
        };
        poller.seen = poller.scan();
        poller
    }

    fn scan(&self) -> HashMap<PathBuf, Stamp> {
        let mut found = HashMap::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if found.len() >= MAX_POLLED_ENTRIES {
                    return found;
                }
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                let kind = if meta.is_dir() {
                    FileKind::Dir
                } else if meta.is_file() {
                    FileKind::File
                } else {
                    FileKind::Other
                };
                if kind == FileKind::Dir && self.recursive {
                    dirs.push(entry.path());
                }
                let stamp = Stamp {
                    kind,
                    len: meta.len(),
                    modified: meta.modified().ok(),
                };
                found.insert(entry.path(), stamp);
            }
        }
        found
    }

    /// What changed since the last call, in inotify's terms.
    fn changes(&mut self) -> Vec<FileEvent> {
        let now = self.scan();
        let mut events = Vec::new();
        for (path, stamp) in &now {
            let change = match self.seen.get(path) {
                None => FileChange::Created,
                Some(before) if before != stamp && stamp.kind != FileKind::Dir => {
                    FileChange::Modified
                }
                Some(_) => continue,
            };
            events.push((path.clone(), change, stamp.kind));
        }
        for (path, stamp) in &self.seen {
            if !now.contains_key(path) {
                events.push((path.clone(), FileChange::Removed, stamp.kind));
            }
        }
        self.seen = now;
        events
            .into_iter()
            // Uploads land in a temporary file first; only the final rename is news.
            .filter(|(path, ..)| !path.to_string_lossy().contains(".berth-upload-"))
            .map(|(path, change, kind)| FileEvent {
                change,
                path: path.display().to_string(),
                kind,
            })
            .collect()
    }
}

/// Where a watch's events come from.
enum Source {
    Inotify(Watcher),
    Polling(Poller),
}

/// Whether inotify failed for want of the host's per-user instances or watches, or memory.
fn inotify_exhausted(err: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOSPC, Errno::NOMEM].contains(&err)
}

pub async fn watch(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<WatchQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, AgentError> {
    let (_, mut events) = start(&state, &q.path, q.recursive).await?;
    Ok(ws.on_upgrade(move |mut socket| async move {
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { return };
                    let text = serde_json::to_string(&event).unwrap_or_default();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                message = socket.recv() => match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    }))
}

/// Starts watching the directory at `path`: its absolute path, and its changes as they come.
/// The watch runs on a thread of its own until the receiver is dropped, and notices that
/// within [`CLIENT_CHECK`].
pub async fn start(
    state: &AgentState,
    path: &str,
    recursive: bool,
) -> Result<(PathBuf, mpsc::Receiver<FileEvent>), AgentError> {
    let dir = existing_dir(state, path).await?;
    let flags = WatchFlags::ONLYDIR;
    let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
        // Whether the kernel takes one more watch of this user's: the root's, tried first.
        .and_then(|fd| inotify::add_watch(&fd, &dir, flags).map(|_| fd));
    let source = match inotify {
        Ok(fd) => {
            let mut watcher = Watcher {
                fd,
                dirs: HashMap::new(),
                recursive,
            };
            watcher.add(&dir);
            Source::Inotify(watcher)
        }
        Err(err) if inotify_exhausted(err) => Source::Polling(Poller::new(dir.clone(), recursive)),
        Err(err) => return Err(AgentError::io(&err.into(), &dir)),
    };
    let (tx, events) = mpsc::channel(1024);
    std::thread::spawn(move || match source {
        Source::Inotify(watcher) => run_inotify(watcher, tx),
        Source::Polling(poller) => run_polling(poller, tx),
    });
    Ok((dir, events))
}

fn run_polling(mut poller: Poller, events: mpsc::Sender<FileEvent>) {
    let mut since = std::time::Instant::now();
    while !events.is_closed() {
        std::thread::sleep(CLIENT_CHECK);
        if since.elapsed() < POLL_EVERY {
            continue;
        }
        since = std::time::Instant::now();
        for event in poller.changes() {
            if events.blocking_send(event).is_err() {
                return;
            }
        }
    }
}

fn run_inotify(mut watcher: Watcher, events: mpsc::Sender<FileEvent>) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(CLIENT_CHECK.subsec_nanos()),
    };
    while !events.is_closed() {
        let mut fds = [PollFd::new(&watcher.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&tick)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(batch) = watcher.drain() else { return };
        for event in batch {
            if events.blocking_send(event).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(poller: &mut Poller) -> Vec<(FileChange, String, FileKind)> {
        let mut changes: Vec<_> = poller
            .changes()
            .into_iter()
            .map(|e| {
                let name = Path::new(&e.path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (e.change, name, e.kind)
            })
            .collect();
        changes.sort_by(|a, b| a.1.cmp(&b.1));
        changes
    }

    #[test]
    fn a_polled_watch_tells_what_inotify_would() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("before"), "x").unwrap();
        let mut poller = Poller::new(root.path().to_owned(), true);
        assert!(
            changes(&mut poller).is_empty(),
            "what was there is not news"
        );

        std::fs::write(root.path().join("new"), "x").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join(".berth-upload-1"), "partial").unwrap();
        assert_eq!(
            changes(&mut poller),
            [
                (FileChange::Created, "new".to_owned(), FileKind::File),
                (FileChange::Created, "sub".to_owned(), FileKind::Dir),
            ]
        );

        std::fs::write(root.path().join("sub/deep"), "x").unwrap();
        std::fs::write(root.path().join("before"), "longer").unwrap();
        std::fs::remove_file(root.path().join("new")).unwrap();
        assert_eq!(
            changes(&mut poller),
            [
                (FileChange::Modified, "before".to_owned(), FileKind::File),
                (FileChange::Created, "deep".to_owned(), FileKind::File),
                (FileChange::Removed, "new".to_owned(), FileKind::File),
            ]
        );

        let mut shallow = Poller::new(root.path().to_owned(), false);
        std::fs::write(root.path().join("sub/deeper"), "x").unwrap();
        assert!(
            changes(&mut shallow).is_empty(),
            "not recursive: {:?}",
            shallow.seen
        );
    }
}

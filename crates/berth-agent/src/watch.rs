//! `GET /files/watch?path=DIR`: a WebSocket of change events under a directory, from inotify.
//! Each event is a text frame `{"change":"created"|"modified"|"removed","path":...,"type":...}`.

use std::{
    collections::HashMap,
    mem::MaybeUninit,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, WebSocket},
    },
    response::Response,
};
use berth_proto::files::{FileChange, FileEvent, FileKind};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::{AgentError, AgentState, error::AgentQuery, files::existing_dir};

/// Directories watched at most per connection (each costs a kernel inotify watch).
const MAX_WATCHED_DIRS: usize = 4096;

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

pub async fn watch(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<WatchQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, AgentError> {
    let dir = existing_dir(&state, &q.path).await?;
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
        .map_err(|e| AgentError::io(&e.into(), &dir))?;
    let mut watcher = Watcher {
        fd,
        dirs: HashMap::new(),
        recursive: q.recursive,
    };
    watcher.add(&dir);
    Ok(ws.on_upgrade(move |socket| stream(watcher, socket)))
}

/// The watcher runs on a thread of its own, polling with a timeout so it notices within a
/// quarter second that the client has gone.
fn run(mut watcher: Watcher, events: mpsc::Sender<FileEvent>) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 250_000_000,
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

async fn stream(watcher: Watcher, mut socket: WebSocket) {
    let (tx, mut events) = mpsc::channel(1024);
    std::thread::spawn(move || run(watcher, tx));
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
}

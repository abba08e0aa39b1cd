//! Terminals: a login shell on a PTY, kept alive across connections.
//!
//! One task reads each PTY and never blocks: it appends to a bounded scrollback and broadcasts
//! to whoever watches. A watcher that falls behind loses the oldest output it missed (the
//! broadcast channel is bounded) while the terminal keeps running, so a flood such as `yes`
//! grows neither the agent's memory nor the control plane's.
//!
//! A terminal also outlives its container's stop: the stopping agent saves each one (`saved`)
//! and the next agent in that home starts it again, under the same id, on the first attach.

mod saved;

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, WebSocket},
    },
    response::{IntoResponse, Response},
};
use berth_proto::{
    agent::SECRET_ENV,
    process::{TerminalClientMessage, TerminalQuery, TerminalServerMessage},
};
use futures_util::FutureExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{broadcast, watch},
};

use crate::{
    AgentError, AgentState,
    error::AgentQuery,
    journal,
    output::{OutputLog, coalesce},
    user,
};

/// Scrollback replayed on attach.
const SCROLLBACK_BYTES: usize = 256 * 1024;
/// Live terminals per session.
const MAX_TERMINALS: usize = 32;
/// The most one chunk of terminal output holds.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Registry {
    terminals: Arc<Mutex<HashMap<String, Arc<Terminal>>>>,
    next_id: Arc<AtomicU64>,
    /// Where a stopping agent saves its terminals and the next one finds them.
    saved: Arc<Path>,
    /// Whether the terminals have been saved: the agent is stopping. Restores and the save
    /// hold it, so two attaches to one saved terminal start one shell, no restore consumes what
    /// the save has just written (or what no save will write again), and nothing is saved twice.
    saved_all: Arc<tokio::sync::Mutex<bool>>,
}

#[derive(Debug)]
struct Terminal {
    id: String,
    input: tokio::sync::Mutex<pty_process::OwnedWritePty>,
    output: OutputLog,
    /// `None` while running; the exit code once the shell has ended.
    exited: watch::Receiver<Option<Option<i32>>>,
    /// The shell's pid, for its working directory when the terminal is saved.
    shell: Option<u32>,
    /// (cols, rows) as last set, saved with the terminal: a PTY's size cannot be read back
    /// through its write half.
    size: Mutex<(u16, u16)>,
}

/// How a shell starts: a new terminal, or a saved one again.
struct Start<'a> {
    id: String,
    cols: u16,
    rows: u16,
    cwd: &'a Path,
    /// Output replayed before the shell's own: a restored terminal's scrollback.
    replay: Vec<u8>,
}

/// The number in a terminal id (`t7`), for the ids this agent makes only: a saved terminal's
/// directory is named by its id, so nothing else may name one.
fn id_number(id: &str) -> Option<u64> {
    let digits = id.strip_prefix('t')?;
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    /// The terminals of an agent serving `home`, where its predecessor may have saved some.
    pub fn new(home: &Path) -> Self {
        let saved = saved::dir(home);
        // A saved terminal keeps its id until it is restored, so new ones are numbered above.
        let highest = saved::ids(&saved)
            .filter_map(|id| id_number(&id))
            .max()
            .unwrap_or(0);
        Self {
            terminals: Arc::default(),
            next_id: Arc::new(AtomicU64::new(highest)),
            saved: saved.into(),
            saved_all: Arc::default(),
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Terminal>> {
        lock(&self.terminals).get(id).cloned()
    }

    fn create(
        &self,
        state: &AgentState,
        (cols, rows): (u16, u16),
        cwd: &Path,
    ) -> Result<Arc<Terminal>, AgentError> {
        let id = format!("t{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        self.spawn(
            state,
            Start {
                id,
                cols,
                rows,
                cwd,
                replay: Vec::new(),
            },
        )
    }

    /// Starts terminal `id` again from what a stopped agent saved of it, and consumes that;
    /// `None` when nothing (usable) was saved under `id`.
    async fn restore(
        &self,
        state: &AgentState,
        id: &str,
    ) -> Result<Option<Arc<Terminal>>, AgentError> {
        if id_number(id).is_none() {
            return Ok(None);
        }
        let saved_all = self.saved_all.lock().await;
        if *saved_all {
            return Err(AgentError::conflict(
                "the session is stopping; attach again once it is back",
            ));
        }
        // Restored by another attach while this one waited.
        if let Some(terminal) = self.get(id) {
            return Ok(Some(terminal));
        }
        let (dir, owned_id) = (self.saved.clone(), id.to_owned());
        let read = tokio::task::spawn_blocking(move || {
            saved::read(&dir, &owned_id).map(|mut saved| {
                // Deleted since, or never there (a restore into another image).
                saved.cwd = saved.cwd.filter(|cwd| cwd.is_dir());
                saved
            })
        });
        let Some(saved) = read.await.ok().flatten() else {
            return Ok(None);
        };
        let mut replay = saved.scrollback;
        replay.extend_from_slice(
            format!(
                "\r\n[berth: session restored at {}; programs that were running were stopped]\r\n",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
            .as_bytes(),
        );
        let terminal = self.spawn(
            state,
            Start {
                id: id.to_owned(),
                cols: saved.cols,
                rows: saved.rows,
                cwd: saved.cwd.as_deref().unwrap_or(&state.config.home),
                replay,
            },
        )?;
        let (dir, owned_id) = (self.saved.clone(), id.to_owned());
        let _ = tokio::task::spawn_blocking(move || saved::remove(&dir, &owned_id)).await;
        Ok(Some(terminal))
    }

    /// Saves every running terminal for the next agent in this home, once: what the server does
    /// when told to stop, while init holds the signal back from the shells.
    pub async fn save(&self) {
        let mut saved_all = self.saved_all.lock().await;
        if *saved_all {
            return;
        }
        *saved_all = true;
        let terminals: Vec<Arc<Terminal>> = lock(&self.terminals).values().cloned().collect();
        let dir = self.saved.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for terminal in terminals {
                if terminal.exited.borrow().is_some() {
                    continue;
                }
                if let Err(err) = saved::write(&dir, &terminal.id, &terminal.snapshot()) {
                    eprintln!("berth-agent: cannot save terminal {}: {err}", terminal.id);
                }
            }
        })
        .await;
    }

    fn spawn(&self, state: &AgentState, start: Start<'_>) -> Result<Arc<Terminal>, AgentError> {
        if lock(&self.terminals).len() >= MAX_TERMINALS {
            return Err(AgentError::conflict(format!(
                "this session already has {MAX_TERMINALS} terminals; close one"
            )));
        }
        let spawn_error = |e: pty_process::Error| {
            AgentError::bad_request(format!("cannot start a terminal: {e}"))
        };
        let (pty, pts) = pty_process::open().map_err(spawn_error)?;
        pty.resize(pty_process::Size::new(start.rows, start.cols))
            .map_err(spawn_error)?;
        let shell = user::shell();
        let mut command = pty_process::Command::new(shell)
            .arg("-l")
            .env_remove(SECRET_ENV)
            .envs(user::base_env(&state.config.home))
            .envs(state.session_env())
            .env("TERM", "xterm-256color");
        let mark_key = journal::mark_key();
        if shell.ends_with("bash") {
            // bash imports both: the hook as a function, and the command that runs it.
            command = command
                .env("BASH_FUNC___berth_mark%%", journal::PROMPT_HOOK)
                .env("PROMPT_COMMAND", "__berth_mark")
                .env(journal::MARK_KEY_ENV, &mark_key);
        }
        let mut child = command
            .current_dir(start.cwd)
            .spawn(pts)
            .map_err(spawn_error)?;
        let (mut reader, writer) = pty.into_split();

        let (exit_tx, exited) = watch::channel(None);
        let terminal = Arc::new(Terminal {
            id: start.id.clone(),
            input: tokio::sync::Mutex::new(writer),
            output: OutputLog::new(SCROLLBACK_BYTES),
            exited,
            shell: child.id(),
            size: Mutex::new((start.cols, start.rows)),
        });
        // Before the pump starts, so the replay comes first.
        if !start.replay.is_empty() {
            terminal.output.push(Arc::from(start.replay));
        }
        lock(&self.terminals).insert(start.id, terminal.clone());

        let registry = self.clone();
        let pump = terminal.clone();
        let journal = state.journal.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK];
            let mut commands = journal::CommandScanner::new(&mark_key);
            // EIO from the PTY means every process holding the other side is gone.
            while let Ok(n @ 1..) = reader.read(&mut buf).await {
                // A PTY hands out about 4 KiB per read; under a flood, what is already waiting
                // joins this chunk, so clients get few large frames instead of many small ones.
                let mut len = n;
                while len < buf.len() {
                    match reader.read(&mut buf[len..]).now_or_never() {
                        Some(Ok(n @ 1..)) => len += n,
                        _ => break,
                    }
                }
                let (output, ran) = commands.scan(&buf[..len]);
                for ran in ran {
                    let ended = ran.status.map_or_else(|| "?".to_owned(), |s| s.to_string());
                    let message = format!("ran `{}` in a terminal: exit {ended}", ran.line);
                    let data = serde_json::json!({
                        "command": ran.line, "exit_code": ran.status, "terminal": pump.id,
                    });
                    journal.push("command", message, data);
                }
                if !output.is_empty() {
                    pump.output.push(Arc::from(output));
                }
            }
            let held = commands.finish();
            if !held.is_empty() {
                pump.output.push(Arc::from(held));
            }
            let code = child.wait().await.ok().and_then(|status| status.code());
            let _ = exit_tx.send(Some(code));
            lock(&registry.terminals).remove(&pump.id);
        });
        Ok(terminal)
    }
}

impl Terminal {
    /// What a save writes: the scrollback as the ring holds it (its last `SCROLLBACK_BYTES`), the
    /// shell's working directory, the size.
    fn snapshot(&self) -> saved::SavedTerminal {
        let (backlog, _) = self.output.attach();
        let mut scrollback = backlog.concat();
        scrollback.drain(..scrollback.len().saturating_sub(SCROLLBACK_BYTES));
        let (cols, rows) = *lock(&self.size);
        saved::SavedTerminal {
            cwd: self
                .shell
                .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).ok()),
            cols,
            rows,
            scrollback,
        }
    }

    async fn resize(&self, cols: u16, rows: u16) {
        let (cols, rows) = (cols.max(1), rows.max(1));
        let resized = self
            .input
            .lock()
            .await
            .resize(pty_process::Size::new(rows, cols));
        if resized.is_ok() {
            *lock(&self.size) = (cols, rows);
        }
    }
}

/// The most `GET /terminals/tail` gives of one terminal.
const MAX_TAIL_BYTES: usize = 16 * 1024;

#[derive(Debug, serde::Deserialize)]
pub struct TailQuery {
    #[serde(default)]
    bytes: Option<usize>,
}

/// `GET /terminals/tail?bytes=N`: the last `N` bytes (at most 16 KiB, 4 KiB by default) of
/// every live terminal's output, oldest terminal first.
pub async fn tail(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<TailQuery>,
) -> axum::Json<Vec<berth_proto::process::TerminalTail>> {
    let bytes = q.bytes.unwrap_or(4096).min(MAX_TAIL_BYTES);
    let mut terminals: Vec<Arc<Terminal>> =
        lock(&state.terminals.terminals).values().cloned().collect();
    terminals.sort_by_key(|t| id_number(&t.id));
    let tails = terminals
        .iter()
        .map(|terminal| {
            let (backlog, _) = terminal.output.attach();
            let mut output = backlog.concat();
            output.drain(..output.len().saturating_sub(bytes));
            berth_proto::process::TerminalTail {
                terminal_id: terminal.id.clone(),
                text: String::from_utf8_lossy(&output).into_owned(),
            }
        })
        .collect();
    axum::Json(tails)
}

/// `GET /terminal`: attach to a terminal over a WebSocket (see `TerminalQuery`).
pub async fn attach(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<TerminalQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let terminal = match &q.terminal_id {
        Some(id) => {
            let found = match state.terminals.get(id) {
                Some(terminal) => Ok(Some(terminal)),
                None => state.terminals.restore(&state, id).await,
            };
            match found {
                Ok(Some(terminal)) => terminal,
                Ok(None) => {
                    return AgentError::not_found(format!(
                        "terminal {id} not found; it may have exited"
                    ))
                    .into_response();
                }
                Err(err) => return err.into_response(),
            }
        }
        None => {
            let cwd = match &q.cwd {
                Some(cwd) => match crate::files::existing_dir(&state, cwd).await {
                    Ok(dir) => dir,
                    Err(err) => return err.into_response(),
                },
                None => state.config.home.clone(),
            };
            let size = (q.cols.unwrap_or(80), q.rows.unwrap_or(24));
            match state.terminals.create(&state, size, &cwd) {
                Ok(terminal) => terminal,
                Err(err) => return err.into_response(),
            }
        }
    };
    ws.on_upgrade(move |socket| serve(terminal, socket, q.readonly))
}

/// Largest frame made by joining queued output.
const MAX_FRAME: usize = 256 * 1024;

async fn send_json(socket: &mut WebSocket, message: &TerminalServerMessage) -> bool {
    let text = serde_json::to_string(message).unwrap_or_default();
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn serve(terminal: Arc<Terminal>, mut socket: WebSocket, readonly: bool) {
    let (replay, mut live) = {
        let (backlog, live) = terminal.output.attach();
        (backlog.concat(), live)
    };
    if !send_json(
        &mut socket,
        &TerminalServerMessage::Ready {
            terminal_id: terminal.id.clone(),
        },
    )
    .await
    {
        return;
    }
    if !replay.is_empty() && socket.send(Message::Binary(replay.into())).await.is_err() {
        return;
    }
    let mut exited = terminal.exited.clone();
    loop {
        tokio::select! {
            chunk = live.recv() => match chunk {
                Ok(chunk) => if socket.send(Message::Binary(coalesce(&chunk, &mut live, MAX_FRAME).into())).await.is_err() { return },
                // This watcher fell behind: the oldest output it missed is gone; carry on.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = exited.changed() => {
                if changed.is_err() { return }
                let code = *exited.borrow();
                if let Some(code) = code {
                    // Deliver what the shell printed last before saying it exited.
                    while let Ok(chunk) = live.try_recv() {
                        let _ = socket.send(Message::Binary(chunk.to_vec().into())).await;
                    }
                    send_json(&mut socket, &TerminalServerMessage::Exit { code }).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) if !readonly => {
                    let _ = terminal.input.lock().await.write_all(&bytes).await;
                }
                Some(Ok(Message::Text(text))) if !readonly => {
                    if let Ok(TerminalClientMessage::Resize { cols, rows }) = serde_json::from_str(&text) {
                        terminal.resize(cols, rows).await;
                    }
                }
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Read-only viewers' input, pings and pongs are ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

//! Terminals: a login shell on a PTY, kept alive across connections.
//!
//! One task reads each PTY and never blocks: it appends to a bounded scrollback and broadcasts
//! to whoever watches. A watcher that falls behind loses the oldest output it missed (the
//! broadcast channel is bounded) while the terminal keeps running, so a flood such as `yes`
//! grows neither the agent's memory nor the control plane's.

use std::{
    collections::HashMap,
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
    output::{OutputLog, coalesce},
    user,
};

/// Scrollback replayed on attach.
const SCROLLBACK_BYTES: usize = 256 * 1024;
/// Live terminals per session.
const MAX_TERMINALS: usize = 32;
/// The most one chunk of terminal output holds.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Registry {
    terminals: Arc<Mutex<HashMap<String, Arc<Terminal>>>>,
    next_id: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Terminal {
    id: String,
    input: tokio::sync::Mutex<pty_process::OwnedWritePty>,
    output: OutputLog,
    /// `None` while running; the exit code once the shell has ended.
    exited: watch::Receiver<Option<Option<i32>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    fn get(&self, id: &str) -> Option<Arc<Terminal>> {
        lock(&self.terminals).get(id).cloned()
    }

    fn spawn(&self, state: &AgentState, cols: u16, rows: u16) -> Result<Arc<Terminal>, AgentError> {
        if lock(&self.terminals).len() >= MAX_TERMINALS {
            return Err(AgentError::conflict(format!(
                "this session already has {MAX_TERMINALS} terminals; close one"
            )));
        }
        let spawn_error = |e: pty_process::Error| {
            AgentError::bad_request(format!("cannot start a terminal: {e}"))
        };
        let (pty, pts) = pty_process::open().map_err(spawn_error)?;
        pty.resize(pty_process::Size::new(rows, cols))
            .map_err(spawn_error)?;
        let shell = user::shell();
        let mut child = pty_process::Command::new(shell)
            .arg("-l")
            .env_remove(SECRET_ENV)
            .envs(user::base_env(&state.config.home))
            .envs(state.session_env())
            .env("TERM", "xterm-256color")
            .current_dir(&state.config.home)
            .spawn(pts)
            .map_err(spawn_error)?;
        let (mut reader, writer) = pty.into_split();

        let id = format!("t{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let (exit_tx, exited) = watch::channel(None);
        let terminal = Arc::new(Terminal {
            id: id.clone(),
            input: tokio::sync::Mutex::new(writer),
            output: OutputLog::new(SCROLLBACK_BYTES),
            exited,
        });
        lock(&self.terminals).insert(id, terminal.clone());

        let registry = self.clone();
        let pump = terminal.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK];
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
                pump.output.push(Arc::from(&buf[..len]));
            }
            let code = child.wait().await.ok().and_then(|status| status.code());
            let _ = exit_tx.send(Some(code));
            lock(&registry.terminals).remove(&pump.id);
        });
        Ok(terminal)
    }
}

/// `GET /terminal`: attach to a terminal over a WebSocket (see `TerminalQuery`).
pub async fn attach(
    State(state): State<AgentState>,
    AgentQuery(q): AgentQuery<TerminalQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let terminal = match &q.terminal_id {
        Some(id) => match state.terminals.get(id) {
            Some(terminal) => terminal,
            None => {
                return AgentError::not_found(format!(
                    "terminal {id} not found; it may have exited"
                ))
                .into_response();
            }
        },
        None => match state
            .terminals
            .spawn(&state, q.cols.unwrap_or(80), q.rows.unwrap_or(24))
        {
            Ok(terminal) => terminal,
            Err(err) => return err.into_response(),
        },
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
                        let _ = terminal.input.lock().await.resize(pty_process::Size::new(rows.max(1), cols.max(1)));
                    }
                }
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Read-only viewers' input, pings and pongs are ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

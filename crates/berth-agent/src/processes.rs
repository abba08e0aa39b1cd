//! Processes with an identity, after E2B's envd: each has one event stream that any number of
//! clients attach to by id, and separate calls for stdin, closing stdin and signals.
//!
//! `GET /exec/stream` starts a foreground process (killed when its last client leaves, like
//! `docker exec`); `POST /processes` starts a background one that outlives its clients and is
//! listed by `GET /processes` until it has ended and been collected.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json,
    body::Body,
    extract::{
        Path, State, WebSocketUpgrade,
        ws::{Message, WebSocket},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use berth_proto::{
    agent::SECRET_ENV,
    process::{
        ExecRequest, ProcessEvent, ProcessInfo, ProcessInput, ProcessList, PtySize, STDERR_TAG,
        STDOUT_TAG, SignalRequest,
    },
};
use futures_util::StreamExt;
use rustix::process::{Pid, Signal};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::ChildStdin,
    sync::{broadcast, watch},
};

use crate::{
    AgentError, AgentState,
    error::AgentJson,
    exec::{DRAIN_GRACE, Launch, command, exit_parts, spawn},
    output::OutputLog,
};

/// Output replayed to a client that attaches late.
const BACKLOG_BYTES: usize = 256 * 1024;
/// Ended background processes kept for `GET /processes`.
const KEPT_ENDED: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
}

#[derive(Debug)]
struct Process {
    id: String,
    pid: u32,
    cmd: Vec<String>,
    foreground: bool,
    keepalive: bool,
    pty: bool,
    stdin: tokio::sync::Mutex<Option<Input>>,
    output: OutputLog,
    /// Output pipes still open; the output is complete when this reaches zero. A watch, so a
    /// client waiting for the last output hears the moment the pipes close.
    open_readers: watch::Sender<usize>,
    exited: watch::Receiver<Option<Exit>>,
    attached: AtomicUsize,
}

/// Where a process's standard input goes: its pipe, or the terminal it runs under (whose
/// other side is also its output).
#[derive(Debug)]
enum Input {
    Pipe(ChildStdin),
    Terminal(pty_process::OwnedWritePty),
}

impl Input {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Pipe(pipe) => pipe.write_all(bytes).await,
            Self::Terminal(terminal) => terminal.write_all(bytes).await,
        }
    }

    fn resize(&self, cols: u16, rows: u16) {
        if let Self::Terminal(terminal) = self {
            let _ = terminal.resize(pty_process::Size::new(rows.max(1), cols.max(1)));
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Registry {
    processes: Arc<Mutex<HashMap<String, Arc<Process>>>>,
    next_id: Arc<AtomicU64>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Process {
    fn info(&self) -> ProcessInfo {
        let exit = *self.exited.borrow();
        ProcessInfo {
            id: self.id.clone(),
            pid: self.pid,
            cmd: self.cmd.clone(),
            running: exit.is_none(),
            keepalive: self.keepalive,
            pty: self.pty,
            exit_code: exit.and_then(|e| e.code),
            signal: exit.and_then(|e| e.signal),
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }
}

impl Registry {
    fn get(&self, id: &str) -> Result<Arc<Process>, AgentError> {
        lock(&self.processes)
            .get(id)
            .cloned()
            .ok_or_else(|| AgentError::not_found(format!("process {id} not found")))
    }

    fn start(
        &self,
        state: &AgentState,
        req: &ExecRequest,
        foreground: bool,
    ) -> Result<Arc<Process>, AgentError> {
        let (mut child, input, outputs) = match req.pty {
            None => {
                let mut child = spawn(command(state, req)?, req)?;
                let input = child.stdin.take().map(Input::Pipe);
                let outputs: Vec<(Box<dyn AsyncRead + Send + Unpin>, u8)> = [
                    child.stdout.take().map(|p| (Box::new(p) as _, STDOUT_TAG)),
                    child.stderr.take().map(|p| (Box::new(p) as _, STDERR_TAG)),
                ]
                .into_iter()
                .flatten()
                .collect();
                (child, input, outputs)
            }
            Some(size) => {
                let (child, reader, writer) = spawn_in_terminal(state, req, size)?;
                let outputs: Vec<(Box<dyn AsyncRead + Send + Unpin>, u8)> =
                    vec![(Box::new(reader), STDOUT_TAG)];
                (child, Some(Input::Terminal(writer)), outputs)
            }
        };
        let pid = child.id().unwrap_or_default();
        let id = format!("p{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let (exit_tx, exited) = watch::channel(None);
        let process = Arc::new(Process {
            id: id.clone(),
            pid,
            cmd: req.cmd.clone(),
            foreground,
            keepalive: req.keepalive,
            pty: req.pty.is_some(),
            stdin: tokio::sync::Mutex::new(input),
            output: OutputLog::new(BACKLOG_BYTES),
            open_readers: watch::Sender::new(outputs.len()),
            exited,
            attached: AtomicUsize::new(0),
        });
        for (output, tag) in outputs {
            tokio::spawn(pump(process.clone(), output, tag));
        }
        if let Some(input) = req.stdin.clone().filter(|s| !s.is_empty()) {
            let process = process.clone();
            tokio::spawn(async move {
                if let Some(stdin) = process.stdin.lock().await.as_mut() {
                    let _ = stdin.write(input.as_bytes()).await;
                }
            });
        }
        let timeout = req.timeout_ms.map(Duration::from_millis);
        let watcher = process.clone();
        tokio::spawn(async move {
            let (status, timed_out) = match timeout {
                Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
                    Ok(status) => (status, false),
                    Err(_) => {
                        watcher.signal(Signal::KILL);
                        (child.wait().await, true)
                    }
                },
                None => (child.wait().await, false),
            };
            let (code, signal) = status.map(exit_parts).unwrap_or((None, None));
            let _ = exit_tx.send(Some(Exit {
                code,
                signal,
                timed_out,
            }));
        });
        let mut processes = lock(&self.processes);
        let ended: Vec<String> = processes
            .values()
            .filter(|p| !p.info().running)
            .map(|p| p.id.clone())
            .collect();
        for old in ended.iter().take(ended.len().saturating_sub(KEPT_ENDED)) {
            processes.remove(old);
        }
        processes.insert(id, process.clone());
        Ok(process)
    }
}

/// Copies one output pipe into the process's backlog and broadcast, never blocking on clients.
/// A terminal's ends in EIO once every process holding it is gone: the same as an end here.
async fn pump(process: Arc<Process>, mut output: Box<dyn AsyncRead + Send + Unpin>, tag: u8) {
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n @ 1..) = output.read(&mut buf[1..]).await {
        buf[0] = tag;
        process.output.push(Arc::from(&buf[..=n]));
    }
    process.open_readers.send_modify(|open| *open -= 1);
}

/// Starts `req` under a new terminal of `size`, leading its own session (so its process group
/// gets the signals, as with pipes).
fn spawn_in_terminal(
    state: &AgentState,
    req: &ExecRequest,
    size: PtySize,
) -> Result<
    (
        tokio::process::Child,
        pty_process::OwnedReadPty,
        pty_process::OwnedWritePty,
    ),
    AgentError,
> {
    let launch = Launch::of(state, req)?;
    let failed = |err: pty_process::Error| {
        let message = format!("cannot run {:?} in a terminal: {err}", req.cmd[0]);
        // As `exec::spawn`: a program that is not there is named, not malformed.
        match err {
            pty_process::Error::Io(err) if err.kind() == std::io::ErrorKind::NotFound => {
                AgentError::not_found(message)
            }
            _ => AgentError::bad_request(message),
        }
    };
    let (pty, pts) = pty_process::open().map_err(failed)?;
    pty.resize(pty_process::Size::new(size.rows.max(1), size.cols.max(1)))
        .map_err(failed)?;
    let child = pty_process::Command::new(launch.program)
        .args(launch.args)
        .env_remove(SECRET_ENV)
        .envs(launch.env)
        .env("TERM", "xterm-256color")
        .current_dir(launch.cwd)
        .spawn(pts)
        .map_err(failed)?;
    let (reader, writer) = pty.into_split();
    Ok((child, reader, writer))
}

/// `GET /exec/stream`: the first text frame is the `ExecRequest`; the process is attached at
/// once and killed when the connection ends.
pub async fn stream(State(state): State<AgentState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let req = match socket.recv().await {
            Some(Ok(Message::Text(text))) => serde_json::from_str::<ExecRequest>(&text)
                .map_err(|e| AgentError::bad_request(format!("invalid exec request: {e}"))),
            _ => return,
        };
        match req.and_then(|req| state.processes.start(&state, &req, true)) {
            Ok(process) => attach_socket(process, socket).await,
            Err(err) => {
                send_event(
                    &mut socket,
                    &ProcessEvent::Error {
                        message: err.message,
                    },
                )
                .await;
            }
        }
    })
}

/// `POST /processes`: starts a background process and answers with its id.
pub async fn start(
    State(state): State<AgentState>,
    AgentJson(req): AgentJson<ExecRequest>,
) -> Result<impl IntoResponse, AgentError> {
    let process = state.processes.start(&state, &req, false)?;
    journal_exit(&state, &process, &req);
    Ok((StatusCode::CREATED, Json(process.info())))
}

/// Notes a background process's end, with how it ended, in the journal.
fn journal_exit(state: &AgentState, process: &Arc<Process>, req: &ExecRequest) {
    let journal = state.journal.clone();
    let mut exited = process.exited.clone();
    let (id, command) = (process.id.clone(), req.cmd.join(" "));
    tokio::spawn(async move {
        let exit = loop {
            if let Some(exit) = *exited.borrow_and_update() {
                break exit;
            }
            if exited.changed().await.is_err() {
                return;
            }
        };
        let ended = match (exit.code, exit.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "ended".to_owned(),
        };
        let message = format!("background process {id} (`{command}`) ended: {ended}");
        let data = serde_json::json!({
            "process": id, "command": command, "exit_code": exit.code, "signal": exit.signal,
        });
        journal.push("process_exited", message, data);
    });
}

/// `GET /processes`.
pub async fn list(State(state): State<AgentState>) -> Json<ProcessList> {
    let mut processes: Vec<ProcessInfo> = lock(&state.processes.processes)
        .values()
        .filter(|p| !p.foreground)
        .map(|p| p.info())
        .collect();
    processes.sort_by_key(|p| p.id[1..].parse::<u64>().unwrap_or_default());
    Json(ProcessList { processes })
}

/// `GET /processes/{id}/attach`: the backlog, then live output, then `end`.
pub async fn attach(
    State(state): State<AgentState>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, AgentError> {
    let process = state.processes.get(&id)?;
    Ok(ws.on_upgrade(move |socket| attach_socket(process, socket)))
}

/// `POST /processes/{id}/stdin`: the body is written to the process's standard input.
pub async fn write_stdin(
    State(state): State<AgentState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<StatusCode, AgentError> {
    let process = state.processes.get(&id)?;
    let mut stdin = process.stdin.lock().await;
    let pipe = stdin
        .as_mut()
        .ok_or_else(|| AgentError::conflict(format!("the standard input of {id} is closed")))?;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| AgentError::bad_request(e.to_string()))?;
        pipe.write(&chunk)
            .await
            .map_err(|e| AgentError::conflict(format!("{id} no longer reads its input: {e}")))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /processes/{id}/stdin/close`.
pub async fn close_stdin(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AgentError> {
    close_input(&*state.processes.get(&id)?).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /processes/{id}/resize`: the terminal of a process started with `pty`.
pub async fn resize(
    State(state): State<AgentState>,
    Path(id): Path<String>,
    AgentJson(size): AgentJson<PtySize>,
) -> Result<StatusCode, AgentError> {
    let process = state.processes.get(&id)?;
    if !process.pty {
        return Err(AgentError::conflict(format!(
            "process {id} has no terminal to resize: start it with pty"
        )));
    }
    if let Some(input) = process.stdin.lock().await.as_ref() {
        input.resize(size.cols, size.rows);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /processes/{id}/signal`: to the process's whole group.
pub async fn signal(
    State(state): State<AgentState>,
    Path(id): Path<String>,
    AgentJson(req): AgentJson<SignalRequest>,
) -> Result<StatusCode, AgentError> {
    let process = state.processes.get(&id)?;
    let signal = Signal::from_named_raw(req.signal)
        .ok_or_else(|| AgentError::bad_request(format!("{} is not a signal number", req.signal)))?;
    if !process.info().running {
        return Err(AgentError::conflict(format!(
            "process {id} has already ended"
        )));
    }
    process.signal(signal);
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the process's input: a pipe is closed; a terminal is typed ^D, its end-of-file (the
/// terminal stays: it is also the output).
async fn close_input(process: &Process) {
    let mut input = process.stdin.lock().await;
    if let Some(Input::Terminal(terminal)) = input.as_mut() {
        let _ = terminal.write_all(b"\x04").await;
    } else {
        input.take();
    }
}

async fn send_event(socket: &mut WebSocket, event: &ProcessEvent) -> bool {
    let text = serde_json::to_string(event).unwrap_or_default();
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn attach_socket(process: Arc<Process>, mut socket: WebSocket) {
    process.attached.fetch_add(1, Ordering::SeqCst);
    relay(&process, &mut socket).await;
    let left = process.attached.fetch_sub(1, Ordering::SeqCst) - 1;
    if process.foreground && left == 0 {
        process.signal(Signal::KILL);
    }
}

async fn relay(process: &Process, socket: &mut WebSocket) {
    let (backlog, mut live) = process.output.attach();
    if !send_event(
        socket,
        &ProcessEvent::Start {
            id: process.id.clone(),
            pid: process.pid,
            pty: process.pty,
        },
    )
    .await
    {
        return;
    }
    for chunk in backlog {
        if socket
            .send(Message::Binary(chunk.to_vec().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut exited = process.exited.clone();
    loop {
        let exit = *exited.borrow_and_update();
        if let Some(exit) = exit {
            // Output pipes may outlive the process (a child holding them open, for at most
            // `DRAIN_GRACE`): deliver what they still hold, and stop once they are closed.
            let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
            let mut open_readers = process.open_readers.subscribe();
            while *open_readers.borrow_and_update() > 0 || !live.is_empty() {
                tokio::select! {
                    chunk = live.recv() => match chunk {
                        Ok(chunk) => {
                            let _ = socket.send(Message::Binary(chunk.to_vec().into())).await;
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    changed = open_readers.changed() => if changed.is_err() { break },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let end = ProcessEvent::End {
                exit_code: exit.code,
                signal: exit.signal,
                timed_out: exit.timed_out,
            };
            send_event(socket, &end).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        tokio::select! {
            chunk = live.recv() => match chunk {
                Ok(chunk) => if socket.send(Message::Binary(chunk.to_vec().into())).await.is_err() { return },
                // This client fell behind: the oldest output it missed is gone; carry on.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {}
            },
            changed = exited.changed() => if changed.is_err() { return },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some(stdin) = process.stdin.lock().await.as_mut() {
                        let _ = stdin.write(&bytes).await;
                    }
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ProcessInput>(&text) {
                    Ok(ProcessInput::CloseStdin) => close_input(process).await,
                    Ok(ProcessInput::Resize { cols, rows }) => {
                        if let Some(input) = process.stdin.lock().await.as_ref() {
                            input.resize(cols, rows);
                        }
                    }
                    Ok(ProcessInput::Signal { signal }) => {
                        if let Some(signal) = Signal::from_named_raw(signal) {
                            process.signal(signal);
                        }
                    }
                    Err(_) => {}
                },
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

//! Processes: buffered (`POST /exec`) and streamed over a WebSocket (`GET /exec/stream`).
//!
//! Every process leads its own process group, so a timeout or a signal reaches everything it
//! started, not just the first process.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, WebSocket},
    },
    response::Response,
};
use berth_proto::{
    agent::SECRET_ENV,
    process::{ExecRequest, ExecResult},
};
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::{Child, Command},
    sync::mpsc,
};

use crate::{AgentError, AgentState, error::AgentJson, user};

/// Output kept per stream by `POST /exec`; the rest is drained and dropped.
const OUTPUT_CAP: usize = 1024 * 1024;
/// After the main process ends, how long its output pipes may stay open (held by background
/// children) before the answer is sent anyway.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

fn command(state: &AgentState, req: &ExecRequest) -> Result<Command, AgentError> {
    let (program, args) = req
        .cmd
        .split_first()
        .ok_or_else(|| AgentError::bad_request("cmd must not be empty"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove(SECRET_ENV)
        .envs(user::base_env(&state.config.home))
        .envs(&req.env)
        .current_dir(
            req.cwd
                .as_deref()
                .map_or_else(|| state.config.home.clone(), Into::into),
        )
        .process_group(0)
        .kill_on_drop(false);
    Ok(command)
}

fn spawn(mut command: Command, req: &ExecRequest) -> Result<Child, AgentError> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().map_err(|err| {
        let cwd = req.cwd.as_deref().unwrap_or("~");
        AgentError::bad_request(format!("cannot run {:?} in {cwd}: {err}", req.cmd[0]))
    })
}

fn kill_group(child: &Child, signal: Signal) {
    if let Some(pid) = child
        .id()
        .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?))
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn exit_parts(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    (status.code(), status.signal())
}

/// Reads a stream to its end, keeping the first `OUTPUT_CAP` bytes.
async fn capture(mut stream: impl AsyncRead + Unpin) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
}

pub async fn run(
    State(state): State<AgentState>,
    AgentJson(req): AgentJson<ExecRequest>,
) -> Result<Json<ExecResult>, AgentError> {
    let started = Instant::now();
    let mut child = spawn(command(&state, &req)?, &req)?;
    if let Some(mut stdin) = child.stdin.take() {
        let input = req.stdin.clone().unwrap_or_default();
        // Written from a task, so a process that never reads its input cannot block us.
        tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
        });
    }
    let stdout = tokio::spawn(capture(child.stdout.take().expect("piped")));
    let stderr = tokio::spawn(capture(child.stderr.take().expect("piped")));

    let timeout = req.timeout_ms.map(Duration::from_millis);
    let (status, timed_out) = match timeout {
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => (status, false),
            Err(_) => {
                kill_group(&child, Signal::KILL);
                (child.wait().await, true)
            }
        },
        None => (child.wait().await, false),
    };
    let status =
        status.map_err(|e| AgentError::bad_request(format!("waiting for the process: {e}")))?;
    let (out, out_cut) = join_within(stdout, DRAIN_GRACE).await;
    let (err, err_cut) = join_within(stderr, DRAIN_GRACE).await;
    let (exit_code, signal) = exit_parts(status);
    Ok(Json(ExecResult {
        exit_code,
        signal,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        truncated: out_cut || err_cut,
        timed_out,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

async fn join_within(
    task: tokio::task::JoinHandle<(Vec<u8>, bool)>,
    grace: Duration,
) -> (Vec<u8>, bool) {
    let abort = task.abort_handle();
    match tokio::time::timeout(grace, task).await {
        Ok(Ok(result)) => result,
        _ => {
            abort.abort();
            (Vec::new(), false)
        }
    }
}

/// Text frames a streaming-exec client sends after the first (the `ExecRequest`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamInput {
    CloseStdin,
    Signal { signal: i32 },
}

/// Text frames the agent sends: `start`, then (binary frames of output) `end`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    Start {
        pid: u32,
    },
    End {
        exit_code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
    },
    Error {
        message: String,
    },
}

/// First byte of every binary frame the agent sends: which stream the rest came from.
pub const STDOUT_TAG: u8 = 1;
pub const STDERR_TAG: u8 = 2;

/// `GET /exec/stream`: a WebSocket carrying one process, in the shape of E2B's envd: the client
/// sends the `ExecRequest` as its first text frame, then binary frames for stdin and text frames
/// `{"type":"close_stdin"}` / `{"type":"signal","signal":15}`; the agent answers `start`,
/// binary output frames tagged 1 (stdout) or 2 (stderr), and `end`.
pub async fn stream(State(state): State<AgentState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| stream_session(state, socket))
}

async fn send_event(socket: &mut WebSocket, event: &StreamEvent) -> bool {
    let text = serde_json::to_string(event).unwrap_or_default();
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn stream_session(state: AgentState, mut socket: WebSocket) {
    let req = match socket.recv().await {
        Some(Ok(Message::Text(text))) => match serde_json::from_str::<ExecRequest>(&text) {
            Ok(req) => req,
            Err(err) => {
                send_event(
                    &mut socket,
                    &StreamEvent::Error {
                        message: format!("invalid exec request: {err}"),
                    },
                )
                .await;
                return;
            }
        },
        _ => return,
    };
    let mut child = match command(&state, &req).and_then(|c| spawn(c, &req)) {
        Ok(child) => child,
        Err(err) => {
            send_event(
                &mut socket,
                &StreamEvent::Error {
                    message: err.message,
                },
            )
            .await;
            return;
        }
    };
    if !send_event(
        &mut socket,
        &StreamEvent::Start {
            pid: child.id().unwrap_or_default(),
        },
    )
    .await
    {
        kill_group(&child, Signal::KILL);
        return;
    }
    // Both output pipes feed one bounded channel: a slow client slows the reads, and the
    // process blocks on a full pipe instead of the agent buffering without bound.
    let (output, mut outputs) = mpsc::channel::<Vec<u8>>(16);
    for (pipe, tag) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
            STDOUT_TAG,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
            STDERR_TAG,
        ),
    ] {
        if let Some(mut pipe) = pipe {
            let output = output.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf[1..]).await {
                    buf[0] = tag;
                    if output.send(buf[..=n].to_vec()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    drop(output);
    // Held here, not in `child`: `Child::wait` closes the stdin it still owns.
    let mut stdin = child.stdin.take();
    if let (Some(input), Some(pipe)) = (
        req.stdin.as_deref().filter(|s| !s.is_empty()),
        stdin.as_mut(),
    ) {
        let _ = pipe.write_all(input.as_bytes()).await;
    }

    let mut deadline = req
        .timeout_ms
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let mut timed_out = false;
    let mut outputs_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            chunk = outputs.recv(), if outputs_open => match chunk {
                Some(chunk) => if socket.send(Message::Binary(chunk.into())).await.is_err() {
                    kill_group(&child, Signal::KILL);
                },
                None => outputs_open = false,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some(pipe) = stdin.as_mut() {
                        let _ = pipe.write_all(&bytes).await;
                    }
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<StreamInput>(&text) {
                    Ok(StreamInput::CloseStdin) => drop(stdin.take()),
                    Ok(StreamInput::Signal { signal }) => {
                        if let Some(signal) = Signal::from_named_raw(signal) {
                            kill_group(&child, signal);
                        }
                    }
                    Err(_) => {}
                },
                // The client went away: the process goes with it.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => kill_group(&child, Signal::KILL),
                Some(Ok(_)) => {}
            },
            () = sleep_until(deadline) => {
                deadline = None;
                timed_out = true;
                kill_group(&child, Signal::KILL);
            }
        }
    };
    // Flush what the pipes still hold, within the grace period.
    let flush_until = tokio::time::Instant::now() + DRAIN_GRACE;
    while outputs_open {
        match tokio::time::timeout_at(flush_until, outputs.recv()).await {
            Ok(Some(chunk)) => {
                let _ = socket.send(Message::Binary(chunk.into())).await;
            }
            _ => outputs_open = false,
        }
    }
    let (exit_code, signal) = status.map(exit_parts).unwrap_or((None, None));
    send_event(
        &mut socket,
        &StreamEvent::End {
            exit_code,
            signal,
            timed_out,
        },
    )
    .await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

//! Buffered processes: `POST /exec` answers when the command ends. Streamed and background
//! processes live in `processes.rs`.
//!
//! Every process leads its own process group, so a timeout or a signal reaches everything it
//! started, not just the first process.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use axum::{Json, extract::State};
use berth_proto::{
    agent::SECRET_ENV,
    process::{ExecOnce, ExecRequest, ExecResult},
};
use rustix::process::{Pid, Signal};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::{Child, Command},
};

use crate::{AgentError, AgentState, error::AgentJson, user};

/// Output kept per stream by `POST /exec`; the rest is drained and dropped.
const OUTPUT_CAP: usize = 1024 * 1024;
/// After the main process ends, how long its output pipes may stay open (held by background
/// children) before the answer is sent anyway.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What a request's process is started with, whether its output goes to pipes or a terminal.
pub(crate) struct Launch<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// On top of the agent's environment, which loses the agent's secret.
    pub env: Vec<(String, String)>,
    pub cwd: std::path::PathBuf,
}

impl<'a> Launch<'a> {
    pub(crate) fn of(state: &AgentState, req: &'a ExecRequest) -> Result<Self, AgentError> {
        let (program, args) = req
            .cmd
            .split_first()
            .ok_or_else(|| AgentError::bad_request("cmd must not be empty"))?;
        let mut env = user::base_env(&state.config.home);
        env.extend(state.session_env());
        env.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(Self {
            program,
            args,
            env,
            cwd: req
                .cwd
                .as_deref()
                .map_or_else(|| state.config.home.clone(), Into::into),
        })
    }
}

pub(crate) fn command(state: &AgentState, req: &ExecRequest) -> Result<Command, AgentError> {
    let launch = Launch::of(state, req)?;
    let mut command = Command::new(launch.program);
    command
        .args(launch.args)
        .env_remove(SECRET_ENV)
        .envs(launch.env)
        .current_dir(launch.cwd)
        .process_group(0)
        .kill_on_drop(false);
    Ok(command)
}

pub(crate) fn spawn(mut command: Command, req: &ExecRequest) -> Result<Child, AgentError> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().map_err(|err| {
        let cwd = req.cwd.as_deref().unwrap_or("~");
        let message = format!("cannot run {:?} in {cwd}: {err}", req.cmd[0]);
        // No such program (or directory): any command line is a well-formed request, so not a
        // 400; and not a 404, which says the session is not there.
        if err.kind() == std::io::ErrorKind::NotFound {
            AgentError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                berth_proto::ErrorCode::InvalidRequest,
                message,
            )
        } else {
            AgentError::bad_request(message)
        }
    })
}

pub(crate) fn kill_group_of(child: &Child, signal: Signal) {
    if let Some(pid) = child
        .id()
        .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?))
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

pub(crate) fn exit_parts(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
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
    AgentJson(once): AgentJson<ExecOnce>,
) -> Result<Json<ExecResult>, AgentError> {
    let req = ExecRequest::from(once);
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
                kill_group_of(&child, Signal::KILL);
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

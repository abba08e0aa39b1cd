//! envd's `process.Process` service over the agent's background processes. A started command
//! is one of them, so it outlives its stream: a dropped connection does not end it, and
//! `Connect` attaches again (its output from the start, then live). E2B names processes by
//! their pid; the agent's listing maps a pid to its own id, so nothing is kept here.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, Method},
    response::Response,
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use berth_proto::{
    ErrorCode,
    process::{
        ExecRequest, ProcessEvent, ProcessInfo, ProcessList, PtySize, STDERR_TAG, STDOUT_TAG,
    },
};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{
    connect::{self, invalid},
    envd::{Sandbox, sandbox},
};
use crate::api::{
    AppState,
    error::{ApiError, ConnectError},
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProcessConfig {
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    cwd: Option<String>,
}

/// envd's `PTY`: the terminal a process runs under.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Pty {
    size: PtySize,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartRequest {
    process: ProcessConfig,
    pty: Option<Pty>,
    tag: Option<String>,
    /// Absent means an open stdin (envd's default for old SDKs); newer SDKs send `false`.
    stdin: Option<bool>,
}

/// Which process a call is about. E2B also selects by tag, which only PTY sessions set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    pid: Option<u32>,
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SelectRequest {
    process: Selector,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendInputRequest {
    process: Selector,
    input: ProcessInput,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProcessInput {
    stdin: Option<String>,
    pty: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendSignalRequest {
    process: Selector,
    signal: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateRequest {
    process: Selector,
    pty: Option<Pty>,
}

impl ProcessInput {
    /// The bytes to write: a PTY's keystrokes go to its terminal as stdin does.
    fn bytes(self) -> Result<Vec<u8>, ConnectError> {
        let data = match (self.stdin, self.pty) {
            (Some(data), None) | (None, Some(data)) => data,
            _ => return Err(invalid("input must hold exactly one of stdin and pty")),
        };
        BASE64
            .decode(data)
            .map_err(|e| invalid(format!("input is not base64: {e}")))
    }
}

/// `Start` (server stream): runs the command as a background process and streams its events.
/// `Connect-Timeout-Ms` becomes the process's timeout, as envd ties a process to its call.
pub async fn start(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let opened = async {
        let request: StartRequest = connect::stream_request(&headers, body).await?;
        if request.tag.is_some() {
            return Err(invalid(
                "process tags are not supported (they name PTY sessions)",
            ));
        }
        if request.process.cmd.is_empty() {
            return Err(invalid("process.cmd is empty"));
        }
        let timeout = connect::timeout(&headers)?;
        let sandbox = sandbox(&state, &headers).await?;
        let mut cmd = vec![request.process.cmd];
        cmd.extend(request.process.args);
        let exec = ExecRequest {
            cmd,
            cwd: request.process.cwd,
            env: request.process.envs,
            stdin: None,
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
            // E2B's sandboxes have no idle policy: a command the SDK started must not have
            // its session put to sleep under it.
            keepalive: true,
            pty: request.pty.map(|pty| pty.size),
        };
        let body = serde_json::to_value(&exec).map_err(ApiError::internal)?;
        let started: ProcessInfo = sandbox
            .call(&state, Method::POST, "/processes", Some(body))
            .await?;
        // The attach replays the output from the start, so it need not wait for the close.
        let close_stdin = async {
            // A PTY's input is its terminal, which envd never closes: closing it would type ^D
            // into the shell.
            if request.stdin == Some(false) && exec.pty.is_none() {
                let path = format!("/processes/{}/stdin/close", started.id);
                sandbox
                    .call::<Value>(&state, Method::POST, &path, None)
                    .await?;
            }
            Ok::<_, ApiError>(())
        };
        let (closed, attached) = tokio::join!(close_stdin, attach(&sandbox, &started.id));
        closed?;
        attached
    };
    relay(opened.await, connect::keepalive(&headers)).await
}

/// `Connect` (server stream): attaches to a running process by pid: its output so far, then
/// live output and its end.
pub async fn connect(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let opened = async {
        let request: SelectRequest = connect::stream_request(&headers, body).await?;
        let sandbox = sandbox(&state, &headers).await?;
        let process = find(&state, &sandbox, &request.process).await?;
        attach(&sandbox, &process.id).await
    };
    relay(opened.await, connect::keepalive(&headers)).await
}

async fn attach(sandbox: &Sandbox, id: &str) -> Result<crate::proxy::AgentSocket, ConnectError> {
    Ok(sandbox
        .websocket(&format!("/processes/{id}/attach"))
        .await?)
}

/// Translates the agent's process stream into envd's events until the process ends or the
/// client goes. A failure before the stream opened is the stream's only message.
async fn relay(
    opened: Result<crate::proxy::AgentSocket, ConnectError>,
    keepalive: Duration,
) -> Response {
    let (response, stream) = connect::stream();
    let mut socket = match opened {
        Ok(socket) => socket,
        Err(err) => {
            stream.end(Some(err)).await;
            return response;
        }
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(keepalive);
        ticks.reset();
        // A terminal's output is envd's `pty` data, not stdout.
        let mut stdout = "stdout";
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                _ = ticks.tick() => {
                    if !stream.send(json!({"event": {"keepalive": {}}})).await {
                        return;
                    }
                    continue;
                }
            };
            let event = match message {
                Some(Ok(Message::Binary(frame))) => match frame.split_first() {
                    Some((&STDOUT_TAG, data)) => json!({"data": {stdout: BASE64.encode(data)}}),
                    Some((&STDERR_TAG, data)) => json!({"data": {"stderr": BASE64.encode(data)}}),
                    _ => continue,
                },
                Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                    Ok(ProcessEvent::Start { pid, pty, .. }) => {
                        if pty {
                            stdout = "pty";
                        }
                        json!({"start": {"pid": pid}})
                    }
                    Ok(ProcessEvent::End {
                        exit_code,
                        signal,
                        timed_out,
                    }) => {
                        let end = end_event(exit_code, signal, timed_out);
                        if stream.send(json!({ "event": { "end": end } })).await {
                            stream.end(None).await;
                        }
                        return;
                    }
                    Ok(ProcessEvent::Error { message }) => {
                        let error = ApiError::coded(ErrorCode::SessionFailed, message);
                        stream.end(Some(error.into())).await;
                        return;
                    }
                    Err(_) => continue,
                },
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    let error = ApiError::coded(
                        ErrorCode::SessionFailed,
                        "the session's agent closed the process stream before the process ended",
                    );
                    stream.end(Some(error.into())).await;
                    return;
                }
            };
            if !stream.send(json!({ "event": event })).await {
                // The client went: the process goes on, and `Connect` finds it again.
                return;
            }
        }
    });
    response
}

/// envd's end event: Go's wait status in words, and the error text the SDKs raise with.
fn end_event(exit_code: Option<i32>, signal: Option<i32>, timed_out: bool) -> Value {
    let status = match (exit_code, signal) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".to_owned(),
        (None, Some(15)) => "signal: terminated".to_owned(),
        (None, Some(signal)) => format!("signal: {signal}"),
        (None, None) => "exited".to_owned(),
    };
    let mut end = json!({
        "exitCode": exit_code.unwrap_or(-1),
        "exited": exit_code.is_some(),
        "status": status,
    });
    if timed_out {
        end["error"] = json!("the command's timeout passed; it was killed");
    } else if exit_code != Some(0) {
        end["error"] = json!(status);
    }
    end
}

/// The agent's process a selector names: running, or recently ended.
async fn find(
    state: &AppState,
    sandbox: &Sandbox,
    selector: &Selector,
) -> Result<ProcessInfo, ConnectError> {
    let pid = match (selector.pid, &selector.tag) {
        (Some(pid), None) => pid,
        (None, Some(_)) => return Err(invalid("selecting a process by tag is not supported")),
        _ => return Err(invalid("process must name exactly one of pid and tag")),
    };
    let list: ProcessList = sandbox.call(state, Method::GET, "/processes", None).await?;
    // Pids are reused: the running process of that pid first, else the latest that had it.
    let mut matching: Vec<_> = list
        .processes
        .into_iter()
        .filter(|p| p.pid == pid)
        .collect();
    matching.sort_by_key(|p| p.running);
    matching.pop().ok_or_else(|| {
        ConnectError::from(ApiError::not_found(format!(
            "process with pid {pid} not found"
        )))
    })
}

/// `List`: the running processes.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let answer = async {
        let _: Value = connect::unary(&headers, body).await?;
        let sandbox = sandbox(&state, &headers).await?;
        let list: ProcessList = sandbox
            .call(&state, Method::GET, "/processes", None)
            .await?;
        let processes: Vec<_> = list
            .processes
            .into_iter()
            .filter(|p| p.running)
            .map(|p| {
                let (cmd, args) = p.cmd.split_first().map_or(("", &[][..]), |(c, a)| (c, a));
                json!({ "pid": p.pid, "config": { "cmd": cmd, "args": args, "envs": {} } })
            })
            .collect();
        Ok::<_, ConnectError>(connect::reply(json!({ "processes": processes })))
    };
    answer
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response)
}

/// `SendInput`: bytes to a process's stdin, or its terminal's.
pub async fn send_input(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let answer = async {
        let request: SendInputRequest = connect::unary(&headers, body).await?;
        let bytes = request.input.bytes()?;
        let sandbox = sandbox(&state, &headers).await?;
        let process = find(&state, &sandbox, &request.process).await?;
        let write = hyper::Request::post(format!("/processes/{}/stdin", process.id))
            .body(Body::from(bytes))
            .map_err(ApiError::internal)?;
        sandbox.send(&state, write).await?;
        Ok::<_, ConnectError>(connect::reply(json!({})))
    };
    answer
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response)
}

/// `CloseStdin`: the process reads end-of-file.
pub async fn close_stdin(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let request: SelectRequest = connect::unary(&headers, body).await?;
        let sandbox = sandbox(&state, &headers).await?;
        let process = find(&state, &sandbox, &request.process).await?;
        let path = format!("/processes/{}/stdin/close", process.id);
        sandbox
            .call::<Value>(&state, Method::POST, &path, None)
            .await?;
        Ok::<_, ConnectError>(connect::reply(json!({})))
    };
    answer
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response)
}

/// `SendSignal`: SIGTERM or SIGKILL, to the process's whole group (as the agent signals).
pub async fn send_signal(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let request: SendSignalRequest = connect::unary(&headers, body).await?;
        let signal = match &request.signal {
            Value::String(name) if name == "SIGNAL_SIGKILL" => 9,
            Value::String(name) if name == "SIGNAL_SIGTERM" => 15,
            Value::Number(n) if matches!(n.as_u64(), Some(9 | 15)) => {
                n.as_u64().unwrap_or(9) as i32
            }
            other => {
                return Err(invalid(format!(
                    "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM, not {other}"
                )));
            }
        };
        let sandbox = sandbox(&state, &headers).await?;
        let process = find(&state, &sandbox, &request.process).await?;
        if !process.running {
            return Err(ApiError::not_found(format!(
                "process with pid {} has already ended",
                process.pid
            ))
            .into());
        }
        let path = format!("/processes/{}/signal", process.id);
        sandbox
            .call::<Value>(
                &state,
                Method::POST,
                &path,
                Some(json!({ "signal": signal })),
            )
            .await?;
        Ok(connect::reply(json!({})))
    };
    answer
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StreamInputRequest {
    start: Option<SelectRequest>,
    data: Option<StreamInputData>,
    keepalive: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StreamInputData {
    input: ProcessInput,
}

/// `StreamInput` (client stream): a `start` naming the process, then `data` messages, each
/// written to its stdin as it arrives.
pub async fn stream_input(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let mut incoming = connect::incoming(&headers, body)?;
        let first: StreamInputRequest = incoming
            .next()
            .await?
            .ok_or_else(|| invalid("the stream must start with a start message"))?;
        let start = first
            .start
            .ok_or_else(|| invalid("the stream must start with a start message"))?;
        let sandbox = sandbox(&state, &headers).await?;
        let process = find(&state, &sandbox, &start.process).await?;
        while let Some(message) = incoming.next::<StreamInputRequest>().await? {
            let input = match message {
                StreamInputRequest {
                    data: Some(data),
                    start: None,
                    keepalive: None,
                } => data.input,
                StreamInputRequest {
                    keepalive: Some(_),
                    start: None,
                    data: None,
                } => continue,
                _ => return Err(invalid("after start, a stream carries data or keepalives")),
            };
            let bytes = input.bytes()?;
            let write = hyper::Request::post(format!("/processes/{}/stdin", process.id))
                .body(Body::from(bytes))
                .map_err(ApiError::internal)?;
            sandbox.send(&state, write).await?;
        }
        Ok(json!({}))
    };
    connect::client_stream_reply(result.await)
}

/// `Update`: resizes a PTY.
pub async fn update(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let answer = async {
        let request: UpdateRequest = connect::unary(&headers, body).await?;
        if let Some(pty) = request.pty {
            let sandbox = sandbox(&state, &headers).await?;
            let process = find(&state, &sandbox, &request.process).await?;
            let path = format!("/processes/{}/resize", process.id);
            let size = serde_json::to_value(pty.size).map_err(ApiError::internal)?;
            sandbox
                .call::<Value>(&state, Method::POST, &path, Some(size))
                .await?;
        }
        Ok::<_, ConnectError>(connect::reply(json!({})))
    };
    answer
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::end_event;

    #[test]
    fn end_events_say_how_the_process_ended() {
        let ok = end_event(Some(0), None, false);
        assert_eq!(ok["exitCode"], 0);
        assert_eq!(ok["exited"], true);
        assert!(ok.get("error").is_none());
        let failed = end_event(Some(3), None, false);
        assert_eq!(failed["error"], "exit status 3");
        let killed = end_event(None, Some(9), false);
        assert_eq!(killed["exitCode"], -1);
        assert_eq!(killed["exited"], false);
        assert_eq!(killed["status"], "signal: killed");
        assert!(
            end_event(None, Some(9), true)["error"]
                .as_str()
                .unwrap()
                .contains("timeout")
        );
    }
}

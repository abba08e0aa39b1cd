//! E2B's code interpreter (`e2b-code-interpreter`'s `run_code`): the Jupyter-like server its
//! SDKs reach as port 49999 of a sandbox, on the sandbox listener. `POST /execute` streams a
//! cell's output as JSON lines (`stdout`, `stderr`, `result`, `error`,
//! `number_of_executions`); `/contexts` makes, lists, restarts and removes contexts.
//!
//! A context is a Python process in the session (`kernel.py`), a background process of its agent
//! named by its arguments (`python3 -u -c KERNEL CONTEXT_ID CWD`), so nothing is kept here: any
//! instance finds it by listing the agent's processes. It keeps one namespace across cells, on a
//! Jupyter kernel where the image has one (`berth/code-interpreter`), else on its own Python. A
//! cell goes in as a line of its stdin; the kernel marks what it says with the cell's id, and the
//! stream follows the process's output from the cell's `begin` to its `end`.

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use berth_proto::process::{ExecRequest, ProcessEvent, ProcessInfo, ProcessList, STDERR_TAG};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::envd::{Sandbox, sandbox_on};
use crate::api::{
    AppState,
    error::{ApiError, E2bError},
};

/// The port the code interpreter's SDKs name in `E2b-Sandbox-Port`.
pub const JUPYTER_PORT: u16 = 49999;
const KERNEL: &str = include_str!("kernel.py");
/// Starts each line the kernel says about a cell.
const MARK: &str = "\u{1e}berth-kernel ";
/// The context cells run in unless they name one: E2B's default Python context.
const DEFAULT_CONTEXT: &str = "default-python";
const DEFAULT_CWD: &str = "/home/user";
/// Largest cell accepted.
const MAX_CELL_BYTES: usize = 1 << 20;

#[derive(Debug, Deserialize)]
pub struct ExecuteRequest {
    code: String,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    env_vars: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CreateContext {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
}

/// Python is the language there is; `python3` and no language at all are Python too.
fn check_language(language: Option<&str>) -> Result<(), ApiError> {
    match language {
        None | Some("python" | "python3" | "") => Ok(()),
        Some(other) => Err(ApiError::invalid_request(format!(
            "language {other:?} is not available: Berth's code interpreter runs Python; run other \
             languages with commands.run"
        ))),
    }
}

/// `POST /execute`: runs a cell in its context (the default one unless named), streaming what
/// it says as JSON lines until it ends.
pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, E2bError> {
    if body.len() > MAX_CELL_BYTES {
        return Err(ApiError::invalid_request("the cell is larger than 1 MiB").into());
    }
    let request: ExecuteRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_request(format!("body: {e}")))?;
    check_language(request.language.as_deref())?;
    let sandbox = sandbox_on(&state, &headers, JUPYTER_PORT).await?;
    let context = request.context_id.as_deref().unwrap_or(DEFAULT_CONTEXT);
    let kernel = match find(&state, &sandbox, context).await? {
        Some(kernel) => kernel,
        None if request.context_id.is_none() => {
            start(&state, &sandbox, context, DEFAULT_CWD).await?
        }
        None => return Err(context_not_found(context).into()),
    };
    // Attached before the cell goes in: its `begin` cannot be missed.
    let mut socket = sandbox
        .websocket(&format!("/processes/{}/attach", kernel.id))
        .await?;
    let cell = crate::ids::secret();
    let line = json!({
        "id": cell,
        "code": request.code,
        "env_vars": request.env_vars.unwrap_or_default(),
    });
    let stdin = hyper::Request::post(format!("/processes/{}/stdin", kernel.id))
        .body(Body::from(format!("{line}\n")))
        .map_err(ApiError::internal)?;
    sandbox.send(&state, stdin).await?;

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut cell_output = CellOutput::new(cell);
        while let Some(message) = socket.next().await {
            let lines = match message {
                Ok(Message::Binary(frame)) => match frame.split_first() {
                    Some((&STDERR_TAG, data)) => cell_output.stderr(data),
                    Some((_, data)) => cell_output.stdout(data),
                    None => continue,
                },
                Ok(Message::Text(text)) => match serde_json::from_str(text.as_str()) {
                    // The kernel itself ended: the cell cannot.
                    Ok(ProcessEvent::End { .. } | ProcessEvent::Error { .. }) => {
                        vec![kernel_died(), None]
                    }
                    _ => continue,
                },
                Ok(_) => continue,
                Err(_) => vec![kernel_died(), None],
            };
            for line in lines {
                // The cell's end ends the answer.
                let Some(line) = line else { return };
                if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    // The client went; the kernel goes on with the cell.
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// What the kernel said about one cell, turned into E2B's lines; `None` is the cell's end.
struct CellOutput {
    cell: String,
    begun: bool,
    /// A line of stdout not yet ended by a newline.
    partial: Vec<u8>,
}

impl CellOutput {
    fn new(cell: String) -> Self {
        Self {
            cell,
            begun: false,
            partial: Vec::new(),
        }
    }

    fn stdout(&mut self, data: &[u8]) -> Vec<Option<Value>> {
        self.partial.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(said) = text.strip_prefix(MARK) {
                let Ok(event) = serde_json::from_str::<Value>(said.trim_end()) else {
                    continue;
                };
                if event["id"] != self.cell.as_str() {
                    continue;
                }
                match event["type"].as_str() {
                    Some("begin") => self.begun = true,
                    Some("end") => lines.push(None),
                    _ => {
                        let mut event = event;
                        if let Some(fields) = event.as_object_mut() {
                            fields.remove("id");
                        }
                        lines.push(Some(event));
                    }
                }
            } else if self.begun {
                // Printed by a program of the cell's straight to the kernel's stdout.
                lines.push(Some(output("stdout", &text)));
            }
        }
        lines
    }

    fn stderr(&mut self, data: &[u8]) -> Vec<Option<Value>> {
        if !self.begun {
            return Vec::new();
        }
        vec![Some(output("stderr", &String::from_utf8_lossy(data)))]
    }
}

fn output(kind: &str, text: &str) -> Value {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    json!({"type": kind, "text": text, "timestamp": timestamp})
}

fn kernel_died() -> Option<Value> {
    Some(json!({
        "type": "error",
        "name": "KernelDied",
        "value": "the context's Python process ended; restart the context",
        "traceback": "",
    }))
}

/// `POST /contexts`: a new context, its own Python process, in `cwd`.
pub async fn create_context(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, E2bError> {
    let request: CreateContext = if body.is_empty() {
        CreateContext::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid_request(format!("body: {e}")))?
    };
    check_language(request.language.as_deref())?;
    let sandbox = sandbox_on(&state, &headers, JUPYTER_PORT).await?;
    let id = crate::ids::secret();
    let cwd = request.cwd.unwrap_or_else(|| DEFAULT_CWD.to_owned());
    let kernel = start(&state, &sandbox, &id, &cwd).await?;
    Ok((StatusCode::OK, Json(describe(&kernel).unwrap_or_default())).into_response())
}

/// `GET /contexts`: the contexts whose process runs.
pub async fn list_contexts(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<Value>>, E2bError> {
    let sandbox = sandbox_on(&state, &headers, JUPYTER_PORT).await?;
    let kernels = kernels(&state, &sandbox).await?;
    Ok(Json(kernels.iter().filter_map(describe).collect()))
}

/// `DELETE /contexts/{id}`: ends its process and with it its variables.
pub async fn remove_context(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(context): Path<String>,
) -> Result<StatusCode, E2bError> {
    let (sandbox, kernel) = existing(&state, &headers, &context).await?;
    kill(&state, &sandbox, &kernel).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /contexts/{id}/restart`: a fresh process for the context, in the same directory.
pub async fn restart_context(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(context): Path<String>,
) -> Result<StatusCode, E2bError> {
    let (sandbox, kernel) = existing(&state, &headers, &context).await?;
    let cwd = kernel
        .cmd
        .get(5)
        .cloned()
        .unwrap_or_else(|| DEFAULT_CWD.to_owned());
    kill(&state, &sandbox, &kernel).await?;
    start(&state, &sandbox, &context, &cwd).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The sandbox a request names and its running context `context`.
async fn existing(
    state: &AppState,
    headers: &HeaderMap,
    context: &str,
) -> Result<(Sandbox, ProcessInfo), ApiError> {
    let sandbox = sandbox_on(state, headers, JUPYTER_PORT).await?;
    let kernel = find(state, &sandbox, context)
        .await?
        .ok_or_else(|| context_not_found(context))?;
    Ok((sandbox, kernel))
}

fn context_not_found(context: &str) -> ApiError {
    ApiError::coded(
        berth_proto::ErrorCode::NotFound,
        format!("no context {context} in this sandbox"),
    )
}

/// `{"id", "language", "cwd"}` of a kernel process.
fn describe(kernel: &ProcessInfo) -> Option<Value> {
    Some(json!({
        "id": kernel.cmd.get(4)?,
        "language": "python",
        "cwd": kernel.cmd.get(5)?,
    }))
}

/// The session's running kernels.
async fn kernels(state: &AppState, sandbox: &Sandbox) -> Result<Vec<ProcessInfo>, ApiError> {
    let listed: ProcessList = sandbox.call(state, Method::GET, "/processes", None).await?;
    Ok(listed
        .processes
        .into_iter()
        .filter(|p| p.running && p.cmd.len() == 6 && p.cmd[..4] == kernel_command()[..])
        .collect())
}

async fn find(
    state: &AppState,
    sandbox: &Sandbox,
    context: &str,
) -> Result<Option<ProcessInfo>, ApiError> {
    Ok(kernels(state, sandbox)
        .await?
        .into_iter()
        .find(|k| k.cmd[4] == context))
}

fn kernel_command() -> [String; 4] {
    ["python3", "-u", "-c", KERNEL].map(str::to_owned)
}

async fn start(
    state: &AppState,
    sandbox: &Sandbox,
    context: &str,
    cwd: &str,
) -> Result<ProcessInfo, ApiError> {
    let mut cmd = kernel_command().to_vec();
    cmd.extend([context.to_owned(), cwd.to_owned()]);
    let exec = ExecRequest {
        cmd,
        cwd: None,
        env: Default::default(),
        stdin: None,
        timeout_ms: None,
        // As for E2B's commands: a sandbox has no idle policy.
        keepalive: true,
        pty: None,
    };
    let body = serde_json::to_value(&exec).map_err(ApiError::internal)?;
    sandbox
        .call(state, Method::POST, "/processes", Some(body))
        .await
}

/// Ends a context: SIGTERM, on which the kernel stops its Jupyter kernel too, and waits until it
/// is gone (a restart's new process must not meet the old one); SIGKILL after 5 s.
async fn kill(state: &AppState, sandbox: &Sandbox, kernel: &ProcessInfo) -> Result<(), ApiError> {
    let path = format!("/processes/{}/signal", kernel.id);
    let signal = |number: i32| {
        sandbox.call::<Value>(
            state,
            Method::POST,
            &path,
            Some(json!({ "signal": number })),
        )
    };
    signal(15).await?;
    for _ in 0..50 {
        if !kernels(state, sandbox)
            .await?
            .iter()
            .any(|k| k.id == kernel.id)
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    signal(9).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(cell: &str, kind: &str, extra: Value) -> String {
        let mut event = json!({"id": cell, "type": kind});
        event
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        format!("{MARK}{event}\n")
    }

    #[test]
    fn a_cells_output_is_what_the_kernel_said_about_it_between_begin_and_end() {
        let mut output = CellOutput::new("c2".into());
        let earlier = said("c1", "stdout", json!({"text": "not mine\n"}));
        let mut lines = output.stdout(earlier.as_bytes());
        assert!(lines.is_empty(), "another cell's output is not this one's");
        assert!(output.stderr(b"before it began").is_empty());
        let begin = said("c2", "begin", json!({}));
        let result = said("c2", "result", json!({"text": "2", "is_main_result": true}));
        // Split anywhere: a frame need not end a line.
        let text = format!("{begin}raw line from a subprocess\n{result}");
        let (first, second) = text.as_bytes().split_at(20);
        lines.extend(output.stdout(first));
        lines.extend(output.stdout(second));
        lines.extend(output.stderr(b"warning\n"));
        lines.extend(output.stdout(said("c2", "end", json!({})).as_bytes()));
        assert_eq!(lines.len(), 4, "{lines:?}");
        let first = lines[0].as_ref().unwrap();
        assert_eq!(
            (first["type"].as_str(), first["text"].as_str()),
            (Some("stdout"), Some("raw line from a subprocess\n"))
        );
        assert_eq!(
            lines[1],
            Some(json!({"type": "result", "text": "2", "is_main_result": true}))
        );
        assert_eq!(lines[2].as_ref().unwrap()["type"], "stderr");
        assert_eq!(lines[3], None, "the cell's end");
    }

    #[test]
    fn only_python_is_run() {
        for ok in [None, Some("python"), Some("python3")] {
            check_language(ok).unwrap();
        }
        assert!(check_language(Some("r")).is_err());
    }
}

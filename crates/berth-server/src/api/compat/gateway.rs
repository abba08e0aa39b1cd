//! The seed's Socket.IO gateway, namespace `/container` (protocol v5: NestJS 10/11,
//! `socket.io-client` 4). A connection authenticates in its handshake, joins one container
//! (`join-container`), then works in it: `fs-operation`, `process-operation` and
//! `terminal-input`, each answered by an event (`fs-result`, `process-result`,
//! `terminal-output`) and by an ack when the client asks for one. Every connection has its own
//! working directory, which `cd` moves. A `pty` join streams a real terminal.

use std::{collections::BTreeMap, sync::Arc};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    extract::{AckSender, Data, SocketRef, State, TryData},
    handler::ConnectHandler,
};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::{
    anonymous_user,
    workspace::{self, Contents, Encoding, Workspace, decode},
};
use crate::{
    api::{
        AppState,
        error::{ApiError, CompatError},
        extract::{LOGIN_COOKIE, authenticate, bearer, cookie, from_another_site},
    },
    auth::Principal,
};

/// The gateway on the Socket.IO server `io`, whose state is the [`AppState`].
pub fn serve(io: &SocketIo) {
    io.ns("/container", on_connect.with(authenticated));
}

/// Requests one connection may have under way at once: each runs as a task of its own, and a
/// command may run for minutes.
const IN_FLIGHT_PER_CONNECTION: usize = 8;

/// One connection's state: who it is, and the container it joined.
struct Connection {
    caller: Principal,
    /// The token or login cookie it came with, whose `quota.requests_per_second` each request
    /// event counts against, as an HTTP request does; `None` for the admin and anonymous users.
    credential: Option<String>,
    joined: Mutex<Option<Joined>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Connection {
    /// A place for one more request under way, or `rate_limited` when the credential is over
    /// its rate or all places are taken.
    fn admit(&self, state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        if let (Some(limiter), Some(credential)) = (&state.rate_limit, &self.credential) {
            limiter
                .take(credential, std::time::Instant::now())
                .map_err(|wait| ApiError::rate_limited(limiter.per_second(), wait))?;
        }
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            ApiError::coded(
                berth_proto::ErrorCode::RateLimited,
                format!(
                    "this connection already has {IN_FLIGHT_PER_CONNECTION} requests under way; \
                     wait for one to answer"
                ),
            )
        })
    }
}

struct Joined {
    container: String,
    /// Where relative paths and commands start; `cd` moves it.
    cwd: String,
    /// Keystrokes and resizes for the terminal of a `pty` join.
    terminal: Option<mpsc::Sender<Message>>,
}

/// Refuses a handshake without a caller: `auth: {token}`, a bearer header, the login cookie
/// (from Berth's own origin), or, with `compat.allow_anonymous`, the anonymous cookie (or a
/// user of its own for this connection, who owns nothing).
async fn authenticated(
    socket: SocketRef,
    State(state): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), String> {
    let headers = &socket.req_parts().headers;
    let handshake_token = auth
        .ok()
        .and_then(|auth| auth.get("token").and_then(Value::as_str).map(str::to_owned));
    let token = handshake_token.or_else(|| bearer(headers).map(str::to_owned));
    let credential = token
        .clone()
        .or_else(|| cookie(headers, LOGIN_COOKIE).map(str::to_owned))
        .filter(|credential| !state.auth.is_admin_token(credential));
    let caller = if let Some(token) = token {
        authenticate(&state, &token).await
    } else if let Some(token) = cookie(headers, LOGIN_COOKIE) {
        if from_another_site(headers) {
            Err(ApiError::forbidden(
                "the login cookie is not taken from another site; send a token in auth.token",
            ))
        } else {
            authenticate(&state, token).await
        }
    } else if state.compat.allow_anonymous && from_another_site(headers) {
        Err(ApiError::forbidden(
            "the anonymous cookie is not taken from another origin; send auth.token",
        ))
    } else if state.compat.allow_anonymous {
        let secret = cookie(headers, super::ANONYMOUS_COOKIE)
            .map(str::to_owned)
            .unwrap_or_else(crate::ids::secret);
        Ok(anonymous_user(&secret))
    } else {
        Err(ApiError::unauthorized())
    }
    .map_err(|err| err.message)?;
    socket.extensions.insert(Arc::new(Connection {
        caller,
        credential,
        joined: Mutex::new(None),
        in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_PER_CONNECTION)),
    }));
    Ok(())
}

async fn on_connect(socket: SocketRef) {
    // Its terminal relay ends with it (the terminal itself lives on in the container, to be
    // joined again by its id).
    socket.on_disconnect(async |socket: SocketRef| {
        if let Some(connection) = connection(&socket) {
            connection.joined.lock().await.take();
        }
    });
    socket.on("join-container", join);
    socket.on("fs-operation", fs_operation);
    socket.on("process-operation", process_operation);
    socket.on("terminal-input", terminal_input);
    socket.on("terminal-resize", terminal_resize);
}

fn connection(socket: &SocketRef) -> Option<Arc<Connection>> {
    socket.extensions.get::<Arc<Connection>>()
}

/// Answers an event: the result event, and the ack when the client asked for one.
fn reply(socket: &SocketRef, ack: AckSender, event: &str, body: &Value) {
    let _ = socket.emit(event, body);
    let _ = ack.send(body);
}

/// A failure the client must hear of outside any result: the `error` event (and the ack).
fn fail(socket: &SocketRef, ack: AckSender, during: &str, err: ApiError) {
    let mut body = CompatError(err).body();
    body["event"] = json!(during);
    let _ = socket.emit("error", &body);
    let _ = ack.send(&json!({ "success": false, "error": body["message"], "code": body["code"] }));
}

/// A request event under way: its connection, its place among the connection's requests
/// (held until it is answered), its payload, and its ack.
struct Started<T> {
    connection: Arc<Connection>,
    _under_way: tokio::sync::OwnedSemaphorePermit,
    payload: T,
    ack: AckSender,
}

/// What every request event starts with; `None` once a refusal (no room, a bad payload) is
/// answered.
fn begin<T: serde::de::DeserializeOwned>(
    socket: &SocketRef,
    state: &AppState,
    (event, data, ack): (&str, Value, AckSender),
) -> Option<Started<T>> {
    let connection = connection(socket)?;
    let admitted = connection
        .admit(state)
        .and_then(|permit| Ok((permit, parse::<T>(data)?)));
    match admitted {
        Ok((permit, payload)) => Some(Started {
            connection,
            _under_way: permit,
            payload,
            ack,
        }),
        Err(err) => {
            fail(socket, ack, event, err);
            None
        }
    }
}

/// A payload as `T`, or the `invalid_request` that says why not.
fn parse<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, ApiError> {
    serde_json::from_value(data)
        .map_err(|e| ApiError::invalid_request(format!("invalid payload: {e}")))
}

/// The joined container and working directory, opened for work; `error` when none is joined.
async fn joined(
    state: &AppState,
    connection: &Connection,
) -> Result<(Workspace, String), ApiError> {
    let (container, cwd) = match &*connection.joined.lock().await {
        Some(joined) => (joined.container.clone(), joined.cwd.clone()),
        None => {
            return Err(ApiError::invalid_request(
                "not in a container: send join-container with a container id first",
            ));
        }
    };
    Ok((
        Workspace::open(state, &connection.caller, &container).await?,
        cwd,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JoinRequest {
    Id(String),
    Options(JoinOptions),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinOptions {
    container_id: String,
    /// `pty`: a real terminal streams `terminal-output`; otherwise each `terminal-input` line
    /// is run as a command.
    #[serde(default)]
    mode: Option<String>,
    /// With `pty`: join this terminal again (its recent output is replayed) instead of a new one.
    #[serde(default)]
    terminal_id: Option<String>,
    #[serde(default)]
    cols: Option<u16>,
    #[serde(default)]
    rows: Option<u16>,
}

async fn join(
    socket: SocketRef,
    State(state): State<AppState>,
    Data(data): Data<Value>,
    ack: AckSender,
) {
    let Some(Started {
        connection,
        payload,
        ack,
        _under_way,
    }) = begin::<JoinRequest>(&socket, &state, ("join-container", data, ack))
    else {
        return;
    };
    let outcome = async {
        let options = match payload {
            JoinRequest::Id(container_id) => JoinOptions {
                container_id,
                mode: None,
                terminal_id: None,
                cols: None,
                rows: None,
            },
            JoinRequest::Options(options) => options,
        };
        let pty = match options.mode.as_deref() {
            None | Some("exec") => false,
            Some("pty") => true,
            Some(other) => {
                return Err(ApiError::invalid_request(format!(
                    "mode {other:?}: use \"exec\" or \"pty\""
                )));
            }
        };
        let workspace = Workspace::open(&state, &connection.caller, &options.container_id).await?;
        let (terminal, terminal_id) = if pty {
            let (cols, rows) = (options.cols.unwrap_or(80), options.rows.unwrap_or(24));
            let query = match &options.terminal_id {
                Some(id) => format!("terminal_id={}", crate::proxy::encode_query(id)),
                None => format!(
                    "cols={cols}&rows={rows}&cwd={}",
                    crate::proxy::encode_query(&state.compat.workdir)
                ),
            };
            let mut agent = workspace.websocket(&format!("/terminal?{query}")).await?;
            let terminal_id = ready(&mut agent).await?;
            (
                Some(stream_terminal(socket.clone(), agent)),
                Some(terminal_id),
            )
        } else {
            (None, None)
        };
        *connection.joined.lock().await = Some(Joined {
            container: workspace.id().to_owned(),
            cwd: state.compat.workdir.clone(),
            terminal,
        });
        Ok::<_, ApiError>(json!({
            "containerId": workspace.id(),
            "workingDir": state.compat.workdir,
            "mode": if pty { "pty" } else { "exec" },
            "terminalId": terminal_id,
            "success": true,
        }))
    };
    match outcome.await {
        Ok(body) => reply(&socket, ack, "joined-container", &body),
        Err(err) => fail(&socket, ack, "join-container", err),
    }
}

/// A terminal's id, from the `ready` frame every terminal connection starts with.
async fn ready(agent: &mut crate::proxy::AgentSocket) -> Result<String, ApiError> {
    while let Some(frame) = agent.next().await {
        if let Ok(Message::Text(text)) = frame
            && let Ok(berth_proto::process::TerminalServerMessage::Ready { terminal_id }) =
                serde_json::from_str(&text)
        {
            return Ok(terminal_id);
        }
    }
    Err(ApiError::coded(
        berth_proto::ErrorCode::SessionFailed,
        "the session's terminal closed before it was ready",
    ))
}

/// Relays a terminal's output to the client as `terminal-output` until either side ends;
/// returns where its input goes.
fn stream_terminal(socket: SocketRef, agent: crate::proxy::AgentSocket) -> mpsc::Sender<Message> {
    let (input, mut keys) = mpsc::channel::<Message>(64);
    let (mut to_agent, mut from_agent) = agent.split();
    tokio::spawn(async move {
        let mut text = Utf8Chunks::default();
        loop {
            tokio::select! {
                key = keys.recv() => match key {
                    Some(message) => if to_agent.send(message).await.is_err() { break },
                    // The connection left or joined elsewhere: the terminal lives on in the
                    // container, as Berth's terminals do.
                    None => break,
                },
                frame = from_agent.next() => match frame {
                    Some(Ok(Message::Binary(bytes))) => {
                        let data = text.push(&bytes);
                        if !data.is_empty() {
                            let _ = socket.emit("terminal-output", &json!({ "data": data }));
                        }
                    }
                    Some(Ok(Message::Text(frame))) => {
                        if let Ok(Value::Object(message)) = serde_json::from_str(&frame)
                            && message.get("type") == Some(&json!("exit"))
                        {
                            let _ = socket.emit("terminal-exit", &json!({ "exitCode": message.get("code") }));
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => break,
                },
            }
        }
        let _ = to_agent.close().await;
    });
    input
}

/// Turns a byte stream into text without splitting a character across two events.
#[derive(Default)]
struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end waits for its next bytes; anything else
            // invalid is shown as U+FFFD.
            Err(err) if err.error_len().is_none() => err.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let rest = self.pending.split_off(complete);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
enum FsOperation {
    ReadFile,
    WriteFile,
    Readdir,
    Mkdir,
    Rm,
    Rename,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FsRequest {
    #[serde(alias = "operation")]
    r#type: String,
    #[serde(default)]
    path: String,
    #[serde(default, alias = "content")]
    contents: Option<String>,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    new_path: Option<String>,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    force: bool,
}

async fn fs_operation(
    socket: SocketRef,
    State(state): State<AppState>,
    Data(data): Data<Value>,
    ack: AckSender,
) {
    let Some(Started {
        connection,
        payload: request,
        ack,
        _under_way,
    }) = begin::<FsRequest>(&socket, &state, ("fs-operation", data, ack))
    else {
        return;
    };
    let Ok(operation) = serde_json::from_value::<FsOperation>(json!(request.r#type)) else {
        let unknown = ApiError::invalid_request(format!(
            "unknown fs-operation type {:?}: readFile, writeFile, readdir, mkdir, rm or rename",
            request.r#type
        ));
        return fail(&socket, ack, "fs-operation", unknown);
    };
    let (workspace, cwd) = match joined(&state, &connection).await {
        Ok(joined) => joined,
        Err(err) => return fail(&socket, ack, "fs-operation", err),
    };
    let path = workspace::resolve(&cwd, &request.path);
    let outcome = async {
        Ok::<_, ApiError>(match operation {
            FsOperation::ReadFile => {
                let Contents { contents, encoding } =
                    Contents::of(workspace.read(&state, &path).await?);
                json!({ "contents": contents, "encoding": encoding })
            }
            FsOperation::WriteFile => {
                let contents = request
                    .contents
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid_request("writeFile needs contents"))?;
                workspace
                    .write(&state, &path, decode(contents, request.encoding)?)
                    .await?;
                json!({})
            }
            FsOperation::Readdir => json!({ "entries": workspace.readdir(&state, &path).await? }),
            FsOperation::Mkdir => {
                workspace.mkdir(&state, &path).await?;
                json!({})
            }
            FsOperation::Rm => {
                workspace
                    .remove(&state, &path, request.recursive, request.force)
                    .await?;
                json!({})
            }
            FsOperation::Rename => {
                let to = request
                    .new_path
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid_request("rename needs newPath"))?;
                let to = workspace::resolve(&cwd, to);
                workspace.rename(&state, &path, &to).await?;
                json!({ "newPath": to })
            }
        })
    };
    let mut body = match outcome.await {
        Ok(body) => body,
        Err(err) => {
            let error = CompatError(err).body();
            json!({ "success": false, "error": error["message"], "code": error["code"] })
        }
    };
    if body.get("success").is_none() {
        body["success"] = json!(true);
    }
    body["type"] = json!(request.r#type);
    body["path"] = json!(path);
    reply(&socket, ack, "fs-result", &body);
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProcessRequest {
    /// Accepted for the seed's shape (`exec`, `spawn`): either runs the command to its end.
    #[serde(default, rename = "type", alias = "operation")]
    _type: Option<String>,
    command: String,
    /// With `args`, `command` is the program; without, a shell line.
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Milliseconds before the command's process group is killed.
    #[serde(default)]
    timeout: Option<u64>,
}

async fn process_operation(
    socket: SocketRef,
    State(state): State<AppState>,
    Data(data): Data<Value>,
    ack: AckSender,
) {
    let Some(Started {
        connection,
        payload: request,
        ack,
        _under_way,
    }) = begin::<ProcessRequest>(&socket, &state, ("process-operation", data, ack))
    else {
        return;
    };
    match run(
        &state,
        &connection,
        request.command,
        request.args,
        request.env,
        request.timeout,
    )
    .await
    {
        Ok(body) => reply(&socket, ack, "process-result", &body),
        Err(err) => fail(&socket, ack, "process-operation", err),
    }
}

/// Runs a command in the connection's container and directory. A shell line that is only a
/// `cd` moves the directory (the shell works out where to: `~`, `..`, quotes, variables).
async fn run(
    state: &AppState,
    connection: &Connection,
    command: String,
    args: Option<Vec<String>>,
    env: BTreeMap<String, String>,
    timeout: Option<u64>,
) -> Result<Value, ApiError> {
    let (workspace, cwd) = joined(state, connection).await?;
    let moves_to = args
        .is_none()
        .then(|| changes_directory(&command))
        .flatten();
    let cmd = match moves_to {
        // `cd -` and CDPATH print where they went: only `pwd`'s line is the answer.
        Some(target) => workspace::command(format!("cd {target} >/dev/null && pwd"), None),
        None => workspace::command(command.clone(), args),
    };
    let result = workspace.run(state, cmd, &cwd, env, timeout).await?;
    let mut now_in = cwd;
    let moved = result.stdout.strip_suffix('\n').unwrap_or(&result.stdout);
    if moves_to.is_some()
        && result.exit_code == Some(0)
        && moved.starts_with('/')
        && !moved.contains('\n')
    {
        now_in = moved.to_owned();
        if let Some(joined) = connection.joined.lock().await.as_mut() {
            joined.cwd = now_in.clone();
        }
    }
    // A `cd` prints nothing, as in a shell; its `pwd` was only for this gateway.
    let stdout = if moves_to.is_some() {
        String::new()
    } else {
        result.stdout
    };
    Ok(json!({
        "command": command,
        "exitCode": result.exit_code,
        "signal": result.signal,
        "stdout": stdout,
        "stderr": result.stderr,
        "output": format!("{stdout}{}", result.stderr),
        "timedOut": result.timed_out,
        "workingDir": now_in,
        "success": result.exit_code == Some(0),
    }))
}

/// The target of a shell line that is a lone `cd` (`~` when it names none); `None` for any
/// other line, compound ones included (`cd a && make` runs in a shell of its own).
fn changes_directory(line: &str) -> Option<&str> {
    let line = line.trim();
    let rest = line.strip_prefix("cd")?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    if rest.contains([';', '&', '|', '\n', '`', '(', ')', '<', '>']) || rest.contains("$(") {
        return None;
    }
    let target = rest.trim();
    Some(if target.is_empty() { "~" } else { target })
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TerminalInput {
    Text(String),
    Object {
        #[serde(alias = "data")]
        input: String,
    },
}

/// `terminal-input`: keystrokes for a `pty` join's terminal; otherwise a command line, run
/// like a `process-operation` and answered as `terminal-output`.
async fn terminal_input(
    socket: SocketRef,
    State(state): State<AppState>,
    Data(data): Data<Value>,
    ack: AckSender,
) {
    let Some(Started {
        connection,
        payload: TerminalInput::Text(input) | TerminalInput::Object { input },
        ack,
        _under_way,
    }) = begin::<TerminalInput>(&socket, &state, ("terminal-input", data, ack))
    else {
        return;
    };
    let terminal = connection
        .joined
        .lock()
        .await
        .as_ref()
        .map(|joined| joined.terminal.clone());
    match terminal {
        Some(Some(keys)) => {
            let sent = keys.send(Message::Binary(input.into_bytes().into())).await;
            let _ = ack.send(&json!({ "success": sent.is_ok() }));
        }
        _ => {
            let line = input.trim_end_matches(['\r', '\n']).to_owned();
            match run(&state, &connection, line, None, BTreeMap::new(), None).await {
                Ok(result) => {
                    let body = json!({
                        "data": result["output"],
                        "exitCode": result["exitCode"],
                        "workingDir": result["workingDir"],
                    });
                    reply(&socket, ack, "terminal-output", &body);
                }
                Err(err) => fail(&socket, ack, "terminal-input", err),
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    cols: u16,
    rows: u16,
}

/// `terminal-resize {cols, rows}`, for a `pty` join.
async fn terminal_resize(
    socket: SocketRef,
    State(state): State<AppState>,
    Data(data): Data<Value>,
    ack: AckSender,
) {
    let Some(Started {
        connection,
        payload: size,
        ack,
        _under_way,
    }) = begin::<Resize>(&socket, &state, ("terminal-resize", data, ack))
    else {
        return;
    };
    let terminal = connection
        .joined
        .lock()
        .await
        .as_ref()
        .and_then(|joined| joined.terminal.clone());
    let Some(keys) = terminal else {
        return fail(
            &socket,
            ack,
            "terminal-resize",
            ApiError::invalid_request("no terminal: join with mode \"pty\""),
        );
    };
    let frame = json!({ "type": "resize", "cols": size.cols, "rows": size.rows }).to_string();
    let sent = keys.send(Message::Text(frame.into())).await;
    let _ = ack.send(&json!({ "success": sent.is_ok() }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_cd_moves_the_directory() {
        assert_eq!(changes_directory("cd src"), Some("src"));
        assert_eq!(changes_directory("  cd 'my dir' "), Some("'my dir'"));
        assert_eq!(changes_directory("cd"), Some("~"));
        assert_eq!(changes_directory("cd .."), Some(".."));
        assert_eq!(changes_directory("cdrom"), None);
        assert_eq!(changes_directory("cd a && make"), None);
        assert_eq!(changes_directory("cd $(mktemp -d)"), None);
        assert_eq!(changes_directory("ls"), None);
    }

    #[test]
    fn terminal_text_never_splits_a_character() {
        let mut chunks = Utf8Chunks::default();
        let snow = "☃".as_bytes();
        assert_eq!(chunks.push(&[b'a', snow[0]]), "a");
        assert_eq!(chunks.push(&snow[1..]), "☃");
        assert_eq!(chunks.push(&[0xff, b'b']), "\u{fffd}b");
    }
}

//! `POST .../docker/run` and `POST .../docker/exec`: a container run as `docker run` runs one
//! (to its end, or started with `detach`), and a command in one of the session's containers,
//! their output collected as a session's `exec` collects it.

use std::time::{Duration, Instant};

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{Method, Request, StatusCode, header},
};
use berth_proto::{
    ErrorBody, ErrorCode,
    docker::{DockerExec, DockerOutcome, DockerRun},
};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::session_engine;
use crate::{
    api::{AppState, error::ApiError, extract::ApiJson},
    auth::Principal,
    docker_api::Engine,
    sessions::validate,
};

/// Output kept per stream, as a session's `exec` keeps it.
const MAX_OUTPUT: usize = 1 << 20;
const DEFAULT_TIMEOUT_SECONDS: u64 = 60;
const MAX_TIMEOUT_SECONDS: u64 = 600;
/// How long a killed container gets to be reported exited.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// Run a container in the session's Docker (`docker run`): its output and exit code once it
/// exits, or its id once it has started (`detach`). The session's Docker policy applies.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/docker/run", tag = "docker",
    params(("id" = String, Path)),
    request_body = DockerRun,
    responses(
        (status = 200, description = "It ran and exited (or was killed at its timeout)", body = DockerOutcome),
        (status = 201, description = "Started (`detach`)", body = DockerOutcome),
        (status = 400, description = "Bad image, command, environment, port or timeout", body = ErrorBody),
        (status = 403, description = "Refused by the session's Docker policy", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not running, or its template has no Docker", body = ErrorBody),
        (status = 429, description = "The session's Docker quota is full", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<DockerRun>,
) -> Result<(StatusCode, Json<DockerOutcome>), ApiError> {
    // The schema's pattern: an image reference as Docker writes them.
    let reference = |b: u8| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b);
    if !request
        .image
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        || request.image.len() > 256
        || !request.image.bytes().all(reference)
    {
        return Err(ApiError::invalid_request(
            "image: the image to run, such as \"berth/busybox\" or one the session built",
        ));
    }
    if request.cmd.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::invalid_request(
            "cmd: at least the program; omit it for the image's own command",
        ));
    }
    validate::env(&request.env)?;
    let timeout = timeout(request.timeout_seconds)?;
    let ports = port_bindings(&request.ports)?;
    let engine = session_engine(&state, &caller, &id).await?;

    let started = Instant::now();
    let mut host_config = json!({ "AutoRemove": request.detach && request.rm });
    if let Some(ports) = ports {
        host_config["PortBindings"] = ports;
    }
    let mut create = json!({
        "Image": request.image,
        "Env": env_list(&request.env),
        "AttachStdout": true,
        "AttachStderr": true,
        "HostConfig": host_config,
    });
    if let Some(cmd) = &request.cmd {
        create["Cmd"] = json!(cmd);
    }
    let created = call(&engine, Method::POST, "/containers/create", Some(create)).await?;
    let container = created["Id"]
        .as_str()
        .ok_or_else(|| ApiError::internal("the engine made a container without an id"))?
        .to_owned();
    let path = |what: &str| format!("/containers/{container}/{what}");
    if let Err(err) = call(&engine, Method::POST, &path("start"), None).await {
        let _ = remove(&engine, &container).await;
        return Err(err);
    }
    if request.detach {
        return Ok((
            StatusCode::CREATED,
            Json(DockerOutcome {
                container,
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                truncated: false,
                timed_out: false,
                duration_ms: millis(started.elapsed()),
            }),
        ));
    }
    // Its own task: a caller that hangs up still leaves the container killed at its timeout
    // and, with `rm`, removed.
    let finished = tokio::spawn(finish(engine, container, timeout, request.rm, started));
    let outcome = finished.await.map_err(ApiError::internal)??;
    Ok((StatusCode::OK, Json(outcome)))
}

/// Waits for a started container to exit (killing it at `timeout`) and reads its output;
/// with `rm` removes it, whatever happened.
pub(crate) async fn finish(
    engine: Engine,
    container: String,
    timeout: Duration,
    rm: bool,
    started: Instant,
) -> Result<DockerOutcome, ApiError> {
    let outcome = collect(&engine, &container, timeout, started).await;
    if rm {
        let removed = remove(&engine, &container).await;
        if outcome.is_ok() {
            removed?;
        }
    }
    outcome
}

async fn collect(
    engine: &Engine,
    container: &str,
    timeout: Duration,
    started: Instant,
) -> Result<DockerOutcome, ApiError> {
    let path = |what: &str| format!("/containers/{container}/{what}");
    let wait_path = path("wait");
    let wait = || call(engine, Method::POST, &wait_path, None);
    let (waited, timed_out) = match tokio::time::timeout(timeout, wait()).await {
        Ok(waited) => (waited?, false),
        Err(_) => {
            let stopped = async {
                call(engine, Method::POST, &path("kill"), None).await.ok();
                wait().await
            };
            let waited = tokio::time::timeout(AFTER_KILL, stopped)
                .await
                .map_err(|_| {
                    ApiError::coded(
                        ErrorCode::EngineUnavailable,
                        format!("container {container} did not stop when killed"),
                    )
                })??;
            (waited, true)
        }
    };
    let mut output = Output::default();
    let logs = send(engine, Method::GET, &path("logs?stdout=1&stderr=1"), None).await?;
    output.read(logs).await?;
    Ok(output.outcome(
        container.to_owned(),
        waited["StatusCode"].as_i64(),
        timed_out,
        started,
    ))
}

/// Run a command in one of the session's running containers (`docker exec`): its output and
/// exit code once it exits. The session's Docker policy applies.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/docker/exec", tag = "docker", operation_id = "docker_exec",
    params(("id" = String, Path)),
    request_body = DockerExec,
    responses(
        (status = 200, description = "It ran (or outlived its timeout)", body = DockerOutcome),
        (status = 400, description = "Bad container, command, environment or timeout", body = ErrorBody),
        (status = 403, description = "Refused by the session's Docker policy", body = ErrorBody),
        (status = 404, description = "No such session, or no such container of it", body = ErrorBody),
        (status = 409, description = "Not running, its template has no Docker, or the container is stopped", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn exec(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<DockerExec>,
) -> Result<Json<DockerOutcome>, ApiError> {
    // As Docker names them: never `.` or `..`, which would be paths.
    let name_ok = request
        .container
        .starts_with(|c: char| c.is_ascii_alphanumeric())
        && request
            .container
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !name_ok {
        return Err(ApiError::invalid_request(
            "container: one of the session's containers, by id or name",
        ));
    }
    if request.cmd.is_empty() {
        return Err(ApiError::invalid_request("cmd: at least the program"));
    }
    validate::env(&request.env)?;
    let timeout = timeout(request.timeout_seconds)?;
    let engine = session_engine(&state, &caller, &id).await?;

    let started = Instant::now();
    let create = json!({
        "Cmd": request.cmd,
        "Env": env_list(&request.env),
        "AttachStdout": true,
        "AttachStderr": true,
    });
    let container = request.container;
    let created = call(
        &engine,
        Method::POST,
        &format!("/containers/{container}/exec"),
        Some(create),
    )
    .await?;
    let exec = created["Id"]
        .as_str()
        .ok_or_else(|| ApiError::internal("the engine made an exec without an id"))?
        .to_owned();
    let start = json!({ "Detach": false, "Tty": false });
    let mut output = Output::default();
    let run = async {
        let stream = send(
            &engine,
            Method::POST,
            &format!("/exec/{exec}/start"),
            Some(start),
        )
        .await?;
        output.read(stream).await
    };
    let timed_out = match tokio::time::timeout(timeout, run).await {
        Ok(read) => read.map(|()| false)?,
        // Docker cannot stop an exec; it runs on, unwatched, and the answer has its output
        // so far.
        Err(_) => true,
    };
    let inspected = call(&engine, Method::GET, &format!("/exec/{exec}/json"), None).await?;
    let exit_code = if inspected["Running"].as_bool() == Some(true) {
        None
    } else {
        inspected["ExitCode"].as_i64()
    };
    Ok(Json(
        output.outcome(container, exit_code, timed_out, started),
    ))
}

fn timeout(seconds: Option<u64>) -> Result<Duration, ApiError> {
    match seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS) {
        seconds @ 1..=MAX_TIMEOUT_SECONDS => Ok(Duration::from_secs(seconds)),
        _ => Err(ApiError::invalid_request(format!(
            "timeout_seconds: 1 to {MAX_TIMEOUT_SECONDS}"
        ))),
    }
}

fn env_list(env: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `-p` as the engine takes it (`HostConfig.PortBindings`), for the session's policy to judge
/// like the CLI's; `None` for no ports.
fn port_bindings(ports: &[String]) -> Result<Option<Value>, ApiError> {
    if ports.is_empty() {
        return Ok(None);
    }
    let mut bindings = serde_json::Map::new();
    for port in ports {
        let parsed = port.split_once(':').and_then(|(host, container)| {
            let (container, protocol) = container.split_once('/').unwrap_or((container, "tcp"));
            let valid = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
            (valid(host) && valid(container) && ["tcp", "udp"].contains(&protocol))
                .then(|| (format!("{container}/{protocol}"), host))
        });
        let Some((key, host)) = parsed else {
            return Err(ApiError::invalid_request(format!(
                "ports: {port:?} is not HOST:CONTAINER[/tcp|udp], such as \"8080:80\""
            )));
        };
        bindings.insert(key, json!([{ "HostPort": host }]));
    }
    Ok(Some(Value::Object(bindings)))
}

/// One call to the session's Docker API, its answer in full as JSON (`Null` for none).
pub(crate) async fn call(
    engine: &Engine,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, ApiError> {
    let answer = send(engine, method, path, body).await?;
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::coded(ErrorCode::EngineUnavailable, e.to_string()))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}

/// One call to the session's Docker API, its answer's body left to read; a refusal or an
/// engine error as Berth's error.
async fn send(
    engine: &Engine,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<hyper::Response<hyper::body::Incoming>, ApiError> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "docker")
        .header(header::CONTENT_TYPE, "application/json");
    let body = match body {
        Some(body) => Body::from(serde_json::to_vec(&body).map_err(ApiError::internal)?),
        None => Body::empty(),
    };
    let answer = engine
        .send_bounded(request.body(body).map_err(ApiError::internal)?)
        .await?;
    if answer.status().is_success() {
        return Ok(answer);
    }
    let status = answer.status();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    Err(refusal(status, &bytes))
}

/// The session API's error answer as Berth's: its own refusals carry Berth's code; the
/// engine's errors only a status and a message.
fn refusal(status: StatusCode, body: &[u8]) -> ApiError {
    let value: Value = serde_json::from_slice(body).unwrap_or_default();
    let message = value["message"]
        .as_str()
        .map_or_else(|| String::from_utf8_lossy(body).into_owned(), str::to_owned);
    let code = serde_json::from_value::<ErrorCode>(value["error"]["code"].clone()).unwrap_or(
        match status {
            StatusCode::BAD_REQUEST => ErrorCode::InvalidRequest,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            _ => ErrorCode::EngineUnavailable,
        },
    );
    ApiError::coded(code, message)
}

/// The last `tail` lines of each of a container's streams, stdout's then stderr's.
pub(crate) async fn logs_tail(
    engine: &Engine,
    container: &str,
    tail: u32,
) -> Result<String, ApiError> {
    let path = format!("/containers/{container}/logs?stdout=1&stderr=1&tail={tail}");
    let mut output = Output::default();
    output
        .read(send(engine, Method::GET, &path, None).await?)
        .await?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

pub(crate) async fn remove(engine: &Engine, container: &str) -> Result<(), ApiError> {
    let path = format!("/containers/{container}?force=1");
    call(engine, Method::DELETE, &path, None).await.map(drop)
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// A container's output as the engine streams it without a TTY: frames of an 8-byte header
/// (byte 0 the stream, 1 stdout and 2 stderr; bytes 4-7 the length, big-endian) and their
/// bytes. Each stream is kept up to [`MAX_OUTPUT`].
#[derive(Debug, Default)]
struct Output {
    unread: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl Output {
    /// Reads `answer`'s stream to its end; what it read stays if it is cut short.
    async fn read(
        &mut self,
        answer: hyper::Response<hyper::body::Incoming>,
    ) -> Result<(), ApiError> {
        let mut body = answer.into_body();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::coded(ErrorCode::EngineUnavailable, e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                self.feed(&data);
            }
        }
        Ok(())
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.unread.extend_from_slice(bytes);
        while self.unread.len() >= 8 {
            let length = u32::from_be_bytes([
                self.unread[4],
                self.unread[5],
                self.unread[6],
                self.unread[7],
            ]) as usize;
            if self.unread.len() < 8 + length {
                break;
            }
            let to = if self.unread[0] == 2 {
                &mut self.stderr
            } else {
                &mut self.stdout
            };
            let payload = &self.unread[8..8 + length];
            let room = MAX_OUTPUT.saturating_sub(to.len());
            self.truncated |= payload.len() > room;
            to.extend_from_slice(&payload[..payload.len().min(room)]);
            self.unread.drain(..8 + length);
        }
    }

    fn outcome(
        self,
        container: String,
        exit_code: Option<i64>,
        timed_out: bool,
        started: Instant,
    ) -> DockerOutcome {
        DockerOutcome {
            container,
            exit_code,
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
            truncated: self.truncated,
            timed_out,
            duration_ms: millis(started.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_are_read_back_into_their_streams() {
        let frame = |stream: u8, text: &str| {
            let mut bytes = vec![stream, 0, 0, 0];
            bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
            bytes.extend_from_slice(text.as_bytes());
            bytes
        };
        let stream = [frame(1, "out\n"), frame(2, "err\n"), frame(1, "more")].concat();
        for split in 0..stream.len() {
            let mut output = Output::default();
            output.feed(&stream[..split]);
            output.feed(&stream[split..]);
            assert_eq!(output.stdout, b"out\nmore");
            assert_eq!(output.stderr, b"err\n");
            assert!(!output.truncated);
        }
    }

    #[test]
    fn ports_are_read_as_dash_p_reads_them() {
        assert_eq!(port_bindings(&[]).unwrap(), None);
        assert_eq!(
            port_bindings(&["8080:80".into(), "53:53/udp".into()]).unwrap(),
            Some(json!({"80/tcp": [{"HostPort": "8080"}], "53/udp": [{"HostPort": "53"}]}))
        );
        for bad in ["80", "x:80", "8080:80/sctp", "0:80", "8080:"] {
            assert!(port_bindings(&[bad.into()]).is_err(), "{bad}");
        }
    }
}

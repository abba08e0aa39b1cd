//! Each kind of check, run against the session by the judge.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use axum::body::Body;
use berth_proto::{ErrorCode, docker::DockerOutcome, lab::CheckResult, process::ExecRequest};
use http_body_util::BodyExt;
use hyper::Method;
use regex::{Regex, RegexBuilder};
use serde_json::{Value, json};

use super::{
    attempts,
    judge::{Judging, Undo},
};
use crate::{
    api::{docker::run, error::ApiError, session_agent::read_limited},
    docker_api::Engine,
    labs::{
        Step, dockerfile,
        format::{CheckFile, CheckKind, ScriptPlace},
    },
};

/// The most of a file a check reads.
const MAX_FILE_BYTES: usize = 1 << 20;
/// The most of a build's log kept.
const MAX_BUILD_LOG: usize = 8 << 20;
/// How long a command or script check may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server started by the judge has to answer.
const PROBE_WAIT: Duration = Duration::from_secs(20);
/// How long the learner's own server has: it is running, or it is not.
const SESSION_PROBE_WAIT: Duration = Duration::from_secs(3);

/// What a check found: passed or not, what it says, what it measured.
struct Found {
    passed: bool,
    message: String,
    hint: Option<String>,
    metrics: BTreeMap<String, f64>,
}

impl Found {
    fn pass(message: impl Into<String>) -> Self {
        Self {
            passed: true,
            message: message.into(),
            hint: None,
            metrics: BTreeMap::new(),
        }
    }

    fn fail(message: impl Into<String>) -> Self {
        Self {
            passed: false,
            ..Self::pass(message)
        }
    }

    fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.to_owned(), value);
        self
    }
}

/// Runs one check; whatever goes wrong becomes its failed result, never the judging's error.
pub async fn run(judging: &mut Judging<'_>, step: &Step, check: &CheckFile) -> CheckResult {
    let started = Instant::now();
    let found = match kind(judging, step, check).await {
        Ok(found) => found,
        Err(err) => Found::fail(err.message),
    };
    CheckResult {
        id: check.id.clone(),
        title: check.title.clone(),
        passed: found.passed,
        hint: if found.passed {
            None
        } else {
            found.hint.or_else(|| check.hint.clone())
        },
        message: found.message,
        metrics: found.metrics,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

async fn kind(
    judging: &mut Judging<'_>,
    step: &Step,
    check: &CheckFile,
) -> Result<Found, ApiError> {
    match &check.kind {
        CheckKind::FileExists { path } => Ok(match read_file(judging, path).await? {
            Some(_) => Found::pass(format!("{path} exists")),
            None => Found::fail(format!("there is no {path} in your home directory")),
        }),
        CheckKind::FileMatches {
            path,
            matches,
            not_matches,
        } => {
            let Some(text) = read_file(judging, path).await? else {
                return Ok(Found::fail(format!(
                    "there is no {path} in your home directory"
                )));
            };
            for pattern in matches {
                if !multiline(pattern)?.is_match(&text) {
                    return Ok(Found::fail(format!("{path} does not have `{pattern}` yet")));
                }
            }
            for pattern in not_matches {
                if let Some(found) = multiline(pattern)?.find(&text) {
                    return Ok(Found::fail(format!(
                        "{path} should not have `{}`",
                        found.as_str().trim()
                    )));
                }
            }
            Ok(Found::pass(format!("{path} looks right")))
        }
        CheckKind::Command {
            run,
            exit_code,
            stdout,
        } => {
            let result =
                attempts::exec(judging.state, &judging.agent, run, COMMAND_TIMEOUT).await?;
            let code = result.exit_code.map(i64::from);
            if result.timed_out {
                return Ok(Found::fail(format!(
                    "`{run}` did not finish within a minute"
                )));
            }
            if code != Some(*exit_code) {
                let said = last_line(&result.stderr).or_else(|| last_line(&result.stdout));
                return Ok(Found::fail(format!(
                    "`{run}` exited {}, not {exit_code}{}",
                    code.map_or("by a signal".to_owned(), |c| c.to_string()),
                    said.map(|s| format!(": {s}")).unwrap_or_default()
                )));
            }
            if let Some(pattern) = stdout
                && !multiline(pattern)?.is_match(&result.stdout)
            {
                return Ok(Found::fail(format!(
                    "`{run}` printed {:?}, which is not what it should",
                    result.stdout.trim().chars().take(200).collect::<String>()
                )));
            }
            Ok(Found::pass(format!("`{run}` works")))
        }
        CheckKind::DockerBuild {
            context,
            dockerfile,
            tag,
            plant,
            cached_after_touching,
        } => {
            build_check(
                judging,
                context,
                dockerfile.as_deref(),
                tag,
                plant,
                cached_after_touching.as_deref(),
            )
            .await
        }
        CheckKind::ImageSizeBelow { image, max_mb } => {
            let (engine, id) = built(judging, image)?;
            let inspect =
                run::call(&engine, Method::GET, &format!("/images/{id}/json"), None).await?;
            let bytes = inspect["Size"].as_f64().unwrap_or_default();
            let mb = (bytes / 1e6 * 10.0).round() / 10.0;
            let found = if mb < *max_mb as f64 {
                Found::pass(format!("the image is {mb} MB, under {max_mb} MB"))
            } else {
                Found::fail(format!(
                    "the image is {mb} MB; it must be under {max_mb} MB"
                ))
            };
            Ok(found.metric("size_mb", mb))
        }
        CheckKind::ImageLayers {
            image,
            max_layers,
            created_by,
        } => {
            let (engine, id) = built(judging, image)?;
            let history =
                run::call(&engine, Method::GET, &format!("/images/{id}/history"), None).await?;
            let entries = history.as_array().cloned().unwrap_or_default();
            let layers = entries
                .iter()
                .filter(|e| e["Size"].as_i64().unwrap_or(0) > 0)
                .count();
            let created: Vec<&str> = entries
                .iter()
                .filter_map(|e| e["CreatedBy"].as_str())
                .collect();
            if let Some(max) = max_layers
                && layers > *max as usize
            {
                return Ok(Found::fail(format!(
                    "the image has {layers} layers that add files; at most {max}"
                ))
                .metric("layers", layers as f64));
            }
            for pattern in created_by {
                let re = Regex::new(pattern).map_err(|e| ApiError::internal(e.to_string()))?;
                if !created.iter().any(|line| re.is_match(line)) {
                    return Ok(Found::fail(format!(
                        "no step of the image's history matches `{pattern}`"
                    ))
                    .metric("layers", layers as f64));
                }
            }
            Ok(
                Found::pass(format!("the image's {layers} layers are as they should be"))
                    .metric("layers", layers as f64),
            )
        }
        CheckKind::HttpProbe {
            image,
            port,
            path,
            status,
            body,
        } => {
            probe_check(
                judging,
                image.as_deref(),
                *port,
                path,
                *status,
                body.as_deref(),
            )
            .await
        }
        CheckKind::Dockerfile { path, rules } => {
            let Some(text) = read_file(judging, path).await? else {
                return Ok(Found::fail(format!(
                    "there is no {path} in your home directory"
                )));
            };
            let instructions = dockerfile::instructions(&text);
            for rule in rules {
                if let Err(problem) = dockerfile::check_rule(&instructions, rule) {
                    return Ok(Found::fail(format!("{path}: {problem}")));
                }
            }
            Ok(Found::pass(format!("{path} follows the rules")))
        }
        CheckKind::Script { run_in, image, .. } => {
            let script = step.scripts.get(&check.id).cloned().unwrap_or_default();
            let (code, stdout, stderr, timed_out) = match (run_in, image) {
                (ScriptPlace::Image, Some(image)) => {
                    let outcome = run_in_image(judging, image, &script).await?;
                    (
                        outcome.exit_code,
                        outcome.stdout,
                        outcome.stderr,
                        outcome.timed_out,
                    )
                }
                _ => {
                    let result =
                        attempts::exec(judging.state, &judging.agent, &script, COMMAND_TIMEOUT)
                            .await?;
                    (
                        result.exit_code.map(i64::from),
                        result.stdout,
                        result.stderr,
                        result.timed_out,
                    )
                }
            };
            Ok(script_verdict(code, &stdout, &stderr, timed_out))
        }
    }
}

/// A script's exit and output as a check's result: exit 0 passes; a failure says why with a
/// `FAIL: ...` line or a JSON line `{"message", "hint"}`.
fn script_verdict(code: Option<i64>, stdout: &str, stderr: &str, timed_out: bool) -> Found {
    if timed_out {
        return Found::fail("the check did not finish within a minute");
    }
    let lines = || stdout.lines().chain(stderr.lines()).map(str::trim);
    if code == Some(0) {
        return Found::pass(last_line(stdout).unwrap_or_else(|| "passed".to_owned()));
    }
    for line in lines() {
        if let Some(message) = line.strip_prefix("FAIL:") {
            return Found::fail(message.trim());
        }
        if line.starts_with('{')
            && let Ok(value) = serde_json::from_str::<Value>(line)
            && let Some(message) = value["message"].as_str()
        {
            let mut found = Found::fail(message);
            found.hint = value["hint"].as_str().map(str::to_owned);
            return found;
        }
    }
    Found::fail(match last_line(stderr).or_else(|| last_line(stdout)) {
        Some(said) => format!("the check failed: {said}"),
        None => format!(
            "the check failed (exit {})",
            code.map_or("by a signal".to_owned(), |c| c.to_string())
        ),
    })
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .map(|line| line.chars().take(300).collect())
}

fn multiline(pattern: &str) -> Result<Regex, ApiError> {
    RegexBuilder::new(pattern)
        .multi_line(true)
        .build()
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// A file of the session's home as text, up to [`MAX_FILE_BYTES`]; `None` when there is none.
async fn read_file(judging: &Judging<'_>, path: &str) -> Result<Option<String>, ApiError> {
    let bytes = read_bytes(judging, path).await?;
    Ok(bytes.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// A file of the session's home, up to [`MAX_FILE_BYTES`]; `None` when there is none.
async fn read_bytes(
    judging: &Judging<'_>,
    path: &str,
) -> Result<Option<axum::body::Bytes>, ApiError> {
    let query = serde_urlencoded::to_string([("path", path)]).map_err(ApiError::internal)?;
    let request = hyper::Request::get(format!("/files/content?{query}"))
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    match judging.agent.send(judging.state, request).await {
        Ok(response) => Ok(Some(read_limited(response, MAX_FILE_BYTES).await?)),
        Err(err) if err.code == ErrorCode::NotFound => Ok(None),
        Err(err) if err.code == ErrorCode::InvalidRequest => Ok(None),
        Err(err) => Err(err),
    }
}

fn engine(judging: &Judging<'_>) -> Result<Engine, ApiError> {
    judging.engine.clone().ok_or_else(|| {
        ApiError::coded(
            ErrorCode::Misconfigured,
            "this check needs a lab with `docker = true`",
        )
    })
}

/// The session's engine and the image a `docker_build` of this judging made as `tag`.
fn built(judging: &Judging<'_>, tag: &str) -> Result<(Engine, String), ApiError> {
    let id = judging.built.get(tag).cloned().ok_or_else(|| {
        ApiError::coded(
            ErrorCode::Conflict,
            format!("the image {tag} was not built (see the build check above)"),
        )
    })?;
    Ok((engine(judging)?, id))
}

/// A script in the session's home, its output.
async fn exec_in(
    judging: &Judging<'_>,
    cwd: &str,
    cmd: Vec<String>,
    stdin: Option<String>,
) -> Result<berth_proto::process::ExecResult, ApiError> {
    let request = ExecRequest {
        cmd,
        cwd: Some(cwd.to_owned()),
        env: BTreeMap::new(),
        stdin,
        timeout_ms: Some(30_000),
        keepalive: false,
        pty: None,
    };
    let body = serde_json::to_value(&request).map_err(ApiError::internal)?;
    judging
        .agent
        .call(judging.state, Method::POST, "/exec", Some(body))
        .await
}

/// Writes `plant`'s files into the context where none is; what to remove after (the topmost
/// path each one made, so a learner's own file or directory is never removed) is on the
/// judging's undo list as it is made.
async fn plant_files(
    judging: &mut Judging<'_>,
    context: &str,
    plant: &BTreeMap<String, String>,
) -> Result<Undo, ApiError> {
    let mut made = Undo::Planted {
        dir: context.to_owned(),
        paths: Vec::new(),
    };
    for (path, content) in plant {
        // Prints the topmost path the planting makes; nothing when the file is there already.
        let script = "p=$1; [ -e \"$p\" ] && exit 0; top=$p; d=$(dirname \"$p\"); \
             while [ \"$d\" != . ] && [ ! -e \"$d\" ]; do top=$d; d=$(dirname \"$d\"); done; \
             mkdir -p \"$(dirname \"$p\")\" && cat > \"$p\" && echo \"$top\"";
        let result = exec_in(
            judging,
            context,
            vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                "plant".into(),
                path.clone(),
            ],
            Some(content.clone()),
        )
        .await?;
        if let Undo::Planted { paths, .. } = &mut made {
            paths.extend(result.stdout.lines().map(str::to_owned));
        }
        judging
            .undo
            .retain(|change| !matches!(change, Undo::Planted { dir, .. } if dir == context));
        judging.undo.push(made.clone());
        if result.exit_code != Some(0) {
            return Err(ApiError::coded(
                ErrorCode::SessionFailed,
                format!(
                    "could not place {path} in the build's context: {}",
                    result.stderr.trim()
                ),
            ));
        }
    }
    Ok(made)
}

/// Takes back one change of this judging's and forgets it.
async fn take_back(judging: &mut Judging<'_>, change: Undo) {
    judging.undo.retain(|listed| *listed != change);
    undo(judging, &change).await;
}

/// Takes back every change this judging made and has not taken back, newest first.
pub async fn undo_all(judging: &mut Judging<'_>) {
    while let Some(change) = judging.undo.pop() {
        undo(judging, &change).await;
    }
}

async fn undo(judging: &Judging<'_>, change: &Undo) {
    let failed = match change {
        Undo::Container(id) => match &judging.engine {
            Some(engine) => run::remove(engine, id).await.err(),
            None => None,
        },
        Undo::Planted { paths, .. } if paths.is_empty() => None,
        Undo::Planted { dir, paths } => {
            let mut cmd = vec!["rm".into(), "-rf".into(), "--".into()];
            cmd.extend(paths.iter().cloned());
            exec_in(judging, dir, cmd, None).await.err()
        }
        Undo::Rewritten { path, original } => {
            write_file(judging, path, original.clone()).await.err()
        }
    };
    if let Some(err) = failed {
        tracing::warn!(?change, code = %err.code, message = %err.message, "taking back a judge's change");
    }
}

/// Writes a file of the session's home, bytes as they are.
async fn write_file(judging: &Judging<'_>, path: &str, bytes: Vec<u8>) -> Result<(), ApiError> {
    let query = serde_urlencoded::to_string([("path", path)]).map_err(ApiError::internal)?;
    let request = hyper::Request::put(format!("/files/content?{query}"))
        .body(Body::from(bytes))
        .map_err(ApiError::internal)?;
    judging.agent.send(judging.state, request).await.map(drop)
}

fn home_path(relative: &str) -> String {
    let trimmed = relative.trim_start_matches("./");
    if trimmed.is_empty() || trimmed == "." {
        "/home/user".to_owned()
    } else {
        format!("/home/user/{trimmed}")
    }
}

/// One build of the context: the image's id, or what failed; and the log's steps, each with
/// whether it came from the cache.
struct BuildLog {
    image: Result<String, String>,
    steps: Vec<(String, bool)>,
}

async fn build_once(
    judging: &Judging<'_>,
    engine: &Engine,
    context: &str,
    dockerfile: Option<&str>,
    tag: &str,
) -> Result<BuildLog, ApiError> {
    // The context as the docker CLI would send it: without what `.dockerignore` lists.
    let mut archive = vec![("path", context), ("dockerignore", "true")];
    archive.extend(dockerfile.map(|name| ("dockerfile", name)));
    let query = serde_urlencoded::to_string(&archive).map_err(ApiError::internal)?;
    let request = hyper::Request::get(format!("/files/archive?{query}"))
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    let archive = judging.agent.send(judging.state, request).await?;
    let mut build = vec![("t", format!("judge-{tag}")), ("rm", "1".to_owned())];
    if let Some(dockerfile) = dockerfile {
        build.push(("dockerfile", dockerfile.to_owned()));
    }
    let query = serde_urlencoded::to_string(&build).map_err(ApiError::internal)?;
    let forwarded = axum::http::Request::post(format!("/build?{query}"))
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .body(archive.into_body())
        .map_err(ApiError::internal)?;
    let answer = engine.send(forwarded).await?;
    let status = answer.status();
    let bytes = http_body_util::Limited::new(answer.into_body(), MAX_BUILD_LOG)
        .collect()
        .await
        .map_err(|e| ApiError::coded(ErrorCode::EngineUnavailable, e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = value["message"].as_str().map_or_else(
            || String::from_utf8_lossy(&bytes).into_owned(),
            str::to_owned,
        );
        return Ok(BuildLog {
            image: Err(message),
            steps: Vec::new(),
        });
    }
    let mut image = None;
    let mut error = None;
    let mut text = String::new();
    for line in bytes.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if let Some(id) = message["aux"]["ID"].as_str() {
            image = Some(id.to_owned());
        }
        if let Some(err) = message["error"].as_str() {
            error = Some(err.trim().to_owned());
        }
        if let Some(stream) = message["stream"].as_str() {
            text.push_str(stream);
        }
    }
    Ok(BuildLog {
        image: match (error, image) {
            (Some(error), _) => Err(error),
            (None, Some(id)) => Ok(id),
            (None, None) => Err("the build ended without an image".to_owned()),
        },
        steps: build_steps(&text),
    })
}

/// The classic builder's `Step N/M : INSTRUCTION` lines, each with whether ` ---> Using
/// cache` followed it.
fn build_steps(log: &str) -> Vec<(String, bool)> {
    let mut steps: Vec<(String, bool)> = Vec::new();
    for line in log.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Step ")
            && let Some((_, instruction)) = rest.split_once(" : ")
        {
            steps.push((instruction.to_owned(), false));
        } else if line == "---> Using cache"
            && let Some(last) = steps.last_mut()
        {
            last.1 = true;
        }
    }
    steps
}

/// Whether a `COPY`/`ADD` instruction's sources take in `file` (a path of the context).
fn brings_in(instruction: &str, file: &str) -> bool {
    let mut words = instruction.split_whitespace();
    let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
    if keyword != "COPY" && keyword != "ADD" {
        return false;
    }
    let args: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
    let Some((_, sources)) = args.split_last() else {
        return false;
    };
    let file = file.trim_start_matches("./");
    sources.iter().any(|source| {
        let source = source.trim_start_matches("./").trim_end_matches('/');
        source.is_empty()
            || source == "."
            || source.contains(['*', '?', '['])
            || file == source
            || file.starts_with(&format!("{source}/"))
    })
}

async fn build_check(
    judging: &mut Judging<'_>,
    context: &str,
    dockerfile: Option<&str>,
    tag: &str,
    plant: &BTreeMap<String, String>,
    cached_after_touching: Option<&str>,
) -> Result<Found, ApiError> {
    let engine = engine(judging)?;
    let context_dir = home_path(context);
    let planted = plant_files(judging, &context_dir, plant).await?;
    let started = Instant::now();
    let first = build_once(judging, &engine, context, dockerfile, tag).await;
    take_back(judging, planted).await;
    let first = first?;
    let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let id = match first.image {
        Ok(id) => id,
        Err(error) => {
            return Ok(
                Found::fail(format!("the build failed: {error}")).metric("build_seconds", seconds)
            );
        }
    };
    judging.built.insert(tag.to_owned(), id.clone());
    let Some(touched) = cached_after_touching else {
        return Ok(Found::pass("the image builds").metric("build_seconds", seconds));
    };

    // The rebuild after a change to `touched` must reuse what comes before copying it in.
    let path = format!("{}/{}", context_dir, touched.trim_start_matches("./"));
    let original = read_bytes(judging, &path).await?.ok_or_else(|| {
        ApiError::coded(
            ErrorCode::Conflict,
            format!("there is no {touched} to change"),
        )
    })?;
    let rewritten = Undo::Rewritten {
        path: path.clone(),
        original: original.to_vec(),
    };
    judging.undo.push(rewritten.clone());
    let mut changed = original.to_vec();
    changed.extend_from_slice(b"\n# changed by the judge to test the build cache\n");
    let second = match write_file(judging, &path, changed).await {
        Ok(()) => build_once(judging, &engine, context, dockerfile, tag).await,
        Err(err) => Err(err),
    };
    take_back(judging, rewritten).await;
    let second = second?;
    if let Err(error) = second.image {
        return Ok(Found::fail(format!("the rebuild failed: {error}")));
    }
    let total = second.steps.len();
    let copy_at = second
        .steps
        .iter()
        .position(|(instruction, _)| brings_in(instruction, touched));
    let before = &second.steps[..copy_at.unwrap_or(total)];
    let cached = second.steps.iter().filter(|(_, hit)| *hit).count();
    let runs_before = before
        .iter()
        .filter(|(i, _)| i.to_ascii_uppercase().starts_with("RUN"))
        .count();
    let found = if let Some((missed, _)) = before
        .iter()
        .find(|(i, hit)| !hit && !i.to_ascii_uppercase().starts_with("FROM"))
    {
        Found::fail(format!(
            "after a change to {touched}, `{missed}` ran again instead of coming from the cache"
        ))
    } else if runs_before == 0 {
        Found::fail(format!(
            "no RUN step comes before {touched} is copied in, so a change to it repeats every \
             install: copy what the installs need first, install, then copy the rest"
        ))
    } else {
        Found::pass(format!(
            "a change to {touched} rebuilt from the cache up to copying it in ({cached} of {total} steps cached)"
        ))
    };
    Ok(found
        .metric("cached_steps", cached as f64)
        .metric("steps", total as f64))
}

/// Starts a container of a built image through the session's Docker API (hardened by its
/// policy), recorded for removal.
async fn start_container(
    judging: &mut Judging<'_>,
    engine: &Engine,
    image: &str,
    cmd: Option<Vec<String>>,
) -> Result<String, ApiError> {
    let mut create = json!({ "Image": image });
    if let Some(cmd) = cmd {
        create["Cmd"] = json!(cmd);
        create["Entrypoint"] = json!([]);
    }
    let created = run::call(engine, Method::POST, "/containers/create", Some(create)).await?;
    let id = created["Id"]
        .as_str()
        .ok_or_else(|| ApiError::internal("the engine made a container without an id"))?
        .to_owned();
    judging.undo.push(Undo::Container(id.clone()));
    run::call(
        engine,
        Method::POST,
        &format!("/containers/{id}/start"),
        None,
    )
    .await?;
    Ok(id)
}

async fn run_in_image(
    judging: &mut Judging<'_>,
    image: &str,
    script: &str,
) -> Result<DockerOutcome, ApiError> {
    let (engine, id) = built(judging, image)?;
    let cmd = vec!["sh".into(), "-c".into(), script.to_owned()];
    let container = start_container(judging, &engine, &id, Some(cmd)).await?;
    let outcome = run::finish(
        engine,
        container.clone(),
        COMMAND_TIMEOUT,
        false,
        Instant::now(),
    )
    .await;
    take_back(judging, Undo::Container(container)).await;
    outcome
}

async fn probe_check(
    judging: &mut Judging<'_>,
    image: Option<&str>,
    port: u16,
    path: &str,
    status: u16,
    body: Option<&str>,
) -> Result<Found, ApiError> {
    let (address, container) = match image {
        Some(image) => {
            let (engine, id) = built(judging, image)?;
            let container = start_container(judging, &engine, &id, None).await?;
            let inspect = run::call(
                &engine,
                Method::GET,
                &format!("/containers/{container}/json"),
                None,
            )
            .await?;
            let ip = inspect["NetworkSettings"]["Networks"]
                .as_object()
                .into_iter()
                .flat_map(|networks| networks.values())
                .filter_map(|n| n["IPAddress"].as_str())
                .find(|ip| !ip.is_empty())
                .map(str::to_owned);
            let Some(ip) = ip else {
                take_back(judging, Undo::Container(container)).await;
                return Ok(Found::fail(
                    "the container got no address; did it exit at once?",
                ));
            };
            (ip, Some((engine, container)))
        }
        None => (judging.agent.ip().to_string(), None),
    };
    let url = format!("http://{address}:{port}{path}");
    let client = crate::agent_client::container_network_client(Duration::from_secs(1));
    let wait = if container.is_some() {
        PROBE_WAIT
    } else {
        SESSION_PROBE_WAIT
    };
    let deadline = Instant::now() + wait;
    let answer = loop {
        let request = hyper::Request::get(&url)
            .header(hyper::header::HOST, format!("localhost:{port}"))
            .body(Body::empty())
            .map_err(ApiError::internal)?;
        let tried = tokio::time::timeout(Duration::from_secs(5), client.request(request)).await;
        if let Ok(Ok(response)) = tried {
            let code = response.status().as_u16();
            let text = http_body_util::Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            break Some((code, text));
        }
        let exited = match &container {
            Some((engine, id)) => {
                let state = run::call(engine, Method::GET, &format!("/containers/{id}/json"), None)
                    .await
                    .unwrap_or_default();
                (state["State"]["Running"] == false).then(|| state["State"]["ExitCode"].as_i64())
            }
            None => None,
        };
        if let Some(code) = exited {
            let logs = match &container {
                Some((engine, id)) => container_logs(engine, id).await,
                None => String::new(),
            };
            if let Some((_, id)) = container {
                take_back(judging, Undo::Container(id)).await;
            }
            return Ok(Found::fail(format!(
                "the container exited (code {}) before answering on port {port}{}",
                code.map_or("?".to_owned(), |c| c.to_string()),
                last_line(&logs)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            )));
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if let Some((_, id)) = container {
        take_back(judging, Undo::Container(id)).await;
    }
    let where_ = match image {
        Some(image) => format!("a container of {image}"),
        None => "your session".to_owned(),
    };
    let Some((code, text)) = answer else {
        return Ok(Found::fail(format!(
            "nothing answered GET {path} on port {port} of {where_} within {} s",
            wait.as_secs()
        )));
    };
    let found = if code != status {
        Found::fail(format!(
            "GET {path} on port {port} of {where_} answered {code}, not {status}"
        ))
    } else if let Some(pattern) = body
        && !multiline(pattern)?.is_match(&text)
    {
        Found::fail(format!(
            "GET {path} answered {:?}, which is not what it should",
            text.trim().chars().take(200).collect::<String>()
        ))
    } else {
        Found::pass(format!(
            "GET {path} on port {port} of {where_} answered {code}"
        ))
    };
    Ok(found.metric("status", f64::from(code)))
}

async fn container_logs(engine: &Engine, id: &str) -> String {
    run::logs_tail(engine, id, 20).await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_explain_themselves_with_fail_lines_or_json() {
        let fail = script_verdict(Some(1), "checking\nFAIL: .env is in the image\n", "", false);
        assert!(!fail.passed);
        assert_eq!(fail.message, ".env is in the image");
        let json = script_verdict(
            Some(1),
            "{\"message\": \"no /health\", \"hint\": \"add a route\"}\n",
            "",
            false,
        );
        assert_eq!(json.message, "no /health");
        assert_eq!(json.hint.as_deref(), Some("add a route"));
        let bare = script_verdict(Some(2), "", "grep: x: No such file\n", false);
        assert_eq!(bare.message, "the check failed: grep: x: No such file");
        assert!(script_verdict(Some(0), "all good\n", "", false).passed);
    }

    #[test]
    fn build_logs_say_which_steps_came_from_the_cache() {
        let log = "Step 1/4 : FROM python:3.11-slim\n ---> 1a2b\nStep 2/4 : COPY requirements.txt .\n ---> Using cache\n ---> 3c4d\nStep 3/4 : RUN pip install -r requirements.txt\n ---> Using cache\nStep 4/4 : COPY . .\n ---> 5e6f\n";
        assert_eq!(
            build_steps(log),
            vec![
                ("FROM python:3.11-slim".to_owned(), false),
                ("COPY requirements.txt .".to_owned(), true),
                ("RUN pip install -r requirements.txt".to_owned(), true),
                ("COPY . .".to_owned(), false),
            ]
        );
    }

    #[test]
    fn copies_that_take_in_a_file_are_found() {
        assert!(brings_in("COPY . .", "app.py"));
        assert!(brings_in("COPY --chown=1000 ./ /app/", "app.py"));
        assert!(brings_in("COPY app.py /app/", "app.py"));
        assert!(brings_in("ADD src /app/src", "src/app.py"));
        assert!(brings_in("COPY *.py /app/", "app.py"));
        assert!(!brings_in("COPY requirements.txt .", "app.py"));
        assert!(!brings_in("RUN cp . .", "app.py"));
    }
}

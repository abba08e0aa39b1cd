//! `POST .../docker/build`: a directory of the session built into an image, the engine's
//! build log streamed back.

use axum::body::Bytes;
use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, Method, header},
    response::Response,
};
use berth_proto::{ErrorBody, docker::DockerBuild};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::session_docker;
use crate::{
    api::{AppState, error::ApiError, extract::ApiJson},
    auth::Principal,
    docker_api,
};

/// Build a directory of the session into an image. The answer streams the engine's build log
/// (JSON lines, as `docker build` reads them); it ends with the image built
/// (`{"result":{"id":"sha256:...","tag":...,"size_bytes":...}}`) or the engine's error.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/docker/build", tag = "docker",
    params(("id" = String, Path)),
    request_body = DockerBuild,
    responses(
        (status = 200, description = "The build log, streamed as JSON lines", content_type = "application/json"),
        (status = 400, description = "Bad tag or path", body = ErrorBody),
        (status = 403, description = "Refused by the session's Docker policy", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not running, or its template has no Docker", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn build(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<DockerBuild>,
) -> Result<Response, ApiError> {
    let name_ok = |text: &str| {
        !text.is_empty()
            && text.len() <= 256
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
    };
    if !name_ok(&request.tag) {
        return Err(ApiError::invalid_request(
            "tag: 1 to 256 of letters, digits and ._-/: (such as \"app:1\")",
        ));
    }
    if request.context_path.is_empty() {
        return Err(ApiError::invalid_request(
            "context_path: the directory to build, such as \"app\"",
        ));
    }
    let (endpoint, engine) = session_docker(&state, &caller, &id).await?;
    // As the docker CLI sends a context: without what its `.dockerignore` lists (the engine's
    // builder does not read it).
    let mut archive = vec![
        ("path", request.context_path.as_str()),
        ("dockerignore", "true"),
    ];
    archive.extend(
        request
            .dockerfile
            .as_deref()
            .map(|name| ("dockerfile", name)),
    );
    let query = serde_urlencoded::to_string(&archive).map_err(ApiError::internal)?;
    let archive = crate::proxy::http(
        &state.agent,
        endpoint,
        Method::GET,
        &format!("/files/archive?{query}"),
        &HeaderMap::new(),
        Body::empty(),
    )
    .await?;
    // The agent's own error (no such directory, say) is already a JSON error.
    if !archive.status().is_success() {
        return Ok(archive);
    }
    let mut build = vec![("t", request.tag.as_str())];
    if let Some(dockerfile) = &request.dockerfile {
        build.push(("dockerfile", dockerfile));
    }
    let query = serde_urlencoded::to_string(&build).map_err(ApiError::internal)?;
    let forwarded = axum::http::Request::post(format!("/build?{query}"))
        .header(header::HOST, "docker")
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(archive.into_body())
        .map_err(ApiError::internal)?;
    let answer = engine.send(forwarded).await?;
    if !answer.status().is_success() {
        return Ok(answer.map(Body::new));
    }
    let (parts, log) = answer.into_parts();
    Ok(Response::from_parts(
        parts,
        with_result(log, engine, request.tag),
    ))
}

/// The engine's build log as it comes, then, once it names the image it built, one more line:
/// `{"result":{"id":"sha256:...","tag":"...","size_bytes":N}}`, so a program needs no second
/// call to learn what it got. A failed build's log ends with the engine's error instead.
fn with_result(mut log: hyper::body::Incoming, engine: docker_api::Engine, tag: String) -> Body {
    let (lines, received) = tokio::sync::mpsc::channel::<Result<Bytes, hyper::Error>>(16);
    tokio::spawn(async move {
        let mut unread = Vec::new();
        let mut built = None;
        loop {
            // A caller that hangs up ends the build: its connection to the engine closes.
            let frame = tokio::select! {
                frame = log.frame() => frame,
                () = lines.closed() => return,
            };
            let Some(frame) = frame else { break };
            let data = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Err(err) => {
                    let _ = lines.send(Err(err)).await;
                    return;
                }
            };
            unread.extend_from_slice(&data);
            while let Some(end) = unread.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = unread.drain(..=end).collect();
                if let Ok(message) = serde_json::from_slice::<Value>(&line) {
                    if let Some(id) = message["aux"]["ID"].as_str() {
                        built = Some(id.to_owned());
                    }
                    // Built, then failed (to tag, say): the log ends with the error.
                    if message.get("error").is_some() {
                        built = None;
                    }
                }
            }
            if lines.send(Ok(data)).await.is_err() {
                return;
            }
        }
        let Some(id) = built else { return };
        let image = engine.get_json(&format!("/images/{id}/json")).await;
        let Ok(Some(image)) = image else { return };
        // The image may carry other tags of the session's; this build's ends with its own.
        let wanted = if tag.rsplit('/').next().unwrap_or(&tag).contains(':') {
            format!("/{tag}")
        } else {
            format!("/{tag}:latest")
        };
        let tag = image["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|repo_tag| repo_tag.ends_with(&wanted));
        let result = json!({"result": {
            "id": id,
            "tag": tag,
            "size_bytes": image["Size"],
        }});
        let _ = lines.send(Ok(Bytes::from(format!("{result}\n")))).await;
    });
    let stream = futures_util::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|line| (line, received))
    });
    Body::from_stream(stream)
}

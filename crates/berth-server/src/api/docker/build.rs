//! `POST .../docker/build`: a directory of the session built into an image, the engine's
//! build log streamed back.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, Method, header},
    response::Response,
};
use berth_proto::{ErrorBody, docker::DockerBuild};

use super::session_docker;
use crate::{
    api::{AppState, error::ApiError, extract::ApiJson},
    auth::Principal,
};

/// Build a directory of the session into an image. The answer streams the engine's build log
/// (JSON lines, as `docker build` reads them); its last lines carry the image id
/// (`{"aux":{"ID":...}}`) or the error.
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
    let query = serde_urlencoded::to_string([("path", request.context_path.as_str())])
        .map_err(ApiError::internal)?;
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
    Ok(answer.map(Body::new))
}

//! The envd listener's routing and its plain HTTP routes. A request names its sandbox in
//! `E2b-Sandbox-Id` and proves it may work there with `X-Access-Token`, the token the sandbox's
//! create or connect answered (an HMAC of the sandbox's id, so nothing is stored). It then acts
//! as the sandbox's owner on the session's agent, like Berth's own routes.

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Multipart, Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use berth_proto::{ErrorCode, files::FileEntry};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::ENVD_PORT;
use crate::{
    api::{
        AppState,
        error::{ApiError, E2bError},
    },
    auth::{ADMIN_NAME, Principal},
    proxy::encode_query,
    sessions::SessionError,
};

pub use crate::api::session_agent::SessionAgent as Sandbox;

/// The sandbox a request to envd names, once its access token is checked. A paused
/// (hibernated) one is woken, as any access to a Berth session wakes it.
pub async fn sandbox(state: &AppState, headers: &HeaderMap) -> Result<Sandbox, ApiError> {
    resolve(state, headers, true, ENVD_PORT).await
}

/// The sandbox a request to another of its servers (`port`: the code interpreter's) names.
pub async fn sandbox_on(
    state: &AppState,
    headers: &HeaderMap,
    port: u16,
) -> Result<Sandbox, ApiError> {
    resolve(state, headers, true, port).await
}

/// The same, without waking a paused sandbox: it is not found, as E2B's proxy says of it.
async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    wake: bool,
    port: u16,
) -> Result<Sandbox, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header("e2b-sandbox-id").ok_or_else(|| {
        ApiError::invalid_request(
            "no E2b-Sandbox-Id header: point E2B_SANDBOX_URL at this listener (docs/e2b.md)",
        )
    })?;
    if let Some(asked) = header("e2b-sandbox-port")
        && asked != port.to_string()
    {
        return Err(ApiError::invalid_request(format!(
            "this route is port {port}'s; port {asked} of a sandbox is reached through Berth's \
             preview routes"
        )));
    }
    // The SDKs send the code interpreter the traffic token and envd the access token; Berth's
    // create answers the same token under both names.
    let token = header("x-access-token")
        .or_else(|| header("e2b-traffic-access-token"))
        .unwrap_or_default();
    if !state.signer.e2b_access_token_matches(id, token) {
        return Err(ApiError::coded(
            ErrorCode::Unauthorized,
            "missing or wrong X-Access-Token for this sandbox",
        ));
    }
    let record = state
        .store
        .get_session(id)
        .await?
        .filter(|record| record.state.is_kept())
        .filter(|record| wake || record.state.is_live())
        .ok_or_else(|| ApiError::e2b_sandbox_not_found(id))?;
    let owner = Principal {
        admin: record.owner == ADMIN_NAME,
        role: berth_proto::user::Role::User,
        scopes: None,
        name: record.owner,
    };
    let endpoint = match state.sessions.agent_endpoint(&owner, id).await {
        Ok(endpoint) => endpoint,
        Err(SessionError::NotFound(_)) => return Err(ApiError::e2b_sandbox_not_found(id)),
        Err(err) => return Err(err.into()),
    };
    Ok(Sandbox::at(state, id, endpoint))
}

/// `GET /health`: 204 while the sandbox is up; 502 "was not found" once it is gone or while it
/// is paused, which the SDKs read as the sandbox not running (`is_running()`). It wakes nothing.
pub async fn health(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, E2bError> {
    resolve(&state, &headers, false, ENVD_PORT).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    path: Option<String>,
    /// The user to act as. Every process and file of a Berth session is its user's (uid 1000),
    /// so this is accepted and has no effect.
    #[serde(default, rename = "username")]
    _username: Option<String>,
}

fn path_query(path: &str) -> String {
    format!("/files/content?path={}", encode_query(path))
}

/// `GET /files?path=`: a file's bytes, streamed.
pub async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FilesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, E2bError> {
    let Query(query) = query?;
    let path = query
        .path
        .ok_or_else(|| ApiError::invalid_request("the path query parameter is required"))?;
    let sandbox = sandbox(&state, &headers).await?;
    let request = hyper::Request::get(path_query(&path))
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    let response = sandbox.send(&state, request).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::new(response.into_body()),
    )
        .into_response())
}

/// `POST /files?path=`: uploads, as `multipart/form-data` (each part's file name is its path,
/// or `path` for a single part) or as the raw body (`application/octet-stream`). Each file is
/// streamed to the agent, which replaces the old one only once the upload is complete.
pub async fn upload(
    State(state): State<AppState>,
    query: Result<Query<FilesQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, E2bError> {
    let Query(query) = query?;
    let headers = request.headers().clone();
    if headers.contains_key(header::CONTENT_ENCODING) {
        return Err(ApiError::invalid_request(
            "compressed uploads (Content-Encoding) are not accepted; send the bytes as they are",
        )
        .into());
    }
    let sandbox = sandbox(&state, &headers).await?;
    // The whole body, a form's boundaries included: what it writes is no more than that.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared {
        sandbox.refuse_past_disk_room(&state, declared).await?;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut written = Vec::new();
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::invalid_request(e.body_text()))?;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::invalid_request(e.body_text()))?
        {
            let path = field
                .file_name()
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .or_else(|| query.path.clone())
                .ok_or_else(|| {
                    ApiError::invalid_request("each part needs a file name, or send ?path=")
                })?;
            written.push(write_streamed(&state, &sandbox, &path, field).await?);
        }
    } else {
        let path = query
            .path
            .ok_or_else(|| ApiError::invalid_request("the path query parameter is required"))?;
        if declared.is_some_and(|size| size > state.max_file_bytes) {
            return Err(ApiError::coded(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the file is larger than the session's limit of {} bytes",
                    state.max_file_bytes
                ),
            )
            .into());
        }
        let put = hyper::Request::put(path_query(&path))
            .body(request.into_body())
            .map_err(ApiError::internal)?;
        written.push(entry_of(sandbox.send(&state, put).await?).await?);
    }
    if written.is_empty() {
        return Err(ApiError::invalid_request("the form holds no file").into());
    }
    let body: Vec<_> = written
        .into_iter()
        .map(|entry| serde_json::json!({ "name": entry.name, "type": "file", "path": entry.path }))
        .collect();
    Ok(axum::Json(body).into_response())
}

/// Streams one multipart field to the agent as the file at `path`. The field borrows the form,
/// so its chunks pass through a channel to the request body while both run here.
async fn write_streamed(
    state: &AppState,
    sandbox: &Sandbox,
    path: &str,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<FileEntry, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let put = hyper::Request::put(path_query(path))
        .body(body)
        .map_err(ApiError::internal)?;
    let pump = async move {
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(err) => {
                    let message = err.body_text();
                    let _ = tx.send(Err(std::io::Error::other(message.clone()))).await;
                    return Err(ApiError::invalid_request(message));
                }
            }
        }
    };
    let (sent, pumped) = tokio::join!(sandbox.send(state, put), pump);
    pumped?;
    entry_of(sent?).await
}

async fn entry_of(response: hyper::Response<Body>) -> Result<FileEntry, ApiError> {
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::coded(ErrorCode::SessionFailed, e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}

//! The seed's direct API: `GET|POST /containers`, `GET|DELETE /containers/{id}`,
//! `GET /containers/{id}/url`.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use berth_proto::{CreateSession, Session};
use serde_json::json;

use super::{Caller, CompatResult, ContainerInfo, LABEL, answer, workspace::Workspace};
use crate::{
    api::{AppState, error::ApiError},
    auth::Principal,
};

/// `GET /containers`: the caller's containers made through this layer, newest last.
pub async fn list(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    headers: HeaderMap,
) -> CompatResult {
    let label = vec![(LABEL.to_owned(), "1".to_owned())];
    let sessions = state.sessions.list(&caller, label, false).await?;
    let infos: Vec<ContainerInfo> = sessions
        .iter()
        .map(|session| ContainerInfo::of(&state, &headers, session))
        .collect();
    Ok(answer(StatusCode::OK, infos, set_cookie))
}

/// `POST /containers`: a new container, running, its working directory made.
pub async fn create(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    headers: HeaderMap,
) -> CompatResult {
    let session = start(&state, &caller, |_, _| async { Ok(()) }).await?;
    Ok(answer(
        StatusCode::CREATED,
        ContainerInfo::of(&state, &headers, &session),
        set_cookie,
    ))
}

/// Creates a container for `caller`, makes its working directory and runs `then` in it; a
/// container that fails any of that is deleted again, so a failed create leaves nothing behind.
/// It runs as a task of its own: a client that hangs up half-way cannot stop the clean-up.
pub(super) async fn start<F, Fut>(
    state: &AppState,
    caller: &Principal,
    then: F,
) -> Result<Session, ApiError>
where
    F: FnOnce(AppState, Workspace) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), ApiError>> + Send,
{
    let (state, caller) = (state.clone(), caller.clone());
    let made = tokio::spawn(async move {
        let request = CreateSession {
            template: state.compat.template.clone(),
            labels: BTreeMap::from([(LABEL.to_owned(), "1".to_owned())]),
            ..CreateSession::default()
        };
        let session = state.sessions.create(caller.clone(), request).await?;
        let prepared = async {
            let workspace = Workspace::open(&state, &caller, &session.id).await?;
            workspace
                .mkdir(&state, &state.compat.workdir)
                .await
                .map_err(|err| {
                    ApiError::coded(
                        err.code,
                        format!(
                            "the container could not make its working directory {} ({}); the \
                             template's image must let its user create it",
                            state.compat.workdir, err.message
                        ),
                    )
                })?;
            then(state.clone(), workspace).await
        };
        match prepared.await {
            Ok(()) => Ok(session),
            Err(err) => {
                if let Err(cleanup) = state.sessions.delete(caller, session.id.clone()).await {
                    tracing::warn!(session = %session.id, %cleanup, "could not delete a container whose create failed half-way");
                }
                Err(err)
            }
        }
    });
    made.await.map_err(ApiError::internal)?
}

/// `GET /containers/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> CompatResult {
    let session = state.sessions.get(&caller, &id).await?;
    Ok(answer(
        StatusCode::OK,
        ContainerInfo::of(&state, &headers, &session),
        set_cookie,
    ))
}

/// `DELETE /containers/{id}`: stopped and removed, its files with it.
pub async fn delete(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
) -> CompatResult {
    state.sessions.delete(caller, id.clone()).await?;
    Ok(answer(
        StatusCode::OK,
        json!({ "id": id, "success": true }),
        set_cookie,
    ))
}

/// `GET /containers/{id}/url`: the preview link of `compat.preview_port`.
pub async fn url(
    State(state): State<AppState>,
    Caller {
        principal: caller,
        set_cookie,
    }: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> CompatResult {
    // A sleeping container wakes for its preview, as for any use.
    Workspace::open(&state, &caller, &id).await?;
    let session = state.sessions.get(&caller, &id).await?;
    let info = ContainerInfo::of(&state, &headers, &session);
    let url = info.preview_url.ok_or_else(|| {
        ApiError::coded(
            berth_proto::ErrorCode::Conflict,
            format!(
                "container {id} is {}: it has a preview only while it runs",
                info.status
            ),
        )
    })?;
    Ok(answer(
        StatusCode::OK,
        json!({ "url": url, "port": info.preview_port }),
        set_cookie,
    ))
}

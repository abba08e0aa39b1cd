//! `/api/v1/sessions/{id}/docker/...`: the runner endpoints of seed 004, for programs (a labs
//! judge) that want a session's Docker without its shell: `build.rs` builds a directory of the
//! session, `run.rs` runs a container and a command in one. They go through the session's own
//! Docker API socket, so the same policy applies as to its `docker` CLI.

pub mod build;
pub mod run;

use std::net::SocketAddr;

use berth_proto::ErrorCode;

use super::{AppState, error::ApiError};
use crate::{auth::Principal, docker_api};

/// The session's agent and Docker API, for `caller`, the session awake (a sleeping one wakes)
/// and its activity counted; `409` when its template has no Docker.
pub(crate) async fn session_docker(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> Result<((SocketAddr, String), docker_api::Engine), ApiError> {
    // The template first: a sleeping session without Docker is not woken for a 409.
    let session = state.sessions.get(caller, id).await?;
    let docker = state
        .templates
        .get(&session.template)
        .is_some_and(|t| t.docker.enabled);
    let socket = match (&state.docker_api, docker) {
        (Some(dir), true) => docker_api::socket_path(dir, id),
        _ => {
            return Err(ApiError::coded(
                ErrorCode::Conflict,
                format!(
                    "session {id}'s template {} has no Docker; use a template with \
                     docker.enabled",
                    session.template
                ),
            ));
        }
    };
    let endpoint = state.sessions.agent_endpoint(caller, id).await?;
    state.sessions.touch(id);
    Ok((
        endpoint,
        docker_api::Engine::at_socket(socket, state.docker_timeout),
    ))
}

/// [`session_docker`]'s Docker API alone.
async fn session_engine(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> Result<docker_api::Engine, ApiError> {
    Ok(session_docker(state, caller, id).await?.1)
}

//! `/api/v1/pool` and `/api/v1/capacity`.

use axum::extract::State;
use berth_proto::{
    ErrorBody,
    pool::{Capacity, PoolList},
};

use super::{AppState, error::ApiError};
use crate::auth::Principal;

/// The warm pool of every template: ready, warming, and claimed since start (admin only).
#[utoipa::path(
    get, path = "/api/v1/pool", tag = "sessions",
    responses((status = 200, body = PoolList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn status(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<axum::Json<PoolList>, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden("only the admin can see the pool"));
    }
    Ok(axum::Json(PoolList {
        pools: state.sessions.pool_status().await?,
    }))
}

/// How full the host is: live sessions against `capacity.max_sessions`, sessions by state,
/// creates waiting for room in the order they will be served, the warm pools (admin only).
#[utoipa::path(
    get, path = "/api/v1/capacity", tag = "sessions", operation_id = "capacity",
    responses((status = 200, body = Capacity), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn capacity(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<axum::Json<Capacity>, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden("only the admin can see the capacity"));
    }
    Ok(axum::Json(state.sessions.capacity().await?))
}

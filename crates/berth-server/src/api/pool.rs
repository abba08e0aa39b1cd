//! `/api/v1/pool`.

use axum::extract::State;
use berth_proto::{ErrorBody, pool::PoolList};

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

//! `/api/v1/homes`: users' persistent homes (templates with `home = "persistent"`), listed and
//! deleted by their owner or the admin.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use berth_proto::{
    ErrorBody,
    home::{Home, HomeList},
};
use serde::Deserialize;

use super::{AppState, error::ApiError, extract::ApiQuery};
use crate::auth::Principal;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HomesQuery {
    /// The admin: only this user's homes. Anyone else sees their own only, whatever this says.
    user: Option<String>,
}

/// The caller's persistent homes (the admin: everyone's), with the session using each.
#[utoipa::path(
    get, path = "/api/v1/homes", tag = "sessions", operation_id = "list_homes",
    params(HomesQuery),
    responses(
        (status = 200, body = HomeList),
        (status = 400, body = ErrorBody),
        (status = 503, description = "The container engine or the store does not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_homes(
    State(state): State<AppState>,
    caller: Principal,
    ApiQuery(query): ApiQuery<HomesQuery>,
) -> Result<Json<HomeList>, ApiError> {
    let homes: Vec<Home> = state
        .sessions
        .list_homes(&caller, query.user.as_deref())
        .await?;
    Ok(Json(HomeList { homes }))
}

/// Delete a persistent home and every file in it; the next session of its template starts
/// with a new one.
#[utoipa::path(
    delete, path = "/api/v1/homes/{name}", tag = "sessions", operation_id = "delete_home",
    params(("name" = String, Path, description = "The home's volume name, as listed")),
    responses(
        (status = 204),
        (status = 404, description = "No such home of the caller's", body = ErrorBody),
        (status = 409, description = "A session that is not ended uses it", body = ErrorBody),
        (status = 503, description = "The container engine or the store does not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_home(
    State(state): State<AppState>,
    caller: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sessions.delete_home(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

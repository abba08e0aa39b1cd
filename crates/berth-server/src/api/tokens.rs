//! `/api/v1/tokens`: a user's API tokens besides their login token, each named, scoped and
//! revocable. Managing tokens takes full access (a login token or the admin token), so a
//! scoped token can never make itself a wider one.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use berth_proto::{
    ErrorBody, ErrorCode,
    token::{ApiToken, CreateToken, Scope, TokenCreated, TokenList},
};

use super::{AppState, error::ApiError, extract::ApiJson};
use crate::{
    auth::{Principal, hash_token},
    ids,
    store::TokenRecord,
};

/// The longest a token may be made to last: five years.
const MAX_LIFETIME_SECONDS: u64 = 5 * 365 * 24 * 3600;

/// Make a token for the caller: named, with scopes, optionally expiring. The secret is shown
/// in this answer only.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "users", operation_id = "create_token",
    request_body = CreateToken,
    responses(
        (status = 201, body = TokenCreated),
        (status = 400, body = ErrorBody),
        (status = 403, description = "Not a full-access token", body = ErrorBody),
        (status = 409, description = "The name is taken among the caller's tokens", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Principal,
    ApiJson(request): ApiJson<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::invalid_request(
            "a token's name is 1 to 64 characters",
        ));
    }
    let mut scopes = request.scopes;
    scopes.sort_unstable();
    scopes.dedup();
    if scopes.is_empty() {
        let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::invalid_request(format!(
            "a token needs at least one scope: {}",
            all.join(", ")
        )));
    }
    if scopes.contains(&Scope::Admin) && !caller.admin {
        return Err(ApiError::invalid_request(
            "only the admin's tokens may have the admin scope",
        ));
    }
    let expires_at = match request.expires_in_seconds {
        Some(seconds) if !(60..=MAX_LIFETIME_SECONDS).contains(&seconds) => {
            return Err(ApiError::invalid_request(format!(
                "expires_in_seconds must be from 60 to {MAX_LIFETIME_SECONDS}"
            )));
        }
        Some(seconds) => Some(chrono::Utc::now() + chrono::TimeDelta::seconds(seconds as i64)),
        None => None,
    };
    let owned = state.store.list_tokens(Some(&caller.name)).await?;
    if owned.iter().any(|t| t.token.name == name) {
        return Err(ApiError::coded(
            ErrorCode::Conflict,
            format!("you already have a token named {name:?}; remove it or pick another name"),
        ));
    }
    let secret = ids::api_token();
    let token = ApiToken {
        id: format!("tok_{}", ids::user_id()),
        name,
        owner: caller.name.clone(),
        scopes,
        created_at: chrono::Utc::now(),
        expires_at,
        last_used_at: None,
    };
    state
        .store
        .put_token(&TokenRecord {
            token: token.clone(),
            hash: hash_token(&secret),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { token, secret })))
}

/// The caller's tokens (the admin: everyone's), never their secrets.
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "users", operation_id = "list_tokens",
    responses((status = 200, body = TokenList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<Json<TokenList>, ApiError> {
    let owner = (!caller.admin).then_some(caller.name.as_str());
    let records = state.store.list_tokens(owner).await?;
    Ok(Json(TokenList {
        tokens: records.into_iter().map(|record| record.token).collect(),
    }))
}

/// Revoke a token: it fails from the next request on.
#[utoipa::path(
    delete, path = "/api/v1/tokens/{id}", tag = "users", operation_id = "delete_token",
    params(("id" = String, Path, description = "Token id (`tok_...`)")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let owner = (!caller.admin).then_some(caller.name.as_str());
    let owned = state.store.list_tokens(owner).await?;
    if !owned.iter().any(|t| t.token.id == id) || !state.store.delete_token(&id).await? {
        return Err(ApiError::not_found(format!("token {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

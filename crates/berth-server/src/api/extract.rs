//! Extractors that answer bad input with Berth's JSON errors instead of axum's plain text.

use axum::{
    extract::{FromRequest, FromRequestParts},
    http::{header::AUTHORIZATION, request::Parts},
};

use super::{AppState, error::ApiError};
use crate::auth::Principal;

/// `axum::Json` with JSON errors.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` with JSON errors.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The caller of a WebSocket route: from the `Authorization` header, or else from a `ticket`
/// query parameter issued for this session. Returns the query without the ticket, to pass on.
pub async fn websocket_caller(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    session_id: &str,
    query: Option<&str>,
) -> Result<(Principal, String), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let (tickets, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "ticket");
    let rest = serde_urlencoded::to_string(&rest).unwrap_or_default();
    if let Some(token) = bearer(headers) {
        let caller = state
            .auth
            .authenticate(token)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        return Ok((caller, rest));
    }
    let (_, ticket) = tickets
        .into_iter()
        .next()
        .ok_or_else(ApiError::unauthorized)?;
    let caller = state
        .tickets
        .redeem(&ticket, session_id)
        .ok_or_else(ApiError::unauthorized)?;
    Ok((caller, rest))
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Taking a `Principal` is what makes a handler require a valid bearer token.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        state
            .auth
            .authenticate(token)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }
}

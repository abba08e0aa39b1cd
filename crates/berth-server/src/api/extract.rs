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

/// Taking a `Principal` is what makes a handler require a valid bearer token.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        state
            .auth
            .authenticate(token)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }
}

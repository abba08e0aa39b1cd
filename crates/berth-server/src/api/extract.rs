//! Extractors that answer bad input with Berth's JSON errors instead of axum's plain text.

use axum::{
    extract::{FromRequest, FromRequestParts},
    http::{
        HeaderMap, Method,
        header::{AUTHORIZATION, COOKIE, HOST, ORIGIN},
        request::Parts,
    },
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

/// The cookie a browser login sets: the user's API token, `HttpOnly` and `SameSite=Strict`, so
/// page scripts cannot read it and other sites cannot send it.
pub const LOGIN_COOKIE: &str = "berth_token";

/// The header a cookie-authenticated request that changes something must carry: the login's
/// CSRF token, which only the control plane's own pages learn (from login and `/auth/me`).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether a cookie-authenticated request must carry the login's CSRF token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csrf {
    /// An API call that changes something.
    Required,
    /// A read, or the preview proxy: a session's own pages post forms to it, and the
    /// `SameSite=Strict` cookie already keeps other sites from sending it.
    NotRequired,
}

impl Csrf {
    pub fn for_method(method: &Method) -> Self {
        match *method {
            Method::GET | Method::HEAD | Method::OPTIONS => Self::NotRequired,
            _ => Self::Required,
        }
    }
}

/// The caller of an HTTP request: the `Authorization` header, or else the login cookie.
pub async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    csrf: Csrf,
) -> Result<Principal, ApiError> {
    if let Some(token) = bearer(headers) {
        return authenticate(state, token).await;
    }
    let token = cookie(headers, LOGIN_COOKIE).ok_or_else(ApiError::unauthorized)?;
    if csrf == Csrf::Required {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !state.signer.csrf_matches(token, presented) {
            return Err(ApiError::forbidden(
                "missing or wrong X-CSRF-Token header; reload the page to get a fresh one",
            ));
        }
    }
    authenticate(state, token).await
}

async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    state
        .auth
        .authenticate(token)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// The value of one cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Whether a browser's `Origin` is this server's own (no `Origin`: not a browser, or same-site
/// navigation). Cookies ride along on cross-site WebSocket handshakes, so those are refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin_host.is_some() && origin_host == host
}

/// The caller of a WebSocket route: from the `Authorization` header, the login cookie (same
/// origin only), or else a `ticket` query parameter issued for this session. Returns the query
/// without the ticket, to pass on.
pub async fn websocket_caller(
    state: &AppState,
    headers: &HeaderMap,
    session_id: &str,
    query: Option<&str>,
) -> Result<(Principal, String), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let (tickets, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "ticket");
    let rest = serde_urlencoded::to_string(&rest).unwrap_or_default();
    if let Some(token) = bearer(headers) {
        return Ok((authenticate(state, token).await?, rest));
    }
    if let Some(token) = cookie(headers, LOGIN_COOKIE) {
        if !same_origin(headers) {
            return Err(ApiError::forbidden(
                "WebSocket from another origin; open it from Berth's own pages",
            ));
        }
        return Ok((authenticate(state, token).await?, rest));
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

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Taking a `Principal` is what makes a handler require a caller: a bearer token, or a browser
/// login (with its CSRF token on anything but reads).
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        caller(state, &parts.headers, Csrf::for_method(&parts.method)).await
    }
}

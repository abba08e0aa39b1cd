//! The browser's side: token login into an `HttpOnly` cookie with a CSRF token, and the SPA
//! (built from `web/` into `web/dist`, embedded in the binary at compile time).

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use berth_proto::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, LOGIN_COOKIE, bearer, cookie, secure},
};
use crate::auth::Principal;

/// A login lasts this long in the browser; the token itself does not expire.
const LOGIN_SECONDS: u64 = 7 * 24 * 3600;

#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    /// An API token (`berth user create` prints one) or the admin token.
    pub token: String,
}

/// Who is logged in, and the token to send as `X-CSRF-Token` on requests that change things.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub admin: bool,
    pub role: berth_proto::user::Role,
    pub csrf_token: String,
}

fn me(s: &AppState, caller: Principal, token: &str) -> axum::Json<Me> {
    axum::Json(Me {
        name: caller.name,
        admin: caller.admin,
        role: caller.role,
        csrf_token: s.signer.csrf_token(token),
    })
}

/// Logs a browser in: checks the token and sets it as an `HttpOnly`, `SameSite=Strict` cookie.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = Login,
    responses((status = 200, body = Me), (status = 401, body = ErrorBody))
)]
pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(login): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let token = login.token.trim();
    let caller = s
        .auth
        .authenticate(token)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={LOGIN_SECONDS}{}",
        secure(&s, &headers)
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::invalid_request("the token has characters a cookie cannot hold"))?;
    Ok(([(header::SET_COOKIE, cookie)], me(&s, caller, token)).into_response())
}

/// The logged-in caller (cookie or bearer token) and its CSRF token.
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn whoami(
    State(s): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
) -> Result<axum::Json<Me>, ApiError> {
    let token = bearer(&headers)
        .or_else(|| cookie(&headers, LOGIN_COOKIE))
        .unwrap_or_default();
    Ok(me(&s, caller, token))
}

/// Ends the browser login. A provider's sign-in (`/auth/github/...`) is revoked as well; a
/// token login's token stays valid (it is the user's, not the browser's).
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "The cookie is cleared"))
)]
pub async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, LOGIN_COOKIE) {
        match s.store.token_by_hash(&crate::auth::hash_token(token)).await {
            Ok(Some(record)) if record.token.scopes.is_empty() => {
                if let Err(err) = s.store.delete_token(&record.token.id).await {
                    tracing::warn!(%err, "a signed-out sign-in was not revoked");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "a signed-out sign-in was not revoked"),
        }
    }
    let clear = format!("{LOGIN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}

/// The SPA's files: `web/dist`, embedded at compile time. A binary built before `npm run build`
/// has none and serves a note instead (`allow_missing`).
#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Berth</title></head>\
<body style=\"font:16px system-ui,sans-serif;margin:3rem auto;max-width:40rem\"><h1>Berth</h1>\
<p>This build has no web UI: it was compiled before the UI was built. Run \
<code>scripts/run</code> (or <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>, then \
<code>cargo build</code>) to include it.</p><p>The API is here: <a href=\"/docs\">/docs</a>.</p></body></html>";

/// `GET /`: the SPA's page (it routes by `#` fragment, so this is its only page).
pub async fn index() -> Response {
    match Assets::get("index.html") {
        Some(file) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            file.data,
        )
            .into_response(),
        None => Html(NOT_BUILT).into_response(),
    }
}

/// `GET /assets/{file}`: the SPA's scripts and styles; their names carry a content hash, so
/// they may be cached for good.
pub async fn asset(Path(file): Path<String>) -> Response {
    match Assets::get(&format!("assets/{file}")) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.metadata.mimetype().to_owned()),
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_owned(),
                ),
            ],
            asset.data,
        )
            .into_response(),
        None => ApiError::not_found(format!("no asset {file}")).into_response(),
    }
}

//! `/api/v1/auth/{github,oidc/{name}}/{login,callback}` and `/api/v1/auth/providers`: signing
//! a browser in through GitHub or an OpenID Connect provider (`login/`). The browser ends
//! signed in exactly as a token login leaves it: the `HttpOnly` cookie, then `/auth/me`.

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use berth_proto::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiQuery, LOGIN_COOKIE, cookie, secure},
};
use crate::login::{self, LoginError, STATE_COOKIE};

/// A way to sign in that the page offers.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginProvider {
    /// `github`, or `oidc:<name>`.
    pub id: String,
    /// For the button: `GitHub`, an OIDC provider's `display_name`.
    pub name: String,
    /// Where the browser goes to sign in.
    pub login_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginProviders {
    pub providers: Vec<LoginProvider>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// A path of this site to land on once signed in (default `/`).
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by a provider that did not sign the user in (`access_denied`...).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The sign-in providers `[auth]` configures (none: token login only).
#[utoipa::path(
    get, path = "/api/v1/auth/providers", tag = "auth", operation_id = "login_providers",
    responses((status = 200, body = LoginProviders))
)]
pub async fn providers(State(s): State<AppState>) -> Json<LoginProviders> {
    let providers = s
        .login
        .offered()
        .into_iter()
        .map(|(id, name)| LoginProvider {
            login_url: match id.strip_prefix("oidc:") {
                Some(oidc) => format!("/api/v1/auth/oidc/{oidc}/login"),
                None => format!("/api/v1/auth/{id}/login"),
            },
            id,
            name,
        })
        .collect();
    Json(LoginProviders { providers })
}

/// Begins a GitHub sign-in: redirects the browser to GitHub.
#[utoipa::path(
    get, path = "/api/v1/auth/github/login", tag = "auth", operation_id = "github_login",
    params(LoginQuery),
    responses(
        (status = 302, description = "To the provider"),
        (status = 404, description = "GitHub sign-in is not configured", body = ErrorBody),
        (status = 429, description = "Too many sign-ins in progress", body = ErrorBody),
        (status = 502, description = "The provider could not be reached", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn github_login(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    begin(
        &s,
        &headers,
        "github",
        "/api/v1/auth/github/callback",
        query,
    )
    .await
}

/// Where GitHub sends the browser back: signs it in, then redirects to the page it began on
/// (or to `/?login_error=<code>` when the sign-in failed; the server's log says why).
#[utoipa::path(
    get, path = "/api/v1/auth/github/callback", tag = "auth", operation_id = "github_callback",
    params(CallbackQuery),
    responses((status = 302, description = "Signed in, or to the page with why not"))
)]
pub async fn github_callback(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Response {
    finish(&s, &headers, "github", query).await
}

/// Begins a sign-in with the OpenID Connect provider `name` (`[[auth.oidc]]`).
#[utoipa::path(
    get, path = "/api/v1/auth/oidc/{name}/login", tag = "auth", operation_id = "oidc_login",
    params(("name" = String, Path), LoginQuery),
    responses(
        (status = 302, description = "To the provider"),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 429, description = "Too many sign-ins in progress", body = ErrorBody),
        (status = 502, description = "The provider's discovery document could not be read", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn oidc_login(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    let callback = format!("/api/v1/auth/oidc/{name}/callback");
    begin(&s, &headers, &format!("oidc:{name}"), &callback, query).await
}

/// Where the OpenID Connect provider `name` sends the browser back.
#[utoipa::path(
    get, path = "/api/v1/auth/oidc/{name}/callback", tag = "auth", operation_id = "oidc_callback",
    params(("name" = String, Path), CallbackQuery),
    responses((status = 302, description = "Signed in, or to the page with why not"))
)]
pub async fn oidc_callback(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Response {
    finish(&s, &headers, &format!("oidc:{name}"), query).await
}

async fn begin(
    s: &AppState,
    headers: &HeaderMap,
    provider_id: &str,
    callback_path: &str,
    query: LoginQuery,
) -> Result<Response, ApiError> {
    let provider = s.login.get(provider_id).map_err(login_api_error)?;
    let base = match s.login.public_url() {
        Some(url) => url.to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .ok_or_else(|| {
                    ApiError::invalid_request("the request has no Host; set auth.public_url")
                })?;
            let scheme = if secure(s, headers).is_empty() {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{host}")
        }
    };
    let redirect_uri = format!("{base}{callback_path}");
    let next = login::local_path(query.next.as_deref());
    let (state, pending) = login::begin(s.store.as_ref(), provider_id, redirect_uri, next)
        .await
        .map_err(login_api_error)?;
    let to = provider
        .authorize_url(&pending, &state)
        .await
        .map_err(login_api_error)?;
    // `Lax`: the cookie must come back on the provider's top-level redirect to the callback.
    let binding = format!(
        "{STATE_COOKIE}={state}; Path=/api/v1/auth; HttpOnly; SameSite=Lax; Max-Age=600{}",
        secure(s, headers)
    );
    Ok(redirect(&to, &[binding]))
}

async fn finish(
    s: &AppState,
    headers: &HeaderMap,
    provider_id: &str,
    query: CallbackQuery,
) -> Response {
    let clear_binding = format!("{STATE_COOKIE}=; Path=/api/v1/auth; HttpOnly; Max-Age=0");
    match signed_in(s, headers, provider_id, query).await {
        Ok((token, lifetime_seconds, next)) => {
            let login = format!(
                "{LOGIN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={lifetime_seconds}{}",
                secure(s, headers)
            );
            redirect(&next, &[clear_binding, login])
        }
        Err(err) => {
            tracing::info!(provider = provider_id, %err, "a sign-in failed");
            // Only the code: the page says it in its own words, so no link can put words on it.
            redirect(&format!("/?login_error={}", err.code()), &[clear_binding])
        }
    }
}

/// The sign-in's token, its lifetime in seconds and where to go.
async fn signed_in(
    s: &AppState,
    headers: &HeaderMap,
    provider_id: &str,
    query: CallbackQuery,
) -> Result<(String, i64, String), LoginError> {
    let provider = s.login.get(provider_id)?;
    let state = query.state.as_deref().ok_or(LoginError::BadState)?;
    // The browser that comes back must be the one that began.
    if cookie(headers, STATE_COOKIE) != Some(state) {
        return Err(LoginError::BadState);
    }
    let pending = login::take(s.store.as_ref(), state).await?;
    if pending.provider != provider_id {
        return Err(LoginError::BadState);
    }
    if let Some(error) = query.error {
        return Err(LoginError::Refused(
            query.error_description.unwrap_or(error),
        ));
    }
    let code = query.code.as_deref().ok_or(LoginError::BadState)?;
    let identity = provider.identity(&pending, code).await?;
    let user = login::user_for(s.store.as_ref(), &identity).await?;
    let label = s
        .login
        .offered()
        .into_iter()
        .find(|(id, _)| id == provider_id)
        .map_or_else(|| provider_id.to_owned(), |(_, label)| label);
    let lifetime = s.login.login_lifetime();
    let (token, _) = login::sign_in_token(s.store.as_ref(), &user, &label, lifetime).await?;
    tracing::info!(user = user.name, provider = provider_id, "signed in");
    Ok((token, lifetime.num_seconds(), pending.next))
}

fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for set in cookies {
        if let Ok(value) = HeaderValue::from_str(set) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

fn login_api_error(err: LoginError) -> ApiError {
    match err {
        LoginError::UnknownProvider(_) => ApiError::not_found(err.to_string()),
        LoginError::Store(err) => err.into(),
        LoginError::Busy => ApiError::limited(err.to_string(), std::time::Duration::from_secs(60)),
        LoginError::Provider(_) => {
            ApiError::coded(berth_proto::ErrorCode::UpstreamFailed, err.to_string())
        }
        other => ApiError::invalid_request(other.to_string()),
    }
}

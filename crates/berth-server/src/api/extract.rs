//! Extractors that answer bad input with Berth's JSON errors instead of axum's plain text.

use axum::{
    extract::{
        FromRequest, FromRequestParts,
        rejection::{JsonRejection, MissingJsonContentType},
    },
    http::{
        HeaderMap, Method,
        header::{AUTHORIZATION, COOKIE, HOST, ORIGIN},
        request::Parts,
    },
};

use berth_proto::token::Scope;

use super::{AppState, error::ApiError};
use crate::auth::Principal;

/// `axum::Json` with JSON errors, that also takes an integer written with a zero fraction.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(request.headers()) {
            return Err(JsonRejection::from(MissingJsonContentType::default()).into());
        }
        let bytes = axum::body::Bytes::from_request(request, state).await?;
        // Every body but a free JSON value is an object; serde would also take a struct's
        // fields as an array, in order, which no client means and the document does not allow.
        let any_value = std::any::TypeId::of::<T>() == std::any::TypeId::of::<serde_json::Value>();
        if !any_value && bytes.trim_ascii_start().starts_with(b"[") {
            return Err(ApiError::invalid_request("the body must be a JSON object"));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => berth_proto::json::with_whole_numbers(&bytes)
                .map(Self)
                .ok_or_else(|| rejection.into()),
        }
    }
}

/// Whether the request says its body is JSON (`application/json`, or a `+json` type), as
/// `axum::Json` asks.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// A JSON body that may be left out: an empty body, or `null`, is `T::default()` (seed 004's
/// clients `POST /judge/{slug}` with none; the document says such a body is optional, which
/// OpenAPI spells as nullable).
#[derive(Debug)]
pub struct ApiJsonOrDefault<T>(pub T);

impl<T, S> FromRequest<S> for ApiJsonOrDefault<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes).map(Self).or_else(|err| {
            if let Some(value) = berth_proto::json::with_whole_numbers(&bytes) {
                return Ok(Self(value));
            }
            let code = if err.is_data() {
                berth_proto::ErrorCode::InvalidRequest
            } else {
                berth_proto::ErrorCode::InvalidJson
            };
            Err(ApiError::coded(code, err.to_string()))
        })
    }
}

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

/// How a cookie-authenticated request proves it comes from Berth's own pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csrf {
    /// An API call that changes something: the login's CSRF token.
    Required,
    /// A read: nothing beyond the `SameSite=Strict` cookie.
    NotRequired,
    /// The owner's preview route: it is navigated to (the address bar, a link on Berth's
    /// pages), and navigations carry no header of ours, so no token; instead the browser's own
    /// account of where the request comes from (`Sec-Fetch-Site`, `Origin`) must be Berth or
    /// the address bar. That refuses other sites and sandboxed previews, whose origin is
    /// opaque, even in a browser that would send them the cookie.
    SameOrigin,
}

impl Csrf {
    pub fn for_method(method: &Method) -> Self {
        match *method {
            Method::GET | Method::HEAD | Method::OPTIONS => Self::NotRequired,
            _ => Self::Required,
        }
    }
}

/// The caller of an HTTP request with full access: the `Authorization` header, or else the
/// login cookie.
pub async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    csrf: Csrf,
) -> Result<Principal, ApiError> {
    caller_needing(state, headers, csrf, None).await
}

/// [`caller`], for a request that needs the scope `need` (`None`: full access).
pub async fn caller_needing(
    state: &AppState,
    headers: &HeaderMap,
    csrf: Csrf,
    need: Option<Scope>,
) -> Result<Principal, ApiError> {
    if let Some(token) = bearer(headers) {
        return authenticate_needing(state, token, need).await;
    }
    let token = cookie(headers, LOGIN_COOKIE).ok_or_else(ApiError::unauthorized)?;
    match csrf {
        Csrf::Required => {
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
        Csrf::SameOrigin if from_another_site(headers) => {
            return Err(ApiError::forbidden(
                "the login cookie is not taken from another site or a preview's page; open \
                 it from Berth, or use a bearer token or a preview link",
            ));
        }
        Csrf::SameOrigin | Csrf::NotRequired => {}
    }
    authenticate_needing(state, token, need).await
}

/// The principal of a token with full access.
pub(super) async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    authenticate_needing(state, token, None).await
}

async fn authenticate_needing(
    state: &AppState,
    token: &str,
    need: Option<Scope>,
) -> Result<Principal, ApiError> {
    if token.starts_with(berth_proto::callback::TOKEN_PREFIX) {
        return Err(ApiError::forbidden(
            "a session token serves only the /api/v1/self routes; use a user's token here",
        ));
    }
    let principal = state
        .auth
        .authenticate_scoped(token)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    match principal.lacks(need) {
        Some(why) => Err(ApiError::forbidden(why)),
        None => Ok(principal),
    }
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

/// Whether a browser says the request comes from a page that is not Berth's: another site,
/// another origin of the same site (`same-site`: a subdomain, another port), or a page with an
/// opaque origin (a sandboxed preview sends `Origin: null`). `Sec-Fetch-Site` is `none` for the address bar and bookmarks; requests with
/// neither header (curl, older browsers' plain navigations) are not a page acting for another
/// site.
pub(super) fn from_another_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    let foreign_fetch = fetch_site.is_some_and(|site| site != b"same-origin" && site != b"none");
    let foreign_origin = headers.get(ORIGIN).is_some_and(|origin| {
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        origin_host.is_none() || origin_host != host
    });
    foreign_fetch || foreign_origin
}

/// `; Secure` for a cookie Berth sets when the browser reaches it over HTTPS: the deployment
/// says so (`preview.https`), or the TLS proxy in front does (`X-Forwarded-Proto: https`).
/// Either is enough, so a proxy that forgets the header does not leave the cookies travelling in
/// the clear.
pub fn secure(state: &AppState, headers: &HeaderMap) -> &'static str {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    if state.preview.https || forwarded_https {
        "; Secure"
    } else {
        ""
    }
}

/// The caller of a WebSocket route: from the `Authorization` header, the login cookie (same
/// origin only), or else a `ticket` query parameter issued for this session. Returns the query
/// without the ticket, to pass on.
pub async fn websocket_caller(
    state: &AppState,
    headers: &HeaderMap,
    session_id: &str,
    query: Option<&str>,
    need: Scope,
) -> Result<(Principal, String), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let (tickets, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "ticket");
    let rest = serde_urlencoded::to_string(&rest).unwrap_or_default();
    if let Some(token) = bearer(headers) {
        return Ok((authenticate_needing(state, token, Some(need)).await?, rest));
    }
    if let Some(token) = cookie(headers, LOGIN_COOKIE) {
        // `SameSite` keeps only other sites' handshakes from carrying the cookie; another
        // origin of the same site (a port, a subdomain) would still send it.
        if from_another_site(headers) {
            return Err(ApiError::forbidden(
                "WebSocket from another origin; open it from Berth's own pages",
            ));
        }
        return Ok((authenticate_needing(state, token, Some(need)).await?, rest));
    }
    let (_, ticket) = tickets
        .into_iter()
        .next()
        .ok_or_else(ApiError::unauthorized)?;
    let caller = state
        .tickets
        .redeem(&ticket, session_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    // Issued to a token with its own scopes: they hold here too.
    if let Some(why) = caller.lacks(Some(need)) {
        return Err(ApiError::forbidden(why));
    }
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
        let need = super::scopes::needed(&parts.method, parts.uri.path());
        caller_needing(state, &parts.headers, Csrf::for_method(&parts.method), need).await
    }
}

/// A body of raw bytes, as the OpenAPI document describes it: a `string` of format `binary`.
/// (`Vec<u8>` would be described as an array of integers, and clients generated from the
/// document would send JSON.)
pub struct RawBytes;

impl utoipa::PartialSchema for RawBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for RawBytes {}

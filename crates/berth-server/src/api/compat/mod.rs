//! Seed 003's container manager (`[compat] enabled`), for frontends written against it: its
//! direct API (`containers.rs`), its WebContainer-compatible REST (`webcontainer.rs`) and its
//! Socket.IO gateway on the namespace `/container` (`gateway.rs`), on the API's own listener. A
//! container is a Berth session of `compat.template`; `workspace.rs` is what both REST and the
//! gateway do inside one. Shapes follow the seed's NestJS project; where the seed was wrong
//! (trimmed files, shell-pasted paths, made-up exit codes) Berth is right instead, and
//! docs/compat.md lists each difference.

mod containers;
mod gateway;
mod webcontainer;
mod workspace;

use axum::{
    Router,
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, Method, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use berth_proto::{Session, SessionState};
use serde::Serialize;

use super::{
    AppState,
    error::{ApiError, CompatError},
    extract::{Csrf, bearer, caller, cookie, from_another_site, secure},
};
use crate::auth::{Principal, hash_token};

/// The cookie an anonymous client (`compat.allow_anonymous`) is known by: a random secret,
/// `HttpOnly`. Its user's name is derived from its hash, so the name never reveals it.
const ANONYMOUS_COOKIE: &str = "berth_compat_anonymous";

/// The largest JSON body a route takes: a `boot` or `mount` carries a whole file tree.
const MAX_BODY_BYTES: usize = 64 << 20;

/// The label every container made through this layer carries: `GET /containers` lists those.
const LABEL: &str = "berth.compat";

/// The routes and the gateway, when `[compat] enabled`.
pub fn router(state: AppState) -> Router<AppState> {
    // A `writeFile` over the gateway carries its whole file, as REST does; and a terminal's
    // output may come in bursts faster than a long-polling client collects it.
    let (gateway, io) = socketioxide::SocketIo::builder()
        .max_payload(MAX_BODY_BYTES as u64)
        .max_buffer_size(4096)
        .with_state(state)
        .build_svc();
    gateway::serve(&io);
    Router::new()
        .route_service("/socket.io/", gateway)
        .route(
            "/containers",
            get(containers::list).post(containers::create),
        )
        .route(
            "/containers/{id}",
            get(containers::get).delete(containers::delete),
        )
        .route("/containers/{id}/url", get(containers::url))
        .route("/webcontainer/boot", post(webcontainer::boot))
        .route("/webcontainer/{id}/status", get(webcontainer::status))
        .route("/webcontainer/{id}/mount", post(webcontainer::mount))
        .route("/webcontainer/{id}/spawn", post(webcontainer::spawn))
        .route(
            "/webcontainer/{id}/fs/writeFile",
            post(webcontainer::write_file),
        )
        .route(
            "/webcontainer/{id}/fs/readFile/{*path}",
            get(webcontainer::read_file),
        )
        .route("/webcontainer/{id}/fs/readdir", get(webcontainer::readdir))
        .route(
            "/webcontainer/{id}/fs/readdir/{*path}",
            get(webcontainer::readdir),
        )
        .route("/webcontainer/{id}/fs/mkdir", post(webcontainer::mkdir))
        .route(
            "/webcontainer/{id}/fs/rm",
            axum::routing::delete(webcontainer::rm),
        )
        .route("/webcontainer/{id}/fs/rename", post(webcontainer::rename))
        // A file tree or a file travels whole in one JSON body.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Who calls: a bearer token, the login cookie (with its CSRF token on changes), or, where
/// `compat.allow_anonymous` is on, the anonymous cookie, made on the first call and returned
/// to be set.
async fn compat_caller(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<(Principal, Option<HeaderValue>), ApiError> {
    let anonymous = state.compat.allow_anonymous
        && bearer(headers).is_none()
        && cookie(headers, super::extract::LOGIN_COOKIE).is_none();
    if !anonymous {
        return Ok((
            caller(state, headers, Csrf::for_method(method)).await?,
            None,
        ));
    }
    // The cookie is `SameSite=Lax`, so another origin of the same site (a dev server on
    // another port, a preview) would send it: only Berth's own pages and non-browser clients
    // may act with it.
    if from_another_site(headers) {
        return Err(ApiError::forbidden(
            "the anonymous cookie is not taken from another origin; send a token instead",
        ));
    }
    if let Some(secret) = cookie(headers, ANONYMOUS_COOKIE) {
        return Ok((anonymous_user(secret), None));
    }
    let secret = crate::ids::secret();
    let set = format!(
        "{ANONYMOUS_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax{}",
        secure(state, headers)
    );
    let set = HeaderValue::from_str(&set).map_err(ApiError::internal)?;
    Ok((anonymous_user(&secret), Some(set)))
}

/// The caller of a compat REST route, worked out before its body is read: a request without
/// one is refused before it can make the control plane hold a large body.
pub struct Caller {
    principal: Principal,
    /// The anonymous cookie to set, when this call made one.
    set_cookie: Option<HeaderValue>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = CompatError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, CompatError> {
        let (principal, set_cookie) = compat_caller(state, &parts.headers, &parts.method).await?;
        Ok(Self {
            principal,
            set_cookie,
        })
    }
}

fn anonymous_user(secret: &str) -> Principal {
    Principal {
        name: format!("anonymous-{}", &hash_token(secret)[..16]),
        admin: false,
        role: berth_proto::user::Role::User,
        scopes: None,
    }
}

/// A JSON answer, setting the anonymous cookie when the call made one.
fn answer(
    status: axum::http::StatusCode,
    body: impl Serialize,
    set_cookie: Option<HeaderValue>,
) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(value) = set_cookie {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The seed's `ContainerInfo`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerInfo {
    id: String,
    status: &'static str,
    preview_port: u16,
    /// A signed link to `previewPort`, valid as long as the session is.
    #[serde(skip_serializing_if = "Option::is_none")]
    preview_url: Option<String>,
    /// Where the gateway is: `io(websocketUrl)` joins its namespace.
    websocket_url: String,
    created_at: chrono::DateTime<chrono::Utc>,
    /// Berth's own word for the state (`hibernated`, `restoring`, ...), finer than `status`.
    state: SessionState,
}

impl ContainerInfo {
    fn of(state: &AppState, headers: &HeaderMap, session: &Session) -> Self {
        let origin = origin(state, headers);
        let live = session.state.is_live();
        // Valid as long as the session (within the longest a link may live), and the same
        // link every time it is asked for.
        let preview_url = live.then(|| {
            let longest = chrono::Utc::now().timestamp() + super::previews::MAX_LINK_SECONDS as i64;
            let expires = session.expires_at.timestamp().min(longest);
            let port = state.compat.preview_port;
            let link = super::previews::signed_link(state, &session.id, port, expires);
            link.url.unwrap_or(format!("{origin}{}", link.path))
        });
        Self {
            id: session.id.clone(),
            status: status_word(session.state),
            preview_port: state.compat.preview_port,
            preview_url,
            websocket_url: format!("{origin}/container"),
            created_at: session.created_at,
            state: session.state,
        }
    }
}

/// The seed's four container states, from Berth's.
fn status_word(state: SessionState) -> &'static str {
    match state {
        SessionState::Pooled | SessionState::Creating | SessionState::Restoring => "creating",
        SessionState::Running => "running",
        SessionState::Failed => "error",
        _ => "stopped",
    }
}

/// `http(s)://host` as the client reached this server.
fn origin(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if secure(state, headers).is_empty() {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

/// Any error as the seed's frontend reads it.
type CompatResult = Result<Response, CompatError>;

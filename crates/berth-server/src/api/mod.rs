//! The HTTP surface: `/api/v1` resources, service routes, OpenAPI and Swagger UI.
//!
//! Handlers translate HTTP into calls on the session manager and back; they hold no lifecycle
//! logic. Errors become responses only in `error.rs`.

mod audit;
pub(crate) mod callback;
mod compat;
mod docker;
pub mod e2b;
pub(crate) mod error;
mod extract;
mod files;
mod homes;
mod internal;
pub mod labs;
mod login;
mod noted;
mod pool;
mod previews;
mod process;
pub mod rate_limit;
mod scopes;
mod service;
pub(crate) mod session_agent;
mod sessions;
mod snapshots;
mod templates;
mod tokens;
mod users;
mod web;
mod webhooks;

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Router, middleware,
    response::IntoResponse,
    routing::{any, get, post},
};
use berth_proto::ErrorCode;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

pub use audit::AuditLog;
pub use error::ApiError;

use crate::{
    agent_client::AgentClient,
    auth::{Authenticator, Tickets},
    config::{PreviewConfig, TemplateConfig},
    preview::PreviewProxy,
    runtime::Runtime,
    sessions::SessionManager,
    signing::Signer,
    store::Store,
};

/// What every handler can reach, behind one `Arc`: each request clones the state into its
/// handler, which is then one reference count, not every part's.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

#[derive(Debug)]
pub struct Services {
    pub sessions: SessionManager,
    pub auth: Authenticator,
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn Runtime>,
    pub templates: Arc<BTreeMap<String, TemplateConfig>>,
    pub tickets: Tickets,
    pub agent: AgentClient,
    /// Largest file one upload may write inside a session.
    pub max_file_bytes: u64,
    pub signer: Signer,
    pub proxy: PreviewProxy,
    pub preview: PreviewConfig,
    /// Where sessions' Docker API sockets are (`docker_api::socket_path`), when a template
    /// has Docker; the runner endpoints build through them.
    pub docker_api: Option<std::path::PathBuf>,
    /// `docker.timeout_seconds`.
    pub docker_timeout: std::time::Duration,
    /// `[e2b] templates`: E2B template names to Berth's.
    pub e2b_templates: Arc<BTreeMap<String, String>>,
    /// What other instances present on their lifecycle calls (`cluster::cluster_key`).
    pub cluster_key: Arc<str>,
    /// `[compat]`: seed 003's container manager.
    pub compat: crate::config::CompatConfig,
    /// `[quota] requests_per_second`; `None` when unlimited.
    pub rate_limit: Option<rate_limit::RateLimiter>,
    /// `[labs]` and `[ai]`: the catalogue, the judge's and the assistant's state.
    pub labs: labs::LabsService,
    /// Where custom events go for webhooks.
    pub webhooks: crate::webhooks::Emitter,
    pub webhook_config: WebhookSettings,
    /// Where state-changing calls are recorded.
    pub audit: AuditLog,
    /// `/api/v1/self` calls per session.
    pub callback_rate: rate_limit::RateLimiter,
    /// `[auth]`: GitHub and OpenID Connect sign-in.
    pub login: crate::login::Providers,
    /// Where the API notes what callers do to sessions.
    pub timeline: crate::sessions::timeline::TimelineWriter,
}

/// `[[webhooks]]` and `[webhook_delivery]`, for the webhook routes.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub operators: Vec<crate::config::WebhookConfig>,
    pub delivery: crate::config::WebhookDeliveryConfig,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Berth", description = "Isolated per-user container sessions on Docker."),
    modifiers(&BearerAuth),
    paths(previews::proxy_owner, previews::proxy_link),
    tags(
        (name = "sessions", description = "Session lifecycle"),
        (name = "files", description = "Files inside a session"),
        (name = "processes", description = "Commands and terminals inside a session"),
        (name = "previews", description = "Servers running in a session, seen through the proxy"),
        (name = "docker", description = "A session's Docker, for programs (seed 004's runner)"),
        (name = "auth", description = "Browser login (an HttpOnly cookie and a CSRF token)"),
        (name = "templates", description = "What sessions can be made from"),
        (name = "labs", description = "Hands-on lessons: the catalogue, attempts, the judge and hints"),
        (name = "users", description = "Users and their tokens (admin)"),
        (name = "webhooks", description = "Endpoints for sessions' events, signed the Standard Webhooks way"),
        (name = "callback", description = "For code inside a session, with its session token (`BERTH_SESSION_TOKEN`)"),
        (name = "service", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session's callback token (`bst_...`): `BERTH_SESSION_TOKEN` in the \
                         session, or the newer one in `BERTH_TOKEN_FILE`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The errors a route can answer by what it takes, documented on every route here rather than
/// in each `#[utoipa::path]`, so a new route cannot forget one (the fuzzer in
/// `scripts/test-schemathesis` checks every answer against the document):
///
/// - a request body, query parameters, a path parameter that is not any text, or a WebSocket
///   upgrade: `400` (malformed, or not an upgrade); a body: `413` (over the body limit);
/// - a path parameter: `404` (nothing of that name);
/// - under `/api/v1/sessions/{id}/`: `409` (the session is not running);
/// - a token: `401` (none, or an unknown one), `429` (over `quota.requests_per_second`), `503`
///   (the store that holds the tokens does not answer), and for users' tokens `403` (a scope
///   the token lacks, a browser login without its CSRF token, a session's token).
///
/// A route's own description of any of these is kept.
struct ErrorResponses;

impl ErrorResponses {
    fn statuses(
        path: &str,
        operation: &utoipa::openapi::path::Operation,
    ) -> Vec<(&'static str, &'static str)> {
        use utoipa::openapi::{
            RefOr,
            path::ParameterIn,
            schema::{Schema, SchemaType, Type},
        };
        let parameters: Vec<&utoipa::openapi::path::Parameter> = operation
            .parameters
            .iter()
            .flatten()
            .filter_map(|p| match p {
                RefOr::T(p) => Some(p),
                RefOr::Ref(_) => None,
            })
            .collect();
        let typed_path_parameter = parameters.iter().any(|p| {
            p.parameter_in == ParameterIn::Path
                && !matches!(&p.schema, Some(RefOr::T(Schema::Object(o)))
                    if o.schema_type == SchemaType::Type(Type::String) && o.pattern.is_none())
        });
        let query = parameters
            .iter()
            .any(|p| p.parameter_in == ParameterIn::Query);
        let body = operation.request_body.is_some();
        let websocket = operation.responses.responses.contains_key("101");
        // A requirement's scheme names are only reachable through its serialised form.
        let schemes: Vec<String> = operation
            .security
            .iter()
            .flatten()
            .filter_map(|requirement| serde_json::to_value(requirement).ok())
            .filter_map(|value| {
                value
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>())
            })
            .flatten()
            .collect();
        let mut statuses = Vec::new();
        if body || query || typed_path_parameter || websocket {
            statuses.push((
                "400",
                "A malformed request (`invalid_request`, `invalid_json`)",
            ));
        }
        if body {
            statuses.push(("413", "A body over the limit (`payload_too_large`)"));
        }
        if parameters
            .iter()
            .any(|p| p.parameter_in == ParameterIn::Path)
        {
            statuses.push(("404", "Nothing by that name (`not_found`)"));
        }
        if path.starts_with("/api/v1/sessions/{id}/") {
            statuses.push(("409", "The session is not running (`conflict`)"));
        }
        if !schemes.is_empty() {
            statuses.push(("401", "Missing or unknown token"));
            statuses.push((
                "429",
                "Over the token's `quota.requests_per_second` (`rate_limited`, see `Retry-After`)",
            ));
            statuses.push(("503", "The store does not answer (`store_unavailable`)"));
        }
        if schemes.iter().any(|scheme| scheme == "bearer") {
            statuses.push((
                "403",
                "The token lacks the route's scope, or the login cookie its CSRF token (`forbidden`)",
            ));
        }
        statuses
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in Self::statuses(path, operation) {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            let body = ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build();
                            ResponseBuilder::new()
                                .description(description)
                                .content("application/json", body)
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The routes and the OpenAPI document they generate, kept together so they cannot disagree.
pub fn router_and_openapi() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let routes = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sessions::create, sessions::list))
        .routes(routes!(sessions::get, sessions::delete))
        .routes(routes!(sessions::extend))
        .routes(routes!(sessions::timeline))
        .routes(routes!(sessions::hibernate))
        .routes(routes!(sessions::resume))
        .routes(routes!(sessions::keepalive))
        .routes(routes!(sessions::activity))
        .routes(routes!(snapshots::create, snapshots::list))
        .routes(routes!(snapshots::delete))
        .routes(routes!(homes::list_homes))
        .routes(routes!(homes::delete_home))
        .routes(routes!(files::list, files::remove))
        .routes(routes!(files::stat))
        .routes(routes!(files::read, files::write))
        .routes(routes!(files::mkdir))
        .routes(routes!(files::rename))
        .routes(routes!(files::download_archive, files::upload_archive))
        .routes(routes!(files::watch))
        .routes(routes!(process::exec))
        .routes(routes!(process::exec_stream))
        .routes(routes!(process::terminal))
        .routes(routes!(process::ticket))
        .routes(routes!(process::start_process, process::list_processes))
        .routes(routes!(process::attach_process))
        .routes(routes!(process::write_process_stdin))
        .routes(routes!(process::close_process_stdin))
        .routes(routes!(process::signal_process))
        .routes(routes!(process::resize_process))
        .routes(routes!(docker::build::build))
        .routes(routes!(docker::run::run))
        .routes(routes!(docker::run::exec))
        .routes(routes!(previews::list_ports))
        .routes(routes!(previews::events))
        .routes(routes!(previews::create_link))
        .routes(routes!(web::login))
        .routes(routes!(web::whoami))
        .routes(routes!(web::logout))
        .routes(routes!(login::providers))
        .routes(routes!(login::github_login))
        .routes(routes!(login::github_callback))
        .routes(routes!(login::oidc_login))
        .routes(routes!(login::oidc_callback))
        .routes(routes!(templates::list))
        .routes(routes!(labs::list))
        .routes(routes!(labs::progress))
        .routes(routes!(labs::get))
        .routes(routes!(labs::start))
        .routes(routes!(labs::active))
        .routes(routes!(labs::judge))
        .routes(routes!(labs::judge_seed))
        .routes(routes!(labs::hint))
        .routes(routes!(labs::explain))
        .routes(routes!(labs::hint_seed))
        .routes(routes!(labs::explain_seed))
        .routes(routes!(labs::reset))
        .routes(routes!(labs::classes::create, labs::classes::list))
        .routes(routes!(labs::classes::get, labs::classes::delete))
        .routes(routes!(labs::classes::start_lab))
        .routes(routes!(labs::classes::reset_learner))
        .routes(routes!(labs::classes::terminals))
        .routes(routes!(labs::classes::shadow))
        .routes(routes!(pool::status))
        .routes(routes!(pool::capacity))
        .routes(routes!(sessions::queue_status, sessions::cancel_queued))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::update, users::delete))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::delete))
        .routes(routes!(audit::list))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(service::healthz))
        .routes(routes!(service::readyz))
        .routes(routes!(service::metrics))
        .merge(callback::routes());
    let (router, mut openapi) = routes.split_for_parts();
    ErrorResponses.modify(&mut openapi);
    (router, openapi)
}

/// What a session's callback socket serves (`crate::callback`).
pub fn callback_router(state: AppState) -> Router {
    callback::socket_router(state)
}

pub fn router(state: AppState) -> Router {
    let (routes, openapi) = router_and_openapi();
    // The proxy routes take every method, so they are routed here; `paths(...)` above
    // documents them.
    let owner = "/api/v1/sessions/{id}/ports/{port}";
    let link = "/api/v1/previews/{token}";
    let routes = routes
        .route(owner, any(previews::add_slash))
        .route(&format!("{owner}/"), any(previews::proxy_owner))
        .route(&format!("{owner}/{{*rest}}"), any(previews::proxy_owner))
        .route(link, any(previews::add_slash))
        .route(&format!("{link}/"), any(previews::proxy_link))
        .route(&format!("{link}/{{*rest}}"), any(previews::proxy_link))
        .route(crate::cluster::CALLS_PATH, post(internal::calls))
        .merge(if state.compat.enabled {
            compat::router(state.clone())
        } else {
            Router::new()
        })
        .route("/", get(web::index))
        .route("/assets/{file}", get(web::asset))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .fallback(|| async { ApiError::not_found("no such route; see /docs for the API") })
        .method_not_allowed_fallback(|| async {
            ApiError::coded(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
        })
        .with_state(state.clone());
    behind_layers(routes)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::coded(ErrorCode::Internal, "internal error; see the server log")
                .into_response()
        }))
        .layer(middleware::from_fn_with_state(state, previews::host_route))
        .layer(TraceLayer::new_for_http())
}

/// A finished router as the only service of a router that adds layers to it. `Router::layer`
/// copies the layers into every route, and axum copies the route table for every connection it
/// serves: with the API's routes that was ~150 KB per open connection, 120 MB for 800 clients
/// kept alive. Behind this a connection costs one copy of the layers, and a request turns only
/// its own route's handler into a service.
pub(crate) fn behind_layers(routes: Router) -> Router {
    Router::new().fallback_service(routes)
}

#[cfg(test)]
mod tests;

//! E2B compatibility (`[e2b] enabled`): what E2B's SDKs call, on two listeners of its own since
//! E2B's paths clash with Berth's. `sandboxes.rs` is the control-plane REST (`E2B_API_URL`);
//! the in-sandbox daemon's protocol, envd (`E2B_SANDBOX_URL`), is `envd.rs` (routing by header,
//! authorisation, `/health`, `/files`), `connect.rs` (Connect RPC's JSON framing), `process.rs`
//! and `filesystem.rs` (its two services), `watchers.rs` (envd's polling watchers, which the
//! agent keeps). Everything maps onto the session manager and the agent's own API, as Berth's
//! routes do, and the layer keeps no state of its own. Written from E2B's published OpenAPI
//! document and envd protocol definitions; see docs/e2b.md.

mod connect;
mod envd;
mod filesystem;
mod interpreter;
mod process;
mod sandboxes;
mod watchers;

use axum::{
    Router,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use berth_proto::ErrorCode;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

use super::{
    AppState,
    error::{ApiError, ConnectError, E2bError},
};

/// The version of envd this layer answers as. The SDKs gate features on it: 0.5.7 is the
/// newest whose every gated feature Berth serves (stdin control, octet-stream uploads); later
/// ones add file metadata in extended attributes, which Berth does not keep.
pub const ENVD_VERSION: &str = "0.5.7";

/// The port envd listens on in an E2B sandbox: the SDKs name it in `E2b-Sandbox-Port`.
pub const ENVD_PORT: u16 = 49983;

/// E2B's control-plane REST: `/sandboxes` (the SDKs up to 2.4x) and `/v2/sandboxes` (later).
pub fn api_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/sandboxes", post(sandboxes::create).get(sandboxes::list))
        .route(
            "/v2/sandboxes",
            post(sandboxes::create).get(sandboxes::list),
        )
        .route(
            "/sandboxes/{id}",
            get(sandboxes::get).delete(sandboxes::kill),
        )
        .route("/sandboxes/{id}/timeout", post(sandboxes::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(sandboxes::refresh))
        .route("/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/sandboxes/{id}/connect", post(sandboxes::connect))
        .route("/v2/sandboxes/{id}/connect", post(sandboxes::connect))
        .fallback(|| async {
            E2bError(ApiError::not_found(
                "no such route: Berth serves E2B's sandbox lifecycle routes only (docs/e2b.md)",
            ))
        })
        .method_not_allowed_fallback(|| async {
            E2bError(ApiError::coded(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            ))
        })
        .with_state(state);
    super::behind_layers(routes)
        .layer(CatchPanicLayer::custom(|_| {
            E2bError(ApiError::coded(
                ErrorCode::Internal,
                "internal error; see the server log",
            ))
            .into_response()
        }))
        .layer(TraceLayer::new_for_http())
}

/// envd's protocol, for every sandbox at once: requests name theirs in `E2b-Sandbox-Id`.
pub fn sandbox_router(state: AppState) -> Router {
    let process = |method| format!("/process.Process/{method}");
    let filesystem = |method| format!("/filesystem.Filesystem/{method}");
    let routes = Router::new()
        .route("/health", get(envd::health))
        // The code interpreter's server (port 49999 in E2B's sandboxes): its paths are not envd's.
        .route("/execute", post(interpreter::execute))
        .route(
            "/contexts",
            post(interpreter::create_context).get(interpreter::list_contexts),
        )
        .route(
            "/contexts/{id}",
            axum::routing::delete(interpreter::remove_context),
        )
        .route("/contexts/{id}/restart", post(interpreter::restart_context))
        .route("/files", get(envd::download).post(envd::upload))
        .route(&process("Start"), post(process::start))
        .route(&process("Connect"), post(process::connect))
        .route(&process("List"), post(process::list))
        .route(&process("SendInput"), post(process::send_input))
        .route(&process("SendSignal"), post(process::send_signal))
        .route(&process("CloseStdin"), post(process::close_stdin))
        .route(&process("StreamInput"), post(process::stream_input))
        .route(&process("Update"), post(process::update))
        .route(&filesystem("Stat"), post(filesystem::stat))
        .route(&filesystem("MakeDir"), post(filesystem::make_dir))
        .route(&filesystem("Move"), post(filesystem::rename))
        .route(&filesystem("ListDir"), post(filesystem::list_dir))
        .route(&filesystem("Remove"), post(filesystem::remove))
        .route(&filesystem("WatchDir"), post(filesystem::watch_dir))
        .route(&filesystem("CreateWatcher"), post(watchers::create))
        .route(&filesystem("GetWatcherEvents"), post(watchers::events))
        .route(&filesystem("RemoveWatcher"), post(watchers::remove))
        .fallback(|| async {
            ConnectError::from(ApiError::coded(
                ErrorCode::MethodNotAllowed,
                "Berth does not serve this envd call; docs/e2b.md lists what it serves",
            ))
        })
        .method_not_allowed_fallback(|| async {
            E2bError(ApiError::coded(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            ))
        })
        .with_state(state);
    super::behind_layers(routes)
        .layer(CatchPanicLayer::custom(|_| {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }))
        .layer(TraceLayer::new_for_http())
}

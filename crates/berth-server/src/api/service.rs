//! Service routes: liveness, readiness, metrics. No token needed.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "ok")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `ok`, or why the engine cannot be used: it does not answer, or the control plane lost
    /// its event stream and is reconnecting (sessions cannot be created or claimed meanwhile).
    pub engine: String,
    /// `ok`, or why the store cannot be used.
    pub store: String,
    /// `leading` when this instance decides session lifecycle, `following` when it sends
    /// lifecycle calls to the instance that does (several instances on one store).
    pub lifecycle: &'static str,
}

/// Readiness: the container engine and the store both answer.
#[utoipa::path(
    get, path = "/readyz", tag = "service",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    const DEADLINE: Duration = Duration::from_secs(3);
    let (engine, store) = tokio::join!(
        tokio::time::timeout(DEADLINE, state.runtime.ping()),
        tokio::time::timeout(DEADLINE, state.store.ping()),
    );
    let describe = |result: Result<Result<(), String>, _>| match result {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(err)) => err,
        Err(_) => format!("no answer within {DEADLINE:?}"),
    };
    // The control plane's own view first: until it follows the engine's events again, it
    // hands out nothing, whatever a ping says.
    let engine = match state.sessions.engine().check() {
        Err(lost) => lost.to_string(),
        Ok(()) => describe(engine.map(|r| r.map_err(|e| e.to_string()))),
    };
    let store = describe(store.map(|r| r.map_err(|e| e.to_string())));
    let ready = engine == "ok" && store == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Readiness {
            ready,
            engine,
            store,
            lifecycle: if state.sessions.leads() {
                "leading"
            } else {
                "following"
            },
        }),
    )
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = crate::metrics::render(state.store.as_ref()).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

//! `berth-agent`: the process that runs as PID 1 in every session container.
//!
//! The control plane talks to it over the container network, authenticating every request with
//! the per-session secret it generated at create time. This crate is both the binary baked into
//! session images and a library, so the control plane's fast tests can serve the very same
//! router in-process instead of a hand-written imitation.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use berth_proto::agent::{Health, PROTOCOL_VERSION, SECRET_HEADER};

/// The agent's HTTP surface. Every route requires the session secret.
pub fn router(secret: String) -> Router {
    let secret = Arc::new(secret);
    Router::new()
        .route("/health", get(health))
        .layer(middleware::from_fn_with_state(secret, require_secret))
}

async fn health() -> Json<Health> {
    Json(Health {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

async fn require_secret(State(secret): State<Arc<String>>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
    if presented.is_some_and(|p| constant_time_eq(p, secret.as_bytes())) {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "missing or wrong agent secret").into_response()
    }
}

/// Compares without an early exit, so response timing says nothing about how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get_health(secret: Option<&str>) -> (StatusCode, Vec<u8>) {
        let mut req = Request::get("/health");
        if let Some(secret) = secret {
            req = req.header(SECRET_HEADER, secret);
        }
        let resp = router("s3cret".into())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        (
            status,
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
    }

    #[tokio::test]
    async fn health_answers_with_the_protocol_version() {
        let (status, body) = get_health(Some("s3cret")).await;
        assert_eq!(status, StatusCode::OK);
        let health: Health = serde_json::from_slice(&body).unwrap();
        assert_eq!(health.protocol, PROTOCOL_VERSION);
    }

    #[tokio::test]
    async fn requests_without_the_secret_are_refused() {
        assert_eq!(get_health(None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get_health(Some("s3creT")).await.0, StatusCode::UNAUTHORIZED);
    }
}

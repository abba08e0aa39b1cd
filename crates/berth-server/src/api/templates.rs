//! `/api/v1/templates`.

use axum::extract::State;
use berth_proto::{ErrorBody, Template, TemplateList, TemplateNetwork};

use super::AppState;
use crate::auth::Principal;

/// The templates sessions can be created from.
#[utoipa::path(
    get, path = "/api/v1/templates", tag = "templates", operation_id = "list_templates",
    responses((status = 200, body = TemplateList), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, _caller: Principal) -> axum::Json<TemplateList> {
    let templates = state
        .templates
        .iter()
        .map(|(name, t)| Template {
            name: name.clone(),
            image: t.image.clone(),
            memory_mb: t.memory_mb,
            cpus: t.cpus,
            pids: t.pids,
            ttl_seconds: t.ttl_seconds,
            max_ttl_seconds: t.max_ttl_seconds,
            env: t.env.clone(),
            network: TemplateNetwork {
                egress: t.network.egress,
                allow: t.network.allow.clone(),
            },
            persistent_home: t.home == crate::config::HomeMode::Persistent,
        })
        .collect();
    axum::Json(TemplateList { templates })
}

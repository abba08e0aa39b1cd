//! `/api/v1/webhooks`: endpoints for sessions' events. A user's hear their own sessions; the
//! admin's, like the config's `[[webhooks]]`, hear every session.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use berth_proto::{
    ErrorBody, ErrorCode,
    webhook::{CreateWebhook, DeliveryList, Webhook, WebhookList},
};
use serde::Deserialize;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ApiQuery},
};
use crate::{
    auth::Principal,
    config::webhook_problem,
    store::WebhookRecord,
    webhooks::{config_webhook_id, signature},
};

/// Register a webhook for the caller's sessions' events (the admin's: every session's). The
/// secret signs every post (Standard Webhooks) and is shown in this answer only.
#[utoipa::path(
    post, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "create_webhook",
    request_body = CreateWebhook,
    responses(
        (status = 201, body = Webhook),
        (status = 400, body = ErrorBody),
        (status = 403, description = "`webhook_delivery.user_webhooks` is off (the admin may still)", body = ErrorBody),
        (status = 429, description = "`webhook_delivery.max_per_user` already (`quota_exceeded`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Principal,
    ApiJson(request): ApiJson<CreateWebhook>,
) -> Result<impl IntoResponse, ApiError> {
    let settings = &state.webhook_config.delivery;
    if !settings.user_webhooks && !caller.admin {
        return Err(ApiError::forbidden(
            "webhooks are the operator's here (webhook_delivery.user_webhooks = false)",
        ));
    }
    if let Some(problem) = webhook_problem(&request.url, &request.events) {
        return Err(ApiError::invalid_request(problem));
    }
    let secret = match request.secret {
        Some(secret) if signature::key_of(&secret).is_none() => {
            return Err(ApiError::invalid_request(
                "secret must be whsec_ and base64 of 24 to 64 bytes; leave it out to get one",
            ));
        }
        Some(secret) => secret,
        None => signature::new_secret(),
    };
    let owner = (!caller.admin).then(|| caller.name.clone());
    let existing = state.store.list_webhooks().await?;
    if existing.iter().filter(|w| w.webhook.owner == owner).count() >= settings.max_per_user {
        return Err(ApiError::coded(
            ErrorCode::QuotaExceeded,
            format!(
                "at most {} webhooks each (webhook_delivery.max_per_user); delete one first",
                settings.max_per_user
            ),
        ));
    }
    let webhook = Webhook {
        id: format!("wh_{}", crate::ids::user_id()),
        owner,
        url: request.url,
        events: request.events,
        created_at: Some(chrono::Utc::now()),
        secret: None,
    };
    state
        .store
        .put_webhook(&WebhookRecord {
            webhook: webhook.clone(),
            secret: secret.clone(),
        })
        .await?;
    let shown = Webhook {
        secret: Some(secret),
        ..webhook
    };
    Ok((StatusCode::CREATED, Json(shown)))
}

/// The caller's webhooks (the admin: every user's and the config's), without secrets.
#[utoipa::path(
    get, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    responses((status = 200, body = WebhookList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<Json<WebhookList>, ApiError> {
    let mut webhooks: Vec<Webhook> = Vec::new();
    if caller.admin {
        webhooks.extend(operators(&state));
    }
    webhooks.extend(
        state
            .store
            .list_webhooks()
            .await?
            .into_iter()
            .map(|record| record.webhook)
            .filter(|hook| caller.admin || hook.owner.as_deref() == Some(&caller.name)),
    );
    Ok(Json(WebhookList { webhooks }))
}

/// The config's `[[webhooks]]`, as the API shows them (no time: they are the config's).
fn operators(state: &AppState) -> impl Iterator<Item = Webhook> + '_ {
    let operators = state.webhook_config.operators.iter().enumerate();
    operators.map(|(i, hook)| Webhook {
        id: config_webhook_id(i),
        owner: None,
        url: hook.url.clone(),
        events: hook.events.clone(),
        created_at: None,
        secret: None,
    })
}

/// A webhook the caller may see: their own, or any for the admin.
async fn visible(state: &AppState, caller: &Principal, id: &str) -> Result<Webhook, ApiError> {
    if caller.admin
        && let Some(hook) = operators(state).find(|hook| hook.id == id)
    {
        return Ok(hook);
    }
    state
        .store
        .list_webhooks()
        .await?
        .into_iter()
        .map(|record| record.webhook)
        .find(|hook| hook.id == id && (caller.admin || hook.owner.as_deref() == Some(&caller.name)))
        .ok_or_else(|| ApiError::not_found(format!("webhook {id}")))
}

/// Delete a webhook; its pending deliveries fail, its log stays readable by the admin.
#[utoipa::path(
    delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", operation_id = "delete_webhook",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204),
        (status = 404, body = ErrorBody),
        (status = 409, description = "One of the config's: change the config", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let webhook = visible(&state, &caller, &id).await?;
    if webhook.created_at.is_none() {
        return Err(ApiError::coded(
            ErrorCode::Conflict,
            "this webhook is in the config ([[webhooks]]); remove it there",
        ));
    }
    state.store.delete_webhook(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// At most this many, newest first (default 50, at most 500).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 500)]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

/// A webhook's deliveries, newest first: each event, its status and every attempt.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    params(("id" = String, Path, description = "Webhook id"), DeliveriesQuery),
    responses((status = 200, body = DeliveryList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    if !(1..=500).contains(&query.limit) {
        return Err(ApiError::invalid_request("limit: 1 to 500"));
    }
    visible(&state, &caller, &id).await?;
    let records = state.store.list_deliveries(&id, query.limit).await?;
    Ok(Json(DeliveryList {
        deliveries: records.into_iter().map(|record| record.delivery).collect(),
    }))
}

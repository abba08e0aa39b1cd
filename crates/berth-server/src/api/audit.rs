//! The audit log: every call that changes something (who, what, which session, how it ended,
//! from where), recorded by a middleware around the API and listed by the admin
//! (`GET /api/v1/audit`).
//!
//! Recording costs a request one channel send after its answer: a task of its own writes the
//! entries in batches and forgets those older than `audit.retention_days`. Who called is
//! read after the handler, from the tokens the authenticator has just seen, so the log needs
//! no lookup of its own.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{ConnectInfo, Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use berth_proto::{
    ErrorBody,
    audit::{AuditEntry, AuditList},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::{
    AppState,
    error::ApiError,
    extract::{ApiQuery, LOGIN_COOKIE, bearer, cookie},
};
use crate::{
    auth::Principal,
    queued::Queued,
    store::{AuditFilter, Store},
};

/// Entries written in one batch at most.
const BATCH: usize = 256;
/// Entries waiting for the writer at most: past it (a store far slower than the callers)
/// entries are dropped and counted, never queued without bound.
const QUEUE: usize = 10_000;
/// How often entries past their retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Where entries go; cheap to clone. The default records nothing (`audit.enabled = false`).
#[derive(Debug, Clone, Default)]
pub struct AuditLog(Queued<AuditEntry>);

impl AuditLog {
    /// The log and its writer, which keeps `retention` of entries in `store`.
    pub fn spawn(store: Arc<dyn Store>, retention: Duration) -> (Self, JoinHandle<()>) {
        let pruned = store.clone();
        let write = move |batch: Vec<AuditEntry>| {
            let store = store.clone();
            async move {
                if let Err(err) = store.add_audit(&batch).await {
                    tracing::warn!(%err, lost = batch.len(), "audit entries not kept");
                }
            }
        };
        let prune = move || {
            let store = pruned.clone();
            async move {
                let before = Utc::now() - retention;
                if let Err(err) = store.prune_audit(before).await {
                    tracing::warn!(%err, "old audit entries not pruned; retrying later");
                }
            }
        };
        let (queue, writer) = Queued::spawn(QUEUE, BATCH, write, PRUNE_EVERY, prune);
        (Self(queue), writer)
    }

    fn record(&self, entry: AuditEntry) {
        if self.0.push(entry).is_err() {
            crate::metrics::audit_dropped();
        }
    }
}

/// The middleware: records every call that changes something and presents a credential,
/// after its answer.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !audited(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    // A call with no credential at all is refused before it does anything: not worth a row,
    // and anyone could send floods of them.
    let Some(token) = bearer(request.headers())
        .or_else(|| cookie(request.headers(), LOGIN_COOKIE))
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    let response = next.run(request).await;
    let actor = actor_of(&state, &token);
    state.audit.record(AuditEntry {
        at: Utc::now(),
        actor,
        method,
        session_id: session_of(&path),
        path,
        status: response.status().as_u16(),
        address,
    });
    response
}

/// Whether a call is one the log keeps: not a read, and not traffic that only passes through
/// Berth (a preview's requests to the app in a session, the browser's presence beacon, an
/// instance forwarding a call to the leader, which the first instance recorded).
fn audited(method: &Method, path: &str) -> bool {
    let passing_through = path.starts_with("/api/v1/previews/")
        || path.starts_with(crate::cluster::CALLS_PATH)
        || (path.starts_with("/api/v1/sessions/")
            && (path.contains("/ports/") || path.ends_with("/activity")));
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && !passing_through
}

/// Who a token is, as the handler that just ran authenticated it.
fn actor_of(state: &AppState, token: &str) -> String {
    if let Some(name) = state.auth.seen(token) {
        return name;
    }
    let now = Utc::now().timestamp();
    match state.signer.check_session_token(token, now) {
        Ok((session, _)) => format!("session:{session}"),
        Err(_) => "-".to_owned(),
    }
}

/// The session `/api/v1/sessions/{id}/...` names.
fn session_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/sessions/")?;
    let id = rest.split('/').next().filter(|id| !id.is_empty())?;
    Some(id.to_owned())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this actor's calls (a user's name, `admin`, `session:<id>`).
    actor: Option<String>,
    /// Only calls on this session.
    session: Option<String>,
    /// From this time on (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// At most this many, newest first (default 100, at most 1000).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

/// Every call that changed something, newest first (admin only).
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "users", operation_id = "list_audit",
    params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    if !caller.admin {
        return Err(ApiError::forbidden("only the admin reads the audit log"));
    }
    if !(1..=1000).contains(&query.limit) {
        return Err(ApiError::invalid_request("limit: 1 to 1000"));
    }
    let filter = AuditFilter {
        actor: query.actor,
        session_id: query.session,
        since: query.since,
        until: query.until,
        limit: query.limit,
    };
    Ok(Json(AuditList {
        entries: state.store.list_audit(&filter).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_kept_and_reads_and_passing_traffic_are_not() {
        assert!(audited(&Method::POST, "/api/v1/sessions"));
        assert!(audited(&Method::DELETE, "/api/v1/sessions/s1"));
        assert!(audited(&Method::POST, "/judge/dockerfile-basics"));
        assert!(!audited(&Method::GET, "/api/v1/sessions"));
        assert!(!audited(
            &Method::POST,
            "/api/v1/sessions/s1/ports/8000/form"
        ));
        assert!(!audited(&Method::POST, "/api/v1/previews/tok/form"));
        assert!(!audited(&Method::POST, "/api/v1/sessions/s1/activity"));
        assert!(!audited(&Method::POST, crate::cluster::CALLS_PATH));
    }

    #[test]
    fn the_session_a_path_names() {
        assert_eq!(
            session_of("/api/v1/sessions/s1/hibernate"),
            Some("s1".into())
        );
        assert_eq!(session_of("/api/v1/sessions/s1"), Some("s1".into()));
        assert_eq!(session_of("/api/v1/sessions"), None);
        assert_eq!(session_of("/api/v1/users"), None);
    }
}

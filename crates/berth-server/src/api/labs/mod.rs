//! `/api/v1/labs`: the catalogue, attempts (a session per user and lab), the judge, hints and
//! resets (docs/labs.md). `attempts.rs` starts, finds and resets attempts; `judge.rs` runs a
//! step's checks against the live session (`checks.rs` one kind each); `hints.rs` gives the
//! hint ladder and the assistant's answers.

mod attempts;
mod checks;
pub mod classes;
mod hints;
mod judge;

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use berth_proto::{
    ErrorBody, ErrorCode,
    lab::{
        AgentHintRequest, Hint, HintRequest, JudgeRequest, JudgeResult, Lab as LabView, LabAttempt,
        LabList, LabProgress, ResetRequest,
    },
};

use super::{
    AppState,
    error::ApiError,
    extract::{ApiJson, ApiJsonOrDefault},
};
use crate::{
    auth::Principal,
    config::AiConfig,
    labs::{Catalogue, Lab, assistant::Assistant},
};

/// What labs keep while serving: the catalogue, the assistant, and in memory (per instance,
/// as request rates are) who is being judged and how often each asked the assistant.
#[derive(Debug)]
pub struct LabsService {
    pub catalogue: Catalogue,
    assistant: Option<Assistant>,
    limits: AiConfig,
    judge_timeout: Duration,
    /// Sessions with a judging running: one at a time per session.
    judging: Mutex<HashSet<String>>,
    /// (owner, lab) pairs with a start running: one attempt per user and lab.
    starting: Mutex<HashSet<(String, String)>>,
    usage: Mutex<Usage>,
}

#[derive(Debug, Default)]
struct Usage {
    /// When each session's recent assistant answers were asked for.
    per_session: BTreeMap<String, VecDeque<Instant>>,
    /// Answers per user on one UTC day.
    per_user: BTreeMap<String, (chrono::NaiveDate, u32)>,
}

impl LabsService {
    pub fn new(catalogue: Catalogue, ai: &AiConfig, judge_timeout: Duration) -> Self {
        Self {
            catalogue,
            assistant: Assistant::from_config(ai),
            limits: ai.clone(),
            judge_timeout,
            judging: Mutex::default(),
            starting: Mutex::default(),
            usage: Mutex::default(),
        }
    }
}

/// A claim on a key of one of the service's sets, given back when dropped (also when the
/// request's future is dropped half-way).
struct Claim<'a, K: Eq + std::hash::Hash> {
    set: &'a Mutex<HashSet<K>>,
    key: Option<K>,
}

impl<'a, K: Eq + std::hash::Hash + Clone> Claim<'a, K> {
    fn take(set: &'a Mutex<HashSet<K>>, key: K) -> Option<Self> {
        let mut held = set.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(key.clone()).then(|| Self {
            set,
            key: Some(key),
        })
    }
}

impl<K: Eq + std::hash::Hash> Drop for Claim<'_, K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.set
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
    }
}

fn lab(state: &AppState, slug: &str) -> Result<Arc<Lab>, ApiError> {
    state
        .labs
        .catalogue
        .get(slug)
        .ok_or_else(|| ApiError::not_found(format!("no lab {slug:?}; GET /api/v1/labs lists them")))
}

/// The labs of the catalogue.
#[utoipa::path(
    get, path = "/api/v1/labs", tag = "labs", operation_id = "labs_list",
    responses((status = 200, body = LabList)),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, _caller: Principal) -> Json<LabList> {
    Json(LabList {
        labs: state
            .labs
            .catalogue
            .iter()
            .map(|lab| lab.summary())
            .collect(),
    })
}

/// One lab with its steps (markdown, and the same as safe HTML).
#[utoipa::path(
    get, path = "/api/v1/labs/{slug}", tag = "labs", operation_id = "labs_get",
    params(("slug" = String, Path)),
    responses((status = 200, body = LabView), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    _caller: Principal,
    Path(slug): Path<String>,
) -> Result<Json<LabView>, ApiError> {
    Ok(Json(lab(&state, &slug)?.to_public()))
}

/// Start the lab: a session with its template, starter files and TTL, step 1 set up. One
/// attempt per user and lab: an active one is answered as it is (`200`).
#[utoipa::path(
    post, path = "/api/v1/labs/{slug}/start", tag = "labs", operation_id = "labs_start",
    params(("slug" = String, Path)),
    responses(
        (status = 201, description = "Started", body = LabAttempt),
        (status = 200, description = "The active attempt, already started", body = LabAttempt),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A start of this lab is already running", body = ErrorBody),
        (status = 429, description = "Over the session quota", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Principal,
    Path(slug): Path<String>,
) -> Result<(StatusCode, Json<LabAttempt>), ApiError> {
    let lab = lab(&state, &slug)?;
    // A task of its own: a caller who hangs up does not leave a session without its attempt.
    tokio::spawn(async move { attempts::start(&state, &caller, &lab).await })
        .await
        .map_err(ApiError::internal)?
}

/// The caller's active attempt at the lab (its session not ended).
#[utoipa::path(
    get, path = "/api/v1/labs/{slug}/active", tag = "labs", operation_id = "labs_active",
    params(("slug" = String, Path)),
    responses(
        (status = 200, body = LabAttempt),
        (status = 404, description = "No such lab, or no active attempt", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn active(
    State(state): State<AppState>,
    caller: Principal,
    Path(slug): Path<String>,
) -> Result<Json<LabAttempt>, ApiError> {
    let lab = lab(&state, &slug)?;
    let (record, session) = attempts::active(&state, &caller, &lab).await?;
    Ok(Json(attempts::view(&record, Some(session))))
}

/// The caller's attempts at every lab, newest first.
#[utoipa::path(
    get, path = "/api/v1/labs/progress", tag = "labs", operation_id = "labs_progress",
    responses((status = 200, body = LabProgress)),
    security(("bearer" = []))
)]
pub async fn progress(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<Json<LabProgress>, ApiError> {
    Ok(Json(attempts::progress(&state, &caller).await?))
}

/// Judge a step of the active attempt against the live session: each check's result, and
/// the attempt moved on when the step passed.
#[utoipa::path(
    post, path = "/api/v1/labs/{slug}/judge", tag = "labs", operation_id = "labs_judge",
    params(("slug" = String, Path)),
    request_body(content = Option<JudgeRequest>, description = "May be left out"),
    responses(
        (status = 200, body = JudgeResult),
        (status = 400, description = "A step not reached yet", body = ErrorBody),
        (status = 404, description = "No such lab, or no active attempt", body = ErrorBody),
        (status = 409, description = "A judging of this session is running", body = ErrorBody),
        (status = 504, description = "The judging ran out of time (`timeout`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn judge(
    State(state): State<AppState>,
    caller: Principal,
    Path(slug): Path<String>,
    ApiJsonOrDefault(request): ApiJsonOrDefault<JudgeRequest>,
) -> Result<Json<JudgeResult>, ApiError> {
    let lab = lab(&state, &slug)?;
    Ok(Json(
        judge::judge(&state, &caller, &lab, request.step).await?,
    ))
}

/// Seed 004's `POST /judge/{slug}`: judges the current step.
#[utoipa::path(
    post, path = "/judge/{slug}", tag = "labs", operation_id = "labs_judge_seed",
    params(("slug" = String, Path)),
    responses(
        (status = 200, body = JudgeResult),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 504, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn judge_seed(
    State(state): State<AppState>,
    caller: Principal,
    Path(slug): Path<String>,
) -> Result<Json<JudgeResult>, ApiError> {
    let lab = lab(&state, &slug)?;
    Ok(Json(judge::judge(&state, &caller, &lab, None).await?))
}

/// The next hint for the current step: the lab's own, in order, then the assistant's (with
/// `[ai]` configured), which sees the learner's files, terminal and failing checks.
#[utoipa::path(
    post, path = "/api/v1/labs/{slug}/hint", tag = "labs", operation_id = "labs_hint",
    params(("slug" = String, Path)),
    request_body(content = Option<HintRequest>, description = "May be left out"),
    responses(
        (status = 200, body = Hint),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No hints left, and no assistant", body = ErrorBody),
        (status = 429, description = "Over the assistant's rate (`retry_after`)", body = ErrorBody),
        (status = 502, description = "The assistant's provider failed", body = ErrorBody),
        (status = 504, description = "The assistant did not answer in time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn hint(
    State(state): State<AppState>,
    caller: Principal,
    Path(slug): Path<String>,
    ApiJsonOrDefault(request): ApiJsonOrDefault<HintRequest>,
) -> Result<Json<Hint>, ApiError> {
    let lab = lab(&state, &slug)?;
    Ok(Json(
        hints::hint(&state, &caller, &lab, request.question).await?,
    ))
}

/// The assistant explains a piece of text (an error, a line) for the current step.
#[utoipa::path(
    post, path = "/api/v1/labs/{slug}/explain", tag = "labs", operation_id = "labs_explain",
    params(("slug" = String, Path)),
    request_body(content = Option<HintRequest>, description = "May be left out"),
    responses(
        (status = 200, body = Hint),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No assistant is configured", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody),
        (status = 504, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn explain(
    State(state): State<AppState>,
    caller: Principal,
    Path(slug): Path<String>,
    ApiJsonOrDefault(request): ApiJsonOrDefault<HintRequest>,
) -> Result<Json<Hint>, ApiError> {
    let lab = lab(&state, &slug)?;
    Ok(Json(
        hints::explain(&state, &caller, &lab, request.question).await?,
    ))
}

/// Seed 004's `POST /agent/hint`: the lab named in the body.
#[utoipa::path(
    post, path = "/agent/hint", tag = "labs", operation_id = "labs_hint_seed",
    request_body = AgentHintRequest,
    responses(
        (status = 200, body = Hint),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody),
        (status = 504, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn hint_seed(
    State(state): State<AppState>,
    caller: Principal,
    ApiJson(request): ApiJson<AgentHintRequest>,
) -> Result<Json<Hint>, ApiError> {
    let lab = lab(&state, &request.lab)?;
    Ok(Json(
        hints::hint(&state, &caller, &lab, request.question).await?,
    ))
}

/// Seed 004's `POST /agent/explain`: the lab named in the body.
#[utoipa::path(
    post, path = "/agent/explain", tag = "labs", operation_id = "labs_explain_seed",
    request_body = AgentHintRequest,
    responses(
        (status = 200, body = Hint),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody),
        (status = 504, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn explain_seed(
    State(state): State<AppState>,
    caller: Principal,
    ApiJson(request): ApiJson<AgentHintRequest>,
) -> Result<Json<Hint>, ApiError> {
    let lab = lab(&state, &request.lab)?;
    Ok(Json(
        hints::explain(&state, &caller, &lab, request.question).await?,
    ))
}

/// Reset the active attempt: run a step's setup again (`step`), do the steps before one and
/// go on from there (`skip_to`), or go back to the lab's start (`restart`: a new session from
/// the snapshot taken at start).
#[utoipa::path(
    post, path = "/api/v1/labs/{slug}/reset", tag = "labs", operation_id = "labs_reset",
    params(("slug" = String, Path)),
    request_body = ResetRequest,
    responses(
        (status = 200, body = LabAttempt),
        (status = 400, description = "No such step", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A judging of this session is running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reset(
    State(state): State<AppState>,
    caller: Principal,
    Path(slug): Path<String>,
    ApiJson(request): ApiJson<ResetRequest>,
) -> Result<Json<LabAttempt>, ApiError> {
    let lab = lab(&state, &slug)?;
    Ok(Json(attempts::reset(&state, &caller, &lab, request).await?))
}

/// The error for work on a session another request is judging.
fn judging_now(session: &str) -> ApiError {
    ApiError::coded(
        ErrorCode::Conflict,
        format!("session {session} is being judged; wait for that result and try again"),
    )
}

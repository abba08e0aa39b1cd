//! `/api/v1/classes`: an instructor's rosters. A class's instructor (or the admin) starts a lab
//! for every member, follows where each stands, resets a learner, and watches a learner's
//! terminal without typing in it. Acting for a learner, the instructor acts as that learner
//! on their own sessions and attempts, so every rule of theirs (quota, one attempt per lab)
//! holds; the class adds its own `max_sessions`.

use std::collections::BTreeSet;

use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use berth_proto::{
    ErrorBody, ErrorCode, ErrorDetail,
    lab::{
        Class, ClassList, ClassStart, ClassView, CreateClass, LabAttempt, Learner, MemberStart,
        ResetRequest,
    },
    process::{TerminalQuery, TerminalTail},
};
use chrono::Utc;

use super::{attempts, lab};
use crate::{
    api::{
        AppState,
        error::ApiError,
        extract::{ApiJson, websocket_caller},
        session_agent::SessionAgent,
    },
    auth::Principal,
    proxy::WebSocketRequest,
    store::SessionFilter,
};

const MAX_MEMBERS: usize = 500;

/// The class `id` if the caller keeps it (its instructor, or the admin); another's does not
/// exist for them.
async fn kept_class(state: &AppState, caller: &Principal, id: &str) -> Result<Class, ApiError> {
    // An instructor whose role was taken back keeps no class.
    must_teach(caller)?;
    match state.store.get_class(id).await? {
        Some(class) if caller.admin || class.instructor == caller.name => Ok(class),
        _ => Err(ApiError::not_found(format!("no class {id}"))),
    }
}

fn must_teach(caller: &Principal) -> Result<(), ApiError> {
    if caller.teaches() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "classes are for instructors; the admin grants the role (PATCH /api/v1/users/{name})",
        ))
    }
}

/// A member of the class, or 404.
fn member(class: &Class, user: &str) -> Result<(), ApiError> {
    if class.members.iter().any(|m| m == user) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "{user} is not in class {}",
            class.name
        )))
    }
}

/// Make a class: a roster of existing users (instructors and the admin only).
#[utoipa::path(
    post, path = "/api/v1/classes", tag = "labs", operation_id = "classes_create",
    request_body = CreateClass,
    responses(
        (status = 201, body = Class),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 404, description = "Members who are not users", body = ErrorBody),
        (status = 403, description = "Not an instructor", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Principal,
    ApiJson(request): ApiJson<CreateClass>,
) -> Result<(StatusCode, Json<Class>), ApiError> {
    must_teach(&caller)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_request("name: 1 to 64 characters"));
    }
    let members: Vec<String> = request
        .members
        .iter()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if members.len() > MAX_MEMBERS {
        return Err(ApiError::invalid_request(format!(
            "members: at most {MAX_MEMBERS}"
        )));
    }
    let users: BTreeSet<String> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| u.name)
        .collect();
    let unknown: Vec<&str> = members
        .iter()
        .filter(|m| !users.contains(*m))
        .map(String::as_str)
        .collect();
    // Names of users that are not there: well-formed, so not a bad request.
    if !unknown.is_empty() {
        return Err(ApiError::not_found(format!(
            "members: not users: {}; the admin creates them with `berth user create`",
            unknown.join(", ")
        )));
    }
    if request.max_sessions == Some(0) {
        return Err(ApiError::invalid_request(
            "max_sessions: at least 1, or leave it out for no limit",
        ));
    }
    let class = Class {
        id: crate::ids::class_id(),
        name: name.to_owned(),
        instructor: caller.name.clone(),
        members,
        max_sessions: request.max_sessions,
        created_at: Utc::now(),
    };
    state.store.put_class(&class).await?;
    Ok((StatusCode::CREATED, Json(class)))
}

/// The caller's classes (the admin's: every class).
#[utoipa::path(
    get, path = "/api/v1/classes", tag = "labs", operation_id = "classes_list",
    responses((status = 200, body = ClassList), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Principal,
) -> Result<Json<ClassList>, ApiError> {
    must_teach(&caller)?;
    let classes = state
        .store
        .list_classes()
        .await?
        .into_iter()
        .filter(|c| caller.admin || c.instructor == caller.name)
        .collect();
    Ok(Json(ClassList { classes }))
}

/// The class and where each learner stands now: their newest attempt at each lab, with its
/// step, last result and session.
#[utoipa::path(
    get, path = "/api/v1/classes/{id}", tag = "labs", operation_id = "classes_get",
    params(("id" = String, Path)),
    responses((status = 200, body = ClassView), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<ClassView>, ApiError> {
    let class = kept_class(&state, &caller, &id).await?;
    let mut learners = Vec::with_capacity(class.members.len());
    for user in &class.members {
        let progress = attempts::progress(&state, &Principal::user(user)).await?;
        let mut seen = BTreeSet::new();
        let newest: Vec<LabAttempt> = progress
            .attempts
            .into_iter()
            .filter(|a| seen.insert(a.lab.clone()))
            .collect();
        learners.push(Learner {
            user: user.clone(),
            attempts: newest,
        });
    }
    Ok(Json(ClassView { class, learners }))
}

/// Remove a class (its members' sessions and attempts stay theirs).
#[utoipa::path(
    delete, path = "/api/v1/classes/{id}", tag = "labs", operation_id = "classes_delete",
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    kept_class(&state, &caller, &id).await?;
    state.store.delete_class(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a lab for every member (an active attempt is kept as it is). Past the class's
/// `max_sessions` live lab sessions, the rest are refused with `quota_exceeded`.
#[utoipa::path(
    post, path = "/api/v1/classes/{id}/labs/{slug}/start", tag = "labs",
    operation_id = "classes_start_lab",
    params(("id" = String, Path), ("slug" = String, Path)),
    responses((status = 200, body = ClassStart), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn start_lab(
    State(state): State<AppState>,
    caller: Principal,
    Path((id, slug)): Path<(String, String)>,
) -> Result<Json<ClassStart>, ApiError> {
    let class = kept_class(&state, &caller, &id).await?;
    let lab = lab(&state, &slug)?;
    // A task of its own: a caller who hangs up does not stop the starts half-way.
    tokio::spawn(async move { start_for_members(&state, &class, &lab).await })
        .await
        .map_err(ApiError::internal)?
}

async fn start_for_members(
    state: &AppState,
    class: &Class,
    lab: &std::sync::Arc<crate::labs::Lab>,
) -> Result<Json<ClassStart>, ApiError> {
    let mut live = live_lab_sessions(state, class).await?;
    let mut started = Vec::with_capacity(class.members.len());
    for user in &class.members {
        let learner = Principal::user(user);
        let active = attempts::active(state, &learner, lab).await.ok();
        let outcome = match (active, class.max_sessions) {
            (Some((record, session)), _) => Ok(attempts::view(&record, Some(session))),
            (None, Some(max)) if live >= max => Err(ApiError::coded(
                ErrorCode::QuotaExceeded,
                format!(
                    "class {} may have {max} lab sessions at once; end some, or raise its \
                     max_sessions",
                    class.name
                ),
            )),
            (None, _) => attempts::start(state, &learner, lab)
                .await
                .map(|(_, Json(attempt))| attempt),
        };
        started.push(match outcome {
            Ok(attempt) => {
                live += 1;
                MemberStart {
                    user: user.clone(),
                    attempt: Some(attempt),
                    error: None,
                }
            }
            Err(err) => MemberStart {
                user: user.clone(),
                attempt: None,
                error: Some(ErrorDetail::new(err.code, err.message)),
            },
        });
    }
    Ok(Json(ClassStart { started }))
}

/// Live lab sessions of the class's members: what its `max_sessions` counts.
async fn live_lab_sessions(state: &AppState, class: &Class) -> Result<u32, ApiError> {
    if class.max_sessions.is_none() {
        return Ok(0);
    }
    let members: BTreeSet<&str> = class.members.iter().map(String::as_str).collect();
    let sessions = state.store.list_sessions(&SessionFilter::kept()).await?;
    let count = sessions
        .iter()
        .filter(|s| {
            members.contains(s.owner.as_str()) && s.labels.contains_key(attempts::LAB_LABEL)
        })
        .count();
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// Reset a learner's attempt at a lab, as they could themselves.
#[utoipa::path(
    post, path = "/api/v1/classes/{id}/members/{user}/labs/{slug}/reset", tag = "labs",
    operation_id = "classes_reset_learner",
    params(("id" = String, Path), ("user" = String, Path), ("slug" = String, Path)),
    request_body = ResetRequest,
    responses(
        (status = 200, body = LabAttempt),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reset_learner(
    State(state): State<AppState>,
    caller: Principal,
    Path((id, user, slug)): Path<(String, String, String)>,
    ApiJson(request): ApiJson<ResetRequest>,
) -> Result<Json<LabAttempt>, ApiError> {
    let class = kept_class(&state, &caller, &id).await?;
    member(&class, &user)?;
    let lab = lab(&state, &slug)?;
    Ok(Json(
        attempts::reset(&state, &Principal::user(&user), &lab, request).await?,
    ))
}

/// A lab session of a member of the class, as that member: an instructor sees a learner's
/// lab sessions, never their others.
async fn learner_session(
    state: &AppState,
    caller: &Principal,
    class_id: &str,
    session: &str,
) -> Result<Principal, ApiError> {
    let class = kept_class(state, caller, class_id).await?;
    let owner = match state.store.get_session(session).await? {
        Some(record)
            if class.members.contains(&record.owner)
                && record.labels.contains_key(attempts::LAB_LABEL) =>
        {
            record.owner
        }
        _ => {
            return Err(ApiError::not_found(format!(
                "no session {session} of a member of class {}",
                class.name
            )));
        }
    };
    Ok(Principal::user(&owner))
}

/// A learner's live terminals and the end of each one's output, to pick one to watch.
#[utoipa::path(
    get, path = "/api/v1/classes/{id}/sessions/{session}/terminals", tag = "labs",
    operation_id = "classes_learner_terminals",
    params(("id" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = [TerminalTail]), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn terminals(
    State(state): State<AppState>,
    caller: Principal,
    Path((id, session)): Path<(String, String)>,
) -> Result<Json<Vec<TerminalTail>>, ApiError> {
    let learner = learner_session(&state, &caller, &id, &session).await?;
    let agent = SessionAgent::reach(&state, &learner, &session).await?;
    let tails: Vec<TerminalTail> = agent
        .call(
            &state,
            hyper::Method::GET,
            "/terminals/tail?bytes=2048",
            None,
        )
        .await?;
    Ok(Json(tails))
}

/// Watch a learner's terminal (WebSocket, read-only): its scrollback, then its output as it
/// comes; anything sent is ignored.
#[utoipa::path(
    get, path = "/api/v1/classes/{id}/sessions/{session}/terminal", tag = "labs",
    operation_id = "classes_shadow_terminal",
    params(("id" = String, Path), ("session" = String, Path), ("terminal_id" = String, Query)),
    responses(
        (status = 101, description = "Switching to WebSocket"),
        (status = 404, description = "No such class, member session or terminal", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn shadow(
    State(state): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketRequest,
) -> Result<Response, ApiError> {
    let (caller, query) = websocket_caller(
        &state,
        &headers,
        &session,
        query.as_deref(),
        berth_proto::token::Scope::Labs,
    )
    .await?;
    let asked: TerminalQuery =
        serde_urlencoded::from_str(&query).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let Some(terminal_id) = asked.terminal_id else {
        return Err(ApiError::invalid_request(
            "terminal_id: the learner's terminal to watch (GET .../terminals lists them)",
        ));
    };
    let learner = learner_session(&state, &caller, &id, &session).await?;
    let endpoint = state.sessions.agent_endpoint(&learner, &session).await?;
    // Read-only whatever was asked: the agent drops the watcher's input and resizes.
    let target = TerminalQuery {
        terminal_id: Some(terminal_id),
        readonly: true,
        ..TerminalQuery::default()
    };
    let target = format!(
        "/terminal?{}",
        serde_urlencoded::to_string(&target).unwrap_or_default()
    );
    let tap = state.sessions.tap(&session, false);
    crate::proxy::websocket(endpoint, &target, upgrade, tap).await
}

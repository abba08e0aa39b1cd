//! Attempts: starting a lab (a session, its starter files, step 1's setup, a snapshot of that
//! start), finding the active one, progress, and resets.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{Json, http::StatusCode};
use berth_proto::{
    CreateSession, ErrorCode, SessionState,
    lab::{LabAttempt, LabProgress, ResetMode, ResetRequest},
    process::{ExecRequest, ExecResult},
};
use chrono::Utc;

use super::{Claim, judging_now};
use crate::{
    api::{AppState, error::ApiError, session_agent::SessionAgent},
    auth::Principal,
    labs::Lab,
    store::{AttemptRecord, SessionRecord},
};

/// The label every lab session carries: the lab's id.
pub const LAB_LABEL: &str = "berth.lab";
/// How long a step's `setup` or `solve` may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// An attempt as the API shows it, with its session's state when known.
pub fn view(record: &AttemptRecord, session: Option<SessionState>) -> LabAttempt {
    let mut attempt = record.attempt.clone();
    attempt.session_state = session;
    attempt.hints_shown = record.hints_shown.get(&attempt.step).copied().unwrap_or(0);
    attempt
}

/// The caller's newest attempt at `lab` while its session is kept (running or asleep).
pub async fn active(
    state: &AppState,
    caller: &Principal,
    lab: &Lab,
) -> Result<(AttemptRecord, SessionState), ApiError> {
    let newest = state
        .store
        .list_attempts(&caller.name)
        .await?
        .into_iter()
        .find(|record| record.attempt.lab == lab.id());
    if let Some(record) = newest
        && let Some(session) = state.store.get_session(&record.attempt.session_id).await?
        && session.state.is_kept()
    {
        return Ok((record, session.state));
    }
    Err(ApiError::not_found(format!(
        "no active attempt at lab {:?}; start it with POST /api/v1/labs/{}/start",
        lab.id(),
        lab.id()
    )))
}

pub async fn start(
    state: &AppState,
    caller: &Principal,
    lab: &Arc<Lab>,
) -> Result<(StatusCode, Json<LabAttempt>), ApiError> {
    let key = (caller.name.clone(), lab.id().to_owned());
    let Some(_starting) = Claim::take(&state.labs.starting, key) else {
        return Err(ApiError::coded(
            ErrorCode::Conflict,
            format!(
                "lab {:?} is being started for you already; wait for it",
                lab.id()
            ),
        ));
    };
    if let Ok((record, session)) = active(state, caller, lab).await {
        return Ok((StatusCode::OK, Json(view(&record, Some(session)))));
    }
    let session = state
        .sessions
        .create(caller.clone(), create_request(state, lab, None))
        .await?;
    let prepared = prepare(state, caller, lab, &session.id).await;
    match prepared {
        Ok(start_snapshot) => {
            let record = AttemptRecord {
                attempt: LabAttempt {
                    id: crate::ids::attempt_id(),
                    lab: lab.id().to_owned(),
                    owner: caller.name.clone(),
                    session_id: session.id.clone(),
                    step: 1,
                    steps: lab.step_count(),
                    started_at: Utc::now(),
                    completed_at: None,
                    duration_seconds: None,
                    judgings: 0,
                    hints_shown: 0,
                    last_result: None,
                    session_state: None,
                },
                start_snapshot: Some(start_snapshot),
                hints_shown: BTreeMap::new(),
            };
            if let Err(err) = state.store.put_attempt(&record).await {
                remove_session(state, caller, &session.id).await;
                return Err(err.into());
            }
            Ok((
                StatusCode::CREATED,
                Json(view(&record, Some(session.state))),
            ))
        }
        Err(err) => {
            // Nothing half-made stays: the session goes with the failed start.
            remove_session(state, caller, &session.id).await;
            Err(err)
        }
    }
}

/// What a lab's session is made from: its template, a TTL within the template's maximum, its
/// label; from a snapshot for a restart.
fn create_request(state: &AppState, lab: &Lab, from_snapshot: Option<String>) -> CreateSession {
    let wanted = lab.file.ttl_minutes.saturating_mul(60);
    let ttl = state
        .templates
        .get(&lab.file.template)
        .map_or(wanted, |template| wanted.min(template.max_ttl_seconds));
    CreateSession {
        template: lab.file.template.clone(),
        ttl_seconds: Some(ttl),
        labels: BTreeMap::from([(LAB_LABEL.to_owned(), lab.id().to_owned())]),
        from_snapshot,
        ..CreateSession::default()
    }
}

/// Starter files in, step 1 set up, and the snapshot "restart" goes back to; its id.
async fn prepare(
    state: &AppState,
    caller: &Principal,
    lab: &Lab,
    session_id: &str,
) -> Result<String, ApiError> {
    let agent = SessionAgent::reach(state, caller, session_id).await?;
    if let Some(files) = lab.starter_files() {
        let tar =
            tokio::task::spawn_blocking(move || crate::agent_client::directory_archive(&files))
                .await
                .map_err(ApiError::internal)?
                .map_err(|err| {
                    ApiError::coded(
                        ErrorCode::Misconfigured,
                        format!("reading lab {:?}'s files/: {err}", lab.id()),
                    )
                })?;
        let request = hyper::Request::put("/files/archive?path=.")
            .body(axum::body::Body::from(tar))
            .map_err(ApiError::internal)?;
        agent.send(state, request).await?;
    }
    run_step_script(state, &agent, lab, 1, Script::Setup).await?;
    let snapshot = state
        .sessions
        .create_snapshot(caller, session_id, &start_snapshot_name(lab))
        .await?;
    Ok(snapshot.id)
}

fn start_snapshot_name(lab: &Lab) -> String {
    format!("lab {}: start", lab.id())
}

/// Removes a session a lab made and cannot use, logging a failure (reconcile and the TTL
/// still end it).
async fn remove_session(state: &AppState, caller: &Principal, id: &str) {
    if let Err(err) = state.sessions.delete(caller.clone(), id.to_owned()).await {
        tracing::warn!(session = %id, %err, "removing a lab session that could not be used");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Setup,
    Solve,
}

/// Runs step `number`'s `setup` or `solve` in the session, as its user in its home; a failure
/// is the lab's, said as such.
pub async fn run_step_script(
    state: &AppState,
    agent: &SessionAgent,
    lab: &Lab,
    number: u32,
    which: Script,
) -> Result<(), ApiError> {
    let Some(step) = lab.step(number) else {
        return Ok(());
    };
    let script = match which {
        Script::Setup => &step.file.setup,
        Script::Solve => &step.file.solve,
    };
    let Some(script) = script else { return Ok(()) };
    let result = exec(state, agent, script, SCRIPT_TIMEOUT).await?;
    if result.exit_code == Some(0) {
        return Ok(());
    }
    let name = match which {
        Script::Setup => "setup",
        Script::Solve => "solve",
    };
    let output = format!("{}{}", result.stdout, result.stderr);
    let tail: String = output
        .trim()
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(ApiError::coded(
        ErrorCode::Misconfigured,
        format!(
            "lab {:?} step {number}'s {name} script failed ({}): {tail}",
            lab.id(),
            match (result.timed_out, result.exit_code) {
                (true, _) => "timed out".to_owned(),
                (false, Some(code)) => format!("exit {code}"),
                (false, None) => "killed".to_owned(),
            }
        ),
    ))
}

/// A shell script in the session, in its home.
pub async fn exec(
    state: &AppState,
    agent: &SessionAgent,
    script: &str,
    timeout: Duration,
) -> Result<ExecResult, ApiError> {
    let request = ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), script.to_owned()],
        cwd: None,
        env: BTreeMap::new(),
        stdin: None,
        timeout_ms: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        keepalive: false,
        pty: None,
    };
    let body = serde_json::to_value(&request).map_err(ApiError::internal)?;
    agent
        .call(state, hyper::Method::POST, "/exec", Some(body))
        .await
}

pub async fn progress(state: &AppState, caller: &Principal) -> Result<LabProgress, ApiError> {
    let records = state.store.list_attempts(&caller.name).await?;
    let mut attempts = Vec::with_capacity(records.len());
    for record in &records {
        let session = state
            .store
            .get_session(&record.attempt.session_id)
            .await?
            .map(|s: SessionRecord| s.state);
        attempts.push(view(record, session));
    }
    Ok(LabProgress { attempts })
}

/// The active attempt, with its session's claim held: nothing else judges or resets it until
/// the claim is dropped. The attempt is read again once the claim is held, so what another
/// request wrote before is not overwritten.
pub async fn claimed<'a>(
    state: &'a AppState,
    caller: &Principal,
    lab: &Lab,
) -> Result<(AttemptRecord, Claim<'a, String>), ApiError> {
    let (record, _) = active(state, caller, lab).await?;
    let session_id = record.attempt.session_id.clone();
    let Some(claim) = Claim::take(&state.labs.judging, session_id.clone()) else {
        return Err(judging_now(&session_id));
    };
    match active(state, caller, lab).await? {
        (fresh, _) if fresh.attempt.session_id == session_id => Ok((fresh, claim)),
        _ => Err(judging_now(&session_id)),
    }
}

pub async fn reset(
    state: &AppState,
    caller: &Principal,
    lab: &Lab,
    request: ResetRequest,
) -> Result<LabAttempt, ApiError> {
    let (mut record, _claim) = claimed(state, caller, lab).await?;
    let session_id = record.attempt.session_id.clone();
    let steps = lab.step_count();
    let target = match request.mode {
        ResetMode::Restart => 1,
        ResetMode::Step | ResetMode::SkipTo => request
            .step
            .ok_or_else(|| ApiError::invalid_request("step: the step (1-based) to reset to"))?,
    };
    if target == 0 || target > steps {
        return Err(ApiError::invalid_request(format!(
            "step: from 1 to {steps}, the lab's steps"
        )));
    }
    match request.mode {
        ResetMode::Step if target > record.attempt.step => {
            return Err(ApiError::invalid_request(format!(
                "step {target} is not reached yet; use mode \"skip_to\" to do the steps before it"
            )));
        }
        ResetMode::Step => {
            let agent = SessionAgent::reach(state, caller, &session_id).await?;
            run_step_script(state, &agent, lab, target, Script::Setup).await?;
        }
        ResetMode::SkipTo => {
            // Each step skipped is set up and done, as if the learner had reached and passed
            // it (the current one is set up already).
            let agent = SessionAgent::reach(state, caller, &session_id).await?;
            let current = record.attempt.step;
            for number in current.min(target)..target {
                if number > current {
                    run_step_script(state, &agent, lab, number, Script::Setup).await?;
                }
                run_step_script(state, &agent, lab, number, Script::Solve).await?;
            }
            run_step_script(state, &agent, lab, target, Script::Setup).await?;
        }
        ResetMode::Restart => {
            let snapshot = record.start_snapshot.clone().ok_or_else(|| {
                ApiError::coded(
                    ErrorCode::Conflict,
                    "this attempt has no snapshot of its start",
                )
            })?;
            let session = state
                .sessions
                .create(caller.clone(), create_request(state, lab, Some(snapshot)))
                .await?;
            // The old session's snapshots go with it, the start's too: the new session's own
            // start is the next restart's.
            let start = state
                .sessions
                .create_snapshot(caller, &session.id, &start_snapshot_name(lab))
                .await;
            let start = match start {
                Ok(snapshot) => snapshot.id,
                Err(err) => {
                    remove_session(state, caller, &session.id).await;
                    return Err(err.into());
                }
            };
            record.start_snapshot = Some(start);
            // The new session first, then the old one goes: a failure leaves the learner one.
            if let Err(err) = state
                .sessions
                .delete(caller.clone(), session_id.clone())
                .await
            {
                tracing::warn!(session = %session_id, %err, "removing a restarted lab's old session");
            }
            record.attempt.session_id = session.id;
            record.attempt.last_result = None;
            record.hints_shown.clear();
        }
    }
    record.attempt.step = target;
    record.attempt.completed_at = None;
    record.attempt.duration_seconds = None;
    record.hints_shown.remove(&target);
    state.store.put_attempt(&record).await?;
    Ok(view(&record, Some(SessionState::Running)))
}

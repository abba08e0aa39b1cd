//! A judging: one step's checks run in order against the live session, in the control plane,
//! one judging per session at a time and within `labs.judge_timeout_seconds`. The session is
//! never asked whether it passed: files are read through its agent, images built and run
//! through its Docker API (its policy applies), and servers probed from here.

use std::{collections::BTreeMap, time::Instant};

use berth_proto::{ErrorCode, lab::JudgeResult};
use chrono::Utc;

use super::{
    attempts::{self, Script},
    checks,
};
use crate::{
    api::{AppState, docker::session_docker, error::ApiError, session_agent::SessionAgent},
    auth::Principal,
    docker_api::Engine,
    labs::Lab,
};

/// What the checks of one judging share.
pub struct Judging<'a> {
    pub state: &'a AppState,
    pub agent: SessionAgent,
    /// The session's Docker API, for labs with Docker.
    pub engine: Option<Engine>,
    /// Images this judging built, by the tag their `docker_build` check named.
    pub built: BTreeMap<String, String>,
    /// What a check changed and has not put back yet: undone when the judging ends, also when
    /// it ran out of time in the middle of that check.
    pub undo: Vec<Undo>,
}

/// A change the judge made to the session, and how to take it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// A container the judge started.
    Container(String),
    /// Paths the judge planted (`rm -rf` in `dir`).
    Planted { dir: String, paths: Vec<String> },
    /// A file the judge changed, with what it held.
    Rewritten { path: String, original: Vec<u8> },
}

/// Judges in a task of its own: a caller who hangs up does not stop it half-way, with its
/// containers running or its planted files in the learner's home.
pub async fn judge(
    state: &AppState,
    caller: &Principal,
    lab: &std::sync::Arc<Lab>,
    step: Option<u32>,
) -> Result<JudgeResult, ApiError> {
    let (state, caller, lab) = (state.clone(), caller.clone(), lab.clone());
    tokio::spawn(async move { judge_here(&state, &caller, &lab, step).await })
        .await
        .map_err(ApiError::internal)?
}

async fn judge_here(
    state: &AppState,
    caller: &Principal,
    lab: &Lab,
    step: Option<u32>,
) -> Result<JudgeResult, ApiError> {
    let (record, _claim) = attempts::claimed(state, caller, lab).await?;
    let session_id = record.attempt.session_id.clone();
    let current = record.attempt.step;
    let number = step.unwrap_or(current.min(lab.step_count()));
    if number == 0 || number > lab.step_count() {
        return Err(ApiError::invalid_request(format!(
            "step: from 1 to {}, the lab's steps",
            lab.step_count()
        )));
    }
    if number > current {
        return Err(ApiError::invalid_request(format!(
            "step {number} is not reached yet; pass step {current} first"
        )));
    }
    let started = Instant::now();
    let engine = if lab.file.docker {
        Some(session_docker(state, caller, &session_id).await?.1)
    } else {
        None
    };
    let mut judging = Judging {
        state,
        agent: SessionAgent::reach(state, caller, &session_id).await?,
        engine,
        built: BTreeMap::new(),
        undo: Vec::new(),
    };
    let step_def = lab.step(number).expect("a step in range");
    let timeout = state.labs.judge_timeout;
    let mut results = Vec::new();
    let ran = tokio::time::timeout(timeout, async {
        for check in step_def.checks() {
            results.push(checks::run(&mut judging, step_def, check).await);
        }
    })
    .await;
    checks::undo_all(&mut judging).await;
    ran.map_err(|_| {
        ApiError::coded(
            ErrorCode::Timeout,
            format!(
                "the judging ran out of its {} s; a build or a server may hang: look at the \
                 terminal, then check again",
                timeout.as_secs()
            ),
        )
    })?;

    let passed = results.iter().all(|c| c.passed);
    let now = Utc::now();
    let result = JudgeResult {
        passed,
        step: number,
        checks: results,
        completed: false,
        judged_at: now,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    // Read again: a hint shown while the checks ran is kept.
    let (mut record, _) = attempts::active(state, caller, lab).await?;
    let advanced = passed && number == record.attempt.step;
    if advanced {
        record.attempt.step += 1;
    }
    let completed = record.attempt.step > lab.step_count();
    if advanced && completed {
        record.attempt.completed_at = Some(now);
        record.attempt.duration_seconds =
            u64::try_from((now - record.attempt.started_at).num_seconds()).ok();
    }
    let result = JudgeResult {
        completed,
        ..result
    };
    record.attempt.judgings = record.attempt.judgings.saturating_add(1);
    record.attempt.last_result = Some(result.clone());
    state.store.put_attempt(&record).await?;
    if advanced && !completed {
        // The pass stands whatever the next step's setup does; a reset of that step runs it
        // again.
        let next = record.attempt.step;
        if let Err(err) =
            attempts::run_step_script(state, &judging.agent, lab, next, Script::Setup).await
        {
            tracing::warn!(lab = lab.id(), step = next, message = %err.message, "a step's setup failed");
        }
    }
    Ok(result)
}

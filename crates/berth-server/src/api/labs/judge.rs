//! A judging: one step's checks run in order against the live session, in the control plane,
//! one judging per session at a time and within `labs.judge_timeout_seconds`. The session is
//! never asked whether it passed: files are read through its agent, images built and run
//! through its Docker API (its policy applies), and servers probed from here.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use berth_proto::{
    ErrorCode,
    lab::{CheckResult, JudgeResult},
};
use chrono::Utc;

use super::{
    Claim,
    attempts::{self, Script},
    checks, judging_now,
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
    /// Containers this judging started: removed when it ends, also when it runs out of time.
    pub containers: Arc<Mutex<Vec<String>>>,
}

pub async fn judge(
    state: &AppState,
    caller: &Principal,
    lab: &Lab,
    step: Option<u32>,
) -> Result<JudgeResult, ApiError> {
    let (mut record, _) = attempts::active(state, caller, lab).await?;
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
    let Some(_judging) = Claim::take(&state.labs.judging, session_id.clone()) else {
        return Err(judging_now(&session_id));
    };
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
        containers: Arc::default(),
    };
    let containers = judging.containers.clone();
    let step_def = lab.step(number).expect("a step in range");
    let timeout = state.labs.judge_timeout;
    let ran = tokio::time::timeout(timeout, async {
        let mut results = Vec::new();
        for check in step_def.checks() {
            results.push(checks::run(&mut judging, step_def, check).await);
        }
        results
    })
    .await;
    // Whatever happened, the judge's own containers go.
    let engine = session_docker(state, caller, &session_id)
        .await
        .ok()
        .map(|(_, e)| e);
    let leftover = std::mem::take(&mut *containers.lock().unwrap_or_else(|p| p.into_inner()));
    if let Some(engine) = engine {
        for container in leftover {
            let _ = crate::api::docker::run::remove(&engine, &container).await;
        }
    }
    let checks: Vec<CheckResult> = ran.map_err(|_| {
        ApiError::coded(
            ErrorCode::Timeout,
            format!(
                "the judging ran out of its {} s; a build or a server may hang: look at the \
                 terminal, then check again",
                timeout.as_secs()
            ),
        )
    })?;

    let passed = checks.iter().all(|c| c.passed);
    let now = Utc::now();
    let advanced = passed && number == current;
    if advanced {
        record.attempt.step = current + 1;
    }
    let completed = record.attempt.step > lab.step_count();
    if advanced && completed {
        record.attempt.completed_at = Some(now);
        record.attempt.duration_seconds =
            u64::try_from((now - record.attempt.started_at).num_seconds()).ok();
    }
    let result = JudgeResult {
        passed,
        step: number,
        checks,
        completed,
        judged_at: now,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    record.attempt.judgings = record.attempt.judgings.saturating_add(1);
    record.attempt.last_result = Some(result.clone());
    state.store.put_attempt(&record).await?;
    if advanced && !completed {
        attempts::run_step_script(
            state,
            &judging.agent,
            lab,
            record.attempt.step,
            Script::Setup,
        )
        .await?;
    }
    Ok(result)
}

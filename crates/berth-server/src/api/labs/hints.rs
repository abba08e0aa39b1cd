//! Hints: the step's own ladder first, in order, then the assistant, grounded in the
//! learner's files, terminal and latest check results, within its rates.

use std::time::{Duration, Instant};

use axum::body::Body;
use berth_proto::{ErrorCode, lab::Hint, process::TerminalTail};
use chrono::Utc;
use http_body_util::BodyExt;

use super::{LabsService, attempts};
use crate::{
    api::{AppState, error::ApiError, session_agent::SessionAgent},
    auth::Principal,
    labs::{
        Lab,
        assistant::{Assistant, AssistantError},
        prompt::{self, Ask, Context},
    },
    store::AttemptRecord,
};

const MAX_QUESTION_CHARS: usize = 2000;

pub async fn hint(
    state: &AppState,
    caller: &Principal,
    lab: &Lab,
    question: Option<String>,
) -> Result<Hint, ApiError> {
    let question = checked_question(question)?;
    let (mut record, _) = attempts::active(state, caller, lab).await?;
    let number = record.attempt.step.min(lab.step_count());
    let step = lab.step(number).expect("a step in range");
    let shown = record.hints_shown.get(&number).copied().unwrap_or(0);
    let assistant = assistant_for(state, lab);
    let ladder_next = step.file.hints.get(shown as usize);
    // The ladder first; a question goes to the assistant when there is one, as the ladder
    // answers no questions.
    let to_assistant = assistant.filter(|_| question.is_some() || ladder_next.is_none());
    if let Some(assistant) = to_assistant {
        let text = ask(state, caller, lab, assistant, &record, Ask::Hint, question).await?;
        return Ok(Hint {
            source: "ai".into(),
            text,
            step: number,
            level: None,
            remaining_static: remaining(lab, number, shown),
        });
    }
    let Some(text) = ladder_next else {
        return Err(ApiError::coded(
            ErrorCode::Conflict,
            "no hints are left for this step; read the failing checks' messages, or ask your \
             operator to configure an assistant ([ai] in berth.toml)",
        ));
    };
    record.hints_shown.insert(number, shown + 1);
    state.store.put_attempt(&record).await?;
    Ok(Hint {
        source: "static".into(),
        text: text.clone(),
        step: number,
        level: Some(shown + 1),
        remaining_static: remaining(lab, number, shown + 1),
    })
}

/// Static hints of step `number` not shown yet, `shown` having been.
fn remaining(lab: &Lab, number: u32, shown: u32) -> u32 {
    let ladder = lab.step(number).map_or(0, |s| s.file.hints.len());
    u32::try_from(ladder)
        .unwrap_or(u32::MAX)
        .saturating_sub(shown)
}

pub async fn explain(
    state: &AppState,
    caller: &Principal,
    lab: &Lab,
    question: Option<String>,
) -> Result<Hint, ApiError> {
    let question = checked_question(question)?;
    let (record, _) = attempts::active(state, caller, lab).await?;
    let Some(assistant) = assistant_for(state, lab) else {
        return Err(ApiError::coded(
            ErrorCode::Conflict,
            "explanations come from the assistant, and none is configured for this lab \
             ([ai] in berth.toml, `[ai] enabled` in its lab.toml)",
        ));
    };
    let number = record.attempt.step.min(lab.step_count());
    let shown = record.hints_shown.get(&number).copied().unwrap_or(0);
    let text = ask(
        state,
        caller,
        lab,
        assistant,
        &record,
        Ask::Explain,
        question,
    )
    .await?;
    Ok(Hint {
        source: "ai".into(),
        text,
        step: number,
        level: None,
        remaining_static: remaining(lab, number, shown),
    })
}

fn checked_question(question: Option<String>) -> Result<Option<String>, ApiError> {
    match question {
        Some(q) if q.chars().count() > MAX_QUESTION_CHARS => Err(ApiError::invalid_request(
            format!("question: at most {MAX_QUESTION_CHARS} characters"),
        )),
        Some(q) if q.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn assistant_for<'a>(state: &'a AppState, lab: &Lab) -> Option<&'a Assistant> {
    state
        .labs
        .assistant
        .as_ref()
        .filter(|_| lab.file.ai.enabled)
}

async fn ask(
    state: &AppState,
    caller: &Principal,
    lab: &Lab,
    assistant: &Assistant,
    record: &AttemptRecord,
    what: Ask,
    question: Option<String>,
) -> Result<String, ApiError> {
    let number = record.attempt.step.min(lab.step_count());
    admit(&state.labs, &record.attempt.session_id, &caller.name)?;
    let agent = SessionAgent::reach(state, caller, &record.attempt.session_id).await?;
    let context = Context {
        files: learner_files(state, &agent, lab).await,
        terminal: terminal_tail(state, &agent).await,
        last_result: record.attempt.last_result.clone(),
        question,
    };
    let step = lab.step(number).expect("a step in range");
    let messages = prompt::messages(lab, step, number, what, &context);
    assistant.ask(&messages).await.map_err(|err| match err {
        AssistantError::Timeout(_) => ApiError::coded(ErrorCode::Timeout, err.to_string()),
        AssistantError::Provider(_) => ApiError::coded(ErrorCode::UpstreamFailed, err.to_string()),
    })
}

/// Counts an assistant answer against the session's per-minute and the user's daily rate, or
/// answers `429` with when to retry.
fn admit(labs: &LabsService, session: &str, user: &str) -> Result<(), ApiError> {
    let mut usage = labs.usage.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let minute = Duration::from_secs(60);
    let recent = usage.per_session.entry(session.to_owned()).or_default();
    while recent
        .front()
        .is_some_and(|at| now.duration_since(*at) >= minute)
    {
        recent.pop_front();
    }
    if recent.len() >= labs.limits.rpm_per_session as usize {
        let wait = minute.saturating_sub(now.duration_since(recent[0]));
        return Err(ApiError::limited(
            format!(
                "the assistant answers at most {} times a minute per session; retry in {} s",
                labs.limits.rpm_per_session,
                wait.as_secs().max(1)
            ),
            wait,
        ));
    }
    let today = Utc::now().date_naive();
    let (day, count) = usage.per_user.entry(user.to_owned()).or_insert((today, 0));
    if *day != today {
        *day = today;
        *count = 0;
    }
    if *count >= labs.limits.daily_per_user {
        let tomorrow = today
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        let wait = tomorrow
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        return Err(ApiError::limited(
            format!(
                "you have had the assistant's {} answers for today; the lab's own hints and the \
                 checks' messages still work",
                labs.limits.daily_per_user
            ),
            wait,
        ));
    }
    *count += 1;
    usage
        .per_session
        .entry(session.to_owned())
        .or_default()
        .push_back(now);
    // Sessions that went quiet are forgotten, so the map does not grow with every session.
    usage.per_session.retain(|_, times| {
        times
            .back()
            .is_some_and(|at| now.duration_since(*at) < minute)
    });
    Ok(())
}

/// The lab's `[ai] files` as the session has them, each capped; missing ones left out.
async fn learner_files(state: &AppState, agent: &SessionAgent, lab: &Lab) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for path in &lab.file.ai.files {
        let Ok(query) = serde_urlencoded::to_string([("path", path.as_str())]) else {
            continue;
        };
        let Ok(request) =
            hyper::Request::get(format!("/files/content?{query}")).body(Body::empty())
        else {
            continue;
        };
        let Ok(response) = agent.send(state, request).await else {
            continue;
        };
        // Read just past the cap, however large the file, so `capped` can say it cut.
        let head = read_head(response, prompt::MAX_FILE_BYTES + 1).await;
        let text = String::from_utf8_lossy(&head);
        files.push((path.clone(), prompt::capped(&text, prompt::MAX_FILE_BYTES)));
    }
    files
}

/// The first `max` bytes of an answer's body, or fewer when it ends first; the rest unread.
async fn read_head(response: hyper::Response<Body>, max: usize) -> Vec<u8> {
    let mut body = response.into_body();
    let mut head = Vec::new();
    while head.len() < max {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    head.truncate(max);
    head
}

/// The end of the session's terminals as text; empty when the agent cannot say.
async fn terminal_tail(state: &AppState, agent: &SessionAgent) -> String {
    let tails: Vec<TerminalTail> = agent
        .call(
            state,
            hyper::Method::GET,
            "/terminals/tail?bytes=8192",
            None,
        )
        .await
        .unwrap_or_default();
    let joined: String = tails
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    prompt::terminal_text(&joined, prompt::MAX_TERMINAL_CHARS)
}

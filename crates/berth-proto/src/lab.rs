//! Labs: hands-on lessons in a session, a judge that grades it, and hints (docs/labs.md).
//!
//! Steps are numbered from 1 on the wire, as people count them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One lab of the catalogue, `GET /api/v1/labs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabSummary {
    /// The slug: the lab's directory name, used in every lab route.
    pub id: String,
    pub title: String,
    pub summary: String,
    /// `beginner`, `intermediate` or `advanced`.
    pub difficulty: String,
    /// The template its sessions are made from.
    pub template: String,
    /// How long an attempt's session lives.
    pub ttl_minutes: u64,
    /// Its sessions have a Docker of their own.
    pub docker: bool,
    pub step_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabList {
    pub labs: Vec<LabSummary>,
}

/// `GET /api/v1/labs/{slug}`: the lab with its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lab {
    #[serde(flatten)]
    pub summary: LabSummary,
    pub steps: Vec<LabStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabStep {
    /// 1 for the first step.
    pub number: u32,
    pub id: String,
    pub title: String,
    /// The step's text as its author wrote it.
    pub markdown: String,
    /// The same rendered to HTML, with any HTML of the author's escaped: safe to insert.
    pub html: String,
    /// How many static hints the step has (`POST .../hint` gives them in order).
    pub hints: u32,
    pub checks: Vec<LabCheckInfo>,
}

/// What a check is about, before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabCheckInfo {
    pub id: String,
    pub title: String,
}

/// One user's attempt at a lab: its session and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabAttempt {
    pub id: String,
    pub lab: String,
    pub owner: String,
    pub session_id: String,
    /// The step being worked on (1-based); `steps + 1` once every step has passed.
    pub step: u32,
    pub steps: u32,
    pub started_at: DateTime<Utc>,
    /// When the last step passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// How long it took, start to the last step passed, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// Judgings asked for.
    pub judgings: u32,
    /// Static hints shown for the current step.
    pub hints_shown: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<JudgeResult>,
    /// The session's state now (`running`, `hibernated`, `stopped`...): an attempt whose
    /// session has ended is no longer active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_state: Option<crate::SessionState>,
}

/// What a judging found, `POST /api/v1/labs/{slug}/judge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JudgeResult {
    /// Every check of the step passed.
    pub passed: bool,
    /// The step judged (1-based).
    pub step: u32,
    pub checks: Vec<CheckResult>,
    /// Every step of the lab has passed.
    pub completed: bool,
    pub judged_at: DateTime<Utc>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub passed: bool,
    /// What passed, or what is wrong, for the learner.
    pub message: String,
    /// What to try, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// What it measured (`size_mb`, `layers`, `status`...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    pub duration_ms: u64,
}

/// `POST /api/v1/labs/{slug}/judge`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JudgeRequest {
    /// The step to judge (1-based): the attempt's current one when omitted; an earlier one
    /// may be judged again, a later one not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
}

/// `POST /api/v1/labs/{slug}/reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub mode: ResetMode,
    /// For `step` and `skip_to`: the step (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResetMode {
    /// Run the step's `setup` again and make it the current step.
    Step,
    /// Run the `solve` of every step before it, then its `setup`: the learner goes on from
    /// there.
    SkipTo,
    /// The session's files back to how the lab started (the snapshot taken at start), step 1.
    Restart,
}

/// `POST /api/v1/labs/{slug}/hint` and `.../explain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HintRequest {
    /// The learner's question, or for `explain` the text to explain (an error, a line of the
    /// Dockerfile). At most 2,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

/// A hint: the step's own, in order, then the assistant's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hint {
    /// `static` (the lab's hint ladder) or `ai`.
    pub source: String,
    pub text: String,
    /// The step it is for (1-based).
    pub step: u32,
    /// For a static hint: its place on the ladder (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// Static hints of the step not yet shown.
    pub remaining_static: u32,
}

/// `POST /agent/hint` and `/agent/explain`, seed 004's routes: the lab named in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentHintRequest {
    pub lab: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

/// `GET /api/v1/labs/progress`: the caller's attempts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabProgress {
    pub attempts: Vec<LabAttempt>,
}

/// `POST /api/v1/classes`: a class, a roster of users an instructor teaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateClass {
    /// For people: 1 to 64 characters, not all blank, none of them control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 64,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: String,
    /// The learners' user names.
    pub members: Vec<String>,
    /// How many of its members' lab sessions may live at once; unlimited when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Int64, minimum = 1, maximum = 4294967295_u64))]
    pub max_sessions: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Class {
    pub id: String,
    pub name: String,
    /// The instructor who made it.
    pub instructor: String,
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassList {
    pub classes: Vec<Class>,
}

/// `GET /api/v1/classes/{id}`: the class and where each learner stands, now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassView {
    #[serde(flatten)]
    pub class: Class,
    pub learners: Vec<Learner>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Learner {
    pub user: String,
    /// Their newest attempt at each lab, newest first.
    pub attempts: Vec<LabAttempt>,
}

/// `POST /api/v1/classes/{id}/labs/{slug}/start`: what happened for each member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassStart {
    pub started: Vec<MemberStart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberStart {
    pub user: String,
    /// The attempt, started or already active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<LabAttempt>,
    /// Why it was not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ErrorDetail>,
}

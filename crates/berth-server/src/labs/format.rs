//! `lab.toml` as its author writes it. docs/labs.md is the guide; these types are the truth.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    /// The slug; must be the directory's name.
    pub id: String,
    pub title: String,
    pub summary: String,
    #[serde(default = "default_difficulty")]
    pub difficulty: String,
    /// A template of the configuration; `docker` labs need one with `docker.enabled`.
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default = "default_ttl_minutes")]
    pub ttl_minutes: u64,
    /// The lab needs Docker in its session.
    #[serde(default)]
    pub docker: bool,
    #[serde(default)]
    pub ai: LabAi,
    pub steps: Vec<StepFile>,
}

/// `[ai]` of a lab: what the assistant may see of the learner's session.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabAi {
    /// The assistant answers once the static hints are used up (when `[ai]` is configured).
    pub enabled: bool,
    /// Files of the session's home the assistant reads (each capped at 8 KiB).
    pub files: Vec<String>,
    /// Said to the assistant before anything else, after Berth's own rules.
    pub instructions: String,
}

impl Default for LabAi {
    fn default() -> Self {
        Self {
            enabled: true,
            files: Vec::new(),
            instructions: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    pub id: String,
    pub title: String,
    /// The step's markdown, relative to the lab's directory (`steps/01-write.md`).
    pub text: String,
    /// A shell script run in the session (as its user, in its home) when the step begins;
    /// it must be safe to run twice.
    #[serde(default)]
    pub setup: Option<String>,
    /// A shell script that does the step, for "skip to step N".
    #[serde(default)]
    pub solve: Option<String>,
    /// The hint ladder, most general first.
    #[serde(default)]
    pub hints: Vec<String>,
    #[serde(default)]
    pub checks: Vec<CheckFile>,
}

/// Unknown keys are refused by the kind's own fields (`deny_unknown_fields` cannot sit beside
/// `flatten` here).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CheckFile {
    pub id: String,
    pub title: String,
    /// What to try when it fails; a script's own `hint` wins.
    #[serde(default)]
    pub hint: Option<String>,
    #[serde(flatten)]
    pub kind: CheckKind,
}

/// What a check tests. Paths are relative to the session's home (`/home/user`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckKind {
    /// The file exists in the session.
    FileExists { path: String },
    /// The file's text matches every regular expression of `matches` and none of
    /// `not_matches` (multi-line mode: `^` and `$` match at lines).
    FileMatches {
        path: String,
        #[serde(default)]
        matches: Vec<String>,
        #[serde(default)]
        not_matches: Vec<String>,
    },
    /// A shell command in the session: its exit code, and its stdout matching `stdout`.
    Command {
        run: String,
        #[serde(default)]
        exit_code: i64,
        #[serde(default)]
        stdout: Option<String>,
    },
    /// Builds a directory of the session through its Docker (its policy applies), tagged
    /// `tag` for the checks after it. `plant` writes files into the context first (and
    /// removes them after), to prove what `.dockerignore` keeps out.
    DockerBuild {
        #[serde(default = "default_context")]
        context: String,
        #[serde(default)]
        dockerfile: Option<String>,
        tag: String,
        #[serde(default)]
        plant: BTreeMap<String, String>,
        /// Build twice, changing this file of the context in between: the second build must
        /// reuse the layers before the first step that `COPY`s it.
        #[serde(default)]
        cached_after_touching: Option<String>,
    },
    /// The image a `docker_build` made is smaller than `max_mb`.
    ImageSizeBelow { image: String, max_mb: u64 },
    /// The image's history: at most `max_layers` layers that add files, and every
    /// regular expression of `created_by` matching some step that made it.
    ImageLayers {
        image: String,
        #[serde(default)]
        max_layers: Option<u32>,
        #[serde(default)]
        created_by: Vec<String>,
    },
    /// An HTTP GET answered with `status` (and a body matching `body`): on a container of
    /// `image`, run by the judge, at its `port`; or on the session's own `port`.
    HttpProbe {
        #[serde(default)]
        image: Option<String>,
        port: u16,
        #[serde(default = "default_probe_path")]
        path: String,
        #[serde(default = "default_status")]
        status: u16,
        #[serde(default)]
        body: Option<String>,
    },
    /// Rules on the Dockerfile's instructions.
    Dockerfile {
        #[serde(default = "default_dockerfile")]
        path: String,
        rules: Vec<DockerfileRule>,
    },
    /// A script of the lab's `checks/`: exit 0 passes; a failure explains itself with a
    /// `FAIL: ...` line or a JSON line `{"message": ..., "hint": ...}`. It runs in the session
    /// (`run_in = "session"`), or in a fresh container of an image the judge built
    /// (`run_in = "image"`), where the session cannot change what it sees.
    Script {
        script: String,
        #[serde(default)]
        run_in: ScriptPlace,
        #[serde(default)]
        image: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptPlace {
    #[default]
    Session,
    Image,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum DockerfileRule {
    /// At least `stages` `FROM`s (2 when omitted).
    MultiStage {
        #[serde(default = "default_stages")]
        stages: u32,
    },
    /// The first instruction matching `first` comes before the first matching `then`
    /// (regular expressions on whole instructions, `COPY requirements.txt` say).
    Order { first: String, then: String },
    /// Some instruction matches.
    Has { matches: String },
    /// No instruction matches.
    HasNot { matches: String },
}

fn default_difficulty() -> String {
    "beginner".to_owned()
}

fn default_template() -> String {
    "default".to_owned()
}

fn default_ttl_minutes() -> u64 {
    30
}

fn default_context() -> String {
    ".".to_owned()
}

fn default_probe_path() -> String {
    "/".to_owned()
}

fn default_status() -> u16 {
    200
}

fn default_dockerfile() -> String {
    "Dockerfile".to_owned()
}

fn default_stages() -> u32 {
    2
}

//! Running things inside a session: buffered exec, and the terminal's control messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST .../exec`: runs `cmd` (no shell unless you ask for one) and answers when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments, e.g. `["sh", "-c", "echo hi"]`.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, pattern = r"^[^\u0000]*$"))]
    pub cmd: Vec<String>,
    /// Working directory; `/home/user` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\u0000]*$"))]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schemas::process_env))]
    pub env: BTreeMap<String, String>,
    /// Written to the process's standard input, which is then closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// The whole process group is killed after this long; the answer then says `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A background process (`POST .../processes`) started with this keeps its session awake
    /// while it runs: the idle policy counts it as work (a long build, a server).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keepalive: bool,
    /// Runs the process under a terminal of this size (streamed and background processes
    /// only): programs see a TTY, so colours, prompts and line editing work; stdout and stderr
    /// arrive merged, as a terminal shows them, tagged stdout. A `resize` frame changes the
    /// size; closing stdin types ^D.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<PtySize>,
}

/// `POST .../exec`'s body: an [`ExecRequest`] without `pty`, since this answer holds stdout and
/// stderr apart and a terminal merges them (streamed and background processes take one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecOnce {
    /// Program and arguments, e.g. `["sh", "-c", "echo hi"]`.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, pattern = r"^[^\u0000]*$"))]
    pub cmd: Vec<String>,
    /// Working directory; `/home/user` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\u0000]*$"))]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schemas::process_env))]
    pub env: BTreeMap<String, String>,
    /// Written to the process's standard input, which is then closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// The whole process group is killed after this long; the answer then says `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Taken for an [`ExecRequest`]'s sake; a buffered exec ends with its request anyway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keepalive: bool,
}

impl From<ExecOnce> for ExecRequest {
    fn from(once: ExecOnce) -> Self {
        Self {
            cmd: once.cmd,
            cwd: once.cwd,
            env: once.env,
            stdin: once.stdin,
            timeout_ms: once.timeout_ms,
            keepalive: once.keepalive,
            pty: None,
        }
    }
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PtySize {
    #[cfg_attr(feature = "openapi", schema(maximum = 65535))]
    pub cols: u16,
    #[cfg_attr(feature = "openapi", schema(maximum = 65535))]
    pub rows: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecResult {
    /// `None` when the process was ended by a signal.
    pub exit_code: Option<i32>,
    /// The signal that ended the process, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Output beyond the cap (1 MiB per stream) was dropped.
    pub truncated: bool,
    pub timed_out: bool,
    pub duration_ms: u64,
}

/// Text frames a terminal client sends; binary frames are keystrokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalClientMessage {
    Resize { cols: u16, rows: u16 },
}

/// Text frames a terminal sends; binary frames are its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalServerMessage {
    /// First message on every connection: which terminal this is (reattach with it).
    Ready { terminal_id: String },
    /// The terminal's shell ended; the connection closes after this.
    Exit { code: Option<i32> },
}

/// The agent's `GET /terminals/tail`: the end of each live terminal's output, for the labs
/// assistant's view of what the learner ran, and an instructor's list of a learner's terminals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerminalTail {
    pub terminal_id: String,
    /// The last bytes of its scrollback (as the agent keeps it, escape sequences and all),
    /// read as UTF-8 with invalid bytes replaced.
    pub text: String,
}

/// Query of `GET .../terminal`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct TerminalQuery {
    /// Reattach to this live terminal (its scrollback is replayed first); a new one otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
    /// Watch without typing.
    #[serde(default)]
    pub readonly: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    /// Where a new terminal's shell starts; `/home/user` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// First byte of every binary frame a process stream sends: which stream the rest came from.
pub const STDOUT_TAG: u8 = 1;
pub const STDERR_TAG: u8 = 2;

/// Text frames a process stream sends: `start`, then binary output frames, then `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProcessEvent {
    Start {
        id: String,
        pid: u32,
        /// The process runs under a terminal (`pty`): its output is the terminal's.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pty: bool,
    },
    End {
        exit_code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
    },
    Error {
        message: String,
    },
}

/// Text frames a client sends on a process stream (binary frames are stdin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProcessInput {
    CloseStdin,
    Signal {
        signal: i32,
    },
    /// For a process started with `pty`; ignored otherwise.
    Resize {
        cols: u16,
        rows: u16,
    },
}

/// `POST .../processes/{pid}/signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// Signal number, e.g. 15 (SIGTERM), 9 (SIGKILL), 2 (SIGINT).
    pub signal: i32,
}

/// A process started with `POST .../processes`, as `GET .../processes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessInfo {
    /// Attach, write stdin and signal with this id.
    pub id: String,
    pub pid: u32,
    pub cmd: Vec<String>,
    pub running: bool,
    /// Started with `keepalive`: the session stays awake while it runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keepalive: bool,
    /// Started with `pty`: it runs under a terminal, resized with `.../resize`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessList {
    pub processes: Vec<ProcessInfo>,
}

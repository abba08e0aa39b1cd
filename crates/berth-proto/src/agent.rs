//! The protocol between the control plane and `berth-agent` inside each session.

use serde::{Deserialize, Serialize};

/// The port the agent listens on inside every session container. The control plane reaches it
/// over the container network (`<container ip>:7681` on one host, `session-<id>:7681` on Swarm);
/// it is never published on the host.
pub const AGENT_PORT: u16 = 7681;

/// Bumped on every incompatible change of the agent protocol. The control plane refuses to
/// mark a session `running` when its agent speaks another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Environment variable carrying the per-session secret into the agent. The agent removes it
/// from the environment it hands to user processes.
pub const SECRET_ENV: &str = "BERTH_AGENT_SECRET";

/// Environment variable with the largest file a single upload may write, in bytes.
pub const MAX_FILE_BYTES_ENV: &str = "BERTH_AGENT_MAX_FILE_BYTES";

/// Header carrying the per-session secret on every request to the agent.
pub const SECRET_HEADER: &str = "x-berth-agent-secret";

/// `GET /health` on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub protocol: u32,
    pub version: String,
}

/// The OSC sequence a terminal's shell prints after each command (the prompt hook the agent
/// installs): `ESC ] 6973 ; <exit code> ; <command line> BEL`. The agent takes it out of the
/// output and keeps it in its journal.
pub const COMMAND_MARK: &[u8] = b"\x1b]6973;";

/// One thing the agent saw happen in the session, for its timeline: `GET /journal` shows what
/// it kept, and keeps it until `POST /journal/ack` says the timeline has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The entry's place in this agent's journal, from 1; an acknowledgement names the last
    /// one kept. 0 from an agent that hands entries over once (`POST /journal/take`).
    #[serde(default)]
    pub seq: u64,
    pub at: chrono::DateTime<chrono::Utc>,
    /// `command` (a terminal's command line and its exit code), `process_exited`,
    /// `port_opened`, `port_closed`.
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// `GET /journal`'s answer, oldest first. `boot` names this run of the agent: sequence
/// numbers start again when it restarts. `acked` is the last sequence number acknowledged in
/// this run; entries between it and the first one kept did not fit the journal (it keeps the
/// newest). An agent of an older image answers `POST /journal/take` with this too, without
/// `boot` and sequence numbers, having forgotten what it handed over; its `dropped` counts
/// what did not fit since its last take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    #[serde(default)]
    pub boot: String,
    #[serde(default)]
    pub acked: u64,
    pub entries: Vec<JournalEntry>,
    #[serde(default)]
    pub dropped: u64,
}

/// `POST /journal/ack`: the timeline keeps the entries of run `boot` up to `seq`; the agent
/// forgets them. An acknowledgement for another run (the agent restarted) changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalAck {
    pub boot: String,
    pub seq: u64,
}

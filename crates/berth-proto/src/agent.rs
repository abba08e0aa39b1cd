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

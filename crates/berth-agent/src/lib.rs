//! `berth-agent`: the process that serves one session from inside its container.
//!
//! The control plane talks to it over the container network, authenticating every request with
//! the per-session secret generated at create. It runs as the session user (uid 1000), so every
//! terminal, process and file operation has exactly the user's permissions, and it makes itself
//! non-dumpable so the user's processes can neither read its memory nor its environment.
//!
//! This crate is both the binary baked into session images and a library, so the control
//! plane's fast tests serve the very same router in-process.

pub mod callback_relay;
mod dockerignore;
mod error;
mod exec;
mod files;
pub mod init;
mod journal;
mod output;
mod polled_watches;
mod ports;
mod processes;
pub mod relays;
mod terminal;
mod user;
mod watch;

use std::{path::PathBuf, sync::Arc};

use axum::{
    Json, Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use berth_proto::agent::{Health, PROTOCOL_VERSION, SECRET_HEADER};

pub use error::AgentError;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub secret: String,
    /// The session user's home: relative paths start here, processes start here.
    pub home: PathBuf,
    pub max_file_bytes: u64,
}

impl AgentConfig {
    /// Home from `$HOME` (the image sets `/home/user`), limits from the environment.
    pub fn from_env(secret: String) -> Self {
        let home =
            std::env::var_os("HOME").map_or_else(|| PathBuf::from("/home/user"), PathBuf::from);
        let max_file_bytes = std::env::var(berth_proto::agent::MAX_FILE_BYTES_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4 * 1024 * 1024 * 1024);
        Self {
            secret,
            home,
            max_file_bytes,
        }
    }
}

#[derive(Debug, Clone)]
struct AgentState {
    config: Arc<AgentConfig>,
    terminals: terminal::Registry,
    processes: processes::Registry,
    /// What happened, for the session's timeline, until the control plane has it.
    journal: journal::Journal,
    polled_watches: polled_watches::PolledWatches,
    /// Variables every process started from now on gets, set when a pooled session is claimed.
    session_env: Arc<std::sync::RwLock<std::collections::BTreeMap<String, String>>>,
}

impl AgentState {
    fn session_env(&self) -> std::collections::BTreeMap<String, String> {
        self.session_env
            .read()
            .map(|env| env.clone())
            .unwrap_or_default()
    }
}

/// One agent: what it serves, and what it saves before it stops.
#[derive(Debug, Clone)]
pub struct Agent {
    state: AgentState,
}

impl Agent {
    /// An agent for `config`; terminals a predecessor saved in the same home are restored when
    /// first attached to.
    pub fn new(config: AgentConfig) -> Self {
        Self {
            state: AgentState {
                terminals: terminal::Registry::new(&config.home),
                config: Arc::new(config),
                processes: processes::Registry::default(),
                journal: journal::Journal::default(),
                polled_watches: polled_watches::PolledWatches::default(),
                session_env: Arc::default(),
            },
        }
    }

    /// Notes ports opening and closing in the journal, for the session's timeline.
    pub fn watch_ports(&self) {
        self.state.journal.watch_ports();
    }

    /// The agent's HTTP surface. Every route requires the session secret.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        Router::new()
            .route("/health", get(health))
            .route("/journal", get(journal::read))
            .route("/journal/ack", post(journal::ack))
            .route("/env", axum::routing::put(set_env))
            .route("/exec", post(exec::run))
            .route("/exec/stream", get(processes::stream))
            .route("/processes", get(processes::list).post(processes::start))
            .route("/processes/{id}/attach", get(processes::attach))
            .route("/processes/{id}/stdin", post(processes::write_stdin))
            .route("/processes/{id}/stdin/close", post(processes::close_stdin))
            .route("/processes/{id}/signal", post(processes::signal))
            .route("/processes/{id}/resize", post(processes::resize))
            .route("/terminal", get(terminal::attach))
            .route("/terminals/tail", get(terminal::tail))
            .route("/files", get(files::list).delete(files::remove))
            .route("/files/stat", get(files::stat))
            .route("/files/content", get(files::read).put(files::write))
            .route("/files/mkdir", post(files::mkdir))
            .route("/files/move", post(files::rename))
            .route(
                "/files/archive",
                get(files::download_archive).put(files::upload_archive),
            )
            .route("/files/watch", get(watch::watch))
            .route("/watches", post(polled_watches::start))
            .route("/watches/{id}/events", get(polled_watches::events))
            .route(
                "/watches/{id}",
                axum::routing::delete(polled_watches::remove),
            )
            .route("/ports", get(ports::list))
            .route("/ports/watch", get(ports::watch))
            .fallback(|| async { AgentError::not_found("no such agent route") })
            .layer(middleware::from_fn_with_state(
                state.clone(),
                require_secret,
            ))
            .with_state(state)
    }

    /// Saves every running terminal in the home, for the agent that serves it next (after the
    /// container is started again, or restored from a commit of it). The server does this when
    /// told to stop, before init tells the shells.
    pub async fn save_terminals(&self) {
        self.state.terminals.save().await;
    }
}

/// The HTTP surface of a new agent that is never told to stop (as in the fake runtime).
pub fn router(config: AgentConfig) -> Router {
    Agent::new(config).router()
}

async fn health() -> Json<Health> {
    Json(Health {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// `PUT /env`: the environment every process started from now on gets, on top of the
/// container's (what a claimed pooled session's owner asked for).
async fn set_env(
    State(state): State<AgentState>,
    error::AgentJson(env): error::AgentJson<std::collections::BTreeMap<String, String>>,
) -> axum::http::StatusCode {
    if let Ok(mut current) = state.session_env.write() {
        *current = env;
    }
    axum::http::StatusCode::NO_CONTENT
}

async fn require_secret(State(state): State<AgentState>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
    if presented.is_some_and(|p| constant_time_eq(p, state.config.secret.as_bytes())) {
        next.run(req).await
    } else {
        AgentError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            berth_proto::ErrorCode::Unauthorized,
            "missing or wrong agent secret",
        )
        .into_response()
    }
}

/// Compares without an early exit, so response timing says nothing about how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;

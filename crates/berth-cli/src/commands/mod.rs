pub mod cp;
pub mod exec;
pub mod files;
pub mod firewall;
pub mod home;
pub mod labs;
pub mod openapi;
pub mod serve;
pub mod session;
pub mod snapshot;
pub mod store;
pub mod template;
pub mod token;
pub mod user;

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Where the control plane is and who we are to it.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Control plane URL.
    #[arg(
        long,
        env = "BERTH_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// API token. When unset, the admin token in ./data/admin-token is used if present.
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

impl Connection {
    pub fn client(&self) -> anyhow::Result<berth_client::Client> {
        let token = match &self.token {
            Some(token) => token.clone(),
            None => local_admin_token().context(
                "no token: set BERTH_TOKEN (or --token) to a user token from `berth user create`, \
                 or to the admin token kept in the server's data dir (data/admin-token)",
            )?,
        };
        Ok(berth_client::Client::new(&self.url, &token)?)
    }
}

/// The admin token a local `berth serve` generated, for the common case of running the CLI next
/// to the server.
fn local_admin_token() -> Option<String> {
    let dir =
        std::env::var_os("BERTH_DATA_DIR").map_or_else(|| PathBuf::from("data"), PathBuf::from);
    std::fs::read_to_string(dir.join("admin-token"))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Explains the errors people hit most, with what to do about them.
pub fn explain(err: berth_client::ClientError) -> anyhow::Error {
    use berth_client::ClientError;
    match &err {
        ClientError::Transport { url, .. } => anyhow::anyhow!(
            "{err}\nIs the control plane running? Start it with `berth serve` (or scripts/run), or point BERTH_URL at it (now {url})."
        ),
        ClientError::Api { status: 401, .. } => {
            anyhow::anyhow!(
                "{err}\nCheck BERTH_TOKEN: it must be a token from `berth user create` or the admin token."
            )
        }
        _ => err.into(),
    }
}

/// Parses `KEY=VALUE` arguments.
pub fn key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

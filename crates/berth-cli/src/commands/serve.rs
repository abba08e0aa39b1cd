//! `berth serve`: the control plane in the foreground.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use berth_server::config::Config;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080, or `listen` in the config file].
    #[arg(long, env = "BERTH_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the database and the generated admin token [default: ./data].
    #[arg(long, env = "BERTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where sessions and users are kept: sqlite://PATH or redis://[:PASSWORD@]HOST:PORT/DB
    /// (rediss:// for TLS) [default: berth.db in the data dir, or `store.url` in the config
    /// file].
    #[arg(long, env = "BERTH_STORE", hide_env_values = true, value_name = "URL")]
    store: Option<String>,
    /// TOML config file; see docs/config.md.
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
}

/// Flags win over environment variables (clap), which win over the config file, which wins
/// over defaults.
pub fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &args.store {
        config.store.url = Some(url.clone());
    }
    config.admin_token_from_env()?;
    Ok(config.finish()?)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let config = load_config(&args)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another server using it? Pick one with --listen",
                config.listen
            )
        })?;
    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    };
    berth_server::run(config, listener, shutdown).await?;
    Ok(())
}

/// Human-readable logs by default; `BERTH_LOG_FORMAT=json` for log shippers. `RUST_LOG` filters.
fn init_logging() {
    use std::io::IsTerminal;

    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("BERTH_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

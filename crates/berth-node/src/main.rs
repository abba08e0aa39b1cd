//! `berth-node`: the per-node daemon of a Berth swarm. See the library's documentation.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use berth_node::relay::Relay;
use berth_server::{config::Config, networks::SessionNetworks, reach};
use clap::Parser;

/// Reaches this node's engine and session containers for Berth's control planes, and keeps
/// Berth's firewall on this node. Run one on every node of the swarm (deploy/stack.yml runs it
/// as a global service); the control planes find it at each node's address.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where control planes reach this node's relay [default: 0.0.0.0:7700].
    #[arg(long, env = "BERTH_NODE_LISTEN", default_value_t = SocketAddr::from(([0, 0, 0, 0], reach::DEFAULT_RELAY_PORT)))]
    listen: SocketAddr,
    /// This node's engine.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    engine: String,
    /// The control planes' TOML config file: its admin_token (or BERTH_ADMIN_TOKEN, or the file
    /// BERTH_ADMIN_TOKEN_FILE names) proves who may use this relay, and its templates' egress policies make this node's firewall.
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "berth_node=info,berth_server=info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.admin_token_from_env()?;
    let config = config.finish()?;
    let admin_token = config.admin_token.as_deref().context(
        "no admin token: set admin_token in the config file, BERTH_ADMIN_TOKEN or BERTH_ADMIN_TOKEN_FILE, the same as the control planes'",
    )?;
    let networks = SessionNetworks::new(&config)?;
    let _firewall_checks = match berth_server::install_firewall(&config, &networks).await? {
        Some(firewall) => {
            // No engine events here: the periodic check alone puts back what the engine or
            // anyone else removed.
            let (_engine_generations, watched) = tokio::sync::watch::channel(0);
            let period = Duration::from_secs(config.firewall.check_interval_seconds);
            Some((firewall.spawn_checks(period, watched), _engine_generations))
        }
        None => None,
    };
    let relay = Arc::new(Relay::new(admin_token, &args.engine)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; pick another with --listen",
                args.listen
            )
        })?;
    tracing::info!(listen = %args.listen, engine = %args.engine, "berth-node relay ready");
    tokio::select! {
        served = relay.serve(listener) => served?,
        _ = tokio::signal::ctrl_c() => {},
    }
    Ok(())
}

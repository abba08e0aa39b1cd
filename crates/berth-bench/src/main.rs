//! `berth-bench`: measures Berth against baselines taken in the same run, on this machine, and
//! writes the table to BENCHMARKS.md. It starts its own control plane (in this process, on the
//! real engine, instance `bench`) and removes every container it made, also when interrupted.
//!
//! `cargo run --release -p berth-bench -- --help`

mod figures;
mod stats;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use berth_client::Client;
use berth_server::{
    config::{Config, PoolConfig, TemplateConfig},
    runtime::{DockerRuntime, Runtime},
    store::SqliteStore,
};
use clap::Parser;

pub const TOKEN: &str = "bench-admin-token";
pub const INSTANCE: &str = "bench";
pub const NETWORK: &str = "berth-bench";
pub const IMAGE: &str = "berth/tiny:latest";

#[derive(Debug, Clone, Parser)]
#[command(about = "Benchmark Berth against raw Docker and its own agent, in one run")]
pub struct Args {
    /// Pooled claims to time (figure 1).
    #[arg(long, default_value_t = 200)]
    claims: usize,
    /// Cold creates to time, one at a time (figures 2 and 3).
    #[arg(long, default_value_t = 20)]
    creates: usize,
    /// Creates started at once (figure 4).
    #[arg(long, default_value_t = 50)]
    parallel: usize,
    /// Idle sessions started for the density and reconcile figures (8 and 10).
    #[arg(long, default_value_t = 800)]
    sessions: usize,
    /// Size of the file moved through the API and of the terminal's bulk output, in MB.
    #[arg(long, default_value_t = 100)]
    megabytes: usize,
    /// Keystroke round trips to time (figure 5).
    #[arg(long, default_value_t = 200)]
    keystrokes: usize,
    /// Where to write the results.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// Print the table only (for smoke runs).
    #[arg(long)]
    no_report: bool,
}

/// The control plane under test and what the figures need to reach around it.
#[derive(Debug)]
pub struct Bench {
    pub client: Client,
    pub app: berth_server::App,
    pub runtime: Arc<DockerRuntime>,
    pub base_url: String,
    _data: tempfile::TempDir,
}

fn config(data: &std::path::Path, sessions: usize) -> anyhow::Result<Config> {
    let mut config = Config {
        data_dir: data.to_owned(),
        admin_token: Some(TOKEN.into()),
        ..Config::default()
    };
    config.docker.instance = INSTANCE.into();
    config.docker.network = NETWORK.into();
    config.lifecycle.reconcile_interval_seconds = 3600;
    config.capacity.max_sessions = u32::try_from(sessions + 200).unwrap_or(u32::MAX);
    config.capacity.min_free_memory_mb = 0;
    config.quota.sessions_per_user = 1;
    let tiny = TemplateConfig {
        image: IMAGE.into(),
        memory_mb: 64,
        cpus: 0.5,
        pids: 64,
        ..TemplateConfig::default()
    };
    config.templates.insert("default".into(), tiny.clone());
    let pool = PoolConfig {
        min_ready: 4,
        max: None,
    };
    config
        .templates
        .insert("pooled".into(), TemplateConfig { pool, ..tiny });
    Ok(config.finish()?)
}

async fn start(sessions: usize) -> anyhow::Result<Bench> {
    let data = tempfile::tempdir()?;
    let config = config(data.path(), sessions)?;
    let store = Arc::new(SqliteStore::open(&data.path().join("berth.db")).await?);
    let runtime = Arc::new(DockerRuntime::new(config.docker.clone()));
    runtime
        .ping()
        .await
        .context("no Docker engine answers; start one (scripts/test does)")?;
    let app = berth_server::app(&config, store, runtime.clone(), TOKEN).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = Client::new(&base_url, TOKEN)?;
    Ok(Bench {
        client,
        app,
        runtime,
        base_url,
        _data: data,
    })
}

/// Removes every container of the bench instance.
pub async fn clean_up(runtime: &DockerRuntime) {
    if let Ok(containers) = runtime.list().await {
        let removals = containers.iter().map(|c| runtime.remove(&c.id));
        futures_util::future::join_all(removals).await;
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let leftovers = DockerRuntime::new(config(std::path::Path::new("."), 0)?.docker);
        clean_up(&leftovers).await;
        let bench = start(args.sessions).await?;
        let cleaner = bench.runtime.clone();
        let run = figures::run_all(&bench, &args);
        let result = tokio::select! {
            result = run => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        eprintln!("removing the bench's containers");
        clean_up(&cleaner).await;
        let table = result?;
        println!("{table}");
        if !args.no_report {
            figures::write_report(&args.output, &args, &table)?;
            eprintln!("wrote {}", args.output.display());
        }
        Ok(())
    })
}

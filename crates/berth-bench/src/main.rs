//! `berth-bench`: measures Berth against baselines taken in the same run, on this machine, and
//! writes the table to BENCHMARKS.md. It starts its own control plane (in this process, on the
//! real engine, instance `bench`) and removes every container it made, also when interrupted.
//! The multi-instance figures (14-17) start their own `redis-server`, and figures 15 and 16 the
//! workspace's `berth` binary (`cargo build [--release] -p berth-cli` beside the bench).
//!
//! `cargo run --release -p berth-bench -- --help`

mod checkpoint;
mod cluster;
mod control_plane;
mod cpu_budget;
mod docker_in_session;
mod e2b;
mod figures;
mod instances;
mod redis;
mod shards;
mod snapshots;
mod stats;
mod storm;
mod swarm;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use axum::serve::ListenerExt;
use berth_client::Client;
use berth_server::{
    config::{Config, PoolConfig, TemplateConfig, TemplateDockerConfig},
    networks::SessionNetworks,
    runtime::{DockerRuntime, Runtime},
};
use clap::Parser;

pub const TOKEN: &str = "bench-admin-token-at-least-32-characters";
pub const INSTANCE: &str = "bench";
pub const NETWORK: &str = "berth-bench";
/// The instance of the control plane that runs as a process of its own (figures 8, 10, 17).
pub const SEPARATE_INSTANCE: &str = "bench-process";
/// The instance of the control planes on a Redis store that share it (figures 14-16), one
/// figure at a time.
pub const CLUSTER_INSTANCE: &str = "bench-cluster";
pub const IMAGE: &str = "berth/tiny:latest";
/// The image of the hibernation figures (11-13), whose targets were set with Debian sessions.
pub const BASE_IMAGE: &str = "berth/base:latest";

#[derive(Debug, Clone, Parser)]
#[command(about = "Benchmark Berth against raw Docker and its own agent, in one run")]
pub struct Args {
    /// Pooled claims to time (figure 1), and commands run through E2B's SDK (figure 33).
    #[arg(long, default_value_t = 200)]
    claims: usize,
    /// Cold creates to time, one at a time (figures 2 and 3), and E2B sandboxes (figure 32).
    #[arg(long, default_value_t = 20)]
    creates: usize,
    /// Creates started at once (figure 4).
    #[arg(long, default_value_t = 50)]
    parallel: usize,
    /// Idle sessions started for the density and reconcile figures (8 and 10).
    #[arg(long, default_value_t = 800)]
    sessions: usize,
    /// Idle sessions on this one engine for figure 31: more than one bridge takes.
    #[arg(long, default_value_t = 2000)]
    node_sessions: usize,
    /// The longest one engine call may take (`docker.timeout_seconds`) in the control planes
    /// the bench starts; figure 31's engine, holding thousands of containers, answers slower.
    #[arg(long, default_value_t = 5)]
    engine_timeout: u64,
    /// Sessions one session network holds before the next is made (`docker.sessions_per_network`).
    #[arg(long, default_value_t = 1000)]
    sessions_per_network: u32,
    /// Size of the file moved through the API and of the terminal's bulk output, in MB.
    #[arg(long, default_value_t = 100)]
    megabytes: usize,
    /// Keystroke round trips to time (figure 5).
    #[arg(long, default_value_t = 200)]
    keystrokes: usize,
    /// Hibernate/resume cycles of one session (figure 13). Each adds an image layer; the
    /// engine refuses more than 125, so more than that many show compaction at work.
    #[arg(long, default_value_t = 20)]
    cycles: usize,
    /// Size of the large hibernation's changes, in MB (figure 19).
    #[arg(long, default_value_t = 1000)]
    large_megabytes: usize,
    /// Hibernated sessions touched at once (figure 21).
    #[arg(long, default_value_t = 200)]
    storm: usize,
    /// Where to write the results.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// Print the table only (for smoke runs).
    #[arg(long)]
    no_report: bool,
    /// Measure only these figures (comma-separated numbers); implies `--no-report`.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=33))]
    only: Vec<u8>,
    /// Internal: serve a control plane with its data in DIR (figures 8, 10 and 17 start one).
    #[arg(long, hide = true, value_name = "DIR")]
    control_plane: Option<PathBuf>,
    /// Internal: the store of the control plane `--control-plane` serves (figure 17: Redis);
    /// SQLite in its data dir without it.
    #[arg(long, hide = true, value_name = "URL", requires = "control_plane")]
    store: Option<String>,
}

impl Args {
    pub fn wants(&self, figure: u8) -> bool {
        self.only.is_empty() || self.only.contains(&figure)
    }
}

/// The control plane under test and what the figures need to reach around it.
#[derive(Debug)]
pub struct Bench {
    pub client: Client,
    /// A plain HTTP client for baselines that bypass `client`'s typed calls.
    pub http: reqwest::Client,
    pub app: berth_server::App,
    pub runtime: Arc<DockerRuntime>,
    pub base_url: String,
    /// With `[e2b] enabled`: E2B's API and sandbox URLs (`E2B_API_URL`, `E2B_SANDBOX_URL`).
    pub e2b_urls: Option<(String, String)>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl Drop for Bench {
    /// The server holds the control plane's state: a bench dropped must stop serving, or its
    /// session manager would live on.
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

fn config(data: &std::path::Path, args: &Args) -> anyhow::Result<Config> {
    let mut config = Config {
        data_dir: data.to_owned(),
        admin_token: Some(TOKEN.into()),
        ..Config::default()
    };
    config.docker.instance = INSTANCE.into();
    config.docker.network = NETWORK.into();
    config.lifecycle.reconcile_interval_seconds = 3600;
    config.capacity.max_sessions = u32::try_from(args.sessions + 200).unwrap_or(u32::MAX);
    config.capacity.min_free_memory_mb = 0;
    config.docker.sessions_per_network = args.sessions_per_network;
    config.docker.timeout_seconds = args.engine_timeout;
    config.quota.sessions_per_user = 1;
    let tiny = TemplateConfig {
        image: IMAGE.into(),
        memory_mb: 64,
        cpus: 0.5,
        pids: 64,
        ..TemplateConfig::default()
    };
    config.templates.insert("default".into(), tiny.clone());
    // The terminal and file figures measure one session's throughput, so they run in a session
    // with the default template's limits (one CPU), not the density figure's half CPU.
    let standard = TemplateConfig {
        image: IMAGE.into(),
        ..TemplateConfig::default()
    };
    config.templates.insert("standard".into(), standard);
    let base = TemplateConfig {
        image: BASE_IMAGE.into(),
        ..TemplateConfig::default()
    };
    config.templates.insert(snapshots::TEMPLATE.into(), base);
    let docker = TemplateConfig {
        image: "berth/docker:latest".into(),
        docker: TemplateDockerConfig {
            enabled: true,
            base_images: vec![docker_in_session::BASE.into()],
            max_containers: 20,
            max_images: 50,
            ..TemplateDockerConfig::default()
        },
        ..TemplateConfig::default()
    };
    config
        .templates
        .insert(docker_in_session::TEMPLATE.into(), docker);
    let pooled = |min_ready| TemplateConfig {
        pool: PoolConfig {
            min_ready,
            max: None,
        },
        ..tiny.clone()
    };
    config.templates.insert("pooled".into(), pooled(4));
    // Figure 4's burst is served the way Berth serves bursts: from a pool that large.
    if args.wants(4) {
        let size = u32::try_from(args.parallel).unwrap_or(u32::MAX);
        config.templates.insert("burst".into(), pooled(size));
    }
    Ok(config.finish()?)
}

/// The configuration of another control plane of the bench: an engine instance of its own, so
/// that neither takes the other's containers for orphans, and only the templates it needs.
pub fn other_config(
    data: &std::path::Path,
    args: &Args,
    instance: &str,
    templates: &[&str],
) -> anyhow::Result<Config> {
    let mut config = config(data, args)?;
    config.docker.instance = instance.into();
    config
        .templates
        .retain(|name, _| templates.contains(&name.as_str()));
    Ok(config)
}

/// The configuration of the control plane that runs as its own process: no pools, so its
/// memory is that of the sessions asked for; on the store `--store` names.
pub fn separate_process_config(data: &std::path::Path, args: &Args) -> anyhow::Result<Config> {
    let mut config = other_config(data, args, SEPARATE_INSTANCE, &["default"])?;
    config.store.url.clone_from(&args.store);
    Ok(config)
}

async fn start(args: &Args) -> anyhow::Result<Bench> {
    let data = tempfile::tempdir()?;
    let config = config(data.path(), args)?;
    in_process(config, data).await
}

/// A control plane in this process on `config`'s store and engine instance, served on a free
/// port. `data` is its data dir, removed with it.
pub async fn in_process(config: Config, data: tempfile::TempDir) -> anyhow::Result<Bench> {
    let opened = berth_server::store::open(config.store.url.as_deref(), data.path()).await?;
    let networks = SessionNetworks::new(&config)?;
    // A template with Docker gets its sessions' sockets, as `berth serve` gives them.
    let sockets = berth_server::docker_sockets(&config, &networks)?;
    let mut docker = DockerRuntime::new(config.docker.clone(), networks);
    if let Some(sockets) = &sockets {
        docker = docker.with_docker_api(sockets.clone());
    }
    let runtime = Arc::new(docker);
    runtime
        .ping()
        .await
        .context("no Docker engine answers; start one (scripts/test does)")?;
    let mut app = berth_server::app(
        &config,
        opened.store.clone(),
        opened.coordination,
        runtime.clone(),
        TOKEN,
        Default::default(),
    )
    .await;
    if let Some(sockets) = sockets {
        let serving = app.serves_sockets(&config);
        app.serve_docker_api(sockets, opened.store, runtime.clone(), serving);
    }
    let mut servers = Vec::new();
    let base_url = serve(app.router.clone(), &mut servers).await?;
    let e2b_urls = match app.e2b.take() {
        Some(e2b) => Some((
            serve(e2b.api, &mut servers).await?,
            serve(e2b.sandbox, &mut servers).await?,
        )),
        None => None,
    };
    let client = Client::new(&base_url, TOKEN)?;
    Ok(Bench {
        client,
        http: reqwest::Client::new(),
        app,
        runtime,
        base_url,
        e2b_urls,
        servers,
        _data: data,
    })
}

/// Serves `router` on a free port of this host; its URL.
async fn serve(
    router: axum::Router,
    servers: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    servers.push(tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }));
    Ok(url)
}

/// The engine as a configuration's control plane sees it.
pub fn engine(config: &Config) -> anyhow::Result<DockerRuntime> {
    Ok(DockerRuntime::new(
        config.docker.clone(),
        SessionNetworks::new(config)?,
    ))
}

impl Bench {
    /// Stops this control plane, then removes what it made. Its pools refilled and its lead
    /// given up first, so nothing makes another container behind the clean-up's back.
    pub async fn stop_and_clean_up(self) {
        if let Err(err) = figures::wait_for_full_pool(&self).await {
            eprintln!("the pools did not refill before the clean-up: {err}");
        }
        self.app.leadership.release().await;
        let runtime = self.runtime.clone();
        drop(self);
        clean_up(&runtime).await;
    }
}

/// Container removals the clean-up keeps in flight.
const REMOVALS_AT_ONCE: usize = 8;

/// Removes every container of the bench instance, then its images: sessions' snapshots and
/// the raw baselines' commits, which carry the same labels.
pub async fn clean_up(runtime: &DockerRuntime) {
    use futures_util::StreamExt;
    let listed = runtime.list().await;
    if let Err(err) = &listed {
        eprintln!("could not list the bench's containers to remove them: {err}");
    }
    if let Ok(containers) = listed {
        // A few at a time: 800 removals at once keep the engine busy past the runtime's
        // timeout, and those that time out would stay behind.
        futures_util::stream::iter(&containers)
            .for_each_concurrent(REMOVALS_AT_ONCE, |container| async move {
                if let Err(err) = runtime.remove(&container.id).await {
                    eprintln!("could not remove container {}: {err}", container.id);
                }
            })
            .await;
    }
    // One at a time: a snapshot's parent, removed alongside its child, could be left behind
    // untagged, which nothing here would find again.
    for snapshot in runtime.snapshots().await.unwrap_or_default() {
        let _ = runtime.remove_snapshot(&snapshot.image).await;
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(data_dir) = &args.control_plane {
        return runtime.block_on(control_plane::serve(data_dir, &args));
    }
    runtime.block_on(async {
        let here = std::path::Path::new(".");
        let separate = engine(&separate_process_config(here, &args)?)?;
        let cluster = engine(&other_config(here, &args, CLUSTER_INSTANCE, &[])?)?;
        let leftovers = engine(&config(here, &args)?)?;
        clean_up(&leftovers).await;
        clean_up(&separate).await;
        clean_up(&cluster).await;
        let bench = start(&args).await?;
        let run = figures::run_all(&bench, &args);
        let result = tokio::select! {
            result = run => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        eprintln!("removing the bench's containers and images");
        bench.stop_and_clean_up().await;
        clean_up(&separate).await;
        clean_up(&cluster).await;
        let table = result?;
        println!("{table}");
        if !args.no_report && args.only.is_empty() {
            figures::write_report(&args.output, &args, &table)?;
            eprintln!("wrote {}", args.output.display());
        }
        Ok(())
    })
}

//! Figures 26-30: Berth on the three-node swarm of `scripts/swarm-rig up` (docs/swarm.md), as
//! a `berth serve` process with the rig's config, its own engine instance label and Redis. The
//! baselines are the same operations on a node's engine directly. Without a rig the figures
//! are left out, saying so.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context;
use berth_client::Client;
use berth_proto::{CreateSession, SessionState, process::ExecRequest};
use berth_server::config::Config;
use bollard::{
    models::{ContainerCreateBody, HostConfig},
    query_parameters::RemoveContainerOptionsBuilder,
};

use crate::{
    Args,
    figures::Row,
    instances::Cluster,
    stats::{Samples, ms, ratio},
};

/// The engine instance label of the bench's swarm sessions.
const INSTANCE: &str = "bench-swarm";

const NODES: [u8; 3] = [1, 2, 3];

fn rig_dir() -> PathBuf {
    std::env::var_os("BERTH_RIG_DIR").map_or_else(|| PathBuf::from("/run/berth-rig"), PathBuf::from)
}

pub async fn figures(args: &Args) -> anyhow::Result<Vec<Row>> {
    if !(26..=30).any(|figure| args.wants(figure)) {
        return Ok(Vec::new());
    }
    let rig_config = rig_dir().join("berth.toml");
    if !rig_config.exists() {
        eprintln!(
            "figures 26-30: left out, the swarm rig is not up ({} is missing; `sudo scripts/swarm-rig up` makes it)",
            rig_config.display()
        );
        return Ok(Vec::new());
    }
    let mut config = Config::from_file(&rig_config)?;
    let token = config
        .admin_token
        .clone()
        .context("the rig's config has no admin token")?;
    let dir = tempfile::tempdir()?;
    config.docker.instance = INSTANCE.into();
    config.data_dir = dir.path().join("data");
    config.admin_token = None;
    config.lifecycle.reconcile_interval_seconds = 2;
    config.lifecycle.reap_interval_ms = 250;
    config.quota.sessions_per_user = 1000;
    config.capacity.max_sessions = 10_000;
    config.capacity.min_free_memory_mb = 0;
    let mut tiny = config.templates["tiny"].clone();
    tiny.memory_mb = 256;
    tiny.pool.min_ready = 0;
    config.templates.clear();
    let mut pooled = tiny.clone();
    pooled.pool.min_ready = 3;
    let mut idle = tiny.clone();
    idle.memory_mb = 64;
    config.templates.insert("idle".into(), idle);
    config.templates.insert("tiny".into(), tiny.clone());
    config.templates.insert("pooled".into(), pooled);
    // The built-in default would keep a pool of its own.
    config.templates.insert("default".into(), tiny);
    let network = format!("{}-open", config.docker.network);
    let cluster = Cluster::start_with(dir, &toml::to_string(&config)?, &token, 1).await?;
    wait_ready(&cluster.instances[0].url).await?;
    let client = cluster.instances[0].client.clone();
    let rig = Rig {
        client: &client,
        network,
    };
    let mut measured = rig.measure(args).await;
    if args.wants(30)
        && let Ok(rows) = &mut measured
    {
        eprintln!(
            "figure 30: {} idle sessions across the rig's nodes",
            args.sessions
        );
        match rig.density(&cluster.instances[0], args.sessions).await {
            Ok(row) => rows.push(row),
            Err(err) => measured = Err(err),
        }
    }
    cluster.stop().await;
    rig.remove_all();
    measured
}

struct Rig<'a> {
    client: &'a Client,
    /// The session network of the templates above, on every node.
    network: String,
}

impl Rig<'_> {
    async fn measure(&self, args: &Args) -> anyhow::Result<Vec<Row>> {
        let mut rows = Vec::new();
        if args.wants(26) {
            eprintln!("figure 26: cold creates on the swarm");
            rows.push(self.cold_creates(args.creates).await?);
        }
        if args.wants(27) {
            eprintln!("figure 27: pooled claims on the swarm");
            rows.push(self.pooled_claims(args.claims).await?);
        }
        if args.wants(28) {
            eprintln!(
                "figure 28: cross-node restores, {} MB changed",
                args.megabytes
            );
            rows.push(self.cross_node_restores(args.megabytes).await?);
        }
        if args.wants(29) {
            eprintln!("figure 29: a worker lost, its session running again elsewhere");
            rows.push(self.worker_loss().await?);
        }
        Ok(rows)
    }

    async fn create(&self, template: &str) -> anyhow::Result<String> {
        let request = CreateSession {
            template: template.into(),
            ..CreateSession::default()
        };
        Ok(self.client.create_session(&request).await?.id)
    }

    /// Figure 26: creates without a pool, one at a time, against raw `docker create` + `start`
    /// of the same image on node 1's engine.
    async fn cold_creates(&self, n: usize) -> anyhow::Result<Row> {
        let mut berth = Samples::default();
        for _ in 0..n {
            let started = Instant::now();
            let id = self.create("tiny").await?;
            berth.push(started.elapsed());
            self.client.delete_session(&id).await?;
        }
        let docker = node_engine(1).await?;
        let mut raw = Samples::default();
        for i in 0..n {
            let body = ContainerCreateBody {
                image: Some("berth/tiny:latest".into()),
                env: Some(vec!["BERTH_AGENT_SECRET=raw".into()]),
                labels: Some(HashMap::from([(
                    "berth.instance".to_owned(),
                    format!("{INSTANCE}-raw"),
                )])),
                host_config: Some(HostConfig {
                    network_mode: Some(self.network.clone()),
                    ..HostConfig::default()
                }),
                ..ContainerCreateBody::default()
            };
            let started = Instant::now();
            let created = docker
                .create_container(
                    Some(
                        bollard::query_parameters::CreateContainerOptionsBuilder::new()
                            .name(&format!("bench-swarm-raw{i}"))
                            .build(),
                    ),
                    body,
                )
                .await?;
            docker.start_container(&created.id, None).await?;
            raw.push(started.elapsed());
            let options = RemoveContainerOptionsBuilder::new().force(true).build();
            docker.remove_container(&created.id, Some(options)).await?;
        }
        Ok(Row {
            number: 26,
            figure: format!("cold create on the swarm runtime, API call to running, p50 of {n}"),
            berth: ms(berth.p50()),
            baseline: format!(
                "raw docker create+start on node 1's engine p50 {} (ratio {})",
                ms(raw.p50()),
                ratio(berth.p50(), raw.p50())
            ),
            target: "≤ 1.2× raw".into(),
            met: Some(berth.p50().as_secs_f64() <= 1.2 * raw.p50().as_secs_f64()),
        })
    }

    /// Figure 27: claims from a pool spread over the nodes, each with the pool full.
    async fn pooled_claims(&self, n: usize) -> anyhow::Result<Row> {
        let mut samples = Samples::default();
        let mut claimed = Vec::new();
        for _ in 0..n {
            self.wait_for_full_pool().await?;
            let started = Instant::now();
            let id = self.create("pooled").await?;
            samples.push(started.elapsed());
            claimed.push(id);
        }
        let spread = nodes_holding(&claimed);
        for id in &claimed {
            self.client.delete_session(id).await?;
        }
        Ok(Row {
            number: 27,
            figure: format!("pooled claim on the swarm runtime, API call to running ({n} claims)"),
            berth: format!("p50 {}, p99 {}", ms(samples.p50()), ms(samples.p99())),
            baseline: format!("claimed sessions on {spread} of 3 nodes"),
            target: "p50 ≤ 5 ms".into(),
            met: Some(samples.p50() <= Duration::from_millis(5)),
        })
    }

    async fn wait_for_full_pool(&self) -> anyhow::Result<()> {
        for _ in 0..1500 {
            let pools = self.client.pool().await?;
            if pools.iter().all(|p| p.ready >= p.min_ready as usize) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("the pool did not refill within 30 s")
    }

    /// Figure 28: a session with `megabytes` written hibernates on its node, which then
    /// drains; its wake (API call to running) lands on another node and pulls the snapshot.
    async fn cross_node_restores(&self, megabytes: usize) -> anyhow::Result<Row> {
        const ROUNDS: usize = 3;
        let mut samples = Samples::default();
        for _ in 0..ROUNDS {
            let id = self.create("tiny").await?;
            let write = format!(
                "head -c {}000000 /dev/urandom > /home/user/blob && sync",
                megabytes
            );
            self.sh(&id, &write).await?;
            let slept_on = node_of(&id).context("the session is on no node")?;
            self.client.hibernate_session(&id).await?;
            self.wait_for(&id, SessionState::Hibernated, Duration::from_secs(120))
                .await?;
            set_availability(slept_on, "drain")?;
            // Placement reads the node list again every 2 s.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let started = Instant::now();
            let woken = self.client.resume_session(&id).await;
            let elapsed = started.elapsed();
            set_availability(slept_on, "active")?;
            woken?;
            let woke_on = node_of(&id);
            anyhow::ensure!(
                woke_on.is_some_and(|node| node != slept_on),
                "woke on {woke_on:?}, slept on {slept_on}"
            );
            samples.push(elapsed);
            self.client.delete_session(&id).await?;
        }
        Ok(Row {
            number: 28,
            figure: format!(
                "cross-node restore, {megabytes} MB changed, API call to running, p50 of {ROUNDS}"
            ),
            berth: format!(
                "p50 {}, longest {}",
                ms(samples.p50()),
                ms(samples.percentile(100.0))
            ),
            baseline: "none: the snapshot is pulled from the registry onto the waking node".into(),
            target: "≤ 5 s to agent-ready".into(),
            met: Some(samples.percentile(100.0) <= Duration::from_secs(5)),
        })
    }

    /// Figure 29: a session with a snapshot on node 3; node 3's engine is killed; the time
    /// until the session runs on another node. Node 3 comes back afterwards.
    async fn worker_loss(&self) -> anyhow::Result<Row> {
        set_availability(1, "drain")?;
        set_availability(2, "drain")?;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let on_3 = async {
            let id = self.create("tiny").await?;
            self.sh(&id, "echo kept > /home/user/kept").await?;
            self.client.hibernate_session(&id).await?;
            self.wait_for(&id, SessionState::Hibernated, Duration::from_secs(60))
                .await?;
            self.client.resume_session(&id).await?;
            anyhow::Ok(id)
        }
        .await;
        set_availability(1, "active")?;
        set_availability(2, "active")?;
        let id = on_3?;
        anyhow::ensure!(node_of(&id) == Some(3), "the session is not on node 3");
        let pid = std::fs::read_to_string(rig_dir().join("3/docker.pid"))?;
        let killed = Instant::now();
        anyhow::ensure!(
            Command::new("kill")
                .args(["-9", pid.trim()])
                .status()?
                .success()
        );
        let back = loop {
            let session = self.client.get_session(&id).await?;
            if session.state == SessionState::Running && node_of(&id).is_some_and(|n| n != 3) {
                break killed.elapsed();
            }
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(120),
                "not back after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let kept = self.sh(&id, "cat /home/user/kept").await?;
        rig_up()?;
        self.client.delete_session(&id).await?;
        Ok(Row {
            number: 29,
            figure:
                "worker loss (kill -9 of a node's engine) to its session running on another node"
                    .into(),
            berth: ms(back),
            baseline: format!(
                "files from its snapshot: {}",
                if kept.trim() == "kept" {
                    "intact"
                } else {
                    "LOST"
                }
            ),
            target: "≤ 30 s".into(),
            met: Some(back <= Duration::from_secs(30) && kept.trim() == "kept"),
        })
    }

    /// Figure 30: `n` idle sessions created at once through the control plane, spread over
    /// the nodes; what the host gave them (the rig's engines are this machine's) and what the
    /// control plane holds.
    async fn density(&self, plane: &crate::instances::Instance, n: usize) -> anyhow::Result<Row> {
        let rss_idle = plane.rss_mb();
        let free_before = berth_server::host::available_memory_mb().unwrap_or(0);
        let creates = (0..n).map(|_| self.create("idle"));
        let ids: Vec<String> = futures_util::future::join_all(creates)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        // A create answers once its session is placed; the last few may still be starting.
        let settling = Instant::now();
        let running = loop {
            let running = self
                .client
                .list_sessions(&Default::default())
                .await?
                .iter()
                .filter(|s| s.state == SessionState::Running)
                .count();
            if running >= ids.len() || settling.elapsed() > Duration::from_secs(60) {
                break running;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let free_after = berth_server::host::available_memory_mb().unwrap_or(0);
        let per_session = free_before.saturating_sub(free_after) as f64 / ids.len().max(1) as f64;
        let rss = plane.rss_mb();
        let per_node: Vec<String> = NODES
            .into_iter()
            .map(|node| {
                let filter = format!("label=berth.instance={INSTANCE}");
                let count = node_docker(node, &["ps", "-q", "--filter", &filter])
                    .map_or(0, |ids| ids.lines().count());
                format!("{count}")
            })
            .collect();
        Ok(Row {
            number: 30,
            figure: format!("{running} of {n} idle sessions running across the rig's 3 nodes"),
            berth: format!(
                "host memory {per_session:.1} MB per session; control plane process RSS {rss:.0} MB ({rss_idle:.0} MB with no sessions); per node {}",
                per_node.join(" / ")
            ),
            baseline: format!("host had {free_before} MB available before"),
            target: "all running; Berth overhead ≤ 6 MB each".into(),
            met: Some(running == n && per_session <= 6.0),
        })
    }

    async fn sh(&self, id: &str, command: &str) -> anyhow::Result<String> {
        let request = ExecRequest {
            cmd: vec!["sh".into(), "-c".into(), command.into()],
            ..ExecRequest::default()
        };
        let result = self.client.exec(id, &request).await?;
        anyhow::ensure!(result.exit_code == Some(0), "{command}: {}", result.stderr);
        Ok(result.stdout)
    }

    async fn wait_for(
        &self,
        id: &str,
        state: SessionState,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.client.get_session(id).await?.state != state {
            anyhow::ensure!(Instant::now() < deadline, "{id} did not become {state:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Every container the figures left on the nodes, theirs and the baselines'.
    fn remove_all(&self) {
        for node in NODES {
            for label in [INSTANCE.to_owned(), format!("{INSTANCE}-raw")] {
                let filter = format!("label=berth.instance={label}");
                if let Ok(ids) = node_docker(node, &["ps", "-aq", "--filter", &filter]) {
                    let ids: Vec<&str> = ids.lines().collect();
                    if !ids.is_empty() {
                        let mut remove = vec!["rm", "-f"];
                        remove.extend(ids);
                        let _ = node_docker(node, &remove);
                    }
                }
            }
        }
    }
}

/// Until the control plane follows every node's events: it creates nothing before.
async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{url}/readyz")).send().await;
        if ready.is_ok_and(|answer| answer.status().is_success()) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the swarm control plane never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_socket(node: u8) -> String {
    format!("unix://{}/{node}/docker.sock", rig_dir().display())
}

async fn node_engine(node: u8) -> anyhow::Result<bollard::Docker> {
    let socket = node_socket(node);
    let path = socket.trim_start_matches("unix://");
    Ok(
        bollard::Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION)?
            .negotiate_version()
            .await?,
    )
}

fn node_docker(node: u8, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(["-H", &node_socket(node)])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "docker {args:?} on node {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn node_of(session: &str) -> Option<u8> {
    let filter = format!("label=berth.session={session}");
    NODES.into_iter().find(|&node| {
        node_docker(node, &["ps", "-q", "--filter", &filter])
            .is_ok_and(|ids| !ids.trim().is_empty())
    })
}

fn nodes_holding(sessions: &[String]) -> usize {
    let mut nodes: Vec<u8> = sessions.iter().filter_map(|id| node_of(id)).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}

fn set_availability(node: u8, availability: &str) -> anyhow::Result<()> {
    let name = format!("berth-rig-{node}");
    node_docker(
        1,
        &["node", "update", "--availability", availability, &name],
    )
    .map(drop)
}

/// `scripts/swarm-rig up` again, which starts what of the rig is down (a killed node).
fn rig_up() -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swarm-rig");
    let out = Command::new(script)
        .arg("up")
        .env("BERTH_RIG_BUILD", "0")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "swarm-rig up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

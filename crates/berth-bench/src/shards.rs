//! Figure 31: one engine holding more sessions than one bridge takes (2,000 by default, over
//! as many networks as `--sessions-per-network` makes), its control plane weighed.

use std::collections::BTreeMap;

use anyhow::Context;

use crate::{
    Args,
    control_plane::ChildPlane,
    figures::{self, Row},
};

/// Kernel settings 2,000 sessions on one host need, as docs/swarm.md tells operators: an ARP
/// entry per session the control plane talks to, and a thread id per shim thread.
const HOST_SETTINGS: [(&str, u64); 4] = [
    ("net/ipv4/neigh/default/gc_thresh1", 8192),
    ("net/ipv4/neigh/default/gc_thresh2", 16384),
    ("net/ipv4/neigh/default/gc_thresh3", 32768),
    ("kernel/pid_max", 4_194_304),
];

/// `docker.timeout_seconds` of figure 31's control plane.
const NODE_ENGINE_TIMEOUT_SECONDS: u64 = 120;

pub async fn figure(args: &Args) -> anyhow::Result<Option<Row>> {
    if !args.wants(31) {
        return Ok(None);
    }
    let n = args.node_sessions;
    eprintln!(
        "figure 31: {n} idle sessions on this engine, {} per network",
        args.sessions_per_network
    );
    // A smoke run's few sessions need none of them.
    let raised = if n >= 1000 {
        raise_host_settings()?
    } else {
        Vec::new()
    };
    let data = tempfile::tempdir()?;
    // An engine holding thousands of containers takes seconds per call under a burst of
    // creates, as docs/swarm.md tells operators of such nodes.
    let sized = Args {
        sessions: n,
        engine_timeout: args.engine_timeout.max(NODE_ENGINE_TIMEOUT_SECONDS),
        ..args.clone()
    };
    let plane = ChildPlane::spawn(data.path(), &sized, None).await?;
    let weighed = figures::density(&plane, n).await?;
    let per_network = per_network(crate::SEPARATE_INSTANCE)?;
    let running: usize = per_network.values().sum();
    let counts: Vec<String> = per_network
        .iter()
        .map(|(network, count)| format!("{network} {count}"))
        .collect();
    let per_session_kb = (weighed.rss - weighed.rss_idle) * 1024.0 / n.max(1) as f64;
    let row = Row {
        number: 31,
        figure: format!(
            "{running} of {n} idle sessions running on one engine, over {} networks",
            per_network.len()
        ),
        berth: format!(
            "control plane process RSS {:.0} MB ({:.0} MB with no sessions, {per_session_kb:.0} KB per session); host memory {:.1} MB per session; {}",
            weighed.rss,
            weighed.rss_idle,
            weighed.per_session,
            counts.join(", ")
        ),
        baseline: format!(
            "host had {} MB available before{}",
            weighed.free_before,
            if raised.is_empty() {
                String::new()
            } else {
                format!("; raised {}", raised.join(", "))
            }
        ),
        target: "all running; control plane ≤ 150 MB".into(),
        met: Some(running == n && weighed.rss <= 150.0),
    };
    // Said at once: removing 2,000 containers takes long, and may fail.
    eprintln!("figure 31: {} | {}", row.figure, row.berth);
    plane.delete_all(&weighed.ids).await;
    plane.kill().await?;
    let engine = crate::engine(&crate::separate_process_config(data.path(), &sized)?)?;
    crate::clean_up(&engine).await;
    Ok(Some(row))
}

/// Raises each of [`HOST_SETTINGS`] that is lower; what it raised, as `name old → new`.
fn raise_host_settings() -> anyhow::Result<Vec<String>> {
    let mut raised = Vec::new();
    for (name, wanted) in HOST_SETTINGS {
        let path = format!("/proc/sys/{name}");
        let now: u64 = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .parse()
            .with_context(|| format!("{path} is not a number"))?;
        if now < wanted {
            std::fs::write(&path, wanted.to_string())
                .with_context(|| format!("raising {path} (needs root)"))?;
            raised.push(format!("{} {now} → {wanted}", name.replace('/', ".")));
        }
    }
    Ok(raised)
}

/// Running containers of `instance` on each network, as the engine lists them.
fn per_network(instance: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=berth.instance={instance}"),
            "--format",
            "{{.Networks}}",
        ])
        .output()
        .context("running docker ps")?;
    anyhow::ensure!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = BTreeMap::new();
    for network in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(network.to_owned()).or_default() += 1;
    }
    Ok(counts)
}

//! Prometheus metrics: the recorder, the names, and the `/metrics` rendering.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::store::Store;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder on first call. Several servers in one process (tests)
/// share it; `None` means another recorder was installed by the embedding program.
/// An audit entry dropped: the writer's queue was full.
pub fn audit_dropped() {
    metrics::counter!("berth_audit_dropped_total").increment(1);
}

pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .map_err(|err| tracing::warn!(%err, "metrics recorder not installed"))
                .ok()
        })
        .as_ref()
}

pub fn docker_call(op: &'static str, elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!("berth_docker_call_duration_seconds", "op" => op, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// A session's Docker API refused a call, by the policy's rule.
pub fn docker_api_refused(rule: &'static str) {
    metrics::counter!("berth_docker_api_refused_total", "rule" => rule).increment(1);
}

pub fn session_created(elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!("berth_session_create_duration_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// A create served from the warm pool, and how long the claim took.
pub fn pool_hit(template: &str, elapsed: Duration) {
    metrics::counter!("berth_pool_hits_total", "template" => template.to_owned()).increment(1);
    metrics::histogram!("berth_pool_claim_duration_seconds").record(elapsed.as_secs_f64());
}

/// A create that found the pool of a pooled template empty.
pub fn pool_miss(template: &str) {
    metrics::counter!("berth_pool_misses_total", "template" => template.to_owned()).increment(1);
}

/// A hibernation's engine work (stop, commit, compaction, removal), done or failed.
pub fn hibernation(elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("berth_hibernations_total", "outcome" => outcome).increment(1);
    metrics::histogram!("berth_hibernate_duration_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// A restore, from its start to the agent answering, done or failed.
pub fn restore(elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("berth_restores_total", "outcome" => outcome).increment(1);
    metrics::histogram!("berth_restore_duration_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// What a hibernation's snapshot holds of its own, above the template's image.
pub fn snapshot_committed(bytes: u64) {
    metrics::histogram!("berth_snapshot_bytes").record(bytes as f64);
}

/// A session command that panicked and was contained; each is a bug to fix.
pub fn actor_panic(command: &'static str) {
    metrics::counter!("berth_session_command_panics_total", "command" => command).increment(1);
}

pub fn reconciled(elapsed: Duration) {
    metrics::histogram!("berth_reconcile_duration_seconds").record(elapsed.as_secs_f64());
}

/// What the swarm runtime last saw of one node.
#[derive(Debug)]
pub struct NodeFigures {
    /// It takes new sessions: ready, active, and its berth-node answers.
    pub up: bool,
    /// This control plane's containers there; `None` when its berth-node did not answer.
    pub containers: Option<usize>,
    pub memory_bytes: i64,
    /// The memory limits of this control plane's containers there.
    pub promised_bytes: i64,
}

/// Per-node gauges on a swarm, set each time the node list is read (every 2 s).
pub fn node(name: &str, figures: &NodeFigures) {
    let node = name.to_owned();
    metrics::gauge!("berth_node_up", "node" => node.clone()).set(f64::from(u8::from(figures.up)));
    if let Some(containers) = figures.containers {
        metrics::gauge!("berth_node_containers", "node" => node.clone()).set(containers as f64);
    }
    metrics::gauge!("berth_node_memory_bytes", "node" => node.clone())
        .set(figures.memory_bytes as f64);
    metrics::gauge!("berth_node_memory_promised_bytes", "node" => node)
        .set(figures.promised_bytes as f64);
}

/// The exposition text. Session counts are read from the store at scrape time, so they are
/// right even after a restart or with several control planes on one store.
pub async fn render(store: &dyn Store) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    if let Ok(counts) = store.count_by_state().await {
        for state in berth_proto::SessionState::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("berth_sessions", "state" => state.as_str()).set(n as f64);
        }
    }
    handle.run_upkeep();
    handle.render()
}

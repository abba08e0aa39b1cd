//! Figures 14-17: Berth on a Redis store, as several instances run it (docs/operations.md,
//! "Several instances"). Each figure has a `redis-server` of its own, so none sees another's
//! sessions: figure 14 a control plane in this process, 15 and 16 two `berth serve` processes,
//! 17 a control plane process as figure 8 weighs one.

use std::time::{Duration, Instant};

use anyhow::Context;

use berth_client::ClientError;
use berth_proto::{CreateSession, ErrorCode};
use berth_server::config::ClusterConfig;

use crate::{
    Args, Bench, CLUSTER_INSTANCE, TOKEN,
    control_plane::ChildPlane,
    cpu_budget::CpuBudget,
    figures::{self, Row, WRK_CONNECTIONS, WRK_THREADS, wrk},
    instances::Cluster,
    redis::RedisServer,
    stats::{Samples, ms, ratio},
};

/// What figures 1 and 8 measured on SQLite earlier in the run: the baselines of 14 and 17.
#[derive(Debug, Default)]
pub struct SqliteBaselines {
    pub claims: Option<Samples>,
    pub control_plane_mb: Option<f64>,
}

pub async fn figures(
    bench: &Bench,
    args: &Args,
    sqlite: SqliteBaselines,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    if args.wants(14) {
        eprintln!("figure 14: pooled claims on Redis");
        rows.push(claims(bench, args, sqlite.claims).await?);
    }
    if args.wants(15) || args.wants(16) {
        let mut cluster = Cluster::start(args, 2).await?;
        if args.wants(15) {
            eprintln!("figure 15: API throughput, 2 instances against 1");
            rows.push(throughput(&cluster).await?);
        }
        if args.wants(16) {
            // One round per 50 claims: 4 in a full run, 1 in a smoke run.
            let rounds = (args.claims / 50).max(1);
            eprintln!("figure 16: failover after kill -9 of the leader, {rounds} rounds");
            rows.push(failover(&mut cluster, rounds).await?);
        }
        cluster.stop().await;
        remove_containers(args).await?;
    }
    if args.wants(17) {
        eprintln!(
            "figure 17: control plane memory, {} idle sessions on Redis",
            args.sessions
        );
        rows.push(density(args, sqlite.control_plane_mb).await?);
    }
    Ok(rows)
}

/// Removes what figures 15 and 16 left on the engine: the sessions their creates started.
async fn remove_containers(args: &Args) -> anyhow::Result<()> {
    let here = std::path::Path::new(".");
    let config = crate::other_config(here, args, CLUSTER_INSTANCE, &[])?;
    crate::clean_up(&crate::engine(&config)?).await;
    Ok(())
}

/// Figure 14: figure 1's claims, on a control plane with the same `pooled` template whose store
/// is Redis; the only difference is the store. Figure 1's samples are the baseline when it ran,
/// else SQLite is measured again with the same count.
async fn claims(bench: &Bench, args: &Args, sqlite: Option<Samples>) -> anyhow::Result<Row> {
    let redis = RedisServer::start().await?;
    let data = tempfile::tempdir()?;
    let mut config = crate::other_config(data.path(), args, CLUSTER_INSTANCE, &["pooled"])?;
    config.store.url = Some(redis.url());
    let on_redis = crate::in_process(config, data).await?;
    let measured = figures::pooled_claims(&on_redis, args.claims).await;
    on_redis.stop_and_clean_up().await;
    let samples = measured?;
    let (sqlite, source) = match sqlite {
        Some(samples) => (samples, "figure 1"),
        None => (
            figures::pooled_claims(bench, args.claims).await?,
            "measured after",
        ),
    };
    Ok(Row {
        number: 14,
        figure: format!(
            "pooled claim on Redis, API call to running ({} claims)",
            samples.len()
        ),
        berth: format!("p50 {}, p99 {}", ms(samples.p50()), ms(samples.p99())),
        baseline: format!(
            "SQLite ({source}) p50 {}, p99 {}",
            ms(sqlite.p50()),
            ms(sqlite.p99())
        ),
        target: "p50 ≤ 2 ms, p99 ≤ 10 ms".into(),
        met: Some(
            samples.p50() <= Duration::from_millis(2) && samples.p99() <= Duration::from_millis(10),
        ),
    })
}

/// Each instance's share of this host in figure 15: what a machine of its own would give it.
/// Two of them leave the host's other core to `wrk` and Redis, which on a 2-core host would
/// otherwise take from the instances they measure.
const INSTANCE_CORES: f64 = 0.5;

/// Figure 15: figure 9's load on one instance, then the same load split between two, one `wrk`
/// per instance at once: the same client threads and connections in all, so the second
/// measurement asks what a second instance adds, not what a second load generator does. Each
/// instance is held to [`INSTANCE_CORES`], as a machine of its own would hold it.
async fn throughput(cluster: &Cluster) -> anyhow::Result<Row> {
    let budgets: anyhow::Result<Vec<CpuBudget>> = cluster
        .instances
        .iter()
        .enumerate()
        .map(|(index, instance)| {
            let pid = instance.pid().context("the instance has exited")?;
            CpuBudget::hold(
                pid,
                &format!("berth-bench-instance-{index}"),
                INSTANCE_CORES,
            )
        })
        .collect();
    let held = match &budgets {
        Ok(_) => format!("each held to {INSTANCE_CORES} of a core"),
        Err(err) => format!("each on the whole host: {err:#}"),
    };
    let session = cluster.instances[0]
        .client
        .create_session(&CreateSession::default())
        .await?;
    let routes: Vec<String> = cluster
        .instances
        .iter()
        .map(|instance| format!("{}/api/v1/sessions/{}", instance.url, session.id))
        .collect();
    let (one, both) = tokio::task::spawn_blocking(move || {
        let one = wrk(&routes[0], Some(TOKEN), WRK_THREADS, WRK_CONNECTIONS);
        let both: Option<Vec<(f64, String)>> = std::thread::scope(|scope| {
            let runs: Vec<_> = routes
                .iter()
                .map(|route| {
                    scope.spawn(move || {
                        wrk(route, Some(TOKEN), WRK_THREADS / 2, WRK_CONNECTIONS / 2)
                    })
                })
                .collect();
            runs.into_iter()
                .map(|run| run.join().ok().flatten())
                .collect()
        });
        (one, both)
    })
    .await?;
    cluster.instances[0]
        .client
        .delete_session(&session.id)
        .await?;
    drop(budgets);
    let figure = format!(
        "`GET /api/v1/sessions/{{id}}` throughput, 2 instances against 1 ({held}; wrk, {WRK_CONNECTIONS} connections in all, 5 s)"
    );
    let target = "≥ 1.6× the throughput of one".to_owned();
    let (Some((one_rps, one_p99)), Some(both)) = (one, both) else {
        return Ok(Row {
            number: 15,
            figure,
            berth: "not measured: wrk is not installed (apt-get install wrk)".into(),
            baseline: "-".into(),
            target,
            met: None,
        });
    };
    let total: f64 = both.iter().map(|(rps, _)| rps).sum();
    let each: Vec<String> = both
        .iter()
        .map(|(rps, p99)| format!("{rps:.0} req/s, p99 {p99}"))
        .collect();
    Ok(Row {
        number: 15,
        figure,
        berth: format!("2 instances {total:.0} req/s ({})", each.join("; ")),
        baseline: format!(
            "1 instance {one_rps:.0} req/s, p99 {one_p99} (ratio {:.2}x)",
            total / one_rps
        ),
        target,
        met: Some(total >= 1.6 * one_rps),
    })
}

/// Figure 16: in each round, find the leader, time a create through the other instance with
/// the leader alive (the baseline), kill the leader with `-9`, and time from the kill until a
/// create through the other instance succeeds; then start the killed one again. The survivor
/// waits for the dead leader's lease to run out (`cluster.lease_ttl_ms`, the default here).
async fn failover(cluster: &mut Cluster, rounds: usize) -> anyhow::Result<Row> {
    let request = CreateSession::default();
    let (mut alive, mut failover) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        let leader = cluster.leader().await?;
        let survivor = 1 - leader;
        let started = Instant::now();
        cluster.instances[survivor]
            .client
            .create_session(&request)
            .await?;
        alive.push(started.elapsed());

        let killed = Instant::now();
        cluster.kill(leader).await?;
        loop {
            match cluster.instances[survivor]
                .client
                .create_session(&request)
                .await
            {
                Ok(_) => break,
                Err(err) if retryable(&err) && killed.elapsed() < Duration::from_secs(60) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => anyhow::bail!(
                    "no create after the failover ({:?} since the kill): {err}; {}",
                    killed.elapsed(),
                    cluster.logs()
                ),
            }
        }
        failover.push(killed.elapsed());
        cluster.restart(leader).await?;
    }
    Ok(Row {
        number: 16,
        figure: format!(
            "lifecycle failover: kill -9 of the leader to the next successful create through the other instance, p50 of {rounds}"
        ),
        berth: format!(
            "{} (longest {})",
            ms(failover.p50()),
            ms(failover.percentile(100.0))
        ),
        baseline: format!(
            "a create through the same instance with the leader alive p50 {} (ratio {}); lease {} ms",
            ms(alive.p50()),
            ratio(failover.p50(), alive.p50()),
            ClusterConfig::default().lease_ttl_ms
        ),
        target: "≤ 5 s".into(),
        met: Some(failover.p50() <= Duration::from_secs(5)),
    })
}

/// An error that says to try again: what a call answers while no instance leads (see
/// docs/operations.md, "When the leader dies").
fn retryable(err: &ClientError) -> bool {
    err.status() == Some(503)
        || matches!(
            err.code(),
            Some(
                ErrorCode::StoreUnavailable
                    | ErrorCode::EngineUnavailable
                    | ErrorCode::SessionFailed
            )
        )
}

/// Figure 17: figure 8's control plane process and idle sessions, on a Redis store.
async fn density(args: &Args, sqlite_mb: Option<f64>) -> anyhow::Result<Row> {
    let redis = RedisServer::start().await?;
    let data = tempfile::tempdir()?;
    let plane = ChildPlane::spawn(data.path(), args, Some(&redis.url())).await?;
    let weighed = figures::density(&plane, args.sessions).await?;
    let redis_mb = redis.rss_mb();
    plane.delete_all(&weighed.ids).await;
    plane.kill().await?;
    // What the killed control plane had not removed yet, before the next figure starts.
    crate::clean_up(&crate::engine(&crate::separate_process_config(
        data.path(),
        args,
    )?)?)
    .await;
    let baseline = match sqlite_mb {
        Some(mb) => format!("SQLite store (figure 8) {mb:.0} MB"),
        None => "SQLite store not measured in this run (figure 8)".into(),
    };
    Ok(Row {
        number: 17,
        figure: format!(
            "control plane memory at {} of {} idle sessions, Redis store",
            weighed.ids.len(),
            args.sessions
        ),
        berth: format!(
            "process RSS {:.0} MB ({:.0} MB with no sessions); redis-server RSS {redis_mb:.0} MB",
            weighed.rss, weighed.rss_idle
        ),
        baseline,
        target: "≤ 150 MB per instance".into(),
        met: Some(weighed.ids.len() >= 800 && weighed.rss <= 150.0),
    })
}

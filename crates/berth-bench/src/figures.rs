//! The figures. Each pairs what Berth does with a baseline measured in the same run.

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use berth_client::TerminalEvent;
use berth_proto::{CreateSession, agent::SECRET_HEADER, process::ExecRequest};
use berth_server::runtime::Runtime;
use bollard::{
    models::{ContainerCreateBody, HostConfig},
    query_parameters::RemoveContainerOptionsBuilder,
};
use futures_util::{SinkExt, StreamExt, future::BoxFuture};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::{
    Args, Bench, IMAGE, NETWORK,
    stats::{Samples, ms, ratio},
};

/// One row of the results table.
#[derive(Debug)]
struct Row {
    number: u8,
    figure: String,
    berth: String,
    baseline: String,
    target: String,
    met: Option<bool>,
}

pub async fn run_all(bench: &Bench, args: &Args) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    let raw = raw_create_start(args.creates).await?;
    let cold = cold_creates(bench, args.creates).await?;
    eprintln!("figure 1: pooled claims");
    rows.push(claims(bench, args.claims, &raw).await?);
    eprintln!("figure 2: create to first output");
    rows.extend(first_output(bench, args.creates).await?);
    rows.push(Row {
        number: 3,
        figure: "cold create to running, p50".into(),
        berth: ms(cold.p50()),
        baseline: format!(
            "raw docker create+start p50 {} (ratio {})",
            ms(raw.p50()),
            ratio(cold.p50(), raw.p50())
        ),
        target: "≤ 1.1× raw".into(),
        met: Some(cold.p50().as_secs_f64() <= 1.1 * raw.p50().as_secs_f64()),
    });
    eprintln!("figure 4: {} parallel creates", args.parallel);
    rows.push(parallel_creates(bench, args.parallel, cold.p50()).await?);
    eprintln!("figures 5 and 6: terminal");
    rows.extend(terminal(bench, args.keystrokes, args.megabytes).await?);
    eprintln!("figure 7: file transfer");
    rows.extend(transfer(bench, args.megabytes).await?);
    eprintln!("figure 9: API throughput");
    rows.push(throughput(bench).await?);
    eprintln!(
        "figures 8 and 10: {} idle sessions, then reconcile",
        args.sessions
    );
    rows.extend(density_and_reconcile(bench, args.sessions).await?);
    Ok(render(&rows))
}

fn render(rows: &[Row]) -> String {
    let mut table = String::from(
        "| # | figure | Berth | baseline (same run) | target | met |\n|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {met} |",
            row.number, row.figure, row.berth, row.baseline, row.target
        );
    }
    table
}

pub fn write_report(path: &Path, args: &Args, table: &str) -> anyhow::Result<()> {
    let machine = format!(
        "{} cores, {} MiB memory, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        berth_server::host::available_memory_mb().unwrap_or(0),
        std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|os| os.lines().find_map(|l| l
                .strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_owned())))
            .unwrap_or_default()
    );
    let report = format!(
        "# Benchmarks\n\nMeasured by `cargo run --release -p berth-bench -- --sessions {} --claims {}` on {} \
         (memory available when the report was written), {}.\nEvery baseline was measured in the same run. Image: `{IMAGE}`.\n\n{table}\n",
        args.sessions,
        args.claims,
        machine,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    std::fs::write(path, report).with_context(|| format!("writing {}", path.display()))
}

/// Raw `docker create` + `start` of the image Berth uses, through the same engine API.
async fn raw_create_start(n: usize) -> anyhow::Result<Samples> {
    let docker = bollard::Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;
    let mut samples = Samples::default();
    for i in 0..n {
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            env: Some(vec!["BERTH_AGENT_SECRET=raw".into()]),
            labels: Some(HashMap::from([
                ("berth.instance".to_owned(), crate::INSTANCE.to_owned()),
                ("berth.session".to_owned(), format!("raw{i}")),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some(NETWORK.into()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let started = Instant::now();
        let created = docker.create_container(None, body).await?;
        docker.start_container(&created.id, None).await?;
        samples.push(started.elapsed());
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        docker.remove_container(&created.id, Some(options)).await?;
    }
    Ok(samples)
}

async fn cold_creates(bench: &Bench, n: usize) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..n {
        let started = Instant::now();
        let session = bench
            .client
            .create_session(&CreateSession::default())
            .await?;
        samples.push(started.elapsed());
        bench.client.delete_session(&session.id).await?;
    }
    Ok(samples)
}

async fn wait_for_full_pool(bench: &Bench) -> anyhow::Result<()> {
    for _ in 0..600 {
        let pools = bench.client.pool().await?;
        if pools
            .iter()
            .filter(|p| p.template == "pooled")
            .all(|p| p.ready >= p.min_ready as usize)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the pool did not refill")
}

async fn claims(bench: &Bench, n: usize, raw: &Samples) -> anyhow::Result<Row> {
    let pooled = CreateSession {
        template: "pooled".into(),
        ..CreateSession::default()
    };
    let mut samples = Samples::default();
    for _ in 0..n {
        wait_for_full_pool(bench).await?;
        let started = Instant::now();
        let session = bench.client.create_session(&pooled).await?;
        samples.push(started.elapsed());
        bench.client.delete_session(&session.id).await?;
    }
    Ok(Row {
        number: 1,
        figure: format!(
            "pooled claim, API call to running ({} claims)",
            samples.len()
        ),
        berth: format!("p50 {}, p99 {}", ms(samples.p50()), ms(samples.p99())),
        baseline: format!("raw docker create+start p50 {}", ms(raw.p50())),
        target: "p50 ≤ 5 ms, p99 ≤ 20 ms".into(),
        met: Some(
            samples.p50() <= Duration::from_millis(5) && samples.p99() <= Duration::from_millis(20),
        ),
    })
}

async fn first_output(bench: &Bench, n: usize) -> anyhow::Result<Vec<Row>> {
    let exec = ExecRequest {
        cmd: vec!["true".into()],
        ..ExecRequest::default()
    };
    let mut results = Vec::new();
    for template in ["pooled", "default"] {
        let request = CreateSession {
            template: template.into(),
            ..CreateSession::default()
        };
        let mut samples = Samples::default();
        for _ in 0..n {
            wait_for_full_pool(bench).await?;
            let started = Instant::now();
            let session = bench.client.create_session(&request).await?;
            bench.client.exec(&session.id, &exec).await?;
            samples.push(started.elapsed());
            bench.client.delete_session(&session.id).await?;
        }
        results.push(samples);
    }
    Ok(vec![Row {
        number: 2,
        figure: "create to first command output (`exec true`), p50".into(),
        berth: format!("pooled {}", ms(results[0].p50())),
        baseline: format!("cold {}", ms(results[1].p50())),
        target: "pooled p50 ≤ 15 ms".into(),
        met: Some(results[0].p50() <= Duration::from_millis(15)),
    }])
}

async fn parallel_creates(bench: &Bench, n: usize, single: Duration) -> anyhow::Result<Row> {
    let creates = (0..n).map(|_| {
        let client = bench.client.clone();
        async move {
            let started = Instant::now();
            let result = client.create_session(&CreateSession::default()).await;
            (started.elapsed(), result)
        }
    });
    let outcomes = futures_util::future::join_all(creates).await;
    let mut samples = Samples::default();
    let mut failures = 0;
    for (elapsed, result) in outcomes {
        match result {
            Ok(session) => {
                samples.push(elapsed);
                bench.client.delete_session(&session.id).await?;
            }
            Err(_) => failures += 1,
        }
    }
    Ok(Row {
        number: 4,
        figure: format!("{n} parallel creates"),
        berth: format!(
            "{failures} failed; p50 {}, p95 {}",
            ms(samples.p50()),
            ms(samples.p95())
        ),
        baseline: format!(
            "one create alone p50 {} (p95 ratio {})",
            ms(single),
            ratio(samples.p95(), single)
        ),
        target: "0 failures, p95 ≤ 3× single".into(),
        met: Some(failures == 0 && samples.p95().as_secs_f64() <= 3.0 * single.as_secs_f64()),
    })
}

type Send = Box<dyn FnMut(Vec<u8>) -> BoxFuture<'static, ()> + std::marker::Send>;
type Recv = Box<dyn FnMut() -> BoxFuture<'static, Option<Vec<u8>>> + std::marker::Send>;

/// Measures one terminal connection, whatever carries it: `n` keystroke echo round trips (a
/// `cat` in non-canonical mode echoes each key at once), then the rate at which a bulk `cat` of
/// `size` bytes reaches the client (a client slower than the terminal loses the oldest output,
/// by design, so this counts what arrived).
async fn measure_terminal(mut send: Send, mut recv: Recv, n: usize) -> (Samples, f64) {
    send(b"stty -icanon min 1; cat\n".to_vec()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), recv()).await {}
    let mut echoes = Samples::default();
    for i in 0..n {
        let key = b'a' + (i % 26) as u8;
        let started = Instant::now();
        send(vec![key]).await;
        // A lost echo must not hang the bench: after two seconds the sample counts as is.
        while let Ok(Some(bytes)) = tokio::time::timeout(Duration::from_secs(2), recv()).await {
            if bytes.contains(&key) {
                break;
            }
        }
        echoes.push(started.elapsed());
    }
    send(vec![3]).await; // Ctrl-C ends `cat`.
    let started = Instant::now();
    // The marker is computed by the shell, so the echoed command line cannot match it.
    send(b"cat /tmp/bulk; echo BULK-$((40+2))\n".to_vec()).await;
    let (mut seen, mut tail) = (0usize, Vec::new());
    while let Ok(Some(bytes)) = tokio::time::timeout(Duration::from_secs(10), recv()).await {
        seen += bytes.len();
        tail.extend_from_slice(&bytes);
        tail.drain(..tail.len().saturating_sub(64));
        if String::from_utf8_lossy(&tail).contains("BULK-42") {
            break;
        }
    }
    (echoes, seen as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// A fresh session, with where its agent listens and its secret, for agent-direct baselines.
async fn session_with_agent(
    bench: &Bench,
) -> anyhow::Result<(berth_proto::Session, std::net::SocketAddr, String)> {
    let session = bench
        .client
        .create_session(&CreateSession::default())
        .await?;
    let admin = berth_server::auth::Principal::admin();
    let (addr, secret) = bench
        .app
        .sessions
        .agent_endpoint(&admin, &session.id)
        .await?;
    Ok((session, addr, secret))
}

async fn terminal(bench: &Bench, keystrokes: usize, megabytes: usize) -> anyhow::Result<Vec<Row>> {
    let (session, addr, secret) = session_with_agent(bench).await?;
    let size = megabytes * 1_000_000;
    let make = ExecRequest {
        cmd: vec![
            "sh".into(),
            "-c".into(),
            format!("head -c {size} /dev/zero | tr '\\0' a > /tmp/bulk"),
        ],
        ..Default::default()
    };
    bench.client.exec(&session.id, &make).await?;

    // Through Berth: client, control plane, agent.
    let (input, output) = bench
        .client
        .terminal(&session.id, &Default::default())
        .await?
        .split();
    let input = Arc::new(Mutex::new(input));
    let output = Arc::new(Mutex::new(output));
    let send: Send = Box::new(move |bytes| {
        let input = input.clone();
        Box::pin(async move {
            let _ = input.lock().await.send(&bytes).await;
        })
    });
    let recv: Recv = Box::new(move || {
        let output = output.clone();
        Box::pin(async move {
            match output.lock().await.next().await {
                Some(TerminalEvent::Output(bytes)) => Some(bytes),
                _ => None,
            }
        })
    });
    let (berth_echo, berth_bulk) = measure_terminal(send, recv, keystrokes).await;

    // Straight on the agent: the baseline the control plane's relay adds to.
    let mut request = format!("ws://{addr}/terminal").into_client_request()?;
    request.headers_mut().insert(SECRET_HEADER, secret.parse()?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    let (sink, stream) = socket.split();
    let (sink, stream) = (Arc::new(Mutex::new(sink)), Arc::new(Mutex::new(stream)));
    let send: Send = Box::new(move |bytes| {
        let sink = sink.clone();
        Box::pin(async move {
            let _ = sink.lock().await.send(Message::binary(bytes)).await;
        })
    });
    let recv: Recv = Box::new(move || {
        let stream = stream.clone();
        Box::pin(async move {
            loop {
                match stream.lock().await.next().await {
                    Some(Ok(Message::Binary(bytes))) => return Some(bytes.to_vec()),
                    Some(Ok(_)) => continue,
                    _ => return None,
                }
            }
        })
    });
    let (agent_echo, agent_bulk) = measure_terminal(send, recv, keystrokes).await;
    bench.client.delete_session(&session.id).await?;

    let added_p50 = berth_echo.p50().saturating_sub(agent_echo.p50());
    let added_p99 = berth_echo.p99().saturating_sub(agent_echo.p99());
    Ok(vec![
        Row {
            number: 5,
            figure: format!("keystroke echo round trip ({} keys)", berth_echo.len()),
            berth: format!(
                "p50 {}, p99 {} (added p50 {}, p99 {})",
                ms(berth_echo.p50()),
                ms(berth_echo.p99()),
                ms(added_p50),
                ms(added_p99)
            ),
            baseline: format!(
                "agent directly: p50 {}, p99 {}",
                ms(agent_echo.p50()),
                ms(agent_echo.p99())
            ),
            target: "added p50 ≤ 1 ms, p99 ≤ 5 ms".into(),
            met: Some(
                added_p50 <= Duration::from_millis(1) && added_p99 <= Duration::from_millis(5),
            ),
        },
        Row {
            number: 6,
            figure: format!("terminal bulk output ({megabytes} MB `cat`)"),
            berth: format!("{berth_bulk:.0} MB/s"),
            baseline: format!("agent directly {agent_bulk:.0} MB/s"),
            target: "≥ 100 MB/s".into(),
            met: Some(berth_bulk >= 100.0),
        },
    ])
}

async fn transfer(bench: &Bench, megabytes: usize) -> anyhow::Result<Vec<Row>> {
    let (session, addr, secret) = session_with_agent(bench).await?;
    let payload: Vec<u8> = (0..megabytes * 1_000_000)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let mb = payload.len() as f64 / 1e6;

    let started = Instant::now();
    bench
        .client
        .upload(&session.id, "bench.bin", payload.clone())
        .await?;
    let berth_up = mb / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let downloaded = bench
        .client
        .download(&session.id, "bench.bin")
        .await?
        .bytes()
        .await?;
    let berth_down = mb / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        downloaded.len() == payload.len(),
        "download came back short"
    );

    let http = reqwest::Client::new();
    let url = format!("http://{addr}/files/content?path=direct.bin");
    let started = Instant::now();
    http.put(&url)
        .header(SECRET_HEADER, &secret)
        .body(payload.clone())
        .send()
        .await?
        .error_for_status()?;
    let agent_up = mb / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let direct = http
        .get(&url)
        .header(SECRET_HEADER, &secret)
        .send()
        .await?
        .bytes()
        .await?;
    let agent_down = mb / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        direct.len() == payload.len(),
        "direct download came back short"
    );
    bench.client.delete_session(&session.id).await?;
    Ok(vec![Row {
        number: 7,
        figure: format!("{megabytes} MB file upload / download through the API"),
        berth: format!("{berth_up:.0} / {berth_down:.0} MB/s"),
        baseline: format!("agent directly {agent_up:.0} / {agent_down:.0} MB/s"),
        target: "≥ 300 MB/s".into(),
        met: Some(berth_up >= 300.0 && berth_down >= 300.0),
    }])
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn density_and_reconcile(bench: &Bench, n: usize) -> anyhow::Result<Vec<Row>> {
    let free_before = berth_server::host::available_memory_mb().unwrap_or(0);
    let rss_before = rss_mb();
    let request = CreateSession::default();
    let creates = (0..n).map(|_| bench.client.create_session(&request));
    let results = futures_util::future::join_all(creates).await;
    let ids: Vec<String> = results
        .into_iter()
        .filter_map(Result::ok)
        .map(|s| s.id)
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let free_after = berth_server::host::available_memory_mb().unwrap_or(0);
    let per_session = free_before.saturating_sub(free_after) as f64 / ids.len().max(1) as f64;
    let rss_after = rss_mb();
    let agent_rss = match ids.first() {
        Some(id) => {
            let probe = ExecRequest {
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "ps -o rss,args | grep '[b]erth-agent'".into(),
                ],
                ..Default::default()
            };
            let out = bench.client.exec(id, &probe).await?.stdout;
            out.lines()
                .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
                .sum::<f64>()
                / 1024.0
        }
        None => 0.0,
    };

    let started = Instant::now();
    bench.app.sessions.reconcile().await?;
    let reconcile = started.elapsed();
    let started = Instant::now();
    bench.runtime.list().await?;
    let list = started.elapsed();

    let removals = ids.iter().map(|id| bench.client.delete_session(id));
    futures_util::future::join_all(removals).await;
    Ok(vec![
        Row {
            number: 8,
            figure: format!("density: {} of {n} idle sessions running", ids.len()),
            berth: format!(
                "host memory {per_session:.1} MB per session; agent RSS {agent_rss:.1} MB; control plane RSS {rss_after:.0} MB (+{:.0} MB)",
                rss_after - rss_before
            ),
            baseline: format!("host had {free_before} MB available before"),
            target: "800 sessions, ≤ 8 MB Berth overhead each, control plane ≤ 150 MB".into(),
            met: Some(ids.len() >= 800 && agent_rss <= 8.0 && rss_after <= 150.0),
        },
        Row {
            number: 10,
            figure: format!("reconcile with {} containers", ids.len()),
            berth: ms(reconcile),
            baseline: format!("listing the containers alone {}", ms(list)),
            target: "≤ 2 s for 1,000".into(),
            met: Some(reconcile <= Duration::from_secs(2)),
        },
    ])
}

/// `wrk` against one route: requests per second and the p99 latency it printed.
fn wrk(url: &str, auth: Option<&str>) -> Option<(f64, String)> {
    let mut command = std::process::Command::new("wrk");
    command.args(["-t2", "-c64", "-d5s", "--latency"]);
    if let Some(token) = auth {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = command.arg(url).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%").map(|v| v.trim().to_owned()))?;
    Some((rps, p99))
}

async fn throughput(bench: &Bench) -> anyhow::Result<Row> {
    let session = bench
        .client
        .create_session(&CreateSession::default())
        .await?;
    let route = format!("{}/api/v1/sessions/{}", bench.base_url, session.id);
    let healthz = format!("{}/healthz", bench.base_url);
    let (get, baseline) =
        tokio::task::spawn_blocking(move || (wrk(&route, Some(crate::TOKEN)), wrk(&healthz, None)))
            .await?;
    bench.client.delete_session(&session.id).await?;
    Ok(match (get, baseline) {
        (Some((rps, p99)), Some((base_rps, base_p99))) => Row {
            number: 9,
            figure: "`GET /api/v1/sessions/{id}` throughput (wrk, 64 connections, 5 s)".into(),
            berth: format!("{rps:.0} req/s, p99 {p99}"),
            baseline: format!("`/healthz` {base_rps:.0} req/s, p99 {base_p99}"),
            target: "≥ 5,000 req/s, p99 < 10 ms".into(),
            met: Some(
                rps >= 5000.0
                    && p99.ends_with("ms")
                    && p99
                        .trim_end_matches("ms")
                        .parse::<f64>()
                        .is_ok_and(|v| v < 10.0)
                    || rps >= 5000.0 && p99.ends_with("us"),
            ),
        },
        _ => Row {
            number: 9,
            figure: "API throughput".into(),
            berth: "not measured: wrk is not installed (apt-get install wrk)".into(),
            baseline: "-".into(),
            target: "≥ 5,000 req/s, p99 < 10 ms".into(),
            met: None,
        },
    })
}

//! The figures. Each pairs what Berth does with a baseline measured in the same run.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use berth_client::TerminalEvent;
use berth_proto::SessionState;
use berth_proto::{CreateSession, agent::SECRET_HEADER, process::ExecRequest};
use berth_server::runtime::Runtime;
use bollard::{
    models::{ContainerCreateBody, HostConfig},
    query_parameters::RemoveContainerOptionsBuilder,
};
use futures_util::{SinkExt, StreamExt, future::BoxFuture};
use tokio::{io::AsyncWriteExt, sync::Mutex};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::{
    Args, BASE_IMAGE, Bench, IMAGE, NETWORK, checkpoint, cluster,
    control_plane::ChildPlane,
    docker_in_session, snapshots,
    stats::{Samples, ms, ratio},
    storm,
};

/// One row of the results table.
#[derive(Debug)]
pub struct Row {
    pub number: u8,
    pub figure: String,
    pub berth: String,
    pub baseline: String,
    pub target: String,
    pub met: Option<bool>,
}

pub async fn run_all(bench: &Bench, args: &Args) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    let mut sqlite = cluster::SqliteBaselines::default();
    // Pools warming in the background would slow the baselines and cold creates alike.
    wait_for_full_pool(bench).await?;
    if args.wants(1) || args.wants(3) {
        let raw = raw_create_start(args.creates).await?;
        if args.wants(1) {
            eprintln!("figure 1: pooled claims");
            let samples = pooled_claims(bench, args.claims).await?;
            rows.push(claims(&samples, &raw));
            sqlite.claims = Some(samples);
        }
        if args.wants(3) {
            eprintln!("figure 3: cold creates");
            let cold = creates_one_by_one(bench, "default", args.creates, None).await?;
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
        }
    }
    if args.wants(2) {
        eprintln!("figure 2: create to first output");
        rows.extend(first_output(bench, args.creates).await?);
    }
    if args.wants(4) {
        eprintln!("figure 4: {} parallel creates", args.parallel);
        rows.push(parallel_creates(bench, args.parallel, args.creates).await?);
    }
    if args.wants(5) || args.wants(6) {
        eprintln!("figures 5 and 6: terminal");
        rows.extend(terminal(bench, args.keystrokes, args.megabytes).await?);
    }
    if args.wants(7) {
        eprintln!("figure 7: file transfer");
        rows.extend(transfer(bench, args.megabytes).await?);
    }
    if args.wants(9) {
        eprintln!("figure 9: API throughput");
        rows.push(throughput(bench).await?);
    }
    if args.wants(8) || args.wants(10) {
        eprintln!(
            "figures 8 and 10: {} idle sessions, then reconcile",
            args.sessions
        );
        let (figures, control_plane_mb) = density_and_reconcile(args).await?;
        sqlite.control_plane_mb = Some(control_plane_mb);
        rows.extend(figures);
    }
    if args.wants(11) || args.wants(12) || args.wants(22) {
        eprintln!(
            "figures 11, 12 and 22: hibernate and restore, {} MB changed",
            args.megabytes
        );
        rows.extend(snapshots::hibernate_and_restore(bench, args.megabytes).await?);
    }
    if args.wants(13) {
        eprintln!("figure 13: {} hibernate/resume cycles", args.cycles);
        rows.push(snapshots::cycles(bench, args.cycles, args.megabytes).await?);
    }
    rows.extend(snapshots::hibernate_sizes(bench, args.large_megabytes, |n| args.wants(n)).await?);
    if args.wants(20) {
        eprintln!("figure 20: checkpoint pause");
        rows.push(checkpoint::checkpoint_pause(bench).await?);
    }
    if args.wants(21) {
        eprintln!("figure 21: restore storm of {} sessions", args.storm);
        rows.push(storm::restore_storm(bench, args.storm).await?);
    }
    if [23, 24, 25].into_iter().any(|n| args.wants(n)) {
        rows.extend(docker_in_session::figures(bench, args.megabytes, |n| args.wants(n)).await?);
    }
    rows.extend(cluster::figures(bench, args, sqlite).await?);
    rows.extend(crate::swarm::figures(args).await?);
    rows.extend(crate::shards::figure(args).await?);
    rows.extend(crate::e2b::figures(args).await?);
    // Some figures are measured in pairs; `--only` shows just the ones asked for.
    rows.retain(|row| args.wants(row.number));
    rows.sort_by_key(|row| row.number);
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
        "# Benchmarks\n\nMeasured by `cargo run --release -p berth-bench -- --sessions {} --claims {} --cycles {}` on {} \
         (memory available when the report was written), {}.\nEvery baseline was measured in the same run. Image: `{IMAGE}`; \
         `{BASE_IMAGE}` for figures 11-13. Figures 14-17 on a Redis store: a `redis-server` \
         of the bench's own (`appendfsync everysec`), 2 `berth serve` processes for 15 and 16. \
         Figures 26-30 on the three-node swarm of `scripts/swarm-rig up`, through one `berth serve` \
         process (left out when the rig is down). Figures 32 and 33 through E2B's Python SDK \
         (`e2b` from PyPI, as `ensure_e2b_sdk` pins it).\n\n{table}\n",
        args.sessions,
        args.claims,
        args.cycles,
        machine,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    std::fs::write(path, report).with_context(|| format!("writing {}", path.display()))
}

pub async fn engine() -> anyhow::Result<bollard::Docker> {
    Ok(bollard::Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?)
}

/// A container of `image` made without Berth, for the raw baselines. It carries the bench
/// instance's labels, so the bench's clean-up finds it (and, committed, its image) if a figure
/// fails half-way.
pub fn raw_container(image: &str, name: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.into()),
        env: Some(vec!["BERTH_AGENT_SECRET=raw".into()]),
        labels: Some(HashMap::from([
            ("berth.instance".to_owned(), crate::INSTANCE.to_owned()),
            ("berth.session".to_owned(), name.to_owned()),
        ])),
        host_config: Some(HostConfig {
            // The network the bench's sessions join (its templates' egress is open).
            network_mode: Some(format!("{NETWORK}-open")),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// Raw `docker create` + `start` of the image Berth uses, through the same engine API, then
/// its removal (not timed).
async fn raw_create_start_one(docker: &bollard::Docker, name: &str) -> anyhow::Result<Duration> {
    let body = raw_container(IMAGE, name);
    let started = Instant::now();
    let created = docker.create_container(None, body).await?;
    docker.start_container(&created.id, None).await?;
    let elapsed = started.elapsed();
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    docker.remove_container(&created.id, Some(options)).await?;
    Ok(elapsed)
}

async fn raw_create_start(n: usize) -> anyhow::Result<Samples> {
    let docker = engine().await?;
    let mut samples = Samples::default();
    for i in 0..n {
        samples.push(raw_create_start_one(&docker, &format!("raw{i}")).await?);
    }
    Ok(samples)
}

pub async fn wait_for_full_pool(bench: &Bench) -> anyhow::Result<()> {
    // Warming a pool of 50 takes 10-20 s on 2 cores.
    for _ in 0..3000 {
        let pools = bench.client.pool().await?;
        if pools.iter().all(|p| p.ready >= p.min_ready as usize) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the pool did not refill")
}

/// `n` creates from `template`, one at a time, each with its pool (if any) full: timed until
/// the session runs, or with `then`, until that command's output is back.
pub async fn creates_one_by_one(
    bench: &Bench,
    template: &str,
    n: usize,
    then: Option<&ExecRequest>,
) -> anyhow::Result<Samples> {
    let request = CreateSession {
        template: template.into(),
        ..CreateSession::default()
    };
    let mut samples = Samples::default();
    for _ in 0..n {
        wait_for_full_pool(bench).await?;
        let started = Instant::now();
        let session = bench.client.create_session(&request).await?;
        if let Some(exec) = then {
            bench.client.exec(&session.id, exec).await?;
        }
        samples.push(started.elapsed());
        bench.client.delete_session(&session.id).await?;
    }
    Ok(samples)
}

/// `n` claims from the `pooled` template's warm pool, one at a time, each with the pool full:
/// figure 1 on the bench's SQLite store, figure 14 on Redis.
pub async fn pooled_claims(bench: &Bench, n: usize) -> anyhow::Result<Samples> {
    creates_one_by_one(bench, "pooled", n, None).await
}

fn claims(samples: &Samples, raw: &Samples) -> Row {
    Row {
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
    }
}

async fn first_output(bench: &Bench, n: usize) -> anyhow::Result<Vec<Row>> {
    let exec = ExecRequest {
        cmd: vec!["true".into()],
        ..ExecRequest::default()
    };
    let mut results = Vec::new();
    for template in ["pooled", "default"] {
        results.push(creates_one_by_one(bench, template, n, Some(&exec)).await?);
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

/// `n` creates at once on the default path, a template whose pool is as large as the burst,
/// against one such create alone and against `n` raw `docker create`+`start`s at once.
async fn parallel_creates(bench: &Bench, n: usize, singles: usize) -> anyhow::Result<Row> {
    let burst = CreateSession {
        template: "burst".into(),
        ..CreateSession::default()
    };
    let single = creates_one_by_one(bench, &burst.template, singles, None).await?;
    wait_for_full_pool(bench).await?;
    let creates = (0..n).map(|_| {
        let (client, burst) = (bench.client.clone(), burst.clone());
        async move {
            let started = Instant::now();
            let result = client.create_session(&burst).await;
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
    // The same burst of requests that do nothing: what `n` requests at once cost on this
    // host before any session work.
    let healthz = format!("{}/healthz", bench.base_url);
    let pings = (0..n).map(|_| {
        let (http, healthz) = (bench.http.clone(), healthz.clone());
        async move {
            let started = Instant::now();
            let ok = http.get(&healthz).send().await.is_ok();
            (started.elapsed(), ok)
        }
    });
    let mut ping_burst = Samples::default();
    for (elapsed, ok) in futures_util::future::join_all(pings).await {
        anyhow::ensure!(ok, "GET /healthz failed");
        ping_burst.push(elapsed);
    }
    let docker = engine().await?;
    let docker = &docker;
    let raw =
        (0..n).map(|i| async move { raw_create_start_one(docker, &format!("rawburst{i}")).await });
    let mut raw_burst = Samples::default();
    for elapsed in futures_util::future::join_all(raw).await {
        raw_burst.push(elapsed?);
    }
    wait_for_full_pool(bench).await?;
    Ok(Row {
        number: 4,
        figure: format!("{n} parallel creates (pool of {n})"),
        berth: format!(
            "{failures} failed; p50 {}, p95 {}",
            ms(samples.p50()),
            ms(samples.p95())
        ),
        baseline: format!(
            "one create alone p50 {} (p95 ratio {}); {n} `GET /healthz` at once p95 {}; {n} raw docker create+start at once p95 {}",
            ms(single.p50()),
            ratio(samples.p95(), single.p50()),
            ms(ping_burst.p95()),
            ms(raw_burst.p95())
        ),
        target: "0 failures, p95 ≤ 3× single".into(),
        met: Some(failures == 0 && samples.p95().as_secs_f64() <= 3.0 * single.p50().as_secs_f64()),
    })
}

type Send = Box<dyn FnMut(Vec<u8>) -> BoxFuture<'static, ()> + std::marker::Send>;
type Recv = Box<dyn FnMut() -> BoxFuture<'static, Option<Vec<u8>>> + std::marker::Send>;

/// Measures one terminal connection, whatever carries it: `n` keystroke echo round trips (a
/// `cat` in non-canonical mode echoes each key at once), then the rate at which a bulk `cat` of
/// `size` bytes reaches the client (a client slower than the terminal loses the oldest output,
/// by design, so this counts what arrived).
async fn measure_terminal(mut send: Send, mut recv: Recv, n: usize) -> (Samples, f64) {
    settle(&mut send, &mut recv).await;
    send(b"stty -icanon min 1; cat\n".to_vec()).await;
    settle(&mut send, &mut recv).await;
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
    settle(&mut send, &mut recv).await;
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

/// Reads until the terminal has been quiet for a moment, answering the shell's cursor position
/// query as a terminal emulator would: busybox's line editor asks at each prompt and takes
/// keys typed before the answer for the answer.
async fn settle(send: &mut Send, recv: &mut Recv) {
    while let Ok(Some(bytes)) = tokio::time::timeout(Duration::from_millis(300), recv()).await {
        if bytes.windows(4).any(|w| w == b"\x1b[6n") {
            send(b"\x1b[1;1R".to_vec()).await;
        }
    }
}

/// A fresh session, with where its agent listens and its secret, for agent-direct baselines.
async fn session_with_agent(
    bench: &Bench,
) -> anyhow::Result<(berth_proto::Session, std::net::SocketAddr, String)> {
    let standard = CreateSession {
        template: "standard".into(),
        ..CreateSession::default()
    };
    let session = bench.client.create_session(&standard).await?;
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
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
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

    // `docker exec -it sh`: what a terminal costs without Berth, through the engine.
    let (send, recv) = docker_exec_terminal(bench, &session.id).await?;
    let (docker_echo, docker_bulk) = measure_terminal(send, recv, keystrokes).await;
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
                "agent directly: p50 {}, p99 {}; `docker exec -it`: p50 {}, p99 {}",
                ms(agent_echo.p50()),
                ms(agent_echo.p99()),
                ms(docker_echo.p50()),
                ms(docker_echo.p99())
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
            baseline: format!(
                "agent directly {agent_bulk:.0} MB/s; `docker exec -it` {docker_bulk:.0} MB/s"
            ),
            target: "≥ 100 MB/s".into(),
            met: Some(berth_bulk >= 100.0),
        },
    ])
}

/// A shell in the session's container through the engine's exec API with a TTY, as
/// `docker exec -it <container> sh` opens it.
async fn docker_exec_terminal(bench: &Bench, session: &str) -> anyhow::Result<(Send, Recv)> {
    let container = session_container(bench, session).await?;
    let docker = engine().await?;
    let exec = docker
        .create_exec(
            &container,
            bollard::exec::CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                tty: Some(true),
                cmd: Some(vec!["sh"]),
                ..Default::default()
            },
        )
        .await?;
    let bollard::exec::StartExecResults::Attached { output, input } =
        docker.start_exec(&exec.id, None).await?
    else {
        anyhow::bail!("the engine did not attach the exec");
    };
    let (input, output) = (Arc::new(Mutex::new(input)), Arc::new(Mutex::new(output)));
    let send: Send = Box::new(move |bytes| {
        let input = input.clone();
        Box::pin(async move {
            let mut input = input.lock().await;
            let _ = input.write_all(&bytes).await;
            let _ = input.flush().await;
        })
    });
    let recv: Recv = Box::new(move || {
        let output = output.clone();
        Box::pin(async move {
            match output.lock().await.next().await {
                Some(Ok(log)) => Some(log.into_bytes().to_vec()),
                _ => None,
            }
        })
    });
    Ok((send, recv))
}

/// The id of a session's container, as the engine lists it.
pub async fn session_container(bench: &Bench, session: &str) -> anyhow::Result<String> {
    Ok(bench
        .runtime
        .list()
        .await?
        .into_iter()
        .find(|c| c.session_id == session)
        .context("the session's container is not on the engine")?
        .id)
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

/// A memory figure (`VmRSS:`, `VmHWM:`) from a `/proc/*/status` file, in MB.
pub fn status_mb(path: &str, key: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A control plane process weighed with idle sessions (figures 8 and 17).
#[derive(Debug)]
pub struct Density {
    /// The sessions that started.
    pub ids: Vec<String>,
    /// The process's resident set before any session and with them, in MB.
    pub rss_idle: f64,
    pub rss: f64,
    /// Host memory taken per session, in MB.
    pub per_session: f64,
    /// One session's agent's resident set, in MB.
    pub agent_rss: f64,
    /// Host memory available before, in MB.
    pub free_before: u64,
}

/// Creates in flight at once while [`density`] fills the host: more than the control plane's
/// `capacity.create_concurrency` keeps it busy; thousands at once would only measure how an
/// overloaded host accepts connections.
const DENSITY_CREATES_IN_FLIGHT: usize = 64;

/// Starts `n` idle sessions on `plane` and weighs the host, the agent and the process.
pub async fn density(plane: &ChildPlane, n: usize) -> anyhow::Result<Density> {
    let rss_idle = plane.rss_mb();
    let free_before = berth_server::host::available_memory_mb().unwrap_or(0);
    let request = CreateSession::default();
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|_| plane.client.create_session(&request))
        .buffer_unordered(DENSITY_CREATES_IN_FLIGHT)
        .collect()
        .await;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = Vec::new();
    for result in results {
        match result {
            Ok(session) => ids.push(session.id),
            Err(err) => *failures.entry(err.to_string()).or_default() += 1,
        }
    }
    for (failure, count) in &failures {
        eprintln!("{count} creates failed: {failure}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let free_after = berth_server::host::available_memory_mb().unwrap_or(0);
    let per_session = free_before.saturating_sub(free_after) as f64 / ids.len().max(1) as f64;
    let rss = plane.rss_mb();
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
            let out = plane.client.exec(id, &probe).await?.stdout;
            out.lines()
                .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
                .sum::<f64>()
                / 1024.0
        }
        None => 0.0,
    };
    Ok(Density {
        ids,
        rss_idle,
        rss,
        per_session,
        agent_rss,
        free_before,
    })
}

/// Figures 8 and 10 on a control plane in a process of its own: start `n` idle sessions and
/// weigh the host, the agent and that process; then kill it as a crash would, start it again,
/// and time the restart until it answers, which includes reconciling all `n` containers. Also
/// returns the process's resident set with the sessions, figure 17's baseline.
async fn density_and_reconcile(args: &Args) -> anyhow::Result<(Vec<Row>, f64)> {
    let n = args.sessions;
    let data = tempfile::tempdir()?;
    let plane = ChildPlane::spawn(data.path(), args, None).await?;
    let weighed = density(&plane, n).await?;
    let ids = &weighed.ids;

    plane.kill().await?;
    let plane = ChildPlane::spawn(data.path(), args, None).await?;
    let restart = plane.ready_after;
    let listed = plane
        .client
        .list_sessions(&Default::default())
        .await?
        .into_iter()
        .filter(|s| s.state == SessionState::Running)
        .count();
    let engine = crate::engine(&crate::separate_process_config(data.path(), args)?)?;
    let started = Instant::now();
    let containers = engine.list().await?.len();
    let list = started.elapsed();

    plane.delete_all(ids).await;
    plane.kill().await?;
    // What the killed control plane had not removed yet, before the next figure starts.
    crate::clean_up(&engine).await;
    let nothing_lost = listed == ids.len() && containers == ids.len();
    let rows = vec![
        Row {
            number: 8,
            figure: format!("density: {} of {n} idle sessions running", ids.len()),
            berth: format!(
                "host memory {:.1} MB per session; agent RSS {:.1} MB; control plane process RSS {:.0} MB ({:.0} MB with no sessions)",
                weighed.per_session, weighed.agent_rss, weighed.rss, weighed.rss_idle
            ),
            baseline: format!("host had {} MB available before", weighed.free_before),
            target: "800 sessions, ≤ 8 MB Berth overhead each, control plane ≤ 150 MB".into(),
            met: Some(ids.len() >= 800 && weighed.agent_rss <= 8.0 && weighed.rss <= 150.0),
        },
        Row {
            number: 10,
            figure: format!(
                "restart after kill -9 with {} containers, to first answer (reconcile included)",
                ids.len()
            ),
            berth: format!(
                "{}; {listed} sessions running after, {containers} containers",
                ms(restart)
            ),
            baseline: format!("listing the containers alone {}", ms(list)),
            target: "≤ 2 s for 1,000, nothing orphaned".into(),
            met: Some(restart <= Duration::from_secs(2) && nothing_lost),
        },
    ];
    Ok((rows, weighed.rss))
}

/// Figure 9's load: 2 threads, 64 connections, for 5 s.
pub const WRK_THREADS: usize = 2;
pub const WRK_CONNECTIONS: usize = 64;

/// `wrk` against one route for 5 s: requests per second and the p99 latency it printed.
pub fn wrk(
    url: &str,
    auth: Option<&str>,
    threads: usize,
    connections: usize,
) -> Option<(f64, String)> {
    let mut command = std::process::Command::new("wrk");
    command.args([
        format!("-t{threads}"),
        format!("-c{connections}"),
        "-d5s".into(),
        "--latency".into(),
    ]);
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
    let (get, baseline) = tokio::task::spawn_blocking(move || {
        (
            wrk(&route, Some(crate::TOKEN), WRK_THREADS, WRK_CONNECTIONS),
            wrk(&healthz, None, WRK_THREADS, WRK_CONNECTIONS),
        )
    })
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

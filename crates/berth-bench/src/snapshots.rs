//! Figures 11-13, 18, 19 and 22: hibernation. Each is measured next to the engine doing the same work for a
//! container made without Berth, with the same changes in it: `docker stop` + `commit` + `rm`
//! to put it away, `docker create` + `start` of the committed image until its agent's port
//! accepts a connection to bring it back.

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context;
use berth_proto::{CreateSession, SessionState, agent::AGENT_PORT, process::ExecRequest};
use bollard::{
    Docker,
    exec::{CreateExecOptions, StartExecResults},
    models::{ContainerConfig, ContainerCreateBody},
    query_parameters::{
        CommitContainerOptions, InspectContainerOptionsBuilder, RemoveContainerOptionsBuilder,
        RemoveImageOptionsBuilder, StopContainerOptions,
    },
};
use futures_util::StreamExt;

use berth_server::runtime::Runtime;

use crate::{
    BASE_IMAGE, Bench,
    figures::{Row, engine, raw_container, session_container},
    stats::{Samples, ms, ratio},
};

/// The bench's template for these figures: the Debian image with the default limits.
pub const TEMPLATE: &str = "base";

/// Samples of figures 11 and 12. Each takes a fresh session and fresh changes: a hibernation
/// commits what changed since the previous one, so hibernating the same session again would
/// measure an empty commit.
pub(crate) const ROUNDS: usize = 5;

/// Cycles at each end of figure 13 compared, to see whether a deeper image slows them.
const WINDOW: usize = 10;

/// Berth's grace between SIGTERM and SIGKILL when it hibernates, given to `docker stop` too.
pub(crate) const STOP_GRACE_SECONDS: i32 = 5;

/// The user Berth runs a session's processes as, the agent included.
const SESSION_USER: &str = "1000:1000";

/// Where the raw baselines' commits go, apart from Berth's `berth-snapshot/`.
pub(crate) const RAW_REPOSITORY: &str = "berth-bench-raw";

/// What a session has changed when it is hibernated: `megabytes` of new data and 2,000 small
/// files in its home, as a user's work leaves it.
fn changes(megabytes: usize) -> String {
    format!(
        "set -e; cd /home/user; head -c {} /dev/urandom > changed.bin; mkdir small; \
         i=0; while [ $i -lt 2000 ]; do echo $i > small/$i; i=$((i+1)); done",
        megabytes * 1_000_000
    )
}

/// What rounds of hibernation measured: Berth's and the raw engine's times for the same
/// changes, and what the changes and their snapshot take on disk.
#[derive(Default)]
struct Rounds {
    hibernate: Samples,
    raw_hibernate: Samples,
    restore: Samples,
    raw_restore: Samples,
    /// The session's container's own layer before it slept (`docker ps --size`), in bytes.
    changed_bytes: Vec<u64>,
    /// What the snapshot holds above the template's image, in bytes.
    snapshot_bytes: Vec<u64>,
}

/// `rounds` rounds, each hibernating a fresh session and a raw container with the same
/// `megabytes` of changes, then (with `restore`) bringing both back.
async fn measure(
    bench: &Bench,
    megabytes: usize,
    rounds: usize,
    restore: bool,
) -> anyhow::Result<Rounds> {
    let docker = engine().await?;
    let script = changes(megabytes);
    let mut measured = Rounds::default();
    for round in 0..rounds {
        let id = session_with(bench, &script).await?;
        measured
            .changed_bytes
            .push(own_layer_bytes(&docker, &session_container(bench, &id).await?).await?);
        let name = format!("rawsnap{round}");
        let (container, _) = raw_start(&docker, BASE_IMAGE, &name).await?;
        raw_sh(&docker, &container, &script).await?;
        // Untagged: the engine tags it `latest`.
        let image = format!("{RAW_REPOSITORY}/{name}");

        let (berth, raw) = in_turn(
            round,
            async {
                sync().await?;
                let started = Instant::now();
                let asleep = bench.client.hibernate_session(&id).await?;
                let elapsed = started.elapsed();
                anyhow::ensure!(asleep.state == SessionState::Hibernated, "{asleep:?}");
                Ok(elapsed)
            },
            async {
                sync().await?;
                raw_stop_commit_remove(&docker, &container, &image).await
            },
        )
        .await?;
        measured.hibernate.push(berth);
        measured.raw_hibernate.push(raw);
        measured
            .snapshot_bytes
            .push(snapshot_bytes(bench, &id).await?);

        if restore {
            let (berth, raw) = in_turn(
                round,
                async {
                    sync().await?;
                    let started = Instant::now();
                    let awake = bench.client.resume_session(&id).await?;
                    let elapsed = started.elapsed();
                    anyhow::ensure!(awake.state == SessionState::Running, "{awake:?}");
                    Ok(elapsed)
                },
                async {
                    sync().await?;
                    let (restored, elapsed) = raw_start(&docker, &image, &name).await?;
                    remove_raw(&docker, &restored).await?;
                    Ok(elapsed)
                },
            )
            .await?;
            measured.restore.push(berth);
            measured.raw_restore.push(raw);
        }

        bench.client.delete_session(&id).await?;
        let options = RemoveImageOptionsBuilder::new().force(true).build();
        docker.remove_image(&image, Some(options), None).await?;
    }
    Ok(measured)
}

/// A hibernation's row: Berth's p50 against the raw engine's, within 1.2×.
fn hibernate_row(number: u8, megabytes: usize, measured: &Rounds) -> Row {
    let (berth, raw) = (measured.hibernate.p50(), measured.raw_hibernate.p50());
    Row {
        number,
        figure: format!(
            "hibernate, {megabytes} MB + 2,000 files changed, p50 of {}",
            measured.hibernate.len()
        ),
        berth: ms(berth),
        baseline: format!(
            "raw docker stop+commit+rm p50 {} (ratio {})",
            ms(raw),
            ratio(berth, raw)
        ),
        target: "≤ 1.2× raw".into(),
        met: Some(berth.as_secs_f64() <= 1.2 * raw.as_secs_f64()),
    }
}

/// Figures 11, 12 and 22, from the same rounds: each round hibernates a session and a raw
/// container with the same changes, then brings both back.
pub async fn hibernate_and_restore(bench: &Bench, megabytes: usize) -> anyhow::Result<Vec<Row>> {
    let measured = measure(bench, megabytes, ROUNDS, true).await?;
    let (restore, raw_restore) = (measured.restore.p50(), measured.raw_restore.p50());
    let restore_met = restore <= Duration::from_secs(1)
        && restore.as_secs_f64() <= 1.2 * raw_restore.as_secs_f64();
    let median = |bytes: &[u64]| {
        let mut sorted = bytes.to_vec();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or(0)
    };
    let (snapshot, changed) = (
        median(&measured.snapshot_bytes),
        median(&measured.changed_bytes),
    );
    let disk_ratio = snapshot as f64 / changed.max(1) as f64;
    Ok(vec![
        hibernate_row(11, megabytes, &measured),
        Row {
            number: 12,
            figure: format!(
                "restore to agent-ready, {megabytes} MB changed, local image, p50 of {}",
                measured.restore.len()
            ),
            berth: ms(restore),
            baseline: format!(
                "raw docker create+start until port {AGENT_PORT} accepts p50 {} (ratio {})",
                ms(raw_restore),
                ratio(restore, raw_restore)
            ),
            target: "p50 ≤ 1 s and ≤ 1.2× raw".into(),
            met: Some(restore_met),
        },
        Row {
            number: 22,
            figure: format!(
                "disk per hibernated session, {megabytes} MB + 2,000 files changed, median of {}",
                measured.snapshot_bytes.len()
            ),
            berth: format!("{:.1} MB above the template's image", snapshot as f64 / 1e6),
            baseline: format!(
                "the container's own layer before it slept {:.1} MB (ratio {disk_ratio:.2}x); the template's image {:.1} MB, shared",
                changed as f64 / 1e6,
                image_bytes(&engine().await?, BASE_IMAGE).await? as f64 / 1e6
            ),
            target: "≈ the changed bytes (≤ 1.1×)".into(),
            met: Some(disk_ratio <= 1.1),
        },
    ])
}

/// Figures 18 and 19: hibernations of small and large changes, the restores left out (figure
/// 12 times those). Fewer rounds of the large one: each writes and commits a gigabyte twice.
pub async fn hibernate_sizes(
    bench: &Bench,
    large_megabytes: usize,
    wants: impl Fn(u8) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (number, megabytes, rounds) in [(18, 1, ROUNDS), (19, large_megabytes, 3)] {
        if wants(number) {
            eprintln!("figure {number}: hibernate, {megabytes} MB changed");
            let measured = measure(bench, megabytes, rounds, false).await?;
            rows.push(hibernate_row(number, megabytes, &measured));
        }
    }
    Ok(rows)
}

/// Figure 13: `cycles` hibernate/resume cycles of one session, with a file written before the
/// first checked after the last, and a line written before each. Each cycle adds a layer to
/// the image the session runs from until a hibernation compacts them
/// (`snapshots.compact_after_layers`); a failure is reported, not hidden.
pub async fn cycles(bench: &Bench, cycles: usize, megabytes: usize) -> anyhow::Result<Row> {
    let docker = engine().await?;
    let write = format!("head -c {} /dev/urandom > kept.bin", megabytes * 1_000_000);
    let id = session_with(bench, &write).await?;
    let digest = "sha256sum kept.bin";
    let before = berth_sh(bench, &id, digest).await?;
    let mut samples = Samples::default();
    let mut failure = None;
    for cycle in 1..=cycles {
        // A session in use changes between sleeps: an unchanged one's commit adds an empty
        // layer, which the engine does not count towards its depth limit.
        let change = format!("echo {cycle} >> cycles.log");
        if let Err(err) = berth_sh(bench, &id, &change).await {
            failure = Some(format!("cycle {cycle}: writing failed: {err}"));
            break;
        }
        let started = Instant::now();
        let outcome = async {
            bench.client.hibernate_session(&id).await?;
            bench.client.resume_session(&id).await
        }
        .await;
        match outcome {
            Ok(_) => samples.push(started.elapsed()),
            Err(err) => {
                failure = Some(format!("cycle {cycle} failed: {err}"));
                break;
            }
        }
    }
    // After a failed hibernation Berth starts the session's container again, but says it is
    // running before its agent answers: a read in that moment fails. Reads are retried for a
    // while and the first failure is reported.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut first_error = None;
    let after = loop {
        match berth_sh(bench, &id, digest).await {
            Err(err) if Instant::now() < deadline => {
                first_error.get_or_insert_with(|| err.to_string());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            outcome => break outcome,
        }
    };
    let layers = match session_image_layers(bench, &docker, &id).await {
        Ok(layers) => layers.to_string(),
        Err(err) => format!("unknown ({err})"),
    };
    let base_layers = image_layers(&docker, BASE_IMAGE).await?;
    bench.client.delete_session(&id).await?;

    let content = match &after {
        Ok(after) if *after == before => "sha256 unchanged".to_owned(),
        Ok(_) => "**sha256 changed**".to_owned(),
        Err(err) => format!("**file unreadable: {err}**"),
    };
    // The first cycle commits the checked file too; the others a line each, so theirs show
    // what depth alone costs.
    let (first, rest) = samples
        .in_order()
        .split_first()
        .unwrap_or((&Duration::ZERO, &[]));
    let early: Samples = rest.iter().take(WINDOW).copied().collect();
    let late: Samples = rest[rest.len().saturating_sub(WINDOW)..]
        .iter()
        .copied()
        .collect();
    let mut berth = format!(
        "{} of {cycles} cycles; per cycle p50 {}, p95 {}; {content}; the session's image has {layers} layers",
        samples.len(),
        ms(samples.p50()),
        ms(samples.p95()),
    );
    if let Some(failure) = &failure {
        berth.push_str(&format!("; {failure}"));
    }
    if let Some(err) = first_error {
        berth.push_str(&format!("; the first read afterwards failed: {err}"));
    }
    Ok(Row {
        number: 13,
        figure: format!(
            "{cycles} hibernate/resume cycles of one session, a line changed in each ({megabytes} MB file checked)"
        ),
        berth,
        baseline: format!(
            "first cycle (commits the file) {}; cycles 2-{} p50 {}, the last {} p50 {} ({BASE_IMAGE} has {base_layers} layers)",
            ms(*first),
            early.len() + 1,
            ms(early.p50()),
            late.len(),
            ms(late.p50()),
        ),
        target: "every cycle, no error, same sha256".into(),
        met: Some(failure.is_none() && after.is_ok_and(|after| after == before)),
    })
}

/// Runs both, one after the other, Berth's first in even rounds: neither side always finds
/// the disk as the other left it.
pub(crate) async fn in_turn(
    round: usize,
    berth: impl Future<Output = anyhow::Result<Duration>>,
    raw: impl Future<Output = anyhow::Result<Duration>>,
) -> anyhow::Result<(Duration, Duration)> {
    if round.is_multiple_of(2) {
        let berth = berth.await?;
        Ok((berth, raw.await?))
    } else {
        let raw = raw.await?;
        Ok((berth.await?, raw))
    }
}

/// Writes dirty pages back before a timed step, so that it does not pay for writing back the
/// changes made before it, or the other side's.
pub(crate) async fn sync() -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sync").status().await?;
    anyhow::ensure!(status.success(), "sync failed");
    Ok(())
}

/// A running session of the Debian template, with `script` run in it.
pub(crate) async fn session_with(bench: &Bench, script: &str) -> anyhow::Result<String> {
    let request = CreateSession {
        template: TEMPLATE.into(),
        ..CreateSession::default()
    };
    let session = bench.client.create_session(&request).await?;
    berth_sh(bench, &session.id, script).await?;
    Ok(session.id)
}

/// `script` in a session through Berth's API; its output.
pub(crate) async fn berth_sh(bench: &Bench, id: &str, script: &str) -> anyhow::Result<String> {
    let request = ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        ..ExecRequest::default()
    };
    let result = bench.client.exec(id, &request).await?;
    anyhow::ensure!(
        result.exit_code == Some(0),
        "`{script}` failed in {id}: {}",
        result.stderr
    );
    Ok(result.stdout)
}

/// `script` in a raw container, as its user, through the engine's exec API.
pub(crate) async fn raw_sh(docker: &Docker, container: &str, script: &str) -> anyhow::Result<()> {
    let options = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec!["sh", "-c", script]),
        ..CreateExecOptions::default()
    };
    let exec = docker.create_exec(container, options).await?;
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await?
    {
        while output.next().await.transpose()?.is_some() {}
    }
    let code = docker.inspect_exec(&exec.id).await?.exit_code;
    anyhow::ensure!(code == Some(0), "`{script}` exited with {code:?}");
    Ok(())
}

/// Raw `docker create` + `start` of `image`, as Berth's user on Berth's network, until its
/// agent's port accepts a connection: what bringing a session back costs the engine. Returns
/// the container and that time.
pub(crate) async fn raw_start(
    docker: &Docker,
    image: &str,
    name: &str,
) -> anyhow::Result<(String, Duration)> {
    let body = ContainerCreateBody {
        user: Some(SESSION_USER.into()),
        ..raw_container(image, name)
    };
    let started = Instant::now();
    let container = docker.create_container(None, body).await?.id;
    docker.start_container(&container, None).await?;
    let ip = docker
        .inspect_container(&container, None)
        .await?
        .network_settings
        .and_then(|settings| settings.networks)
        .and_then(|networks| networks.into_values().find_map(|n| n.ip_address))
        .context("the raw container has no address")?;
    wait_for_port(SocketAddr::new(ip.parse()?, AGENT_PORT)).await?;
    Ok((container, started.elapsed()))
}

/// Polls every millisecond until `addr` accepts a TCP connection: the earliest any probe of
/// the agent could find it up.
pub(crate) async fn wait_for_port(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), connect).await {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing accepts on {addr}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Raw `docker stop` (with Berth's grace) + `commit` to `image` + `rm`: what a hibernation
/// costs the engine.
pub(crate) async fn raw_stop_commit_remove(
    docker: &Docker,
    container: &str,
    image: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let stop = StopContainerOptions {
        t: Some(STOP_GRACE_SECONDS),
        signal: None,
    };
    docker.stop_container(container, Some(stop)).await?;
    let commit = CommitContainerOptions {
        container: Some(container.to_owned()),
        repo: Some(image.to_owned()),
        pause: false,
        ..CommitContainerOptions::default()
    };
    docker
        .commit_container(commit, ContainerConfig::default())
        .await?;
    remove_raw(docker, container).await?;
    Ok(started.elapsed())
}

/// Removes a raw container the way Berth removes a session's (forced, with its volumes).
pub(crate) async fn remove_raw(docker: &Docker, container: &str) -> anyhow::Result<()> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    Ok(docker.remove_container(container, Some(options)).await?)
}

/// The layers of the image the session's container runs from.
async fn session_image_layers(bench: &Bench, docker: &Docker, id: &str) -> anyhow::Result<usize> {
    let container = session_container(bench, id).await?;
    let image = docker
        .inspect_container(&container, None)
        .await?
        .image
        .context("the container names no image")?;
    image_layers(docker, &image).await
}

/// `docker image inspect`'s `RootFS.Layers`, counted.
async fn image_layers(docker: &Docker, image: &str) -> anyhow::Result<usize> {
    let inspected = docker.inspect_image(image).await?;
    Ok(inspected
        .root_fs
        .and_then(|root| root.layers)
        .map_or(0, |layers| layers.len()))
}

/// A container's own layer, as `docker ps --size` shows it.
async fn own_layer_bytes(docker: &Docker, container: &str) -> anyhow::Result<u64> {
    let options = InspectContainerOptionsBuilder::new().size(true).build();
    let size = docker
        .inspect_container(container, Some(options))
        .await?
        .size_rw
        .context("the engine did not size the container")?;
    Ok(u64::try_from(size)?)
}

/// What the session's newest snapshot holds above the template's image.
async fn snapshot_bytes(bench: &Bench, id: &str) -> anyhow::Result<u64> {
    let snapshot = bench
        .runtime
        .snapshots()
        .await?
        .into_iter()
        .filter(|s| s.session_id == id)
        .map(|s| s.image)
        .max()
        .context("the hibernated session has no snapshot")?;
    Ok(bench
        .runtime
        .snapshot_depth(&snapshot, BASE_IMAGE)
        .await?
        .bytes)
}

/// An image's size as the engine reports it, its parents' layers included.
async fn image_bytes(docker: &Docker, image: &str) -> anyhow::Result<u64> {
    let size = docker.inspect_image(image).await?.size.unwrap_or(0);
    Ok(u64::try_from(size)?)
}

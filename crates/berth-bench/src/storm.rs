//! Figure 21: a restore storm. `n` hibernated sessions, each with a file of its own, are all
//! touched at once (a command through the API, which wakes a session and then runs in it):
//! none may fail, and each must find its file. Next to it, the engine bringing back as many
//! raw containers from their commits, as many at once as Berth lets itself
//! (`capacity.create_concurrency`), until each agent's port accepts.

use std::time::{Duration, Instant};

use berth_proto::{CreateSession, SessionState};
use bollard::query_parameters::RemoveImageOptionsBuilder;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::{
    Bench, IMAGE,
    figures::{Row, engine},
    snapshots::{
        RAW_REPOSITORY, berth_sh, raw_sh, raw_start, raw_stop_commit_remove, remove_raw, sync,
    },
    stats::{Samples, ms},
};

/// The small template: a storm's size is in sessions, not bytes.
const TEMPLATE: &str = "default";

/// Sessions made, put to sleep and removed at once around the storm, which is not timed.
const SETUP_AT_ONCE: usize = 8;

pub async fn restore_storm(bench: &Bench, n: usize) -> anyhow::Result<Row> {
    let ids: Vec<String> = stream::iter(0..n)
        .map(|i| asleep_with_mark(bench, i))
        .buffered(SETUP_AT_ONCE)
        .try_collect()
        .await?;

    sync().await?;
    let started = Instant::now();
    let touches = ids.iter().enumerate().map(|(i, id)| async move {
        let touched = Instant::now();
        let outcome = berth_sh(bench, id, "cat /home/user/mark").await;
        let elapsed = touched.elapsed();
        match outcome {
            Ok(mark) if mark.trim() == i.to_string() => Ok(elapsed),
            Ok(mark) => Err(format!("{id} woke with {mark:?} in its mark, not {i}")),
            Err(err) => Err(format!("{id}: {err:#}")),
        }
    });
    let outcomes = futures_util::future::join_all(touches).await;
    let berth_total = started.elapsed();
    let mut woke = Samples::default();
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(elapsed) => woke.push(elapsed),
            Err(err) => failures.push(err),
        }
    }
    stream::iter(&ids)
        .for_each_concurrent(SETUP_AT_ONCE, |id| async move {
            if let Err(err) = bench.client.delete_session(id).await {
                eprintln!("could not delete {id}: {err}");
            }
        })
        .await;

    let (raw_total, raw) = raw_storm(n).await?;
    let throughput = |total: Duration| n as f64 / total.as_secs_f64();
    for failure in failures.iter().take(5) {
        eprintln!("restore storm: {failure}");
    }
    Ok(Row {
        number: 21,
        figure: format!(
            "restore storm: {n} hibernated sessions touched at once (a command in each)"
        ),
        berth: format!(
            "{} of {n} woke with their files; all in {} ({:.1} sessions/s); each p50 {}, p95 {}",
            woke.len(),
            ms(berth_total),
            throughput(berth_total),
            ms(woke.p50()),
            ms(woke.p95())
        ),
        baseline: format!(
            "raw docker create+start of {n} committed containers, {} at once, until each agent's port accepts: all in {} ({:.1} containers/s, ratio {:.2}x); each p50 {}",
            create_concurrency(),
            ms(raw_total),
            throughput(raw_total),
            throughput(berth_total) / throughput(raw_total),
            ms(raw.p50())
        ),
        target: "none fails; throughput reported".into(),
        met: Some(failures.is_empty()),
    })
}

/// A session of the small template with its number in a file, hibernated.
async fn asleep_with_mark(bench: &Bench, i: usize) -> anyhow::Result<String> {
    let request = CreateSession {
        template: TEMPLATE.into(),
        ..CreateSession::default()
    };
    let id = bench.client.create_session(&request).await?.id;
    berth_sh(bench, &id, &format!("echo {i} > /home/user/mark")).await?;
    let asleep = bench.client.hibernate_session(&id).await?;
    anyhow::ensure!(asleep.state == SessionState::Hibernated, "{asleep:?}");
    Ok(id)
}

/// The engine alone: `n` raw containers marked and committed as the sessions were, then
/// created and started again from their images, `create_concurrency` at a time. The total
/// time and each container's.
async fn raw_storm(n: usize) -> anyhow::Result<(Duration, Samples)> {
    let docker = engine().await?;
    let images: Vec<String> = stream::iter(0..n)
        .map(|i| {
            let docker = docker.clone();
            async move {
                let name = format!("rawstorm{i}");
                let (container, _) = raw_start(&docker, IMAGE, &name).await?;
                raw_sh(&docker, &container, &format!("echo {i} > /home/user/mark")).await?;
                let image = format!("{RAW_REPOSITORY}/{name}");
                raw_stop_commit_remove(&docker, &container, &image).await?;
                anyhow::Ok(image)
            }
        })
        .buffered(SETUP_AT_ONCE)
        .try_collect()
        .await?;
    sync().await?;
    let started = Instant::now();
    let restored: Vec<(String, Duration)> = stream::iter(images.iter().enumerate())
        .map(|(i, image)| {
            let docker = &docker;
            async move { raw_start(docker, image, &format!("rawstorm{i}")).await }
        })
        .buffer_unordered(create_concurrency())
        .try_collect()
        .await?;
    let total = started.elapsed();
    let mut each = Samples::default();
    for (container, elapsed) in restored {
        each.push(elapsed);
        remove_raw(&docker, &container).await?;
    }
    for image in &images {
        let options = RemoveImageOptionsBuilder::new().force(true).build();
        docker.remove_image(image, Some(options), None).await?;
    }
    Ok((total, each))
}

/// How many containers Berth creates at once by default, and so the raw storm too.
fn create_concurrency() -> usize {
    berth_server::config::CapacityConfig::default().create_concurrency as usize
}

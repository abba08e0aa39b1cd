//! Figure 20: the pause of a checkpoint. A named snapshot of a running session freezes it
//! while the engine copies its files; the answer reports for how long. Next to it, the engine's
//! own `docker commit --pause` of a raw container with the same changes, timed whole (the
//! pause is all of it but the call).

use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::{
    models::ContainerConfig,
    query_parameters::{CommitContainerOptions, RemoveImageOptionsBuilder},
};

use crate::{
    BASE_IMAGE, Bench,
    figures::{Row, engine},
    snapshots::{
        RAW_REPOSITORY, ROUNDS, in_turn, raw_sh, raw_start, remove_raw, session_with, sync,
    },
    stats::{Samples, ms, ratio},
};

/// What each round's session has written since it started: a commit copies a container's
/// whole own layer, so this is what every checkpoint of it copies.
const MEGABYTES: usize = 10;

/// Longest pause the target allows.
const TARGET: Duration = Duration::from_millis(300);

pub async fn checkpoint_pause(bench: &Bench) -> anyhow::Result<Row> {
    let docker = engine().await?;
    let script = format!(
        "head -c {} /dev/urandom > /home/user/changed.bin",
        MEGABYTES * 1_000_000
    );
    let (mut pause, mut raw) = (Samples::default(), Samples::default());
    for round in 0..ROUNDS {
        let id = session_with(bench, &script).await?;
        let name = format!("rawcheckpoint{round}");
        let (container, _) = raw_start(&docker, BASE_IMAGE, &name).await?;
        raw_sh(&docker, &container, &script).await?;
        let image = format!("{RAW_REPOSITORY}/{name}");
        let (berth, engine_alone) = in_turn(
            round,
            async {
                sync().await?;
                let snapshot = bench.client.create_snapshot(&id, "bench").await?;
                let paused = snapshot.pause_ms.context("the answer reports no pause")?;
                Ok(Duration::from_millis(paused))
            },
            async {
                sync().await?;
                let commit = CommitContainerOptions {
                    container: Some(container.clone()),
                    repo: Some(image.clone()),
                    pause: true,
                    ..CommitContainerOptions::default()
                };
                let started = Instant::now();
                docker
                    .commit_container(commit, ContainerConfig::default())
                    .await?;
                Ok(started.elapsed())
            },
        )
        .await?;
        pause.push(berth);
        raw.push(engine_alone);
        // Its snapshots go with it.
        bench.client.delete_session(&id).await?;
        remove_raw(&docker, &container).await?;
        let options = RemoveImageOptionsBuilder::new().force(true).build();
        docker.remove_image(&image, Some(options), None).await?;
    }
    Ok(Row {
        number: 20,
        figure: format!(
            "checkpoint pause (a named snapshot of a running session), {MEGABYTES} MB changed, p50 of {}",
            pause.len()
        ),
        berth: format!(
            "p50 {}, longest {}",
            ms(pause.p50()),
            ms(pause.percentile(100.0))
        ),
        baseline: format!(
            "raw docker commit --pause p50 {} (ratio {})",
            ms(raw.p50()),
            ratio(pause.p50(), raw.p50())
        ),
        target: format!("≤ {} ms", TARGET.as_millis()),
        met: Some(pause.p50() <= TARGET),
    })
}

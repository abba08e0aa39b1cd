//! Figures 32 and 33: E2B's own Python SDK (the pinned `e2b` from PyPI in target/e2b-venv,
//! as `ensure_e2b_sdk` installs it) against a control plane with `[e2b] enabled`, beside the
//! same work through Berth's own API in the same run.

use std::{collections::BTreeMap, path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context;
use berth_proto::process::ExecRequest;
use berth_server::config::{PoolConfig, TemplateConfig};

use crate::{
    Args, BASE_IMAGE, TOKEN,
    figures::{Row, creates_one_by_one, wait_for_full_pool},
    stats::{Samples, ms, ratio},
};

/// The Berth template E2B's `base` maps to here: Debian with bash, as E2B's own base is.
const TEMPLATE: &str = "e2b-base";

/// Its own engine instance, so the other figures' control planes leave its sessions alone.
const INSTANCE: &str = "bench-e2b";

/// Times `Sandbox.create()` to the first stdout of a command, and `commands.run("true")`,
/// with nothing but E2B's environment variables set; prints them as one JSON line.
const SCRIPT: &str = r#"
import json, sys, time
from e2b import Sandbox

creates, runs = int(sys.argv[1]), int(sys.argv[2])
first_output = []
for _ in range(creates):
    started = time.perf_counter()
    sandbox = Sandbox.create()
    seen = []
    sandbox.commands.run("echo hi", on_stdout=lambda _: seen.append(time.perf_counter()))
    first_output.append((seen[0] - started) * 1000)
    sandbox.kill()
sandbox = Sandbox.create()
run_true = []
for _ in range(runs):
    started = time.perf_counter()
    sandbox.commands.run("true")
    run_true.append((time.perf_counter() - started) * 1000)
sandbox.kill()
print(json.dumps({"first_output_ms": first_output, "run_true_ms": run_true}))
"#;

/// E2B's SDK runs a command as `bash -l -c COMMAND`; Berth's own API is timed on that same
/// process, so the ratio is what the SDK's protocol adds.
fn as_the_sdk_runs(command: &str) -> ExecRequest {
    ExecRequest {
        cmd: vec!["/bin/bash".into(), "-l".into(), "-c".into(), command.into()],
        ..ExecRequest::default()
    }
}

fn python() -> anyhow::Result<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/e2b-venv/bin/python");
    anyhow::ensure!(
        python.exists(),
        "figures 32 and 33 need E2B's SDK in {}: run `source scripts/lib.sh && ensure_e2b_sdk`",
        python.display()
    );
    Ok(python)
}

pub async fn figures(args: &Args) -> anyhow::Result<Vec<Row>> {
    if !(args.wants(32) || args.wants(33)) {
        return Ok(Vec::new());
    }
    eprintln!("figures 32 and 33: E2B's Python SDK");
    let python = python()?;
    let data = tempfile::tempdir()?;
    let mut config = crate::other_config(data.path(), args, INSTANCE, &[])?;
    // Every create of figure 32 is a claim: the pool holds one for each.
    let pooled = TemplateConfig {
        image: BASE_IMAGE.into(),
        pool: PoolConfig {
            min_ready: u32::try_from(args.creates.max(1)).unwrap_or(u32::MAX),
            max: None,
        },
        ..TemplateConfig::default()
    };
    config.templates.insert(TEMPLATE.into(), pooled);
    config.quota.sessions_per_user = u32::try_from(args.creates + 2).unwrap_or(u32::MAX);
    config.e2b.enabled = true;
    config.e2b.templates = BTreeMap::from([("base".to_owned(), TEMPLATE.to_owned())]);
    // What an interrupted run of these figures left.
    crate::clean_up(&crate::engine(&config)?).await;
    let bench = crate::in_process(config, data).await?;
    let (api_url, sandbox_url) = bench
        .e2b_urls
        .clone()
        .context("the control plane serves no E2B listeners")?;

    wait_for_full_pool(&bench).await?;
    let ours_first_output = creates_one_by_one(
        &bench,
        TEMPLATE,
        args.creates,
        Some(&as_the_sdk_runs("echo hi")),
    )
    .await?;
    let request = berth_proto::CreateSession {
        template: TEMPLATE.into(),
        ..Default::default()
    };
    let session = bench.client.create_session(&request).await?;
    let mut ours_true = Samples::default();
    for _ in 0..args.claims {
        let started = std::time::Instant::now();
        bench
            .client
            .exec(&session.id, &as_the_sdk_runs("true"))
            .await?;
        ours_true.push(started.elapsed());
    }
    bench.client.delete_session(&session.id).await?;

    wait_for_full_pool(&bench).await?;
    let run = tokio::process::Command::new(python)
        .args(["-c", SCRIPT])
        .arg(args.creates.to_string())
        .arg(args.claims.to_string())
        .env("E2B_API_URL", &api_url)
        .env("E2B_SANDBOX_URL", &sandbox_url)
        .env("E2B_API_KEY", TOKEN)
        .env_remove("E2B_DOMAIN")
        .env_remove("E2B_DEBUG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .context("E2B's SDK ran for ten minutes")??;
    anyhow::ensure!(
        out.status.success(),
        "E2B's SDK failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let measured: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("E2B's SDK printed {}", String::from_utf8_lossy(&out.stdout)))?;
    let samples = |key: &str| -> Samples {
        measured[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_f64)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .collect()
    };
    let (sdk_first_output, sdk_true) = (samples("first_output_ms"), samples("run_true_ms"));
    bench.stop_and_clean_up().await;

    Ok(vec![
        Row {
            number: 32,
            figure: format!(
                "`Sandbox.create()` to first `commands.run` output, pooled, through E2B's Python SDK ({} creates)",
                sdk_first_output.len()
            ),
            berth: format!("p50 {}", ms(sdk_first_output.p50())),
            baseline: format!(
                "Berth's own API, pooled create and exec of the same command, p50 {} (ratio {}); E2B's cloud: ~150 ms to start",
                ms(ours_first_output.p50()),
                ratio(sdk_first_output.p50(), ours_first_output.p50())
            ),
            target: "p50 ≤ 50 ms".into(),
            met: Some(sdk_first_output.p50() <= Duration::from_millis(50)),
        },
        Row {
            number: 33,
            figure: format!(
                "`commands.run(\"true\")` round trip through E2B's Python SDK ({} runs)",
                sdk_true.len()
            ),
            berth: format!("p50 {}, p99 {}", ms(sdk_true.p50()), ms(sdk_true.p99())),
            baseline: format!(
                "Berth's own exec of the same process (`bash -l -c true`) p50 {} (ratio {})",
                ms(ours_true.p50()),
                ratio(sdk_true.p50(), ours_true.p50())
            ),
            target: "≤ 1.5× Berth's own exec".into(),
            met: Some(sdk_true.p50().as_secs_f64() <= 1.5 * ours_true.p50().as_secs_f64()),
        },
    ])
}

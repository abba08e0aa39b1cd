//! Figures 23-25: Docker inside a session. The stock `docker` CLI in a `berth/docker`
//! session, through the session's policy-checked Docker API, against the same CLI on the host
//! talking to the engine directly. Each side times itself in a shell loop (`date +%s%N` around
//! each command), so neither counts the way its script got there.

use berth_proto::CreateSession;

use crate::{
    Bench,
    figures::Row,
    snapshots::berth_sh,
    stats::{Samples, ms, ratio},
};

/// The bench's template with Docker (`berth/docker`, `docker.enabled`).
pub const TEMPLATE: &str = "docker";
/// The image both sides run and build on.
pub const BASE: &str = "berth/busybox:latest";

/// `docker run --rm` timed this many times on each side.
const RUNS: usize = 10;
/// Builds timed on each side.
const BUILDS: usize = 5;
/// Copies timed on each side.
const COPIES: usize = 3;

/// A Dockerfile of five steps, each but the first a container and a commit.
const DOCKERFILE: &str = r"FROM berth/busybox:latest\nRUN echo 1 > /1\nRUN echo 2 > /2\nRUN echo 3 > /3\nRUN echo 4 > /4\n";

pub async fn figures(
    bench: &Bench,
    megabytes: usize,
    wants: impl Fn(u8) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let request = CreateSession {
        template: TEMPLATE.into(),
        ..CreateSession::default()
    };
    let id = bench.client.create_session(&request).await?.id;
    let measured = measure(bench, &id, megabytes, wants).await;
    // Removed whatever the figures did: its children go with it.
    bench.client.delete_session(&id).await?;
    measured
}

async fn measure(
    bench: &Bench,
    id: &str,
    megabytes: usize,
    wants: impl Fn(u8) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let inside = |script: String| async move { berth_sh(bench, id, &script).await };
    let mut rows = Vec::new();
    if wants(23) {
        eprintln!("figure 23: docker run --rm inside a session and on the host");
        let script = timed(RUNS, &format!("docker run --rm {BASE} true"));
        let (berth, host) = (
            samples(&inside(script.clone()).await?)?,
            samples(&on_host(&script).await?)?,
        );
        rows.push(against_host(
            23,
            format!("`docker run --rm busybox true` inside a session, p50 of {RUNS}"),
            &berth,
            &host,
            1.3,
        ));
    }
    if wants(24) {
        eprintln!("figure 24: docker build inside a session and on the host");
        let build = |tag: &str| {
            format!(
                "d=$(mktemp -d) && printf '{DOCKERFILE}' > $d/Dockerfile && {} && rm -r $d",
                timed(
                    BUILDS,
                    &format!("docker build -q --no-cache -t {tag}-$i $d")
                )
            )
        };
        let berth = samples(&inside(build("bench-build")).await?)?;
        let host_tag = format!("{}/build", crate::snapshots::RAW_REPOSITORY);
        let host = samples(&on_host(&build(&host_tag)).await?);
        // Its images are not the session's: removed whatever the build did.
        let images = format!("docker images -q --filter 'reference={host_tag}-*'");
        let _ = on_host(&format!("{images} | xargs -r docker rmi")).await;
        let host = host?;
        rows.push(against_host(
            24,
            format!(
                "`docker build --no-cache` of a 5-step Dockerfile inside a session, p50 of {BUILDS}"
            ),
            &berth,
            &host,
            1.2,
        ));
    }
    if wants(25) {
        eprintln!("figure 25: docker cp of {megabytes} MB inside a session and on the host");
        let copy = |file: &str| {
            format!(
                "head -c {bytes} /dev/urandom > {file} && c=$(docker create {BASE} true) && sync && {} ; s=$?; docker rm -f $c > /dev/null; rm -f {file}; exit $s",
                timed(COPIES, &format!("docker cp {file} $c:/copied")),
                bytes = megabytes * 1_000_000,
            )
        };
        let berth = samples(&inside(copy("/home/user/bench-cp.bin")).await?)?;
        let file = std::env::temp_dir().join("berth-bench-cp.bin");
        let host = samples(&on_host(&copy(&file.display().to_string())).await?)?;
        let rate = |took: std::time::Duration| megabytes as f64 / took.as_secs_f64();
        rows.push(Row {
            number: 25,
            figure: format!("{megabytes} MB `docker cp` into a container through a session's Docker API, p50 of {COPIES}"),
            berth: format!("{:.0} MB/s", rate(berth.p50())),
            baseline: format!("the same on the host {:.0} MB/s", rate(host.p50())),
            target: "≥ 200 MB/s".into(),
            met: Some(rate(berth.p50()) >= 200.0),
        });
    }
    Ok(rows)
}

/// A row of times inside a session against the host's, met within `bound` times the host's.
fn against_host(number: u8, figure: String, berth: &Samples, host: &Samples, bound: f64) -> Row {
    Row {
        number,
        figure,
        berth: ms(berth.p50()),
        baseline: format!(
            "the same on the host p50 {} (ratio {})",
            ms(host.p50()),
            ratio(berth.p50(), host.p50())
        ),
        target: format!("≤ {bound}× the host"),
        met: Some(berth.p50().as_secs_f64() <= bound * host.p50().as_secs_f64()),
    }
}

/// A shell loop running `command` `n` times (`$i` is the round), printing each one's time in
/// microseconds; it stops at the first failure, in a subshell, so the script around it can
/// still clean up.
fn timed(n: usize, command: &str) -> String {
    format!(
        "(for i in $(seq {n}); do s=$(date +%s%N); {command} > /dev/null || exit 1; \
         e=$(date +%s%N); echo $(( (e - s) / 1000 )); done)"
    )
}

/// The lines of microseconds a [`timed`] loop printed.
fn samples(output: &str) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let micros: u64 = line
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("not a time: {line:?}"))?;
        samples.push(std::time::Duration::from_micros(micros));
    }
    anyhow::ensure!(samples.len() > 0, "no time measured");
    Ok(samples)
}

/// `script` in `sh` on the host, with the legacy builder as in a session; its output.
async fn on_host(script: &str) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("sh")
        .args(["-c", script])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "`{script}` failed on the host: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

//! A real Docker engine stopped and started again under a busy control plane.
//!
//! This test stops the machine's `dockerd`, so it must run alone: `scripts/test` runs it after
//! every other suite with `--ignored`. It starts the engine again detached from the test's
//! process group (`setsid`), so the engine outlives the test, as the suites after it expect.

mod common;

use std::{
    collections::BTreeSet,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use berth_proto::{CreateSession, ErrorCode, SessionState};
use berth_server::config::{PoolConfig, TemplateConfig};
use common::{ADMIN, Server, TINY, container_of, docker, sh};

const DOCKERD_LOG: &str = "/var/log/berth-dockerd.log";

/// Where dockerd keeps its pid by default.
const DOCKERD_PIDFILE: &str = "/var/run/docker.pid";

fn stop_dockerd() {
    let pid: u32 = std::fs::read_to_string(DOCKERD_PIDFILE)
        .expect("a dockerd runs, with its pid in /var/run/docker.pid")
        .trim()
        .parse()
        .unwrap();
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "dockerd did not stop in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_dockerd() {
    let started = Command::new("setsid")
        .args([
            "sh",
            "-c",
            &format!("nohup dockerd >>{DOCKERD_LOG} 2>&1 </dev/null &"),
        ])
        .status()
        .unwrap();
    assert!(started.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while docker(&["info"]).is_err() {
        assert!(
            Instant::now() < deadline,
            "dockerd did not come back in 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
#[ignore = "stops the machine's Docker engine: scripts/test runs it alone, after the other suites"]
async fn sessions_survive_an_engine_restart_and_no_one_gets_a_dead_session() {
    let server = Server::start_with(|c| {
        // Recovery must come from the engine's events, not from the periodic checks.
        c.lifecycle.reconcile_interval_seconds = 3600;
        c.firewall.check_interval_seconds = 3600;
        c.quota.sessions_per_user = 5;
        c.templates.insert(
            "pooled".into(),
            TemplateConfig {
                image: TINY.into(),
                memory_mb: 64,
                pool: PoolConfig {
                    min_ready: 2,
                    max: None,
                },
                ..TemplateConfig::default()
            },
        );
    })
    .await;
    let client = &server.client;
    let alice = berth_client::Client::new(
        client.base_url(),
        &client.create_user("alice").await.unwrap().token,
    )
    .unwrap();

    let mut kept = Vec::new();
    for n in 0..2 {
        let session = alice
            .create_session(&CreateSession::default())
            .await
            .unwrap();
        let wrote = alice
            .exec(&session.id, &sh(&format!("echo kept-{n} > notes.txt")))
            .await
            .unwrap();
        assert_eq!(wrote.exit_code, Some(0));
        kept.push(session.id);
    }
    let doomed = alice
        .create_session(&CreateSession::default())
        .await
        .unwrap()
        .id;
    let doomed_container = container_of(&server, &doomed);
    let pooled = CreateSession {
        template: "pooled".into(),
        ..Default::default()
    };
    wait_for(Duration::from_secs(30), "a full pool", || async {
        let pool = client.pool().await.unwrap();
        pool.iter()
            .any(|p| p.template == "pooled" && p.ready == 2)
            .then_some(())
    })
    .await;
    let root = docker(&["info", "-f", "{{.DockerRootDir}}"]).unwrap();

    stop_dockerd();
    // The control plane learns of it when the engine's event stream breaks, a moment after the
    // engine is gone; `/readyz` says when it has.
    wait_for(
        Duration::from_secs(10),
        "the engine to be known lost",
        || async {
            let readiness: serde_json::Value =
                reqwest::get(format!("{}/readyz", client.base_url()))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
            readiness["engine"]
                .as_str()
                .is_some_and(|engine| engine.contains("reconnects by itself"))
                .then_some(())
        },
    )
    .await;
    // While the engine is down: a quick, clear 503 for creates (pooled or not) and for work.
    for request in [&pooled, &CreateSession::default()] {
        let started = Instant::now();
        let err = alice.create_session(request).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::EngineUnavailable), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    let err = alice.exec(&kept[0], &sh("true")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::EngineUnavailable), "{err}");
    assert_eq!(err.status(), Some(503));
    // A container removed while the engine is down: its state is gone from the engine's disk.
    std::fs::remove_dir_all(format!("{}/containers/{doomed_container}", root.trim())).unwrap();
    // And Berth's firewall jumps gone, as when an engine (or anyone) rewrites the chains.
    for (chain, jump) in [("INPUT", "BERTH-INPUT"), ("DOCKER-USER", "BERTH-FORWARD")] {
        let removed = Command::new("iptables")
            .args(["-w", "-D", chain, "-j", jump])
            .status()
            .unwrap();
        assert!(removed.success(), "{chain} jumps to {jump}");
    }

    start_dockerd();
    let back = Instant::now();
    for (n, id) in kept.iter().enumerate() {
        let answered = wait_for(
            Duration::from_secs(10),
            "the session to answer again",
            || async { alice.exec(id, &sh("cat notes.txt")).await.ok() },
        )
        .await;
        assert_eq!(answered.stdout, format!("kept-{n}\n"), "files intact");
        let session = alice.get_session(id).await.unwrap();
        assert_eq!(
            (session.state, session.stop_reason),
            (SessionState::Running, None)
        );
        // What befell it: one restart (the timeline also tells of the work done in it).
        let befell: Vec<String> = alice
            .timeline(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .filter(|kind| {
                ["restarted", "failed", "recovered", "oom", "stopped"].contains(&kind.as_str())
            })
            .collect();
        assert_eq!(befell, ["restarted"], "{id}");
    }
    assert!(
        back.elapsed() < Duration::from_secs(10),
        "{:?}",
        back.elapsed()
    );
    for (chain, jump) in [("INPUT", "BERTH-INPUT"), ("DOCKER-USER", "BERTH-FORWARD")] {
        let listed = Command::new("iptables")
            .args(["-w", "-S", chain])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert!(
            listed.contains(&format!("-j {jump}")),
            "the firewall was checked as the engine came back: {listed}"
        );
    }
    let vanished = wait_for(
        Duration::from_secs(10),
        "the removed one to fail",
        || async {
            let session = alice.get_session(&doomed).await.unwrap();
            (session.state == SessionState::Failed).then_some(session)
        },
    )
    .await;
    assert_eq!(vanished.stop_reason.as_deref(), Some("container_vanished"));

    // The pool hands out only sessions that work.
    let bob = berth_client::Client::new(
        client.base_url(),
        &client.create_user("bob").await.unwrap().token,
    )
    .unwrap();
    for _ in 0..3 {
        let session = bob.create_session(&pooled).await.unwrap();
        let echoed = bob.exec(&session.id, &sh("echo works")).await.unwrap();
        assert_eq!(echoed.stdout, "works\n", "{}", session.id);
    }

    // Nothing orphaned, nothing stuck: the engine holds exactly the live sessions' containers.
    wait_for(
        Duration::from_secs(30),
        "engine and store to agree",
        || async {
            let admin = berth_client::Client::new(client.base_url(), ADMIN).unwrap();
            let sessions = admin
                .list_sessions(&berth_client::ListSessions {
                    all: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            let stuck = sessions
                .iter()
                .any(|s| matches!(s.state, SessionState::Creating | SessionState::Stopping));
            let live: BTreeSet<String> = sessions
                .iter()
                .filter(|s| s.state == SessionState::Running)
                .map(|s| container_of(&server, &s.id))
                .collect();
            let pool = client.pool().await.unwrap();
            let pooled_ready: usize = pool.iter().map(|p| p.ready).sum();
            let containers: BTreeSet<String> = server.containers().into_iter().collect();
            (!stuck && containers.len() == live.len() + pooled_ready && live.is_subset(&containers))
                .then_some(())
        },
    )
    .await;
    server.stop_and_remove_containers().await;
}

/// Polls `check` every 200 ms until it gives a value, for at most `limit`.
async fn wait_for<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

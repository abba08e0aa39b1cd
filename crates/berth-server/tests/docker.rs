//! The control plane against the real Docker engine, served on port 0 in this process.
//! Needs the engine and the session images: `scripts/test` provides both.

mod common;

use std::time::Duration;

use berth_client::{Client, ListSessions};
use berth_proto::{CreateSession, SessionState};
use common::{Server, TINY, container_of, docker, inspect};
use serde_json::Value;

#[tokio::test]
async fn a_session_is_a_hardened_limited_labelled_container() {
    let server = Server::start().await;
    let user = server.client.create_user("alice").await.unwrap();
    let alice = Client::new(server.client.base_url(), &user.token).unwrap();
    let session = alice
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    assert_eq!(session.state, SessionState::Running);

    let container = container_of(&server, &session.id);
    let info = inspect(&container);
    let labels = &info["Config"]["Labels"];
    assert_eq!(labels["berth.session"], session.id.as_str());
    assert_eq!(labels["berth.owner"], "alice");
    assert_eq!(labels["berth.template"], "default");
    assert_eq!(labels["berth.instance"], server.instance.as_str());

    let host = &info["HostConfig"];
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["MemorySwap"], host["Memory"]);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["PidsLimit"], 64);
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    // Everything runs as uid 1000, so no capability is added back by default.
    assert!(
        host["CapAdd"].as_array().is_none_or(Vec::is_empty),
        "{}",
        host["CapAdd"]
    );
    assert_eq!(info["Config"]["User"], "1000:1000");
    assert_eq!(host["Privileged"], false);
    let security = host["SecurityOpt"].to_string();
    assert!(security.contains("no-new-privileges"), "{security}");
    assert!(
        !security.contains("seccomp=unconfined"),
        "the default seccomp profile must apply: {security}"
    );
    assert_eq!(host["LogConfig"]["Type"], "json-file");
    assert_eq!(host["LogConfig"]["Config"]["max-size"], "10m");
    // The network of the template's egress policy (open).
    assert_eq!(host["NetworkMode"], "berth-test-open");
    assert!(
        host["PortBindings"]
            .as_object()
            .is_none_or(|p| p.is_empty()),
        "no host ports: {host}"
    );
    assert!(
        info["NetworkSettings"]["Ports"]
            .as_object()
            .is_none_or(|p| p.values().all(Value::is_null))
    );

    let network = docker(&["network", "inspect", "berth-test-open"]).unwrap();
    assert!(
        network.contains(r#""com.docker.network.bridge.enable_icc": "false""#),
        "{network}"
    );
    // Named, so the firewall's rules (keyed by the bridge) are in place before it exists.
    assert!(
        network.contains(r#""com.docker.network.bridge.name": "berth-"#),
        "{network}"
    );

    alice.delete_session(&session.id).await.unwrap();
    assert!(
        docker(&["inspect", &container]).is_err(),
        "the container must be gone after delete"
    );
    assert!(server.containers().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn sessions_cannot_reach_each_other() {
    let server = Server::start().await;
    let a = server
        .client
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    let b = server
        .client
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    let (ca, cb) = (container_of(&server, &a.id), container_of(&server, &b.id));
    let ip_b = inspect(&cb)["NetworkSettings"]["Networks"]["berth-test-open"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    // Probe from inside session A: B's agent port must not answer.
    let probe = docker(&[
        "exec",
        &ca,
        "wget",
        "-q",
        "-T",
        "2",
        "-O",
        "-",
        &format!("http://{ip_b}:7681/health"),
    ]);
    assert!(probe.is_err(), "session A reached session B: {probe:?}");
    for id in [&a.id, &b.id] {
        server.client.delete_session(id).await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn the_debian_base_image_has_the_user_and_tools() {
    let server = Server::start().await;
    let session = server
        .client
        .create_session(&CreateSession {
            template: "base".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let container = container_of(&server, &session.id);
    let probe = docker(&["exec", "--user", "1000", &container, "sh", "-c", "id -u; echo $HOME; python3 -c 'print(6*7)'; git --version >/dev/null && curl --version >/dev/null && ps --version >/dev/null && echo tools-ok"]).unwrap();
    assert_eq!(
        probe.lines().collect::<Vec<_>>(),
        ["1000", "/home/user", "42", "tools-ok"]
    );
    // The agent's secret never reaches the environment of processes started in the session.
    let env = docker(&[
        "exec",
        "--user",
        "1000",
        &container,
        "cat",
        "/proc/1/environ",
    ]);
    assert!(
        env.is_err(),
        "uid 1000 must not read the agent's environment"
    );
    server.client.delete_session(&session.id).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn ttl_expiry_stops_and_removes_the_container() {
    let server = Server::start().await;
    let session = server
        .client
        .create_session(&CreateSession {
            template: "short".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let container = container_of(&server, &session.id);
    let mut state = session.state;
    for _ in 0..50 {
        state = server.client.get_session(&session.id).await.unwrap().state;
        if state == SessionState::Stopped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, SessionState::Stopped);
    let stopped = server.client.get_session(&session.id).await.unwrap();
    assert_eq!(stopped.stop_reason.as_deref(), Some("ttl_expired"));
    assert!(docker(&["inspect", &container]).is_err());
    server.stop().await;
}

#[tokio::test]
async fn restart_reconciles_orphans_and_vanished_containers() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    let server = Server::start_with(|c| c.data_dir = data_dir.clone()).await;
    let instance = server.instance.clone();
    let kept = server
        .client
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    let vanishing = server
        .client
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    server.stop().await;

    // While the control plane is down: a container vanishes, and an orphan appears.
    docker(&["rm", "-f", &format!("berth-{}", vanishing.id)]).unwrap();
    let instance_label = format!("berth.instance={instance}");
    docker(&[
        "create",
        "--label",
        &instance_label,
        "--label",
        "berth.session=sorphan",
        TINY,
    ])
    .unwrap();

    let server = Server::start_with(|c| {
        c.data_dir = data_dir.clone();
        c.docker.instance = instance.clone();
    })
    .await;
    let vanished = server.client.get_session(&vanishing.id).await.unwrap();
    assert_eq!(
        (vanished.state, vanished.stop_reason.as_deref()),
        (SessionState::Failed, Some("container_vanished"))
    );
    assert_eq!(
        server.client.get_session(&kept.id).await.unwrap().state,
        SessionState::Running
    );
    assert_eq!(
        server.containers(),
        [container_of(&server, &kept.id)],
        "only the kept session's container is left"
    );
    server.client.delete_session(&kept.id).await.unwrap();
    assert!(server.containers().is_empty());
    server.stop().await;
}

/// A create answers `503 engine_unavailable`, and does so within `bound`.
async fn assert_create_unavailable_within(server: &Server, bound: Duration) {
    let started = std::time::Instant::now();
    let err = server
        .client
        .create_session(&CreateSession::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert_eq!(err.code(), Some(berth_proto::ErrorCode::EngineUnavailable));
    assert!(
        started.elapsed() < bound,
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_engine_is_503_within_5_seconds() {
    let server = Server::start_with(|c| {
        c.docker.host = Some("unix:///tmp/berth-no-such-engine.sock".into())
    })
    .await;
    assert_create_unavailable_within(&server, Duration::from_secs(5)).await;
    let listed = server
        .client
        .list_sessions(&ListSessions::default())
        .await
        .unwrap();
    assert!(listed.is_empty(), "a refused create leaves no live session");
    server.stop().await;
}

#[tokio::test]
async fn an_engine_that_stops_answering_is_503_within_its_timeout() {
    // A socket that accepts and then says nothing, as a hung engine does: the real Docker
    // runtime's deadline must turn it into a quick, clear answer.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hung-engine.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let hung = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    let server = Server::start_with(|c| {
        c.docker.host = Some(format!("unix://{}", socket.display()));
        c.docker.timeout_seconds = 2;
    })
    .await;
    assert_create_unavailable_within(&server, Duration::from_secs(2 + 3)).await;
    server.stop().await;
    hung.abort();
}

#[tokio::test]
async fn a_missing_image_is_a_configuration_error_that_names_the_image() {
    let server = Server::start_with(|c| {
        c.templates.get_mut("default").unwrap().image = "berth/no-such-image:latest".into();
    })
    .await;
    let err = server
        .client
        .create_session(&CreateSession::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    assert_eq!(err.code(), Some(berth_proto::ErrorCode::Misconfigured));
    assert!(
        err.to_string().contains("berth/no-such-image:latest"),
        "{err}"
    );
    assert!(server.containers().is_empty(), "nothing left behind");
    server.stop().await;
}

#[tokio::test]
async fn docker_stop_passes_sigterm_to_every_process_and_is_quick() {
    let server = Server::start().await;
    let session = server
        .client
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    let trap = "trap 'echo clean-stop > /home/user/stopped; exit 0' TERM; sleep 60 & wait";
    let request = berth_proto::process::ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), trap.into()],
        ..Default::default()
    };
    server
        .client
        .start_process(&session.id, &request)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let container = container_of(&server, &session.id);
    let started = std::time::Instant::now();
    docker(&["stop", "-t", "10", &container]).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop waited for the kill timeout: {:?}",
        started.elapsed()
    );
    let copied = std::process::Command::new("docker")
        .args(["cp", &format!("{container}:/home/user/stopped"), "-"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&copied.stdout).contains("clean-stop"),
        "the process got SIGTERM and ran its trap"
    );
    server.client.delete_session(&session.id).await.unwrap();
    server.stop().await;
}

async fn wait_for_pool(client: &Client, template: &str, ready: usize) {
    for _ in 0..200 {
        let pools = client.pool().await.unwrap();
        if pools
            .iter()
            .any(|p| p.template == template && p.ready >= ready)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "pool {template} never had {ready} ready: {:?}",
        client.pool().await
    );
}

#[tokio::test]
async fn the_warm_pool_serves_claims_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    let pooled = |c: &mut berth_server::config::Config| {
        c.data_dir = data_dir.clone();
        let mut template = c.templates["default"].clone();
        template.pool = berth_server::config::PoolConfig {
            min_ready: 2,
            max: Some(4),
        };
        c.templates.insert("pooled".into(), template);
    };
    let server = Server::start_with(pooled).await;
    let instance = server.instance.clone();
    wait_for_pool(&server.client, "pooled", 2).await;
    let claimed = server
        .client
        .create_session(&CreateSession {
            template: "pooled".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(claimed.state, SessionState::Running);
    let echo = berth_proto::process::ExecRequest {
        cmd: vec!["echo".into(), "from-pool".into()],
        ..Default::default()
    };
    assert_eq!(
        server.client.exec(&claimed.id, &echo).await.unwrap().stdout,
        "from-pool\n"
    );
    wait_for_pool(&server.client, "pooled", 2).await;
    let before: std::collections::BTreeSet<String> = server.containers().into_iter().collect();
    assert_eq!(before.len(), 3);
    server.stop().await;

    // After a restart the ready containers are adopted, not replaced.
    let server = Server::start_with(|c| {
        pooled(c);
        c.docker.instance = instance.clone();
    })
    .await;
    wait_for_pool(&server.client, "pooled", 2).await;
    let after: std::collections::BTreeSet<String> = server.containers().into_iter().collect();
    assert_eq!(before, after);
    assert_eq!(
        server.client.get_session(&claimed.id).await.unwrap().state,
        SessionState::Running
    );
    server.client.delete_session(&claimed.id).await.unwrap();
    server.stop_and_remove_containers().await;
}

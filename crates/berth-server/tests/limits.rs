//! What a session may take of the host, on the real engine: its disk (`disk_mb`, the
//! watchdog's warning and stop on hosts whose engine cannot limit it), its memory (an OOM kill
//! recorded as such) and the OCI runtime its template names. Each case keeps a neighbour
//! session and checks it is unharmed.

mod common;

use std::{future::Future, time::Duration};

use berth_proto::{ErrorCode, SessionState};
use berth_server::config::TemplateConfig;
use common::{ADMIN, Server, TINY, docker, free_port, sh};

const MIB: u64 = 1024 * 1024;

/// Bytes free on the engine's data root, where containers' layers live.
fn engine_disk_free() -> u64 {
    let root = docker(&["info", "--format", "{{.DockerRootDir}}"]).unwrap();
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail", root.trim()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn timeline_kinds(server: &Server, id: &str) -> Vec<String> {
    server
        .client
        .timeline(id)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.kind)
        .collect()
}

async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 30 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn answers(server: &Server, id: &str) {
    let echoed = server.client.exec(id, &sh("echo fine")).await.unwrap();
    assert_eq!(echoed.stdout, "fine\n");
    let session = server.client.get_session(id).await.unwrap();
    assert_eq!(session.state, SessionState::Running);
}

#[tokio::test]
async fn a_session_writing_past_its_disk_mb_is_warned_refused_uploads_then_stopped_and_its_space_returns()
 {
    let (e2b_api, e2b_sandbox) = (free_port(), free_port());
    let server = Server::start_with(|config| {
        config.lifecycle.disk_check_seconds = 1;
        config.compat.enabled = true;
        config.compat.template = "small".into();
        config.e2b.enabled = true;
        config.e2b.api_listen = e2b_api;
        config.e2b.sandbox_listen = e2b_sandbox;
        config.templates.insert(
            "small".into(),
            TemplateConfig {
                image: TINY.into(),
                memory_mb: 64,
                disk_mb: 64,
                ..TemplateConfig::default()
            },
        );
    })
    .await;
    let writer = common::session(&server, "small").await;
    let neighbour = common::session(&server, "small").await;
    let free_before = engine_disk_free();

    // 60 of 64 MiB: a warning, and the session goes on.
    let wrote = server
        .client
        .exec(
            &writer,
            &sh("dd if=/dev/zero of=/home/user/a bs=1M count=60 2>&1"),
        )
        .await
        .unwrap();
    assert_eq!(wrote.exit_code, Some(0), "{wrote:?}");
    wait_for("the disk warning", || async {
        timeline_kinds(&server, &writer)
            .await
            .contains(&"disk_warning".to_owned())
    })
    .await;
    assert_eq!(
        server.client.get_session(&writer).await.unwrap().state,
        SessionState::Running
    );

    // An upload bigger than the room left is refused before anything is written.
    let refused = server
        .client
        .upload(&writer, "/home/user/upload", vec![0u8; 8 * MIB as usize])
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::PayloadTooLarge),
        "{refused}"
    );
    let listed = server
        .client
        .exec(&writer, &sh("ls /home/user"))
        .await
        .unwrap();
    assert!(!listed.stdout.contains("upload"), "{listed:?}");
    // Through the WebContainer-compatible API as well.
    let http = reqwest::Client::new();
    let written = http
        .post(format!(
            "{}/webcontainer/{writer}/fs/writeFile",
            server.client.base_url()
        ))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({
            "path": "/home/user/upload",
            "contents": "a".repeat(8 * MIB as usize),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 413);
    let body: serde_json::Value = written.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large", "{body}");
    // And through E2B's envd, the session being a sandbox to it, with its access token.
    let sandbox: serde_json::Value = http
        .get(format!("http://{e2b_api}/sandboxes/{writer}"))
        .header("X-API-KEY", ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uploaded = http
        .post(format!("http://{e2b_sandbox}/files?path=/home/user/upload"))
        .header("E2b-Sandbox-Id", writer.as_str())
        .header(
            "X-Access-Token",
            sandbox["envdAccessToken"].as_str().unwrap(),
        )
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 8 * MIB as usize])
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 413);
    let body: serde_json::Value = uploaded.json().await.unwrap();
    assert!(body.to_string().contains("disk limit"), "{body}");

    // Past the limit: stopped, with the reason, its container and layer gone.
    let _ = server
        .client
        .exec(
            &writer,
            &sh("dd if=/dev/zero of=/home/user/b bs=1M count=40 2>&1"),
        )
        .await;
    wait_for("the writer to be stopped", || async {
        server
            .client
            .get_session(&writer)
            .await
            .is_ok_and(|s| s.state == SessionState::Stopped)
    })
    .await;
    let stopped = server.client.get_session(&writer).await.unwrap();
    assert_eq!(stopped.stop_reason.as_deref(), Some("disk_quota"));
    assert!(
        timeline_kinds(&server, &writer)
            .await
            .contains(&"disk_quota".to_owned())
    );
    let filter = format!("label=berth.session={writer}");
    wait_for("the writer's container to go", || async {
        docker(&["ps", "-aq", "--filter", &filter])
            .unwrap()
            .trim()
            .is_empty()
    })
    .await;
    // The 100 MiB it wrote are the host's again (other tests write meanwhile: a margin).
    let free_after = engine_disk_free();
    assert!(
        free_after + 48 * MIB >= free_before,
        "free before {} MiB, after {} MiB",
        free_before / MIB,
        free_after / MIB
    );
    answers(&server, &neighbour).await;
    server.stop().await;
}

#[tokio::test]
async fn a_memory_bomb_is_killed_and_recorded_while_its_session_and_neighbour_live_on() {
    let server = Server::start().await;
    let bomber = common::session(&server, "default").await;
    let neighbour = common::session(&server, "default").await;

    // The default test template allows 64 MiB; dd's one 256 MiB buffer cannot fit.
    let bomb = server
        .client
        .exec(
            &bomber,
            &sh("dd if=/dev/zero of=/dev/null bs=256M count=1 2>&1; echo survived $?"),
        )
        .await
        .unwrap();
    assert!(bomb.stdout.contains("survived 137"), "{bomb:?}");
    wait_for("the OOM kill on the timeline", || async {
        timeline_kinds(&server, &bomber)
            .await
            .contains(&"oom_killed".to_owned())
    })
    .await;
    answers(&server, &bomber).await;
    answers(&server, &neighbour).await;
    server.stop().await;
}

#[tokio::test]
async fn a_template_names_the_oci_runtime_and_one_the_engine_lacks_fails_creates_clearly() {
    let server = Server::start_with(|config| {
        for (name, runtime) in [("runc", "runc"), ("absent", "berth-no-such-runtime")] {
            config.templates.insert(
                name.into(),
                TemplateConfig {
                    image: TINY.into(),
                    memory_mb: 64,
                    runtime: Some(runtime.into()),
                    ..TemplateConfig::default()
                },
            );
        }
    })
    .await;
    let session = common::session(&server, "runc").await;
    let container = common::container_of(&server, &session);
    assert_eq!(common::inspect(&container)["HostConfig"]["Runtime"], "runc");

    let request = berth_proto::CreateSession {
        template: "absent".into(),
        ..Default::default()
    };
    let refused = server.client.create_session(&request).await.unwrap_err();
    assert!(
        refused.to_string().contains("runtime"),
        "the error names the runtime: {refused}"
    );
    server.stop().await;
}

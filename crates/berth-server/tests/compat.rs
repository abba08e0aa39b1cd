//! Seed 003's container manager on Berth (`[compat]`), driven by third-party clients against
//! the real engine: the seed frontend's REST calls and the real `socket.io-client` from npm.

mod common;

use std::path::PathBuf;

use berth_server::config::{Config, TemplateConfig};
use common::{ADMIN, Server};

const NODEJS: &str = "berth/nodejs:latest";

fn with_compat(config: &mut Config) {
    config.compat.enabled = true;
    config.templates.insert(
        "node".into(),
        TemplateConfig {
            image: NODEJS.into(),
            ..TemplateConfig::default()
        },
    );
}

/// The npm packages `ensure_compat_clients` installs.
fn npm_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/compat-npm");
    assert!(
        dir.join("node_modules/socket.io-client").exists(),
        "{} has no socket.io-client: run `source scripts/lib.sh && ensure_compat_clients` \
         (scripts/test does)",
        dir.display()
    );
    dir
}

/// Runs the Node script `fixture` (tests/fixtures) against `server` as the holder of `token`;
/// it must print "all steps passed". It is copied next to `npm_dir`'s node_modules, where
/// Node's module resolution finds socket.io-client.
async fn run_script(server: &Server, fixture: &str, token: &str) {
    let script = npm_dir().join(fixture);
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture),
        &script,
    )
    .unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env("BERTH_URL", server.client.base_url())
        .env("BERTH_TOKEN", token);
    let stdout = common::run_to_success(command, fixture).await;
    assert!(stdout.contains("all steps passed"), "{stdout}");
}

#[tokio::test]
async fn the_seed_frontends_rest_calls_and_socket_io_client_work_against_berth() {
    let server = Server::start_with(with_compat).await;
    run_script(&server, "compat_gateway.mjs", ADMIN).await;
    assert!(
        server.containers().is_empty(),
        "deleted containers leave nothing behind"
    );
    server.stop().await;
}

/// Events on the gateway count against a user's request rate, as HTTP requests do.
#[tokio::test]
async fn gateway_events_count_against_the_tokens_request_rate() {
    let server = Server::start_with(|config| {
        with_compat(config);
        config.quota.requests_per_second = 1;
        config.quota.request_burst = 2;
    })
    .await;
    let user = server.client.create_user("rated").await.unwrap();
    run_script(&server, "compat_gateway_limits.mjs", &user.token).await;
    server.stop().await;
}

/// Off by default: the seed's paths are Berth's 404s.
#[tokio::test]
async fn without_compat_enabled_the_seeds_routes_do_not_exist() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    for path in ["/containers", "/socket.io/?EIO=4&transport=polling"] {
        let response = http
            .get(format!("{}{path}", server.client.base_url()))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    server.stop().await;
}

/// Errors in NestJS's shape with Berth's code; no token is a 401 unless anonymous use is on,
/// and then each anonymous client (its cookie) sees only what it made.
#[tokio::test]
async fn compat_errors_are_nestjs_shaped_and_anonymous_clients_are_kept_apart() {
    let server = Server::start_with(|config| {
        with_compat(config);
        config.compat.template = "default".into();
        config.compat.workdir = "/tmp/work".into();
        config.compat.allow_anonymous = true;
    })
    .await;
    let base = server.client.base_url().to_owned();
    let http = reqwest::Client::new();

    let bad = http
        .post(format!("{base}/webcontainer/boot"))
        .bearer_auth(ADMIN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["statusCode"], 400);
    assert_eq!(body["error"], "Bad Request");
    assert_eq!(body["code"], "invalid_json");

    let wrong_token = http
        .get(format!("{base}/containers"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);

    // Two anonymous clients: each gets a cookie of its own on its first call.
    let mut cookies = Vec::new();
    for _ in 0..2 {
        let created = http
            .post(format!("{base}/containers"))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let cookie = created.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let info: serde_json::Value = created.json().await.unwrap();
        cookies.push((cookie, info["id"].as_str().unwrap().to_owned()));
    }
    let (first, second) = (&cookies[0], &cookies[1]);
    assert_ne!(first.0, second.0);
    let listed: Vec<serde_json::Value> = http
        .get(format!("{base}/containers"))
        .header("cookie", &first.0)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [first.1.as_str()],
        "an anonymous client sees its own only"
    );
    let others = http
        .get(format!("{base}/containers/{}", second.1))
        .header("cookie", &first.0)
        .send()
        .await
        .unwrap();
    assert_eq!(others.status(), 404, "another's container is not found");
    // Its working directory was made, and relative paths start there.
    let written = http
        .post(format!("{base}/webcontainer/{}/fs/writeFile", first.1))
        .header("cookie", &first.0)
        .json(&serde_json::json!({"path": "note.txt", "contents": "kept"}))
        .send()
        .await
        .unwrap();
    let written: serde_json::Value = written.json().await.unwrap();
    assert_eq!(written["path"], "/tmp/work/note.txt");
    for (cookie, id) in &cookies {
        let deleted = http
            .delete(format!("{base}/containers/{id}"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 200);
    }
    server.stop().await;
}

/// A template whose image does not let its user make the working directory: the create fails
/// saying so, and leaves no container behind.
#[tokio::test]
async fn a_container_that_cannot_make_its_workdir_is_not_left_behind() {
    let server = Server::start_with(|config| {
        with_compat(config);
        config.compat.template = "default".into();
        config.compat.workdir = "/root-owned/workspace".into();
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/containers", server.client.base_url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/root-owned/workspace"),
        "{body}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server.containers().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container was removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.stop().await;
}

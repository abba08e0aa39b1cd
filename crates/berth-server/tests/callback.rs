//! The callback API from inside real sessions (seed 001): `BERTH_API_URL` and the session's
//! token reach the control plane through the agent's relay and the session's socket, serve
//! the `/api/v1/self` routes of that session only, expire and are renewed.

mod common;

use std::time::Duration;

use berth_proto::{CreateSession, SessionState};
use common::{ADMIN, Server, sh};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a token works in these tests: renewed every 5 s.
const TOKEN_TTL: u64 = 10;

async fn server() -> Server {
    Server::start_with(|config| config.callback.token_ttl_seconds = TOKEN_TTL).await
}

async fn base_session(server: &Server) -> String {
    let request = CreateSession {
        template: "base".into(),
        ..CreateSession::default()
    };
    server.client.create_session(&request).await.unwrap().id
}

/// Runs `curl` in the session against `$BERTH_API_URL`: `args` go before the URL's path, the
/// answer is the status line's code, then the body.
async fn curl_in(server: &Server, id: &str, token: &str, args: &str, path: &str) -> (u16, String) {
    let script = format!(
        "curl -sS -w '\\n%{{http_code}}' -H \"Authorization: Bearer {token}\" {args} \"$BERTH_API_URL{path}\""
    );
    let ran = server.client.exec(id, &sh(&script)).await.unwrap();
    assert_eq!(ran.exit_code, Some(0), "{script}: {}", ran.stderr);
    let (body, status) = ran.stdout.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

async fn read_in(server: &Server, id: &str, what: &str) -> String {
    let ran = server.client.exec(id, &sh(what)).await.unwrap();
    assert_eq!(ran.exit_code, Some(0), "{what}: {}", ran.stderr);
    ran.stdout.trim().to_owned()
}

#[tokio::test]
async fn code_inside_a_session_talks_back_to_the_platform_with_its_own_token() {
    let server = server().await;
    let client = &server.client;
    let id = base_session(&server).await;
    let env_token = read_in(&server, &id, "echo $BERTH_SESSION_TOKEN").await;
    assert!(env_token.starts_with("bst_"), "{env_token}");
    assert_eq!(
        read_in(&server, &id, "echo $BERTH_TOKEN_FILE").await,
        "/run/berth/api/token"
    );

    // Who am I.
    let (status, body) = curl_in(&server, &id, "$BERTH_SESSION_TOKEN", "", "/api/v1/self").await;
    assert_eq!(status, 200, "{body}");
    let me: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["session_id"], id.as_str());
    assert_eq!(me["owner"], "admin");

    // The session's state and the user's.
    let put = "-X PUT -H 'content-type: application/json' -d '{\"items\":[1,2]}'";
    let (status, body) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        put,
        "/api/v1/self/state/cart",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        "",
        "/api/v1/self/state/cart",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"items":[1,2]}"#));
    let (status, _) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        put,
        "/api/v1/self/user-state/prefs",
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        "",
        "/api/v1/self/state",
    )
    .await;
    assert_eq!(status, 200);
    let keys: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys["keys"][0]["key"], "cart");
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    let (status, body) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        "-X PUT -d '{'",
        "/api/v1/self/state/bad",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        put,
        "/api/v1/self/state/no%2Fslash",
    )
    .await;
    assert_eq!(status, 400);

    // A custom event reaches the events WebSocket and the timeline.
    let base = client.base_url().to_owned();
    let mut request = format!("{}/api/v1/sessions/{id}/events", base.replace("http", "ws"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let (mut events, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let event = "-X POST -H 'content-type: application/json' -d '{\"name\":\"build:done\",\"data\":{\"ok\":true}}'";
    let (status, body) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        event,
        "/api/v1/self/events",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let custom = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("no custom event")
            .unwrap()
            .unwrap();
        let frame: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        if frame["type"] == "custom" {
            break frame;
        }
    };
    assert_eq!(custom["name"], "build:done");
    assert_eq!(custom["data"]["ok"], true);
    let timeline = client.timeline(&id).await.unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e.kind == "custom" && e.message.contains("build:done")),
        "{timeline:?}"
    );

    // Ready and keepalive.
    assert_eq!(client.get_session(&id).await.unwrap().ready_at, None);
    let ready =
        "-X POST -H 'content-type: application/json' -d '{\"message\":\"listening on 8000\"}'";
    let (status, _) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        ready,
        "/api/v1/self/ready",
    )
    .await;
    assert_eq!(status, 204);
    let session = client.get_session(&id).await.unwrap();
    assert!(session.ready_at.is_some());
    assert_eq!(session.ready_message.as_deref(), Some("listening on 8000"));
    let keep = "-X POST -H 'content-type: application/json' -d '{\"seconds\":600}'";
    let (status, body) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        keep,
        "/api/v1/self/keepalive",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        client
            .get_session(&id)
            .await
            .unwrap()
            .keepalive_until
            .is_some()
    );

    // The token opens nothing else: not through the socket, not on the main listener.
    let (status, _) = curl_in(&server, &id, "$BERTH_SESSION_TOKEN", "", "/api/v1/sessions").await;
    assert_eq!(status, 404);
    let http = reqwest::Client::new();
    let refused = http
        .get(format!("{base}/api/v1/sessions/{id}"))
        .bearer_auth(&env_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // The main listener serves the self routes with it (an embedding app may call them too);
    // the admin's token does not open them.
    let me = http
        .get(format!("{base}/api/v1/self"))
        .bearer_auth(&env_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let admin = http
        .get(format!("{base}/api/v1/self"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401);

    // Another session's token is refused in this one, and opens only its own state.
    let other = base_session(&server).await;
    let other_token = read_in(&server, &other, "echo $BERTH_SESSION_TOKEN").await;
    let (status, body) = curl_in(&server, &id, &other_token, "", "/api/v1/self").await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = curl_in(&server, &other, &other_token, "", "/api/v1/self/state/cart").await;
    assert_eq!(status, 404);
    let (status, body) = curl_in(
        &server,
        &other,
        &other_token,
        "",
        "/api/v1/self/user-state/prefs",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"items":[1,2]}"#),
        "the same user's"
    );

    // Expiry and renewal: the file holds a newer token within half a lifetime, and the
    // environment's stops working after a whole one.
    let first = read_in(&server, &id, "cat $BERTH_TOKEN_FILE").await;
    tokio::time::sleep(Duration::from_secs(TOKEN_TTL / 2 + 2)).await;
    let renewed = read_in(&server, &id, "cat $BERTH_TOKEN_FILE").await;
    assert_ne!(first, renewed, "renewed");
    tokio::time::sleep(Duration::from_secs(TOKEN_TTL / 2 + 1)).await;
    let (status, body) = curl_in(&server, &id, "$BERTH_SESSION_TOKEN", "", "/api/v1/self").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
    let (status, _) = curl_in(&server, &id, "$(cat $BERTH_TOKEN_FILE)", "", "/api/v1/self").await;
    assert_eq!(status, 200);

    // The session's state survives its container: hibernated and woken, it is there; the
    // readiness was the old container's.
    client.hibernate_session(&id).await.unwrap();
    let (status, body) = curl_in(
        &server,
        &id,
        "$BERTH_SESSION_TOKEN",
        "",
        "/api/v1/self/state/cart",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"items":[1,2]}"#));
    let woken = client.get_session(&id).await.unwrap();
    assert_eq!(woken.state, SessionState::Running);
    assert_eq!(woken.ready_at, None);

    // It dies with the session.
    let live_token = read_in(&server, &id, "cat $BERTH_TOKEN_FILE").await;
    client.delete_session(&id).await.unwrap();
    let ended = http
        .get(format!("{base}/api/v1/self"))
        .bearer_auth(&live_token)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 401);
    client.delete_session(&other).await.unwrap();
    server.stop().await;
}

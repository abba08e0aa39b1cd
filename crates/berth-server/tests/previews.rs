//! The preview proxy against a real server in a real container: HTTP, server-sent events and
//! WebSockets pass through; port events arrive; owners, link holders, other users, expired links
//! and `Host` tricks each get what they should.

mod common;

use std::time::{Duration, Instant};

use berth_proto::{
    CreateSession,
    ports::{PortList, PreviewLink},
    process::ExecRequest,
};
use common::{ADMIN, Server};
use futures_util::{SinkExt, StreamExt};
use reqwest::{StatusCode, header};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

const DOMAIN: &str = "preview.test";
const SERVER: &[u8] = include_bytes!("fixtures/preview_server.py");

/// A running session with the fixture server listening on 8000.
async fn session_serving(server: &Server) -> String {
    let request = CreateSession {
        template: "base".into(),
        ..Default::default()
    };
    let id = server.client.create_session(&request).await.unwrap().id;
    server
        .client
        .upload(&id, "server.py", SERVER.to_vec())
        .await
        .unwrap();
    let start = ExecRequest {
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "setsid python3 server.py 8000 >/tmp/server.log 2>&1 &".into(),
        ],
        ..Default::default()
    };
    server.client.exec(&id, &start).await.unwrap();
    id
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What a GET carries besides its URL.
#[derive(Debug, Default, Clone, Copy)]
struct With<'a> {
    host: Option<&'a str>,
    token: Option<&'a str>,
    cookie: Option<&'a str>,
}

async fn get(url: &str, with: With<'_>) -> reqwest::Response {
    let mut request = http().get(url);
    if let Some(host) = with.host {
        request = request.header(header::HOST, host);
    }
    if let Some(token) = with.token {
        request = request.bearer_auth(token);
    }
    if let Some(cookie) = with.cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.send().await.unwrap()
}

async fn wait_for_port(server: &Server, id: &str, port: u16) -> PortList {
    let url = format!("{}/api/v1/sessions/{id}/ports", server.client.base_url());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list: PortList = get(
            &url,
            With {
                token: Some(ADMIN),
                ..With::default()
            },
        )
        .await
        .json()
        .await
        .unwrap();
        if list.ports.iter().any(|p| p.port == port) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} never opened: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn http_sse_and_websockets_pass_through_with_port_events() {
    let server = Server::start_with(|c| c.preview.domain = Some(DOMAIN.into())).await;
    let base = server.client.base_url().to_owned();
    let id = session_serving(&server).await;

    // The events stream reports the port as it opens.
    let mut request = format!("{}/api/v1/sessions/{id}/events", base.replace("http", "ws"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {ADMIN}").parse().unwrap(),
    );
    let (mut events, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let opened = tokio::time::timeout(Duration::from_secs(15), events.next())
        .await
        .expect("no port event")
        .unwrap()
        .unwrap();
    let opened: Value = serde_json::from_str(opened.to_text().unwrap()).unwrap();
    assert_eq!(opened["type"], "port-open");
    assert_eq!(opened["port"], 8000);
    let listed = wait_for_port(&server, &id, 8000).await;
    let path = listed.ports[0].preview_path.clone().unwrap();
    assert_eq!(path, format!("/api/v1/sessions/{id}/ports/8000/"));

    // HTTP: path and query arrive below the prefix; Berth's credentials stay behind.
    let echo: Value = http()
        .post(format!("{base}{path}deep/page?x=1"))
        .bearer_auth(ADMIN)
        .header(header::COOKIE, "berth_token=secret; app=kept")
        .body("posted")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/deep/page?x=1");
    assert_eq!(echo["body"], "posted");
    assert_eq!(echo["authorization"], Value::Null);
    assert_eq!(echo["cookie"], "app=kept");
    assert_eq!(echo["host"], "localhost:8000");

    // Without the trailing slash, a redirect to it (relative links need it).
    let bare = get(
        &format!("{base}/api/v1/sessions/{id}/ports/8000?a=b"),
        With {
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await;
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        bare.headers()[header::LOCATION],
        format!("/api/v1/sessions/{id}/ports/8000/?a=b")
    );

    // Server-sent events arrive as they are sent, not when the stream ends (3 events, 1 s apart).
    let started = Instant::now();
    let mut sse = get(
        &format!("{base}{path}sse"),
        With {
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await;
    assert_eq!(sse.headers()[header::CONTENT_TYPE], "text/event-stream");
    let first = sse.chunk().await.unwrap().unwrap();
    let first_after = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("tick 0"));
    let mut rest = Vec::new();
    while let Some(chunk) = sse.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("tick 2"));
    assert!(
        first_after < Duration::from_millis(900) && started.elapsed() >= Duration::from_secs(2),
        "first event after {first_after:?}, all after {:?}: buffered",
        started.elapsed()
    );

    // WebSocket: upgraded end to end.
    let mut request = format!("{}{path}ws", base.replace("http", "ws"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {ADMIN}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket.send(Message::text("hello through")).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.to_text().unwrap(), "hello through");

    // Host-based: `{port}-{id}.{domain}` reaches the same server, whatever the path.
    let by_host: Value = get(
        &format!("{base}/any/path"),
        With {
            host: Some(&format!("8000-{id}.{DOMAIN}")),
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(by_host["path"], "/any/path");

    // A port nothing listens on: 502 with a page that says so, at once.
    let started = Instant::now();
    let nothing = get(
        &format!("{base}/api/v1/sessions/{id}/ports/8001/"),
        With {
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await;
    assert_eq!(nothing.status(), StatusCode::BAD_GATEWAY);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        nothing
            .text()
            .await
            .unwrap()
            .contains("No server in this session answers on port 8001")
    );

    // The agent's own port is not a preview.
    let agent = get(
        &format!("{base}/api/v1/sessions/{id}/ports/7681/health"),
        With {
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await;
    assert_eq!(agent.status(), StatusCode::FORBIDDEN);

    // The port closes: the events stream says so.
    let stop = ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), "pkill -f server.py".into()],
        ..Default::default()
    };
    server.client.exec(&id, &stop).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no port-closed event")
        .unwrap()
        .unwrap();
    let closed: Value = serde_json::from_str(closed.to_text().unwrap()).unwrap();
    assert_eq!(closed["type"], "port-closed");
    assert_eq!(closed["port"], 8000);
    server.stop().await;
}

#[tokio::test]
async fn only_the_owner_or_a_live_link_opens_a_preview_and_host_tricks_fail() {
    let server = Server::start_with(|c| c.preview.domain = Some(DOMAIN.into())).await;
    let base = server.client.base_url().to_owned();
    let id = session_serving(&server).await;
    wait_for_port(&server, &id, 8000).await;
    let page = format!("{base}/api/v1/sessions/{id}/ports/8000/");

    // Another user: the session does not exist for them, by path or by host.
    let other = server.client.create_user("mallory").await.unwrap().token;
    let theirs = get(
        &page,
        With {
            token: Some(&other),
            ..With::default()
        },
    )
    .await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    let by_host = get(
        &format!("{base}/"),
        With {
            host: Some(&format!("8000-{id}.{DOMAIN}")),
            token: Some(&other),
            ..With::default()
        },
    )
    .await;
    assert_eq!(by_host.status(), StatusCode::NOT_FOUND);
    // No credentials at all.
    let anonymous = get(&page, With::default()).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // A `Host` that only looks like a preview is the API, and a preview `Host` on an API path
    // does not turn the API into a proxy for someone else's port.
    for host in [
        format!("8000-{id}.{DOMAIN}.evil.example"),
        format!("x.8000-{id}.{DOMAIN}"),
        format!("8000-{id}.not{DOMAIN}"),
    ] {
        let tricked = get(
            &format!("{base}/nothing-here"),
            With {
                host: Some(&host),
                token: Some(ADMIN),
                ..With::default()
            },
        )
        .await;
        assert_eq!(tricked.status(), StatusCode::NOT_FOUND, "{host}");
        let body: Value = tricked.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{host}");
    }

    // A signed link works without a login, sandboxed, until it expires; then 403.
    let link: PreviewLink = http()
        .post(format!("{base}/api/v1/sessions/{id}/preview-links"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"port": 8000, "ttl_seconds": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let opened = get(&format!("{base}{}q?y=2", link.path), With::default()).await;
    assert_eq!(opened.status(), StatusCode::OK);
    assert!(
        opened.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    let echo: Value = opened.json().await.unwrap();
    assert_eq!(echo["path"], "/q?y=2");

    // The host-based form: the token in the query once, then a cookie on that host.
    let host = format!("8000-{id}.{DOMAIN}");
    let url = link.url.clone().unwrap();
    let query = url.split_once('?').unwrap().1;
    let first = get(
        &format!("{base}/page?{query}&z=3"),
        With {
            host: Some(&host),
            ..With::default()
        },
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = first.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("berth_preview=") && cookie.contains("HttpOnly"));
    let echo: Value = first.json().await.unwrap();
    assert_eq!(echo["path"], "/page?z=3", "the token is not passed on");
    let token_cookie = cookie.split(';').next().unwrap().to_owned();
    let again = get(
        &format!("{base}/second"),
        With {
            host: Some(&host),
            cookie: Some(&token_cookie),
            ..With::default()
        },
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK);
    // The same token on another port's host is refused.
    let elsewhere = get(
        &format!("{base}/"),
        With {
            host: Some(&format!("8001-{id}.{DOMAIN}")),
            cookie: Some(&token_cookie),
            ..With::default()
        },
    )
    .await;
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);

    // A tampered link is refused too.
    let tampered = link.path.replacen(".8000.", ".8001.", 1);
    let refused = get(&format!("{base}{tampered}"), With::default()).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = get(&format!("{base}{}", link.path), With::default()).await;
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    assert!(expired.text().await.unwrap().contains("expired"));
    server.stop().await;
}

#[tokio::test]
async fn a_browser_login_is_a_cookie_and_changes_need_its_csrf_token() {
    let server = Server::start().await;
    let base = server.client.base_url().to_owned();
    let user = server.client.create_user("alice").await.unwrap().token;

    let wrong = http()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"token": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let login = http()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "token": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let set = login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    let cookie = set.split(';').next().unwrap().to_owned();
    let me: Value = login.json().await.unwrap();
    assert_eq!(me["name"], "alice");
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();

    // Reads need only the cookie.
    let list = get(
        &format!("{base}/api/v1/sessions"),
        With {
            cookie: Some(&cookie),
            ..With::default()
        },
    )
    .await;
    assert_eq!(list.status(), StatusCode::OK);
    // Changes without the CSRF token are refused, and nothing is created.
    let forged = http()
        .post(format!("{base}/api/v1/sessions"))
        .header(header::COOKIE, &cookie)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let body: Value = forged.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    let user_client = berth_client::Client::new(&base, &user).unwrap();
    assert!(
        user_client
            .list_sessions(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    let created = http()
        .post(format!("{base}/api/v1/sessions"))
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // A WebSocket from another origin may not ride on the cookie.
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut request = format!(
        "{}/api/v1/sessions/{id}/terminal",
        base.replace("http", "ws")
    )
    .into_client_request()
    .unwrap();
    request
        .headers_mut()
        .insert(header::COOKIE, cookie.parse().unwrap());
    request
        .headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403),
        "{refused:?}"
    );
    server.stop().await;
}

//! The preview proxy against a real server in a real container: HTTP, server-sent events and
//! WebSockets pass through; port events arrive; owners, link holders, other users, expired links
//! and `Host` tricks each get what they should; a session's pages and cookies stay off Berth's
//! origin, and a preview never reaches a container that is not its session's.

mod common;

use std::time::{Duration, Instant};

use berth_proto::{
    CreateSession,
    ports::{PortList, PreviewLink},
    process::ExecRequest,
};
use common::{ADMIN, Server, container_of, docker, inspect};
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

/// What a request carries besides its URL.
#[derive(Debug, Default, Clone, Copy)]
struct With<'a> {
    host: Option<&'a str>,
    token: Option<&'a str>,
    cookie: Option<&'a str>,
    headers: &'a [(&'a str, &'a str)],
}

async fn get(url: &str, with: With<'_>) -> reqwest::Response {
    send(http().get(url), with).await
}

async fn send(mut request: reqwest::RequestBuilder, with: With<'_>) -> reqwest::Response {
    for (name, value) in with.headers {
        request = request.header(*name, *value);
    }
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
    let terminal = format!(
        "{}/api/v1/sessions/{id}/terminal",
        base.replace("http", "ws")
    );
    assert_websocket_refused(&terminal, &cookie, "http://evil.example").await;
    server.stop().await;
}

/// A signed link to port 8000 of session `id`, made by the admin.
async fn preview_link(base: &str, id: &str) -> PreviewLink {
    http()
        .post(format!("{base}/api/v1/sessions/{id}/preview-links"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"port": 8000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A WebSocket upgrade with the login cookie, from `origin`, is refused with 403.
async fn assert_websocket_refused(url: &str, cookie: &str, origin: &str) {
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert(header::COOKIE, cookie.parse().unwrap());
    headers.insert(header::ORIGIN, origin.parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403),
        "{refused:?}"
    );
}

/// Logs a browser in with `token`; the login cookie as `Set-Cookie` sends it.
async fn login(base: &str, token: &str) -> String {
    let login = http()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_owner_route_is_sandboxed_and_takes_a_login_only_from_berths_own_pages() {
    let server = Server::start().await;
    let base = server.client.base_url().to_owned();
    let id = session_serving(&server).await;
    wait_for_port(&server, &id, 8000).await;
    let page = format!("{base}/api/v1/sessions/{id}/ports/8000/");

    // Sandboxed like a link: the page's scripts get an opaque origin, not Berth's.
    let opened = get(
        &page,
        With {
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await;
    assert_eq!(opened.status(), StatusCode::OK);
    let policy = opened.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        policy.starts_with("sandbox") && !policy.contains("allow-same-origin"),
        "{policy}"
    );
    assert_eq!(opened.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

    // The login cookie opens it from Berth's own pages or the address bar...
    let set = login(&base, ADMIN).await;
    let cookie = set.split(';').next().unwrap();
    for headers in [
        &[("sec-fetch-site", "same-origin"), ("origin", base.as_str())][..],
        &[("sec-fetch-site", "none")],
        &[],
    ] {
        let ours = get(
            &page,
            With {
                cookie: Some(cookie),
                headers,
                ..With::default()
            },
        )
        .await;
        assert_eq!(ours.status(), StatusCode::OK, "{headers:?}");
    }
    // ...never from another site, nor from a sandboxed preview (whose origin is `null`), and
    // nothing reaches the session's server then.
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "null")],
        &[("origin", "http://evil.example")],
    ] {
        let forged = send(
            http().post(format!("{page}forged")).body("x"),
            With {
                cookie: Some(cookie),
                headers,
                ..With::default()
            },
        )
        .await;
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{headers:?}");
        let body: Value = forged.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{headers:?}");
    }
    assert_websocket_refused(&format!("{}ws", page.replace("http", "ws")), cookie, "null").await;

    // Files relayed from the agent are not sniffed into something a browser would run.
    let file = get(
        &format!("{base}/api/v1/sessions/{id}/files/content?path=server.py"),
        With {
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await;
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    server.stop().await;
}

/// The cookies a response sets, as (name, `Path`), after checking that none names a domain.
fn cookies_set(response: &reqwest::Response) -> Vec<(String, Option<String>)> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|value| {
            let value = value.to_str().unwrap();
            let mut parts = value.split(';').map(str::trim);
            let name = parts.next().unwrap().split('=').next().unwrap().to_owned();
            let mut path = None;
            for attribute in parts {
                let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
                assert!(!key.eq_ignore_ascii_case("domain"), "{value}");
                if key.eq_ignore_ascii_case("path") {
                    path = Some(val.to_owned());
                }
            }
            (name, path)
        })
        .collect()
}

#[tokio::test]
async fn cookies_from_a_session_stay_on_its_own_preview_and_berths_are_secure_over_https() {
    let server = Server::start_with(|c| {
        c.preview.domain = Some(DOMAIN.into());
        c.preview.https = true;
    })
    .await;
    let base = server.client.base_url().to_owned();
    let id = session_serving(&server).await;
    wait_for_port(&server, &id, 8000).await;
    // The server tries `berth_token` and a `Domain`; the app's own three stay, under the
    // preview's prefix, so previews of different sessions and links keep separate cookies.
    let expected = |prefix: &str| {
        vec![
            ("app".to_owned(), Some(prefix.to_owned())),
            ("scoped".to_owned(), Some(format!("{prefix}admin"))),
            ("plain".to_owned(), Some(prefix.to_owned())),
        ]
    };

    let owner = format!("/api/v1/sessions/{id}/ports/8000/");
    let by_owner = get(
        &format!("{base}{owner}cookies"),
        With {
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await;
    assert_eq!(by_owner.status(), StatusCode::NO_CONTENT);
    assert_eq!(cookies_set(&by_owner), expected(&owner));

    let link = preview_link(&base, &id).await;
    let by_link = get(&format!("{base}{}cookies", link.path), With::default()).await;
    assert_eq!(by_link.status(), StatusCode::NO_CONTENT);
    assert_eq!(cookies_set(&by_link), expected(&link.path));

    // On its own host the app keeps its paths; it still cannot set Berth's cookies or a domain.
    // Berth's own preview cookie follows, `Secure` since previews are served over HTTPS.
    let url = link.url.clone().unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let query = url.split_once('?').unwrap().1;
    let by_host = get(
        &format!("{base}/cookies?{query}"),
        With {
            host: Some(&format!("8000-{id}.{DOMAIN}")),
            ..With::default()
        },
    )
    .await;
    assert_eq!(by_host.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cookies_set(&by_host),
        vec![
            ("app".to_owned(), Some("/".to_owned())),
            ("scoped".to_owned(), Some("/admin".to_owned())),
            ("plain".to_owned(), None),
            ("berth_preview".to_owned(), Some("/".to_owned())),
        ]
    );
    let mut set = by_host.headers().get_all(header::SET_COOKIE).iter();
    let preview_cookie = set.next_back().unwrap().to_str().unwrap();
    assert!(preview_cookie.contains("; Secure"), "{preview_cookie}");

    // So is the login cookie.
    let set = login(&base, ADMIN).await;
    assert!(set.contains("; Secure"), "{set}");
    server.stop().await;
}

/// Removes a test's containers and then its network, even when an assertion failed.
struct Cleanup {
    instance: String,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=berth.instance={}", self.instance);
        let containers = docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
        for container in containers.lines() {
            let _ = docker(&["rm", "-f", container]);
        }
        let _ = docker(&["network", "rm", &self.network]);
    }
}

fn session_ip(server: &Server, network: &str, id: &str) -> String {
    inspect(&container_of(server, id))["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_preview_never_reaches_a_container_that_is_not_its_sessions() {
    // A network of its own, so that no other test's container takes the address this one
    // waits for; and no reconcile, which would notice the stopped container and end the session.
    let network = format!("berth-test-{}", berth_server::ids::user_id());
    let server = Server::start_with(|c| {
        c.docker.network = network.clone();
        c.lifecycle.reconcile_interval_seconds = 3600;
    })
    .await;
    // The default template's egress is `open`: its sessions join `{network}-open`.
    let network = format!("{network}-open");
    let _cleanup = Cleanup {
        instance: server.instance.clone(),
        network: network.clone(),
    };
    let base = server.client.base_url().to_owned();
    let alice_token = server.client.create_user("alice").await.unwrap().token;
    let bob_token = server.client.create_user("bob").await.unwrap().token;
    let alice = berth_client::Client::new(&base, &alice_token).unwrap();
    let bob = berth_client::Client::new(&base, &bob_token).unwrap();

    // Alice's container loses its address behind Berth's back. A stop or a kill would be seen
    // at once in the engine's events (the session restarts or fails); leaving the network is
    // not, so her row keeps an address that Docker is free to give to someone else: exactly
    // the stale address a preview must never follow.
    let theirs = alice
        .create_session(&CreateSession::default())
        .await
        .unwrap()
        .id;
    let address = session_ip(&server, &network, &theirs);
    docker(&[
        "network",
        "disconnect",
        &network,
        &container_of(&server, &theirs),
    ])
    .unwrap();
    let link = preview_link(&base, &theirs).await;

    // Docker hands the freed address to the next container: one of Bob's sessions.
    let mut strangers = Vec::new();
    let stranger = loop {
        let id = bob
            .create_session(&CreateSession::default())
            .await
            .unwrap()
            .id;
        if session_ip(&server, &network, &id) == address {
            break id;
        }
        strangers.push(id);
        assert!(strangers.len() < 3, "no session got {address} back");
    };
    let serve = ExecRequest {
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "mkdir -p www && echo bob-private > www/index.html && httpd -p 8000 -h www".into(),
        ],
        ..Default::default()
    };
    bob.exec(&stranger, &serve).await.unwrap();
    wait_for_port(&server, &stranger, 8000).await;
    let bobs = get(
        &format!("{base}/api/v1/sessions/{stranger}/ports/8000/"),
        With {
            token: Some(ADMIN),
            ..With::default()
        },
    )
    .await;
    assert!(bobs.text().await.unwrap().contains("bob-private"));

    // Alice's previews refuse instead of showing Bob's server, by her route and by link.
    let by_owner = get(
        &format!("{base}/api/v1/sessions/{theirs}/ports/8000/"),
        With {
            token: Some(&alice_token),
            ..With::default()
        },
    )
    .await;
    assert_eq!(by_owner.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = by_owner.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_failed", "{body}");
    let by_link = get(&format!("{base}{}", link.path), With::default()).await;
    assert_eq!(by_link.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = by_link.text().await.unwrap();
    assert!(
        page.contains("not reachable") && !page.contains("bob-private"),
        "{page}"
    );
    server.stop().await;
}

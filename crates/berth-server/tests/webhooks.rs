//! Webhooks against a real receiver: sessions' lifecycle posted signed the Standard Webhooks
//! way, a user's webhook hearing only that user's sessions, retries after failures with their
//! log, and deliveries pending across a restart of the control plane.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use berth_client::Client;
use berth_proto::CreateSession;
use berth_server::config::WebhookConfig;
use common::{ADMIN, Server};
use hmac::{KeyInit, Mac};
use serde_json::Value;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One post as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
}

/// A receiver on loopback: every post is kept; `/flaky` answers 500 to its first two, and
/// every path answers 503 while `down` is set.
#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<Received>>>,
    flaky: Arc<AtomicU32>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let app = Router::new()
            .route("/{name}", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, base)
    }

    fn posts_to(&self, path: &str) -> Vec<Received> {
        let posts = self.posts.lock().unwrap();
        posts.iter().filter(|p| p.path == path).cloned().collect()
    }

    /// The event types posted to `path` for `session`, in order, once `want` is among them.
    async fn events_until(&self, path: &str, session: &str, want: &str) -> Vec<String> {
        for _ in 0..150 {
            let events: Vec<String> = self
                .posts_to(path)
                .iter()
                .map(|p| serde_json::from_str::<Value>(&p.body).unwrap())
                .filter(|body| body["data"]["session"]["id"] == session)
                .map(|body| body["type"].as_str().unwrap().to_owned())
                .collect();
            if events.iter().any(|e| e == want) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no {want} for {session} at {path}: {:?}",
            self.posts_to(path)
        );
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let path = format!("/{name}");
    receiver.posts.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body,
    });
    if receiver.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if path == "/flaky" && receiver.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

/// Checks a post's signature as a receiver must (Standard Webhooks).
fn assert_signed(post: &Received, secret: &str) {
    let header = |name: &str| post.headers[name].to_str().unwrap().to_owned();
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    assert!(id.starts_with("msg_"), "{id}");
    let now = chrono::Utc::now().timestamp();
    assert!((now - timestamp.parse::<i64>().unwrap()).abs() < 300);
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{}", post.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(header("webhook-signature"), expected);
}

fn operator(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        secret: SECRET.to_owned(),
        events: vec!["*".to_owned()],
    }
}

#[tokio::test]
async fn lifecycle_events_reach_signed_webhooks_with_retries_and_a_log() {
    let (receiver, base) = Receiver::start().await;
    let operator_url = format!("{base}/operator");
    let server = Server::start_with(|config| {
        config.webhooks = vec![operator(operator_url)];
        config.webhook_delivery.retry_seconds = vec![1, 1, 1];
        config.webhook_delivery.user_webhooks = true;
        config.timeline.collect_seconds = 1;
    })
    .await;
    let admin = &server.client;
    let http = reqwest::Client::new();
    let api = admin.base_url().to_owned();

    // Alice registers her own, for two event types, on the flaky path.
    let alice = admin.create_user("alice").await.unwrap();
    let alice_client = Client::new(&api, &alice.token).unwrap();
    let created: Value = http
        .post(format!("{api}/api/v1/webhooks"))
        .bearer_auth(&alice.token)
        .json(&serde_json::json!({
            "url": format!("{base}/flaky"),
            "events": ["session.running", "session.stopped"],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alice_hook = created["id"].as_str().unwrap().to_owned();
    let alice_secret = created["secret"].as_str().unwrap().to_owned();
    assert!(alice_secret.starts_with("whsec_"), "{created}");
    let bad = http
        .post(format!("{api}/api/v1/webhooks"))
        .bearer_auth(&alice.token)
        .json(&serde_json::json!({ "url": "ftp://x", "events": ["*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = http
        .post(format!("{api}/api/v1/webhooks"))
        .bearer_auth(&alice.token)
        .json(&serde_json::json!({ "url": format!("{base}/x"), "events": ["session.exploded"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);

    // The admin's session: the operator hears its life, Alice's webhook does not.
    let session = admin
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    // Code inside tells of itself (busybox's wget: the tiny image has no curl).
    let custom = common::sh(
        "wget -q -O- --header \"Authorization: Bearer $BERTH_SESSION_TOKEN\" \
         --header 'content-type: application/json' \
         --post-data '{\"name\":\"tests:passed\",\"data\":{\"count\":3}}' \
         $BERTH_API_URL/api/v1/self/events",
    );
    let posted = admin.exec(&session.id, &custom).await.unwrap();
    assert_eq!(posted.exit_code, Some(0), "{}", posted.stderr);
    receiver
        .events_until("/operator", &session.id, "session.custom")
        .await;
    // A server starts listening: the leader's sweep of agents' journals tells of it.
    let serve = common::sh("busybox httpd -p 8090 -h /tmp");
    let started = admin.exec(&session.id, &serve).await.unwrap();
    assert_eq!(started.exit_code, Some(0), "{}", started.stderr);
    receiver
        .events_until("/operator", &session.id, "session.port_opened")
        .await;
    admin.hibernate_session(&session.id).await.unwrap();
    admin.resume_session(&session.id).await.unwrap();
    admin.delete_session(&session.id).await.unwrap();
    let events = receiver
        .events_until("/operator", &session.id, "session.stopped")
        .await;
    // Posts of one moment may overtake each other (each is a task of its own); the rest are
    // seconds apart.
    let (first, rest) = events.split_at(2);
    let mut first = first.to_vec();
    first.sort();
    assert_eq!(first, ["session.created", "session.running"], "{events:?}");
    assert_eq!(
        rest,
        [
            "session.custom",
            "session.port_opened",
            "session.hibernated",
            "session.restored",
            "session.stopped"
        ]
    );
    let posts = receiver.posts_to("/operator");
    for post in &posts {
        assert_signed(post, SECRET);
        assert_eq!(post.headers["content-type"], "application/json");
    }
    let custom = posts
        .iter()
        .map(|p| serde_json::from_str::<Value>(&p.body).unwrap())
        .find(|body| body["type"] == "session.custom")
        .unwrap();
    assert_eq!(custom["data"]["name"], "tests:passed");
    assert_eq!(custom["data"]["data"]["count"], 3);
    let port = posts
        .iter()
        .map(|p| serde_json::from_str::<Value>(&p.body).unwrap())
        .find(|body| body["type"] == "session.port_opened")
        .unwrap();
    assert_eq!(port["data"]["port"], 8090);
    let stopped: Value = serde_json::from_str(&posts.last().unwrap().body).unwrap();
    assert_eq!(stopped["data"]["reason"], "deleted");
    assert!(stopped["timestamp"].is_string());

    // Alice's session: her webhook hears the two types it asked for, after two failures.
    let hers = alice_client
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    alice_client.delete_session(&hers.id).await.unwrap();
    let events = receiver
        .events_until("/flaky", &hers.id, "session.stopped")
        .await;
    assert!(
        events
            .iter()
            .all(|e| e == "session.running" || e == "session.stopped"),
        "{events:?}"
    );
    for post in receiver.posts_to("/flaky") {
        assert_signed(&post, &alice_secret);
    }
    // Its log: newest first, each with every attempt.
    let mut log = Value::Null;
    for _ in 0..100 {
        log = http
            .get(format!("{api}/api/v1/webhooks/{alice_hook}/deliveries"))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["status"] == "delivered"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{log}");
    let mut codes: Vec<u64> = deliveries
        .iter()
        .flat_map(|d| d["attempts"].as_array().unwrap().iter())
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        [204, 204, 500, 500],
        "two failures, then the retries got through"
    );
    let ids: Vec<String> = receiver
        .posts_to("/flaky")
        .iter()
        .map(|p| p.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    let retried = ids
        .iter()
        .filter(|id| ids.iter().filter(|i| i == id).count() > 1);
    assert!(
        retried.count() >= 2,
        "a retry carries the same webhook-id: {ids:?}"
    );

    // Others cannot read or delete it; the admin lists it and the operator's.
    let bob = admin.create_user("bob").await.unwrap();
    let foreign = http
        .get(format!("{api}/api/v1/webhooks/{alice_hook}/deliveries"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
    let listed: Value = http
        .get(format!("{api}/api/v1/webhooks"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["config-0", alice_hook.as_str()]);
    assert!(
        listed.to_string().find("whsec_").is_none(),
        "no secret is listed"
    );
    let deleted = http
        .delete(format!("{api}/api/v1/webhooks/{alice_hook}"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    server.stop().await;
}

#[tokio::test]
async fn deliveries_pending_when_the_control_plane_stops_go_out_after_it_starts() {
    let (receiver, base) = Receiver::start().await;
    receiver.down.store(true, Ordering::SeqCst);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    let url = format!("{base}/operator");
    let configure = |config: &mut berth_server::config::Config, instance: Option<String>| {
        config.data_dir = data_dir.clone();
        config.webhooks = vec![operator(url.clone())];
        config.webhook_delivery.retry_seconds = vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        if let Some(instance) = instance {
            config.docker.instance = instance;
        }
    };
    let first = Server::start_with(|config| configure(config, None)).await;
    let session = first
        .client
        .create_session(&CreateSession::default())
        .await
        .unwrap();
    first.client.delete_session(&session.id).await.unwrap();
    receiver
        .events_until("/operator", &session.id, "session.stopped")
        .await;
    let instance = first.instance.clone();
    first.stop().await;

    // Back up, and a new control plane on the same data: what failed is delivered.
    receiver.down.store(false, Ordering::SeqCst);
    let before = receiver.posts_to("/operator").len();
    let second = Server::start_with(|config| configure(config, Some(instance))).await;
    for _ in 0..100 {
        let answered: Vec<String> = receiver.posts_to("/operator")[before..]
            .iter()
            .map(|p| serde_json::from_str::<Value>(&p.body).unwrap()["type"].to_string())
            .collect();
        if answered.iter().any(|t| t.contains("session.stopped")) {
            second.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "nothing delivered after the restart: {:?}",
        receiver.posts_to("/operator")
    );
}

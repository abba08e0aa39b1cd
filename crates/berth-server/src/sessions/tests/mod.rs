//! The session manager against the in-process fake runtime and an in-memory store, one file
//! per topic. The same behaviours run against the real engine in `tests/docker.rs`.

mod disk;
mod engine;
mod homes;
mod idle;
mod lifecycle;
mod pool;
mod queue;
mod reconcile;
mod resilience;
mod snapshots;

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    sync::atomic::Ordering,
    time::Duration,
};

use berth_proto::{CreateSession, SessionState, agent::SECRET_ENV};

use super::*;
use crate::{
    config::TemplateConfig,
    runtime::{ContainerSpec, RuntimeError, fake::FakeRuntime},
    store::{SessionRecord, SqliteStore, faulty::FaultyStore},
};

struct Harness {
    sessions: SessionManager,
    runtime: Arc<FakeRuntime>,
    store: Arc<FaultyStore<SqliteStore>>,
}

async fn harness() -> Harness {
    harness_with(0, 1000).await
}

async fn harness_with_pool(pool: u32) -> Harness {
    harness_with(pool, 1000).await
}

/// With `pool` > 0, template `pooled` keeps that many warm sessions; at most `max_sessions`
/// live sessions fit.
async fn harness_with(pool: u32, max_sessions: u32) -> Harness {
    let mut templates = BTreeMap::new();
    if pool > 0 {
        let pooled = TemplateConfig {
            image: "berth/tiny:latest".into(),
            pool: crate::config::PoolConfig {
                min_ready: pool,
                max: None,
            },
            ..TemplateConfig::default()
        };
        templates.insert("pooled".to_owned(), pooled);
    }
    harness_on(templates, max_sessions).await
}

/// The standard templates (`default`, `short`, `broken`) plus `extra`.
async fn harness_on(extra: BTreeMap<String, TemplateConfig>, max_sessions: u32) -> Harness {
    harness_tuned(extra, max_sessions, |_| {}).await
}

/// `harness_on`, with the manager's context changed by `tune` before it starts.
async fn harness_tuned(
    extra: BTreeMap<String, TemplateConfig>,
    max_sessions: u32,
    tune: impl FnOnce(&mut ManagerContext),
) -> Harness {
    let runtime = Arc::new(FakeRuntime::default());
    let store = Arc::new(FaultyStore::new(SqliteStore::in_memory().await.unwrap()));
    let mut templates = BTreeMap::from([
        (
            "default".to_owned(),
            TemplateConfig {
                image: "berth/tiny:latest".into(),
                ..TemplateConfig::default()
            },
        ),
        (
            "short".to_owned(),
            TemplateConfig {
                image: "berth/tiny:latest".into(),
                ttl_seconds: 1,
                max_ttl_seconds: 60,
                ..TemplateConfig::default()
            },
        ),
        (
            "broken".to_owned(),
            TemplateConfig {
                image: "berth/missing:latest".into(),
                ..TemplateConfig::default()
            },
        ),
    ]);
    templates.extend(extra);
    let mut ctx = ManagerContext {
        store: store.clone(),
        runtime: runtime.clone(),
        agent: AgentClient::default(),
        templates: Arc::new(templates),
        sessions_per_user: 3,
        max_hibernated: 2,
        hibernated_ttl: Duration::from_secs(3600),
        compact_after_layers: 3,
        snapshot_repository: snapshot_repository(None),
        keep_local_snapshots: true,
        agent_ready_timeout: Duration::from_secs(5),
        max_file_bytes: 1 << 20,
        create_slots: Arc::new(tokio::sync::Semaphore::new(4)),
        capacity: crate::config::CapacityConfig {
            max_sessions,
            ..Default::default()
        },
        tickets: QueueTickets::default(),
        create_timeout: Duration::from_secs(10),
        engine: Default::default(),
        activity: Default::default(),
        wake_outlook: Default::default(),
        webhooks: Default::default(),
        journals: timeline::Collector::new(
            AgentClient::default(),
            store.clone(),
            Default::default(),
        ),
    };
    tune(&mut ctx);
    let sessions = SessionManager::spawn(ctx);
    Harness {
        sessions,
        runtime,
        store,
    }
}

fn user(name: &str) -> Principal {
    Principal {
        name: name.to_owned(),
        admin: false,
        role: berth_proto::user::Role::User,
        scopes: None,
    }
}

/// A session `owner` created from `template`, running.
async fn running(h: &Harness, owner: &str, template: &str) -> Session {
    h.sessions
        .create(user(owner), request(template))
        .await
        .unwrap()
}

fn request(template: &str) -> CreateSession {
    CreateSession {
        template: template.to_owned(),
        ..CreateSession::default()
    }
}

async fn pool_ready(h: &Harness) -> usize {
    h.sessions
        .pool_status()
        .await
        .unwrap()
        .iter()
        .map(|p| p.ready)
        .sum()
}

async fn pool_of(h: &Harness, template: &str) -> berth_proto::pool::PoolStatus {
    h.sessions
        .pool_status()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.template == template)
        .unwrap()
}

async fn wait_for_ready_pool(h: &Harness, want: usize) {
    wait_until(&format!("{want} ready pooled sessions"), || async {
        pool_ready(h).await >= want
    })
    .await;
}

/// Polls `done` every 10 ms for up to 10 s (generous: a loaded 2-core CI is slow).
async fn wait_until<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..1000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("waited 10 s for {what}");
}

async fn state_of(h: &Harness, id: &str) -> SessionState {
    h.store.get_session(id).await.unwrap().unwrap().state
}

/// Asks the session's agent (where the store says it is) whether it answers.
async fn agent_answers(h: &Harness, owner: &str, id: &str) -> bool {
    let Ok((addr, secret)) = h.sessions.agent_endpoint(&user(owner), id).await else {
        return false;
    };
    AgentClient::default()
        .wait_ready(addr, &secret, Duration::from_millis(200))
        .await
        .is_ok()
}

/// Sends one request to the session's agent.
async fn agent_request(
    h: &Harness,
    owner: &str,
    id: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use http_body_util::BodyExt;
    let (addr, secret) = h.sessions.agent_endpoint(&user(owner), id).await.unwrap();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    let response = AgentClient::default()
        .send(addr, &secret, request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn timeline_kinds(h: &Harness, id: &str) -> Vec<String> {
    h.store
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

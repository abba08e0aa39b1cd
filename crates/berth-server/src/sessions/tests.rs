//! The session manager against the in-process fake runtime and an in-memory store. The same
//! behaviours run against the real engine in `tests/docker.rs`.

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
    store::{SessionRecord, SqliteStore},
};

struct Harness {
    sessions: SessionManager,
    runtime: Arc<FakeRuntime>,
    store: Arc<SqliteStore>,
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
    let runtime = Arc::new(FakeRuntime::default());
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let templates = BTreeMap::from([
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
    let mut templates = templates;
    if pool > 0 {
        let pool = crate::config::PoolConfig {
            min_ready: pool,
            max: None,
        };
        let pooled = TemplateConfig {
            image: "berth/tiny:latest".into(),
            pool,
            ..TemplateConfig::default()
        };
        templates.insert("pooled".to_owned(), pooled);
    }
    let sessions = SessionManager::spawn(ManagerContext {
        store: store.clone(),
        runtime: runtime.clone(),
        agent: AgentClient::default(),
        templates: Arc::new(templates),
        sessions_per_user: 3,
        agent_ready_timeout: Duration::from_secs(5),
        max_file_bytes: 1 << 20,
        create_slots: Arc::new(tokio::sync::Semaphore::new(4)),
        capacity: crate::config::CapacityConfig {
            max_sessions,
            ..Default::default()
        },
        tickets: QueueTickets::default(),
    });
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
    }
}

fn request(template: &str) -> CreateSession {
    CreateSession {
        template: template.to_owned(),
        ..CreateSession::default()
    }
}

#[tokio::test]
async fn create_runs_a_container_and_delete_removes_it() {
    let h = harness().await;
    let mut req = request("default");
    req.labels.insert("course".into(), "docker-101".into());
    req.env.insert("GREETING".into(), "hi".into());
    let session = h.sessions.create(user("alice"), req).await.unwrap();
    assert_eq!(session.state, SessionState::Running);
    assert_eq!(session.owner, "alice");
    assert_eq!(session.labels["course"], "docker-101");

    let spec: ContainerSpec = h.runtime.spec_of_session(&session.id).unwrap();
    assert_eq!(spec.env["GREETING"], "hi");
    assert_eq!(spec.env["BERTH_SESSION_ID"], session.id);
    assert!(spec.env[SECRET_ENV].len() >= 32);
    assert_eq!(spec.memory_bytes, 512 * 1024 * 1024);

    h.sessions
        .delete(user("alice"), session.id.clone())
        .await
        .unwrap();
    assert_eq!(h.runtime.container_count(), 0);
    let stopped = h.sessions.get(&user("alice"), &session.id).await.unwrap();
    assert_eq!(stopped.state, SessionState::Stopped);
    assert_eq!(stopped.stop_reason.as_deref(), Some("deleted"));
    // Deleting again is fine and changes nothing.
    h.sessions
        .delete(user("alice"), session.id.clone())
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_requests_leave_nothing_behind() {
    let h = harness().await;
    let err = h
        .sessions
        .create(user("alice"), request("nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::UnknownTemplate { .. }), "{err}");
    let too_long = CreateSession {
        ttl_seconds: Some(61),
        ..request("short")
    };
    assert!(matches!(
        h.sessions.create(user("alice"), too_long).await,
        Err(SessionError::InvalidTtl(_))
    ));
    let zero = CreateSession {
        ttl_seconds: Some(0),
        ..request("short")
    };
    assert!(matches!(
        h.sessions.create(user("alice"), zero).await,
        Err(SessionError::InvalidTtl(_))
    ));
    let mut bad_env = request("default");
    bad_env
        .env
        .insert("BERTH_AGENT_SECRET".into(), "mine".into());
    assert!(matches!(
        h.sessions.create(user("alice"), bad_env).await,
        Err(SessionError::InvalidRequest(_))
    ));

    assert_eq!(h.runtime.container_count(), 0);
    assert!(
        h.sessions
            .list(&Principal::admin(), vec![], true)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_missing_image_fails_the_session_and_keeps_no_container() {
    let h = harness().await;
    let err = h
        .sessions
        .create(user("alice"), request("broken"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::Runtime(RuntimeError::ImageMissing(_))),
        "{err}"
    );
    assert_eq!(h.runtime.container_count(), 0);
    let all = h.sessions.list(&user("alice"), vec![], true).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, SessionState::Failed);
    assert!(
        all[0]
            .stop_reason
            .as_deref()
            .unwrap()
            .starts_with("create_failed")
    );
    // A failed session does not count against the quota.
    assert!(
        h.sessions
            .list(&user("alice"), vec![], false)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_engine_being_down_is_reported_as_such() {
    let h = harness().await;
    h.runtime.down.store(true, Ordering::SeqCst);
    let err = h
        .sessions
        .create(user("alice"), request("default"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::Runtime(RuntimeError::Unavailable(_))),
        "{err}"
    );
}

#[tokio::test]
async fn the_quota_counts_live_sessions_per_user() {
    let h = harness().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            h.sessions
                .create(user("alice"), request("default"))
                .await
                .unwrap()
                .id,
        );
    }
    let err = h
        .sessions
        .create(user("alice"), request("default"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::QuotaExceeded { limit: 3, .. }),
        "{err}"
    );
    assert_eq!(h.runtime.container_count(), 3);
    // Another user is not affected, and freeing one slot lets alice create again.
    h.sessions
        .create(user("bob"), request("default"))
        .await
        .unwrap();
    h.sessions
        .delete(user("alice"), ids.remove(0))
        .await
        .unwrap();
    h.sessions
        .create(user("alice"), request("default"))
        .await
        .unwrap();
}

#[tokio::test]
async fn other_users_sessions_do_not_exist_for_them() {
    let h = harness().await;
    let id = h
        .sessions
        .create(user("alice"), request("default"))
        .await
        .unwrap()
        .id;
    assert!(matches!(
        h.sessions.get(&user("bob"), &id).await,
        Err(SessionError::NotFound(_))
    ));
    assert!(matches!(
        h.sessions.delete(user("bob"), id.clone()).await,
        Err(SessionError::NotFound(_))
    ));
    assert!(matches!(
        h.sessions.extend(user("bob"), id.clone(), 60).await,
        Err(SessionError::NotFound(_))
    ));
    assert!(
        h.sessions
            .list(&user("bob"), vec![], true)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.sessions
            .list(&Principal::admin(), vec![], false)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.sessions.get(&user("alice"), &id).await.unwrap().state,
        SessionState::Running
    );
}

#[tokio::test]
async fn delete_during_create_wins_and_leaves_nothing() {
    let h = harness().await;
    *h.runtime.start_delay.lock().unwrap() = Duration::from_millis(300);
    let creating = {
        let sessions = h.sessions.clone();
        tokio::spawn(async move { sessions.create(user("alice"), request("default")).await })
    };
    let id = loop {
        let live = h
            .sessions
            .list(&user("alice"), vec![], false)
            .await
            .unwrap();
        if let Some(s) = live.first() {
            assert_eq!(s.state, SessionState::Creating);
            break s.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (first, second) = tokio::join!(
        h.sessions.delete(user("alice"), id.clone()),
        h.sessions.delete(user("alice"), id.clone())
    );
    first.unwrap();
    second.unwrap();
    let created = creating.await.unwrap();
    assert!(
        matches!(created, Err(SessionError::DeletedDuringCreate(_))),
        "{created:?}"
    );
    assert_eq!(h.runtime.container_count(), 0);
    assert_eq!(
        h.sessions.get(&user("alice"), &id).await.unwrap().state,
        SessionState::Stopped
    );
}

#[tokio::test]
async fn sessions_past_their_ttl_are_stopped_by_the_reaper() {
    let h = harness().await;
    let short = h
        .sessions
        .create(user("alice"), request("short"))
        .await
        .unwrap();
    let long = h
        .sessions
        .create(user("alice"), request("default"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sessions.reap().await.unwrap();
    for _ in 0..100 {
        if h.sessions
            .get(&user("alice"), &short.id)
            .await
            .unwrap()
            .state
            == SessionState::Stopped
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reaped = h.sessions.get(&user("alice"), &short.id).await.unwrap();
    assert_eq!(reaped.state, SessionState::Stopped);
    assert_eq!(reaped.stop_reason.as_deref(), Some("ttl_expired"));
    assert_eq!(
        h.sessions
            .get(&user("alice"), &long.id)
            .await
            .unwrap()
            .state,
        SessionState::Running
    );
    assert_eq!(h.runtime.container_count(), 1);
}

#[tokio::test]
async fn extend_moves_the_expiry_up_to_the_template_maximum() {
    let h = harness().await;
    let session = h
        .sessions
        .create(user("alice"), request("short"))
        .await
        .unwrap();
    let extended = h
        .sessions
        .extend(user("alice"), session.id.clone(), 30)
        .await
        .unwrap();
    assert!(extended.expires_at > session.expires_at);
    let err = h
        .sessions
        .extend(user("alice"), session.id.clone(), 61)
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidTtl(_)), "{err}");
    h.sessions
        .delete(user("alice"), session.id.clone())
        .await
        .unwrap();
    let err = h
        .sessions
        .extend(user("alice"), session.id, 30)
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::NotRunning { .. }), "{err}");
}

#[tokio::test]
async fn reconcile_removes_orphans_and_fails_sessions_whose_container_vanished() {
    let h = harness().await;
    let kept = h
        .sessions
        .create(user("alice"), request("default"))
        .await
        .unwrap();
    let vanishing = h
        .sessions
        .create(user("alice"), request("default"))
        .await
        .unwrap();
    h.runtime.vanish(&vanishing.id);
    let orphan = ContainerSpec {
        session_id: "snotinthestore".into(),
        owner: "ghost".into(),
        template: "default".into(),
        image: "berth/tiny:latest".into(),
        memory_bytes: 1 << 27,
        nano_cpus: 1_000_000_000,
        pids_limit: 64,
        env: BTreeMap::new(),
    };
    h.runtime.create(&orphan).await.unwrap();
    // A row left `creating` by a control plane that died before making its container.
    let now = chrono::Utc::now();
    let stale = SessionRecord {
        id: "sstalecreate1".into(),
        owner: "alice".into(),
        template: "default".into(),
        state: SessionState::Creating,
        labels: BTreeMap::new(),
        created_at: now,
        expires_at: now,
        last_activity: now,
        container_id: None,
        agent_addr: None,
        stop_reason: None,
        agent_secret: "x".into(),
    };
    h.store.insert_session(&stale).await.unwrap();

    let report = h.sessions.reconcile().await.unwrap();
    assert_eq!(
        report,
        ReconcileReport {
            orphans_removed: 1,
            sessions_failed: 2
        }
    );
    assert_eq!(h.runtime.container_count(), 1);
    let vanished = h.sessions.get(&user("alice"), &vanishing.id).await.unwrap();
    assert_eq!(
        (vanished.state, vanished.stop_reason.as_deref()),
        (SessionState::Failed, Some("container_vanished"))
    );
    assert_eq!(
        h.sessions
            .get(&user("alice"), &stale.id)
            .await
            .unwrap()
            .state,
        SessionState::Failed
    );
    assert_eq!(
        h.sessions
            .get(&user("alice"), &kept.id)
            .await
            .unwrap()
            .state,
        SessionState::Running
    );
    // A second pass finds nothing left to do.
    assert_eq!(
        h.sessions.reconcile().await.unwrap(),
        ReconcileReport::default()
    );
}

#[tokio::test]
async fn reconcile_leaves_creates_in_flight_alone() {
    let h = harness().await;
    *h.runtime.start_delay.lock().unwrap() = Duration::from_millis(300);
    let creating = {
        let sessions = h.sessions.clone();
        tokio::spawn(async move { sessions.create(user("alice"), request("default")).await })
    };
    while h.runtime.container_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        h.sessions.reconcile().await.unwrap(),
        ReconcileReport::default()
    );
    let session = creating.await.unwrap().unwrap();
    assert_eq!(session.state, SessionState::Running);
    assert_eq!(h.runtime.container_count(), 1);
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

async fn wait_for_ready_pool(h: &Harness, want: usize) {
    for _ in 0..500 {
        if pool_ready(h).await >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the pool never reached {want} ready sessions: {:?}",
        h.sessions.pool_status().await
    );
}

#[tokio::test]
async fn the_pool_fills_hands_out_ready_sessions_and_refills() {
    let h = harness_with_pool(2).await;
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 2).await;
    assert_eq!(h.runtime.container_count(), 2);
    assert!(
        h.sessions
            .list(&Principal::admin(), vec![], true)
            .await
            .unwrap()
            .is_empty(),
        "pooled sessions are nobody's"
    );

    let pooled: HashSet<String> = h
        .runtime
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.session_id)
        .collect();
    let mut req = request("pooled");
    req.labels.insert("k".into(), "v".into());
    let claimed = h.sessions.create(user("alice"), req).await.unwrap();
    assert!(
        pooled.contains(&claimed.id),
        "the claim handed out a pooled session"
    );
    assert_eq!(
        (claimed.state, claimed.owner.as_str()),
        (SessionState::Running, "alice")
    );
    assert_eq!(claimed.labels["k"], "v");
    wait_for_ready_pool(&h, 2).await;
    assert_eq!(
        h.runtime.container_count(),
        3,
        "and the pool refilled behind it"
    );
    let status = h.sessions.pool_status().await.unwrap();
    assert_eq!(
        status
            .iter()
            .find(|p| p.template == "pooled")
            .unwrap()
            .claimed,
        1
    );

    // Released means destroyed, never recycled into the pool.
    h.sessions
        .delete(user("alice"), claimed.id.clone())
        .await
        .unwrap();
    assert_eq!(h.runtime.container_count(), 2);
    assert!(h.runtime.spec_of_session(&claimed.id).is_none());
}

#[tokio::test]
async fn a_claim_with_env_reaches_the_agent_before_it_answers() {
    let h = harness_with_pool(1).await;
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 1).await;
    let mut req = request("pooled");
    req.env.insert("COLOR".into(), "blue".into());
    let claimed = h.sessions.create(user("alice"), req).await.unwrap();
    assert_eq!(claimed.state, SessionState::Running);
    let (addr, secret) = h
        .sessions
        .agent_endpoint(&user("alice"), &claimed.id)
        .await
        .unwrap();
    let exec = berth_proto::process::ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), "echo $COLOR".into()],
        ..Default::default()
    };
    let request = hyper::Request::post("/exec")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&exec).unwrap()))
        .unwrap();
    let response = AgentClient::default()
        .send(addr, &secret, request)
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let result: berth_proto::process::ExecResult = serde_json::from_slice(&body).unwrap();
    assert_eq!(result.stdout, "blue\n");
}

#[tokio::test]
async fn a_hundred_concurrent_claims_never_share_a_container() {
    let h = harness_with_pool(20).await;
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 20).await;
    let claims = (0..100).map(|i| {
        let sessions = h.sessions.clone();
        // 34 users, at most 3 sessions each: the quota holds and every request is served.
        tokio::spawn(async move {
            sessions
                .create(user(&format!("u{}", i % 34)), request("pooled"))
                .await
        })
    });
    let mut ids = HashSet::new();
    for claim in futures_util::future::join_all(claims).await {
        let session = claim.unwrap().unwrap();
        assert_eq!(session.state, SessionState::Running);
        assert!(ids.insert(session.id), "a session was handed out twice");
    }
    assert_eq!(ids.len(), 100);
    // Each session is its own container: the fake runtime keys containers by session.
    for id in &ids {
        assert!(h.runtime.spec_of_session(id).is_some());
    }
    wait_for_ready_pool(&h, 20).await;
    assert_eq!(
        h.runtime.container_count(),
        120,
        "100 claimed + 20 ready again"
    );
}

#[tokio::test]
async fn a_burst_of_claims_by_one_user_stops_at_the_quota() {
    // Claims of a burst are committed together; the ones not yet committed count too.
    let h = harness_with_pool(10).await;
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 10).await;
    let claims = (0..10).map(|_| {
        let sessions = h.sessions.clone();
        tokio::spawn(async move { sessions.create(user("eve"), request("pooled")).await })
    });
    let results: Vec<_> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let granted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(granted, 3, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, SessionError::QuotaExceeded { .. }))
    );
}

/// The state of a queued create, waiting up to a second for it to leave `state`.
async fn after(
    status: &mut tokio::sync::watch::Receiver<QueueStatus>,
    state: QueueState,
) -> QueueStatus {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        status.wait_for(|s| s.state != state),
    )
    .await;
    status.borrow().clone()
}

fn queued(created: Created) -> tokio::sync::watch::Receiver<QueueStatus> {
    match created {
        Created::Queued(status) => status,
        Created::Running(session) => panic!("expected to queue, got {session:?}"),
    }
}

#[tokio::test]
async fn at_capacity_creates_queue_and_are_served_round_robin() {
    use QueueState::{Admitted, Queued};
    let h = harness_with(0, 1).await;
    let blocker = h
        .sessions
        .create(Principal::admin(), request("default"))
        .await
        .unwrap();

    let mut a1 = queued(
        h.sessions
            .create_or_queue(user("a"), request("default"))
            .await
            .unwrap(),
    );
    let a2 = queued(
        h.sessions
            .create_or_queue(user("a"), request("default"))
            .await
            .unwrap(),
    );
    let mut b1 = queued(
        h.sessions
            .create_or_queue(user("b"), request("default"))
            .await
            .unwrap(),
    );
    assert_eq!(a1.borrow().position, Some(1));
    assert_eq!(
        b1.borrow().position,
        Some(2),
        "b's first request goes before a's second"
    );
    assert_eq!(a2.borrow().position, Some(3));
    assert!(b1.borrow().estimated_wait_seconds.is_some());
    assert_eq!(
        h.runtime.container_count(),
        1,
        "nothing is created past capacity"
    );

    // A fourth request over a's quota (3, queued ones included) is refused outright.
    h.sessions
        .create_or_queue(user("a"), request("default"))
        .await
        .unwrap();
    let over = h
        .sessions
        .create_or_queue(user("a"), request("default"))
        .await
        .unwrap_err();
    assert!(matches!(over, SessionError::QuotaExceeded { .. }), "{over}");

    h.sessions
        .delete(Principal::admin(), blocker.id)
        .await
        .unwrap();
    let first = after(&mut a1, Queued).await;
    assert_eq!(first.state, Admitted);
    assert_eq!(b1.borrow().position, Some(1));
    h.sessions
        .delete(user("a"), first.session.unwrap().id)
        .await
        .unwrap();
    assert_eq!(
        after(&mut b1, Queued).await.state,
        Admitted,
        "b is served before a's second"
    );
    assert_eq!(a2.borrow().state, Queued);
    assert_eq!(a2.borrow().position, Some(1));
}

#[tokio::test]
async fn a_queued_create_can_be_cancelled_and_checked_by_ticket() {
    let h = harness_with(0, 1).await;
    h.sessions
        .create(Principal::admin(), request("default"))
        .await
        .unwrap();
    let status = queued(
        h.sessions
            .create_or_queue(user("a"), request("default"))
            .await
            .unwrap(),
    );
    let ticket = status.borrow().ticket.clone();
    assert_eq!(
        h.sessions
            .queue_status(&user("a"), &ticket)
            .unwrap()
            .position,
        Some(1)
    );
    assert!(matches!(
        h.sessions.queue_status(&user("b"), &ticket),
        Err(SessionError::NotFound(_))
    ));
    assert!(
        h.sessions
            .cancel_queued(user("b"), ticket.clone())
            .await
            .is_err(),
        "only the owner cancels"
    );
    h.sessions
        .cancel_queued(user("a"), ticket.clone())
        .await
        .unwrap();
    let cancelled = h.sessions.queue_status(&user("a"), &ticket).unwrap();
    assert_eq!(cancelled.state, QueueState::Failed);
    assert!(h.sessions.cancel_queued(user("a"), ticket).await.is_err());
}

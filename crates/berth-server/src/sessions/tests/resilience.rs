//! The session manager keeps serving whatever one request or one task does: absurd input,
//! a command that panics, a store that fails, a claim whose seed fails.

use super::*;
use berth_proto::ErrorCode;

#[tokio::test]
async fn an_extend_past_what_a_date_holds_is_refused_and_management_goes_on() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    for ttl in [10_000_000_000_000, u64::MAX] {
        let err = h
            .sessions
            .extend(user("alice"), session.id.clone(), ttl)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidTtl, "{ttl}: {err}");
    }
    // Everything else still works: create, delete, the reaper.
    let other = running(&h, "alice", "default").await;
    h.sessions.delete(user("alice"), other.id).await.unwrap();
    h.sessions.reap().await.unwrap();
    h.sessions.delete(user("alice"), session.id).await.unwrap();
}

#[tokio::test]
async fn a_command_that_panics_fails_its_request_only_and_leaves_nothing_behind() {
    let h = harness().await;
    *h.store.panic_on_label.lock().unwrap() = Some(("test.fault".into(), "panic".into()));
    let mut doomed = request("default");
    doomed.labels.insert("test.fault".into(), "panic".into());
    // The row is inserted; writing it `running` panics inside the actor.
    let err = h.sessions.create(user("alice"), doomed).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal, "{err}");
    assert!(!matches!(err, SessionError::ManagerGone), "{err}");

    let fine = running(&h, "bob", "default").await;
    assert!(agent_answers(&h, "bob", &fine.id).await);
    h.sessions.delete(user("bob"), fine.id).await.unwrap();

    // The reconcile the panic asked for: the half-made session fails and its container goes.
    *h.store.panic_on_label.lock().unwrap() = None;
    wait_until("the half-made session to be cleaned up", || async {
        let alice = h
            .store
            .list_sessions(&SessionFilter {
                owner: Some("alice".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        alice.iter().all(|s| s.state == SessionState::Failed) && h.runtime.container_count() == 0
    })
    .await;
}

#[tokio::test]
async fn a_store_failure_while_warming_does_not_leak_the_warming_count() {
    let h = harness_with_pool(1).await;
    *h.runtime.start_delay.lock().unwrap() = Duration::from_millis(300);
    wait_until("a warm-up to start", || async {
        pool_of(&h, "pooled").await.warming == 1
    })
    .await;
    h.store.unreachable.store(true, Ordering::SeqCst);
    // The warm-up finishes while the store cannot be read.
    tokio::time::sleep(Duration::from_millis(600)).await;
    h.store.unreachable.store(false, Ordering::SeqCst);
    *h.runtime.start_delay.lock().unwrap() = Duration::ZERO;
    // What the periodic reaper sends; any command refills the pools after it.
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 1).await;
    let status = &pool_of(&h, "pooled").await;
    assert_eq!((status.ready, status.warming), (1, 0), "{status:?}");
}

#[tokio::test]
async fn a_claim_whose_seed_fails_removes_its_container_at_once() {
    let seedless = TemplateConfig {
        image: "berth/tiny:latest".into(),
        workspace_seed: Some("/nonexistent/berth-seed".into()),
        pool: crate::config::PoolConfig {
            min_ready: 1,
            max: Some(1),
        },
        ..TemplateConfig::default()
    };
    let h = harness_on(BTreeMap::from([("seeded".to_owned(), seedless)]), 1000).await;
    wait_until("a ready pooled session", || async {
        h.sessions
            .pool_status()
            .await
            .unwrap()
            .iter()
            .any(|p| p.ready == 1)
    })
    .await;
    let pooled = h
        .store
        .list_sessions(&SessionFilter::live())
        .await
        .unwrap()
        .remove(0);
    let err = h
        .sessions
        .create(user("alice"), request("seeded"))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Seed { .. }), "{err}");
    // Not left for the next reconcile (30 s away in production).
    wait_until("the claimed container to be removed", || async {
        h.runtime.spec_of_session(&pooled.id).is_none()
    })
    .await;
    let record = h.store.get_session(&pooled.id).await.unwrap().unwrap();
    assert_eq!(record.state, SessionState::Failed);
    assert!(record.agent_secret.is_empty());
}

#[tokio::test]
async fn a_queued_create_is_served_by_a_pooled_session_that_becomes_ready() {
    // Room for two: alice's claim and the warm-up that replaces it fill the host.
    let h = harness_with(1, 2).await;
    wait_for_ready_pool(&h, 1).await;
    *h.runtime.start_delay.lock().unwrap() = Duration::from_millis(500);
    running(&h, "alice", "pooled").await;
    let mut queued = match h
        .sessions
        .create_or_queue(user("carol"), request("pooled"))
        .await
        .unwrap()
    {
        Created::Queued(status) => status,
        Created::Running(_) => panic!("the host is full; carol should queue"),
    };
    // Nobody leaves: only the warm-up finishing can serve carol, from the pool.
    let admitted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let status = queued.borrow_and_update().clone();
            if status.state != QueueState::Queued {
                return status;
            }
            queued.changed().await.unwrap();
        }
    })
    .await
    .expect("carol was admitted from the pool");
    let session = admitted.session.expect("admitted with a session");
    assert!(agent_answers(&h, "carol", &session.id).await);
    assert_eq!(pool_of(&h, "pooled").await.claimed, 2);
}

#[tokio::test]
async fn a_create_task_that_panics_still_reports_and_leaves_no_row_creating() {
    let panicking = TemplateConfig {
        image: "berth/panic:latest".into(),
        ..TemplateConfig::default()
    };
    let h = harness_on(BTreeMap::from([("panics".to_owned(), panicking)]), 1000).await;
    let err = h
        .sessions
        .create(user("alice"), request("panics"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal, "{err}");
    let sessions = h
        .store
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].state, SessionState::Failed);
    // What the task had made is removed by the reconcile its panic asked for.
    wait_until("the half-made container to be removed", || async {
        h.runtime.container_count() == 0
    })
    .await;
    // The engine keeps serving everyone else.
    running(&h, "alice", "default").await;
}

#[tokio::test]
async fn a_create_past_its_deadline_fails_and_removes_its_container() {
    let h = harness_tuned(BTreeMap::new(), 1000, |ctx| {
        ctx.create_timeout = Duration::from_millis(300);
    })
    .await;
    *h.runtime.start_delay.lock().unwrap() = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let err = h
        .sessions
        .create(user("alice"), request("default"))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::CreateTimedOut { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let sessions = h
        .store
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(sessions[0].state, SessionState::Failed);
    wait_until("the container to be removed", || async {
        h.runtime.container_count() == 0
    })
    .await;
}

//! Reconcile: orphans, vanished containers, creates in flight.

use super::*;

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
        docker_api: false,
        node_labels: BTreeMap::new(),
        home: None,
        disk_mb: None,
        oci_runtime: None,
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
        snapshot: None,
        hibernated_at: None,
        keepalive_until: None,
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

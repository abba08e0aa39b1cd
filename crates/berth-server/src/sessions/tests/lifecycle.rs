//! Create, delete, quota, ownership, expiry, extend.

use super::*;

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

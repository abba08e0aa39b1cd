//! The engine going away and coming back, and containers that change behind Berth's back.

use super::*;
use berth_proto::ErrorCode;

async fn engine_lost(h: &Harness) {
    wait_until("the engine to be seen lost", || async {
        h.sessions.engine().check().is_err()
    })
    .await;
}

async fn engine_back(h: &Harness) {
    wait_until("the engine to be seen back", || async {
        h.sessions.engine().check().is_ok()
    })
    .await;
}

#[tokio::test]
async fn while_the_engine_is_down_creates_and_work_answer_engine_unavailable_at_once() {
    let h = harness_with_pool(2).await;
    wait_for_ready_pool(&h, 2).await;
    let running = running(&h, "alice", "default").await;

    h.runtime.stop_engine();
    engine_lost(&h).await;
    for template in ["pooled", "default"] {
        let started = std::time::Instant::now();
        let err = h
            .sessions
            .create(user("bob"), request(template))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::EngineUnavailable,
            "{template}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{template}: answered at once"
        );
    }
    let err = h
        .sessions
        .agent_endpoint(&user("alice"), &running.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::EngineUnavailable, "{err}");
    assert_eq!(
        pool_of(&h, "pooled").await.claimed,
        0,
        "nothing was claimed from the pool"
    );
}

#[tokio::test]
async fn an_event_stream_that_ends_with_the_engine_up_is_followed_anew_without_an_outage() {
    let h = harness().await;
    let mut generations = h.sessions.engine().generations();
    let first = *generations.borrow_and_update();
    h.runtime.end_event_streams();
    let followed_anew = async {
        while *generations.borrow_and_update() == first {
            assert!(
                h.sessions.engine().check().is_ok(),
                "the engine was reported lost while it answered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), followed_anew)
        .await
        .expect("the watcher followed the engine's events anew");
    running(&h, "alice", "default").await;
}

#[tokio::test]
async fn after_an_engine_restart_sessions_run_again_with_their_files_and_a_restarted_event() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    let (status, _) = agent_request(
        &h,
        "alice",
        &session.id,
        "PUT",
        "/files/content?path=notes.txt",
        "kept",
    )
    .await;
    assert_eq!(status, 200);
    let before = h
        .store
        .get_session(&session.id)
        .await
        .unwrap()
        .unwrap()
        .agent_addr;

    h.runtime.stop_engine();
    engine_lost(&h).await;
    h.runtime.start_engine();
    engine_back(&h).await;
    wait_until("the session to answer again", || {
        agent_answers(&h, "alice", &session.id)
    })
    .await;

    let record = h.store.get_session(&session.id).await.unwrap().unwrap();
    assert_eq!(record.state, SessionState::Running);
    assert_eq!(record.stop_reason, None);
    assert_ne!(
        record.agent_addr, before,
        "the address was read again: the fake gives a new one"
    );
    let (status, body) = agent_request(
        &h,
        "alice",
        &session.id,
        "GET",
        "/files/content?path=notes.txt",
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "kept"));
    wait_until("a restarted event", || async {
        timeline_kinds(&h, &session.id).await == ["restarted"]
    })
    .await;
}

#[tokio::test]
async fn after_an_engine_restart_the_pool_hands_out_only_working_sessions() {
    let h = harness_with_pool(2).await;
    wait_for_ready_pool(&h, 2).await;
    h.runtime.stop_engine();
    engine_lost(&h).await;
    h.runtime.start_engine();
    engine_back(&h).await;
    for owner in ["alice", "bob", "carol"] {
        let session = h
            .sessions
            .create(user(owner), request("pooled"))
            .await
            .unwrap();
        assert!(
            agent_answers(&h, owner, &session.id).await,
            "{owner} got a session whose agent does not answer"
        );
    }
    // The stopped pooled containers were removed, not left behind: three claimed sessions and
    // at most the two the pool keeps.
    wait_until("the stale pooled containers to be removed", || async {
        h.runtime.container_count() <= 5
    })
    .await;
}

#[tokio::test]
async fn a_container_removed_while_the_engine_was_down_ends_failed() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    h.runtime.stop_engine();
    engine_lost(&h).await;
    h.runtime.vanish(&session.id);
    h.runtime.start_engine();
    wait_until("the session to fail", || async {
        state_of(&h, &session.id).await == SessionState::Failed
    })
    .await;
    let record = h.store.get_session(&session.id).await.unwrap().unwrap();
    assert_eq!(record.stop_reason.as_deref(), Some("container_vanished"));
    assert!(
        record.agent_secret.is_empty(),
        "an ended session's secret is cleared"
    );
}

#[tokio::test]
async fn a_container_killed_behind_berths_back_restarts_once_then_fails_if_it_dies_again() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    h.runtime.kill(&session.id);
    wait_until("a restarted event", || async {
        timeline_kinds(&h, &session.id).await == ["restarted"]
    })
    .await;
    assert!(agent_answers(&h, "alice", &session.id).await);

    // Dying again at once, under the same engine: a crash loop, not something to restart.
    h.runtime.kill(&session.id);
    wait_until("the session to fail", || async {
        state_of(&h, &session.id).await == SessionState::Failed
    })
    .await;
    let record = h.store.get_session(&session.id).await.unwrap().unwrap();
    assert_eq!(record.stop_reason.as_deref(), Some("container_exited"));
    assert_eq!(
        timeline_kinds(&h, &session.id).await,
        ["restarted", "failed"]
    );
    wait_until("its container to be removed", || async {
        h.runtime.spec_of_session(&session.id).is_none()
    })
    .await;
}

#[tokio::test]
async fn a_template_may_fail_its_sessions_instead_of_restarting_them() {
    let no_restart = TemplateConfig {
        image: "berth/tiny:latest".into(),
        restart_after_engine_restart: false,
        ..TemplateConfig::default()
    };
    let h = harness_on(BTreeMap::from([("fragile".to_owned(), no_restart)]), 1000).await;
    let session = running(&h, "alice", "fragile").await;
    h.runtime.stop_engine();
    engine_lost(&h).await;
    h.runtime.start_engine();
    wait_until("the session to fail", || async {
        state_of(&h, &session.id).await == SessionState::Failed
    })
    .await;
    assert_eq!(
        h.store
            .get_session(&session.id)
            .await
            .unwrap()
            .unwrap()
            .stop_reason
            .as_deref(),
        Some("container_exited")
    );
}

#[tokio::test]
async fn a_container_killed_for_memory_fails_with_oom_killed_or_restarts_as_its_template_says() {
    let no_restart = TemplateConfig {
        image: "berth/tiny:latest".into(),
        restart_after_engine_restart: false,
        ..TemplateConfig::default()
    };
    let h = harness_on(BTreeMap::from([("fragile".to_owned(), no_restart)]), 1000).await;
    let fragile = running(&h, "alice", "fragile").await;
    // Events are followed: a kill before would reach only the reconcile that the connection
    // starts, which sees an exited container and no word of memory.
    wait_until("the engine's events to be followed", || async {
        h.runtime.followed()
    })
    .await;
    h.runtime.kill_out_of_memory(&fragile.id);
    wait_until("the session to fail", || async {
        state_of(&h, &fragile.id).await == SessionState::Failed
    })
    .await;
    let record = h.store.get_session(&fragile.id).await.unwrap().unwrap();
    assert_eq!(record.stop_reason.as_deref(), Some("oom_killed"));

    let sturdy = running(&h, "bob", "default").await;
    h.runtime.kill_out_of_memory(&sturdy.id);
    wait_until("a restarted event", || async {
        timeline_kinds(&h, &sturdy.id).await == ["restarted"]
    })
    .await;
    assert!(agent_answers(&h, "bob", &sturdy.id).await);
    assert_eq!(state_of(&h, &sturdy.id).await, SessionState::Running);

    // A plain exit long after is not blamed on memory.
    h.runtime.kill(&fragile.id);
    let plain = running(&h, "carol", "fragile").await;
    h.runtime.kill(&plain.id);
    wait_until("the plain exit to fail", || async {
        state_of(&h, &plain.id).await == SessionState::Failed
    })
    .await;
    let record = h.store.get_session(&plain.id).await.unwrap().unwrap();
    assert_eq!(record.stop_reason.as_deref(), Some("container_exited"));
}

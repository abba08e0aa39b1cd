//! Hibernation and restore: files kept, any access wakes, one restore for many callers,
//! crashes at each step repaired by reconcile, images never left behind.

use super::*;
use berth_proto::ErrorCode;

async fn write(h: &Harness, owner: &str, id: &str, name: &str, text: &str) {
    let path = format!("/files/content?path={name}");
    assert_eq!(agent_request(h, owner, id, "PUT", &path, text).await.0, 200);
}

async fn read(h: &Harness, owner: &str, id: &str, name: &str) -> String {
    let path = format!("/files/content?path={name}");
    let (status, body) = agent_request(h, owner, id, "GET", &path, "").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn record(h: &Harness, id: &str) -> SessionRecord {
    h.store.get_session(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_hibernated_session_holds_no_container_and_wakes_with_its_files_on_any_access() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    write(&h, "alice", &session.id, "notes.txt", "kept while asleep").await;
    let before = record(&h, &session.id).await;

    let asleep = h
        .sessions
        .hibernate(user("alice"), session.id.clone())
        .await
        .unwrap();
    assert_eq!(asleep.state, SessionState::Hibernated);
    assert!(asleep.hibernated_at.is_some());
    assert_eq!(h.runtime.container_count(), 0, "no container while asleep");
    let listed = h
        .sessions
        .list(&user("alice"), Vec::new(), false)
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        1,
        "a sleeping session is listed like a running one"
    );
    assert_eq!(h.runtime.snapshot_count(), 1);
    let slept = record(&h, &session.id).await;
    assert!(slept.agent_secret.is_empty() && slept.container_id.is_none());

    // Reading a file is an access like any other: it wakes the session first.
    assert_eq!(
        read(&h, "alice", &session.id, "notes.txt").await,
        "kept while asleep"
    );
    let awake = record(&h, &session.id).await;
    assert_eq!(awake.state, SessionState::Running);
    assert_ne!(awake.agent_secret, before.agent_secret, "a fresh secret");
    assert_ne!(awake.container_id, before.container_id, "a new container");
    assert_eq!(h.runtime.container_count(), 1);
}

#[tokio::test]
async fn many_wakes_at_once_share_one_restore() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    h.sessions
        .hibernate(user("alice"), session.id.clone())
        .await
        .unwrap();
    let alice = user("alice");
    let wakes = (0..20).map(|_| h.sessions.agent_endpoint(&alice, &session.id));
    let endpoints = futures_util::future::join_all(wakes).await;
    let endpoints: HashSet<_> = endpoints.into_iter().map(Result::unwrap).collect();
    assert_eq!(endpoints.len(), 1, "every caller reaches the same agent");
    assert_eq!(h.runtime.container_count(), 1, "one restore, one container");
}

#[tokio::test]
async fn what_cannot_be_hibernated_or_woken_says_why() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    // Someone else's session does not exist for them.
    let err = h
        .sessions
        .hibernate(user("bob"), session.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    h.sessions
        .delete(user("alice"), session.id.clone())
        .await
        .unwrap();
    let err = h
        .sessions
        .hibernate(user("alice"), session.id.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    let err = h
        .sessions
        .resume(user("alice"), session.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
}

#[tokio::test]
async fn hibernated_sessions_have_a_quota_of_their_own_and_free_the_running_one() {
    let h = harness().await; // 3 live sessions, 2 hibernated per user
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(running(&h, "alice", "default").await.id);
    }
    for id in &ids[..2] {
        h.sessions
            .hibernate(user("alice"), id.clone())
            .await
            .unwrap();
    }
    let err = h
        .sessions
        .hibernate(user("alice"), ids[2].clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::QuotaExceeded, "{err}");
    // Asleep, they no longer count toward the running quota.
    running(&h, "alice", "default").await;
}

#[tokio::test]
async fn deleting_or_expiring_a_hibernated_session_removes_its_image() {
    let h = harness().await;
    let deleted = running(&h, "alice", "default").await;
    let expiring = running(&h, "alice", "short").await;
    for id in [&deleted.id, &expiring.id] {
        h.sessions
            .hibernate(user("alice"), id.clone())
            .await
            .unwrap();
    }
    assert_eq!(h.runtime.snapshot_count(), 2);
    h.sessions
        .delete(user("alice"), deleted.id.clone())
        .await
        .unwrap();
    assert_eq!(state_of(&h, &deleted.id).await, SessionState::Stopped);
    // `short` lives one second; the reaper ends it asleep too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sessions.reap().await.unwrap();
    wait_until("the expired one to stop", || async {
        state_of(&h, &expiring.id).await == SessionState::Stopped
    })
    .await;
    assert_eq!(
        record(&h, &expiring.id).await.stop_reason.as_deref(),
        Some("ttl_expired")
    );
    assert_eq!(h.runtime.snapshot_count(), 0);
}

#[tokio::test]
async fn a_restore_whose_image_is_gone_fails_the_session_and_answers_at_once() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    h.sessions
        .hibernate(user("alice"), session.id.clone())
        .await
        .unwrap();
    let image = record(&h, &session.id).await.snapshot.unwrap();
    h.runtime.drop_snapshot(&image);
    let err = h
        .sessions
        .agent_endpoint(&user("alice"), &session.id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&image), "{err}");
    let failed = record(&h, &session.id).await;
    assert_eq!(failed.state, SessionState::Failed);
    assert!(failed.stop_reason.unwrap().starts_with("restore_failed"));
}

#[tokio::test]
async fn reconcile_finishes_a_hibernation_the_control_plane_died_in() {
    let h = harness().await;
    // Died before the commit: the container is there, and this control plane hibernates it.
    let early = running(&h, "alice", "default").await;
    write(&h, "alice", &early.id, "early.txt", "not yet committed").await;
    let mut row = record(&h, &early.id).await;
    row.state = SessionState::Hibernating;
    h.store.update_session(&row).await.unwrap();

    // Died after the commit and the removal, before writing `hibernated`.
    let late = running(&h, "alice", "default").await;
    write(&h, "alice", &late.id, "late.txt", "committed").await;
    let mut row = record(&h, &late.id).await;
    row.state = SessionState::Hibernating;
    h.store.update_session(&row).await.unwrap();
    let container = row.container_id.clone().unwrap();
    h.runtime
        .commit(&container, "berth-snapshot/late:5", false)
        .await
        .unwrap();
    h.runtime.remove(&container).await.unwrap();

    // An image whose session ended: an orphan.
    let ended = running(&h, "bob", "default").await;
    let container = record(&h, &ended.id).await.container_id.unwrap();
    h.runtime
        .commit(&container, "berth-snapshot/gone:1", false)
        .await
        .unwrap();
    h.sessions.delete(user("bob"), ended.id).await.unwrap();

    h.sessions.reconcile().await.unwrap();
    wait_until("the hibernations to be settled", || async {
        state_of(&h, &early.id).await == SessionState::Hibernated
            && state_of(&h, &late.id).await == SessionState::Hibernated
            && h.runtime.snapshot_count() == 2
    })
    .await;
    assert_eq!(
        read(&h, "alice", &early.id, "early.txt").await,
        "not yet committed"
    );
    assert_eq!(
        record(&h, &late.id).await.snapshot.as_deref(),
        Some("berth-snapshot/late:5")
    );
    assert_eq!(read(&h, "alice", &late.id, "late.txt").await, "committed");
}

/// The stop a dead control plane asked for may finish before the restart's reconcile looks:
/// the container's death, heard while the row still says `hibernating`, finishes the
/// hibernation, and the files wake with the session.
#[tokio::test]
async fn a_container_that_stops_after_its_control_plane_died_mid_hibernation_is_hibernated() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    write(&h, "alice", &session.id, "notes.txt", "kept").await;
    let mut row = record(&h, &session.id).await;
    row.state = SessionState::Hibernating;
    h.store.update_session(&row).await.unwrap();
    h.runtime.kill(&session.id);
    wait_until("the hibernation to be finished", || async {
        state_of(&h, &session.id).await == SessionState::Hibernated
    })
    .await;
    assert_eq!(read(&h, "alice", &session.id, "notes.txt").await, "kept");
}

#[tokio::test]
async fn a_named_snapshot_forks_new_sessions_for_its_owner_only_and_goes_with_its_session() {
    let h = harness().await;
    let original = running(&h, "alice", "default").await;
    write(&h, "alice", &original.id, "plan.txt", "before the refactor").await;
    let snapshot = h
        .sessions
        .create_snapshot(&user("alice"), &original.id, "before-refactor")
        .await
        .unwrap();
    assert!(snapshot.pause_ms.is_some());
    write(&h, "alice", &original.id, "plan.txt", "after").await;

    let fork = CreateSession {
        from_snapshot: Some(snapshot.id.clone()),
        ..request("default")
    };
    let forked = h
        .sessions
        .create(user("alice"), fork.clone())
        .await
        .unwrap();
    assert_eq!(
        read(&h, "alice", &forked.id, "plan.txt").await,
        "before the refactor"
    );
    // Someone else's snapshot does not exist for them.
    let err = h.sessions.create(user("bob"), fork).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");

    // Reconcile keeps a named snapshot whatever; deleting its session deletes it.
    h.sessions.reconcile().await.unwrap();
    assert_eq!(h.runtime.snapshot_count(), 1);
    let listed = h
        .sessions
        .list_snapshots(&user("alice"), &original.id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "before-refactor");
    h.sessions
        .delete(user("alice"), original.id.clone())
        .await
        .unwrap();
    assert_eq!(h.runtime.snapshot_count(), 0);
    assert!(h.store.get_snapshot(&snapshot.id).await.unwrap().is_none());
    // The fork keeps its files.
    assert_eq!(
        read(&h, "alice", &forked.id, "plan.txt").await,
        "before the refactor"
    );
}

#[tokio::test]
async fn snapshots_refuse_bad_names_and_sessions_that_do_not_run_and_delete_cleanly() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    for bad in ["", &"x".repeat(65), "tab\there"] {
        let err = h
            .sessions
            .create_snapshot(&user("alice"), &session.id, bad)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidRequest, "{bad:?}");
    }
    let kept = h
        .sessions
        .create_snapshot(&user("alice"), &session.id, "keep")
        .await
        .unwrap();
    let err = h
        .sessions
        .delete_snapshot(&user("bob"), &kept.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    h.sessions
        .delete_snapshot(&user("alice"), &kept.id)
        .await
        .unwrap();
    assert_eq!(h.runtime.snapshot_count(), 0);
    h.sessions
        .hibernate(user("alice"), session.id.clone())
        .await
        .unwrap();
    let err = h
        .sessions
        .create_snapshot(&user("alice"), &session.id, "asleep")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
}

#[tokio::test]
async fn a_session_hibernated_past_the_limit_is_deleted_with_its_image() {
    let h = harness_tuned(BTreeMap::new(), 1000, |ctx| {
        ctx.hibernated_ttl = Duration::from_millis(500);
    })
    .await;
    let session = running(&h, "alice", "default").await;
    h.sessions
        .hibernate(user("alice"), session.id.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    h.sessions.reap().await.unwrap();
    wait_until("the long-asleep session to be deleted", || async {
        state_of(&h, &session.id).await == SessionState::Stopped
    })
    .await;
    assert_eq!(
        record(&h, &session.id).await.stop_reason.as_deref(),
        Some("hibernated_ttl_expired")
    );
    assert_eq!(h.runtime.snapshot_count(), 0);
}

/// A template whose running sessions are checkpointed every second they are worked in.
fn checkpointed() -> BTreeMap<String, TemplateConfig> {
    BTreeMap::from([(
        "checkpointed".to_owned(),
        TemplateConfig {
            image: "berth/tiny:latest".into(),
            checkpoint_interval_seconds: 1,
            ..TemplateConfig::default()
        },
    )])
}

#[tokio::test]
async fn worked_in_sessions_are_checkpointed_keeping_the_newest_only() {
    let h = harness_on(checkpointed(), 1000).await;
    let session = running(&h, "alice", "checkpointed").await;
    let mut images = Vec::new();
    for round in 0..2 {
        write(&h, "alice", &session.id, "round.txt", &round.to_string()).await;
        // What the API's file relay records for that write.
        h.sessions.touch(&session.id);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        h.sessions.reap().await.unwrap();
        let previous = images.last().cloned();
        wait_until("a checkpoint", || async {
            let snapshot = record(&h, &session.id).await.snapshot;
            snapshot.is_some() && snapshot != previous
        })
        .await;
        images.push(record(&h, &session.id).await.snapshot.unwrap());
    }
    wait_until("the older checkpoint to be removed", || async {
        h.runtime.snapshot_count() == 1
    })
    .await;
    // Nobody works: no new checkpoint.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sessions.reap().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        record(&h, &session.id).await.snapshot.as_ref(),
        images.last()
    );
}

#[tokio::test]
async fn a_session_whose_container_vanishes_is_recovered_from_its_newest_snapshot() {
    let h = harness_on(checkpointed(), 1000).await;
    let session = running(&h, "alice", "checkpointed").await;
    write(&h, "alice", &session.id, "saved.txt", "in the checkpoint").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sessions.reap().await.unwrap();
    wait_until("a checkpoint", || async {
        record(&h, &session.id).await.snapshot.is_some()
    })
    .await;

    // Removed by hand: the engine says so, and the session comes back from its snapshot.
    let container = record(&h, &session.id).await.container_id.unwrap();
    h.runtime.remove(&container).await.unwrap();
    wait_until("the session to be recovered", || async {
        let now = record(&h, &session.id).await;
        now.state == SessionState::Running && now.container_id.as_ref() != Some(&container)
    })
    .await;
    assert_eq!(
        read(&h, "alice", &session.id, "saved.txt").await,
        "in the checkpoint"
    );
    let events = h.store.events(&session.id).await.unwrap();
    assert_eq!(events.last().unwrap().kind, "recovered", "{events:?}");
    assert!(
        events
            .last()
            .unwrap()
            .message
            .contains("changes since then were lost")
    );

    // Without a snapshot there is nothing to recover from: it fails, saying why.
    let bare = running(&h, "alice", "default").await;
    let container = record(&h, &bare.id).await.container_id.unwrap();
    h.runtime.remove(&container).await.unwrap();
    wait_until("the bare session to fail", || async {
        state_of(&h, &bare.id).await == SessionState::Failed
    })
    .await;
    assert_eq!(
        record(&h, &bare.id).await.stop_reason.as_deref(),
        Some("container_vanished")
    );
}

#[tokio::test]
async fn a_hibernation_the_engine_refuses_leaves_the_session_working_with_its_files() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    write(&h, "alice", &session.id, "notes.txt", "still here").await;
    h.runtime.refuse_commits.store(true, Ordering::SeqCst);
    let err = h
        .sessions
        .hibernate(user("alice"), session.id.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max depth exceeded"), "{err}");
    // The next request waits for the same container to be started again, then works.
    assert_eq!(
        read(&h, "alice", &session.id, "notes.txt").await,
        "still here"
    );
    assert_eq!(state_of(&h, &session.id).await, SessionState::Running);
    let events = h.store.events(&session.id).await.unwrap();
    assert_eq!(events[0].kind, "hibernate_failed");
}

/// The harness compacts past 3 layers of a snapshot's own: the fourth hibernation folds them.
#[tokio::test]
async fn the_hibernation_that_passes_the_threshold_compacts_the_snapshot() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    for cycle in 1..=4 {
        write(&h, "alice", &session.id, "cycle.txt", &cycle.to_string()).await;
        h.sessions
            .hibernate(user("alice"), session.id.clone())
            .await
            .unwrap();
        let image = record(&h, &session.id).await.snapshot.unwrap();
        let layers = h
            .runtime
            .snapshot_depth(&image, "berth/tiny:latest")
            .await
            .unwrap()
            .layers;
        assert_eq!(layers, if cycle < 4 { cycle } else { 1 }, "cycle {cycle}");
        // Woken at once, as a user who comes back right away: it must not matter.
        h.sessions
            .resume(user("alice"), session.id.clone())
            .await
            .unwrap();
    }
    wait_until("the deep snapshots to go", || async {
        h.runtime.snapshot_count() == 1
    })
    .await;
    let timeline = h
        .sessions
        .timeline(&user("alice"), &session.id)
        .await
        .unwrap();
    assert!(
        timeline
            .events
            .iter()
            .any(|event| event.kind == "compacted" && event.message.contains("4 layers")),
        "{timeline:?}"
    );
    assert_eq!(read(&h, "alice", &session.id, "cycle.txt").await, "4");
}

/// A sleeping session counts toward capacity again once awake: at capacity its restore waits,
/// and starts as soon as a session ends.
#[tokio::test]
async fn a_restore_at_capacity_waits_for_room_then_wakes() {
    let h = harness_with(0, 1).await;
    let sleeper = running(&h, "alice", "default").await;
    write(&h, "alice", &sleeper.id, "kept.txt", "asleep").await;
    h.sessions
        .hibernate(user("alice"), sleeper.id.clone())
        .await
        .unwrap();
    // Asleep, it leaves room for another session, which fills the host.
    let other = running(&h, "bob", "default").await;

    // Two callers wait for the same restore (a resume and, say, a terminal).
    let resume = || {
        let sessions = h.sessions.clone();
        let id = sleeper.id.clone();
        tokio::spawn(async move { sessions.resume(user("alice"), id).await })
    };
    let (resumed, also) = (resume(), resume());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!resumed.is_finished(), "no room: the restore waits");
    // Still asleep, and told where it stands: next, after one session ends.
    let waiting = h.sessions.get(&user("alice"), &sleeper.id).await.unwrap();
    assert_eq!(waiting.state, SessionState::Hibernated);
    assert_eq!(waiting.wake_queue_position, Some(1));
    assert!(waiting.wake_estimate_ms.is_some_and(|ms| ms > 0));

    h.sessions.delete(user("bob"), other.id).await.unwrap();
    let awake = tokio::time::timeout(Duration::from_secs(10), resumed)
        .await
        .expect("the restore started once there was room")
        .unwrap()
        .unwrap();
    assert_eq!(awake.state, SessionState::Running);
    assert_eq!(also.await.unwrap().unwrap().state, SessionState::Running);
    let awake = h.sessions.get(&user("alice"), &sleeper.id).await.unwrap();
    assert_eq!(awake.wake_queue_position, None);
    assert_eq!(read(&h, "alice", &sleeper.id, "kept.txt").await, "asleep");
}

/// A restore waiting for room whose session is deleted meanwhile: its caller hears at once.
#[tokio::test]
async fn deleting_a_session_whose_restore_waits_for_room_answers_its_callers() {
    let h = harness_with(0, 1).await;
    let sleeper = running(&h, "alice", "default").await;
    h.sessions
        .hibernate(user("alice"), sleeper.id.clone())
        .await
        .unwrap();
    let _other = running(&h, "bob", "default").await;
    let sessions = h.sessions.clone();
    let id = sleeper.id.clone();
    let resumed = tokio::spawn(async move { sessions.resume(user("alice"), id).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!resumed.is_finished(), "no room: the restore waits");

    h.sessions
        .delete(user("alice"), sleeper.id.clone())
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), resumed)
        .await
        .expect("the waiting caller was answered")
        .unwrap();
    assert_eq!(answer.unwrap_err().code(), ErrorCode::NotFound);
    assert_eq!(state_of(&h, &sleeper.id).await, SessionState::Stopped);
}

/// A control plane that died while starting a session's own container again after a failed
/// hibernation: reconcile starts that container (it holds the newest files), never removes it.
#[tokio::test]
async fn reconcile_keeps_the_container_of_a_revive_the_control_plane_died_in() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    write(&h, "alice", &session.id, "newest.txt", "only here").await;
    let mut row = record(&h, &session.id).await;
    let container = row.container_id.clone();
    row.state = SessionState::Restoring;
    row.stop_reason = Some("hibernate_failed".into());
    h.store.update_session(&row).await.unwrap();

    h.sessions.reconcile().await.unwrap();
    wait_until("the session to be running again", || async {
        state_of(&h, &session.id).await == SessionState::Running
    })
    .await;
    assert_eq!(record(&h, &session.id).await.container_id, container);
    assert_eq!(
        read(&h, "alice", &session.id, "newest.txt").await,
        "only here"
    );
}

#[tokio::test]
async fn a_hibernation_with_nothing_new_keeps_the_snapshot_it_woke_from() {
    let h = harness().await;
    let session = running(&h, "alice", "default").await;
    write(&h, "alice", &session.id, "notes.txt", "first").await;
    let hibernate = || h.sessions.hibernate(user("alice"), session.id.clone());
    let resume = || h.sessions.resume(user("alice"), session.id.clone());
    hibernate().await.unwrap();
    let first = record(&h, &session.id).await.snapshot.unwrap();

    // Woken and left alone: nothing to commit, the same image holds its files.
    resume().await.unwrap();
    hibernate().await.unwrap();
    assert_eq!(record(&h, &session.id).await.snapshot.unwrap(), first);
    assert_eq!(h.runtime.snapshot_count(), 1, "no image made, none removed");

    // Woken and worked in: a new snapshot, and the one it replaces goes.
    resume().await.unwrap();
    write(&h, "alice", &session.id, "notes.txt", "second").await;
    hibernate().await.unwrap();
    let second = record(&h, &session.id).await.snapshot.unwrap();
    assert_ne!(second, first);
    wait_until("the replaced snapshot to go", || async {
        h.runtime.snapshot_count() == 1
    })
    .await;
    assert_eq!(read(&h, "alice", &session.id, "notes.txt").await, "second");
}

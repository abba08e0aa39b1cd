//! Persistent homes: one volume per user and template, mounted by one session of theirs at a
//! time, seeded once, kept between sessions, and deleted only when no session holds it.

use super::*;
use berth_proto::ErrorCode;

use crate::config::HomeMode;

/// `default` and friends, plus `dev` (a persistent home seeded with `hello.txt`). The seed
/// directory lives as long as the harness needs it.
async fn harness_with_homes() -> (Harness, tempfile::TempDir) {
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(seed.path().join("hello.txt"), "from the seed").unwrap();
    let dev = TemplateConfig {
        image: "berth/tiny:latest".into(),
        home: HomeMode::Persistent,
        home_size_mb: 100,
        workspace_seed: Some(seed.path().to_owned()),
        ..TemplateConfig::default()
    };
    let h = harness_on(BTreeMap::from([("dev".to_owned(), dev)]), 1000).await;
    (h, seed)
}

async fn write(h: &Harness, owner: &str, id: &str, name: &str, text: &str) {
    let path = format!("/files/content?path={name}");
    assert_eq!(agent_request(h, owner, id, "PUT", &path, text).await.0, 200);
}

async fn read(h: &Harness, owner: &str, id: &str, name: &str) -> (u16, String) {
    let path = format!("/files/content?path={name}");
    agent_request(h, owner, id, "GET", &path, "").await
}

#[tokio::test]
async fn a_home_outlives_its_session_and_is_seeded_only_when_new() {
    let (h, _seed) = harness_with_homes().await;
    let first = running(&h, "alice", "dev").await;
    let spec = h.runtime.spec_of_session(&first.id).unwrap();
    let home = spec.home.clone().expect("a persistent home in the spec");
    assert_eq!(home.volume, h.runtime.home_volume("alice", "dev"));
    assert_eq!(home.size_mb, Some(100));
    assert_eq!(
        read(&h, "alice", &first.id, "hello.txt").await.1,
        "from the seed"
    );
    write(&h, "alice", &first.id, "hello.txt", "mine now").await;
    write(&h, "alice", &first.id, "notes.txt", "kept").await;
    h.sessions
        .delete(user("alice"), first.id.clone())
        .await
        .unwrap();

    // The next session finds the user's files, not the seed's again.
    let second = running(&h, "alice", "dev").await;
    assert_eq!(read(&h, "alice", &second.id, "notes.txt").await.1, "kept");
    assert_eq!(
        read(&h, "alice", &second.id, "hello.txt").await.1,
        "mine now"
    );
    // Another user has a home of their own; a session-home template none.
    let bob = running(&h, "bob", "dev").await;
    assert_eq!(read(&h, "bob", &bob.id, "notes.txt").await.0, 404);
    let plain = running(&h, "alice", "default").await;
    assert!(h.runtime.spec_of_session(&plain.id).unwrap().home.is_none());
}

#[tokio::test]
async fn one_session_at_a_time_has_a_home_hibernated_or_not() {
    let (h, _seed) = harness_with_homes().await;
    let first = running(&h, "alice", "dev").await;
    let err = h
        .sessions
        .create(user("alice"), request("dev"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert!(err.to_string().contains(&first.id), "{err}");

    // Asleep it still holds the home, which it mounts again as it wakes.
    write(&h, "alice", &first.id, "notes.txt", "before sleep").await;
    h.sessions
        .hibernate(user("alice"), first.id.clone())
        .await
        .unwrap();
    let err = h
        .sessions
        .create(user("alice"), request("dev"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hibernated"), "{err}");
    assert_eq!(
        read(&h, "alice", &first.id, "notes.txt").await.1,
        "before sleep"
    );
    let spec = h.runtime.spec_of_session(&first.id).unwrap();
    assert_eq!(
        spec.home.unwrap().volume,
        h.runtime.home_volume("alice", "dev")
    );
}

#[tokio::test]
async fn a_fork_by_someone_else_mounts_their_own_home() {
    let (h, _seed) = harness_with_homes().await;
    let alice = running(&h, "alice", "dev").await;
    let snapshot = h
        .sessions
        .create_snapshot(&user("alice"), &alice.id, "shared")
        .await
        .unwrap();
    // The admin forks it (alice's session still running): the admin's home, not alice's.
    let request = CreateSession {
        template: "dev".into(),
        from_snapshot: Some(snapshot.id),
        ..CreateSession::default()
    };
    let forked = h
        .sessions
        .create(Principal::admin(), request)
        .await
        .unwrap();
    let spec = h.runtime.spec_of_session(&forked.id).unwrap();
    assert_eq!(
        spec.home.unwrap().volume,
        h.runtime.home_volume(&spec.owner, "dev")
    );
    assert_ne!(spec.owner, "alice");
}

#[tokio::test]
async fn homes_are_listed_and_deleted_by_their_owner_and_the_admin_only() {
    let (h, _seed) = harness_with_homes().await;
    let session = running(&h, "alice", "dev").await;
    running(&h, "bob", "dev").await;
    let volume = h.runtime.home_volume("alice", "dev");

    let mine = h.sessions.list_homes(&user("alice"), None).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].name, volume);
    assert_eq!(mine[0].used_by.as_deref(), Some(session.id.as_str()));
    assert_eq!(mine[0].size_mb, Some(100));
    // Asking for someone else's shows nothing more.
    let asked = h
        .sessions
        .list_homes(&user("alice"), Some("bob"))
        .await
        .unwrap();
    assert_eq!(asked, mine);
    let admin = Principal::admin();
    assert_eq!(h.sessions.list_homes(&admin, None).await.unwrap().len(), 2);
    let bobs = h.sessions.list_homes(&admin, Some("bob")).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].user, "bob");

    let err = h
        .sessions
        .delete_home(&user("bob"), &volume)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let err = h
        .sessions
        .delete_home(&user("alice"), &volume)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);

    h.sessions
        .delete(user("alice"), session.id.clone())
        .await
        .unwrap();
    let listed = h.sessions.list_homes(&user("alice"), None).await.unwrap();
    assert_eq!(listed[0].used_by, None);
    h.sessions
        .delete_home(&user("alice"), &volume)
        .await
        .unwrap();
    assert!(
        h.sessions
            .list_homes(&user("alice"), None)
            .await
            .unwrap()
            .is_empty()
    );
    let err = h
        .sessions
        .delete_home(&user("alice"), &volume)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);

    // A user's deletion takes their homes once their sessions are gone.
    let err = h.sessions.delete_user_homes("bob").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    for session in h
        .sessions
        .list(&user("bob"), Vec::new(), false)
        .await
        .unwrap()
    {
        h.sessions.delete(user("bob"), session.id).await.unwrap();
    }
    assert_eq!(h.sessions.delete_user_homes("bob").await.unwrap(), 1);
    assert!(
        h.sessions
            .list_homes(&admin, None)
            .await
            .unwrap()
            .is_empty()
    );
}

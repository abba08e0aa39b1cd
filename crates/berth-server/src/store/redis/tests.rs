use std::time::{Duration, Instant};

use berth_proto::SessionState;
use chrono::{TimeZone, Utc};

use super::{RedisStore, test_server::RedisServer};
use crate::{
    cluster::Coordination,
    store::{SessionFilter, SessionRecord, SnapshotRecord, Store, StoreError},
};

async fn store_on(server: &RedisServer) -> RedisStore {
    RedisStore::open(&server.url()).await.unwrap()
}

#[tokio::test]
async fn redis_passes_the_store_contract() {
    let server = RedisServer::start();
    crate::store::contract::run(&store_on(&server).await).await;
}

#[tokio::test]
async fn redis_passes_the_coordination_contract() {
    let server = RedisServer::start();
    crate::cluster::contract::run(&store_on(&server).await).await;
}

fn session(id: &str) -> SessionRecord {
    let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    SessionRecord {
        id: id.to_owned(),
        owner: "alice".to_owned(),
        template: "default".to_owned(),
        state: SessionState::Running,
        labels: Default::default(),
        created_at: at,
        expires_at: at,
        last_activity: at,
        container_id: None,
        agent_addr: None,
        stop_reason: None,
        agent_secret: "secret".to_owned(),
        snapshot: None,
        hibernated_at: None,
        keepalive_until: None,
    }
}

fn snapshot(id: &str) -> SnapshotRecord {
    SnapshotRecord {
        id: id.to_owned(),
        session_id: "s-fenced".to_owned(),
        owner: "alice".to_owned(),
        name: id.to_owned(),
        image: format!("berth-snapshot/s-fenced:{id}"),
        created_at: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
    }
}

#[tokio::test]
async fn fenced_writes_fail_once_the_lease_passes_to_another_holder() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let ttl = Duration::from_secs(30);
    let first = store.claim_lease("a", "http://a", ttl).await.unwrap();
    store.fence(Some(first.epoch));

    let mut s = session("s-fenced");
    store.insert_session(&s).await.unwrap();
    s.state = SessionState::Hibernated;
    store.update_session(&s).await.unwrap();
    store.insert_snapshot(&snapshot("k-kept")).await.unwrap();
    store.insert_snapshot(&snapshot("k-gone")).await.unwrap();
    store.delete_snapshot("k-gone").await.unwrap();

    store.release_lease(first.epoch).await.unwrap();
    let second = store.claim_lease("b", "http://b", ttl).await.unwrap();
    assert!(second.epoch > first.epoch);

    let fenced = |result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::Fenced(epoch)) if epoch == first.epoch),
            "{result:?}"
        );
    };
    let mut changed = s.clone();
    changed.state = SessionState::Running;
    fenced(store.update_session(&changed).await);
    fenced(store.insert_session(&session("s-fenced-new")).await);
    fenced(store.insert_snapshot(&snapshot("k-new")).await);
    fenced(store.delete_snapshot("k-kept").await);

    // Nothing changed.
    assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.get_session("s-fenced-new").await.unwrap(), None);
    let ids: Vec<String> = store
        .list_snapshots(None)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["k-kept"]);
    assert_eq!(
        store.count_by_state().await.unwrap(),
        [(SessionState::Hibernated, 1)]
    );

    // The new holder fenced on its own epoch writes; unfenced writes go through.
    store.fence(Some(second.epoch));
    store.update_session(&changed).await.unwrap();
    store.fence(None);
    store.delete_snapshot("k-kept").await.unwrap();
}

#[tokio::test]
async fn calls_fail_fast_while_redis_is_down_and_work_again_when_it_is_back() {
    let mut server = RedisServer::start();
    let store = store_on(&server).await;
    store.insert_session(&session("s-before")).await.unwrap();

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let result = store.list_sessions(&SessionFilter::default()).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    // A new server (nothing was saved): the same store reconnects to it.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.insert_session(&session("s-after")).await {
            Ok(()) => break,
            Err(err) => assert!(Instant::now() < deadline, "not back: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(store.get_session("s-after").await.unwrap().is_some());
}

#[tokio::test]
async fn a_redis_server_that_is_not_there_is_unavailable_within_5_seconds() {
    let server = RedisServer::start();
    let url = server.url();
    drop(server);
    let started = Instant::now();
    let result = RedisStore::open(&url).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_subscription_ends_when_redis_goes_away() {
    use futures_util::StreamExt;

    let mut server = RedisServer::start();
    let store = store_on(&server).await;
    let mut notices = store.subscribe().await.unwrap();
    server.stop();
    let end = tokio::time::timeout(Duration::from_secs(5), notices.next())
        .await
        .expect("the stream ends instead of waiting forever");
    assert_eq!(end, None);
}

/// A flushed Redis starts its counters again; an epoch handed out before the flush must never
/// be handed out after it, or the old leader's fenced writes would pass as the new one's.
#[tokio::test]
async fn a_flush_never_hands_an_old_epoch_out_again() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let ttl = Duration::from_secs(30);
    let before = store.claim_lease("a", "http://a", ttl).await.unwrap();
    server.flush_all();
    let after = store.claim_lease("b", "http://b", ttl).await.unwrap();
    assert_eq!(after.holder, "b");
    assert!(after.epoch > before.epoch, "{after:?} after {before:?}");

    store.fence(Some(before.epoch));
    let written = store.insert_session(&session("s-stale-leader")).await;
    assert!(
        matches!(written, Err(StoreError::Fenced(epoch)) if epoch == before.epoch),
        "{written:?}"
    );
    // Handing over without a flush still takes a larger epoch.
    store.release_lease(after.epoch).await.unwrap();
    let next = store.claim_lease("a", "http://a", ttl).await.unwrap();
    assert!(next.epoch > after.epoch, "{next:?} after {after:?}");
}

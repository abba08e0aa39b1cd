//! The behaviour every [`Coordination`] must show. Each implementation's tests call [`run`].

use std::time::Duration;

use futures_util::StreamExt;

use super::Coordination;

pub async fn run(coordination: &dyn Coordination) {
    one_holder_at_a_time_and_the_epoch_grows_with_each(coordination).await;
    tickets_are_taken_once_and_expire(coordination).await;
    published_messages_reach_subscribers(coordination).await;
}

async fn one_holder_at_a_time_and_the_epoch_grows_with_each(c: &dyn Coordination) {
    let ttl = Duration::from_millis(300);
    assert_eq!(c.lease().await.unwrap(), None, "nobody holds it at first");
    let first = c.claim_lease("a", "http://a", ttl).await.unwrap();
    assert_eq!(
        (first.holder.as_str(), first.address.as_str()),
        ("a", "http://a")
    );
    // Someone else gets the holder's lease back, not theirs.
    assert_eq!(c.claim_lease("b", "http://b", ttl).await.unwrap(), first);
    // Renewing keeps the epoch.
    assert_eq!(c.claim_lease("a", "http://a", ttl).await.unwrap(), first);
    assert_eq!(c.lease().await.unwrap(), Some(first.clone()));

    // Expired: the next claimant takes it with a larger epoch.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(c.lease().await.unwrap(), None);
    let second = c.claim_lease("b", "http://b", ttl).await.unwrap();
    assert_eq!(second.holder, "b");
    assert!(second.epoch > first.epoch);

    // Released by a stale epoch: nothing happens; by its own: free at once.
    c.release_lease(first.epoch).await.unwrap();
    assert_eq!(c.lease().await.unwrap(), Some(second.clone()));
    c.release_lease(second.epoch).await.unwrap();
    assert_eq!(c.lease().await.unwrap(), None);
    let third = c.claim_lease("a", "http://a", ttl).await.unwrap();
    assert_eq!(third.holder, "a");
    assert!(third.epoch > second.epoch);
    c.release_lease(third.epoch).await.unwrap();
}

async fn tickets_are_taken_once_and_expire(c: &dyn Coordination) {
    c.put_ticket("t1", "alice sone", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        c.take_ticket("t1").await.unwrap().as_deref(),
        Some("alice sone")
    );
    assert_eq!(c.take_ticket("t1").await.unwrap(), None, "single use");
    assert_eq!(c.take_ticket("never").await.unwrap(), None);
    c.put_ticket("t2", "bob", Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(c.take_ticket("t2").await.unwrap(), None, "expired");
}

async fn published_messages_reach_subscribers(c: &dyn Coordination) {
    let mut first = c.subscribe().await.unwrap();
    let mut second = c.subscribe().await.unwrap();
    c.publish("hello").await.unwrap();
    c.publish("again").await.unwrap();
    for stream in [&mut first, &mut second] {
        for expected in ["hello", "again"] {
            let got = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("a published message arrives")
                .expect("the stream stays open");
            assert_eq!(got, expected);
        }
    }
}

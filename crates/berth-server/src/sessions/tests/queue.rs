//! Capacity and the fair queue.

use super::*;

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
            .await
            .unwrap()
            .position,
        Some(1)
    );
    assert!(matches!(
        h.sessions.queue_status(&user("b"), &ticket).await,
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
    let cancelled = h.sessions.queue_status(&user("a"), &ticket).await.unwrap();
    assert_eq!(cancelled.state, QueueState::Failed);
    assert!(h.sessions.cancel_queued(user("a"), ticket).await.is_err());
}

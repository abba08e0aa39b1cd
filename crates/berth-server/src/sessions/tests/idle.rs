//! The idle policy: warned, cancelled by work, acted on; keepalive; expiry that sleeps.

use super::*;
use crate::config::{ExpiryAction, IdleConfig};
use berth_proto::{ErrorCode, ports::SessionEvent};

/// A template whose sessions are warned after 1 s without work and hibernated after 2 s.
fn drowsy() -> TemplateConfig {
    TemplateConfig {
        image: "berth/tiny:latest".into(),
        idle: IdleConfig {
            timeout_seconds: 2,
            warning_seconds: 1,
            ..IdleConfig::default()
        },
        ..TemplateConfig::default()
    }
}

async fn drowsy_harness() -> Harness {
    let expiring = TemplateConfig {
        ttl_seconds: 1,
        max_ttl_seconds: 60,
        on_expiry: ExpiryAction::Hibernate,
        ..drowsy()
    };
    harness_on(
        BTreeMap::from([
            ("drowsy".to_owned(), drowsy()),
            ("sleeps-at-expiry".to_owned(), expiring),
        ]),
        1000,
    )
    .await
}

#[tokio::test]
async fn an_idle_session_is_warned_then_a_touch_cancels_then_it_hibernates_for_idleness() {
    let h = drowsy_harness().await;
    let session = running(&h, "alice", "drowsy").await;
    let mut notices = h.sessions.tap(&session.id, true).notices;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sessions.reap().await.unwrap();
    let warning = tokio::time::timeout(Duration::from_secs(5), notices.next())
        .await
        .unwrap();
    assert!(
        matches!(warning, SessionEvent::IdleWarning { .. }),
        "{warning:?}"
    );

    // Work cancels it.
    h.sessions.touch(&session.id);
    h.sessions.reap().await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(5), notices.next())
        .await
        .unwrap();
    assert_eq!(cancelled, SessionEvent::IdleCancelled);
    assert_eq!(state_of(&h, &session.id).await, SessionState::Running);

    // Then nobody works: it goes to sleep, and says why.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.sessions.reap().await.unwrap();
    wait_until("the idle session to hibernate", || async {
        state_of(&h, &session.id).await == SessionState::Hibernated
    })
    .await;
    let asleep = h.sessions.get(&user("alice"), &session.id).await.unwrap();
    assert_eq!(asleep.stop_reason.as_deref(), Some("idle"));

    // Waking it gives it a grace period before the idle timer may act again.
    h.sessions
        .resume(user("alice"), session.id.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.sessions.reap().await.unwrap();
    let awake = h.sessions.get(&user("alice"), &session.id).await.unwrap();
    assert_eq!(awake.state, SessionState::Running);
    assert!(awake.keepalive_until.unwrap() > chrono::Utc::now() + chrono::TimeDelta::seconds(200));
}

#[tokio::test]
async fn keepalive_keeps_a_session_awake_within_its_maximum_lifetime() {
    let h = drowsy_harness().await;
    let session = running(&h, "alice", "drowsy").await;
    let kept = h
        .sessions
        .keepalive(user("alice"), session.id.clone(), 600)
        .await
        .unwrap();
    assert!(kept.keepalive_until.is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.sessions.reap().await.unwrap();
    assert_eq!(state_of(&h, &session.id).await, SessionState::Running);

    let err = h
        .sessions
        .keepalive(user("alice"), session.id.clone(), 10 * 3600)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidTtl, "{err}");
    h.sessions
        .hibernate(user("alice"), session.id.clone())
        .await
        .unwrap();
    let err = h
        .sessions
        .keepalive(user("alice"), session.id, 60)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
}

#[tokio::test]
async fn a_template_may_hibernate_its_sessions_at_expiry_until_their_maximum_lifetime() {
    let h = drowsy_harness().await;
    let session = running(&h, "alice", "sleeps-at-expiry").await;
    h.sessions
        .keepalive(user("alice"), session.id.clone(), 60)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sessions.reap().await.unwrap();
    wait_until("the expired session to hibernate", || async {
        state_of(&h, &session.id).await == SessionState::Hibernated
    })
    .await;
    let asleep = h.sessions.get(&user("alice"), &session.id).await.unwrap();
    assert_eq!(asleep.stop_reason.as_deref(), Some("ttl_expired"));
    assert_eq!(
        asleep.expires_at,
        session.created_at + chrono::TimeDelta::seconds(60)
    );
}

/// A background process started with `keepalive` is work while it runs: no warning, no
/// hibernation; once it ends, the idle policy acts as usual.
#[tokio::test]
async fn a_keepalive_process_keeps_its_session_awake_while_it_runs() {
    use http_body_util::BodyExt;
    let h = drowsy_harness().await;
    let session = running(&h, "alice", "drowsy").await;
    let (addr, secret) = h
        .sessions
        .agent_endpoint(&user("alice"), &session.id)
        .await
        .unwrap();
    let start = hyper::Request::post("/processes")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            r#"{"cmd": ["sleep", "30"], "keepalive": true}"#,
        ))
        .unwrap();
    let started = AgentClient::default()
        .send(addr, &secret, start)
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let body = started.into_body().collect().await.unwrap().to_bytes();
    let process: berth_proto::process::ProcessInfo = serde_json::from_slice(&body).unwrap();
    assert!(process.keepalive);

    let mut notices = h.sessions.tap(&session.id, false).notices;
    // Twice the idle timeout, the policy checking all along.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.sessions.reap().await.unwrap();
    }
    assert_eq!(state_of(&h, &session.id).await, SessionState::Running);
    assert!(
        futures_util::FutureExt::now_or_never(notices.next()).is_none(),
        "no warning while the keepalive process runs"
    );

    let stop = hyper::Request::post(format!("/processes/{}/signal", process.id))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"signal": 9}"#))
        .unwrap();
    let stopped = AgentClient::default()
        .send(addr, &secret, stop)
        .await
        .unwrap();
    assert!(stopped.status().is_success(), "{}", stopped.status());
    wait_until("the idle policy to act once it ended", || async {
        h.sessions.reap().await.unwrap();
        state_of(&h, &session.id).await == SessionState::Hibernated
    })
    .await;
}

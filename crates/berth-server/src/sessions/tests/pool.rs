//! The warm pool: filling, claims, bursts, quota.

use super::*;

#[tokio::test]
async fn the_pool_fills_hands_out_ready_sessions_and_refills() {
    let h = harness_with_pool(2).await;
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 2).await;
    assert_eq!(h.runtime.container_count(), 2);
    assert!(
        h.sessions
            .list(&Principal::admin(), vec![], true)
            .await
            .unwrap()
            .is_empty(),
        "pooled sessions are nobody's"
    );

    let pooled: HashSet<String> = h
        .runtime
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.session_id)
        .collect();
    let mut req = request("pooled");
    req.labels.insert("k".into(), "v".into());
    let claimed = h.sessions.create(user("alice"), req).await.unwrap();
    assert!(
        pooled.contains(&claimed.id),
        "the claim handed out a pooled session"
    );
    assert_eq!(
        (claimed.state, claimed.owner.as_str()),
        (SessionState::Running, "alice")
    );
    assert_eq!(claimed.labels["k"], "v");
    wait_for_ready_pool(&h, 2).await;
    assert_eq!(
        h.runtime.container_count(),
        3,
        "and the pool refilled behind it"
    );
    let status = h.sessions.pool_status().await.unwrap();
    assert_eq!(
        status
            .iter()
            .find(|p| p.template == "pooled")
            .unwrap()
            .claimed,
        1
    );

    // Released means destroyed, never recycled into the pool.
    h.sessions
        .delete(user("alice"), claimed.id.clone())
        .await
        .unwrap();
    assert_eq!(h.runtime.container_count(), 2);
    assert!(h.runtime.spec_of_session(&claimed.id).is_none());
}

#[tokio::test]
async fn a_claim_with_env_reaches_the_agent_before_it_answers() {
    let h = harness_with_pool(1).await;
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 1).await;
    let mut req = request("pooled");
    req.env.insert("COLOR".into(), "blue".into());
    let claimed = h.sessions.create(user("alice"), req).await.unwrap();
    assert_eq!(claimed.state, SessionState::Running);
    let (addr, secret) = h
        .sessions
        .agent_endpoint(&user("alice"), &claimed.id)
        .await
        .unwrap();
    let exec = berth_proto::process::ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), "echo $COLOR".into()],
        ..Default::default()
    };
    let request = hyper::Request::post("/exec")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&exec).unwrap()))
        .unwrap();
    let response = AgentClient::default()
        .send(addr, &secret, request)
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let result: berth_proto::process::ExecResult = serde_json::from_slice(&body).unwrap();
    assert_eq!(result.stdout, "blue\n");
}

#[tokio::test]
async fn a_hundred_concurrent_claims_never_share_a_container() {
    let h = harness_with_pool(20).await;
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 20).await;
    let claims = (0..100).map(|i| {
        let sessions = h.sessions.clone();
        // 34 users, at most 3 sessions each: the quota holds and every request is served.
        tokio::spawn(async move {
            sessions
                .create(user(&format!("u{}", i % 34)), request("pooled"))
                .await
        })
    });
    let mut ids = HashSet::new();
    for claim in futures_util::future::join_all(claims).await {
        let session = claim.unwrap().unwrap();
        assert_eq!(session.state, SessionState::Running);
        assert!(ids.insert(session.id), "a session was handed out twice");
    }
    assert_eq!(ids.len(), 100);
    // Each session is its own container: the fake runtime keys containers by session.
    for id in &ids {
        assert!(h.runtime.spec_of_session(id).is_some());
    }
    wait_for_ready_pool(&h, 20).await;
    assert_eq!(
        h.runtime.container_count(),
        120,
        "100 claimed + 20 ready again"
    );
}

#[tokio::test]
async fn a_burst_of_claims_by_one_user_stops_at_the_quota() {
    // Claims of a burst are committed together; the ones not yet committed count too.
    let h = harness_with_pool(10).await;
    h.sessions.reap().await.unwrap();
    wait_for_ready_pool(&h, 10).await;
    let claims = (0..10).map(|_| {
        let sessions = h.sessions.clone();
        tokio::spawn(async move { sessions.create(user("eve"), request("pooled")).await })
    });
    let results: Vec<_> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let granted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(granted, 3, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, SessionError::QuotaExceeded { .. }))
    );
}

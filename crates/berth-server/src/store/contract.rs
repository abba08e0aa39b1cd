//! The behaviour every [`Store`] backend must show. Each backend's tests call [`run`].

use std::collections::BTreeMap;

use berth_proto::{
    SessionState,
    lab::Class,
    user::{Role, UpdateUser},
};
use chrono::{Duration, TimeZone, Utc};

use super::{
    AttemptRecord, AuditFilter, DeliveryRecord, SessionEvent, SessionFilter, SessionRecord,
    SnapshotRecord, StateScope, Store, StoreError, TokenRecord, UserRecord, WebhookRecord,
};

fn session(id: &str, owner: &str, state: SessionState, expires_in_secs: i64) -> SessionRecord {
    // Whole milliseconds: every backend must round-trip these exactly.
    let now = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    SessionRecord {
        id: id.to_owned(),
        owner: owner.to_owned(),
        template: "default".to_owned(),
        state,
        labels: BTreeMap::from([("course".to_owned(), "docker-101".to_owned())]),
        created_at: now,
        expires_at: now + Duration::seconds(expires_in_secs),
        last_activity: now,
        container_id: None,
        agent_addr: None,
        stop_reason: None,
        agent_secret: format!("secret-{id}"),
        snapshot: None,
        hibernated_at: None,
        keepalive_until: None,
    }
}

pub async fn run(store: &dyn Store) {
    store.ping().await.unwrap();
    sessions_round_trip(store).await;
    filters_select_exactly_the_matching_sessions(store).await;
    users_are_found_by_token_hash_and_names_are_unique(store).await;
    timelines_keep_their_order_per_session(store).await;
    snapshots_are_kept_listed_and_deleted(store).await;
    lab_attempts_are_replaced_whole_and_listed_newest_first(store).await;
    classes_are_replaced_whole_listed_and_deleted(store).await;
    callback_state_is_kept_per_scope_within_its_limit(store).await;
    webhooks_and_their_deliveries_are_kept_and_found_when_due(store).await;
    api_tokens_are_found_by_hash_listed_touched_and_deleted(store).await;
    the_audit_log_is_filtered_newest_first_and_pruned(store).await;
}

async fn the_audit_log_is_filtered_newest_first_and_pruned(store: &dyn Store) {
    use berth_proto::audit::AuditEntry;
    let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    let entry = |offset: i64, actor: &str, session: Option<&str>| AuditEntry {
        at: at + Duration::seconds(offset),
        actor: actor.to_owned(),
        method: "POST".to_owned(),
        path: session.map_or("/api/v1/users".to_owned(), |s| {
            format!("/api/v1/sessions/{s}/hibernate")
        }),
        session_id: session.map(str::to_owned),
        status: 200,
        address: Some("127.0.0.1".to_owned()),
    };
    let entries = [
        entry(0, "alice", Some("s1")),
        entry(1, "admin", None),
        entry(2, "alice", Some("s2")),
        entry(2, "alice", Some("s2")),
        entry(3, "bob", Some("s1")),
    ];
    store.add_audit(&entries[..2]).await.unwrap();
    store.add_audit(&entries[2..]).await.unwrap();
    let list = |filter: AuditFilter| async move {
        let filter = AuditFilter {
            limit: if filter.limit == 0 { 100 } else { filter.limit },
            ..filter
        };
        store.list_audit(&filter).await.unwrap()
    };
    let all = list(AuditFilter::default()).await;
    assert_eq!(all.len(), 5, "two equal calls are two entries");
    assert_eq!(all[0], entries[4], "newest first");
    assert_eq!(all[4], entries[0]);
    let alices = list(AuditFilter {
        actor: Some("alice".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(alices.len(), 3);
    let s1 = list(AuditFilter {
        session_id: Some("s1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(s1, [entries[4].clone(), entries[0].clone()]);
    let window = list(AuditFilter {
        since: Some(at + Duration::seconds(1)),
        until: Some(at + Duration::seconds(3)),
        ..Default::default()
    })
    .await;
    assert_eq!(window.len(), 3, "since is in, until is out");
    assert_eq!(
        list(AuditFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .len(),
        2
    );

    store.prune_audit(at + Duration::seconds(2)).await.unwrap();
    assert_eq!(list(AuditFilter::default()).await.len(), 3);
}

async fn api_tokens_are_found_by_hash_listed_touched_and_deleted(store: &dyn Store) {
    use berth_proto::token::{ApiToken, Scope};
    let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    let token = |id: &str, owner: &str, offset: i64| TokenRecord {
        token: ApiToken {
            id: id.to_owned(),
            name: format!("name-{id}"),
            owner: owner.to_owned(),
            scopes: vec![Scope::SessionsRead, Scope::Files],
            created_at: at + Duration::seconds(offset),
            expires_at: Some(at + Duration::days(1)),
            last_used_at: None,
        },
        hash: format!("hash-{id}"),
    };
    store.put_token(&token("t-2", "alice", 1)).await.unwrap();
    store.put_token(&token("t-1", "alice", 0)).await.unwrap();
    store.put_token(&token("t-3", "bob", 2)).await.unwrap();
    let mut same_hash = token("t-4", "bob", 3);
    same_hash.hash = "hash-t-1".to_owned();
    assert!(matches!(
        store.put_token(&same_hash).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.token_by_hash("hash-t-1").await.unwrap(),
        Some(token("t-1", "alice", 0))
    );
    assert_eq!(store.token_by_hash("hash-none").await.unwrap(), None);
    let mut reused_id = token("t-1", "bob", 4);
    reused_id.hash = "hash-other".to_owned();
    assert!(matches!(
        store.put_token(&reused_id).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.token_by_hash("hash-other").await.unwrap(),
        None,
        "nothing written"
    );
    let ids = |tokens: Vec<TokenRecord>| -> Vec<String> {
        tokens.into_iter().map(|t| t.token.id).collect()
    };
    assert_eq!(
        ids(store.list_tokens(Some("alice")).await.unwrap()),
        ["t-1", "t-2"]
    );
    assert_eq!(
        ids(store.list_tokens(None).await.unwrap()),
        ["t-1", "t-2", "t-3"]
    );

    let used = at + Duration::minutes(5);
    store.touch_token("t-1", used).await.unwrap();
    let touched = store.token_by_hash("hash-t-1").await.unwrap().unwrap();
    assert_eq!(touched.token.last_used_at, Some(used));
    store.touch_token("t-gone", used).await.unwrap();

    assert!(store.delete_token("t-1").await.unwrap());
    assert!(!store.delete_token("t-1").await.unwrap());
    assert_eq!(
        store.token_by_hash("hash-t-1").await.unwrap(),
        None,
        "revoked"
    );
    assert_eq!(
        ids(store.list_tokens(Some("alice")).await.unwrap()),
        ["t-2"]
    );
}

async fn webhooks_and_their_deliveries_are_kept_and_found_when_due(store: &dyn Store) {
    use berth_proto::webhook::{Delivery, DeliveryAttempt, DeliveryStatus, Webhook};
    let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    let webhook = |id: &str, offset: i64| WebhookRecord {
        webhook: Webhook {
            id: id.to_owned(),
            owner: Some("alice".to_owned()),
            url: "http://127.0.0.1:9/hook".to_owned(),
            events: vec!["*".to_owned()],
            created_at: Some(at + Duration::seconds(offset)),
            secret: None,
        },
        secret: format!("whsec_{id}"),
    };
    store.put_webhook(&webhook("wh-2", 1)).await.unwrap();
    store.put_webhook(&webhook("wh-1", 0)).await.unwrap();
    assert!(matches!(
        store.put_webhook(&webhook("wh-1", 5)).await,
        Err(StoreError::Conflict(_))
    ));
    let listed: Vec<String> = store
        .list_webhooks()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.webhook.id)
        .collect();
    assert_eq!(listed, ["wh-1", "wh-2"], "oldest first");
    assert_eq!(store.list_webhooks().await.unwrap()[0], webhook("wh-1", 0));

    let delivery = |id: &str, offset: i64, next: Option<i64>| DeliveryRecord {
        delivery: Delivery {
            id: id.to_owned(),
            webhook_id: "wh-1".to_owned(),
            event: "session.running".to_owned(),
            session_id: "s1".to_owned(),
            created_at: at + Duration::seconds(offset),
            status: if next.is_some() {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::Delivered
            },
            attempts: Vec::new(),
            next_attempt_at: next.map(|n| at + Duration::seconds(n)),
        },
        payload: format!(r#"{{"id":"{id}"}}"#),
    };
    store
        .put_delivery(&delivery("m-1", 0, Some(10)))
        .await
        .unwrap();
    store
        .put_delivery(&delivery("m-2", 1, Some(5)))
        .await
        .unwrap();
    store.put_delivery(&delivery("m-3", 2, None)).await.unwrap();
    let due = |now: i64| async move {
        store
            .due_deliveries(at + Duration::seconds(now), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.delivery.id)
            .collect::<Vec<_>>()
    };
    assert!(due(4).await.is_empty());
    assert_eq!(
        due(10).await,
        ["m-2", "m-1"],
        "soonest first; delivered never due"
    );
    assert_eq!(
        store
            .due_deliveries(at + Duration::seconds(10), 1)
            .await
            .unwrap()
            .len(),
        1
    );

    // An attempt rewrites it whole: delivered, it is due no more.
    let mut done = delivery("m-2", 1, None);
    done.delivery.attempts.push(DeliveryAttempt {
        at,
        status_code: Some(204),
        error: None,
        duration_ms: 3,
    });
    store.put_delivery(&done).await.unwrap();
    assert_eq!(due(10).await, ["m-1"]);
    let log = store.list_deliveries("wh-1", 10).await.unwrap();
    let ids: Vec<&str> = log.iter().map(|d| d.delivery.id.as_str()).collect();
    assert_eq!(ids, ["m-3", "m-2", "m-1"], "newest first");
    assert_eq!(log[1], done);
    assert_eq!(store.list_deliveries("wh-1", 2).await.unwrap().len(), 2);
    assert!(store.list_deliveries("wh-2", 10).await.unwrap().is_empty());

    // Pruning forgets only what ended before the time given.
    store
        .prune_deliveries(at + Duration::seconds(2))
        .await
        .unwrap();
    let kept: Vec<String> = store
        .list_deliveries("wh-1", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.delivery.id)
        .collect();
    assert_eq!(
        kept,
        ["m-3", "m-1"],
        "m-2 was delivered and older; m-1 is pending"
    );
    store.put_delivery(&done).await.unwrap();

    assert!(store.delete_webhook("wh-1").await.unwrap());
    assert!(!store.delete_webhook("wh-1").await.unwrap());
    assert_eq!(store.list_webhooks().await.unwrap().len(), 1);
    assert_eq!(
        store.list_deliveries("wh-1", 10).await.unwrap().len(),
        3,
        "the log stays"
    );
}

async fn callback_state_is_kept_per_scope_within_its_limit(store: &dyn Store) {
    let session = StateScope::Session("s-state".into());
    let user = StateScope::User("s-state".into());
    assert!(
        store
            .put_state(&session, "cart", r#"{"items":2}"#, 2)
            .await
            .unwrap()
    );
    assert!(store.put_state(&session, "b", "true", 2).await.unwrap());
    // Full: a new key is refused and nothing is written; an existing one is replaced.
    assert!(!store.put_state(&session, "c", "1", 2).await.unwrap());
    assert_eq!(store.get_state(&session, "c").await.unwrap(), None);
    assert!(
        store
            .put_state(&session, "cart", r#"{"items":3}"#, 2)
            .await
            .unwrap()
    );
    let cart = store.get_state(&session, "cart").await.unwrap().unwrap();
    assert_eq!(cart.value, r#"{"items":3}"#);
    assert!((Utc::now() - cart.updated_at).num_seconds().abs() < 60);

    // The same name in another scope is another value.
    assert_eq!(store.get_state(&user, "cart").await.unwrap(), None);
    assert!(store.put_state(&user, "cart", "\"ünï\"", 2).await.unwrap());
    let keys = store.list_state(&session).await.unwrap();
    let listed: Vec<(&str, u64)> = keys.iter().map(|k| (k.key.as_str(), k.bytes)).collect();
    assert_eq!(listed, [("b", 4), ("cart", 11)]);
    assert_eq!(
        store.list_state(&user).await.unwrap()[0].bytes,
        7,
        "bytes, not letters"
    );

    // A claim: written once, refused after, the first value kept.
    assert!(
        store
            .insert_state(&user, "claim", "\"first\"")
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_state(&user, "claim", "\"second\"")
            .await
            .unwrap()
    );
    let claim = store.get_state(&user, "claim").await.unwrap().unwrap();
    assert_eq!(claim.value, "\"first\"");
    // Let go of only while it is still the claim one read.
    assert!(
        !store
            .delete_state_if(&user, "claim", "\"second\"")
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_state_if(&user, "claim", "\"first\"")
            .await
            .unwrap()
    );
    assert_eq!(store.get_state(&user, "claim").await.unwrap(), None);
    assert!(
        !store
            .delete_state_if(&user, "claim", "\"first\"")
            .await
            .unwrap()
    );

    assert!(store.delete_state(&session, "b").await.unwrap());
    assert!(!store.delete_state(&session, "b").await.unwrap());
    store.clear_state(&session).await.unwrap();
    assert!(store.list_state(&session).await.unwrap().is_empty());
    assert_eq!(store.list_state(&user).await.unwrap().len(), 1);
}

async fn lab_attempts_are_replaced_whole_and_listed_newest_first(store: &dyn Store) {
    let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    let attempt = |id: &str, owner: &str, offset: i64| AttemptRecord {
        attempt: berth_proto::lab::LabAttempt {
            id: id.to_owned(),
            lab: "dockerfile-basics".to_owned(),
            owner: owner.to_owned(),
            session_id: format!("s-{id}"),
            step: 1,
            steps: 2,
            started_at: at + Duration::seconds(offset),
            completed_at: None,
            duration_seconds: None,
            judgings: 0,
            hints_shown: 0,
            last_result: None,
            session_state: None,
        },
        start_snapshot: None,
        hints_shown: BTreeMap::new(),
    };
    let older = attempt("a1", "alice", 0);
    let newer = attempt("a2", "alice", 5);
    for record in [&older, &newer, &attempt("b1", "bob", 1)] {
        store.put_attempt(record).await.unwrap();
    }
    let mut progressed = older.clone();
    progressed.attempt.step = 2;
    progressed.attempt.judgings = 3;
    progressed.start_snapshot = Some("k1".to_owned());
    progressed.hints_shown.insert(1, 2);
    store.put_attempt(&progressed).await.unwrap();
    let listed = store.list_attempts("alice").await.unwrap();
    assert_eq!(listed, vec![newer, progressed], "newest first, each once");
    assert!(store.list_attempts("carol").await.unwrap().is_empty());
}

async fn snapshots_are_kept_listed_and_deleted(store: &dyn Store) {
    let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    let snapshot = |id: &str, session: &str, offset: i64| SnapshotRecord {
        id: id.to_owned(),
        session_id: session.to_owned(),
        owner: "alice".to_owned(),
        name: format!("before {id}"),
        image: format!("berth-snapshot/{session}:{id}"),
        created_at: at + Duration::seconds(offset),
    };
    let (a1, a2, b1) = (
        snapshot("k2", "sa", 2),
        snapshot("k1", "sa", 1),
        snapshot("k3", "sb", 0),
    );
    for s in [&a1, &a2, &b1] {
        store.insert_snapshot(s).await.unwrap();
    }
    assert!(matches!(
        store.insert_snapshot(&a1).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_snapshot("k2").await.unwrap(), Some(a1.clone()));
    assert_eq!(
        store.list_snapshots(Some("sa")).await.unwrap(),
        [a2.clone(), a1.clone()],
        "oldest first"
    );
    assert_eq!(store.list_snapshots(None).await.unwrap().len(), 3);
    store.delete_snapshot("k1").await.unwrap();
    store.delete_snapshot("k1").await.unwrap();
    assert_eq!(store.get_snapshot("k1").await.unwrap(), None);
    assert_eq!(store.list_snapshots(Some("sa")).await.unwrap(), [a1]);
}

async fn timelines_keep_their_order_per_session(store: &dyn Store) {
    let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    let event = |id: &str, kind: &str, offset_ms: i64| SessionEvent {
        session_id: id.to_owned(),
        at: at + Duration::milliseconds(offset_ms),
        kind: kind.to_owned(),
        message: format!("{kind} of {id}"),
        actor: (kind == "oom").then(|| "alice".to_owned()),
        data: (kind == "failed").then(|| serde_json::json!({"exit_code": 137, "why": ["oom"]})),
    };
    let events = [
        event("s-timeline-a", "restarted", 5),
        event("s-timeline-b", "failed", 1),
        event("s-timeline-a", "oom", 0),
        event("s-timeline-a", "failed", 5),
    ];
    for e in &events {
        store.add_event(e).await.unwrap();
    }
    // Oldest first; equal times keep the order they were added in.
    assert_eq!(
        store.events("s-timeline-a").await.unwrap(),
        [events[2].clone(), events[0].clone(), events[3].clone()]
    );
    assert_eq!(
        store.events("s-timeline-b").await.unwrap(),
        [events[1].clone()]
    );
    assert!(store.events("s-no-timeline").await.unwrap().is_empty());

    // Timelines go once their newest entry is older than the retention's start.
    store
        .prune_timelines(at + Duration::milliseconds(3))
        .await
        .unwrap();
    assert!(store.events("s-timeline-b").await.unwrap().is_empty());
    assert_eq!(store.events("s-timeline-a").await.unwrap().len(), 3);

    // Past its limit a timeline keeps its newest entries.
    let long = "s-timeline-long";
    for i in 0..super::TIMELINE_LIMIT + 5 {
        let offset = i64::try_from(i).unwrap();
        store
            .add_event(&event(long, &format!("e{i}"), 1000 + offset))
            .await
            .unwrap();
    }
    let kept = store.events(long).await.unwrap();
    assert_eq!(kept.len(), super::TIMELINE_LIMIT);
    assert_eq!(kept[0].kind, "e5");
    assert_eq!(
        kept.last().unwrap().kind,
        format!("e{}", super::TIMELINE_LIMIT + 4)
    );

    // A late entry (an agent's journal, collected after newer ones) is kept as the newest
    // added, shown in its time's place, and the entry added first goes.
    store.add_event(&event(long, "late", 999)).await.unwrap();
    let kept = store.events(long).await.unwrap();
    assert_eq!(kept.len(), super::TIMELINE_LIMIT);
    assert_eq!(
        (kept[0].kind.as_str(), kept[1].kind.as_str()),
        ("late", "e6")
    );
    // Nor does it make the timeline look older to retention.
    store
        .prune_timelines(at + Duration::milliseconds(1500))
        .await
        .unwrap();
    assert_eq!(
        store.events(long).await.unwrap().len(),
        super::TIMELINE_LIMIT
    );
}

async fn sessions_round_trip(store: &dyn Store) {
    let mut s = session("s-contract-1", "alice", SessionState::Creating, 60);
    store.insert_session(&s).await.unwrap();
    assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    assert!(matches!(
        store.insert_session(&s).await,
        Err(StoreError::Conflict(_))
    ));

    s.state = SessionState::Running;
    s.container_id = Some("c0ffee".to_owned());
    s.agent_addr = Some("172.18.0.5:7681".to_owned());
    s.snapshot = Some("berth-snapshot/s-contract-1:1".to_owned());
    s.hibernated_at = Some(s.created_at + Duration::seconds(5));
    s.keepalive_until = Some(s.created_at + Duration::seconds(7));
    s.labels.insert("team".to_owned(), "blue".to_owned());
    store.update_session(&s).await.unwrap();
    assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));

    let missing = session("s-never-inserted", "alice", SessionState::Running, 60);
    assert!(matches!(
        store.update_session(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.get_session("s-never-inserted").await.unwrap(), None);

    // Several rows at once, all or none.
    let mut t = session("s-contract-batch", "carol", SessionState::Pooled, 60);
    t.labels.clear();
    store.insert_session(&t).await.unwrap();
    s.agent_addr = Some("172.18.0.6:7681".to_owned());
    t.state = SessionState::Running;
    store
        .update_sessions(&[s.clone(), t.clone()])
        .await
        .unwrap();
    assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(store.get_session(&t.id).await.unwrap(), Some(t.clone()));
    let mut changed = t.clone();
    changed.state = SessionState::Stopped;
    assert!(matches!(
        store.update_sessions(&[changed, missing]).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.get_session(&t.id).await.unwrap(), Some(t));
}

async fn filters_select_exactly_the_matching_sessions(store: &dyn Store) {
    let mut other_label = session("s-contract-2", "bob", SessionState::Running, 10);
    other_label.labels = BTreeMap::from([("course".to_owned(), "k8s".to_owned())]);
    store.insert_session(&other_label).await.unwrap();
    store
        .insert_session(&session("s-contract-3", "bob", SessionState::Stopped, 5))
        .await
        .unwrap();

    let ids = |sessions: Vec<SessionRecord>| sessions.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let by_owner = SessionFilter {
        owner: Some("bob".into()),
        ..SessionFilter::default()
    };
    assert_eq!(
        ids(store.list_sessions(&by_owner).await.unwrap()),
        ["s-contract-2", "s-contract-3"]
    );

    let live_bob = SessionFilter {
        owner: Some("bob".into()),
        ..SessionFilter::live()
    };
    assert_eq!(
        ids(store.list_sessions(&live_bob).await.unwrap()),
        ["s-contract-2"]
    );

    let by_label = SessionFilter {
        labels: vec![("course".into(), "docker-101".into())],
        ..SessionFilter::default()
    };
    assert_eq!(
        ids(store.list_sessions(&by_label).await.unwrap()),
        ["s-contract-1", "s-contract-3"]
    );

    let base = session("x", "x", SessionState::Running, 0).created_at;
    let expired = SessionFilter {
        states: Some(vec![SessionState::Running]),
        expired_at: Some(base + Duration::seconds(30)),
        ..SessionFilter::default()
    };
    assert_eq!(
        ids(store.list_sessions(&expired).await.unwrap()),
        ["s-contract-2"]
    );

    let mut counts = store.count_by_state().await.unwrap();
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(
        counts,
        // s-contract-1, s-contract-2 and s-contract-batch run.
        [(SessionState::Running, 3), (SessionState::Stopped, 1)]
    );
}

async fn users_are_found_by_token_hash_and_names_are_unique(store: &dyn Store) {
    let user = UserRecord {
        id: "u-contract".to_owned(),
        name: "carol".to_owned(),
        token_hash: "ab12".to_owned(),
        created_at: Utc.timestamp_millis_opt(1_700_000_000_000).unwrap(),
        role: Role::User,
        disabled: false,
    };
    store.insert_user(&user).await.unwrap();
    assert_eq!(
        store.user_by_token_hash("ab12").await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(store.user_by_token_hash("ab13").await.unwrap(), None);
    assert_eq!(
        store.user_by_name("carol").await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(store.user_by_name("nobody").await.unwrap(), None);
    let older = UserRecord {
        id: "u-older".to_owned(),
        name: "dave".to_owned(),
        token_hash: "ef56".to_owned(),
        created_at: user.created_at - Duration::seconds(1),
        role: Role::Instructor,
        disabled: false,
    };
    store.insert_user(&older).await.unwrap();
    assert_eq!(
        store.list_users().await.unwrap(),
        [older, user.clone()],
        "oldest first"
    );
    let same_name = UserRecord {
        id: "u-other".into(),
        token_hash: "cd34".into(),
        ..user.clone()
    };
    assert!(matches!(
        store.insert_user(&same_name).await,
        Err(StoreError::Conflict(_))
    ));

    let promote = UpdateUser {
        role: Some(Role::Instructor),
        disabled: None,
    };
    let changed = store.update_user("carol", &promote).await.unwrap();
    let carol = store.user_by_token_hash("ab12").await.unwrap().unwrap();
    assert_eq!(changed, carol);
    assert_eq!(
        (carol.role, carol.created_at, carol.disabled),
        (Role::Instructor, user.created_at, false)
    );
    let disable = UpdateUser {
        role: None,
        disabled: Some(true),
    };
    let carol = store.update_user("carol", &disable).await.unwrap();
    assert_eq!((carol.role, carol.disabled), (Role::Instructor, true));
    assert_eq!(store.user_by_name("carol").await.unwrap(), Some(carol));
    assert!(matches!(
        store.update_user("nobody", &promote).await,
        Err(StoreError::NotFound(_))
    ));

    assert!(store.delete_user("carol").await.unwrap());
    assert!(!store.delete_user("carol").await.unwrap());
    assert_eq!(store.user_by_token_hash("ab12").await.unwrap(), None);
    assert_eq!(store.user_by_name("carol").await.unwrap(), None);
    let reborn = UserRecord {
        id: "u-reborn".into(),
        ..user
    };
    store.insert_user(&reborn).await.unwrap();
    assert_eq!(store.user_by_name("carol").await.unwrap(), Some(reborn));
}

async fn classes_are_replaced_whole_listed_and_deleted(store: &dyn Store) {
    let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    let class = |id: &str, offset: i64| Class {
        id: id.to_owned(),
        name: format!("class {id}"),
        instructor: "erin".to_owned(),
        members: vec!["alice".to_owned(), "bob".to_owned()],
        max_sessions: Some(2),
        created_at: at + Duration::seconds(offset),
    };
    let (later, earlier) = (class("c2", 5), class("c1", 0));
    store.put_class(&later).await.unwrap();
    store.put_class(&earlier).await.unwrap();
    let mut grown = earlier.clone();
    grown.members.push("carol".to_owned());
    store.put_class(&grown).await.unwrap();
    assert_eq!(store.get_class("c1").await.unwrap(), Some(grown.clone()));
    assert_eq!(
        store.list_classes().await.unwrap(),
        [grown, later.clone()],
        "oldest first"
    );
    store.delete_class("c1").await.unwrap();
    store.delete_class("c1").await.unwrap();
    assert_eq!(store.get_class("c1").await.unwrap(), None);
    assert_eq!(store.list_classes().await.unwrap(), [later]);
}

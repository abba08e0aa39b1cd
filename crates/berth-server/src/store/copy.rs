//! `berth store copy`: everything one store keeps, into another (SQLite to Redis when a
//! deployment grows to several instances, and back).

use super::{SessionFilter, StateScope, Store, StoreError};

/// How far a copy got; handed to the caller's progress callback as it grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyProgress {
    pub users: u64,
    pub sessions: u64,
    pub events: u64,
    pub snapshots: u64,
    pub attempts: u64,
    pub classes: u64,
    /// Callback state values (sessions', users' and the platform's notes).
    pub state: u64,
    /// Users' API tokens (their hashes: the secrets stay unknown).
    pub tokens: u64,
    /// Users' webhooks and their deliveries.
    pub webhooks: u64,
    pub deliveries: u64,
}

/// Rows between two progress reports.
const REPORT_EVERY: u64 = 100;

/// Copies users, sessions (every state), their timelines, snapshots, lab attempts, classes
/// callback state, API tokens, users' webhooks and their deliveries from `from` to `to` (a state value's
/// time becomes the copy's; the config's webhooks' deliveries are not copied),
/// calling `progress` every few rows and once at the end.
///
/// Refuses (`Conflict`) a target that already holds users, sessions or snapshots unless
/// `force`: then a session or snapshot with the same id is replaced, a user whose id or name
/// is taken is kept as the target has it, and timelines are appended to.
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    force: bool,
    mut progress: impl FnMut(&CopyProgress),
) -> Result<CopyProgress, StoreError> {
    if !force && !is_empty(to).await? {
        return Err(StoreError::Conflict(
            "the target store is not empty (it holds users, sessions or snapshots); \
             copy into an empty one, or pass --force to merge into it"
                .into(),
        ));
    }
    let mut done = CopyProgress::default();
    let mut tick = |done: &CopyProgress| {
        let rows = done.users
            + done.sessions
            + done.events
            + done.snapshots
            + done.attempts
            + done.classes
            + done.state
            + done.tokens
            + done.webhooks
            + done.deliveries;
        if rows.is_multiple_of(REPORT_EVERY) {
            progress(done);
        }
    };

    let users = from.list_users().await?;
    for user in &users {
        match to.insert_user(user).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) if force => continue,
            Err(err) => return Err(err),
        }
        done.users += 1;
        tick(&done);
    }

    let mut scopes = Vec::new();
    for session in from.list_sessions(&SessionFilter::default()).await? {
        match to.insert_session(&session).await {
            Err(StoreError::Conflict(_)) if force => to.update_session(&session).await?,
            other => other?,
        }
        done.sessions += 1;
        tick(&done);
        for event in from.events(&session.id).await? {
            to.add_event(&event).await?;
            done.events += 1;
            tick(&done);
        }
        scopes.push(StateScope::Session(session.id.clone()));
        scopes.push(StateScope::Platform(session.id));
    }

    for snapshot in from.list_snapshots(None).await? {
        match to.insert_snapshot(&snapshot).await {
            Err(StoreError::Conflict(_)) if force => {
                to.delete_snapshot(&snapshot.id).await?;
                to.insert_snapshot(&snapshot).await?;
            }
            other => other?,
        }
        done.snapshots += 1;
        tick(&done);
    }

    // Attempts and classes are replaced whole, so a forced copy needs no conflict handling.
    for class in from.list_classes().await? {
        to.put_class(&class).await?;
        done.classes += 1;
        tick(&done);
    }
    // The admin is no user of the store, and may have attempts too.
    let owners = users
        .iter()
        .map(|user| user.name.as_str())
        .chain([crate::auth::ADMIN_NAME]);
    for owner in owners {
        for attempt in from.list_attempts(owner).await? {
            to.put_attempt(&attempt).await?;
            done.attempts += 1;
            tick(&done);
        }
        scopes.push(StateScope::User(owner.to_owned()));
    }
    scopes.push(StateScope::Platform(crate::login::IDENTITY_SCOPE.into()));

    for scope in &scopes {
        for key in from.list_state(scope).await? {
            // Gone between the listing and the read: nothing to copy.
            let Some(value) = from.get_state(scope, &key.key).await? else {
                continue;
            };
            to.put_state(scope, &key.key, &value.value, usize::MAX)
                .await?;
            done.state += 1;
            tick(&done);
        }
    }

    for token in from.list_tokens(None).await? {
        match to.put_token(&token).await {
            Err(StoreError::Conflict(_)) if force => {}
            other => other?,
        }
        done.tokens += 1;
        tick(&done);
    }

    for webhook in from.list_webhooks().await? {
        match to.put_webhook(&webhook).await {
            Err(StoreError::Conflict(_)) if force => {}
            other => other?,
        }
        done.webhooks += 1;
        tick(&done);
        for delivery in from
            .list_deliveries(&webhook.webhook.id, usize::MAX)
            .await?
        {
            to.put_delivery(&delivery).await?;
            done.deliveries += 1;
            tick(&done);
        }
    }

    progress(&done);
    Ok(done)
}

async fn is_empty(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(store.list_users().await?.is_empty()
        && store
            .list_sessions(&SessionFilter::default())
            .await?
            .is_empty()
        && store.list_snapshots(None).await?.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_proto::SessionState;
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::store::{
        AttemptRecord, DeliveryRecord, RedisStore, SessionEvent, SessionRecord, SnapshotRecord,
        SqliteStore, TokenRecord, UserRecord, WebhookRecord, redis::test_server::RedisServer,
    };

    async fn everything(store: &dyn Store) -> impl PartialEq + std::fmt::Debug {
        let sessions = store
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap();
        let mut events = Vec::new();
        for s in &sessions {
            events.push(store.events(&s.id).await.unwrap());
        }
        (
            store.list_users().await.unwrap(),
            sessions,
            events,
            store.list_snapshots(None).await.unwrap(),
            store.list_attempts("alice").await.unwrap(),
            store.list_classes().await.unwrap(),
            state_of(store).await,
            store.list_webhooks().await.unwrap(),
            store.list_deliveries("wh-1", 10).await.unwrap(),
            store.list_tokens(None).await.unwrap(),
        )
    }

    /// Every callback value `fill` writes, without their times (a copy's are its own).
    async fn state_of(store: &dyn Store) -> Vec<(String, String)> {
        let mut values = Vec::new();
        for scope in [
            StateScope::Session("s-0".into()),
            StateScope::Platform("s-0".into()),
            StateScope::User("bob".into()),
            StateScope::Platform(crate::login::IDENTITY_SCOPE.into()),
        ] {
            for key in store.list_state(&scope).await.unwrap() {
                let value = store.get_state(&scope, &key.key).await.unwrap().unwrap();
                values.push((format!("{}/{}", scope.key(), key.key), value.value));
            }
        }
        values
    }

    async fn fill(store: &dyn Store) {
        let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        for (i, state) in SessionState::ALL.into_iter().enumerate() {
            let id = format!("s-{i}");
            let offset = Duration::milliseconds(i64::try_from(i).unwrap());
            store
                .insert_session(&SessionRecord {
                    id: id.clone(),
                    owner: if i % 2 == 0 { "alice" } else { "bob" }.to_owned(),
                    template: "default".to_owned(),
                    state,
                    labels: BTreeMap::from([("course".to_owned(), format!("c{i}"))]),
                    created_at: at + offset,
                    expires_at: at + Duration::hours(1),
                    last_activity: at + offset,
                    container_id: Some(format!("c-{i}")),
                    agent_addr: None,
                    stop_reason: (i == 0).then(|| "expired".to_owned()),
                    agent_secret: format!("secret-{i}"),
                    snapshot: None,
                    hibernated_at: (i == 1).then_some(at),
                    keepalive_until: None,
                })
                .await
                .unwrap();
            for kind in ["restarted", "failed"] {
                store
                    .add_event(&SessionEvent {
                        session_id: id.clone(),
                        at: at + offset,
                        kind: kind.to_owned(),
                        message: format!("{kind} {i}"),
                        actor: (i == 0).then(|| "alice".to_owned()),
                        data: Some(serde_json::json!({"i": i})),
                    })
                    .await
                    .unwrap();
            }
        }
        for (i, name) in ["alice", "bob"].into_iter().enumerate() {
            store
                .insert_user(&UserRecord {
                    id: format!("u-{name}"),
                    name: name.to_owned(),
                    token_hash: format!("hash-{name}"),
                    created_at: at + Duration::seconds(i64::try_from(i).unwrap()),
                    role: if i == 0 {
                        berth_proto::user::Role::Instructor
                    } else {
                        berth_proto::user::Role::User
                    },
                    disabled: i == 1,
                })
                .await
                .unwrap();
        }
        store
            .insert_snapshot(&SnapshotRecord {
                id: "k-1".to_owned(),
                session_id: "s-0".to_owned(),
                owner: "alice".to_owned(),
                name: "before".to_owned(),
                image: "berth-snapshot/s-0:1".to_owned(),
                created_at: at,
            })
            .await
            .unwrap();
        store
            .put_attempt(&AttemptRecord {
                attempt: berth_proto::lab::LabAttempt {
                    id: "a-1".to_owned(),
                    lab: "dockerfile-basics".to_owned(),
                    owner: "alice".to_owned(),
                    session_id: "s-0".to_owned(),
                    step: 2,
                    steps: 2,
                    started_at: at,
                    completed_at: None,
                    duration_seconds: None,
                    judgings: 1,
                    hints_shown: 0,
                    last_result: None,
                    session_state: None,
                },
                start_snapshot: Some("k-1".to_owned()),
                hints_shown: BTreeMap::from([(1, 2)]),
            })
            .await
            .unwrap();
        store
            .put_token(&TokenRecord {
                token: berth_proto::token::ApiToken {
                    id: "tok-1".to_owned(),
                    name: "ci".to_owned(),
                    owner: "alice".to_owned(),
                    scopes: vec![berth_proto::token::Scope::SessionsRead],
                    created_at: at,
                    expires_at: None,
                    last_used_at: Some(at),
                },
                hash: "hash-tok-1".to_owned(),
            })
            .await
            .unwrap();
        store
            .put_webhook(&WebhookRecord {
                webhook: berth_proto::webhook::Webhook {
                    id: "wh-1".to_owned(),
                    owner: Some("alice".to_owned()),
                    url: "http://127.0.0.1:9/".to_owned(),
                    events: vec!["*".to_owned()],
                    created_at: Some(at),
                    secret: None,
                },
                secret: "whsec_x".to_owned(),
            })
            .await
            .unwrap();
        store
            .put_delivery(&DeliveryRecord {
                delivery: berth_proto::webhook::Delivery {
                    id: "msg-1".to_owned(),
                    webhook_id: "wh-1".to_owned(),
                    event: "session.running".to_owned(),
                    session_id: "s-0".to_owned(),
                    created_at: at,
                    status: berth_proto::webhook::DeliveryStatus::Pending,
                    attempts: Vec::new(),
                    next_attempt_at: Some(at),
                },
                payload: "{}".to_owned(),
            })
            .await
            .unwrap();
        store
            .put_state(&StateScope::Session("s-0".into()), "cart", "[1,2]", 8)
            .await
            .unwrap();
        store
            .put_state(&StateScope::Platform("s-0".into()), "ready", "{}", 8)
            .await
            .unwrap();
        let identities = StateScope::Platform(crate::login::IDENTITY_SCOPE.into());
        store
            .put_state(&identities, "id:github:7", r#""bob""#, 8)
            .await
            .unwrap();
        store
            .put_state(
                &StateScope::User("bob".into()),
                "prefs",
                r#"{"dark":true}"#,
                8,
            )
            .await
            .unwrap();
        store
            .put_class(&berth_proto::lab::Class {
                id: "c-1".to_owned(),
                name: "docker 101".to_owned(),
                instructor: "alice".to_owned(),
                members: vec!["bob".to_owned()],
                max_sessions: None,
                created_at: at,
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn copies_sqlite_to_redis_and_back_unchanged() {
        let sqlite = SqliteStore::in_memory().await.unwrap();
        fill(&sqlite).await;
        let server = RedisServer::start();
        let redis = RedisStore::open(&server.url()).await.unwrap();

        let mut reports = Vec::new();
        let done = copy(&sqlite, &redis, false, |p| reports.push(*p))
            .await
            .unwrap();
        let states = u64::try_from(SessionState::ALL.len()).unwrap();
        assert_eq!(
            done,
            CopyProgress {
                users: 2,
                sessions: states,
                events: 2 * states,
                snapshots: 1,
                attempts: 1,
                classes: 1,
                state: 4,
                tokens: 1,
                webhooks: 1,
                deliveries: 1,
            }
        );
        assert_eq!(reports.last(), Some(&done));
        assert_eq!(everything(&redis).await, everything(&sqlite).await);

        let back = SqliteStore::in_memory().await.unwrap();
        copy(&redis, &back, false, |_| {}).await.unwrap();
        assert_eq!(everything(&back).await, everything(&sqlite).await);
    }

    #[tokio::test]
    async fn refuses_a_target_that_is_not_empty_unless_forced() {
        let from = SqliteStore::in_memory().await.unwrap();
        fill(&from).await;
        let to = SqliteStore::in_memory().await.unwrap();
        fill(&to).await;
        assert!(matches!(
            copy(&from, &to, false, |_| {}).await,
            Err(StoreError::Conflict(_))
        ));
        let done = copy(&from, &to, true, |_| {}).await.unwrap();
        assert_eq!(done.users, 0, "users already there are kept");
        let sessions = to.list_sessions(&SessionFilter::default()).await.unwrap();
        assert_eq!(
            sessions,
            from.list_sessions(&SessionFilter::default()).await.unwrap()
        );
    }
}

//! Webhooks (docs/integration.md): sessions' lifecycle and custom events, posted to the
//! operator's endpoints (`[[webhooks]]`, every session) and users' (`POST /api/v1/webhooks`,
//! their own sessions), signed the Standard Webhooks way.
//!
//! Announcing costs the announcer one channel send ([`Emitter`]): the actor never waits on a
//! receiver. [`Dispatcher::spawn`] turns each announcement into one delivery per webhook that
//! wants it, kept in the store before anything is posted, and posts what is due: each leased
//! in the store and tried in a task of its own, bounded by `webhook_delivery.timeout_seconds`,
//! so a slow receiver holds up nothing but its own deliveries. A failed attempt is tried again after the next step of
//! `webhook_delivery.retry_seconds`; deliveries pending when the control plane stops are
//! taken up again when one leads. Only the lifecycle leader posts, so a delivery goes out
//! once per attempt however many instances run (receivers dedupe by `webhook-id` across a
//! change of leader).

pub mod signature;

use std::{sync::Arc, time::Duration};

use berth_proto::webhook::{Delivery, DeliveryAttempt, DeliveryStatus, wants};
use chrono::Utc;
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};

use crate::{
    config::{WebhookConfig, WebhookDeliveryConfig},
    sessions::SessionManager,
    store::{DeliveryRecord, SessionRecord, Store, StoreError},
};

/// How often due deliveries are looked for when nothing new was announced.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries taken from the store per look.
const BATCH: usize = 64;
/// How often the log's deliveries past `webhook_delivery.log_days` are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long past its timeout an attempt's lease lasts (the webhook's lookup, the record).
const LEASE_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// One event of one session, to every webhook that wants it.
#[derive(Debug)]
pub struct Announcement {
    event: &'static str,
    session: SessionRecord,
    detail: serde_json::Value,
}

/// Where events are announced; cheap to clone. The default announces to nobody (tests of the
/// session manager alone).
#[derive(Debug, Clone, Default)]
pub struct Emitter(Option<mpsc::UnboundedSender<Announcement>>);

impl Emitter {
    /// `event` (one of `berth_proto::webhook::EVENT_TYPES`) happened to `session`; `detail`'s
    /// fields join the payload's `data` beside `session`.
    pub fn announce(
        &self,
        event: &'static str,
        session: &SessionRecord,
        detail: serde_json::Value,
    ) {
        if let Some(sender) = &self.0 {
            // The dispatcher gone means the instance is stopping: nobody is left to post.
            let _ = sender.send(Announcement {
                event,
                session: session.clone(),
                detail,
            });
        }
    }
}

/// A webhook as the sender needs it.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    key: Vec<u8>,
}

#[derive(Debug)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    operators: Vec<WebhookConfig>,
    delivery: WebhookDeliveryConfig,
    client: reqwest::Client,
    due: Notify,
}

/// The id of the config's `index`-th webhook.
pub fn config_webhook_id(index: usize) -> String {
    format!("config-{index}")
}

impl Dispatcher {
    /// The emitter to announce with, and the dispatcher to [`Self::spawn`].
    pub fn new(
        store: Arc<dyn Store>,
        operators: Vec<WebhookConfig>,
        delivery: WebhookDeliveryConfig,
    ) -> (Emitter, mpsc::UnboundedReceiver<Announcement>, Arc<Self>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(delivery.timeout_seconds))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let dispatcher = Arc::new(Self {
            store,
            operators,
            delivery,
            client,
            due: Notify::new(),
        });
        (Emitter(Some(sender)), receiver, dispatcher)
    }

    /// Takes announcements in and posts what is due while `sessions` leads, until aborted.
    pub fn spawn(
        self: Arc<Self>,
        mut announcements: mpsc::UnboundedReceiver<Announcement>,
        sessions: SessionManager,
    ) -> [JoinHandle<()>; 2] {
        let intake = {
            let dispatcher = self.clone();
            tokio::spawn(async move {
                while let Some(announcement) = announcements.recv().await {
                    if let Err(err) = dispatcher.enqueue(announcement).await {
                        tracing::warn!(%err, "webhooks: an event's deliveries were not kept");
                    }
                    dispatcher.due.notify_one();
                }
            })
        };
        let sender = tokio::spawn(async move {
            let mut pruned = std::time::Instant::now();
            loop {
                let _ = tokio::time::timeout(POLL, self.due.notified()).await;
                if !sessions.leads() {
                    continue;
                }
                self.post_due().await;
                if pruned.elapsed() >= PRUNE_EVERY {
                    pruned = std::time::Instant::now();
                    let days = chrono::TimeDelta::days(self.delivery.log_days as i64);
                    if let Err(err) = self.store.prune_deliveries(Utc::now() - days).await {
                        tracing::warn!(%err, "webhooks: old deliveries not pruned; retrying later");
                    }
                }
            }
        });
        [intake, sender]
    }

    /// One pending delivery per webhook that wants the event.
    async fn enqueue(&self, announcement: Announcement) -> Result<(), StoreError> {
        let Announcement {
            event,
            session,
            detail,
        } = announcement;
        if let Some(entry) = crate::sessions::timeline::lifecycle_entry(event, &session.id, &detail)
            && let Err(err) = self.store.add_event(&entry).await
        {
            tracing::warn!(%err, session = session.id, event, "a timeline entry was not kept");
        }
        let mut targets: Vec<String> = self
            .operators
            .iter()
            .enumerate()
            .filter(|(_, hook)| wants(&hook.events, event))
            .map(|(index, _)| config_webhook_id(index))
            .collect();
        // The admin's hear every session; users' (while allowed) their own.
        let users_allowed = self.delivery.user_webhooks;
        targets.extend(
            self.store
                .list_webhooks()
                .await?
                .into_iter()
                .map(|record| record.webhook)
                .filter(|hook| match &hook.owner {
                    None => true,
                    Some(owner) => users_allowed && *owner == session.owner,
                })
                .filter(|hook| wants(&hook.events, event))
                .map(|hook| hook.id),
        );
        if targets.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let mut data = serde_json::json!({ "session": session.to_public() });
        if let (Some(data), serde_json::Value::Object(detail)) = (data.as_object_mut(), detail) {
            data.extend(detail);
        }
        let payload = serde_json::json!({
            "type": event,
            "timestamp": now,
            "data": data,
        })
        .to_string();
        for webhook_id in targets {
            let delivery = Delivery {
                id: format!("msg_{}", crate::ids::user_id()),
                webhook_id,
                event: event.to_owned(),
                session_id: session.id.clone(),
                created_at: now,
                status: DeliveryStatus::Pending,
                attempts: Vec::new(),
                next_attempt_at: Some(now),
            };
            self.store
                .put_delivery(&DeliveryRecord {
                    delivery,
                    payload: payload.clone(),
                })
                .await?;
        }
        Ok(())
    }

    /// Starts an attempt for every due delivery not already being tried.
    async fn post_due(self: &Arc<Self>) {
        let due = match self.store.due_deliveries(Utc::now(), BATCH).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(%err, "webhooks: cannot read due deliveries; retrying");
                return;
            }
        };
        // Each is leased first: due again only once its attempt must have ended, so what
        // hangs on a slow receiver is never looked at again meanwhile and the next look finds
        // the deliveries behind it.
        let lease = chrono::TimeDelta::seconds(self.delivery.timeout_seconds as i64) + LEASE_MARGIN;
        for mut record in due {
            record.delivery.next_attempt_at = Some(Utc::now() + lease);
            if let Err(err) = self.store.put_delivery(&record).await {
                tracing::warn!(%err, "webhooks: cannot lease a delivery; retrying");
                return;
            }
            let dispatcher = self.clone();
            tokio::spawn(async move { dispatcher.attempt(record).await });
        }
    }

    /// Where a webhook posts: the config's, or a user's from the store (gone: `None`).
    async fn endpoint(&self, webhook_id: &str) -> Result<Option<Endpoint>, StoreError> {
        if let Some(index) = webhook_id.strip_prefix("config-") {
            return Ok(index
                .parse::<usize>()
                .ok()
                .and_then(|index| self.operators.get(index))
                .and_then(|hook| {
                    Some(Endpoint {
                        url: hook.url.clone(),
                        key: signature::key_of(&hook.secret)?,
                    })
                }));
        }
        Ok(self
            .store
            .list_webhooks()
            .await?
            .into_iter()
            .find(|record| record.webhook.id == webhook_id)
            .and_then(|record| {
                Some(Endpoint {
                    url: record.webhook.url,
                    key: signature::key_of(&record.secret)?,
                })
            }))
    }

    /// Posts one delivery once and records how it went.
    async fn attempt(&self, mut record: DeliveryRecord) {
        let started = std::time::Instant::now();
        let at = Utc::now();
        let outcome = match self.endpoint(&record.delivery.webhook_id).await {
            Ok(Some(endpoint)) => self.post(&endpoint, &record).await,
            Ok(None) => Outcome::WebhookGone,
            Err(err) => {
                tracing::warn!(%err, "webhooks: cannot look the webhook up; retrying");
                return;
            }
        };
        let (status_code, error, may_retry) = match outcome {
            Outcome::Delivered(code) => (Some(code), None, false),
            Outcome::NotDelivered { status_code, error } => (status_code, Some(error), true),
            Outcome::WebhookGone => (None, Some("the webhook was deleted".to_owned()), false),
        };
        let delivered = error.is_none();
        let delivery = &mut record.delivery;
        delivery.attempts.push(DeliveryAttempt {
            at,
            status_code,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
        });
        let retry = self
            .delivery
            .retry_seconds
            .get(delivery.attempts.len() - 1)
            .filter(|_| may_retry);
        (delivery.status, delivery.next_attempt_at) = match retry {
            _ if delivered => (DeliveryStatus::Delivered, None),
            Some(seconds) => (
                DeliveryStatus::Pending,
                Some(at + chrono::TimeDelta::seconds(*seconds as i64)),
            ),
            None => (DeliveryStatus::Failed, None),
        };
        if let Err(err) = self.store.put_delivery(&record).await {
            // Still pending in the store: it is tried again, and the receiver dedupes.
            tracing::warn!(%err, delivery = %record.delivery.id, "webhooks: attempt not recorded");
        }
    }

    async fn post(&self, endpoint: &Endpoint, record: &DeliveryRecord) -> Outcome {
        let id = &record.delivery.id;
        let timestamp = Utc::now().timestamp();
        let signed = signature::sign(&endpoint.key, id, timestamp, &record.payload);
        let sent = self
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("berth/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(record.payload.clone())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => {
                Outcome::Delivered(answer.status().as_u16())
            }
            Ok(answer) => Outcome::NotDelivered {
                status_code: Some(answer.status().as_u16()),
                error: format!("answered {}", answer.status()),
            },
            Err(err) if err.is_timeout() => Outcome::NotDelivered {
                status_code: None,
                error: format!(
                    "no answer within {} s (webhook_delivery.timeout_seconds)",
                    self.delivery.timeout_seconds
                ),
            },
            Err(err) => Outcome::NotDelivered {
                status_code: None,
                error: format!("could not post: {err}"),
            },
        }
    }
}

/// How one attempt went.
enum Outcome {
    /// A 2xx.
    Delivered(u16),
    /// Another status, or no answer: tried again while the schedule lasts.
    NotDelivered {
        status_code: Option<u16>,
        error: String,
    },
    /// Deleted since the event: nothing to post to, ever.
    WebhookGone,
}

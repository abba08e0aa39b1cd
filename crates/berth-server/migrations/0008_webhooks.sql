-- Users' webhooks and every delivery (the config's webhooks live in the config; their
-- deliveries are here too). Bodies are JSON (`store::WebhookRecord`, `store::DeliveryRecord`);
-- `next_attempt_at` is set while a delivery is pending, for the sender to find what is due.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

-- The audit log: every state-changing call. `body` is `berth_proto::audit::AuditEntry` as
-- JSON; `at`, `actor` and `session_id` are columns for the admin's filters.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    session_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

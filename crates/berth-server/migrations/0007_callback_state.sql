-- The callback API's key-value state (`/api/v1/self/state`, `/self/user-state`) and the
-- platform's notes on a session (its app's readiness). `scope` is `session:ID`, `user:NAME`
-- or `platform:ID`; `value` is JSON text.
CREATE TABLE callback_state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Attempts at labs: one JSON document each (store::AttemptRecord).
CREATE TABLE lab_attempts (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX lab_attempts_owner ON lab_attempts (owner, started_at);

-- Hibernation: the snapshot image that holds a sleeping session's files, when it slept, and
-- until when its owner asked it to stay awake.
ALTER TABLE sessions ADD COLUMN snapshot TEXT;
ALTER TABLE sessions ADD COLUMN hibernated_at INTEGER;
ALTER TABLE sessions ADD COLUMN keepalive_until INTEGER;

-- Named snapshots (checkpoints) a user made of a running session, to fork new sessions from.
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    image TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX snapshots_by_session ON snapshots (session_id);
CREATE INDEX snapshots_by_owner ON snapshots (owner);

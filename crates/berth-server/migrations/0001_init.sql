CREATE TABLE sessions (
    id             TEXT PRIMARY KEY NOT NULL,
    owner          TEXT NOT NULL,
    template       TEXT NOT NULL,
    state          TEXT NOT NULL,
    labels         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    last_activity  INTEGER NOT NULL,
    container_id   TEXT,
    stop_reason    TEXT,
    agent_secret   TEXT NOT NULL
) STRICT;

CREATE INDEX sessions_by_owner_state ON sessions (owner, state);
CREATE INDEX sessions_by_state_expiry ON sessions (state, expires_at);

CREATE TABLE users (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
) STRICT;

-- Users' API tokens beside their login token: `body` is `store::TokenRecord` as JSON, `hash`
-- the secret's SHA-256 (the secret itself is never kept).
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX api_tokens_by_owner ON api_tokens (owner, created_at);

-- Roles (user, instructor) and classes: an instructor's rosters, one JSON document each
-- (berth_proto::lab::Class).
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
CREATE TABLE classes (
    id TEXT PRIMARY KEY,
    instructor TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);

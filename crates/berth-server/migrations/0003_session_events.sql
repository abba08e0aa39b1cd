-- A session's timeline: what happened to it that its owner should know (a restart that lost
-- its processes, a failure and its reason).
CREATE TABLE session_events (
    session_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX session_events_by_session ON session_events (session_id, at);

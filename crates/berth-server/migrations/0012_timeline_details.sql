-- Who did what on a session's timeline, and details for programs (a command's exit code, a
-- path, a port) as JSON.
ALTER TABLE session_events ADD COLUMN actor TEXT;
ALTER TABLE session_events ADD COLUMN data TEXT;

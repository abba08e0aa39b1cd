-- Hibernation: the snapshot image that holds a sleeping session's files, and when it slept.
ALTER TABLE sessions ADD COLUMN snapshot TEXT;
ALTER TABLE sessions ADD COLUMN hibernated_at INTEGER;

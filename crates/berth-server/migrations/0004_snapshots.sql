-- Hibernation: the snapshot image that holds a sleeping session's files, when it slept, and
-- until when its owner asked it to stay awake.
ALTER TABLE sessions ADD COLUMN snapshot TEXT;
ALTER TABLE sessions ADD COLUMN hibernated_at INTEGER;
ALTER TABLE sessions ADD COLUMN keepalive_until INTEGER;

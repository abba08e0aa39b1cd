ALTER TABLE sessions ADD COLUMN agent_addr TEXT;

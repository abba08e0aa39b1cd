-- Users the admin disabled: refused at login and on every token until enabled again.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

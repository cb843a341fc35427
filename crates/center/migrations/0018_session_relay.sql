-- Issue 19 item 3: a session carried by the provider relay says so. Each end reports
-- the relay ("IP:port") with "up"; the session keeps the latest one reported.
ALTER TABLE sessions ADD COLUMN relay TEXT;
ALTER TABLE session_reports ADD COLUMN relay TEXT;

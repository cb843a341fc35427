-- Evidence files of check-sheet answers (issue 11, R-SVC-3). The content is a file
-- under <data>/attachments/<id>; this row commits only after the file is whole on disk.
CREATE TABLE checksheet_attachments (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX checksheet_attachments_org ON checksheet_attachments (org_id, created_ms);

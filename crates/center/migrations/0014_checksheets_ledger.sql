-- Check-sheet submissions (issue 11, R-SVC-3, R-POL-6). Every submission is kept, so
-- two can be compared; the latest one per (organisation, sheet) is the standing one.
-- `body` is the submission as answered (JSON), `score` the centre's judgement of it.
CREATE TABLE checksheet_submissions (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    catalogue    TEXT NOT NULL,
    version      TEXT NOT NULL,
    sheet        TEXT NOT NULL,
    body         TEXT NOT NULL,
    score        TEXT NOT NULL,
    percent      BIGINT NOT NULL,
    submitted_by TEXT NOT NULL,
    submitted_ms BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    -- When the centre recorded the 30-day warning and the expiry (once each).
    warned_ms    BIGINT,
    expired_ms   BIGINT
);
CREATE INDEX checksheet_submissions_org ON checksheet_submissions (org_id, sheet, submitted_ms);

-- The ledger (issue 11, R-SVC-2): rows an organisation types in — its connections
-- outside dodvpn and its equipment — one JSON body each, keyed by its own reference.
-- Connections through dodvpn are not stored here; they are derived from the grants.
CREATE TABLE ledger_rows (
    org_id     TEXT NOT NULL,
    kind       TEXT NOT NULL,  -- outside | equipment
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (org_id, kind, id)
);
-- What the agent says it runs (version, OS), reported at start and kept for the ledger.
ALTER TABLE devices ADD COLUMN software TEXT;

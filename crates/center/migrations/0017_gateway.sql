-- The gateway centre (issue 12, R-SVC-1; TR 5.1 b, C 4-8-1/4-8-2, 3-6-1): which
-- registered devices are gateway nodes, the provider's categories of sites (update
-- servers), each organisation's choices, the applications for sites with their
-- decisions, and the nodes' request logs and daily digests.
CREATE TABLE gateway_nodes (
    device_id  TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);
CREATE TABLE gateway_categories (
    name       TEXT PRIMARY KEY,
    title_en   TEXT NOT NULL,
    title_ja   TEXT NOT NULL,
    -- JSON list of allowlist entries.
    entries    TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE gateway_org_settings (
    org_id     TEXT PRIMARY KEY,
    -- JSON list of category names the organisation opted into.
    categories TEXT NOT NULL,
    -- device | password (C 4-8-2)
    user_auth  TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
-- status: pending, approved, refused, withdrawn. An approved entry is in force until
-- expires_ms (NULL: until withdrawn).
CREATE TABLE gateway_applications (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL,
    entry         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    applicant     TEXT NOT NULL,
    status        TEXT NOT NULL,
    decided_by    TEXT,
    decision_note TEXT,
    expires_ms    BIGINT,
    created_ms    BIGINT NOT NULL,
    decided_ms    BIGINT
);
CREATE INDEX gateway_applications_org ON gateway_applications (org_id, status);
-- Append-only: the centre never updates or deletes a row (no route does).
CREATE TABLE gateway_log (
    id          BIGINT PRIMARY KEY,
    node_id     TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    org_id      TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    user_name   TEXT,
    host        TEXT NOT NULL,
    port        BIGINT NOT NULL,
    method      TEXT NOT NULL,
    bytes_up    BIGINT NOT NULL,
    bytes_down  BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    received_ms BIGINT NOT NULL
);
CREATE INDEX gateway_log_org ON gateway_log (org_id, at_ms);
CREATE TABLE gateway_digests (
    node_id     TEXT NOT NULL,
    day         TEXT NOT NULL,
    records     BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, day)
);

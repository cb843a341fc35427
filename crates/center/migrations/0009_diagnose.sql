-- Exposure diagnosis (issue 14, R-SVC-5). The public addresses an organisation shows
-- the Internet: only these may be diagnosed on its behalf. Only the provider changes
-- the list (every change audited).
CREATE TABLE public_addresses (
    org_id     TEXT NOT NULL,
    cidr       TEXT NOT NULL,
    added_ms   BIGINT NOT NULL,
    PRIMARY KEY (org_id, cidr)
);
-- One diagnosis run: who started it, against what, and what it found (JSON), so the
-- next run can be compared with it (new / fixed / unchanged).
CREATE TABLE diagnose_runs (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT NOT NULL,
    targets    TEXT NOT NULL,
    findings   TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX diagnose_runs_org ON diagnose_runs (org_id, created_ms);

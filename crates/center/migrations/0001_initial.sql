-- One schema for both back-ends (SQLite embedded default, PostgreSQL for replicas):
-- only TEXT and BIGINT columns, ids assigned by the centre, so the DDL is portable.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE orgs (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    kind              TEXT NOT NULL,
    checksheet_passed BIGINT NOT NULL DEFAULT 0,
    policy            TEXT NOT NULL,
    created_ms        BIGINT NOT NULL
);

CREATE TABLE admins (
    id          TEXT PRIMARY KEY,
    org_id      TEXT,
    secret_hash TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);

CREATE TABLE orders (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    model      TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    serial      TEXT NOT NULL UNIQUE,
    model       TEXT NOT NULL,
    owner_org   TEXT NOT NULL,
    order_id    TEXT,
    status      TEXT NOT NULL,
    endpoint    TEXT,
    subnets     TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX devices_owner ON devices (owner_org);

CREATE TABLE certs (
    serial      BIGINT PRIMARY KEY,
    tier        TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    csr_hash    TEXT NOT NULL UNIQUE,
    pem         TEXT NOT NULL,
    not_after   BIGINT NOT NULL,
    installed   BIGINT NOT NULL DEFAULT 0,
    revoked_ms  BIGINT,
    reason      TEXT,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX certs_device ON certs (device_id, tier);

CREATE TABLE groups_ (
    name       TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE memberships (
    group_name TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (group_name, device_id)
);
CREATE INDEX memberships_device ON memberships (device_id);

CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    approver_org     TEXT NOT NULL,
    applicant_org    TEXT NOT NULL,
    applicant_device TEXT,
    not_before       BIGINT NOT NULL,
    not_after        BIGINT NOT NULL,
    closed_ms        BIGINT
);

CREATE TABLE grants (
    id               TEXT PRIMARY KEY,
    applicant_device TEXT NOT NULL,
    target_device    TEXT NOT NULL,
    status           TEXT NOT NULL,
    version          BIGINT NOT NULL,
    info_applicant   TEXT NOT NULL,
    info_target      TEXT NOT NULL,
    not_after        BIGINT NOT NULL,
    created_ms       BIGINT NOT NULL,
    ended_ms         BIGINT,
    end_reason       TEXT
);
CREATE INDEX grants_applicant ON grants (applicant_device, status);
CREATE INDEX grants_target ON grants (target_device, status);

CREATE TABLE events (
    seq        BIGINT PRIMARY KEY,
    device_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX events_device ON events (device_id, seq);

CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY,
    ts_ms     BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

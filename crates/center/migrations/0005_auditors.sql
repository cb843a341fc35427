-- Auditors (issue 9, R-AUD-3): read-only credentials limited to one organisation's
-- audit trail. A table of their own, so an auditor can never be mistaken for an
-- administrator: credentials are `dodvpn-auditor.<id>.<secret>`, only SHA-256(secret)
-- is stored.
CREATE TABLE auditors (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);

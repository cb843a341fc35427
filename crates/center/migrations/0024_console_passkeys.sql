-- WebAuthn passkeys of console accounts (issue 10, R-OPS-2). `passkey` is the
-- credential as webauthn-rs keeps it (public key, counter; no secret).
CREATE TABLE console_passkeys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    credential_id TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    passkey       TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    last_used_ms  BIGINT
);
CREATE INDEX console_passkeys_user ON console_passkeys (user_id);

-- A registration or login ceremony in progress: one use, five minutes. Kept in the
-- database, not in memory, so replicas behind one address share it.
CREATE TABLE console_ceremonies (
    id_hash    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('register', 'login')),
    user_id    TEXT NOT NULL,
    state      TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);

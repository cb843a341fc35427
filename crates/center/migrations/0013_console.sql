-- The web console's human accounts (issue 10, R-OPS-2): people who log in with a
-- password and a second factor, each with one role scoped to one organisation or to
-- the whole provider. Tables of their own, so a person can never be mistaken for an
-- API credential. Secrets are stored only as hashes: Argon2id for passwords,
-- SHA-256 for high-entropy random values (session ids, invitation and recovery codes).
CREATE TABLE console_users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    -- provider_admin, provider_operator, auditor, device_provider, org_admin, org_approver
    role            TEXT NOT NULL CHECK (role IN ('provider_admin', 'provider_operator', 'auditor',
                                                  'device_provider', 'org_admin', 'org_approver')),
    -- NULL: provider-wide (only provider_admin, provider_operator and auditor may be).
    org_id          TEXT,
    password_hash   TEXT NOT NULL,
    totp_secret     TEXT NOT NULL,
    -- The last RFC 6238 time step accepted: a code is never accepted twice.
    totp_last_step  BIGINT NOT NULL DEFAULT 0,
    failed_logins   BIGINT NOT NULL DEFAULT 0,
    locked_until_ms BIGINT NOT NULL DEFAULT 0,
    created_ms      BIGINT NOT NULL,
    disabled_ms     BIGINT
);
CREATE TABLE console_recovery_codes (
    user_id    TEXT NOT NULL,
    code_hash  TEXT NOT NULL,
    used_ms    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
-- One-time invitations: the first provider administrator's (printed by
-- `dodvpn center` at initialisation) and those an administrator issues.
CREATE TABLE console_invites (
    code_hash   TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    org_id      TEXT,
    created_by  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    used_ms     BIGINT
);
-- Logged-in browsers. stage 'password': the password was right, the second factor is
-- still owed; 'full': logged in. Idle and absolute limits are checked on every request.
CREATE TABLE console_sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    stage       TEXT NOT NULL CHECK (stage IN ('password', 'full')),
    csrf        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    last_ms     BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

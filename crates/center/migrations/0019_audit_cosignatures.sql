-- Devices as witnesses of the audit log (issue 15 step 3, R-AUD-4).
-- One cosignature per device and checkpoint size: the line the device sent
-- (witness.rs format), verified before it was stored against the public key of
-- the device's current service certificate (kept here with its serial, so the
-- export can be checked without the certificate table).
CREATE TABLE audit_cosignatures (
    size        BIGINT NOT NULL,
    device_id   TEXT NOT NULL,
    line        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    cert_serial BIGINT NOT NULL,
    time_ms     BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (size, device_id)
);
-- Failed proofs reported by witnesses: one row per device and kept checkpoint
-- (later reports against the same kept checkpoint count up, so a centre that
-- keeps failing does not flood the list or the audit log).
CREATE TABLE audit_alerts (
    id          BIGINT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    kept_size   BIGINT NOT NULL,
    kept_root   TEXT NOT NULL,
    new_size    BIGINT NOT NULL,
    new_root    TEXT NOT NULL,
    problem     TEXT NOT NULL,
    message     TEXT NOT NULL,
    kept_note   TEXT NOT NULL,
    reports     BIGINT NOT NULL,
    first_ms    BIGINT NOT NULL,
    last_ms     BIGINT NOT NULL,
    UNIQUE (device_id, kept_size, kept_root)
);

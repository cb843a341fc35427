-- Session reports (R-AUD-2, TR A.1 c three-point audit). A session is one IKE SA,
-- named by its SPI pair "{spi_i:016x}-{spi_r:016x}"; both ends report on it.

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    -- The two ends, in lexicographic order (the centre does not know which initiated).
    device_lo  TEXT NOT NULL,
    device_hi  TEXT NOT NULL,
    -- JSON array: every grant either end said this IKE SA serves.
    grant_ids  TEXT NOT NULL,
    -- up | down (down once either end reported it down)
    status     TEXT NOT NULL,
    first_ms   BIGINT NOT NULL,
    last_ms    BIGINT NOT NULL,
    cut_ms     BIGINT,
    cut_by     TEXT,
    cut_reason TEXT
);
CREATE INDEX sessions_status ON sessions (status, last_ms);
CREATE INDEX sessions_lo ON sessions (device_lo);
CREATE INDEX sessions_hi ON sessions (device_hi);

-- Every accepted report, once: the key makes a repeated report a no-op.
CREATE TABLE session_reports (
    session_id  TEXT NOT NULL,
    reporter    TEXT NOT NULL,
    event       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    grant_ids   TEXT NOT NULL,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL,
    packets_in  BIGINT NOT NULL,
    packets_out BIGINT NOT NULL,
    reason      TEXT,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (session_id, reporter, event, at)
);

-- RFC 3161 timestamps of audit checkpoints (issue 15, R-AUD-4; TR 5.1 f): one token per
-- stamped checkpoint size. The token is the TSA's DER TimeStampToken, base64; it was
-- verified (imprint = SHA-256 of the checkpoint body, timeStamping EKU, chain to the
-- configured TSA CA) before it was stored.
CREATE TABLE audit_timestamps (
    size     BIGINT PRIMARY KEY,
    token    TEXT NOT NULL,
    gen_time BIGINT NOT NULL,
    tsa      TEXT NOT NULL
);

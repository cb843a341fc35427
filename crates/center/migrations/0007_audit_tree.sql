-- The Merkle tree over the audit records (issue 15, R-AUD-4, RFC 9162). Every complete
-- subtree: level 0 is the leaf of record seq = idx + 1; node (level, idx) covers records
-- idx*2^level+1 .. (idx+1)*2^level. Written in the same transaction as the record
-- (serialised by the writers' lock, so replicas build one tree). Hashes as lower-case hex.
CREATE TABLE audit_tree (
    level INTEGER NOT NULL,
    idx   BIGINT NOT NULL,
    hash  TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);
-- Signed checkpoints (tree size, root, time), one per size: the first replica to sign a
-- size wins, the others find it there.
CREATE TABLE audit_checkpoints (
    size    BIGINT PRIMARY KEY,
    root    TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    note    TEXT NOT NULL
);

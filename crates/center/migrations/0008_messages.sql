-- Store-and-forward messages (issue 13, R-SVC-4). The centre keeps ciphertext only (as
-- files in its data directory) and the minimal metadata below; it never holds a key that
-- opens a message.
--
-- The directory of recipients' encryption certificates. A mailbox is an organisation's
-- (a device or site key: 'org:<org>') or a person's (a key on the person's PKCS#11 token:
-- 'person:<org>:<name>'); notices go to the device that holds the key.
CREATE TABLE message_directory (
    mailbox    TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    cert_pem   TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
-- Who may write to whom: one row per permitted (sender organisation, recipient
-- organisation). No row: denied (deny by default).
CREATE TABLE message_policy (
    from_org   TEXT NOT NULL,
    to_org     TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (from_org, to_org)
);
CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    sender_device     TEXT NOT NULL,
    sender_org        TEXT NOT NULL,
    size              BIGINT NOT NULL,
    created_ms        BIGINT NOT NULL,
    expires_ms        BIGINT NOT NULL,
    receipt_requested BIGINT NOT NULL
);
CREATE TABLE message_recipients (
    message_id TEXT NOT NULL,
    mailbox    TEXT NOT NULL,
    read_ms    BIGINT,
    PRIMARY KEY (message_id, mailbox)
);
CREATE INDEX message_recipients_by_mailbox ON message_recipients (mailbox);
CREATE INDEX messages_by_expiry ON messages (expires_ms);

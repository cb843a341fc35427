-- Device providers (issue 9, TR D.6 c–f): a role the provider grants an organisation
-- explicitly, limited to the owner organisations it is contracted to serve. A device
-- a device provider registers waits for its owner (or the provider) to confirm it
-- before it can be certified.
CREATE TABLE device_providers (
    org_id     TEXT PRIMARY KEY,
    granted_ms BIGINT NOT NULL
);
CREATE TABLE provider_contracts (
    provider_org TEXT NOT NULL,
    owner_org    TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (provider_org, owner_org)
);
-- The device provider organisation that registered the device (NULL: the provider).
ALTER TABLE devices ADD COLUMN registered_by TEXT;
-- When the owner's side confirmed the device (NULL: not yet). Devices registered
-- before this migration count as confirmed.
ALTER TABLE devices ADD COLUMN confirmed_ms BIGINT;
UPDATE devices SET confirmed_ms = created_ms;

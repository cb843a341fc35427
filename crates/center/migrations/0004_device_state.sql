-- TR D.6 device states (crate::device_state::DeviceState): the column takes only these
-- names. Neither back-end can add a CHECK to an existing SQLite table, so the table is
-- rebuilt the same portable way on both.

CREATE TABLE devices_checked (
    id             TEXT PRIMARY KEY,
    serial         TEXT NOT NULL UNIQUE,
    model          TEXT NOT NULL,
    owner_org      TEXT NOT NULL,
    order_id       TEXT,
    status         TEXT NOT NULL CHECK (status IN ('registered', 'certified', 'installed', 'delivered', 'service_applied', 'service_approved', 'enrolled', 'service_installed', 'in_service', 'suspended', 'revoked')),
    endpoint       TEXT,
    subnets        TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    mapped_subnets TEXT NOT NULL DEFAULT '[]'
);
INSERT INTO devices_checked (id, serial, model, owner_org, order_id, status, endpoint, subnets, created_ms, updated_ms, mapped_subnets)
    SELECT id, serial, model, owner_org, order_id, status, endpoint, subnets, created_ms, updated_ms, mapped_subnets FROM devices;
DROP TABLE devices;
ALTER TABLE devices_checked RENAME TO devices;
CREATE INDEX devices_owner ON devices (owner_org);

-- Issue 19: where a device may be reached besides the endpoint an administrator typed —
-- its local addresses and the public one the centre saw it come from, as the agent
-- reports them (PUT /api/v1/device/candidates). A JSON array of "IP:port" strings.
ALTER TABLE devices ADD COLUMN candidates TEXT NOT NULL DEFAULT '[]';

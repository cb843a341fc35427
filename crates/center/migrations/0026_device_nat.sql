-- Issue 19: what the agent's reflector probes showed of the device's NAT ('none',
-- 'cone' or 'symmetric'; NULL when it could not tell). The centre sends a pair
-- straight to the relay when hole punching between them cannot work.
ALTER TABLE devices ADD COLUMN nat TEXT;

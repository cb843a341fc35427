-- The address-mapping re-plan (R-DP-8) reads only the devices that have ranges or
-- mappings. In a network of 250,000 registered devices most have neither yet, and
-- without this index every registration with a range read them all (bench/scale.sh).
CREATE INDEX devices_with_ranges ON devices (created_ms, id)
    WHERE subnets <> '[]' OR mapped_subnets <> '[]';

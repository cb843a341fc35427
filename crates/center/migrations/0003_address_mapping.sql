-- Address mapping for overlapping site ranges (R-DP-8, TR D.7 c): per device, the
-- visible prefix of each of its subnets (JSON array, pairwise with `subnets`), as
-- allocated by the centre from the mapping space; '[]' = nothing mapped.
ALTER TABLE devices ADD COLUMN mapped_subnets TEXT NOT NULL DEFAULT '[]';

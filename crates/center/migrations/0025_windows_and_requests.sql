-- Maintenance windows with a start, an end and a contracted host and port (issue 10,
-- TR 9.2, R-POL-3), and the applications the policy refused, so that an approver sees
-- the vendors waiting for a window and a policy's dry run can say what it would add.
ALTER TABLE approvals ADD COLUMN hosts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE approvals ADD COLUMN services TEXT NOT NULL DEFAULT '[]';
-- When the applicant's devices were warned that the window is about to end.
ALTER TABLE approvals ADD COLUMN warned_ms BIGINT;
ALTER TABLE approvals ADD COLUMN opened_by TEXT;

CREATE TABLE denied_applications (
    applicant_device  TEXT NOT NULL,
    target_device     TEXT NOT NULL,
    applicant_org     TEXT NOT NULL,
    target_org        TEXT NOT NULL,
    reason            TEXT NOT NULL,
    -- The target's rule needs a window its approver has not opened.
    approval_required BIGINT NOT NULL,
    first_ms          BIGINT NOT NULL,
    last_ms           BIGINT NOT NULL,
    PRIMARY KEY (applicant_device, target_device)
);
CREATE INDEX denied_applications_target ON denied_applications (target_org, last_ms);

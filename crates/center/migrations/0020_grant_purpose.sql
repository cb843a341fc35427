-- What a connection is for, as its applicant wrote it (issue 11: the ledger's "purpose"
-- column, R-SVC-2). Set once, by the application that created the grant.
ALTER TABLE grants ADD COLUMN purpose TEXT;

//! Administrator calls, one module per resource: organisations, orders, devices
//! (TR D.6 b–h, l), certificates, groups (provider policy), approval windows, grants,
//! and the audit log. Each change is one transaction with its audit record.

pub mod approvals;
pub mod audit;
pub mod certs;
pub mod checksheet_attachments;
pub mod checksheets;
pub mod devices;
pub mod diagnose;
pub mod grants;
pub mod groups;
pub mod ledger;
pub mod orders;
pub mod orgs;
pub mod providers;
pub mod report;
pub mod tlog;

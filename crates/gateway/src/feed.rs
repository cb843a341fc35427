//! What the centre and a gateway node say to each other (R-SVC-1), as JSON over the
//! node's device mTLS. The centre owns the rules and the approvals; the node only
//! decides with them and reports what it did. Routes, all under the device's own
//! prefix and refused (403) for a device that is not a registered gateway node:
//!
//! - `GET  /api/v1/device/gateway/policy` → [`GatewayPolicy`]. A push event of kind
//!   [`POLICY_EVENT`] tells the node to fetch it again; no restart.
//! - `POST /api/v1/device/gateway/log` ← [`LogBatch`]: request records, kept by the
//!   centre append-only so each organisation can read only its own.
//! - `POST /api/v1/device/gateway/digest` ← [`LogDigest`]: one day's log, hashed, put
//!   into the audit chain so that editing the node's log is detectable.
//! - `POST /api/v1/device/gateway/user-check` ← [`UserCheck`] → [`UserCheckAnswer`]:
//!   a Proxy-Authorization (TR C 4-8-2) checked against the console's accounts.

use serde::{Deserialize, Serialize};

pub const POLICY_PATH: &str = "/api/v1/device/gateway/policy";
pub const LOG_PATH: &str = "/api/v1/device/gateway/log";
pub const DIGEST_PATH: &str = "/api/v1/device/gateway/digest";
pub const USER_CHECK_PATH: &str = "/api/v1/device/gateway/user-check";
/// Push event kind: the gateway policy changed (payload `{"version": N}`).
pub const POLICY_EVENT: &str = "gateway.policy";

/// Everything a node needs to decide, for every organisation at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPolicy {
    /// Grows with every change; a node ignores a document older than the one it holds.
    pub version: u64,
    /// Provider-kept lists an organisation can opt into, e.g. update servers (C 3-6-1).
    pub categories: Vec<Category>,
    pub orgs: Vec<OrgRules>,
    /// Whether a ClientHello without SNI may pass when the CONNECT names an IP literal
    /// that the allowlist allows (provider setting; off by default).
    pub allow_ip_literal_without_sni: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Stable key, e.g. `updates`.
    pub name: String,
    pub title_en: String,
    pub title_ja: String,
    /// Entries in [`crate::Entry::parse`] syntax.
    pub entries: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRules {
    pub org_id: String,
    pub org_name: String,
    pub rules: Vec<Rule>,
    /// Names of the [`Category`]s this organisation opted into.
    pub categories: Vec<String>,
    pub user_auth: UserAuth,
}

/// One approved allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// [`crate::Entry::parse`] syntax: `host`, `*.domain`, `http://host/prefix`, `:port`s.
    pub entry: String,
    /// The application that added it, if any (shown in logs and on the 403 page).
    pub application_id: Option<String>,
    /// After this instant (ms since the epoch) the node treats the rule as gone, even
    /// before the centre's next document arrives.
    pub expires_ms: Option<i64>,
}

/// How an organisation's users prove who they are to the gateway (C 4-8-2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserAuth {
    /// The device identity from the tunnel is enough.
    #[default]
    Device,
    /// Proxy-Authorization: Basic, checked against the console's accounts.
    Password,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Refused,
}

/// One request through the gateway (TR C 4-8-1 logs per user and device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub at_ms: i64,
    pub org_id: String,
    pub device_id: String,
    /// The authenticated user, when the organisation asks for one.
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
    /// `CONNECT`, `GET`, `POST`, …
    pub method: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// Machine-readable reason: `allowed:<entry>`, `not_listed`, `wrong_port`,
    /// `sni_mismatch`, `no_sni`, `address:<refused kind>`, `auth_required`, …
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    pub records: Vec<LogRecord>,
}

/// One UTC day of a node's log, for the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDigest {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub records: u64,
    /// Hex SHA-256 of the day's log file exactly as written.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCheck {
    pub org_id: String,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCheckAnswer {
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_as_json() {
        let p = GatewayPolicy {
            version: 3,
            categories: vec![Category {
                name: "updates".into(),
                title_en: "Update servers".into(),
                title_ja: "更新サーバ".into(),
                entries: vec!["*.windowsupdate.com".into()],
            }],
            orgs: vec![OrgRules {
                org_id: "o1".into(),
                org_name: "Hospital".into(),
                rules: vec![Rule {
                    entry: "updates.example.test".into(),
                    application_id: Some("a1".into()),
                    expires_ms: Some(1),
                }],
                categories: vec!["updates".into()],
                user_auth: UserAuth::Password,
            }],
            allow_ip_literal_without_sni: false,
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("\"user_auth\":\"password\""), "{text}");
        assert_eq!(serde_json::from_str::<GatewayPolicy>(&text).unwrap(), p);
    }
}

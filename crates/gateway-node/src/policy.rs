//! The centre's [`GatewayPolicy`] made ready to decide with: one [`Allowlist`] per
//! organisation (its approved rules plus the categories it opted into), rebuilt when
//! a new document arrives or when a rule's expiry passes, so an expired approval
//! stops working at its instant even if the centre is away.

use std::collections::HashMap;

use dodvpn_gateway::feed::{GatewayPolicy, UserAuth};
use dodvpn_gateway::{Allowlist, Entry, Target, Verdict};

/// One organisation's compiled rules.
pub struct OrgDecider {
    pub org_name: String,
    pub user_auth: UserAuth,
    allow: Allowlist,
}

/// Everything the proxy decides with, for one version of the policy at one instant.
pub struct Compiled {
    pub version: u64,
    pub allow_ip_literal_without_sni: bool,
    orgs: HashMap<String, OrgDecider>,
    /// The earliest expiry still ahead (ms): past it, compile again.
    pub next_expiry_ms: Option<i64>,
    /// Entries the centre sent that this node cannot parse (logged once per version).
    pub rejected: Vec<String>,
}

impl Compiled {
    pub fn new(p: &GatewayPolicy, now_ms: i64) -> Compiled {
        let mut rejected = Vec::new();
        let mut next_expiry_ms: Option<i64> = None;
        let mut parse = |text: &str| match Entry::parse(text) {
            Ok(e) => Some(e),
            Err(e) => {
                rejected.push(format!("{text}: {e}"));
                None
            }
        };
        let categories: HashMap<&str, Vec<Entry>> = p
            .categories
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.entries.iter().filter_map(|t| parse(t)).collect(),
                )
            })
            .collect();
        let mut orgs = HashMap::new();
        for o in &p.orgs {
            let mut entries = Vec::new();
            for r in &o.rules {
                match r.expires_ms {
                    Some(t) if t <= now_ms => continue,
                    Some(t) => next_expiry_ms = Some(next_expiry_ms.map_or(t, |n| n.min(t))),
                    None => {}
                }
                if let Some(e) = parse(&r.entry) {
                    entries.push(e);
                }
            }
            for c in &o.categories {
                entries.extend(categories.get(c.as_str()).into_iter().flatten().cloned());
            }
            orgs.insert(
                o.org_id.clone(),
                OrgDecider {
                    org_name: o.org_name.clone(),
                    user_auth: o.user_auth,
                    allow: Allowlist::new(entries),
                },
            );
        }
        Compiled {
            version: p.version,
            allow_ip_literal_without_sni: p.allow_ip_literal_without_sni,
            orgs,
            next_expiry_ms,
            rejected,
        }
    }

    pub fn org(&self, org_id: &str) -> Option<&OrgDecider> {
        self.orgs.get(org_id)
    }

    /// Deny by default: an organisation the policy does not name has no sites at all.
    pub fn decide(&self, org_id: &str, t: &Target<'_>) -> Verdict {
        match self.orgs.get(org_id) {
            Some(o) => o.allow.decide(t),
            None => Verdict::NotListed,
        }
    }

    pub fn stale_at(&self, now_ms: i64) -> bool {
        self.next_expiry_ms.is_some_and(|t| t <= now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dodvpn_gateway::feed::{Category, OrgRules, Rule};

    fn policy() -> GatewayPolicy {
        GatewayPolicy {
            version: 2,
            categories: vec![Category {
                name: "updates".into(),
                title_en: "Update servers".into(),
                title_ja: "更新サーバ".into(),
                entries: vec!["updates.example.test".into()],
            }],
            orgs: vec![OrgRules {
                org_id: "o1".into(),
                org_name: "Hospital".into(),
                rules: vec![
                    Rule {
                        entry: "news.example.test".into(),
                        application_id: Some("a1".into()),
                        expires_ms: Some(1_000),
                    },
                    Rule {
                        entry: "*.co.jp".into(),
                        application_id: None,
                        expires_ms: None,
                    },
                ],
                categories: vec!["updates".into()],
                user_auth: UserAuth::Device,
            }],
            allow_ip_literal_without_sni: false,
        }
    }

    fn t(host: &str) -> Target<'_> {
        Target {
            host,
            port: 443,
            path: None,
        }
    }

    #[test]
    fn rules_categories_expiry_and_unknown_orgs() {
        let c = Compiled::new(&policy(), 500);
        assert_eq!(
            c.decide("o1", &t("news.example.test")),
            Verdict::Allow("news.example.test".into())
        );
        assert_eq!(
            c.decide("o1", &t("updates.example.test")),
            Verdict::Allow("updates.example.test".into())
        );
        assert_eq!(c.decide("o2", &t("news.example.test")), Verdict::NotListed);
        assert_eq!(c.next_expiry_ms, Some(1_000));
        assert!(!c.stale_at(999) && c.stale_at(1_000));
        assert_eq!(c.rejected.len(), 1, "{:?}", c.rejected);
        let later = Compiled::new(&policy(), 1_000);
        assert_eq!(
            later.decide("o1", &t("news.example.test")),
            Verdict::NotListed
        );
        assert_eq!(later.next_expiry_ms, None);
    }
}

//! What may be probed: the organisation's public addresses as the centre holds them.
//! Anything outside is refused before a single packet leaves.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub org: String,
    pub nets: Vec<IpNet>,
}

/// A target outside the organisation's registered addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRegistered {
    pub org: String,
    pub address: String,
}

impl fmt::Display for NotRegistered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{a} は組織 {o} の公開アドレスとして登録されていないため診断しません / \
             refused: {a} is not registered as a public address of organisation {o}; \
             the provider registers them with `dodvpn admin org public-addresses set`",
            a = self.address,
            o = self.org
        )
    }
}

impl std::error::Error for NotRegistered {}

/// Most addresses one run expands to (the centre accepts 1024 per run).
pub const MAX_TARGETS: usize = 1024;

impl Scope {
    pub fn contains(&self, a: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&a))
    }

    /// The targets to probe: `asked` (addresses or prefixes) if given, every one inside
    /// the scope, else every registered address. Refuses the first outsider.
    pub fn targets(&self, asked: &[String]) -> Result<Vec<IpAddr>, NotRegistered> {
        let refuse = |s: &str| NotRegistered {
            org: self.org.clone(),
            address: s.to_string(),
        };
        let mut out = Vec::new();
        if asked.is_empty() {
            for n in &self.nets {
                push_hosts(*n, &mut out);
            }
        } else {
            for s in asked {
                let net: IpNet = match s.parse::<IpNet>() {
                    Ok(n) => n,
                    Err(_) => s
                        .parse::<IpAddr>()
                        .map(IpNet::from)
                        .map_err(|_| refuse(s))?,
                };
                // A prefix is inside only if both of its ends are in one registered entry.
                if !self.nets.iter().any(|r| r.contains(&net)) {
                    return Err(refuse(s));
                }
                push_hosts(net, &mut out);
            }
        }
        out.sort();
        out.dedup();
        out.truncate(MAX_TARGETS);
        Ok(out)
    }
}

fn push_hosts(n: IpNet, out: &mut Vec<IpAddr>) {
    if n.prefix_len() == n.max_prefix_len() {
        out.push(n.addr());
        return;
    }
    for a in n.hosts().take(MAX_TARGETS) {
        out.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            org: "org-1".into(),
            nets: vec![
                "192.0.2.0/30".parse().unwrap(),
                "198.51.100.7/32".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn registered_addresses_are_accepted() {
        assert_eq!(
            scope().targets(&["198.51.100.7".into()]).unwrap(),
            vec!["198.51.100.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(scope().targets(&[]).unwrap().len(), 3);
        assert_eq!(scope().targets(&["192.0.2.0/31".into()]).unwrap().len(), 2);
    }

    #[test]
    fn other_addresses_are_refused_in_both_languages() {
        let e = scope().targets(&["198.51.100.8".into()]).unwrap_err();
        assert_eq!(e.address, "198.51.100.8");
        let m = e.to_string();
        assert!(
            m.contains("登録されていない") && m.contains("not registered"),
            "{m}"
        );
        // A prefix reaching outside is refused even though it starts inside.
        assert!(scope().targets(&["192.0.2.0/29".into()]).is_err());
        assert!(scope().targets(&["not-an-address".into()]).is_err());
        assert!(Scope::default().targets(&[]).unwrap().is_empty());
    }
}

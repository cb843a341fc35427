//! Who is asking: a connection's source address, seen on the tunnel side, names the
//! member device and organisation whose grant to this node covers it. The agent's
//! signed connection info is the only source; an address no grant covers is nobody's,
//! and the proxy refuses it before reading a byte of its request.

use std::net::IpAddr;

use dodvpn_agent::sync::SyncState;
use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub device_id: String,
    pub org_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct Members {
    /// Longest prefix first, so a narrower grant wins.
    nets: Vec<(IpNet, Member)>,
    /// Every address range the VPN uses as these grants show it (ours and the peers'):
    /// never a destination for the proxy.
    pub vpn_ranges: Vec<IpNet>,
}

impl Members {
    pub fn from_state(st: &SyncState, now_s: i64) -> Members {
        let mut nets = Vec::new();
        let mut vpn_ranges = Vec::new();
        for s in st.grants.values() {
            let info = &s.info;
            vpn_ranges.extend(info.local.subnets.iter().copied());
            vpn_ranges.extend(info.local.mapped_subnets.iter().copied());
            vpn_ranges.extend(info.peer.subnets.iter().copied());
            if !info.is_valid_at(now_s) {
                continue;
            }
            for n in &info.peer.subnets {
                nets.push((
                    *n,
                    Member {
                        device_id: info.peer.device_id.clone(),
                        org_id: info.peer.org_id.clone(),
                    },
                ));
            }
        }
        nets.sort_by_key(|n| std::cmp::Reverse(n.0.prefix_len()));
        vpn_ranges.sort();
        vpn_ranges.dedup();
        Members { nets, vpn_ranges }
    }

    pub fn of(&self, ip: IpAddr) -> Option<&Member> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.nets
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|(_, m)| m)
    }

    #[cfg(test)]
    pub fn with(nets: Vec<(IpNet, Member)>) -> Members {
        Members {
            nets,
            vpn_ranges: vec![],
        }
    }
}

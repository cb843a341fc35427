//! Address mapping for sites with overlapping private ranges (R-DP-8, TR D.7 c).
//!
//! Two clinics may both number their LAN 10.2.0.0/24. The centre keeps, per
//! device and per subnet, a *visible* prefix of the same length: the real
//! one where it collides with no one, otherwise a prefix allocated from the
//! provider's mapping space ([`DEFAULT_MAPPING_SPACE`], carrier-grade NAT
//! space). Every IPv4 subnet that overlaps another device's subnet (real, or
//! visible) is mapped, on *both* devices, so that every visible prefix in
//! the network is unique and any two sites can reach each other if granted.
//! A mapping, once given, is kept while the subnet stays (addresses do not
//! move when the other site leaves).
//!
//! Peers only ever see visible prefixes (connection info `peer.subnets` and
//! traffic selectors); the device itself gets the pairs in
//! [`LocalEnd::mapped_subnets`](crate::LocalEnd::mapped_subnets) and its data
//! plane translates (stateless NETMAP). IPv6 subnets are never mapped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

/// The provider's default mapping space: 100.64.0.0/10 (RFC 6598).
pub const DEFAULT_MAPPING_SPACE: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10) {
    Ok(n) => n,
    Err(_) => panic!("valid prefix"),
};

/// Whether two prefixes share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// The visible prefix of each of `subnets` (`mapped` pairwise; empty or a
/// missing entry = not mapped).
pub fn visible_subnets(subnets: &[IpNet], mapped: &[IpNet]) -> Vec<IpNet> {
    subnets
        .iter()
        .enumerate()
        .map(|(i, s)| *mapped.get(i).unwrap_or(s))
        .collect()
}

/// `hosts` (addresses inside `subnets`) as peers see them, through the
/// pairwise `mapped` prefixes. A host range inside one subnet keeps its
/// offset and length; one that covers whole subnets (an aggregate) becomes
/// their visible prefixes; one outside all subnets is kept as it is.
pub fn to_visible(hosts: &[IpNet], subnets: &[IpNet], mapped: &[IpNet]) -> Vec<IpNet> {
    if mapped.is_empty() || mapped == subnets {
        return hosts.to_vec();
    }
    let mut out = Vec::new();
    for h in hosts {
        let mut hit = false;
        for (r, v) in subnets.iter().zip(visible_subnets(subnets, mapped)) {
            if r.contains(h) {
                out.push(shift(h, r, &v));
                hit = true;
                break;
            } else if h.contains(r) {
                out.push(v);
                hit = true;
            }
        }
        if !hit {
            out.push(*h);
        }
    }
    IpNet::aggregate(&out)
}

/// `h` (inside `r`) moved to the same place inside `v`.
fn shift(h: &IpNet, r: &IpNet, v: &IpNet) -> IpNet {
    match (h, r, v) {
        (IpNet::V4(h), IpNet::V4(r), IpNet::V4(v)) if r.prefix_len() == v.prefix_len() => {
            let off = u32::from(h.network()) - u32::from(r.network());
            let a = Ipv4Addr::from(u32::from(v.network()) | off);
            Ipv4Net::new(a, h.prefix_len())
                .map(IpNet::V4)
                .unwrap_or(IpNet::V4(*v))
        }
        _ => *h,
    }
}

/// One device as the mapping sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedDevice {
    pub device_id: String,
    pub subnets: Vec<IpNet>,
    /// Pairwise with `subnets`; empty = nothing mapped.
    pub mapped: Vec<IpNet>,
}

/// The mapping space has no room left for a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the address mapping space {space} has no free /{len} for {subnet} of device {device_id}")]
pub struct SpaceExhausted {
    pub device_id: String,
    pub subnet: IpNet,
    pub space: Ipv4Net,
    pub len: u8,
}

/// Keep a device's mappings across a change of its subnets: a subnet it had
/// before keeps its visible prefix; new ones start unmapped.
pub fn realign(old_subnets: &[IpNet], old_mapped: &[IpNet], new_subnets: &[IpNet]) -> Vec<IpNet> {
    let old = visible_subnets(old_subnets, old_mapped);
    let out: Vec<IpNet> = new_subnets
        .iter()
        .map(|s| {
            old_subnets
                .iter()
                .position(|o| o == s)
                .map(|i| old[i])
                .unwrap_or(*s)
        })
        .collect();
    normalise(new_subnets, out)
}

fn normalise(subnets: &[IpNet], mapped: Vec<IpNet>) -> Vec<IpNet> {
    if mapped.as_slice() == subnets {
        Vec::new()
    } else {
        mapped
    }
}

/// Give every IPv4 subnet that overlaps another device's subnet (real or
/// visible) a visible prefix from `space`, keeping those already given.
/// Returns the devices whose `mapped` changed, with their new lists
/// (pairwise, or empty when nothing is mapped). Deterministic: devices in
/// the order given, the lowest free prefix first.
pub fn plan(
    devices: &[MappedDevice],
    space: Ipv4Net,
) -> Result<BTreeMap<String, Vec<IpNet>>, SpaceExhausted> {
    let mut vis: Vec<Vec<IpNet>> = devices
        .iter()
        .map(|d| visible_subnets(&d.subnets, &d.mapped))
        .collect();
    let is_mapped = |vis: &Vec<Vec<IpNet>>, d: usize, i: usize| vis[d][i] != devices[d].subnets[i];
    // Which unmapped IPv4 subnets collide with another device's real or visible prefix.
    let mut need = Vec::new();
    for (d, dev) in devices.iter().enumerate() {
        for (i, s) in dev.subnets.iter().enumerate() {
            if !s.addr().is_ipv4() || is_mapped(&vis, d, i) {
                continue;
            }
            let clash = devices.iter().enumerate().any(|(e, other)| {
                e != d
                    && other
                        .subnets
                        .iter()
                        .zip(&vis[e])
                        .any(|(r, v)| overlaps(s, r) || overlaps(s, v))
            });
            if clash {
                need.push((d, i));
            }
        }
    }
    for &(d, i) in &need {
        let IpNet::V4(s) = devices[d].subnets[i] else {
            continue;
        };
        // Taken: every visible prefix, and every real one still in use as such.
        let taken: Vec<IpNet> = devices
            .iter()
            .enumerate()
            .flat_map(|(e, other)| {
                let v = vis[e].clone();
                other
                    .subnets
                    .iter()
                    .enumerate()
                    .filter(move |&(j, _)| (e, j) != (d, i))
                    .flat_map(move |(j, r)| [*r, v[j]])
                    .collect::<Vec<_>>()
            })
            .collect();
        let Some(p) = first_free(space, s.prefix_len(), &taken) else {
            return Err(SpaceExhausted {
                device_id: devices[d].device_id.clone(),
                subnet: IpNet::V4(s),
                space,
                len: s.prefix_len(),
            });
        };
        vis[d][i] = IpNet::V4(p);
    }
    let mut out = BTreeMap::new();
    for (d, dev) in devices.iter().enumerate() {
        let m = normalise(&dev.subnets, vis[d].clone());
        if m != dev.mapped {
            out.insert(dev.device_id.clone(), m);
        }
    }
    Ok(out)
}

/// The lowest /`len` in `space` that overlaps nothing in `taken`.
fn first_free(space: Ipv4Net, len: u8, taken: &[IpNet]) -> Option<Ipv4Net> {
    if len < space.prefix_len() || len > 32 {
        return None;
    }
    let step: u64 = 1 << (32 - u32::from(len));
    let start = u64::from(u32::from(space.network()));
    let end = start + (1u64 << (32 - u32::from(space.prefix_len())));
    let mut a = start;
    while a < end {
        let p = Ipv4Net::new(Ipv4Addr::from(a as u32), len).ok()?;
        let pn = IpNet::V4(p);
        match taken.iter().find(|t| overlaps(t, &pn)) {
            None => return Some(p),
            // Skip past the whole taken prefix when it is the larger one.
            Some(IpNet::V4(t)) if t.prefix_len() < len => {
                a = u64::from(u32::from(t.broadcast())) + 1;
            }
            Some(_) => a += step,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn dev(id: &str, subnets: &[&str], mapped: &[&str]) -> MappedDevice {
        MappedDevice {
            device_id: id.into(),
            subnets: subnets.iter().map(|s| n(s)).collect(),
            mapped: mapped.iter().map(|s| n(s)).collect(),
        }
    }

    #[test]
    fn two_clinics_on_the_same_lan_are_both_mapped() {
        let devs = [
            dev("hosp", &["10.1.0.0/16"], &[]),
            dev("c1", &["10.2.0.0/24", "fd00::/64"], &[]),
            dev("c2", &["10.2.0.0/24", "fd00::/64"], &[]),
        ];
        let p = plan(&devs, DEFAULT_MAPPING_SPACE).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["c1"], vec![n("100.64.0.0/24"), n("fd00::/64")]);
        assert_eq!(p["c2"], vec![n("100.64.1.0/24"), n("fd00::/64")]);
        // Stable: planning again changes nothing.
        let devs2 = [
            devs[0].clone(),
            dev(
                "c1",
                &["10.2.0.0/24", "fd00::/64"],
                &["100.64.0.0/24", "fd00::/64"],
            ),
            dev(
                "c2",
                &["10.2.0.0/24", "fd00::/64"],
                &["100.64.1.0/24", "fd00::/64"],
            ),
            dev("c3", &["10.2.0.128/25"], &[]),
            // A site that really uses part of the mapping space.
            dev("odd", &["100.64.2.0/23"], &[]),
        ];
        let p = plan(&devs2, DEFAULT_MAPPING_SPACE).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        // Past c1's and c2's visible /24s and the odd site's real /23.
        assert_eq!(p["c3"], vec![n("100.64.4.0/25")]);
    }

    #[test]
    fn a_site_in_the_mapping_space_clashing_with_a_visible_prefix_moves() {
        let devs = [
            dev("c1", &["10.2.0.0/24"], &["100.64.0.0/24"]),
            dev("weird", &["100.64.0.0/16"], &[]),
        ];
        let p = plan(&devs, DEFAULT_MAPPING_SPACE).unwrap();
        assert_eq!(p["weird"], vec![n("100.65.0.0/16")]);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let space: Ipv4Net = "100.64.0.0/23".parse().unwrap();
        let devs = [
            dev("a", &["10.0.0.0/24"], &[]),
            dev("b", &["10.0.0.0/24"], &[]),
            dev("c", &["10.0.0.0/24"], &[]),
        ];
        assert!(plan(&devs, space).is_err());
    }

    #[test]
    fn hosts_are_shifted_into_the_visible_prefix() {
        let subnets = [n("10.2.0.0/24"), n("10.2.1.0/24"), n("10.9.0.0/24")];
        let mapped = [n("100.64.7.0/24"), n("100.64.3.0/24"), n("10.9.0.0/24")];
        assert_eq!(
            to_visible(&[n("10.2.0.20/32")], &subnets, &mapped),
            vec![n("100.64.7.20/32")]
        );
        // An aggregate over two mapped subnets becomes both visible prefixes.
        assert_eq!(
            to_visible(&[n("10.2.0.0/23"), n("10.9.0.0/24")], &subnets, &mapped),
            vec![n("10.9.0.0/24"), n("100.64.3.0/24"), n("100.64.7.0/24")]
        );
        assert_eq!(
            to_visible(&[n("10.2.0.0/24")], &subnets, &[]),
            vec![n("10.2.0.0/24")]
        );
    }

    #[test]
    fn realign_keeps_what_stays() {
        let old = [n("10.2.0.0/24"), n("10.3.0.0/24")];
        let m = [n("100.64.0.0/24"), n("10.3.0.0/24")];
        assert_eq!(
            realign(&old, &m, &[n("10.4.0.0/24"), n("10.2.0.0/24")]),
            vec![n("10.4.0.0/24"), n("100.64.0.0/24")]
        );
        assert!(realign(&old, &m, &[n("10.3.0.0/24")]).is_empty());
    }
}

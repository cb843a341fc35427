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
///
/// The centre runs this inside the registration transaction, over every device with
/// ranges, so it must stay near-linear: overlap questions go to a [`PrefixIndex`]
/// instead of a pass over all devices (which made 250,000 registrations quadratic).
pub fn plan(
    devices: &[MappedDevice],
    space: Ipv4Net,
) -> Result<BTreeMap<String, Vec<IpNet>>, SpaceExhausted> {
    let mut vis: Vec<Vec<IpNet>> = devices
        .iter()
        .map(|d| visible_subnets(&d.subnets, &d.mapped))
        .collect();
    let is_mapped = |vis: &Vec<Vec<IpNet>>, d: usize, i: usize| vis[d][i] != devices[d].subnets[i];
    let mut index = PrefixIndex::default();
    for (d, dev) in devices.iter().enumerate() {
        for (i, (r, v)) in dev.subnets.iter().zip(&vis[d]).enumerate() {
            index.insert(*r, (d, i));
            if v != r {
                index.insert(*v, (d, i));
            }
        }
    }
    // Which unmapped IPv4 subnets collide with another device's real or visible prefix.
    let mut need = Vec::new();
    for (d, dev) in devices.iter().enumerate() {
        for (i, s) in dev.subnets.iter().enumerate() {
            let IpNet::V4(s4) = s else { continue };
            if is_mapped(&vis, d, i) {
                continue;
            }
            if index.overlapping(*s4, |(e, _)| e != d).is_some() {
                need.push((d, i));
            }
        }
    }
    // Per prefix length, where the last search ended: everything below it was taken
    // then, and nothing is given back during one plan, so the next search starts there.
    // Not when a subnet waiting for its own search lies in the space itself: its real
    // prefix blocks the others' searches but not its own, so it could land lower.
    let mut resume: BTreeMap<u8, u32> = BTreeMap::new();
    let resumable = !need
        .iter()
        .any(|&(d, i)| overlaps(&devices[d].subnets[i], &IpNet::V4(space)));
    for &(d, i) in &need {
        let IpNet::V4(s) = devices[d].subnets[i] else {
            continue;
        };
        let from = resume.get(&s.prefix_len()).copied().filter(|_| resumable);
        // Taken: every visible prefix, and every real one still in use as such,
        // except this subnet's own.
        let Some(p) = first_free(space, s.prefix_len(), from, |q| {
            index.overlapping(q, |owner| owner != (d, i))
        }) else {
            return Err(SpaceExhausted {
                device_id: devices[d].device_id.clone(),
                subnet: IpNet::V4(s),
                space,
                len: s.prefix_len(),
            });
        };
        vis[d][i] = IpNet::V4(p);
        index.insert(IpNet::V4(p), (d, i));
        resume.insert(s.prefix_len(), u32::from(p.network()));
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

/// Owner of a prefix in the index: (device index, subnet index).
type Owner = (usize, usize);

/// The IPv4 prefixes held by devices, for overlap questions. Two CIDR prefixes
/// overlap exactly when one contains the other, so a question looks up the prefix's
/// ancestors (at most 32 exact keys) and scans the prefixes that start inside it.
#[derive(Default)]
struct PrefixIndex {
    by_start: BTreeMap<u32, Vec<(u8, Owner)>>,
}

impl PrefixIndex {
    fn insert(&mut self, p: IpNet, owner: Owner) {
        if let IpNet::V4(p) = p {
            self.by_start
                .entry(u32::from(p.network()))
                .or_default()
                .push((p.prefix_len(), owner));
        }
    }

    /// A held prefix that overlaps `p`, among owners `keep` accepts.
    fn overlapping(&self, p: Ipv4Net, keep: impl Fn(Owner) -> bool) -> Option<Ipv4Net> {
        let found = |start: u32, len: u8| Ipv4Net::new(Ipv4Addr::from(start), len).ok();
        // Larger prefixes containing p.
        for len in 0..p.prefix_len() {
            let Ok(a) = Ipv4Net::new(p.network(), len) else {
                continue;
            };
            let start = u32::from(a.trunc().network());
            if let Some(v) = self.by_start.get(&start) {
                if v.iter().any(|&(l, o)| l == len && keep(o)) {
                    return found(start, len);
                }
            }
        }
        // p itself and prefixes inside it.
        let range = u32::from(p.network())..=u32::from(p.broadcast());
        for (&start, v) in self.by_start.range(range) {
            if let Some(&(l, _)) = v.iter().find(|&&(l, o)| l >= p.prefix_len() && keep(o)) {
                return found(start, l);
            }
        }
        None
    }
}

/// The lowest /`len` in `space` (at or above `from`, when given) for which `taken`
/// finds no overlapping prefix.
fn first_free(
    space: Ipv4Net,
    len: u8,
    from: Option<u32>,
    taken: impl Fn(Ipv4Net) -> Option<Ipv4Net>,
) -> Option<Ipv4Net> {
    if len < space.prefix_len() || len > 32 {
        return None;
    }
    let step: u64 = 1 << (32 - u32::from(len));
    let start = u64::from(u32::from(space.network()));
    let end = start + (1u64 << (32 - u32::from(space.prefix_len())));
    let mut a = from.map_or(start, |f| u64::from(f).max(start));
    while a < end {
        let p = Ipv4Net::new(Ipv4Addr::from(a as u32), len).ok()?;
        match taken(p) {
            None => return Some(p),
            // Skip past the whole taken prefix when it is the larger one.
            Some(t) if t.prefix_len() < len => {
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
    use proptest::prelude::*;

    /// The plan as first written: a pass over every device for each question. Kept as
    /// the oracle the indexed [`plan`] must agree with.
    fn naive_plan(
        devices: &[MappedDevice],
        space: Ipv4Net,
    ) -> Result<BTreeMap<String, Vec<IpNet>>, SpaceExhausted> {
        let mut vis: Vec<Vec<IpNet>> = devices
            .iter()
            .map(|d| visible_subnets(&d.subnets, &d.mapped))
            .collect();
        let is_mapped =
            |vis: &Vec<Vec<IpNet>>, d: usize, i: usize| vis[d][i] != devices[d].subnets[i];
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
            let found = first_free(space, s.prefix_len(), None, |q| {
                taken.iter().find_map(|t| match t {
                    IpNet::V4(t) if overlaps(&IpNet::V4(*t), &IpNet::V4(q)) => Some(*t),
                    _ => None,
                })
            });
            let Some(p) = found else {
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

    /// Small random networks with many collisions: a few /16-/26 prefixes under
    /// 10.0.0.0/14, some inside a tiny mapping space, some already mapped.
    fn arb_devices() -> impl Strategy<Value = Vec<MappedDevice>> {
        let net = (0u32..4, 0u32..256, 16u8..=26).prop_map(|(b, c, len)| {
            let a = Ipv4Addr::new(10, b as u8, c as u8, 0);
            IpNet::V4(Ipv4Net::new(a, len).unwrap().trunc())
        });
        let in_space = (0u32..64, 22u8..=26).prop_map(|(c, len)| {
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::new(100, 64, c as u8, 0), len)
                    .unwrap()
                    .trunc(),
            )
        });
        let subnet = prop_oneof![4 => net, 1 => in_space];
        proptest::collection::vec(
            (proptest::collection::vec(subnet, 0..3), any::<bool>()),
            0..12,
        )
        .prop_map(|devs| {
            // Some devices carry a mapping planned before (a plan of a prefix of them).
            let mut out: Vec<MappedDevice> = Vec::new();
            for (k, (subnets, _)) in devs.iter().enumerate() {
                let mut subnets = subnets.clone();
                subnets.dedup();
                out.push(MappedDevice {
                    device_id: format!("d{k:02}"),
                    subnets,
                    mapped: vec![],
                });
            }
            let space = Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 18).unwrap();
            let half = out.len() / 2;
            if let Ok(p) = naive_plan(&out[..half], space) {
                for d in out.iter_mut().take(half) {
                    if let Some(m) = p.get(&d.device_id) {
                        d.mapped = m.clone();
                    }
                }
            }
            out
        })
    }

    proptest! {
        #[test]
        fn the_indexed_plan_agrees_with_the_naive_one(devs in arb_devices(), small in any::<bool>()) {
            let space = if small {
                Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 20).unwrap()
            } else {
                Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 18).unwrap()
            };
            prop_assert_eq!(plan(&devs, space), naive_plan(&devs, space));
        }
    }

    #[test]
    fn ten_thousand_sites_on_the_same_lan_plan_quickly() {
        // Every consumer router numbers its LAN 192.168.1.0/24: the worst case.
        let devs: Vec<MappedDevice> = (0..10_000)
            .map(|k| MappedDevice {
                device_id: format!("d{k:05}"),
                subnets: vec!["192.168.1.0/24".parse().unwrap()],
                mapped: vec![],
            })
            .collect();
        let p = plan(&devs, DEFAULT_MAPPING_SPACE).unwrap();
        assert_eq!(p.len(), 10_000);
        let mut seen: Vec<&IpNet> = p.values().map(|m| &m[0]).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10_000, "every visible prefix is unique");
    }

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

//! Longest-prefix-match table used by the outbound SPD.
//!
//! One hash map per prefix length present, probed from the longest length
//! down: a lookup costs at most (number of distinct prefix lengths) hash
//! probes, independent of the number of entries.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone)]
struct Level<K, T> {
    len: u8,
    map: HashMap<K, T>,
}

/// A longest-prefix-match table from IP prefixes (IPv4 and IPv6) to `T`.
#[derive(Debug, Clone)]
pub struct PrefixTable<T> {
    v4: Vec<Level<u32, T>>,
    v6: Vec<Level<u128, T>>,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

#[inline]
fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

#[inline]
fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

fn insert_level<K: std::hash::Hash + Eq, T>(
    levels: &mut Vec<Level<K, T>>,
    len: u8,
    key: K,
    value: T,
) -> Option<T> {
    match levels.iter_mut().position(|l| l.len == len) {
        Some(i) => levels[i].map.insert(key, value),
        None => {
            let mut map = HashMap::new();
            map.insert(key, value);
            levels.push(Level { len, map });
            levels.sort_by_key(|l| std::cmp::Reverse(l.len));
            None
        }
    }
}

fn remove_level<K: std::hash::Hash + Eq, T>(
    levels: &mut Vec<Level<K, T>>,
    len: u8,
    key: &K,
) -> Option<T> {
    let i = levels.iter().position(|l| l.len == len)?;
    let v = levels[i].map.remove(key);
    if levels[i].map.is_empty() {
        levels.remove(i);
    }
    v
}

impl<T> PrefixTable<T> {
    /// Empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert (or replace) the entry for `net` (host bits are ignored).
    /// Returns the previous value.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        match net.trunc() {
            IpNet::V4(n) => {
                insert_level(&mut self.v4, n.prefix_len(), u32::from(n.network()), value)
            }
            IpNet::V6(n) => {
                insert_level(&mut self.v6, n.prefix_len(), u128::from(n.network()), value)
            }
        }
    }

    /// Remove the entry for exactly `net`.
    pub fn remove(&mut self, net: &IpNet) -> Option<T> {
        match net.trunc() {
            IpNet::V4(n) => remove_level(&mut self.v4, n.prefix_len(), &u32::from(n.network())),
            IpNet::V6(n) => remove_level(&mut self.v6, n.prefix_len(), &u128::from(n.network())),
        }
    }

    /// The entry for exactly `net`.
    pub fn get(&self, net: &IpNet) -> Option<&T> {
        match net.trunc() {
            IpNet::V4(n) => self
                .v4
                .iter()
                .find(|l| l.len == n.prefix_len())?
                .map
                .get(&u32::from(n.network())),
            IpNet::V6(n) => self
                .v6
                .iter()
                .find(|l| l.len == n.prefix_len())?
                .map
                .get(&u128::from(n.network())),
        }
    }

    /// Longest-prefix match for `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(u32::from(a)),
            IpAddr::V6(a) => self.lookup_v6(u128::from(a)),
        }
    }

    /// Longest-prefix match for an IPv4 address given as a big-endian u32.
    #[inline]
    pub fn lookup_v4(&self, addr: u32) -> Option<&T> {
        self.v4
            .iter()
            .find_map(|l| l.map.get(&(addr & mask4(l.len))))
    }

    /// Longest-prefix match for an IPv6 address given as a big-endian u128.
    #[inline]
    pub fn lookup_v6(&self, addr: u128) -> Option<&T> {
        self.v6
            .iter()
            .find_map(|l| l.map.get(&(addr & mask6(l.len))))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.v4.iter().map(|l| l.map.len()).sum::<usize>()
            + self.v6.iter().map(|l| l.map.len()).sum::<usize>()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// All entries (unordered).
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &T)> {
        let v4 = self.v4.iter().flat_map(|l| {
            l.map.iter().map(move |(k, v)| {
                (
                    IpNet::V4(ipnet::Ipv4Net::new((*k).into(), l.len).expect("valid len")),
                    v,
                )
            })
        });
        let v6 = self.v6.iter().flat_map(|l| {
            l.map.iter().map(move |(k, v)| {
                (
                    IpNet::V6(ipnet::Ipv6Net::new((*k).into(), l.len).expect("valid len")),
                    v,
                )
            })
        });
        v4.chain(v6)
    }
}

/// Destination address of an IPv4/IPv6 packet, read straight from the
/// header by `dodvpn_wire::peek_ip` (no allocation, no full parse). `None`
/// if it is not a packet that reader accepts (too short, not IP, IPv4
/// header length below 20 or past the buffer).
#[inline]
pub fn packet_dst(pkt: &[u8]) -> Option<IpAddr> {
    dodvpn_wire::peek_ip(pkt).ok().map(|h| h.dst())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = PrefixTable::new();
        t.insert(n("0.0.0.0/0"), "default");
        t.insert(n("10.0.0.0/8"), "ten");
        t.insert(n("10.10.0.0/16"), "ten-ten");
        t.insert(n("10.10.2.0/24"), "site-b");
        t.insert(n("10.10.2.7/32"), "host");
        assert_eq!(t.lookup(a("10.10.2.7")), Some(&"host"));
        assert_eq!(t.lookup(a("10.10.2.8")), Some(&"site-b"));
        assert_eq!(t.lookup(a("10.10.3.1")), Some(&"ten-ten"));
        assert_eq!(t.lookup(a("10.200.0.1")), Some(&"ten"));
        assert_eq!(t.lookup(a("192.0.2.1")), Some(&"default"));
        assert_eq!(t.len(), 5);
        // Removing the /24 falls back to the /16.
        assert_eq!(t.remove(&n("10.10.2.0/24")), Some("site-b"));
        assert_eq!(t.lookup(a("10.10.2.8")), Some(&"ten-ten"));
        assert_eq!(t.lookup(a("10.10.2.7")), Some(&"host"));
    }

    #[test]
    fn no_match_and_host_bits_ignored() {
        let mut t = PrefixTable::new();
        t.insert(n("10.10.2.99/24"), 1); // host bits set: same as 10.10.2.0/24
        assert_eq!(t.lookup(a("10.10.2.1")), Some(&1));
        assert_eq!(t.lookup(a("10.10.1.1")), None);
        assert_eq!(t.get(&n("10.10.2.0/24")), Some(&1));
        assert_eq!(t.insert(n("10.10.2.0/24"), 2), Some(1));
        assert_eq!(t.len(), 1);
        assert!(t.remove(&n("10.10.1.0/24")).is_none());
    }

    #[test]
    fn ipv6_and_families_are_separate() {
        let mut t = PrefixTable::new();
        t.insert(n("2001:db8::/32"), "doc");
        t.insert(n("2001:db8:1::/48"), "site");
        t.insert(n("::/0"), "v6-default");
        assert_eq!(t.lookup(a("2001:db8:1::5")), Some(&"site"));
        assert_eq!(t.lookup(a("2001:db8:2::5")), Some(&"doc"));
        assert_eq!(t.lookup(a("fe80::1")), Some(&"v6-default"));
        assert_eq!(t.lookup(a("10.0.0.1")), None, "v6 /0 must not match v4");
        let mut all: Vec<_> = t.iter().map(|(k, _)| k.to_string()).collect();
        all.sort();
        assert_eq!(all, ["2001:db8:1::/48", "2001:db8::/32", "::/0"]);
    }

    #[test]
    fn packet_dst_reads_header() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[16..20].copy_from_slice(&[10, 10, 2, 1]);
        assert_eq!(packet_dst(&v4), Some(a("10.10.2.1")));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[24] = 0x20;
        v6[25] = 0x01;
        assert_eq!(packet_dst(&v6), Some(a("2001::")));
        assert_eq!(packet_dst(&v4[..10]), None);
        assert_eq!(packet_dst(&[0x10; 40]), None);
        assert_eq!(packet_dst(&v6[..39]), None);
        v4[0] = 0x44;
        assert_eq!(packet_dst(&v4), None, "IHL below 5");
    }
}

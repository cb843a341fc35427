//! Where the gateway may dial (SSRF and DNS-rebinding defence). The gateway resolves
//! names itself and dials the checked address, never the name; this module says
//! whether an address is one the Internet could own. Host strings that are IP literals
//! in any spelling a resolver accepts (octal, hex, integer, shortened) are normalised
//! first, so `0x7f.1` and `2130706433` are seen as the loopback address they are.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host written as an IP address in any inet_aton spelling, or as an IPv6 literal
/// (bracketed or not); `None` for a name.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let h = host.trim().trim_end_matches('.');
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(v6) = bare.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    inet_aton(h).map(IpAddr::V4)
}

/// One part of an inet_aton address: decimal, `0`-prefixed octal or `0x` hex.
fn number(p: &str) -> Option<u64> {
    let lower = p.to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = lower.strip_prefix("0x") {
        (h.to_string(), 16)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (lower[1..].to_string(), 8)
    } else {
        (lower, 10)
    };
    if digits.is_empty() && radix == 16 {
        return Some(0);
    }
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

/// `a`, `a.b`, `a.b.c` and `a.b.c.d`, each part in any base, as the C library reads them.
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let nums: Vec<u64> = parts.iter().map(|p| number(p)).collect::<Option<_>>()?;
    let (last, head) = nums.split_last()?;
    if head.iter().any(|n| *n > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << room {
        return None;
    }
    let mut v: u32 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= (*n as u32) << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(v | *last as u32))
}

/// Why an address is not one to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Loopback,
    Private,
    SharedCgnat,
    LinkLocal,
    Multicast,
    Unspecified,
    /// Documentation, benchmarking, reserved and other special-purpose ranges.
    SpecialPurpose,
    /// The VPN's own ranges or the gateway itself.
    Internal,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedCgnat => "shared address space (CGNAT)",
            Self::LinkLocal => "link-local",
            Self::Multicast => "multicast",
            Self::Unspecified => "unspecified",
            Self::SpecialPurpose => "special-purpose",
            Self::Internal => "the VPN's own range or the gateway itself",
        }
    }
}

fn in_any(ip: IpAddr, nets: &[&str]) -> bool {
    nets.iter()
        .any(|n| n.parse::<IpNet>().is_ok_and(|n| n.contains(&ip)))
}

fn v4_refused(ip: Ipv4Addr) -> Option<Refused> {
    let a = IpAddr::V4(ip);
    Some(if ip.is_loopback() {
        Refused::Loopback
    } else if ip.is_private() {
        Refused::Private
    } else if in_any(a, &["100.64.0.0/10"]) {
        Refused::SharedCgnat
    } else if ip.is_link_local() {
        Refused::LinkLocal
    } else if ip.is_multicast() {
        Refused::Multicast
    } else if ip.is_unspecified() {
        Refused::Unspecified
    } else if in_any(
        a,
        &[
            "0.0.0.0/8",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "240.0.0.0/4",
            "255.255.255.255/32",
        ],
    ) {
        Refused::SpecialPurpose
    } else {
        return None;
    })
}

/// The IPv4 address an IPv6 address carries inside it, where it is a translation
/// or tunnelling form (mapped, compatible, NAT64, 6to4, Teredo).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = ip.octets();
    let seg = ip.segments();
    let v4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    if let Some(m) = ip.to_ipv4_mapped() {
        return Some(m);
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !(seg[6] == 0 && seg[7] <= 1) {
        return Some(v4(&o[12..])); // IPv4-compatible (deprecated)
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || seg[..3] == [0x64, 0xff9b, 1] {
        return Some(v4(&o[12..])); // NAT64, well-known and local-use prefixes
    }
    if seg[0] == 0x2002 {
        return Some(v4(&o[2..6])); // 6to4
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        // Teredo: the client's address is the last 32 bits, inverted.
        let c = [!o[12], !o[13], !o[14], !o[15]];
        return Some(v4(&c));
    }
    None
}

fn v6_refused(ip: Ipv6Addr) -> Option<Refused> {
    let a = IpAddr::V6(ip);
    if let Some(inner) = embedded_v4(ip) {
        // A translated address is only as good as the IPv4 address inside it.
        if let Some(r) = v4_refused(inner) {
            return Some(r);
        }
    }
    Some(if ip.is_loopback() {
        Refused::Loopback
    } else if ip.is_unspecified() {
        Refused::Unspecified
    } else if ip.is_multicast() {
        Refused::Multicast
    } else if in_any(a, &["fe80::/10"]) {
        Refused::LinkLocal
    } else if in_any(a, &["fc00::/7", "fec0::/10"]) {
        Refused::Private
    } else if in_any(
        a,
        &[
            "2001:db8::/32",
            "100::/64",
            "2001:2::/48",
            "2001:10::/28",
            "3fff::/20",
        ],
    ) {
        Refused::SpecialPurpose
    } else if !in_any(a, &["2000::/3"]) {
        // Outside global unicast altogether.
        Refused::SpecialPurpose
    } else {
        return None;
    })
}

/// What the gateway itself must never dial besides the special ranges: the VPN's
/// address ranges and the gateway's own addresses; and what the provider knowingly
/// permits although it is special (a DMZ of its own, a test network).
#[derive(Debug, Clone, Default)]
pub struct DialPolicy {
    pub internal: Vec<IpNet>,
    pub permitted: Vec<IpNet>,
}

impl DialPolicy {
    /// `None` when `ip` may be dialled; otherwise why not.
    pub fn check(&self, ip: IpAddr) -> Option<Refused> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let inner = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        if [Some(ip), inner]
            .into_iter()
            .flatten()
            .any(|a| self.internal.iter().any(|n| n.contains(&a)))
        {
            return Some(Refused::Internal);
        }
        if self.permitted.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        match ip {
            IpAddr::V4(v4) => v4_refused(v4),
            IpAddr::V6(v6) => v6_refused(v6),
        }
    }
}

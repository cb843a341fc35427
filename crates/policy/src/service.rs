//! Services (protocol + destination ports) and the set algebra on them.

use crate::PolicyError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// IP protocol numbers the filter cares about.
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// Transport protocol of a [`Service`]. `Icmp` covers ICMP and ICMPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    Any,
    Tcp,
    Udp,
    Icmp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Any => "any",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        })
    }
}

impl FromStr for Proto {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "any" | "*" => Ok(Proto::Any),
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            _ => Err(PolicyError::parse(
                "protocol",
                s,
                "expected tcp, udp, icmp or any",
            )),
        }
    }
}

/// Inclusive destination port range. Text form: `"443"` or `"8000-8080"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange {
            start: port,
            end: port,
        }
    }
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl FromStr for PortRange {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| PolicyError::parse("port range", s, "ports are numbers 0-65535"))
        };
        let r = match s.split_once('-') {
            Some((a, b)) => PortRange {
                start: port(a)?,
                end: port(b)?,
            },
            None => PortRange::single(port(s)?),
        };
        if r.start > r.end {
            return Err(PolicyError::parse("port range", s, "start is after end"));
        }
        Ok(r)
    }
}

/// An allowed service: a protocol and destination ports (empty = all ports).
///
/// Text form (also the serde form, decided here): `"tcp/443,104"`,
/// `"udp/53"`, `"tcp/8000-8080"`, `"tcp"` (all TCP ports), `"icmp"`, `"any"`
/// (every protocol). `"any/443"` means TCP and UDP port 443; ICMP has no ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    pub proto: Proto,
    /// Empty = all ports.
    pub ports: Vec<PortRange>,
}

impl Service {
    pub fn new(proto: Proto, ports: Vec<PortRange>) -> Self {
        Service { proto, ports }
    }
    /// Every protocol, every port.
    pub fn any() -> Self {
        Service {
            proto: Proto::Any,
            ports: Vec::new(),
        }
    }
    pub fn tcp(ports: &[u16]) -> Self {
        Service {
            proto: Proto::Tcp,
            ports: ports.iter().map(|p| PortRange::single(*p)).collect(),
        }
    }
    pub fn udp(ports: &[u16]) -> Self {
        Service {
            proto: Proto::Udp,
            ports: ports.iter().map(|p| PortRange::single(*p)).collect(),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.proto)?;
        for (i, r) in self.ports.iter().enumerate() {
            f.write_str(if i == 0 { "/" } else { "," })?;
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Service {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, ports) = match s.split_once('/') {
            Some((p, ports)) => (p.parse::<Proto>()?, Some(ports)),
            None => (s.parse::<Proto>()?, None),
        };
        let ports = match ports {
            None => Vec::new(),
            Some(list) => {
                if proto == Proto::Icmp {
                    return Err(PolicyError::parse("service", s, "icmp has no ports"));
                }
                list.split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<PortRange>, _>>()?
            }
        };
        Ok(Service { proto, ports })
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_str;

serde_via_str!(PortRange);
serde_via_str!(Service);

// ---------------------------------------------------------------------------
// Set algebra. A list of services is normalised into one set per protocol
// class; intersection and union are done there and turned back into services.

/// Sorted, disjoint, non-adjacent inclusive port ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    fn full() -> Self {
        PortSet(vec![(0, u16::MAX)])
    }
    fn is_full(&self) -> bool {
        self.0 == [(0, u16::MAX)]
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn from_ranges(ranges: &[PortRange]) -> Self {
        if ranges.is_empty() {
            return Self::full();
        }
        // A range built by hand with start > end is empty, not "all ports".
        let v = ranges
            .iter()
            .filter(|r| r.start <= r.end)
            .map(|r| (r.start, r.end))
            .collect();
        Self::normalised(v)
    }
    fn normalised(mut v: Vec<(u16, u16)>) -> Self {
        v.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match out.last_mut() {
                Some(last) if (s as u32) <= last.1 as u32 + 1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        PortSet(out)
    }
    fn union(&self, other: &Self) -> Self {
        Self::normalised(self.0.iter().chain(other.0.iter()).copied().collect())
    }
    fn intersect(&self, other: &Self) -> Self {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a0, a1) = self.0[i];
            let (b0, b1) = other.0[j];
            let (s, e) = (a0.max(b0), a1.min(b1));
            if s <= e {
                out.push((s, e));
            }
            if a1 < b1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        PortSet(out)
    }
    fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(s, e)| s <= port && port <= e)
    }
    fn to_ranges(&self) -> Vec<PortRange> {
        if self.is_full() {
            return Vec::new();
        }
        self.0
            .iter()
            .map(|&(start, end)| PortRange { start, end })
            .collect()
    }
}

/// Normal form of a service list. `other` = protocols other than TCP, UDP and
/// ICMP, which only an unrestricted `any` allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ServiceSet {
    tcp: PortSet,
    udp: PortSet,
    icmp: bool,
    other: bool,
}

impl ServiceSet {
    pub(crate) fn from_services(services: &[Service]) -> Self {
        let mut set = ServiceSet::default();
        for svc in services {
            let ports = PortSet::from_ranges(&svc.ports);
            match svc.proto {
                Proto::Tcp => set.tcp = set.tcp.union(&ports),
                Proto::Udp => set.udp = set.udp.union(&ports),
                Proto::Icmp => set.icmp = true,
                Proto::Any => {
                    set.tcp = set.tcp.union(&ports);
                    set.udp = set.udp.union(&ports);
                    if svc.ports.is_empty() {
                        set.icmp = true;
                        set.other = true;
                    }
                }
            }
        }
        set
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty() && !self.icmp && !self.other
    }

    pub(crate) fn intersect(&self, o: &Self) -> Self {
        ServiceSet {
            tcp: self.tcp.intersect(&o.tcp),
            udp: self.udp.intersect(&o.udp),
            icmp: self.icmp && o.icmp,
            other: self.other && o.other,
        }
    }

    pub(crate) fn union(&self, o: &Self) -> Self {
        ServiceSet {
            tcp: self.tcp.union(&o.tcp),
            udp: self.udp.union(&o.udp),
            icmp: self.icmp || o.icmp,
            other: self.other || o.other,
        }
    }

    fn allows(&self, proto: u8, dst_port: Option<u16>) -> bool {
        let ports = match proto {
            IPPROTO_TCP => &self.tcp,
            IPPROTO_UDP => &self.udp,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => return self.icmp,
            _ => return self.other,
        };
        match dst_port {
            Some(p) => ports.contains(p),
            // No port visible (e.g. a non-first fragment): only if every port is allowed.
            None => ports.is_full(),
        }
    }

    /// Back to a short, canonical service list.
    pub(crate) fn to_services(&self) -> Vec<Service> {
        let everything = self.tcp.is_full() && self.udp.is_full() && self.icmp;
        if self.other && everything {
            return vec![Service::any()];
        }
        // `other` without everything else cannot come from services; dropping
        // it narrows, which is the safe direction.
        let mut out = Vec::new();
        if !self.tcp.is_empty() && self.tcp == self.udp && !self.tcp.is_full() {
            out.push(Service {
                proto: Proto::Any,
                ports: self.tcp.to_ranges(),
            });
        } else {
            if !self.tcp.is_empty() {
                out.push(Service {
                    proto: Proto::Tcp,
                    ports: self.tcp.to_ranges(),
                });
            }
            if !self.udp.is_empty() {
                out.push(Service {
                    proto: Proto::Udp,
                    ports: self.udp.to_ranges(),
                });
            }
        }
        if self.icmp {
            out.push(Service {
                proto: Proto::Icmp,
                ports: Vec::new(),
            });
        }
        out
    }
}

/// Services allowed by both lists (a real set intersection over protocol and
/// ports). The result is canonical: equal sets give equal lists.
pub fn intersect_services(a: &[Service], b: &[Service]) -> Vec<Service> {
    ServiceSet::from_services(a)
        .intersect(&ServiceSet::from_services(b))
        .to_services()
}

/// Services allowed by either list, canonical.
pub fn union_services(a: &[Service], b: &[Service]) -> Vec<Service> {
    ServiceSet::from_services(a)
        .union(&ServiceSet::from_services(b))
        .to_services()
}

/// The same set of services in canonical form.
pub fn normalize_services(services: &[Service]) -> Vec<Service> {
    ServiceSet::from_services(services).to_services()
}

/// Data-plane check (R-DP-7): may a decrypted packet with IP protocol number
/// `proto` and destination port `dst_port` pass under these granted services?
/// A TCP/UDP packet without a visible port passes only if all ports are allowed.
pub fn allows(grant_services: &[Service], proto: u8, dst_port: Option<u16>) -> bool {
    ServiceSet::from_services(grant_services).allows(proto, dst_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svcs(list: &[&str]) -> Vec<Service> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parse_and_display() {
        for s in [
            "tcp/443,104",
            "udp/53",
            "icmp",
            "any",
            "tcp/8000-8080",
            "tcp",
            "any/443",
        ] {
            let svc: Service = s.parse().unwrap();
            assert_eq!(svc.to_string(), s);
        }
        assert_eq!("TCP/443".parse::<Service>().unwrap(), Service::tcp(&[443]));
        assert!("icmp/8".parse::<Service>().is_err());
        assert!("tcp/".parse::<Service>().is_err());
        assert!("tcp/70000".parse::<Service>().is_err());
        assert!("tcp/90-80".parse::<Service>().is_err());
        assert!("gre".parse::<Service>().is_err());
        assert!("".parse::<Service>().is_err());
    }

    #[test]
    fn serde_uses_text_form() {
        let v = svcs(&["tcp/443,104", "icmp"]);
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(j, r#"["tcp/443,104","icmp"]"#);
        let back: Vec<Service> = serde_json::from_str(&j).unwrap();
        assert_eq!(back, v);
        assert!(serde_json::from_str::<Service>(r#""tcp/x""#).is_err());
    }

    #[test]
    fn intersection_examples() {
        assert_eq!(
            intersect_services(&svcs(&["any"]), &svcs(&["tcp/443"])),
            svcs(&["tcp/443"])
        );
        assert_eq!(
            intersect_services(&svcs(&["tcp/400-500"]), &svcs(&["tcp/450-600,80"])),
            svcs(&["tcp/450-500"])
        );
        assert_eq!(
            intersect_services(&svcs(&["tcp"]), &svcs(&["udp/53"])),
            vec![]
        );
        assert_eq!(
            intersect_services(&svcs(&["any/443"]), &svcs(&["udp"])),
            svcs(&["udp/443"])
        );
        assert_eq!(
            intersect_services(&svcs(&["any"]), &svcs(&["any"])),
            svcs(&["any"])
        );
        assert_eq!(
            intersect_services(&svcs(&["any"]), &svcs(&["icmp", "tcp/22"])),
            svcs(&["tcp/22", "icmp"])
        );
        assert_eq!(intersect_services(&[], &svcs(&["any"])), vec![]);
    }

    #[test]
    fn union_and_normal_form() {
        assert_eq!(
            union_services(&svcs(&["tcp/80"]), &svcs(&["tcp/81-90"])),
            svcs(&["tcp/80-90"])
        );
        assert_eq!(
            normalize_services(&svcs(&["tcp", "udp", "icmp"])),
            svcs(&["tcp", "udp", "icmp"])
        );
        assert_eq!(
            normalize_services(&svcs(&["tcp/1", "udp/1"])),
            svcs(&["any/1"])
        );
        assert_eq!(normalize_services(&svcs(&["tcp/0-65535"])), svcs(&["tcp"]));
    }

    #[test]
    fn allows_checks_proto_and_port() {
        let g = svcs(&["tcp/443,8000-8080", "icmp"]);
        assert!(allows(&g, 6, Some(443)));
        assert!(allows(&g, 6, Some(8042)));
        assert!(!allows(&g, 6, Some(444)));
        assert!(!allows(&g, 17, Some(443)));
        assert!(allows(&g, 1, None));
        assert!(allows(&g, 58, None));
        assert!(!allows(&g, 47, None));
        assert!(
            !allows(&g, 6, None),
            "no port visible and not all ports allowed"
        );
        assert!(allows(&svcs(&["any"]), 47, None));
        assert!(allows(&svcs(&["tcp"]), 6, None));
        assert!(!allows(&[], 6, Some(1)));
    }

    #[test]
    fn hand_built_backwards_range_is_empty() {
        let bad = vec![Service {
            proto: Proto::Tcp,
            ports: vec![PortRange { start: 9, end: 1 }],
        }];
        assert!(!allows(&bad, 6, Some(5)));
        assert_eq!(normalize_services(&bad), vec![]);
    }
}

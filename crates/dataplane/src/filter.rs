//! Per-SA packet filter on inner (plaintext) packets: the child SA's traffic
//! selectors plus the services a grant allows (R-DP-7, TR 8.1 d).
//!
//! A [`PacketFilter`] is built once (when the SA is installed) and then only
//! read: [`PacketFilter::allows`] parses the IP and transport headers in place
//! and compares them with precomputed prefixes, without allocating.
//!
//! # Semantics
//!
//! * [`Direction::Outbound`]: a packet read from the TUN, about to be sealed;
//!   its source is our end (`local`), its destination the peer's (`remote`).
//!   [`Direction::Inbound`]: a packet just decrypted, about to be written to
//!   the TUN; source remote, destination local.
//! * **Selectors.** Both ends must lie inside the selectors of their side
//!   (`local` / `remote`; an empty list contains nothing). This alone refuses
//!   transit: a packet decrypted from peer X whose destination is not one of
//!   our own nets is dropped, so a site never relays between two of its peers.
//! * **Rules.** No rules: everything inside the selectors passes (a plain
//!   static tunnel). Otherwise at least one [`FlowRule`] must match:
//!   - `proto`: `None` matches any protocol, `Some(p)` the upper-layer
//!     protocol `p` (after IPv6 extension headers);
//!   - the rule's `opener` sends in the *opening* direction (`Side::Local`:
//!     outbound; `Side::Remote`: inbound). In that direction the destination
//!     port must be in `ports` (the responder's service); in the reverse
//!     direction the source port must be (the replies). An empty `ports`
//!     accepts any port;
//!   - TCP in the reverse direction: a segment with SYN set and ACK clear is
//!     refused, so the non-opener cannot start connections (a SYN-ACK, being
//!     a reply, passes);
//!   - ICMP and ICMPv6 match on the protocol only (no ports, either
//!     direction); a port-restricted rule with `proto: None` does not match
//!     them, nor any other protocol without ports;
//!   - non-first fragments (IPv4 offset ≠ 0, IPv6 fragment header with
//!     offset ≠ 0) carry no transport header and match on the protocol only
//!     (ports and direction ignored; again not a port-restricted `proto: None`
//!     rule).
//!     This is the usual stateless compromise: the first fragment is fully
//!     checked, and without it the receiver cannot reassemble. A TCP fragment
//!     with IPv4 offset 1 (8 bytes, which could overwrite the flags of the
//!     first one, RFC 1858) never matches;
//!   - `local_hosts` / `remote_hosts`: our end / the peer's end must be inside
//!     them; an empty list means any host inside the selectors.
//! * **Unparsed packets.** A TCP or UDP header too short to read is
//!   malformed and matches no rule. An IPv6 chain with an extension header we
//!   do not walk (Mobility, HIP, Shim6, experimental 253/254, or more than
//!   [`MAX_EXT_HEADERS`] headers, or truncated) has an unknown protocol: it
//!   matches only a rule with `proto: None` and no ports, and only in that
//!   rule's opening direction (it might hide a SYN).
//! * Anything that is not an IPv4/IPv6 packet is refused.
//!
//! With TSO/GSO the TUN hands super-packets; the TX worker receives them
//! already split into segments (tun-rs `recv_multiple`) and checks each
//! segment. Checking only a super-packet's first header would decide the
//! same: all its segments share addresses, protocol and ports, and only the
//! first can carry SYN.

use std::net::IpAddr;

use dodvpn_wire::ip::{self, IpHeader, TcpHeader, UdpHeader, UpperLayer};
use ipnet::IpNet;

use crate::netmap::NetMap;

/// IANA protocol numbers the filter knows.
pub mod proto {
    use dodvpn_wire::ip;
    /// ICMP.
    pub const ICMP: u8 = ip::PROTO_ICMP;
    /// TCP.
    pub const TCP: u8 = ip::PROTO_TCP;
    /// UDP.
    pub const UDP: u8 = ip::PROTO_UDP;
    /// ICMPv6.
    pub const ICMPV6: u8 = ip::PROTO_ICMPV6;
}

/// Longest IPv6 extension header chain walked before giving up.
pub const MAX_EXT_HEADERS: usize = ip::MAX_EXT_HEADERS;

/// One end of the SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Our site's hosts (the local traffic selector).
    Local,
    /// The peer's hosts (the remote traffic selector).
    Remote,
}

/// Which way a packet is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the TUN towards the peer (before sealing): src local, dst remote.
    Outbound,
    /// From the peer to the TUN (after opening): src remote, dst local.
    Inbound,
}

impl Direction {
    /// The side that sends in this direction.
    pub fn sender(self) -> Side {
        match self {
            Direction::Outbound => Side::Local,
            Direction::Inbound => Side::Remote,
        }
    }
}

/// One allowed service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRule {
    /// Who opens connections: `Local` = our hosts connect to the peer,
    /// `Remote` = the peer connects to us.
    pub opener: Side,
    /// Upper-layer protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6); `None` = any.
    pub proto: Option<u8>,
    /// Inclusive ranges of the responder's port; empty = any port.
    pub ports: Vec<(u16, u16)>,
    /// Our hosts this rule covers; empty = any inside the local selector.
    pub local_hosts: Vec<IpNet>,
    /// The peer's hosts this rule covers; empty = any inside the remote selector.
    pub remote_hosts: Vec<IpNet>,
}

impl FlowRule {
    /// A rule for `proto` and one responder port range, any hosts.
    pub fn service(opener: Side, proto: Option<u8>, ports: &[(u16, u16)]) -> FlowRule {
        FlowRule {
            opener,
            proto,
            ports: ports.to_vec(),
            local_hosts: Vec::new(),
            remote_hosts: Vec::new(),
        }
    }
}

/// Prefixes compiled to integer masks.
#[derive(Debug, Clone, Default)]
struct Nets {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Nets {
    fn new(nets: &[IpNet]) -> Nets {
        let mut n = Nets::default();
        for net in nets {
            match net {
                IpNet::V4(x) => {
                    let m = u32::from(x.netmask());
                    n.v4.push((u32::from(x.network()) & m, m));
                }
                IpNet::V6(x) => {
                    let m = u128::from(x.netmask());
                    n.v6.push((u128::from(x.network()) & m, m));
                }
            }
        }
        n
    }
    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
    #[inline]
    fn contains(&self, a: Addr) -> bool {
        match a {
            Addr::V4(a) => self.v4.iter().any(|&(net, m)| a & m == net),
            Addr::V6(a) => self.v6.iter().any(|&(net, m)| a & m == net),
        }
    }
    /// Empty means "any".
    #[inline]
    fn contains_or_any(&self, a: Addr) -> bool {
        self.is_empty() || self.contains(a)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addr {
    V4(u32),
    V6(u128),
}

#[derive(Debug, Clone)]
struct Compiled {
    opener: Side,
    proto: Option<u8>,
    ports: Vec<(u16, u16)>,
    local_hosts: Nets,
    remote_hosts: Nets,
}

/// What the transport header told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4 {
    /// TCP or UDP with both ports; `syn_only`: TCP SYN set, ACK clear.
    Ports {
        sport: u16,
        dport: u16,
        syn_only: bool,
    },
    /// ICMP / ICMPv6.
    Icmp,
    /// Non-first fragment: no transport header.
    Fragment,
    /// A protocol without ports we look at (GRE, SCTP, ESP, …).
    Other,
    /// Could not tell the protocol (unwalked extension header, truncated chain).
    Unknown,
    /// Truncated transport header or an overlapping TCP fragment: matches nothing.
    Malformed,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    src: Addr,
    dst: Addr,
    /// Upper-layer protocol, when known.
    proto: Option<u8>,
    l4: L4,
}

impl From<IpAddr> for Addr {
    #[inline]
    fn from(a: IpAddr) -> Addr {
        match a {
            IpAddr::V4(a) => Addr::V4(u32::from(a)),
            IpAddr::V6(a) => Addr::V6(u128::from(a)),
        }
    }
}

/// The transport part of a packet whose upper-layer protocol is `p`, found
/// at `l4` (not a fragment).
#[inline]
fn transport(p: u8, l4: &[u8]) -> L4 {
    match p {
        proto::TCP => match TcpHeader::parse(l4) {
            Ok(t) => L4::Ports {
                sport: t.src_port,
                dport: t.dst_port,
                syn_only: t.is_connection_request(),
            },
            Err(_) => L4::Malformed,
        },
        proto::UDP => match UdpHeader::parse(l4) {
            Ok(u) => L4::Ports {
                sport: u.src_port,
                dport: u.dst_port,
                syn_only: false,
            },
            Err(_) => L4::Malformed,
        },
        proto::ICMP | proto::ICMPV6 => L4::Icmp,
        _ => L4::Other,
    }
}

#[inline]
fn flow(h: &IpHeader) -> Flow {
    let (proto, l4) = match h.upper_layer() {
        Ok(UpperLayer::Header { protocol, offset }) => (
            Some(protocol),
            transport(protocol, h.bytes().get(offset..).unwrap_or_default()),
        ),
        // RFC 1858: an IPv4 TCP fragment at offset 1 could rewrite the flags
        // of the first one.
        Ok(UpperLayer::LaterFragment {
            protocol: proto::TCP,
            fragment_offset: 1,
        }) if !h.is_ipv6() => (Some(proto::TCP), L4::Malformed),
        // No transport header: match on the protocol only (for IPv6, the one
        // named in the fragment header, i.e. what follows in the first).
        Ok(UpperLayer::LaterFragment { protocol, .. }) => (Some(protocol), L4::Fragment),
        Ok(UpperLayer::Opaque) | Err(_) => (None, L4::Unknown),
    };
    Flow {
        src: h.src().into(),
        dst: h.dst().into(),
        proto,
        l4,
    }
}

/// Traffic selectors plus allowed services for one child SA. Immutable once
/// built; evaluate with [`PacketFilter::allows`]. See the module docs for the
/// exact semantics.
#[derive(Debug, Clone)]
pub struct PacketFilter {
    local: Vec<IpNet>,
    remote: Vec<IpNet>,
    rules: Vec<FlowRule>,
    c_local: Nets,
    c_remote: Nets,
    c_rules: Vec<Compiled>,
    netmap: NetMap,
}

impl PacketFilter {
    /// A filter for an SA between our nets `local` and the peer's nets
    /// `remote`, allowing the services in `rules` (empty: everything between
    /// the selectors).
    pub fn new(local: Vec<IpNet>, remote: Vec<IpNet>, rules: Vec<FlowRule>) -> PacketFilter {
        let c_rules = rules
            .iter()
            .map(|r| Compiled {
                opener: r.opener,
                proto: r.proto,
                ports: r.ports.clone(),
                local_hosts: Nets::new(&r.local_hosts),
                remote_hosts: Nets::new(&r.remote_hosts),
            })
            .collect();
        PacketFilter {
            c_local: Nets::new(&local),
            c_remote: Nets::new(&remote),
            c_rules,
            local,
            remote,
            rules,
            netmap: NetMap::default(),
        }
    }

    /// The same filter, for an SA whose site's real prefixes are seen by
    /// the peer through `netmap` (R-DP-8): the data plane translates the
    /// source of outbound packets (real → visible) *before* checking them,
    /// and the destination of inbound packets (visible → real) *after*;
    /// `local` and the rules' `local_hosts` are therefore visible prefixes.
    pub fn with_netmap(mut self, netmap: NetMap) -> PacketFilter {
        self.netmap = netmap;
        self
    }

    /// The SA's address mapping (empty: none).
    #[inline]
    pub fn netmap(&self) -> &NetMap {
        &self.netmap
    }

    /// Our nets (the local traffic selector).
    pub fn local(&self) -> &[IpNet] {
        &self.local
    }
    /// The peer's nets (the remote traffic selector).
    pub fn remote(&self) -> &[IpNet] {
        &self.remote
    }
    /// The allowed services (empty: all traffic between the selectors).
    pub fn rules(&self) -> &[FlowRule] {
        &self.rules
    }

    /// Whether `pkt` (an IPv4/IPv6 packet, or the first header of a GSO
    /// super-packet) may pass in direction `dir`.
    #[inline]
    pub fn allows(&self, dir: Direction, pkt: &[u8]) -> bool {
        self.verdict(dir, pkt) == Verdict::Allow
    }

    /// Like [`allows`](Self::allows), with the reason for a refusal.
    pub fn verdict(&self, dir: Direction, pkt: &[u8]) -> Verdict {
        let Ok(h) = dodvpn_wire::peek_ip(pkt) else {
            return Verdict::NotIp;
        };
        let f = flow(&h);
        let (local, remote) = match dir {
            Direction::Outbound => (f.src, f.dst),
            Direction::Inbound => (f.dst, f.src),
        };
        if !self.c_local.contains(local) || !self.c_remote.contains(remote) {
            return Verdict::OutsideSelectors;
        }
        if self.c_rules.is_empty() {
            return Verdict::Allow;
        }
        let sender = dir.sender();
        for r in &self.c_rules {
            if rule_matches(r, &f, sender == r.opener, local, remote) {
                return Verdict::Allow;
            }
        }
        Verdict::NoRule
    }
}

#[inline]
fn rule_matches(r: &Compiled, f: &Flow, opening: bool, local: Addr, remote: Addr) -> bool {
    if let Some(p) = r.proto {
        if f.proto != Some(p) {
            return false;
        }
    }
    let l4_ok = match f.l4 {
        L4::Ports {
            sport,
            dport,
            syn_only,
        } => {
            let port = if opening { dport } else { sport };
            (opening || !syn_only)
                && (r.ports.is_empty() || r.ports.iter().any(|&(lo, hi)| lo <= port && port <= hi))
        }
        L4::Icmp => r.proto.is_some() || r.ports.is_empty(),
        L4::Fragment => r.proto.is_some() || r.ports.is_empty(),
        L4::Other => r.ports.is_empty(),
        L4::Unknown => r.proto.is_none() && r.ports.is_empty() && opening,
        L4::Malformed => false,
    };
    l4_ok && r.local_hosts.contains_or_any(local) && r.remote_hosts.contains_or_any(remote)
}

/// The outcome of [`PacketFilter::verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The packet may pass.
    Allow,
    /// Not an IPv4/IPv6 packet (or a truncated header).
    NotIp,
    /// An address outside the SA's traffic selectors (transit, spoofing).
    OutsideSelectors,
    /// Inside the selectors, but no rule allows this service.
    NoRule,
}

impl PacketFilter {
    /// Whether `addr` is inside the selector of `side`.
    pub fn in_selector(&self, side: Side, addr: IpAddr) -> bool {
        let a = Addr::from(addr);
        match side {
            Side::Local => self.c_local.contains(a),
            Side::Remote => self.c_remote.contains(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Inbound, Outbound};

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    const TCP_SYN: u8 = 0x02;
    const TCP_ACK: u8 = 0x10;

    /// IPv4 packet; `l4` is the transport header + payload.
    fn v4(src: &str, dst: &str, p: u8, l4: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 20];
        v[0] = 0x45;
        let tl = (20 + l4.len()) as u16;
        v[2..4].copy_from_slice(&tl.to_be_bytes());
        v[8] = 64;
        v[9] = p;
        v[12..16].copy_from_slice(&src.parse::<std::net::Ipv4Addr>().unwrap().octets());
        v[16..20].copy_from_slice(&dst.parse::<std::net::Ipv4Addr>().unwrap().octets());
        v.extend_from_slice(l4);
        v
    }

    /// IPv6 packet with extension headers `ext` (each: (type, bytes incl.
    /// its own next-header byte, which is filled in)).
    fn v6(src: &str, dst: &str, ext: &[(u8, Vec<u8>)], p: u8, l4: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 40];
        v[0] = 0x60;
        v[6] = ext.first().map(|e| e.0).unwrap_or(p);
        v[7] = 64;
        v[8..24].copy_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
        v[24..40].copy_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
        for (i, (_, bytes)) in ext.iter().enumerate() {
            let mut b = bytes.clone();
            b[0] = ext.get(i + 1).map(|e| e.0).unwrap_or(p);
            v.extend_from_slice(&b);
        }
        v.extend_from_slice(l4);
        let pl = (v.len() - 40) as u16;
        v[4..6].copy_from_slice(&pl.to_be_bytes());
        v
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&8u16.to_be_bytes());
        u
    }

    fn icmp_echo() -> Vec<u8> {
        vec![8, 0, 0, 0, 0, 1, 0, 1]
    }

    /// Site A (10.10.1.0/24) whose hosts may open TCP 443 to site B
    /// (10.10.2.0/24); the filter as A installs it.
    fn a_https() -> PacketFilter {
        PacketFilter::new(
            vec![n("10.10.1.0/24")],
            vec![n("10.10.2.0/24")],
            vec![FlowRule::service(
                Side::Local,
                Some(proto::TCP),
                &[(443, 443)],
            )],
        )
    }

    #[test]
    fn opener_reaches_the_service_port_and_replies_come_back() {
        let f = a_https();
        let syn = v4(
            "10.10.1.5",
            "10.10.2.9",
            proto::TCP,
            &tcp(40000, 443, TCP_SYN),
        );
        assert!(f.allows(Outbound, &syn));
        let synack = v4(
            "10.10.2.9",
            "10.10.1.5",
            proto::TCP,
            &tcp(443, 40000, TCP_SYN | TCP_ACK),
        );
        assert!(f.allows(Inbound, &synack), "SYN-ACK is a reply");
        let data = v4(
            "10.10.2.9",
            "10.10.1.5",
            proto::TCP,
            &tcp(443, 40000, TCP_ACK),
        );
        assert!(f.allows(Inbound, &data));
        let ack = v4(
            "10.10.1.5",
            "10.10.2.9",
            proto::TCP,
            &tcp(40000, 443, TCP_ACK),
        );
        assert!(f.allows(Outbound, &ack));
    }

    #[test]
    fn other_ports_and_protocols_are_refused() {
        let f = a_https();
        let ssh = v4(
            "10.10.1.5",
            "10.10.2.9",
            proto::TCP,
            &tcp(40000, 22, TCP_SYN),
        );
        assert_eq!(f.verdict(Outbound, &ssh), Verdict::NoRule);
        let u = v4("10.10.1.5", "10.10.2.9", proto::UDP, &udp(40000, 443));
        assert_eq!(f.verdict(Outbound, &u), Verdict::NoRule);
        let ping = v4("10.10.1.5", "10.10.2.9", proto::ICMP, &icmp_echo());
        assert_eq!(f.verdict(Outbound, &ping), Verdict::NoRule);
        // A "reply" from a port that is not the service port.
        let r = v4(
            "10.10.2.9",
            "10.10.1.5",
            proto::TCP,
            &tcp(22, 40000, TCP_ACK),
        );
        assert_eq!(f.verdict(Inbound, &r), Verdict::NoRule);
        // Responder port in the wrong field: the peer sending *to* our 443.
        let r = v4(
            "10.10.2.9",
            "10.10.1.5",
            proto::TCP,
            &tcp(40000, 443, TCP_ACK),
        );
        assert_eq!(f.verdict(Inbound, &r), Verdict::NoRule);
    }

    #[test]
    fn the_non_opener_cannot_start_connections() {
        let f = a_https();
        // B opens to A from its service port: SYN without ACK, refused.
        let syn = v4(
            "10.10.2.9",
            "10.10.1.5",
            proto::TCP,
            &tcp(443, 40000, TCP_SYN),
        );
        assert_eq!(f.verdict(Inbound, &syn), Verdict::NoRule);
        // B opening to A's 443 is the wrong way round entirely.
        let syn = v4(
            "10.10.2.9",
            "10.10.1.5",
            proto::TCP,
            &tcp(40000, 443, TCP_SYN),
        );
        assert_eq!(f.verdict(Inbound, &syn), Verdict::NoRule);
        // Seen from B's side (opener = Remote): B's outbound SYN is refused,
        // A's inbound SYN to 443 passes.
        let b = PacketFilter::new(
            vec![n("10.10.2.0/24")],
            vec![n("10.10.1.0/24")],
            vec![FlowRule::service(
                Side::Remote,
                Some(proto::TCP),
                &[(443, 443)],
            )],
        );
        let out_syn = v4(
            "10.10.2.9",
            "10.10.1.5",
            proto::TCP,
            &tcp(443, 40000, TCP_SYN),
        );
        assert_eq!(b.verdict(Outbound, &out_syn), Verdict::NoRule);
        let in_syn = v4(
            "10.10.1.5",
            "10.10.2.9",
            proto::TCP,
            &tcp(40000, 443, TCP_SYN),
        );
        assert_eq!(b.verdict(Inbound, &in_syn), Verdict::Allow);
        let out_synack = v4(
            "10.10.2.9",
            "10.10.1.5",
            proto::TCP,
            &tcp(443, 40000, TCP_SYN | TCP_ACK),
        );
        assert_eq!(b.verdict(Outbound, &out_synack), Verdict::Allow);
    }

    #[test]
    fn transit_and_spoofing_are_refused_by_the_selectors() {
        let f = a_https();
        // Decrypted from B, addressed to a third site (not our nets): transit.
        let t = v4(
            "10.10.2.9",
            "10.10.3.1",
            proto::TCP,
            &tcp(443, 40000, TCP_ACK),
        );
        assert_eq!(f.verdict(Inbound, &t), Verdict::OutsideSelectors);
        // Spoofed source outside B's nets.
        let t = v4(
            "10.10.3.1",
            "10.10.1.5",
            proto::TCP,
            &tcp(443, 40000, TCP_ACK),
        );
        assert_eq!(f.verdict(Inbound, &t), Verdict::OutsideSelectors);
        // Outbound from a host that is not ours.
        let t = v4(
            "10.10.3.1",
            "10.10.2.9",
            proto::TCP,
            &tcp(40000, 443, TCP_SYN),
        );
        assert_eq!(f.verdict(Outbound, &t), Verdict::OutsideSelectors);
        // Even a plain tunnel (no rules) refuses transit.
        let plain = PacketFilter::new(vec![n("10.10.1.0/24")], vec![n("10.10.2.0/24")], vec![]);
        let t = v4("10.10.2.9", "10.10.3.1", proto::UDP, &udp(1, 2));
        assert_eq!(plain.verdict(Inbound, &t), Verdict::OutsideSelectors);
        let ok = v4("10.10.2.9", "10.10.1.1", proto::UDP, &udp(1, 2));
        assert_eq!(plain.verdict(Inbound, &ok), Verdict::Allow);
        // Empty selectors contain nothing.
        let none = PacketFilter::new(vec![], vec![], vec![]);
        assert_eq!(none.verdict(Inbound, &ok), Verdict::OutsideSelectors);
    }

    #[test]
    fn hosts_ranges_and_any_protocol() {
        let f = PacketFilter::new(
            vec![n("10.10.1.0/24")],
            vec![n("10.10.2.0/24")],
            vec![
                FlowRule {
                    opener: Side::Remote,
                    proto: Some(proto::TCP),
                    ports: vec![(8000, 8099), (22, 22)],
                    local_hosts: vec![n("10.10.1.7/32")],
                    remote_hosts: vec![n("10.10.2.128/25")],
                },
                FlowRule::service(Side::Local, None, &[]),
            ],
        );
        let syn = |src: &str, dst: &str, dport: u16| {
            v4(src, dst, proto::TCP, &tcp(50000, dport, TCP_SYN))
        };
        assert!(f.allows(Inbound, &syn("10.10.2.200", "10.10.1.7", 8050)));
        assert!(f.allows(Inbound, &syn("10.10.2.200", "10.10.1.7", 22)));
        assert!(f.allows(Inbound, &syn("10.10.2.200", "10.10.1.7", 8099)));
        assert!(!f.allows(Inbound, &syn("10.10.2.200", "10.10.1.7", 8100)));
        assert!(
            !f.allows(Inbound, &syn("10.10.2.200", "10.10.1.8", 8050)),
            "not the contracted host"
        );
        assert!(
            !f.allows(Inbound, &syn("10.10.2.5", "10.10.1.7", 8050)),
            "not from the allowed peer hosts"
        );
        // The proto=None rule lets A open anything (and get answers) ...
        assert!(f.allows(
            Outbound,
            &v4("10.10.1.1", "10.10.2.1", proto::UDP, &udp(5, 53))
        ));
        assert!(
            f.allows(Outbound, &v4("10.10.1.1", "10.10.2.1", 47, &[0; 4])),
            "GRE"
        );
        assert!(f.allows(
            Inbound,
            &v4("10.10.2.1", "10.10.1.1", proto::UDP, &udp(53, 5))
        ));
        // ... but B still cannot open TCP to A except on the first rule.
        assert!(!f.allows(Inbound, &syn("10.10.2.1", "10.10.1.1", 9999)));
    }

    #[test]
    fn icmp_matches_on_protocol_only() {
        let f = PacketFilter::new(
            vec![n("10.10.1.0/24"), n("fd00:1::/64")],
            vec![n("10.10.2.0/24"), n("fd00:2::/64")],
            vec![
                FlowRule::service(Side::Local, Some(proto::ICMP), &[(1, 1)]),
                FlowRule::service(Side::Local, Some(proto::ICMPV6), &[]),
                FlowRule::service(Side::Local, None, &[(443, 443)]),
            ],
        );
        let req = v4("10.10.1.1", "10.10.2.1", proto::ICMP, &icmp_echo());
        let rep = v4(
            "10.10.2.1",
            "10.10.1.1",
            proto::ICMP,
            &[0, 0, 0, 0, 0, 1, 0, 1],
        );
        assert!(f.allows(Outbound, &req));
        assert!(f.allows(Inbound, &rep));
        let req6 = v6(
            "fd00:1::1",
            "fd00:2::1",
            &[],
            proto::ICMPV6,
            &[128, 0, 0, 0, 0, 1, 0, 1],
        );
        assert!(f.allows(Outbound, &req6));
        assert!(f.allows(
            Inbound,
            &v6(
                "fd00:2::1",
                "fd00:1::1",
                &[],
                proto::ICMPV6,
                &[129, 0, 0, 0]
            )
        ));
        // Port-restricted proto=None does not cover ICMP.
        let only443 = PacketFilter::new(
            vec![n("10.10.1.0/24")],
            vec![n("10.10.2.0/24")],
            vec![FlowRule::service(Side::Local, None, &[(443, 443)])],
        );
        assert!(!only443.allows(Outbound, &req));
        assert!(only443.allows(
            Outbound,
            &v4("10.10.1.1", "10.10.2.1", proto::UDP, &udp(9, 443))
        ));
    }

    #[test]
    fn ipv4_fragments() {
        let f = a_https();
        let mut frag = v4("10.10.1.5", "10.10.2.9", proto::TCP, &[0xaa; 64]);
        frag[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes()); // MF, offset 185*8
        assert!(f.allows(Outbound, &frag), "non-first fragment: proto only");
        let mut udp_frag = frag.clone();
        udp_frag[9] = proto::UDP;
        assert!(!f.allows(Outbound, &udp_frag), "wrong protocol");
        // RFC 1858: a TCP fragment at offset 1 could rewrite the flags.
        frag[6..8].copy_from_slice(&1u16.to_be_bytes());
        assert!(!f.allows(Outbound, &frag));
        // First fragment: full check; too short for a TCP header: malformed.
        let mut first = v4(
            "10.10.1.5",
            "10.10.2.9",
            proto::TCP,
            &tcp(40000, 443, TCP_SYN),
        );
        first[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        assert!(f.allows(Outbound, &first));
        let short = v4(
            "10.10.1.5",
            "10.10.2.9",
            proto::TCP,
            &tcp(40000, 443, TCP_SYN)[..12],
        );
        assert_eq!(f.verdict(Outbound, &short), Verdict::NoRule);
        // IPv4 options are skipped.
        let mut opt = v4("10.10.1.5", "10.10.2.9", proto::TCP, &[]);
        opt[0] = 0x46;
        opt.extend_from_slice(&[1, 1, 1, 0]);
        opt.extend_from_slice(&tcp(40000, 443, TCP_SYN));
        assert!(f.allows(Outbound, &opt));
        opt[0] = 0x47; // IHL beyond... still a valid header, now port bytes shift
        assert!(!f.allows(Outbound, &opt));
        opt[0] = 0x4f;
        opt.truncate(50);
        assert_eq!(f.verdict(Outbound, &opt), Verdict::NotIp);
    }

    #[test]
    fn ipv6_with_extension_headers() {
        let f = PacketFilter::new(
            vec![n("fd00:1::/64")],
            vec![n("fd00:2::/64")],
            vec![FlowRule::service(
                Side::Remote,
                Some(proto::TCP),
                &[(443, 443)],
            )],
        );
        let syn = tcp(40000, 443, TCP_SYN);
        let plain = v6("fd00:2::9", "fd00:1::5", &[], proto::TCP, &syn);
        assert!(f.allows(Inbound, &plain));
        let hbh = (0u8, vec![0, 0, 1, 4, 0, 0, 0, 0]);
        let dst = (60u8, vec![0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let frag0 = (44u8, vec![0, 0, 0, 1, 0, 0, 0, 7]); // offset 0, M
        let with_ext = v6(
            "fd00:2::9",
            "fd00:1::5",
            &[hbh.clone(), dst.clone(), frag0],
            proto::TCP,
            &syn,
        );
        assert!(f.allows(Inbound, &with_ext));
        let wrong_port = v6(
            "fd00:2::9",
            "fd00:1::5",
            &[hbh.clone(), dst],
            proto::TCP,
            &tcp(4, 22, TCP_SYN),
        );
        assert_eq!(f.verdict(Inbound, &wrong_port), Verdict::NoRule);
        // Non-first fragment: protocol only.
        let frag = (44u8, vec![0, 0, 0x05, 0x00, 0, 0, 0, 7]);
        let nf = v6("fd00:2::9", "fd00:1::5", &[frag], proto::TCP, &[0xbb; 32]);
        assert!(f.allows(Inbound, &nf));
        // An extension header we do not walk: unknown protocol, not matched
        // by a TCP rule ...
        let mobility = (135u8, vec![0, 0, 0, 0, 0, 0, 0, 0]);
        let hidden = v6(
            "fd00:2::9",
            "fd00:1::5",
            std::slice::from_ref(&mobility),
            proto::TCP,
            &syn,
        );
        assert_eq!(f.verdict(Inbound, &hidden), Verdict::NoRule);
        // ... only by an any-protocol rule without ports, in its opening direction.
        let any_in = PacketFilter::new(
            vec![n("fd00:1::/64")],
            vec![n("fd00:2::/64")],
            vec![FlowRule::service(Side::Remote, None, &[])],
        );
        assert!(any_in.allows(Inbound, &hidden));
        let hidden_out = v6("fd00:1::5", "fd00:2::9", &[mobility], proto::TCP, &syn);
        assert!(
            !any_in.allows(Outbound, &hidden_out),
            "might hide a SYN from the non-opener"
        );
        // A truncated chain.
        let cut = &with_ext[..44];
        assert_eq!(f.verdict(Inbound, cut), Verdict::NoRule);
        // Too long a chain.
        let many: Vec<(u8, Vec<u8>)> = (0..=MAX_EXT_HEADERS).map(|_| (60u8, vec![0; 8])).collect();
        let long = v6("fd00:2::9", "fd00:1::5", &many, proto::TCP, &syn);
        assert_eq!(f.verdict(Inbound, &long), Verdict::NoRule);
        let ok: Vec<(u8, Vec<u8>)> = (0..MAX_EXT_HEADERS).map(|_| (60u8, vec![0; 8])).collect();
        assert!(f.allows(
            Inbound,
            &v6("fd00:2::9", "fd00:1::5", &ok, proto::TCP, &syn)
        ));
        // Selectors are per family.
        let v4_pkt = v4("10.10.2.9", "10.10.1.5", proto::TCP, &syn);
        assert_eq!(f.verdict(Inbound, &v4_pkt), Verdict::OutsideSelectors);
        assert!(f.in_selector(Side::Local, "fd00:1::5".parse().unwrap()));
        assert!(!f.in_selector(Side::Remote, "fd00:1::5".parse().unwrap()));
    }

    #[test]
    fn not_ip_is_refused() {
        let f = PacketFilter::new(
            vec![n("0.0.0.0/0"), n("::/0")],
            vec![n("0.0.0.0/0"), n("::/0")],
            vec![],
        );
        assert_eq!(f.verdict(Inbound, &[]), Verdict::NotIp);
        assert_eq!(f.verdict(Inbound, &[0x45; 19]), Verdict::NotIp);
        assert_eq!(f.verdict(Inbound, &[0x60; 39]), Verdict::NotIp);
        assert_eq!(f.verdict(Inbound, &[0x10; 60]), Verdict::NotIp);
        assert_eq!(f.verdict(Inbound, &[0x44; 60]), Verdict::NotIp, "IHL 4");
        assert!(f.allows(Inbound, &v4("1.2.3.4", "5.6.7.8", 200, &[])));
        assert_eq!(
            DropReason::from_verdict(Inbound, Verdict::OutsideSelectors),
            Some(DropReason::InboundSelector)
        );
        assert_eq!(
            DropReason::from_verdict(Outbound, Verdict::NoRule),
            Some(DropReason::OutboundFiltered)
        );
        assert_eq!(DropReason::from_verdict(Outbound, Verdict::Allow), None);
    }

    use crate::counters::DropReason;

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            version in 0u8..3,
        ) {
            let mut pkt = bytes;
            // Steer a share of the inputs into the IPv4 / IPv6 parsers.
            if let Some(b) = pkt.first_mut() {
                match version {
                    0 => *b = 0x40 | (*b & 0x0f),
                    1 => *b = 0x60 | (*b & 0x0f),
                    _ => {}
                }
            }
            let filters = [
                a_https(),
                PacketFilter::new(vec![n("0.0.0.0/0"), n("::/0")], vec![n("0.0.0.0/0"), n("::/0")], vec![]),
                PacketFilter::new(
                    vec![n("0.0.0.0/0"), n("::/0")],
                    vec![n("0.0.0.0/0"), n("::/0")],
                    vec![
                        FlowRule::service(Side::Remote, None, &[]),
                        FlowRule::service(Side::Local, Some(proto::UDP), &[(0, 1024)]),
                    ],
                ),
            ];
            for f in &filters {
                for dir in [Inbound, Outbound] {
                    let v = f.verdict(dir, &pkt);
                    proptest::prop_assert_eq!(v == Verdict::Allow, f.allows(dir, &pkt));
                }
            }
        }
    }
}

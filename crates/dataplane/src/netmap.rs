//! Stateless 1:1 prefix translation of inner packets (NETMAP), so that sites
//! with overlapping private ranges can share one VPN (R-DP-8, TR D.7 c).
//!
//! A site whose real prefix (say 10.2.0.0/24) collides with another site's is
//! given a *visible* prefix of the same length by the centre (say
//! 100.64.1.0/24). Only the site's own end translates; its peers see and
//! negotiate the visible prefix only:
//!
//! * outbound (read from the TUN, before the selector/filter check and
//!   sealing): the **source** address, real → visible;
//! * inbound (just opened and checked against the selectors, before the TUN
//!   write): the **destination** address, visible → real.
//!
//! The host part is kept, so the mapping needs no state and is its own
//! inverse with the pairs swapped. Checksums are adjusted incrementally
//! (RFC 1624, eqn. 3): the IPv4 header checksum; the TCP and UDP checksums,
//! whose pseudo-header holds the addresses (a UDP checksum of 0, "none", stays
//! 0; a result of 0 is sent as 0xFFFF); ICMP has no pseudo-header, but an ICMP
//! error quotes the offending packet, whose *opposite* address (the quoted
//! packet went the other way) is translated too, with its header checksum,
//! its UDP/TCP checksum when quoted, and the ICMP checksum over all of them.
//! Non-first fragments carry no transport header: only the IP header changes.
//!
//! Checksum offload: the TX worker gets packets from tun-rs already split
//! from GSO super-packets with their checksums completed, and the RX worker
//! translates before tun-rs coalesces (GRO) and re-derives the pseudo-header
//! sum, so the data plane translates full checksums only. For a packet still
//! marked CHECKSUM_PARTIAL (virtio `NEEDS_CSUM`: the transport checksum field
//! holds the folded, *uncomplemented* pseudo-header sum),
//! [`translate`] with [`L4Csum::Partial`] adjusts that sum the same way.
//!
//! IPv4 only: IPv6 packets pass unchanged, and [`NetMap::new`] refuses IPv6
//! pairs. Nothing allocates per packet.

use dodvpn_wire::ip::{tcp, udp, v4, PROTO_ICMP as ICMP, PROTO_TCP as TCP, PROTO_UDP as UDP};
use ipnet::IpNet;

/// Where the checksum field ends in a TCP / UDP header: a segment shorter
/// than that is left alone.
const TCP_CSUM_END: usize = tcp::CHECKSUM + 2;
const UDP_CSUM_END: usize = udp::CHECKSUM + 2;

/// A configured mapping could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMapError {
    /// Only IPv4 prefixes can be mapped.
    NotIpv4(IpNet),
    /// The real and visible prefixes must have the same length.
    LengthMismatch(IpNet, IpNet),
}

impl std::fmt::Display for NetMapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetMapError::NotIpv4(n) => write!(f, "{n}: only IPv4 prefixes can be mapped"),
            NetMapError::LengthMismatch(a, b) => {
                write!(f, "{a} and {b}: a mapping keeps the prefix length")
            }
        }
    }
}

impl std::error::Error for NetMapError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pair {
    real: u32,
    visible: u32,
    mask: u32,
}

/// Which address of the packet is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The source address (bytes 12..16).
    Src,
    /// The destination address (bytes 16..20).
    Dst,
}

impl Field {
    fn offset(self) -> usize {
        match self {
            Field::Src => v4::SRC,
            Field::Dst => v4::DST,
        }
    }
    fn other(self) -> Field {
        match self {
            Field::Src => Field::Dst,
            Field::Dst => Field::Src,
        }
    }
}

/// What the transport checksum field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Csum {
    /// A complete checksum (the usual case).
    Full,
    /// CHECKSUM_PARTIAL: the folded pseudo-header sum, not complemented; the
    /// rest is summed later (by the kernel, or by a GSO split).
    Partial,
}

/// Real ↔ visible prefix pairs of one site (IPv4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetMap {
    pairs: Vec<Pair>,
    nets: Vec<(IpNet, IpNet)>,
}

impl NetMap {
    /// A mapping from `(real, visible)` pairs; identical pairs are dropped.
    pub fn new(pairs: &[(IpNet, IpNet)]) -> Result<NetMap, NetMapError> {
        let mut m = NetMap::default();
        for &(real, visible) in pairs {
            let (IpNet::V4(r), IpNet::V4(v)) = (real, visible) else {
                return Err(NetMapError::NotIpv4(if real.addr().is_ipv4() {
                    visible
                } else {
                    real
                }));
            };
            if r.prefix_len() != v.prefix_len() {
                return Err(NetMapError::LengthMismatch(real, visible));
            }
            let (r, v) = (r.trunc(), v.trunc());
            if r == v {
                continue;
            }
            m.pairs.push(Pair {
                real: u32::from(r.network()),
                visible: u32::from(v.network()),
                mask: u32::from(r.netmask()),
            });
            m.nets.push((IpNet::V4(r), IpNet::V4(v)));
        }
        Ok(m)
    }

    /// No pair (nothing is translated).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The `(real, visible)` pairs.
    pub fn pairs(&self) -> &[(IpNet, IpNet)] {
        &self.nets
    }

    /// The visible address of `a`, if it lies in a real prefix.
    #[inline]
    pub fn to_visible(&self, a: u32) -> Option<u32> {
        self.pairs
            .iter()
            .find(|p| a & p.mask == p.real)
            .map(|p| p.visible | (a & !p.mask))
    }

    /// The real address of `a`, if it lies in a visible prefix.
    #[inline]
    pub fn to_real(&self, a: u32) -> Option<u32> {
        self.pairs
            .iter()
            .find(|p| a & p.mask == p.visible)
            .map(|p| p.real | (a & !p.mask))
    }

    /// Outbound (TUN → peer): source real → visible. True if rewritten.
    #[inline]
    pub fn outbound(&self, pkt: &mut [u8]) -> bool {
        if self.pairs.is_empty() {
            return false;
        }
        translate(pkt, Field::Src, L4Csum::Full, |a| self.to_visible(a))
    }

    /// Inbound (peer → TUN): destination visible → real. True if rewritten.
    #[inline]
    pub fn inbound(&self, pkt: &mut [u8]) -> bool {
        if self.pairs.is_empty() {
            return false;
        }
        translate(pkt, Field::Dst, L4Csum::Full, |a| self.to_real(a))
    }
}

#[inline]
fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The ones'-complement difference `new - old` of a 32-bit value, unfolded.
#[inline]
fn delta32(old: u32, new: u32) -> u32 {
    u32::from(!(old >> 16) as u16) + u32::from(!(old as u16)) + (new >> 16) + (new & 0xffff)
}

#[inline]
fn delta16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// RFC 1624 eqn. 3 on a complete checksum: HC' = ~(~HC + ~m + m').
#[inline]
fn adjust_full(hc: u16, delta: u32) -> u16 {
    !fold(u32::from(!hc) + delta)
}

#[inline]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Adjust the checksum at `at` by `delta`; returns the ones'-complement
/// change of the field itself (for a checksum that covers this one, as the
/// ICMP checksum covers a quoted packet).
#[inline]
fn adjust_at(b: &mut [u8], at: usize, delta: u32, kind: L4Csum, udp: bool) -> u32 {
    let old = rd16(b, at);
    let new = match kind {
        L4Csum::Full => {
            if udp && old == 0 {
                return 0; // no checksum
            }
            let n = adjust_full(old, delta);
            if udp && n == 0 {
                0xffff
            } else {
                n
            }
        }
        L4Csum::Partial => fold(u32::from(old) + delta),
    };
    wr16(b, at, new);
    delta16(old, new)
}

/// What the translation needs of an IPv4 header.
struct V4Header {
    /// IHL × 4.
    len: usize,
    protocol: u8,
    /// A fragment other than the first: no transport header.
    later_fragment: bool,
}

/// The IPv4 header at the start of `pkt`, if it is one we can read.
#[inline]
fn v4_header(pkt: &[u8]) -> Option<V4Header> {
    let h = dodvpn_wire::peek_ip(pkt).ok()?;
    let (fragment_offset, _) = h.ipv4_fragment()?;
    Some(V4Header {
        len: h.header_len(),
        protocol: h.next_header(),
        later_fragment: fragment_offset != 0,
    })
}

/// Rewrite address `field` of the IPv4 packet `pkt` to `map(old)` when that
/// is `Some`, fixing the checksums (see the module documentation). Returns
/// whether the packet was changed. Never panics, whatever the bytes.
pub fn translate(
    pkt: &mut [u8],
    field: Field,
    l4: L4Csum,
    map: impl Fn(u32) -> Option<u32>,
) -> bool {
    let Some(h) = v4_header(pkt) else {
        return false;
    };
    let at = field.offset();
    let old = rd32(pkt, at);
    let Some(new) = map(old) else {
        return false;
    };
    if new == old {
        return true;
    }
    let d = delta32(old, new);
    pkt[at..at + 4].copy_from_slice(&new.to_be_bytes());
    adjust_at(pkt, v4::CHECKSUM, d, L4Csum::Full, false);
    if h.later_fragment {
        return true;
    }
    let seg = &mut pkt[h.len..];
    match h.protocol {
        TCP if seg.len() >= TCP_CSUM_END => {
            adjust_at(seg, tcp::CHECKSUM, d, l4, false);
        }
        UDP if seg.len() >= UDP_CSUM_END => {
            adjust_at(seg, udp::CHECKSUM, d, l4, true);
        }
        ICMP => icmp_error(seg, field.other(), &map),
        _ => {}
    }
    true
}

/// An ICMP error quotes the packet that caused it (RFC 792: its IP header and
/// at least 8 bytes): translate the quoted packet's `field` too, and fold every
/// changed word into the ICMP checksum.
fn icmp_error(icmp: &mut [u8], field: Field, map: &impl Fn(u32) -> Option<u32>) {
    // Destination unreachable, source quench, redirect, time exceeded,
    // parameter problem.
    if icmp.len() < 8 || !matches!(icmp[0], 3 | 4 | 5 | 11 | 12) {
        return;
    }
    let (head, quoted) = icmp.split_at_mut(8);
    let Some(h) = v4_header(quoted) else {
        return;
    };
    let at = field.offset();
    let old = rd32(quoted, at);
    let Some(new) = map(old) else {
        return;
    };
    if new == old {
        return;
    }
    let d = delta32(old, new);
    quoted[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let mut icmp_delta = d;
    icmp_delta += adjust_at(quoted, v4::CHECKSUM, d, L4Csum::Full, false);
    if !h.later_fragment {
        let seg = &mut quoted[h.len..];
        match h.protocol {
            TCP if seg.len() >= TCP_CSUM_END => {
                icmp_delta += adjust_at(seg, tcp::CHECKSUM, d, L4Csum::Full, false)
            }
            UDP if seg.len() >= UDP_CSUM_END => {
                icmp_delta += adjust_at(seg, udp::CHECKSUM, d, L4Csum::Full, true)
            }
            _ => {}
        }
    }
    // The quoted packet starts 8 bytes into the ICMP message and every field
    // changed sits at an even offset in it, so the words line up.
    let c = rd16(head, 2);
    wr16(head, 2, adjust_full(c, fold(icmp_delta).into()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    /// Ones'-complement sum of `b` (odd length padded), unfolded.
    fn sum(b: &[u8], mut s: u32) -> u32 {
        let mut c = b.chunks_exact(2);
        for w in &mut c {
            s += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [x] = c.remainder() {
            s += u32::from(*x) << 8;
        }
        s
    }

    fn csum(b: &[u8], init: u32) -> u16 {
        !fold(sum(b, init))
    }

    fn pseudo(pkt: &[u8], proto: u8, l4len: usize) -> u32 {
        sum(&pkt[12..20], 0) + u32::from(proto) + l4len as u32
    }

    /// An IPv4 packet with correct checksums computed from scratch.
    fn v4(src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
        p.extend_from_slice(&ip(src).to_be_bytes());
        p.extend_from_slice(&ip(dst).to_be_bytes());
        p.extend_from_slice(l4);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let c = csum(&p[..20], 0);
        wr16(&mut p, 10, c);
        fill_l4(&mut p);
        p
    }

    fn fill_l4(p: &mut [u8]) {
        let proto = p[9];
        let l4len = p.len() - 20;
        let ps = pseudo(p, proto, l4len);
        match proto {
            TCP => {
                wr16(p, 36, 0);
                let c = csum(&p[20..], ps);
                wr16(p, 36, c);
            }
            UDP => {
                wr16(p, 26, 0);
                let c = csum(&p[20..], ps);
                wr16(p, 26, if c == 0 { 0xffff } else { c });
            }
            ICMP => {
                wr16(p, 22, 0);
                let c = csum(&p[20..], 0);
                wr16(p, 22, c);
            }
            _ => {}
        }
    }

    fn tcp(payload: &[u8]) -> Vec<u8> {
        let mut t = vec![
            0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
        ];
        t.extend_from_slice(payload);
        t
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let len = (8 + payload.len()) as u16;
        let mut u = vec![0x13, 0x88, 0x00, 0x35];
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn echo() -> Vec<u8> {
        vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g']
    }

    /// Every checksum in `p` verifies (sums to 0xFFFF), recomputed from scratch.
    fn assert_valid(p: &[u8]) {
        assert_eq!(fold(sum(&p[..20], 0)), 0xffff, "IPv4 header checksum");
        let l4 = &p[20..];
        match p[9] {
            TCP => assert_eq!(fold(sum(l4, pseudo(p, TCP, l4.len()))), 0xffff, "TCP"),
            UDP if rd16(l4, 6) != 0 => {
                assert_eq!(fold(sum(l4, pseudo(p, UDP, l4.len()))), 0xffff, "UDP")
            }
            ICMP => {
                assert_eq!(fold(sum(l4, 0)), 0xffff, "ICMP");
                if matches!(l4[0], 3 | 11) {
                    let q = &l4[8..];
                    assert_eq!(fold(sum(&q[..20], 0)), 0xffff, "quoted IPv4 header");
                }
            }
            _ => {}
        }
    }

    fn map() -> NetMap {
        NetMap::new(&[
            (n("10.2.0.0/24"), n("100.64.1.0/24")),
            (n("192.168.0.0/16"), n("100.65.0.0/16")),
        ])
        .unwrap()
    }

    fn addr(p: &[u8], f: Field) -> Ipv4Addr {
        Ipv4Addr::from(rd32(p, f.offset()))
    }

    #[test]
    fn tcp_udp_icmp_outbound_and_back() {
        let m = map();
        for l4 in [
            (TCP, tcp(b"hello, hospital")),
            (UDP, udp(b"odd")),
            (ICMP, echo()),
        ] {
            let orig = v4("10.2.0.7", "10.1.5.20", l4.0, &l4.1);
            let mut p = orig.clone();
            assert!(m.outbound(&mut p));
            assert_eq!(
                addr(&p, Field::Src),
                "100.64.1.7".parse::<Ipv4Addr>().unwrap()
            );
            assert_eq!(
                addr(&p, Field::Dst),
                "10.1.5.20".parse::<Ipv4Addr>().unwrap()
            );
            assert_valid(&p);
            // Same bytes as building it with the visible source from scratch.
            assert_eq!(p, v4("100.64.1.7", "10.1.5.20", l4.0, &l4.1));
            // The reply comes in to the visible address and goes out real.
            let mut r = v4("10.1.5.20", "100.64.1.7", l4.0, &l4.1);
            assert!(m.inbound(&mut r));
            assert_eq!(r, v4("10.1.5.20", "10.2.0.7", l4.0, &l4.1));
        }
    }

    #[test]
    fn untouched_when_outside_the_map() {
        let m = map();
        for p in [
            v4("10.3.0.7", "10.1.5.20", TCP, &tcp(b"x")),
            // A real destination is not translated inbound (only visible ones).
            v4("10.1.5.20", "10.2.0.7", TCP, &tcp(b"x")),
        ] {
            let mut q = p.clone();
            assert!(!m.outbound(&mut q));
            assert!(!m.inbound(&mut q));
            assert_eq!(q, p);
        }
        let mut v6 = vec![0x60; 60];
        assert!(!m.outbound(&mut v6) && !m.inbound(&mut v6));
        assert!(NetMap::new(&[(n("fd00::/64"), n("fd01::/64"))]).is_err());
        assert!(NetMap::new(&[(n("10.2.0.0/24"), n("100.64.0.0/23"))]).is_err());
        assert!(NetMap::new(&[(n("10.2.0.0/24"), n("10.2.0.0/24"))])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let m = map();
        let mut p = v4("10.2.0.7", "10.1.5.20", UDP, &udp(b"no sum"));
        wr16(&mut p, 26, 0);
        assert!(m.outbound(&mut p));
        assert_eq!(rd16(&p, 26), 0);
        assert_valid(&p);
    }

    #[test]
    fn udp_result_zero_is_sent_as_ffff() {
        // Search a payload whose checksum after translation computes to 0.
        let m = map();
        for x in 0..=u16::MAX {
            let mut p = v4("10.2.0.7", "10.1.5.20", UDP, &udp(&x.to_be_bytes()));
            assert!(m.outbound(&mut p));
            assert_valid(&p);
            if rd16(&p, 26) == 0xffff {
                return;
            }
        }
        panic!("no payload hits the 0xFFFF case");
    }

    #[test]
    fn fragments_change_only_the_ip_header() {
        let m = map();
        let mut p = v4("10.2.0.7", "10.1.5.20", TCP, &tcp(b"second fragment data"));
        wr16(&mut p, 6, 0x0003); // offset 24 bytes
        let c = csum(&p[..10], sum(&p[12..20], 0));
        wr16(&mut p, 10, c);
        let tail = p[20..].to_vec();
        assert!(m.outbound(&mut p));
        assert_eq!(fold(sum(&p[..20], 0)), 0xffff);
        assert_eq!(&p[20..], &tail[..]);
    }

    #[test]
    fn icmp_error_quotes_are_translated() {
        let m = map();
        // Outbound: a clinic host (10.2.0.7) says "port unreachable" about a
        // UDP datagram the hospital sent to its visible address.
        let quoted = v4("10.1.5.20", "10.2.0.7", UDP, &udp(b"dns?"));
        let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&quoted[..28]);
        let mut p = v4("10.2.0.7", "10.1.5.20", ICMP, &err);
        assert!(m.outbound(&mut p));
        assert_valid(&p);
        let q = &p[28..];
        assert_eq!(
            addr(q, Field::Dst),
            "100.64.1.7".parse::<Ipv4Addr>().unwrap()
        );
        // The quoted UDP checksum is what the hospital computed for the
        // visible address.
        let sent = v4("10.1.5.20", "100.64.1.7", UDP, &udp(b"dns?"));
        assert_eq!(&q[..28], &sent[..28]);
        // And back: an inbound error about a packet the clinic sent.
        let mut inb = v4("10.1.5.20", "100.64.1.7", ICMP, &{
            let mut e = vec![11, 0, 0, 0, 0, 0, 0, 0];
            e.extend_from_slice(&v4("100.64.1.7", "10.1.5.20", TCP, &tcp(b""))[..40]);
            e
        });
        assert!(m.inbound(&mut inb));
        assert_valid(&inb);
        assert_eq!(
            &inb[28..68],
            &v4("10.2.0.7", "10.1.5.20", TCP, &tcp(b""))[..]
        );
    }

    #[test]
    fn partial_checksum_of_a_gso_super_packet() {
        // A TSO super-packet as the TUN hands it with NEEDS_CSUM: the TCP
        // checksum field holds the pseudo-header sum (uncomplemented).
        let m = map();
        let payload = vec![0xa5u8; 3000];
        let mut p = v4("10.2.0.7", "10.1.5.20", TCP, &tcp(&payload));
        let l4len = p.len() - 20;
        let partial = |p: &[u8]| fold(pseudo(p, TCP, l4len));
        let ps = partial(&p);
        wr16(&mut p, 36, ps);
        assert!(translate(&mut p, Field::Src, L4Csum::Partial, |a| m.to_visible(a)));
        assert_eq!(fold(sum(&p[..20], 0)), 0xffff);
        // The field is now the pseudo-header sum of the new addresses…
        let now = rd16(&p, 36);
        assert_eq!(fold(u32::from(now)), partial(&p));
        // …so completing it (what the kernel or a GSO split does) verifies.
        wr16(&mut p, 36, 0);
        let full = csum(&p[20..], u32::from(now));
        wr16(&mut p, 36, full);
        assert_valid(&p);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
                            v4first in any::<bool>()) {
                if v4first && !bytes.is_empty() {
                    bytes[0] = 0x45;
                }
                let m = map();
                let mut b = bytes.clone();
                m.outbound(&mut b);
                m.inbound(&mut b);
                translate(&mut bytes, Field::Src, L4Csum::Partial, |a| Some(!a));
            }

            #[test]
            fn translate_then_untranslate_is_identity(
                proto in proptest::sample::select(vec![TCP, UDP, ICMP, 47]),
                host in 0u8..=255,
                payload in proptest::collection::vec(any::<u8>(), 0..64),
                icmp_type in proptest::sample::select(vec![0u8, 3, 8, 11]),
            ) {
                let m = map();
                let l4 = match proto {
                    TCP => tcp(&payload),
                    UDP => udp(&payload),
                    ICMP => {
                        let mut e = vec![icmp_type, 0, 0, 0, 0, 0, 0, 0];
                        if matches!(icmp_type, 3 | 11) {
                            let q = v4("10.1.5.20", &format!("10.2.0.{host}"), UDP, &udp(&payload));
                            e.extend_from_slice(&q[..q.len().min(28 + payload.len() % 8)]);
                        } else {
                            e.extend_from_slice(&payload);
                        }
                        e
                    }
                    _ => payload.clone(),
                };
                let orig = v4(&format!("10.2.0.{host}"), "10.1.5.20", proto, &l4);
                let mut p = orig.clone();
                prop_assert!(m.outbound(&mut p));
                assert_valid(&p);
                // The inverse mapping (visible → real on the source).
                prop_assert!(translate(&mut p, Field::Src, L4Csum::Full, |a| m.to_real(a)));
                prop_assert_eq!(p, orig);
            }
        }
    }
}

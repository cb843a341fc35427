//! Minimal IPv4 / IPv6 header peeking for the data plane (routing to a
//! tunnel, per-peer filtering R-DP-7, DSCP copy R-DP-6). Borrow-only, no
//! allocation, never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::codec::Reader;
use crate::error::{Error, Result};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
pub const PROTO_UDPLITE: u8 = 136;

/// What the data plane needs to know about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPeek {
    /// 4 or 6.
    pub version: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol (IPv6: after skipping extension headers).
    pub protocol: u8,
    /// IPv4 TOS / IPv6 Traffic Class byte: DSCP (6 bits) ‖ ECN (2 bits).
    pub tos: u8,
    /// Total packet length from the header (≤ the buffer length).
    pub total_len: usize,
    /// Offset of the upper-layer header (IPv4 IHL×4; IPv6 40 + extension
    /// headers).
    pub l4_offset: usize,
    /// Source / destination ports for TCP, UDP, SCTP, UDP-Lite when the
    /// packet is not a non-first fragment and the 4 port bytes are present.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// The packet is a fragment (first or not).
    pub fragment: bool,
}

impl IpPeek {
    pub fn dscp(&self) -> u8 {
        self.tos >> 2
    }
    pub fn ecn(&self) -> u8 {
        self.tos & 3
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_UDPLITE)
}

fn ports(pkt: &[u8], off: usize) -> (Option<u16>, Option<u16>) {
    match pkt.get(off..off + 4) {
        Some(p) => (
            Some(u16::from_be_bytes([p[0], p[1]])),
            Some(u16::from_be_bytes([p[2], p[3]])),
        ),
        None => (None, None),
    }
}

/// Peek at an IPv4 or IPv6 packet.
pub fn peek_ip(pkt: &[u8]) -> Result<IpPeek> {
    let first = *pkt.first().ok_or(Error::Truncated {
        offset: 0,
        what: "IP header",
        needed: 1,
    })?;
    match first >> 4 {
        4 => peek_ipv4(pkt),
        6 => peek_ipv6(pkt),
        _ => Err(Error::Invalid {
            offset: 0,
            what: "IP version",
        }),
    }
}

fn peek_ipv4(pkt: &[u8]) -> Result<IpPeek> {
    let mut r = Reader::new(pkt);
    let vihl = r.u8("IPv4 header")?;
    let tos = r.u8("IPv4 header")?;
    let total_len = r.u16("IPv4 header")? as usize;
    r.take(2, "IPv4 header")?; // identification
    let frag = r.u16("IPv4 header")?;
    r.take(1, "IPv4 header")?; // TTL
    let protocol = r.u8("IPv4 header")?;
    r.take(2, "IPv4 header")?; // checksum
    let src = Ipv4Addr::from(r.array::<4>("IPv4 header")?);
    let dst = Ipv4Addr::from(r.array::<4>("IPv4 header")?);
    let ihl = (vihl & 0x0f) as usize * 4;
    if ihl < 20 {
        return Err(Error::Invalid {
            offset: 0,
            what: "IPv4 header length",
        });
    }
    if ihl > pkt.len() {
        return Err(Error::Truncated {
            offset: pkt.len(),
            what: "IPv4 options",
            needed: ihl - pkt.len(),
        });
    }
    if total_len < ihl || total_len > pkt.len() {
        return Err(Error::BadLength {
            offset: 2,
            what: "IPv4 total length",
            value: total_len,
        });
    }
    let frag_off = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    let (src_port, dst_port) = if frag_off == 0 && has_ports(protocol) {
        ports(&pkt[..total_len], ihl)
    } else {
        (None, None)
    };
    Ok(IpPeek {
        version: 4,
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        protocol,
        tos,
        total_len,
        l4_offset: ihl,
        src_port,
        dst_port,
        fragment: frag_off != 0 || more,
    })
}

fn peek_ipv6(pkt: &[u8]) -> Result<IpPeek> {
    let mut r = Reader::new(pkt);
    let w = r.u32("IPv6 header")?;
    let payload_len = r.u16("IPv6 header")? as usize;
    let mut next = r.u8("IPv6 header")?;
    r.take(1, "IPv6 header")?; // hop limit
    let src = Ipv6Addr::from(r.array::<16>("IPv6 header")?);
    let dst = Ipv6Addr::from(r.array::<16>("IPv6 header")?);
    let tos = ((w >> 20) & 0xff) as u8;
    let total_len = 40 + payload_len;
    if total_len > pkt.len() {
        return Err(Error::BadLength {
            offset: 4,
            what: "IPv6 payload length",
            value: payload_len,
        });
    }
    let pkt = &pkt[..total_len];
    let mut off = 40;
    let mut fragment = false;
    let mut non_first = false;
    loop {
        match next {
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => {
                let h = pkt.get(off..off + 2).ok_or(Error::Truncated {
                    offset: off,
                    what: "IPv6 extension header",
                    needed: (off + 2).saturating_sub(pkt.len()),
                })?;
                let len = (h[1] as usize + 1) * 8;
                if off + len > pkt.len() {
                    return Err(Error::BadLength {
                        offset: off + 1,
                        what: "IPv6 extension header length",
                        value: len,
                    });
                }
                next = h[0];
                off += len;
            }
            // Fragment header.
            44 => {
                let h = pkt.get(off..off + 8).ok_or(Error::Truncated {
                    offset: off,
                    what: "IPv6 fragment header",
                    needed: (off + 8).saturating_sub(pkt.len()),
                })?;
                fragment = true;
                if u16::from_be_bytes([h[2], h[3]]) >> 3 != 0 {
                    non_first = true;
                }
                next = h[0];
                off += 8;
            }
            // Authentication header.
            51 => {
                let h = pkt.get(off..off + 2).ok_or(Error::Truncated {
                    offset: off,
                    what: "AH header",
                    needed: (off + 2).saturating_sub(pkt.len()),
                })?;
                let len = (h[1] as usize + 2) * 4;
                if off + len > pkt.len() {
                    return Err(Error::BadLength {
                        offset: off + 1,
                        what: "AH length",
                        value: len,
                    });
                }
                next = h[0];
                off += len;
            }
            _ => break,
        }
        if non_first {
            break;
        }
    }
    let (src_port, dst_port) = if !non_first && has_ports(next) {
        ports(pkt, off)
    } else {
        (None, None)
    };
    Ok(IpPeek {
        version: 6,
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        protocol: next,
        tos,
        total_len,
        l4_offset: off,
        src_port,
        dst_port,
        fragment,
    })
}

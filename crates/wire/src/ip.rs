//! IPv4 / IPv6 (and the start of TCP / UDP) headers, for the data plane:
//! routing to a tunnel (the destination), per-peer filtering (R-DP-7:
//! addresses, upper-layer protocol, ports, TCP flags, fragments), address
//! mapping (R-DP-8: header length, field offsets) and DSCP / ECN between the
//! inner and the outer header (R-DP-6). Borrow-only, no allocation, never
//! panics. Nothing else in dodvpn reads these headers.
//!
//! [`peek_ip`] checks what every reader needs and no more: the version, and
//! that the fixed header (IPv4: with its options) lies in the buffer. The
//! declared total length is reported ([`IpHeader::declared_len`]), not
//! enforced, and the upper layer is found on demand
//! ([`IpHeader::upper_layer`]), so a caller on the per-packet path pays only
//! for what it reads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
pub const PROTO_UDPLITE: u8 = 136;

/// Longest IPv6 extension header chain [`IpHeader::upper_layer`] walks
/// before it calls the protocol unknown.
pub const MAX_EXT_HEADERS: usize = 8;

/// IPv4 header field offsets (RFC 791 §3.1).
pub mod v4 {
    /// Length of the header without options.
    pub const MIN_HEADER_LEN: usize = 20;
    /// Type of Service (DSCP ‖ ECN).
    pub const TOS: usize = 1;
    /// Total Length.
    pub const TOTAL_LEN: usize = 2;
    /// Flags ‖ Fragment Offset.
    pub const FRAGMENT: usize = 6;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header Checksum.
    pub const CHECKSUM: usize = 10;
    /// Source Address.
    pub const SRC: usize = 12;
    /// Destination Address.
    pub const DST: usize = 16;
}

/// IPv6 header field offsets (RFC 8200 §3).
pub mod v6 {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = 40;
    /// Payload Length.
    pub const PAYLOAD_LEN: usize = 4;
    /// Next Header.
    pub const NEXT_HEADER: usize = 6;
    /// Source Address.
    pub const SRC: usize = 8;
    /// Destination Address.
    pub const DST: usize = 24;
}

/// TCP header (RFC 9293 §3.1).
pub mod tcp {
    /// Length of the header without options.
    pub const MIN_HEADER_LEN: usize = 20;
    /// Checksum field offset.
    pub const CHECKSUM: usize = 16;
    pub const FLAG_SYN: u8 = 0x02;
    pub const FLAG_ACK: u8 = 0x10;
}

/// UDP header (RFC 768).
pub mod udp {
    /// Length of the header.
    pub const HEADER_LEN: usize = 8;
    /// Checksum field offset.
    pub const CHECKSUM: usize = 6;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fixed<'a> {
    V4(&'a [u8; v4::MIN_HEADER_LEN]),
    V6(&'a [u8; v6::HEADER_LEN]),
}

/// An IPv4 or IPv6 packet whose fixed header [`peek_ip`] has checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpHeader<'a> {
    fixed: Fixed<'a>,
    pkt: &'a [u8],
    header_len: usize,
}

/// Where the upper-layer header of a packet is (see
/// [`IpHeader::upper_layer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpperLayer {
    /// The header of `protocol` starts at `offset` in the buffer (possibly
    /// at its end: nothing of it is present). Also for a first fragment.
    Header { protocol: u8, offset: usize },
    /// A fragment other than the first: no upper-layer header in this
    /// packet. `fragment_offset` is in 8-octet units, never 0.
    LaterFragment { protocol: u8, fragment_offset: u16 },
    /// IPv6: the chain runs through a header not walked here (Mobility 135,
    /// HIP 139, Shim6 140, experimental 253 / 254) or through more than
    /// [`MAX_EXT_HEADERS`] extension headers; the protocol is unknown.
    Opaque,
}

/// Read the fixed header of an IPv4 or IPv6 packet. Errors: empty buffer,
/// version other than 4 / 6, header (with IPv4 options) longer than the
/// buffer, IPv4 header length below 20.
#[inline]
pub fn peek_ip(pkt: &[u8]) -> Result<IpHeader<'_>> {
    let first = *pkt.first().ok_or(Error::Truncated {
        offset: 0,
        what: "IP header",
        needed: 1,
    })?;
    match first >> 4 {
        4 => {
            let fixed =
                pkt.first_chunk::<{ v4::MIN_HEADER_LEN }>()
                    .ok_or_else(|| Error::Truncated {
                        offset: pkt.len(),
                        what: "IPv4 header",
                        needed: v4::MIN_HEADER_LEN - pkt.len(),
                    })?;
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < v4::MIN_HEADER_LEN {
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
            Ok(IpHeader {
                fixed: Fixed::V4(fixed),
                pkt,
                header_len: ihl,
            })
        }
        6 => {
            let fixed =
                pkt.first_chunk::<{ v6::HEADER_LEN }>()
                    .ok_or_else(|| Error::Truncated {
                        offset: pkt.len(),
                        what: "IPv6 header",
                        needed: v6::HEADER_LEN - pkt.len(),
                    })?;
            Ok(IpHeader {
                fixed: Fixed::V6(fixed),
                pkt,
                header_len: v6::HEADER_LEN,
            })
        }
        _ => Err(Error::Invalid {
            offset: 0,
            what: "IP version",
        }),
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl<'a> IpHeader<'a> {
    /// 4 or 6.
    #[inline]
    pub fn version(&self) -> u8 {
        match self.fixed {
            Fixed::V4(_) => 4,
            Fixed::V6(_) => 6,
        }
    }

    #[inline]
    pub fn is_ipv6(&self) -> bool {
        matches!(self.fixed, Fixed::V6(_))
    }

    /// The whole buffer handed to [`peek_ip`].
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.pkt
    }

    /// IPv4: IHL × 4 (with options); IPv6: 40 (extension headers are part
    /// of the chain [`upper_layer`](Self::upper_layer) walks).
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// IPv4 TOS / IPv6 Traffic Class octet: DSCP (6 bits) ‖ ECN (2 bits).
    #[inline]
    pub fn tos(&self) -> u8 {
        match self.fixed {
            Fixed::V4(h) => h[v4::TOS],
            Fixed::V6(h) => (h[0] << 4) | (h[1] >> 4),
        }
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 3
    }

    #[inline]
    pub fn src(&self) -> IpAddr {
        match self.fixed {
            Fixed::V4(h) => IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
            Fixed::V6(h) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&h[v6::SRC..v6::SRC + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            }
        }
    }

    #[inline]
    pub fn dst(&self) -> IpAddr {
        match self.fixed {
            Fixed::V4(h) => IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
            Fixed::V6(h) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&h[v6::DST..v6::DST + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            }
        }
    }

    /// The packet length the header declares (IPv4 Total Length; IPv6
    /// 40 + Payload Length). Not checked against the buffer: a reader that
    /// needs the two to agree compares them itself.
    #[inline]
    pub fn declared_len(&self) -> usize {
        match self.fixed {
            Fixed::V4(h) => usize::from(u16::from_be_bytes([h[2], h[3]])),
            Fixed::V6(h) => v6::HEADER_LEN + usize::from(u16::from_be_bytes([h[4], h[5]])),
        }
    }

    /// The IPv4 Protocol or the IPv6 Next Header field of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        match self.fixed {
            Fixed::V4(h) => h[v4::PROTOCOL],
            Fixed::V6(h) => h[v6::NEXT_HEADER],
        }
    }

    /// IPv4 only: the fragment offset in 8-octet units and the More
    /// Fragments flag; `None` for IPv6 (its fragment header is part of the
    /// chain).
    #[inline]
    pub fn ipv4_fragment(&self) -> Option<(u16, bool)> {
        match self.fixed {
            Fixed::V4(h) => {
                let f = u16::from_be_bytes([h[6], h[7]]);
                Some((f & 0x1fff, f & 0x2000 != 0))
            }
            Fixed::V6(_) => None,
        }
    }

    /// Find the upper-layer header: IPv4 after the options; IPv6 after
    /// hop-by-hop, routing, destination options, fragment and AH headers
    /// (at most [`MAX_EXT_HEADERS`]). Bounded by the buffer, not by the
    /// declared length. Errors: an extension header that does not fit.
    #[inline]
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let Fixed::V6(h) = self.fixed else {
            let protocol = self.next_header();
            return Ok(match self.ipv4_fragment() {
                Some((fragment_offset, _)) if fragment_offset != 0 => UpperLayer::LaterFragment {
                    protocol,
                    fragment_offset,
                },
                _ => UpperLayer::Header {
                    protocol,
                    offset: self.header_len,
                },
            });
        };
        let pkt = self.pkt;
        let mut next = h[v6::NEXT_HEADER];
        let mut off = v6::HEADER_LEN;
        for _ in 0..=MAX_EXT_HEADERS {
            let len = match next {
                // Hop-by-hop, routing, destination options: (len + 1) × 8.
                0 | 43 | 60 => pkt.get(off + 1).map(|&l| (usize::from(l) + 1) * 8),
                // Authentication header: (len + 2) × 4.
                51 => pkt.get(off + 1).map(|&l| (usize::from(l) + 2) * 4),
                // Fragment header.
                44 => Some(8),
                135 | 139 | 140 | 253 | 254 => return Ok(UpperLayer::Opaque),
                protocol => {
                    return Ok(UpperLayer::Header {
                        protocol,
                        offset: off,
                    })
                }
            };
            let Some(len) = len else {
                return Err(Error::Truncated {
                    offset: pkt.len(),
                    what: "IPv6 extension header",
                    needed: off + 2 - pkt.len(),
                });
            };
            if off + len > pkt.len() {
                return Err(Error::BadLength {
                    offset: off,
                    what: "IPv6 extension header length",
                    value: len,
                });
            }
            let this = next;
            next = pkt[off];
            if this == 44 {
                let fragment_offset = be16(pkt, off + 2).unwrap_or(0) >> 3;
                if fragment_offset != 0 {
                    return Ok(UpperLayer::LaterFragment {
                        protocol: next,
                        fragment_offset,
                    });
                }
            }
            off += len;
        }
        Ok(UpperLayer::Opaque)
    }
}

/// The start of a TCP header: ports and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    /// The flags octet (CWR ECE URG ACK PSH RST SYN FIN).
    pub flags: u8,
}

impl TcpHeader {
    /// Needs the 20 octets of a header without options.
    #[inline]
    pub fn parse(l4: &[u8]) -> Result<TcpHeader> {
        let h = l4
            .first_chunk::<{ tcp::MIN_HEADER_LEN }>()
            .ok_or_else(|| Error::Truncated {
                offset: l4.len(),
                what: "TCP header",
                needed: tcp::MIN_HEADER_LEN - l4.len(),
            })?;
        Ok(TcpHeader {
            src_port: u16::from_be_bytes([h[0], h[1]]),
            dst_port: u16::from_be_bytes([h[2], h[3]]),
            flags: h[13],
        })
    }

    /// SYN set and ACK clear: the segment opens a connection.
    #[inline]
    pub fn is_connection_request(&self) -> bool {
        self.flags & tcp::FLAG_SYN != 0 && self.flags & tcp::FLAG_ACK == 0
    }
}

/// A UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub length: u16,
    pub checksum: u16,
}

impl UdpHeader {
    #[inline]
    pub fn parse(l4: &[u8]) -> Result<UdpHeader> {
        let h = l4
            .first_chunk::<{ udp::HEADER_LEN }>()
            .ok_or_else(|| Error::Truncated {
                offset: l4.len(),
                what: "UDP header",
                needed: udp::HEADER_LEN - l4.len(),
            })?;
        Ok(UdpHeader {
            src_port: u16::from_be_bytes([h[0], h[1]]),
            dst_port: u16::from_be_bytes([h[2], h[3]]),
            length: u16::from_be_bytes([h[4], h[5]]),
            checksum: u16::from_be_bytes([h[6], h[7]]),
        })
    }
}

/// Rewrite the TOS / Traffic Class octet of the packet at the start of
/// `pkt`, adjusting the IPv4 header checksum (RFC 1624 eqn. 3). Returns
/// false, and leaves `pkt` alone, if it is not a packet [`peek_ip`] reads.
pub fn set_tos(pkt: &mut [u8], tos: u8) -> bool {
    let Ok(h) = peek_ip(pkt) else {
        return false;
    };
    if h.is_ipv6() {
        pkt[0] = (pkt[0] & 0xf0) | (tos >> 4);
        pkt[1] = (pkt[1] & 0x0f) | (tos << 4);
        return true;
    }
    let old = u16::from_be_bytes([pkt[0], pkt[1]]);
    pkt[v4::TOS] = tos;
    let new = u16::from_be_bytes([pkt[0], pkt[1]]);
    let c = v4::CHECKSUM;
    let hc = u16::from_be_bytes([pkt[c], pkt[c + 1]]);
    // HC' = ~(~HC + ~m + m')
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    pkt[c..c + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    true
}

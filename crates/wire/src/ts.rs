//! Traffic selectors (RFC 7296 §3.13) and conversions to/from `ipnet`.

use core::ops::RangeInclusive;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};

use crate::codec::{count, patch_len16, put_u16, Reader};
use crate::codepoints::TsType;
use crate::error::{Error, Result};

/// One traffic selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE (7) or TS_IPV6_ADDR_RANGE (8), by address family.
    Range(TsRange),
    /// Any other TS type, kept whole (its 4-byte header included; the
    /// length field is recomputed on emit). `raw[0]` is the TS type.
    Unknown(Vec<u8>),
}

/// An address range + IP protocol + port range selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TsRange {
    /// IP protocol number, 0 = any.
    pub ip_proto: u8,
    pub start_port: u16,
    pub end_port: u16,
    /// Same family as `end_addr` (checked on emit).
    pub start_addr: IpAddr,
    pub end_addr: IpAddr,
}

impl TsRange {
    /// Selector covering exactly `net`, protocol `ip_proto` (0 = any) and
    /// the given (inclusive) port range (`0..=65535` = any).
    pub fn from_net(net: IpNet, ip_proto: u8, ports: RangeInclusive<u16>) -> Self {
        TsRange {
            ip_proto,
            start_port: *ports.start(),
            end_port: *ports.end(),
            start_addr: net.network(),
            end_addr: net.broadcast(),
        }
    }

    /// Everything of one family: all addresses, all protocols, all ports.
    pub fn any(ipv6: bool) -> Self {
        let (start_addr, end_addr) = if ipv6 {
            (
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::from(u128::MAX)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::BROADCAST),
            )
        };
        TsRange {
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr,
            end_addr,
        }
    }

    /// TS type for this selector's address family (`None` if the two ends
    /// have different families).
    pub fn ts_type(&self) -> Option<TsType> {
        match (self.start_addr, self.end_addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) => Some(TsType::Ipv4AddrRange),
            (IpAddr::V6(_), IpAddr::V6(_)) => Some(TsType::Ipv6AddrRange),
            _ => None,
        }
    }

    /// The port range as a `RangeInclusive`.
    pub fn ports(&self) -> RangeInclusive<u16> {
        self.start_port..=self.end_port
    }

    /// Smallest list of CIDR prefixes exactly covering the address range
    /// (empty if start > end or families differ).
    pub fn to_nets(&self) -> Vec<IpNet> {
        match (self.start_addr, self.end_addr) {
            (IpAddr::V4(s), IpAddr::V4(e)) if s <= e => {
                Ipv4Subnets::new(s, e, 0).map(IpNet::V4).collect()
            }
            (IpAddr::V6(s), IpAddr::V6(e)) if s <= e => {
                Ipv6Subnets::new(s, e, 0).map(IpNet::V6).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The address range as one prefix, when it is exactly one.
    pub fn as_net(&self) -> Option<IpNet> {
        let v = self.to_nets();
        if v.len() == 1 {
            Some(v[0])
        } else {
            None
        }
    }

    /// Does a packet to/from `addr` with protocol `proto` and (if it has
    /// one) port `port` fall inside this selector? Protocol 0 matches any.
    /// Packets without ports (`None`) match only a full 0..=65535 range
    /// (RFC 4301 "OPAQUE"/ANY semantics, simplified).
    pub fn matches(&self, addr: IpAddr, proto: u8, port: Option<u16>) -> bool {
        let addr_ok = match (self.start_addr, self.end_addr, addr) {
            (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(a)) => s <= a && a <= e,
            (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(a)) => s <= a && a <= e,
            _ => false,
        };
        let proto_ok = self.ip_proto == 0 || self.ip_proto == proto;
        let port_ok = match port {
            Some(p) => self.start_port <= p && p <= self.end_port,
            None => self.start_port == 0 && self.end_port == u16::MAX,
        };
        addr_ok && proto_ok && port_ok
    }
}

impl From<TsRange> for TrafficSelector {
    fn from(r: TsRange) -> Self {
        TrafficSelector::Range(r)
    }
}

pub(crate) fn parse_ts_payload(mut r: Reader<'_>) -> Result<Vec<TrafficSelector>> {
    let n_off = r.offset();
    let declared = r.u8("TS payload header")? as usize;
    r.take(3, "TS payload header")?;
    let mut out = Vec::new();
    while !r.is_empty() {
        let off = r.offset();
        let mut h = r;
        let ts_type = TsType::from(h.u8("traffic selector")?);
        let ip_proto = h.u8("traffic selector")?;
        let len = h.u16("traffic selector")? as usize;
        if len < 4 || len > r.remaining() {
            return Err(Error::BadLength {
                offset: off + 2,
                what: "selector length",
                value: len,
            });
        }
        let mut s = r.sub(len, "traffic selector")?;
        match ts_type {
            TsType::Ipv4AddrRange | TsType::Ipv6AddrRange => {
                let alen = if ts_type == TsType::Ipv4AddrRange {
                    4
                } else {
                    16
                };
                if len != 8 + 2 * alen {
                    return Err(Error::BadLength {
                        offset: off + 2,
                        what: "selector length",
                        value: len,
                    });
                }
                s.take(4, "traffic selector")?;
                let start_port = s.u16("traffic selector")?;
                let end_port = s.u16("traffic selector")?;
                let (start_addr, end_addr) = if alen == 4 {
                    (
                        IpAddr::V4(Ipv4Addr::from(s.array::<4>("traffic selector")?)),
                        IpAddr::V4(Ipv4Addr::from(s.array::<4>("traffic selector")?)),
                    )
                } else {
                    (
                        IpAddr::V6(Ipv6Addr::from(s.array::<16>("traffic selector")?)),
                        IpAddr::V6(Ipv6Addr::from(s.array::<16>("traffic selector")?)),
                    )
                };
                out.push(TrafficSelector::Range(TsRange {
                    ip_proto,
                    start_port,
                    end_port,
                    start_addr,
                    end_addr,
                }));
            }
            TsType::Unknown(_) => out.push(TrafficSelector::Unknown(s.rest().to_vec())),
        }
    }
    if out.len() != declared {
        return Err(Error::CountMismatch {
            offset: n_off,
            what: "number of traffic selectors",
            declared,
            found: out.len(),
        });
    }
    Ok(out)
}

pub(crate) fn emit_ts_payload(sel: &[TrafficSelector], out: &mut Vec<u8>) -> Result<()> {
    out.push(count::<u8>(sel.len(), "number of traffic selectors")?);
    out.extend_from_slice(&[0, 0, 0]);
    for ts in sel {
        match ts {
            TrafficSelector::Range(r) => {
                let ty = r.ts_type().ok_or(Error::Unencodable {
                    what: "traffic selector with mixed address families",
                })?;
                out.push(ty.to_wire());
                out.push(r.ip_proto);
                put_u16(out, if ty == TsType::Ipv4AddrRange { 16 } else { 40 });
                put_u16(out, r.start_port);
                put_u16(out, r.end_port);
                for a in [r.start_addr, r.end_addr] {
                    match a {
                        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                    }
                }
            }
            TrafficSelector::Unknown(raw) => {
                if raw.len() < 4 {
                    return Err(Error::Unencodable {
                        what: "unknown traffic selector",
                    });
                }
                let start = out.len();
                out.extend_from_slice(raw);
                patch_len16(out, start + 2, start, "selector length")?;
            }
        }
    }
    Ok(())
}

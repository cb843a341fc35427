//! Child SAs and traffic selector narrowing (RFC 7296 §2.9).

use std::net::IpAddr;
use std::time::Instant;

use dodvpn_esp::Aead;
use dodvpn_wire::{TrafficSelector, TsRange};

/// A child (ESP) SA as the IKE SA keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildSa {
    /// Our inbound SPI (the peer sends with it).
    pub local_spi: u32,
    /// The peer's inbound SPI (we send with it).
    pub remote_spi: u32,
    pub aead: Aead,
    pub esn: bool,
    pub local_ts: Vec<TsRange>,
    pub remote_ts: Vec<TsRange>,
    pub keymat_in: Vec<u8>,
    pub keymat_out: Vec<u8>,
    /// When our rekey timer fires (None: no timer, or it fired).
    pub rekey_at: Option<Instant>,
    /// Hard lifetime: deleted at this time if still there.
    pub expire_at: Option<Instant>,
    pub rekey: RekeyState,
}

/// Where a child SA is in its rekeying (RFC 7296 §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RekeyState {
    Idle,
    /// Our CREATE_CHILD_SA rekeying it is queued or in flight.
    Requested,
    /// A successor exists; this one waits for its DELETE (ours or the peer's).
    Replaced,
}

impl core::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChildSa")
            .field("local_spi", &format_args!("{:08x}", self.local_spi))
            .field("remote_spi", &format_args!("{:08x}", self.remote_spi))
            .field("aead", &self.aead)
            .field("esn", &self.esn)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("rekey", &self.rekey)
            .finish_non_exhaustive()
    }
}

fn ip_max(a: IpAddr, b: IpAddr) -> Option<IpAddr> {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => Some(IpAddr::V4(x.max(y))),
        (IpAddr::V6(x), IpAddr::V6(y)) => Some(IpAddr::V6(x.max(y))),
        _ => None,
    }
}

fn ip_min(a: IpAddr, b: IpAddr) -> Option<IpAddr> {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => Some(IpAddr::V4(x.min(y))),
        (IpAddr::V6(x), IpAddr::V6(y)) => Some(IpAddr::V6(x.min(y))),
        _ => None,
    }
}

/// Intersection of two selectors (None when empty or of different families).
pub fn intersect(a: &TsRange, b: &TsRange) -> Option<TsRange> {
    let ip_proto = match (a.ip_proto, b.ip_proto) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_addr = ip_max(a.start_addr, b.start_addr)?;
    let end_addr = ip_min(a.end_addr, b.end_addr)?;
    if start_addr > end_addr {
        return None;
    }
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    if start_port > end_port {
        return None;
    }
    Some(TsRange {
        ip_proto,
        start_port,
        end_port,
        start_addr,
        end_addr,
    })
}

/// Narrow the peer's proposed selectors to our configured ones: every
/// non-empty pairwise intersection, duplicates removed. Unknown selector
/// types are skipped.
pub fn narrow(proposed: &[TrafficSelector], configured: &[TsRange]) -> Vec<TsRange> {
    let mut out: Vec<TsRange> = Vec::new();
    for p in proposed {
        let TrafficSelector::Range(p) = p else {
            continue;
        };
        for c in configured {
            if let Some(x) = intersect(p, c) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// Selector list → wire.
pub fn to_wire(ts: &[TsRange]) -> Vec<TrafficSelector> {
    ts.iter().copied().map(TrafficSelector::Range).collect()
}

/// Known selectors of a received list.
pub fn ranges(ts: &[TrafficSelector]) -> Vec<TsRange> {
    ts.iter()
        .filter_map(|t| match t {
            TrafficSelector::Range(r) => Some(*r),
            _ => None,
        })
        .collect()
}

/// RFC 7296 §2.8.1: nonces compare octet by octet, the shorter one padded with zeros.
pub fn nonce_lt(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x < y;
        }
    }
    false
}

/// The lower of two nonces (§2.8.1 order).
pub fn nonce_min<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    if nonce_lt(b, a) {
        b
    } else {
        a
    }
}

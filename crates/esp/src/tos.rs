//! DSCP / ECN between the inner and the outer IP header (TR D.7 b,
//! RFC 4301 §5.1.2.1, RFC 6040).
//!
//! Encapsulation: [`outer_tos`] returns the inner packet's whole TOS /
//! Traffic Class octet, DSCP *and* ECN: RFC 6040 §4.1 "normal mode" copies
//! the ECN field to the outer header. The I/O layer sets it on the outer
//! socket (IP_TOS / IPV6_TCLASS).
//!
//! Decapsulation: [`decap_ecn`] applies RFC 6040 §4.2 (Figure 4): a CE
//! mark that the outer header picked up on the way is carried into the
//! inner header; an inner Not-ECT packet whose outer header says CE is
//! dropped. The outer DSCP is not copied inward (RFC 4301 §5.1.2.1 leaves
//! that optional; we keep the sender's inner DSCP).

use dodvpn_wire::{peek_ip, set_tos};

const NOT_ECT: u8 = 0b00;
const ECT1: u8 = 0b01;
const ECT0: u8 = 0b10;
const CE: u8 = 0b11;

/// The TOS (IPv4) / Traffic Class (IPv6) octet to put on the outer header
/// for `inner_packet`: DSCP and ECN copied (RFC 6040 normal mode).
/// 0 for anything that is not an IPv4 or IPv6 packet.
#[inline]
pub fn outer_tos(inner_packet: &[u8]) -> u8 {
    peek_ip(inner_packet).map_or(0, |h| h.tos())
}

/// What [`decap_ecn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcnDecap {
    /// Inner header left as it was.
    Unchanged,
    /// Inner ECN field rewritten (checksum fixed for IPv4).
    Rewritten,
    /// RFC 6040: outer CE over an inner Not-ECT packet; drop it.
    Drop,
}

/// Combine the outer header's ECN field (from `outer_tos`, the TOS /
/// Traffic Class octet of the received outer packet) into the decrypted
/// inner packet, per RFC 6040 §4.2. Anything that is not an IPv4 or IPv6
/// packet is left unchanged.
#[inline]
pub fn decap_ecn(outer_tos: u8, inner_packet: &mut [u8]) -> EcnDecap {
    let outer = outer_tos & 0b11;
    let Ok(h) = peek_ip(inner_packet) else {
        return EcnDecap::Unchanged;
    };
    let tos = h.tos();
    let new = match (tos & 0b11, outer) {
        (NOT_ECT, CE) => return EcnDecap::Drop,
        (NOT_ECT, _) => return EcnDecap::Unchanged,
        (ECT0, ECT1) => ECT1,
        (ECT0 | ECT1, CE) => CE,
        _ => return EcnDecap::Unchanged,
    };
    set_tos(inner_packet, (tos & !0b11) | new);
    EcnDecap::Rewritten
}

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

const NOT_ECT: u8 = 0b00;
const ECT1: u8 = 0b01;
const ECT0: u8 = 0b10;
const CE: u8 = 0b11;

/// The TOS (IPv4) / Traffic Class (IPv6) octet to put on the outer header
/// for `inner_packet`: DSCP and ECN copied (RFC 6040 normal mode).
/// 0 for anything that is not an IPv4 or IPv6 packet.
pub fn outer_tos(inner_packet: &[u8]) -> u8 {
    match inner_packet {
        [b0, b1, ..] if b0 >> 4 == 4 => *b1,
        [b0, b1, ..] if b0 >> 4 == 6 => ((b0 & 0x0f) << 4) | (b1 >> 4),
        _ => 0,
    }
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
/// inner packet, per RFC 6040 §4.2.
pub fn decap_ecn(outer_tos: u8, inner_packet: &mut [u8]) -> EcnDecap {
    let outer = outer_tos & 0b11;
    let (is_v4, inner) = match *inner_packet {
        [b0, b1, ..] if b0 >> 4 == 4 && inner_packet.len() >= 20 => (true, b1 & 0b11),
        [b0, b1, ..] if b0 >> 4 == 6 => (false, (b1 >> 4) & 0b11),
        _ => return EcnDecap::Unchanged,
    };
    let new = match (inner, outer) {
        (NOT_ECT, CE) => return EcnDecap::Drop,
        (NOT_ECT, _) => return EcnDecap::Unchanged,
        (ECT0, ECT1) => ECT1,
        (ECT0 | ECT1, CE) => CE,
        _ => return EcnDecap::Unchanged,
    };
    if is_v4 {
        let old_word = u16::from_be_bytes([inner_packet[0], inner_packet[1]]);
        inner_packet[1] = (inner_packet[1] & !0b11) | new;
        let new_word = u16::from_be_bytes([inner_packet[0], inner_packet[1]]);
        // RFC 1624 incremental update: HC' = ~(~HC + ~m + m').
        let hc = u16::from_be_bytes([inner_packet[10], inner_packet[11]]);
        let mut sum = u32::from(!hc) + u32::from(!old_word) + u32::from(new_word);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        inner_packet[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    } else {
        inner_packet[1] = (inner_packet[1] & !0x30) | (new << 4);
    }
    EcnDecap::Rewritten
}

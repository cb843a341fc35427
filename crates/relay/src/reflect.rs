//! The relay's UDP reflector (issue 19 item 1): tells an agent which public address
//! and port its NAT gave its NAT-T socket, so the agent reports its real mapping
//! instead of guessing that the NAT kept port 4500. Probing two reflectors (the
//! relay's port and the port after it) also shows whether the NAT maps per
//! destination (symmetric NAT), where hole punching cannot work.
//!
//! Probe (48 bytes, sent from the NAT-T port): `"DODQ"` · version 1 · nonce (12
//! bytes) · 31 zero bytes. The zeros make a probe unmistakable for ESP (whose
//! ciphertext would have to end in 31 zero bytes), so the relay answers a probe even
//! from a side that is bound and forwarding.
//!
//! Answer (at most 40 bytes, smaller than the probe, so the reflector amplifies
//! nothing): the non-ESP marker (four zero bytes, RFC 3948 §2.2, so the agent's data
//! plane hands it to the IKE layer) · `"DODA"` · version 1 · nonce · family (4 or 6)
//! · port (u16 BE) · address (4 or 16 bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const PROBE_MAGIC: [u8; 4] = *b"DODQ";
pub const ANSWER_MAGIC: [u8; 4] = *b"DODA";
pub const PROBE_LEN: usize = 48;
pub type Nonce = [u8; 12];

const VERSION: u8 = 1;
const HEAD: usize = 4 + 1 + 12;

/// A nonce no one off the path can guess, so nobody can forge an answer; `None`
/// if the OS's generator fails.
pub fn fresh_nonce() -> Option<Nonce> {
    let mut n = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n).ok()?;
    Some(n)
}

/// The probe datagram for `nonce`.
pub fn probe(nonce: Nonce) -> [u8; PROBE_LEN] {
    let mut out = [0u8; PROBE_LEN];
    out[..4].copy_from_slice(&PROBE_MAGIC);
    out[4] = VERSION;
    out[5..HEAD].copy_from_slice(&nonce);
    out
}

/// The nonce of a probe datagram; `None` for anything else.
pub fn probe_nonce(datagram: &[u8]) -> Option<Nonce> {
    if datagram.len() != PROBE_LEN
        || datagram[..4] != PROBE_MAGIC
        || datagram[4] != VERSION
        || datagram[HEAD..].iter().any(|&b| b != 0)
    {
        return None;
    }
    datagram[5..HEAD].try_into().ok()
}

/// The answer to a probe with `nonce` that came from `seen`, ready to send
/// (with the non-ESP marker).
pub fn answer(nonce: Nonce, seen: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + HEAD + 1 + 2 + 16);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&ANSWER_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    match seen.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&seen.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&seen.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
    }
    out
}

/// Read an answer as the IKE layer gets it (the non-ESP marker already taken off):
/// the nonce it answers and the address the reflector saw.
pub fn read_answer(data: &[u8]) -> Option<(Nonce, SocketAddr)> {
    if data.len() < HEAD + 3 || data[..4] != ANSWER_MAGIC || data[4] != VERSION {
        return None;
    }
    let nonce: Nonce = data[5..HEAD].try_into().ok()?;
    let port = u16::from_be_bytes([data[HEAD + 1], data[HEAD + 2]]);
    let ip = &data[HEAD + 3..];
    let ip = match (data[HEAD], ip.len()) {
        (4, 4) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?)),
        (6, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)),
        _ => return None,
    };
    Some((nonce, SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_probe_is_answered_with_the_address_it_came_from() {
        let nonce = *b"twelve bytes";
        let p = probe(nonce);
        assert_eq!(&p[..5], b"DODQ\x01");
        assert_eq!(probe_nonce(&p), Some(nonce));
        for seen in ["203.0.113.7:40123", "[2001:db8::7]:4500"] {
            let seen: SocketAddr = seen.parse().unwrap();
            let a = answer(nonce, seen);
            assert!(
                a.len() <= PROBE_LEN - 8,
                "no amplification: {} bytes",
                a.len()
            );
            assert_eq!(&a[..4], &[0; 4], "the non-ESP marker");
            assert_eq!(read_answer(&a[4..]), Some((nonce, seen)));
        }
    }

    #[test]
    fn near_probes_and_broken_answers_are_not_taken() {
        let mut p = probe([1; 12]);
        p[47] = 1; // ESP ciphertext that happens to start with "DODQ"
        assert_eq!(probe_nonce(&p), None);
        assert_eq!(probe_nonce(&probe([1; 12])[..47]), None);
        let mut v2 = probe([1; 12]);
        v2[4] = 2;
        assert_eq!(probe_nonce(&v2), None);
        let a = answer([1; 12], "192.0.2.1:1".parse().unwrap());
        assert_eq!(read_answer(&a[4..a.len() - 1]), None, "truncated address");
        let mut wrong_family = a.clone();
        wrong_family[4 + HEAD] = 6;
        assert_eq!(read_answer(&wrong_family[4..]), None);
        assert_eq!(read_answer(b"DODA"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_answer(&data);
            prop_assert!(probe_nonce(&data).is_none() || data.len() == PROBE_LEN);
        }

        #[test]
        fn answers_round_trip(nonce in any::<[u8; 12]>(), v4 in any::<[u8; 4]>(), port in any::<u16>()) {
            let seen = SocketAddr::new(IpAddr::from(v4), port);
            prop_assert_eq!(read_answer(&answer(nonce, seen)[4..]), Some((nonce, seen)));
            prop_assert_eq!(probe_nonce(&probe(nonce)), Some(nonce));
        }
    }
}

//! ICMP timestamp (RFC 792 type 13/14): a request and the reply judged from the bytes
//! a raw socket returns (IPv4 header included).

/// A Timestamp Request with identifier `id`, sequence `seq`, originate time `orig_ms`
/// (milliseconds since midnight UT, as RFC 792 asks).
pub fn request(id: u16, seq: u16, orig_ms: u32) -> Vec<u8> {
    let mut p = vec![13, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&orig_ms.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071).
pub fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// (receive, transmit) times of a Timestamp Reply to `id`/`seq` from `src`, given an IPv4
/// datagram as a raw socket delivers it.
pub fn reply(ip: &[u8], src: std::net::Ipv4Addr, id: u16, seq: u16) -> Option<(u32, u32)> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 1 || ip[12..16] != src.octets() {
        return None;
    }
    let icmp = ip.get((ip[0] & 0x0f) as usize * 4..)?;
    if icmp.len() < 20 || icmp[0] != 14 || icmp[1] != 0 || checksum(&icmp[..20]) != 0 {
        return None;
    }
    if icmp[4..6] != id.to_be_bytes() || icmp[6..8] != seq.to_be_bytes() {
        return None;
    }
    let u = |i: usize| u32::from_be_bytes([icmp[i], icmp[i + 1], icmp[i + 2], icmp[i + 3]]);
    Some((u(12), u(16)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_and_reply() {
        let r = request(0x1234, 1, 1000);
        assert_eq!(r.len(), 20);
        assert_eq!(r[0], 13);
        assert_eq!(checksum(&r), 0, "a correct checksum sums to zero");
        // RFC 1071 example: 00 01 f2 03 f4 f5 f6 f7 → sum 0xddf2, checksum 0x220d.
        assert_eq!(checksum(&[0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0xf7]), 0x220d);
        let src = std::net::Ipv4Addr::new(10, 99, 0, 2);
        let mut icmp = r.clone();
        icmp[0] = 14;
        icmp[12..16].copy_from_slice(&5000u32.to_be_bytes());
        icmp[16..20].copy_from_slice(&5001u32.to_be_bytes());
        icmp[2..4].copy_from_slice(&[0, 0]);
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 1, 0, 0, 10, 99, 0, 2, 10, 99, 0, 1,
        ];
        ip.extend_from_slice(&icmp);
        assert_eq!(reply(&ip, src, 0x1234, 1), Some((5000, 5001)));
        assert_eq!(reply(&ip, src, 0x1235, 1), None);
        assert_eq!(
            reply(&ip, std::net::Ipv4Addr::new(10, 99, 0, 3), 0x1234, 1),
            None
        );
        ip[30] ^= 1;
        assert_eq!(reply(&ip, src, 0x1234, 1), None, "bad checksum");
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = reply(&b, std::net::Ipv4Addr::LOCALHOST, 0, 0);
        }
    }
}

//! ESP framing, RFC 3948 demux and IP header peeking.

use std::net::IpAddr;

use dodvpn_wire::ip::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use dodvpn_wire::*;

#[test]
fn esp_header_round_trip() {
    let h = EspHeader {
        spi: 0xc0ffee01,
        seq: 7,
    };
    let b = h.to_bytes();
    assert_eq!(b, [0xc0, 0xff, 0xee, 0x01, 0, 0, 0, 7]);
    assert_eq!(EspHeader::parse(&b).unwrap(), h);
    let mut v = Vec::new();
    h.emit(&mut v);
    assert_eq!(v, b);
    assert!(matches!(
        EspHeader::parse(&b[..7]),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        EspHeader::parse(&[0; 8]),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn esp_padding_alignment() {
    for len in 0..100 {
        for block in [1usize, 4, 8, 16] {
            let p = esp_pad_len(len, block);
            let total = len + p + 2;
            assert_eq!(total % 4, 0);
            assert_eq!(total % block, 0);
            assert!(p < block.max(4));
        }
    }
    assert_eq!(esp_pad_len(14, 1), 0);
    assert_eq!(esp_pad_len(15, 16), 15);
}

#[test]
fn esp_trailer_build_and_check() {
    let mut v = b"inner packet".to_vec();
    let p = esp_pad_len(v.len(), 16);
    push_esp_trailer(&mut v, p, esp::NEXT_HEADER_IPV4).unwrap();
    assert_eq!(v.len() % 16, 0);
    let t = check_esp_trailer(&v).unwrap();
    assert_eq!(
        t,
        EspTrailer {
            payload_len: 12,
            pad_len: p as u8,
            next_header: 4
        }
    );
    assert_eq!(&v[..t.payload_len], b"inner packet");

    // Non-monotonic padding is refused, at the right offset.
    let mut bad = v.clone();
    bad[13] = 9;
    assert_eq!(
        check_esp_trailer(&bad),
        Err(Error::Invalid {
            offset: 13,
            what: "ESP padding byte"
        })
    );
    // Pad length beyond the data.
    assert!(matches!(
        check_esp_trailer(&[1, 2, 200, 4]),
        Err(Error::BadLength { .. })
    ));
    assert!(matches!(
        check_esp_trailer(&[4]),
        Err(Error::Truncated { .. })
    ));
    // Zero padding is fine.
    assert_eq!(check_esp_trailer(&[0xab, 0, 41]).unwrap().payload_len, 1);
    assert!(push_esp_trailer(&mut Vec::new(), 256, 4).is_err());
}

#[test]
fn udp4500_classification() {
    assert_eq!(classify_udp4500(&[0xff]), Udp4500::Keepalive);
    assert_eq!(classify_udp4500(&[]), Udp4500::Invalid);
    assert_eq!(classify_udp4500(&[0xfe]), Udp4500::Invalid);
    assert_eq!(classify_udp4500(&[0, 0, 0]), Udp4500::Invalid);
    let ike = [0, 0, 0, 0, 1, 2, 3];
    assert_eq!(classify_udp4500(&ike), Udp4500::Ike(&[1, 2, 3]));
    let esp_pkt = [0, 0, 1, 0, 0, 0, 0, 9, 0xaa, 0xbb];
    assert_eq!(
        classify_udp4500(&esp_pkt),
        Udp4500::Esp(EspHeader { spi: 256, seq: 9 })
    );
    // Non-zero SPI but shorter than an ESP header.
    assert_eq!(classify_udp4500(&[0, 0, 1, 0, 0]), Udp4500::Invalid);
}

fn ipv4_tcp() -> Vec<u8> {
    let mut p = vec![
        0x45, 0xb8, 0x00, 0x2c, // v4 ihl 5, DSCP EF (46) + ECN 0, total 44
        0x12, 0x34, 0x40, 0x00, // id, DF
        0x40, 0x06, 0x00, 0x00, // ttl 64, TCP, csum
        10, 1, 2, 3, // src
        10, 9, 8, 7, // dst
        0xc0, 0x01, 0x01, 0xbb, // sport 49153, dport 443
    ];
    p.resize(44, 0);
    p
}

#[test]
fn ipv4_peek() {
    let p = ipv4_tcp();
    let h = peek_ip(&p).unwrap();
    assert_eq!(h.version, 4);
    assert_eq!(h.src, "10.1.2.3".parse::<IpAddr>().unwrap());
    assert_eq!(h.dst, "10.9.8.7".parse::<IpAddr>().unwrap());
    assert_eq!(h.protocol, PROTO_TCP);
    assert_eq!(h.dscp(), 46);
    assert_eq!(h.ecn(), 0);
    assert_eq!(h.total_len, 44);
    assert_eq!(h.l4_offset, 20);
    assert_eq!((h.src_port, h.dst_port), (Some(49153), Some(443)));
    assert!(!h.fragment);

    // Non-first fragment: no ports.
    let mut f = p.clone();
    f[6] = 0x00;
    f[7] = 0x10;
    let h = peek_ip(&f).unwrap();
    assert!(h.fragment);
    assert_eq!(h.dst_port, None);
    // ICMP: no ports.
    let mut i = p.clone();
    i[9] = PROTO_ICMP;
    assert_eq!(peek_ip(&i).unwrap().dst_port, None);
    // Total length larger than the buffer, smaller than the header; bad IHL.
    let mut b = p.clone();
    b[3] = 45;
    assert!(matches!(
        peek_ip(&b),
        Err(Error::BadLength { offset: 2, .. })
    ));
    b[3] = 19;
    assert!(matches!(peek_ip(&b), Err(Error::BadLength { .. })));
    let mut b = p.clone();
    b[0] = 0x44;
    assert!(matches!(peek_ip(&b), Err(Error::Invalid { .. })));
    // Trailing bytes after total_len are tolerated.
    let mut b = p.clone();
    b.extend_from_slice(&[0; 10]);
    assert_eq!(peek_ip(&b).unwrap().total_len, 44);
    // Every truncation errors, never panics.
    for n in 0..p.len() {
        assert!(peek_ip(&p[..n]).is_err(), "{n}");
    }
}

#[test]
fn ipv6_peek_with_extension_headers() {
    let mut p = vec![
        0x6b, 0x80, 0x00, 0x00, // v6, traffic class 0xb8, flow 0
        0x00, 0x14, 0x00, 0x40, // payload len 20, next HBH, hop limit
    ];
    p.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    // Hop-by-hop: next UDP, len 0 (8 bytes)
    p.extend_from_slice(&[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]);
    // UDP header
    p.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 12, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd]);
    assert_eq!(p.len(), 60);
    let h = peek_ip(&p).unwrap();
    assert_eq!(h.version, 6);
    assert_eq!(h.tos, 0xb8);
    assert_eq!(h.dscp(), 46);
    assert_eq!(h.protocol, PROTO_UDP);
    assert_eq!(h.l4_offset, 48);
    assert_eq!((h.src_port, h.dst_port), (Some(5000), Some(53)));
    assert_eq!(h.src, "fd00::1".parse::<IpAddr>().unwrap());
    assert_eq!(h.total_len, 60);

    // Extension header length running past the packet.
    let mut b = p.clone();
    b[41] = 5;
    assert!(matches!(peek_ip(&b), Err(Error::BadLength { .. })));
    // Payload length beyond buffer.
    let mut b = p.clone();
    b[5] = 0x15;
    assert!(matches!(
        peek_ip(&b),
        Err(Error::BadLength { offset: 4, .. })
    ));
    for n in 0..40 {
        assert!(peek_ip(&p[..n]).is_err(), "{n}");
    }
    // Non-first fragment: protocol known, no ports.
    let mut f = p[..40].to_vec();
    f[5] = 20;
    f[6] = 44;
    f.extend_from_slice(&[PROTO_UDP, 0, 0x00, 0x08, 0, 0, 0, 1]);
    f.extend_from_slice(&[1; 12]);
    let h = peek_ip(&f).unwrap();
    assert!(h.fragment);
    assert_eq!(h.protocol, PROTO_UDP);
    assert_eq!(h.dst_port, None);
}

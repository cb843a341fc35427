//! ESP framing, RFC 3948 demux and IP header peeking.

use std::net::IpAddr;

use dodvpn_wire::ip::{PROTO_TCP, PROTO_UDP};
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
    v.resize(v.len() + p + ESP_TRAILER_LEN, 0xee);
    write_esp_trailer(&mut v[12..], esp::NEXT_HEADER_IPV4).unwrap();
    assert_eq!(v.len() % 16, 0);
    let want: Vec<u8> = (1..=p as u8).chain([p as u8, 4]).collect();
    assert_eq!(&v[12..], &want[..]);
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
    // In place: a trailer shorter than its two fields, or padding over 255.
    assert!(write_esp_trailer(&mut [0; 1], 4).is_err());
    assert!(write_esp_trailer(&mut [0; 258], 4).is_err());
    let mut max = [0u8; 257];
    write_esp_trailer(&mut max, 41).unwrap();
    assert_eq!((max[254], max[255], max[256]), (255, 255, 41));
    let mut none = [9u8; 2];
    write_esp_trailer(&mut none, 59).unwrap();
    assert_eq!(none, [0, 59]);
    // The data path's padding (block 1 or 4) is minimal 4-byte alignment.
    for len in 0..64 {
        assert_eq!(esp_pad_len(len, 1), esp_pad_len(len, 4));
        assert_eq!((len + esp_pad_len(len, 4) + 2) % 4, 0);
    }
    const FOLDS: usize = esp_pad_len(13, 4);
    assert_eq!(FOLDS, 1);
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
        0, 0, 0, 1, 0, 0, 0, 0, // seq, ack
        0x50, 0x02, 0xff, 0xff, // data offset 5, SYN, window
    ];
    p.resize(44, 0);
    p
}

fn tcp_at(p: &[u8], h: &IpHeader) -> TcpHeader {
    match h.upper_layer().unwrap() {
        UpperLayer::Header { protocol, offset } => {
            assert_eq!(protocol, PROTO_TCP);
            TcpHeader::parse(&p[offset..]).unwrap()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ipv4_peek() {
    let p = ipv4_tcp();
    let h = peek_ip(&p).unwrap();
    assert_eq!(h.version(), 4);
    assert!(!h.is_ipv6());
    assert_eq!(h.src(), "10.1.2.3".parse::<IpAddr>().unwrap());
    assert_eq!(h.dst(), "10.9.8.7".parse::<IpAddr>().unwrap());
    assert_eq!(h.next_header(), PROTO_TCP);
    assert_eq!(h.tos(), 0xb8);
    assert_eq!(h.dscp(), 46);
    assert_eq!(h.ecn(), 0);
    assert_eq!(h.declared_len(), 44);
    assert_eq!(h.header_len(), 20);
    assert_eq!(h.ipv4_fragment(), Some((0, false)));
    assert_eq!(h.bytes(), &p[..]);
    let t = tcp_at(&p, &h);
    assert_eq!((t.src_port, t.dst_port), (49153, 443));
    assert!(t.is_connection_request());
    assert!(
        !TcpHeader { flags: 0x12, ..t }.is_connection_request(),
        "SYN-ACK"
    );

    // Non-first fragment: the protocol, no upper-layer header. A first
    // fragment (MF, offset 0) is read like a whole packet.
    let mut f = p.clone();
    f[6..8].copy_from_slice(&0x2010u16.to_be_bytes());
    let h = peek_ip(&f).unwrap();
    assert_eq!(h.ipv4_fragment(), Some((16, true)));
    assert_eq!(
        h.upper_layer(),
        Ok(UpperLayer::LaterFragment {
            protocol: PROTO_TCP,
            fragment_offset: 16
        })
    );
    f[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
    let h = peek_ip(&f).unwrap();
    assert_eq!(tcp_at(&f, &h).dst_port, 443);
    // Options are skipped.
    let mut o = p[..20].to_vec();
    o[0] = 0x46;
    o.extend_from_slice(&[1, 1, 1, 0]);
    o.extend_from_slice(&p[20..]);
    let h = peek_ip(&o).unwrap();
    assert_eq!(h.header_len(), 24);
    assert_eq!(tcp_at(&o, &h).src_port, 49153);
    // Bad IHL, options past the buffer, wrong version.
    let mut b = p.clone();
    b[0] = 0x44;
    assert_eq!(
        peek_ip(&b),
        Err(Error::Invalid {
            offset: 0,
            what: "IPv4 header length"
        })
    );
    b[0] = 0x4f;
    assert!(matches!(
        peek_ip(&b),
        Err(Error::Truncated {
            what: "IPv4 options",
            ..
        })
    ));
    b[0] = 0x55;
    assert!(matches!(
        peek_ip(&b),
        Err(Error::Invalid {
            what: "IP version",
            ..
        })
    ));
    // The declared length is reported, not enforced: the caller decides.
    let mut b = p.clone();
    b[2..4].copy_from_slice(&9000u16.to_be_bytes());
    assert_eq!(peek_ip(&b).unwrap().declared_len(), 9000);
    // Every truncation of the fixed header errors, never panics.
    for n in 0..20 {
        assert!(peek_ip(&p[..n]).is_err(), "{n}");
    }
    // A TCP header needs its 20 octets; a UDP header its 8.
    assert!(matches!(
        TcpHeader::parse(&p[20..39]),
        Err(Error::Truncated { needed: 1, .. })
    ));
    assert!(UdpHeader::parse(&[0; 7]).is_err());
    assert_eq!(
        UdpHeader::parse(&[0x13, 0x88, 0, 53, 0, 12, 0xab, 0xcd]),
        Ok(UdpHeader {
            src_port: 5000,
            dst_port: 53,
            length: 12,
            checksum: 0xabcd
        })
    );
}

/// IPv6 packet: `ext` = (type, bytes incl. its next-header byte, filled in).
fn ipv6(ext: &[(u8, Vec<u8>)], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![
        0x6b, 0x80, 0x00, 0x00, // v6, traffic class 0xb8, flow 0
        0x00, 0x00, 0x00, 0x40, // payload len (below), next header, hop limit
    ];
    p[6] = ext.first().map_or(proto, |e| e.0);
    p.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    for (i, (_, bytes)) in ext.iter().enumerate() {
        let mut b = bytes.clone();
        b[0] = ext.get(i + 1).map_or(proto, |e| e.0);
        p.extend_from_slice(&b);
    }
    p.extend_from_slice(l4);
    let pl = (p.len() - 40) as u16;
    p[4..6].copy_from_slice(&pl.to_be_bytes());
    p
}

#[test]
fn ipv6_peek_with_extension_headers() {
    let udp = [0x13, 0x88, 0x00, 0x35, 0, 12, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd];
    let hbh = (0u8, vec![0, 0, 1, 4, 0, 0, 0, 0]);
    let p = ipv6(std::slice::from_ref(&hbh), PROTO_UDP, &udp);
    assert_eq!(p.len(), 60);
    let h = peek_ip(&p).unwrap();
    assert_eq!(h.version(), 6);
    assert!(h.is_ipv6());
    assert_eq!(h.tos(), 0xb8);
    assert_eq!(h.dscp(), 46);
    assert_eq!(h.header_len(), 40);
    assert_eq!(h.declared_len(), 60);
    assert_eq!(h.ipv4_fragment(), None);
    assert_eq!(h.src(), "fd00::1".parse::<IpAddr>().unwrap());
    assert_eq!(h.dst(), "fd00::2".parse::<IpAddr>().unwrap());
    assert_eq!(
        h.upper_layer(),
        Ok(UpperLayer::Header {
            protocol: PROTO_UDP,
            offset: 48
        })
    );
    let u = UdpHeader::parse(&p[48..]).unwrap();
    assert_eq!((u.src_port, u.dst_port), (5000, 53));

    // Destination options (16 bytes), AH ((1 + 2) × 4 = 12 bytes), a first
    // fragment: all walked.
    let dst = (60u8, vec![0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let ah = (51u8, vec![0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
    let frag0 = (44u8, vec![0, 0, 0, 1, 0, 0, 0, 7]);
    let p2 = ipv6(&[hbh.clone(), dst.clone(), ah, frag0], PROTO_TCP, &[0; 20]);
    assert_eq!(
        peek_ip(&p2).unwrap().upper_layer(),
        Ok(UpperLayer::Header {
            protocol: PROTO_TCP,
            offset: 40 + 8 + 16 + 12 + 8
        })
    );
    // Non-first fragment: protocol known, no upper-layer header.
    let nf = ipv6(
        &[(44, vec![0, 0, 0x00, 0x08, 0, 0, 0, 1])],
        PROTO_UDP,
        &[1; 12],
    );
    assert_eq!(
        peek_ip(&nf).unwrap().upper_layer(),
        Ok(UpperLayer::LaterFragment {
            protocol: PROTO_UDP,
            fragment_offset: 1
        })
    );
    // Headers not walked, and chains longer than MAX_EXT_HEADERS: opaque.
    for t in [135u8, 139, 140, 253, 254] {
        let q = ipv6(&[(t, vec![0; 8])], PROTO_TCP, &[0; 20]);
        assert_eq!(
            peek_ip(&q).unwrap().upper_layer(),
            Ok(UpperLayer::Opaque),
            "{t}"
        );
    }
    let chain = |n: usize| -> Vec<(u8, Vec<u8>)> { (0..n).map(|_| (60u8, vec![0; 8])).collect() };
    let ok = ipv6(&chain(ip::MAX_EXT_HEADERS), PROTO_TCP, &[0; 20]);
    assert!(matches!(
        peek_ip(&ok).unwrap().upper_layer(),
        Ok(UpperLayer::Header {
            protocol: PROTO_TCP,
            ..
        })
    ));
    let long = ipv6(&chain(ip::MAX_EXT_HEADERS + 1), PROTO_TCP, &[0; 20]);
    assert_eq!(
        peek_ip(&long).unwrap().upper_layer(),
        Ok(UpperLayer::Opaque)
    );
    // An upper layer that starts at the end of the buffer is reported (the
    // caller finds its header missing).
    let bare = ipv6(std::slice::from_ref(&hbh), PROTO_TCP, &[]);
    assert_eq!(
        peek_ip(&bare).unwrap().upper_layer(),
        Ok(UpperLayer::Header {
            protocol: PROTO_TCP,
            offset: 48
        })
    );
    // Extension header length running past the packet, or cut short.
    let mut b = p.clone();
    b[41] = 5;
    assert!(matches!(
        peek_ip(&b).unwrap().upper_layer(),
        Err(Error::BadLength { offset: 40, .. })
    ));
    assert!(matches!(
        peek_ip(&p[..41]).unwrap().upper_layer(),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        peek_ip(&nf[..44]).unwrap().upper_layer(),
        Err(Error::BadLength { .. })
    ));
    for n in 0..40 {
        assert!(peek_ip(&p[..n]).is_err(), "{n}");
    }
}

/// The IPv4 header checksum verifies.
fn v4_checksum_ok(p: &[u8]) -> bool {
    let mut s: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// Fill in a correct IPv4 header checksum.
fn with_checksum(mut p: Vec<u8>) -> Vec<u8> {
    p[10..12].fill(0);
    let mut s: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    p[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    p
}

#[test]
fn set_tos_rewrites_the_octet_and_keeps_the_checksum() {
    let mut p = with_checksum(ipv4_tcp());
    assert!(v4_checksum_ok(&p));
    assert!(set_tos(&mut p, 0x2b));
    assert_eq!(peek_ip(&p).unwrap().tos(), 0x2b);
    assert!(v4_checksum_ok(&p));
    let mut q = ipv6(&[], PROTO_UDP, &[0; 8]);
    q[3] = 0x77; // flow label bits stay
    assert!(set_tos(&mut q, 0x03));
    assert_eq!(peek_ip(&q).unwrap().tos(), 0x03);
    assert_eq!(&q[..4], &[0x60, 0x30, 0x00, 0x77]);
    let mut junk = [0x45u8; 19];
    assert!(!set_tos(&mut junk, 0));
    assert_eq!(junk, [0x45; 19]);
}

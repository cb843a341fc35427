//! Property tests: no panics on arbitrary bytes, and emit → parse is the
//! identity on arbitrary generated messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dodvpn_wire::*;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn attr() -> impl Strategy<Value = TransformAttribute> {
    prop_oneof![
        any::<u16>().prop_map(TransformAttribute::KeyLength),
        (0u16..0x8000, any::<u16>())
            .prop_filter("14 is Key Length", |(t, _)| *t != ATTR_KEY_LENGTH)
            .prop_map(|(attr_type, value)| TransformAttribute::Tv { attr_type, value }),
        (0u16..0x8000, bytes(8))
            .prop_map(|(attr_type, value)| TransformAttribute::Tlv { attr_type, value }),
    ]
}

fn transform() -> impl Strategy<Value = Transform> {
    (
        any::<u8>(),
        any::<u16>(),
        prop::collection::vec(attr(), 0..3),
    )
        .prop_map(|(t, id, attributes)| Transform {
            id: TransformId::from_wire(t, id),
            attributes,
        })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (
        any::<u8>(),
        any::<u8>(),
        bytes(9),
        prop::collection::vec(transform(), 0..6),
    )
        .prop_map(|(number, proto, spi, transforms)| Proposal {
            number,
            protocol: proto.into(),
            spi,
            transforms,
        })
}

fn ts() -> impl Strategy<Value = TrafficSelector> {
    prop_oneof![
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(p, sp, ep, s, e)| {
                TrafficSelector::Range(TsRange {
                    ip_proto: p,
                    start_port: sp,
                    end_port: ep,
                    start_addr: IpAddr::V4(Ipv4Addr::from(s)),
                    end_addr: IpAddr::V4(Ipv4Addr::from(e)),
                })
            }),
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u128>(),
            any::<u128>()
        )
            .prop_map(|(p, sp, ep, s, e)| {
                TrafficSelector::Range(TsRange {
                    ip_proto: p,
                    start_port: sp,
                    end_port: ep,
                    start_addr: IpAddr::V6(Ipv6Addr::from(s)),
                    end_addr: IpAddr::V6(Ipv6Addr::from(e)),
                })
            }),
        (
            any::<u8>().prop_filter("not a range type", |t| *t != 7 && *t != 8),
            any::<u8>(),
            bytes(12)
        )
            .prop_map(|(t, b1, rest)| {
                let len = (4 + rest.len()) as u16;
                let mut raw = vec![t, b1];
                raw.extend_from_slice(&len.to_be_bytes());
                raw.extend_from_slice(&rest);
                TrafficSelector::Unknown(raw)
            }),
    ]
}

fn unknown_type() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("unknown payload type", |t| {
        *t != 0 && matches!(PayloadType::from(*t), PayloadType::Unknown(_))
    })
}

fn plain_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        prop::collection::vec(proposal(), 0..4)
            .prop_map(|proposals| Payload::SecurityAssociation(Sa { proposals })),
        (any::<u16>(), bytes(64)).prop_map(|(g, data)| Payload::KeyExchange(KeyExchange {
            group: g.into(),
            data
        })),
        (any::<u8>(), bytes(32)).prop_map(|(t, data)| Payload::IdInitiator(Identification {
            id_type: t.into(),
            data
        })),
        (any::<u8>(), bytes(32)).prop_map(|(t, data)| Payload::IdResponder(Identification {
            id_type: t.into(),
            data
        })),
        (any::<u8>(), bytes(64)).prop_map(|(e, data)| Payload::Certificate(Certificate {
            encoding: e.into(),
            data
        })),
        (any::<u8>(), bytes(64)).prop_map(|(e, authorities)| Payload::CertificateRequest(
            CertificateRequest {
                encoding: e.into(),
                authorities
            }
        )),
        (any::<u8>(), bytes(64)).prop_map(|(m, data)| Payload::Authentication(Auth {
            method: m.into(),
            data
        })),
        bytes(64).prop_map(Payload::Nonce),
        (any::<u8>(), bytes(9), any::<u16>(), bytes(32)).prop_map(|(p, spi, t, data)| {
            Payload::Notify(Notify {
                protocol: p.into(),
                spi,
                notify_type: t.into(),
                data,
            })
        }),
        (
            any::<u8>(),
            prop_oneof![Just(0u8), Just(4u8), Just(8u8)],
            0usize..5,
            any::<u64>()
        )
            .prop_map(|(p, size, n, seed)| {
                let spis = if size == 0 {
                    vec![]
                } else {
                    (0..n)
                        .map(|i| {
                            seed.wrapping_add(i as u64).to_be_bytes()[..size as usize].to_vec()
                        })
                        .collect()
                };
                Payload::Delete(Delete {
                    protocol: p.into(),
                    spi_size: size,
                    spis,
                })
            }),
        bytes(32).prop_map(Payload::VendorId),
        prop::collection::vec(ts(), 0..4).prop_map(Payload::TsInitiator),
        prop::collection::vec(ts(), 0..4).prop_map(Payload::TsResponder),
        (
            any::<u8>(),
            prop::collection::vec((0u16..0x8000, bytes(16)), 0..4)
        )
            .prop_map(|(t, attrs)| {
                Payload::Configuration(Configuration {
                    cfg_type: t.into(),
                    attributes: attrs
                        .into_iter()
                        .map(|(a, value)| ConfigAttribute {
                            attr_type: a.into(),
                            value,
                        })
                        .collect(),
                })
            }),
        bytes(32).prop_map(Payload::Eap),
        (unknown_type(), bytes(32))
            .prop_map(|(payload_type, body)| Payload::Unknown { payload_type, body }),
    ]
}

fn encrypted_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (any::<u8>(), bytes(64)).prop_map(|(n, body)| Payload::Encrypted(Encrypted {
            inner_next: n.into(),
            body
        })),
        (any::<u8>(), any::<u16>(), any::<u16>(), bytes(64)).prop_map(|(n, f, t, body)| {
            Payload::EncryptedFragment(EncryptedFragment {
                inner_next: n.into(),
                fragment_number: f,
                total_fragments: t,
                body,
            })
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            0u8..16,
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
        ),
        prop::collection::vec(plain_payload(), 0..6),
        prop::option::of(encrypted_payload()),
    )
        .prop_map(|((si, sr, minor, ex, flags, mid), mut payloads, enc)| {
            let mut header = IkeHeader::new(si, sr, ex.into(), Flags(flags), mid);
            header.minor_version = minor;
            payloads.extend(enc);
            Message { header, payloads }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn message_round_trip(m in message()) {
        let b = m.to_bytes().unwrap();
        let p = Message::parse(&b).unwrap();
        let mut expect = m.header.clone();
        expect.length = b.len() as u32;
        expect.next_payload = m.payloads.first().map_or(PayloadType::NoNextPayload, |p| p.payload_type());
        prop_assert_eq!(&p.header, &expect);
        prop_assert_eq!(&p.payloads, &m.payloads);
        // Emitting the parsed message gives the same bytes.
        prop_assert_eq!(p.to_bytes().unwrap(), b.clone());
        // And if there is an encrypted payload, locate_encrypted agrees.
        if let Some(Payload::Encrypted(_) | Payload::EncryptedFragment(_)) = m.payloads.last() {
            let loc = locate_encrypted(&b).unwrap();
            prop_assert_eq!(loc.body.end, b.len());
            prop_assert_eq!(loc.aad.end, loc.body.start);
        }
    }

    #[test]
    fn chain_round_trip(ps in prop::collection::vec(plain_payload(), 0..6)) {
        let mut out = Vec::new();
        let first = emit_payload_chain(&ps, &mut out).unwrap();
        prop_assert_eq!(parse_payload_chain(first, &out).unwrap(), ps);
    }

    #[test]
    fn message_parse_never_panics(b in bytes(512)) {
        let _ = Message::parse(&b);
        let _ = locate_encrypted(&b);
        let _ = IkeHeader::parse_any_version(&b);
    }

    /// Mutations of valid messages reach deep into the parsers.
    #[test]
    fn mutated_messages_never_panic(m in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let mut b = m.to_bytes().unwrap();
        for (i, v) in flips {
            let i = i.index(b.len());
            b[i] = v;
        }
        if let Ok(p) = Message::parse(&b) {
            // Whatever parses must re-emit and re-parse to the same payloads.
            let again = p.to_bytes().unwrap();
            prop_assert_eq!(Message::parse(&again).unwrap().payloads, p.payloads);
        }
        let c = cut.index(b.len() + 1);
        let _ = Message::parse(&b[..c]);
        let _ = parse_payload_chain(PayloadType::from(b[16]), &b[28.min(c)..c]);
    }

    #[test]
    fn payload_chain_never_panics(first in any::<u8>(), b in bytes(512)) {
        let _ = parse_payload_chain(first.into(), &b);
    }

    #[test]
    fn esp_and_udp_never_panic(b in bytes(64)) {
        match classify_udp4500(&b) {
            Udp4500::Keepalive => prop_assert_eq!(&b[..], &[0xff][..]),
            Udp4500::Ike(rest) => { prop_assert_eq!(&b[..4], &[0u8; 4][..]); prop_assert_eq!(rest.len(), b.len() - 4); }
            Udp4500::Esp(h) => { prop_assert!(h.spi != 0); prop_assert!(b.len() >= 8); }
            Udp4500::Invalid => {}
        }
        let _ = EspHeader::parse(&b);
        if let Ok(t) = check_esp_trailer(&b) {
            prop_assert_eq!(t.payload_len + t.pad_len as usize + 2, b.len());
        }
    }

    #[test]
    fn esp_trailer_round_trip(payload in bytes(100), block in prop_oneof![Just(1usize), Just(4), Just(8), Just(16)], nh in any::<u8>()) {
        let pad = esp_pad_len(payload.len(), block);
        let mut v = payload.clone();
        v.resize(payload.len() + pad + ESP_TRAILER_LEN, 0);
        write_esp_trailer(&mut v[payload.len()..], nh).unwrap();
        prop_assert_eq!(v.len() % block.max(4), 0);
        let t = check_esp_trailer(&v).unwrap();
        prop_assert_eq!(t.payload_len, payload.len());
        prop_assert_eq!(t.pad_len as usize, pad);
        prop_assert_eq!(t.next_header, nh);
        // Any single changed padding or pad-length byte is caught.
        if pad > 0 {
            let mut bad = v.clone();
            bad[payload.len()] ^= 0x80;
            prop_assert!(check_esp_trailer(&bad).is_err());
        }
    }

    #[test]
    fn ip_peek_never_panics(b in bytes(128), v6 in any::<bool>(), tos in any::<u8>()) {
        let _ = peek_ip(&b);
        // Force a plausible version nibble to get past the first check.
        let mut b = b;
        if let Some(x) = b.first_mut() {
            *x = if v6 { 0x60 | (*x & 0x0f) } else { 0x40 | (*x & 0x0f) };
        }
        if let Ok(h) = peek_ip(&b) {
            prop_assert!(h.header_len() <= b.len());
            prop_assert_eq!(h.version(), if v6 { 6 } else { 4 });
            match h.upper_layer() {
                Ok(UpperLayer::Header { offset, protocol }) => {
                    prop_assert!(offset >= h.header_len() && offset <= b.len());
                    let _ = (TcpHeader::parse(&b[offset..]), UdpHeader::parse(&b[offset..]));
                    if !v6 { prop_assert_eq!(protocol, b[9]); }
                }
                Ok(UpperLayer::LaterFragment { fragment_offset, .. }) => prop_assert!(fragment_offset != 0),
                Ok(UpperLayer::Opaque) => prop_assert!(v6),
                Err(_) => prop_assert!(v6, "IPv4 has no chain to cut"),
            }
            // set_tos changes that octet and nothing a reader sees besides.
            let (src, dst, len, ul) = (h.src(), h.dst(), h.declared_len(), h.upper_layer());
            let mut c = b.clone();
            prop_assert!(set_tos(&mut c, tos));
            let h2 = peek_ip(&c).unwrap();
            prop_assert_eq!(h2.tos(), tos);
            prop_assert_eq!((h2.src(), h2.dst(), h2.declared_len(), h2.upper_layer()), (src, dst, len, ul));
        }
    }

    /// The header fields read back what an independent encoder wrote.
    #[test]
    fn ip_fields_round_trip(
        v6 in any::<bool>(), tos in any::<u8>(), proto in any::<u8>(),
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
        ihl in 5u8..=15, frag in any::<u16>(), tail in bytes(40),
    ) {
        let p = if v6 {
            let mut p = vec![0x60 | (tos >> 4), tos << 4, 0, 0, 0, 0, proto, 64];
            p.extend_from_slice(&src);
            p.extend_from_slice(&dst);
            p.extend_from_slice(&tail);
            let pl = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&pl.to_be_bytes());
            p
        } else {
            let mut p = vec![0x40 | ihl, tos, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
            p[6..8].copy_from_slice(&frag.to_be_bytes());
            p.extend_from_slice(&src[..4]);
            p.extend_from_slice(&dst[..4]);
            p.resize(usize::from(ihl) * 4, 1);
            p.extend_from_slice(&tail);
            let tl = p.len() as u16;
            p[2..4].copy_from_slice(&tl.to_be_bytes());
            p
        };
        let h = peek_ip(&p).unwrap();
        prop_assert_eq!(h.tos(), tos);
        prop_assert_eq!(h.declared_len(), p.len());
        if v6 {
            prop_assert_eq!(h.src(), IpAddr::V6(Ipv6Addr::from(src)));
            prop_assert_eq!(h.dst(), IpAddr::V6(Ipv6Addr::from(dst)));
            prop_assert_eq!(h.next_header(), proto);
        } else {
            let a4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
            prop_assert_eq!(h.src(), a4(&src));
            prop_assert_eq!(h.dst(), a4(&dst));
            prop_assert_eq!(h.header_len(), usize::from(ihl) * 4);
            let want = if frag & 0x1fff == 0 {
                UpperLayer::Header { protocol: proto, offset: usize::from(ihl) * 4 }
            } else {
                UpperLayer::LaterFragment { protocol: proto, fragment_offset: frag & 0x1fff }
            };
            prop_assert_eq!(h.upper_layer(), Ok(want));
            prop_assert_eq!(h.ipv4_fragment(), Some((frag & 0x1fff, frag & 0x2000 != 0)));
        }
    }
}

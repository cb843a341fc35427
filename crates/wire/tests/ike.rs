//! Hand-written IKE byte strings, round trips of every payload type, and
//! malformed-input cases.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dodvpn_wire::*;

/// IKE_SA_INIT request laid out by hand from RFC 7296 §3.1–3.10.
fn sa_init_bytes() -> Vec<u8> {
    let mut v = vec![
        // IKE header
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // SPIi
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // SPIr
        0x21, // next payload: SA (33)
        0x20, // version 2.0
        0x22, // exchange: IKE_SA_INIT (34)
        0x08, // flags: I
        0x00, 0x00, 0x00, 0x00, // message ID
        0x00, 0x00, 0x00, 0x84, // length 132
        // SA payload
        0x22, 0x00, 0x00, 0x28, // next KE, len 40
        // proposal
        0x00, 0x00, 0x00, 0x24, // last, len 36
        0x01, 0x01, 0x00, 0x03, // #1, IKE, SPI size 0, 3 transforms
        // transform ENCR AES-GCM-16, key length 256
        0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x14, 0x80, 0x0e, 0x01, 0x00,
        // transform PRF HMAC-SHA2-256
        0x03, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x05, // transform DH 19 (last)
        0x00, 0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x13, // KE payload
        0x28, 0x00, 0x00, 0x10, // next Nonce, len 16
        0x00, 0x13, 0x00, 0x00, // group 19, reserved
    ];
    v.extend_from_slice(&[0xaa; 8]);
    // Nonce payload
    v.extend_from_slice(&[0x29, 0x00, 0x00, 0x14]);
    v.extend_from_slice(&[0x11; 16]);
    // Notify NAT_DETECTION_SOURCE_IP
    v.extend_from_slice(&[0x00, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x04]);
    v.extend_from_slice(&[0x5a; 20]);
    assert_eq!(v.len(), 132);
    v
}

#[test]
fn hand_built_sa_init_parses() {
    let bytes = sa_init_bytes();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.header.spi_i, 0x0102030405060708);
    assert_eq!(m.header.spi_r, 0);
    assert_eq!(m.header.exchange_type, ExchangeType::IkeSaInit);
    assert!(m.header.flags.initiator());
    assert!(!m.header.flags.response());
    assert_eq!(m.header.message_id, 0);
    assert_eq!(m.header.length, 132);
    assert_eq!(m.payloads.len(), 4);
    let Payload::SecurityAssociation(sa) = &m.payloads[0] else {
        panic!()
    };
    assert_eq!(sa.proposals.len(), 1);
    let p = &sa.proposals[0];
    assert_eq!((p.number, p.protocol, p.spi.len()), (1, ProtocolId::Ike, 0));
    assert_eq!(p.transforms[0].id, TransformId::Encr(EncrId::AesGcm16));
    assert_eq!(p.transforms[0].key_length(), Some(256));
    assert_eq!(p.transforms[1].id, TransformId::Prf(PrfId::HmacSha2_256));
    assert_eq!(p.transforms[2].id, TransformId::Dh(DhGroup::Ecp256));
    let Payload::KeyExchange(ke) = &m.payloads[1] else {
        panic!()
    };
    assert_eq!(ke.group, DhGroup::Ecp256);
    assert_eq!(ke.data, vec![0xaa; 8]);
    assert_eq!(m.payloads[2], Payload::Nonce(vec![0x11; 16]));
    let n = m.find_notify(NotifyType::NatDetectionSourceIp).unwrap();
    assert_eq!(n.data, vec![0x5a; 20]);
    assert_eq!(n.protocol, ProtocolId::Unspecified);
    // And back to the very same bytes.
    assert_eq!(m.to_bytes().unwrap(), bytes);
}

fn header() -> IkeHeader {
    IkeHeader::new(
        0x1111,
        0x2222,
        ExchangeType::IkeAuth,
        Flags::new(true, false),
        1,
    )
}

fn all_payloads() -> Vec<Payload> {
    vec![
        Payload::SecurityAssociation(Sa {
            proposals: vec![
                Proposal {
                    number: 1,
                    protocol: ProtocolId::Esp,
                    spi: vec![1, 2, 3, 4],
                    transforms: vec![
                        Transform::with_key_length(TransformId::Encr(EncrId::AesGcm16), 128),
                        Transform::new(TransformId::Encr(EncrId::ChaCha20Poly1305)),
                        Transform::new(TransformId::Esn(EsnId::NoEsn)),
                        Transform::new(TransformId::Esn(EsnId::Esn)),
                    ],
                },
                Proposal {
                    number: 2,
                    protocol: ProtocolId::Esp,
                    spi: vec![5, 6, 7, 8],
                    transforms: vec![
                        Transform::with_key_length(TransformId::Encr(EncrId::AesCbc), 256),
                        Transform::new(TransformId::Integ(IntegId::HmacSha2_512_256)),
                        Transform::new(TransformId::Dh(DhGroup::Curve25519)),
                        Transform {
                            id: TransformId::Unknown {
                                transform_type: 77,
                                id: 9,
                            },
                            attributes: vec![
                                TransformAttribute::Tv {
                                    attr_type: 3,
                                    value: 7,
                                },
                                TransformAttribute::Tlv {
                                    attr_type: 5,
                                    value: vec![1, 2, 3],
                                },
                            ],
                        },
                    ],
                },
            ],
        }),
        Payload::KeyExchange(KeyExchange {
            group: DhGroup::Ecp384,
            data: vec![9; 96],
        }),
        Payload::IdInitiator(Identification::fqdn("site-a.example")),
        Payload::IdResponder(Identification::ipv6(Ipv6Addr::LOCALHOST)),
        Payload::Certificate(Certificate {
            encoding: CertEncoding::X509Signature,
            data: vec![0x30, 0x82, 1, 2],
        }),
        Payload::CertificateRequest(CertificateRequest {
            encoding: CertEncoding::X509Signature,
            authorities: vec![7; 40],
        }),
        Payload::Authentication(
            Auth::digital_signature(algorithm_identifier::ECDSA_WITH_SHA256, &[1, 2, 3]).unwrap(),
        ),
        Payload::Nonce(vec![3; 32]),
        Payload::Notify(Notify::with_spi(
            ProtocolId::Esp,
            0xdeadbeef,
            NotifyType::RekeySa,
            vec![],
        )),
        Payload::Notify(Notify::invalid_ke_payload(DhGroup::Ecp256)),
        Payload::Notify(Notify::new(NotifyType::Unknown(40000), vec![1])),
        Payload::Delete(Delete::esp(&[1, 2, 3])),
        Payload::Delete(Delete::ike()),
        Payload::VendorId(b"dodvpn".to_vec()),
        Payload::TsInitiator(vec![
            TsRange::from_net("10.1.0.0/16".parse().unwrap(), 6, 443..=443).into(),
            TsRange::any(true).into(),
            TrafficSelector::Unknown(vec![9, 0, 0, 6, 0xab, 0xcd]),
        ]),
        Payload::TsResponder(vec![TsRange::any(false).into()]),
        Payload::Configuration(Configuration {
            cfg_type: CfgType::Request,
            attributes: vec![
                ConfigAttribute {
                    attr_type: CfgAttrType::InternalIp4Address,
                    value: vec![],
                },
                ConfigAttribute {
                    attr_type: CfgAttrType::Unknown(999),
                    value: vec![1, 2],
                },
            ],
        }),
        Payload::Eap(vec![1, 2, 0, 4]),
        Payload::Unknown {
            payload_type: 200,
            body: vec![1, 2, 3],
        },
        Payload::Encrypted(Encrypted {
            inner_next: PayloadType::IdInitiator,
            body: vec![0xee; 40],
        }),
    ]
}

#[test]
fn every_payload_round_trips_in_one_message() {
    let m = Message::new(header(), all_payloads());
    let bytes = m.to_bytes().unwrap();
    let p = Message::parse(&bytes).unwrap();
    assert_eq!(p.payloads, m.payloads);
    assert_eq!(p.header.length as usize, bytes.len());
    assert_eq!(p.header.next_payload, PayloadType::SecurityAssociation);
}

#[test]
fn every_payload_round_trips_alone_and_as_chain() {
    for pl in all_payloads() {
        let m = Message::new(header(), vec![pl.clone()]);
        let bytes = m.to_bytes().unwrap();
        assert_eq!(
            Message::parse(&bytes).unwrap().payloads,
            vec![pl.clone()],
            "{pl:?}"
        );
        let mut chain = Vec::new();
        let first = emit_payload_chain(std::slice::from_ref(&pl), &mut chain).unwrap();
        assert_eq!(first, pl.payload_type());
        assert_eq!(parse_payload_chain(first, &chain).unwrap(), vec![pl]);
    }
}

#[test]
fn skf_round_trip_and_location() {
    let f = Payload::EncryptedFragment(EncryptedFragment {
        inner_next: PayloadType::IdInitiator,
        fragment_number: 1,
        total_fragments: 3,
        body: vec![5; 33],
    });
    let bytes = Message::new(header(), vec![f.clone()]).to_bytes().unwrap();
    assert_eq!(Message::parse(&bytes).unwrap().payloads, vec![f]);
    let loc = locate_encrypted(&bytes).unwrap();
    assert_eq!(loc.aad, 0..28 + 8);
    assert_eq!(loc.body, 36..bytes.len());
    assert_eq!(loc.fragment, Some((1, 3)));
    assert_eq!(loc.inner_next, PayloadType::IdInitiator);

    let mut out = vec![0, 0, 0, 0]; // non-ESP marker already there
    let loc2 =
        emit_encrypted_fragment(&header(), PayloadType::IdInitiator, 1, 3, 33, &mut out).unwrap();
    out[loc2.body.clone()].fill(5);
    assert_eq!(&out[4..], &bytes[..]);
    assert_eq!(loc2.aad, 4..40);
}

#[test]
fn sk_emit_helper_matches_message_and_aad() {
    let before = vec![Payload::Notify(Notify::new(
        NotifyType::InitialContact,
        vec![],
    ))];
    let mut out = Vec::new();
    let loc = emit_encrypted(&header(), &before, PayloadType::IdInitiator, 50, &mut out).unwrap();
    assert_eq!(loc.body.len(), 50);
    // AAD = IKE header + Notify + SK generic header.
    assert_eq!(loc.aad, 0..28 + 8 + 4);
    assert_eq!(
        &out[loc.payload_offset..loc.payload_offset + 4],
        &[35, 0, 0, 54]
    );
    out[loc.body.clone()].fill(0x42);
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.encrypted().unwrap().body, vec![0x42; 50]);
    assert_eq!(m.encrypted().unwrap().inner_next, PayloadType::IdInitiator);
    assert_eq!(locate_encrypted(&out).unwrap(), loc);
    // AAD also = everything before the SK body of the parsed message.
    assert_eq!(loc.aad.end, out.len() - m.encrypted().unwrap().body.len());
}

#[test]
fn helpers() {
    let a = Auth::digital_signature(algorithm_identifier::SHA256_WITH_RSA, &[9, 9]).unwrap();
    let (alg, sig) = a.split_digital_signature().unwrap();
    assert_eq!(alg, algorithm_identifier::SHA256_WITH_RSA);
    assert_eq!(sig, &[9, 9]);
    let bad = Auth {
        method: AuthMethod::DigitalSignature,
        data: vec![200, 1],
    };
    assert!(matches!(
        bad.split_digital_signature(),
        Err(Error::BadLength { .. })
    ));

    let n = Notify::invalid_ke_payload(DhGroup::Ecp384);
    assert_eq!(n.data, vec![0, 20]);
    assert_eq!(n.requested_group(), Some(DhGroup::Ecp384));
    let n = Notify::signature_hash_algorithms(&[HashAlgorithm::Sha2_256, HashAlgorithm::Sha2_512]);
    assert_eq!(n.data, vec![0, 2, 0, 4]);
    assert_eq!(n.notify_type.to_wire(), 16431);
    assert_eq!(
        n.hash_algorithms().unwrap(),
        vec![HashAlgorithm::Sha2_256, HashAlgorithm::Sha2_512]
    );
    assert_eq!(NotifyType::MobikeSupported.to_wire(), 16396);
    assert!(NotifyType::TsUnacceptable.is_error());
    assert!(!NotifyType::Cookie.is_error());

    let id = Identification::ipv4(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(id.as_ip(), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    assert_eq!(id.body(), vec![1, 0, 0, 0, 192, 0, 2, 1]);

    let r = TsRange::from_net("192.168.10.0/24".parse().unwrap(), 17, 53..=53);
    assert_eq!(r.start_addr, IpAddr::V4(Ipv4Addr::new(192, 168, 10, 0)));
    assert_eq!(r.end_addr, IpAddr::V4(Ipv4Addr::new(192, 168, 10, 255)));
    assert_eq!(r.as_net(), Some("192.168.10.0/24".parse().unwrap()));
    assert!(r.matches("192.168.10.7".parse().unwrap(), 17, Some(53)));
    assert!(!r.matches("192.168.10.7".parse().unwrap(), 6, Some(53)));
    assert!(!r.matches("192.168.11.7".parse().unwrap(), 17, Some(53)));
    let odd = TsRange {
        start_addr: "192.168.10.1".parse().unwrap(),
        ..r
    };
    assert_eq!(odd.as_net(), None);
    assert_eq!(odd.to_nets().len(), 8);
    assert_eq!(Delete::esp(&[7, 8]).spis_u32(), vec![7, 8]);
    assert_eq!(EncrId::from(20), EncrId::AesGcm16);
    assert!(EncrId::AesGcm16.is_aead() && !EncrId::AesCbc.is_aead());
    assert_eq!(IntegId::from(13), IntegId::HmacSha2_384_192);
    assert_eq!(PrfId::from(7), PrfId::HmacSha2_512);
    assert_eq!(DhGroup::from(31), DhGroup::Curve25519);
}

// ---------- malformed input ----------

#[test]
fn truncated_header() {
    let b = sa_init_bytes();
    for n in 0..28 {
        assert!(
            matches!(Message::parse(&b[..n]), Err(Error::Truncated { .. })),
            "{n}"
        );
    }
}

#[test]
fn length_field_larger_or_smaller_than_buffer() {
    let mut b = sa_init_bytes();
    b[27] = 0x85;
    assert_eq!(
        Message::parse(&b),
        Err(Error::BadLength {
            offset: 24,
            what: "IKE message length",
            value: 133
        })
    );
    b[27] = 0x83;
    assert!(matches!(
        Message::parse(&b),
        Err(Error::BadLength { offset: 24, .. })
    ));
    b[27] = 0x10; // smaller than the header itself
    assert!(matches!(
        Message::parse(&b),
        Err(Error::BadLength {
            offset: 24,
            value: 16,
            ..
        })
    ));
    // Buffer longer than the declared length is also rejected.
    let mut b = sa_init_bytes();
    b.push(0);
    assert!(matches!(
        Message::parse(&b),
        Err(Error::BadLength { offset: 24, .. })
    ));
}

#[test]
fn payload_length_too_small_or_too_big() {
    let mut b = sa_init_bytes();
    b[31] = 3; // SA payload length 3
    assert_eq!(
        Message::parse(&b),
        Err(Error::BadLength {
            offset: 30,
            what: "payload length",
            value: 3
        })
    );
    let mut b = sa_init_bytes();
    b[30] = 0x10; // SA payload length 0x1028 > buffer
    assert!(matches!(
        Message::parse(&b),
        Err(Error::BadLength { offset: 30, .. })
    ));
    // Inner payload length too small: proposal runs out before transforms.
    let mut b = sa_init_bytes();
    b[35] = 0x20; // proposal length 32 instead of 36
    assert!(Message::parse(&b).is_err());
}

#[test]
fn transform_count_mismatch() {
    let mut b = sa_init_bytes();
    b[39] = 4; // claims 4 transforms, has 3
    assert_eq!(
        Message::parse(&b),
        Err(Error::CountMismatch {
            offset: 39,
            what: "number of transforms",
            declared: 4,
            found: 3
        })
    );
    b[39] = 2;
    assert!(matches!(
        Message::parse(&b),
        Err(Error::CountMismatch {
            declared: 2,
            found: 3,
            ..
        })
    ));
}

#[test]
fn bad_last_substructure_markers() {
    let mut b = sa_init_bytes();
    b[32] = 2; // last proposal says "more follow"
    assert!(matches!(Message::parse(&b), Err(Error::Invalid { .. })));
    let mut b = sa_init_bytes();
    b[32] = 1; // not 0 or 2
    assert!(matches!(
        Message::parse(&b),
        Err(Error::Invalid { offset: 32, .. })
    ));
    let mut b = sa_init_bytes();
    b[40] = 0; // first transform says "last" but more follow
    assert!(matches!(Message::parse(&b), Err(Error::Invalid { .. })));
}

fn with_extra_payload(ptype: u8, flags: u8) -> Vec<u8> {
    let mut b = sa_init_bytes();
    let notify_off = 28 + 40 + 16 + 20;
    b[notify_off] = ptype; // Notify's next payload
    b.extend_from_slice(&[0, flags, 0, 6, 0xde, 0xad]);
    let l = b.len() as u32;
    b[24..28].copy_from_slice(&l.to_be_bytes());
    b
}

#[test]
fn critical_unknown_payload_is_reported() {
    let b = with_extra_payload(200, 0x80);
    let e = Message::parse(&b).unwrap_err();
    assert_eq!(
        e,
        Error::UnsupportedCriticalPayload {
            offset: 132,
            payload_type: 200
        }
    );
    assert_eq!(
        e.notify(),
        (NotifyType::UnsupportedCriticalPayload, vec![200])
    );
    // The header is still readable for the error response.
    assert_eq!(IkeHeader::parse(&b).unwrap().spi_i, 0x0102030405060708);
    // Same for a decrypted inner chain.
    let inner = [0, 0x80, 0, 4];
    assert_eq!(
        parse_payload_chain(PayloadType::Unknown(99), &inner),
        Err(Error::UnsupportedCriticalPayload {
            offset: 0,
            payload_type: 99
        })
    );
}

#[test]
fn non_critical_unknown_payload_is_kept() {
    let b = with_extra_payload(200, 0x00);
    let m = Message::parse(&b).unwrap();
    assert_eq!(
        m.payloads.last().unwrap(),
        &Payload::Unknown {
            payload_type: 200,
            body: vec![0xde, 0xad]
        }
    );
    // Critical bit on a *known* payload type is ignored.
    let b = with_extra_payload(43, 0x80);
    assert_eq!(
        Message::parse(&b).unwrap().payloads.last().unwrap(),
        &Payload::VendorId(vec![0xde, 0xad])
    );
}

#[test]
fn version_and_trailing_checks() {
    let mut b = sa_init_bytes();
    b[17] = 0x30;
    let e = Message::parse(&b).unwrap_err();
    assert_eq!(
        e,
        Error::UnsupportedVersion {
            offset: 17,
            major: 3
        }
    );
    assert_eq!(e.notify().0, NotifyType::InvalidMajorVersion);
    assert_eq!(IkeHeader::parse_any_version(&b).unwrap().major_version, 3);
    // Minor version is accepted and kept.
    let mut b = sa_init_bytes();
    b[17] = 0x21;
    assert_eq!(Message::parse(&b).unwrap().header.minor_version, 1);
    // Last payload says "no next" but bytes remain.
    let mut b = sa_init_bytes();
    b.extend_from_slice(&[0, 0, 0, 4]);
    let l = b.len() as u32;
    b[24..28].copy_from_slice(&l.to_be_bytes());
    assert!(matches!(
        Message::parse(&b),
        Err(Error::BadLength {
            what: "data after last payload",
            ..
        })
    ));
    // Chain promises a next payload that is not there.
    let mut b = sa_init_bytes();
    b[28 + 40 + 16 + 20] = 43;
    assert!(matches!(
        Message::parse(&b),
        Err(Error::Truncated { offset: 132, .. })
    ));
}

#[test]
fn sk_must_be_last() {
    let m = Message::new(
        header(),
        vec![
            Payload::Encrypted(Encrypted {
                inner_next: PayloadType::NoNextPayload,
                body: vec![1],
            }),
            Payload::Nonce(vec![1]),
        ],
    );
    assert!(matches!(m.to_bytes(), Err(Error::Unencodable { .. })));
    // Wire: an SK payload followed by extra bytes.
    let ok = Message::new(
        header(),
        vec![Payload::Encrypted(Encrypted {
            inner_next: PayloadType::Nonce,
            body: vec![1; 8],
        })],
    );
    let mut b = ok.to_bytes().unwrap();
    b.extend_from_slice(&[0, 0, 0, 4]);
    let l = b.len() as u32;
    b[24..28].copy_from_slice(&l.to_be_bytes());
    assert!(matches!(
        Message::parse(&b),
        Err(Error::Invalid {
            what: "data after encrypted payload",
            ..
        })
    ));
    assert!(locate_encrypted(&b).is_err());
}

#[test]
fn substructure_errors() {
    // Delete: SPI count does not match.
    let chain = [0, 0, 0, 12, 3, 4, 0, 2, 0, 0, 0, 1];
    assert!(matches!(
        parse_payload_chain(PayloadType::Delete, &chain),
        Err(Error::CountMismatch {
            declared: 2,
            found: 1,
            ..
        })
    ));
    // TS: number of selectors does not match.
    let mut ts = vec![0, 0, 0, 24, 2, 0, 0, 0, 7, 0, 0, 16, 0, 0, 255, 255];
    ts.extend_from_slice(&[10, 0, 0, 0, 10, 0, 0, 255]);
    assert!(matches!(
        parse_payload_chain(PayloadType::TsInitiator, &ts),
        Err(Error::CountMismatch {
            declared: 2,
            found: 1,
            ..
        })
    ));
    ts[4] = 1;
    assert_eq!(
        parse_payload_chain(PayloadType::TsInitiator, &ts)
            .unwrap()
            .len(),
        1
    );
    // TS: IPv4 selector with an IPv6 length.
    ts[11] = 40;
    assert!(matches!(
        parse_payload_chain(PayloadType::TsInitiator, &ts),
        Err(Error::BadLength { .. })
    ));
    // KE body too short.
    assert!(matches!(
        parse_payload_chain(PayloadType::KeyExchange, &[0, 0, 0, 6, 0, 19]),
        Err(Error::Truncated { .. })
    ));
    // Notify SPI size beyond the payload.
    assert!(matches!(
        parse_payload_chain(PayloadType::Notify, &[0, 0, 0, 8, 3, 4, 0, 11]),
        Err(Error::Truncated { .. })
    ));
    // Transform attribute TLV longer than its transform.
    let sa = [
        0, 0, 0, 24, 0, 0, 0, 20, 1, 1, 0, 1, 0, 0, 0, 12, 1, 0, 0, 12, 0, 1, 0, 9,
    ];
    assert!(matches!(
        parse_payload_chain(PayloadType::SecurityAssociation, &sa),
        Err(Error::BadLength { .. })
    ));
    // Emit side: mismatched TS families and wrong Delete SPI sizes are refused.
    let bad_ts = Payload::TsInitiator(vec![TrafficSelector::Range(TsRange {
        start_addr: "10.0.0.1".parse().unwrap(),
        end_addr: "::1".parse().unwrap(),
        ..TsRange::any(false)
    })]);
    assert!(emit_payload_chain(&[bad_ts], &mut Vec::new()).is_err());
    let bad_del = Payload::Delete(Delete {
        protocol: ProtocolId::Esp,
        spi_size: 4,
        spis: vec![vec![1, 2]],
    });
    let mut out = vec![7];
    assert!(emit_payload_chain(&[bad_del], &mut out).is_err());
    assert_eq!(out, vec![7], "nothing appended on error");
}

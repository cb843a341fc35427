//! Known-answer tests. Sources:
//! * HMAC-SHA2: RFC 4231 §4.2 (test case 1), §4.3 (test case 2), §4.7 (test case 6, SHA-512).
//! * ECDH: RFC 5903 §8.1 (group 19) and §8.2 (group 20): i, g^i = gix|giy, g^r, girx.
//! * X25519: RFC 7748 §5.2 (two scalar/u vectors) and §6.1 (Alice/Bob).
//! * prf+ / SKEYSEED / child KEYMAT: no RFC vector exists for IKEv2 with
//!   HMAC-SHA2; the expected values are computed here independently, from
//!   the definitions in RFC 7296 §2.13/2.14/2.17, with an HMAC built from
//!   SHA-256 per RFC 2104 (ring::digest), not with ring::hmac.
#![allow(deprecated)]

use dodvpn_ike::crypto::{DhPrivate, Group, IkeCipher, Integ, Prf};
use dodvpn_ike::keys;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

#[test]
fn rfc4231_hmac_sha2() {
    let k1 = vec![0x0b; 20];
    let d1 = b"Hi There";
    assert_eq!(
        Prf::HmacSha256.prf(&k1, d1),
        h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    );
    assert_eq!(Prf::HmacSha384.prf(&k1, d1), h("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"));
    assert_eq!(Prf::HmacSha512.prf(&k1, d1), h("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"));
    let k2 = b"Jefe";
    let d2 = b"what do ya want for nothing?";
    assert_eq!(
        Prf::HmacSha256.prf(k2, d2),
        h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    assert_eq!(Prf::HmacSha384.prf(k2, d2), h("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"));
    assert_eq!(Prf::HmacSha512.prf(k2, d2), h("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"));
    // Test case 6: key longer than the block size.
    assert_eq!(
        Prf::HmacSha512.prf(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
        h("80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598")
    );
    // Integrity transforms truncate to half the output (RFC 4868 §2.1.1).
    assert_eq!(
        Integ::HmacSha256_128.mac(&k1, d1),
        h("b0344c61d8db38535ca8afceaf0bf12b")
    );
    assert_eq!(Integ::HmacSha384_192.mac(&k1, d1).len(), 24);
    assert_eq!(Integ::HmacSha512_256.mac(&k1, d1).len(), 32);
}

fn fixed(bytes: &[u8]) -> ring::test::rand::FixedSliceRandom<'_> {
    ring::test::rand::FixedSliceRandom { bytes }
}

#[test]
fn rfc5903_ecp256() {
    let i = h("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433");
    let gi = h(
        "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180
                5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
    );
    let r = h("C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53");
    let gr = h(
        "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63
                56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
    );
    let girx = h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE");
    let a = DhPrivate::generate(Group::Ecp256, &fixed(&i)).unwrap();
    assert_eq!(a.public_value(), &gi[..], "KE data is x|y without 0x04");
    assert_eq!(a.agree(&gr).unwrap(), girx);
    let b = DhPrivate::generate(Group::Ecp256, &fixed(&r)).unwrap();
    assert_eq!(b.public_value(), &gr[..]);
    assert_eq!(b.agree(&gi).unwrap(), girx);
    // 0x04-prefixed (SEC1) values are refused: wrong length for the KE payload.
    let mut sec1 = vec![4];
    sec1.extend_from_slice(&gr);
    assert!(DhPrivate::generate(Group::Ecp256, &fixed(&i))
        .unwrap()
        .agree(&sec1)
        .is_err());
}

#[test]
fn rfc5903_ecp384() {
    let i = h(
        "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655
               E35B5380 41E649EE 3FAEF896 783AB194",
    );
    let gi = h(
        "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6
                DE3AC808 ACB4BDB4 C88732AE E95F41AA
                9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E
                EB9FCFF3 C2C947DA E69B4C63 4573A81C",
    );
    let gr = h(
        "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D
                0D1AC43A 0336DEF9 6FDA41D0 774A3571
                DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF
                F83FA401 42209DFF 5EAAD96D B9E6386C",
    );
    let girx = h(
        "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4
                  D6031355 69B9E9D0 9CF5D4A2 70F59746",
    );
    let a = DhPrivate::generate(Group::Ecp384, &fixed(&i)).unwrap();
    assert_eq!(a.public_value(), &gi[..]);
    assert_eq!(a.agree(&gr).unwrap(), girx);
}

#[test]
fn rfc7748_x25519() {
    // §5.2
    let k = h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    let u = h("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    let a = DhPrivate::generate(Group::Curve25519, &fixed(&k)).unwrap();
    assert_eq!(
        a.agree(&u).unwrap(),
        h("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    );
    let k = h("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
    let u = h("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493");
    let a = DhPrivate::generate(Group::Curve25519, &fixed(&k)).unwrap();
    assert_eq!(
        a.agree(&u).unwrap(),
        h("95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957")
    );
    // §6.1
    let ap = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let bp = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let apub = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let bpub = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let kk = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    let a = DhPrivate::generate(Group::Curve25519, &fixed(&ap)).unwrap();
    assert_eq!(a.public_value(), &apub[..]);
    assert_eq!(a.agree(&bpub).unwrap(), kk);
    let b = DhPrivate::generate(Group::Curve25519, &fixed(&bp)).unwrap();
    assert_eq!(b.public_value(), &bpub[..]);
    assert_eq!(b.agree(&apub).unwrap(), kk);
    // An all-zero result (low-order point) is refused (RFC 8031 §2.3).
    let a = DhPrivate::generate(Group::Curve25519, &fixed(&ap)).unwrap();
    assert!(a.agree(&[0u8; 32]).is_err());
}

/// HMAC-SHA-256 straight from RFC 2104 over ring::digest (independent of ring::hmac).
fn hmac_sha256_manual(key: &[u8], data: &[u8]) -> Vec<u8> {
    use ring::digest::{digest, SHA256};
    let mut k = if key.len() > 64 {
        digest(&SHA256, key).as_ref().to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(data);
    let ih = digest(&SHA256, &inner);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(ih.as_ref());
    digest(&SHA256, &outer).as_ref().to_vec()
}

/// prf+ spelled out as in RFC 7296 §2.13.
fn prf_plus_manual(key: &[u8], s: &[u8], len: usize) -> Vec<u8> {
    let mut t1 = s.to_vec();
    t1.push(1);
    let mut out = Vec::new();
    let mut t = hmac_sha256_manual(key, &t1);
    out.extend_from_slice(&t);
    let mut n = 2u8;
    while out.len() < len {
        let mut input = t.clone();
        input.extend_from_slice(s);
        input.push(n);
        t = hmac_sha256_manual(key, &input);
        out.extend_from_slice(&t);
        n += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn manual_hmac_matches_rfc4231() {
    assert_eq!(
        hmac_sha256_manual(&[0x0b; 20], b"Hi There"),
        h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    );
}

#[test]
fn prf_plus_and_key_schedule() {
    let ni: Vec<u8> = (0u8..32).collect();
    let nr: Vec<u8> = (100u8..132).collect();
    let g_ir = h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE");
    let (spi_i, spi_r) = (0x0102030405060708u64, 0x1112131415161718u64);

    // SKEYSEED = prf(Ni | Nr, g^ir)
    let mut nn = ni.clone();
    nn.extend_from_slice(&nr);
    let want_seed = hmac_sha256_manual(&nn, &g_ir);
    let seed = keys::skeyseed(Prf::HmacSha256, &ni, &nr, &g_ir);
    assert_eq!(seed, want_seed);

    // prf+ over several blocks, including a non-multiple length.
    for len in [1, 31, 32, 33, 100, 232] {
        assert_eq!(
            Prf::HmacSha256.prf_plus(&seed, b"seed", len).unwrap(),
            prf_plus_manual(&seed, b"seed", len)
        );
    }

    // {SK_d|SK_ai|SK_ar|SK_ei|SK_er|SK_pi|SK_pr} = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)
    let cipher = IkeCipher::AesCbc {
        key_bits: 256,
        integ: Integ::HmacSha256_128,
    };
    let k = keys::derive_ike_keys(Prf::HmacSha256, cipher, &seed, &ni, &nr, spi_i, spi_r).unwrap();
    let mut s = nn.clone();
    s.extend_from_slice(&spi_i.to_be_bytes());
    s.extend_from_slice(&spi_r.to_be_bytes());
    let km = prf_plus_manual(&seed, &s, 32 + 2 * 32 + 2 * 32 + 2 * 32);
    assert_eq!(k.sk_d, km[0..32]);
    assert_eq!(k.sk_ai, km[32..64]);
    assert_eq!(k.sk_ar, km[64..96]);
    assert_eq!(k.sk_ei, km[96..128]);
    assert_eq!(k.sk_er, km[128..160]);
    assert_eq!(k.sk_pi, km[160..192]);
    assert_eq!(k.sk_pr, km[192..224]);

    // AES-GCM-128: SK_e carries a 4-byte salt, no SK_a.
    let g = keys::derive_ike_keys(
        Prf::HmacSha256,
        IkeCipher::AesGcm16 { key_bits: 128 },
        &seed,
        &ni,
        &nr,
        spi_i,
        spi_r,
    )
    .unwrap();
    assert!(g.sk_ai.is_empty());
    assert_eq!(g.sk_ei, km[32..52]);
    assert_eq!(g.sk_er, km[52..72]);
    assert_eq!(g.sk_pi, km[72..104]);

    // Child KEYMAT = prf+(SK_d, Ni | Nr), with PFS prf+(SK_d, g^ir | Ni | Nr)
    let (i2r, r2i) = keys::child_keymat(Prf::HmacSha256, &k.sk_d, None, &ni, &nr, 20).unwrap();
    let km = prf_plus_manual(&k.sk_d, &nn, 40);
    assert_eq!(i2r, km[..20]);
    assert_eq!(r2i, km[20..]);
    let (i2r, _) = keys::child_keymat(Prf::HmacSha256, &k.sk_d, Some(&g_ir), &ni, &nr, 36).unwrap();
    let mut s = g_ir.clone();
    s.extend_from_slice(&nn);
    assert_eq!(i2r, prf_plus_manual(&k.sk_d, &s, 72)[..36]);

    // Rekey: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
    let mut s = g_ir.clone();
    s.extend_from_slice(&nn);
    assert_eq!(
        keys::rekey_skeyseed(Prf::HmacSha256, &k.sk_d, &g_ir, &ni, &nr),
        hmac_sha256_manual(&k.sk_d, &s)
    );
}

#[test]
fn sk_payload_roundtrip_all_ciphers() {
    use dodvpn_wire::*;
    let rng = ring::rand::SystemRandom::new();
    for cipher in [
        IkeCipher::AesGcm16 { key_bits: 128 },
        IkeCipher::AesGcm16 { key_bits: 256 },
        IkeCipher::ChaCha20Poly1305,
        IkeCipher::AesCbc {
            key_bits: 128,
            integ: Integ::HmacSha256_128,
        },
        IkeCipher::AesCbc {
            key_bits: 256,
            integ: Integ::HmacSha512_256,
        },
    ] {
        let ek = vec![7u8; cipher.enc_key_len()];
        let ak = vec![9u8; cipher.integ_key_len()];
        let payloads = vec![
            Payload::Nonce(vec![1; 33]),
            Payload::Notify(Notify::new(NotifyType::Cookie2, vec![5; 8])),
        ];
        let mut plain = Vec::new();
        let inner = emit_payload_chain(&payloads, &mut plain).unwrap();
        let header = IkeHeader::new(
            1,
            2,
            ExchangeType::Informational,
            Flags::new(true, false),
            3,
        );
        let mut out = Vec::new();
        let loc =
            emit_encrypted(&header, &[], inner, cipher.body_len(plain.len()), &mut out).unwrap();
        cipher
            .seal(&ek, &ak, &mut out, loc.body.start, &plain, &rng)
            .unwrap();
        let parsed = Message::parse(&out).unwrap();
        assert!(parsed.encrypted().is_some());
        let mut buf = out.clone();
        let r = cipher.open(&ek, &ak, &mut buf, loc.body.start).unwrap();
        assert_eq!(
            parse_payload_chain(loc.inner_next, &buf[r]).unwrap(),
            payloads
        );
        // Any flipped bit (header/AAD or body) is caught.
        for i in [0usize, 20, out.len() - 1, loc.body.start + 3] {
            let mut bad = out.clone();
            bad[i] ^= 1;
            assert!(
                cipher.open(&ek, &ak, &mut bad, loc.body.start).is_err(),
                "{cipher:?} byte {i}"
            );
        }
    }
}

#[test]
fn rfc5903_ecp521() {
    // RFC 5903 §8.3: the 521-bit random ECP group (group 21).
    let i = h("0113F82DA825735E3D97276683B2B74277BAD27335EA71664AF2430CC4F33459B9669EE78B3FFB9B8683015D344DCBFEF6FB9AF4C6C470BE254516CD3C1A1FB47362");
    let gi = h("01EBB34DD75721ABF8ADC9DBED17889CBB9765D90A7C60F2CEF007BB0F2B26E14881FD4442E689D61CB2DD046EE30E3FFD20F9A45BBDF6413D583A2DBF59924FD35C
                00F6B632D194C0388E22D8437E558C552AE195ADFD153F92D74908351B2F8C4EDA94EDB0916D1B53C020B5EECAED1A5FC38A233E4830587BB2EE3489B3B42A5A86A4");
    let r = h("00CEE3480D8645A17D249F2776D28BAE616952D1791FDB4B70F7C3378732AA1B22928448BCD1DC2496D435B01048066EBE4F72903C361B1A9DC1193DC2C9D0891B96");
    let gr = h("010EBFAFC6E85E08D24BFFFCC1A4511DB0E634BEEB1B6DEC8C5939AE44766201AF6200430BA97C8AC6A0E9F08B33CE7E9FEEB5BA4EE5E0D81510C24295B8A08D0235
                00A4A6EC300DF9E257B0372B5E7ABFEF093436719A77887EBB0B18CF8099B9F4212B6E30A1419C18E029D36863CC9D448F4DBA4D2A0E60711BE572915FBD4FEF2695");
    let girx = h("00CDEA89621CFA46B132F9E4CFE2261CDE2D4368EB5656634C7CC98C7A00CDE54ED1866A0DD3E6126C9D2F845DAFF82CEB1DA08F5D87521BB0EBECA77911169C20CC");
    assert_eq!(Group::Ecp521.public_len(), 132);
    let a = DhPrivate::generate(Group::Ecp521, &fixed(&i)).unwrap();
    assert_eq!(a.public_value(), &gi[..], "KE data is x|y (66 bytes each)");
    assert_eq!(a.agree(&gr).unwrap(), girx);
    let b = DhPrivate::generate(Group::Ecp521, &fixed(&r)).unwrap();
    assert_eq!(b.public_value(), &gr[..]);
    assert_eq!(b.agree(&gi).unwrap(), girx);
    // RFC 6989 §2.3: a point not on the curve is refused.
    let mut off = gr.clone();
    off[131] ^= 1;
    assert!(DhPrivate::generate(Group::Ecp521, &fixed(&i))
        .unwrap()
        .agree(&off)
        .is_err());
    // ... and so are the point at infinity (all zero) and a wrong length.
    for bad in [vec![0u8; 132], gr[..131].to_vec(), vec![0xff; 132]] {
        assert!(DhPrivate::generate(Group::Ecp521, &fixed(&i))
            .unwrap()
            .agree(&bad)
            .is_err());
    }
}

/// Vectors from `tests/data/modp_vectors.txt`, made by `modp_vectors.py`
/// beside it: the RFC 3526 primes from their definition (pi by Machin's
/// formula) and g^x mod p by Python's `pow`, independent of this crate.
fn modp_vectors() -> Vec<(Group, Vec<u8>, [Vec<u8>; 5])> {
    let text = include_str!("data/modp_vectors.txt");
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |k: &str| {
            let line = block
                .lines()
                .find(|l| l.starts_with(&format!("{k} ")))
                .unwrap();
            h(&line[k.len() + 1..])
        };
        let group = match block.lines().next().unwrap() {
            "group 14" => Group::Modp2048,
            "group 15" => Group::Modp3072,
            "group 16" => Group::Modp4096,
            other => panic!("{other}"),
        };
        out.push((
            group,
            field("p"),
            [
                field("xi"),
                field("xr"),
                field("gi"),
                field("gr"),
                field("gir"),
            ],
        ));
    }
    out
}

#[test]
fn modp_groups_14_15_16_fixed_key_vectors() {
    let v = modp_vectors();
    assert_eq!(v.len(), 3);
    for (group, p, [xi, xr, gi, gr, gir]) in v {
        assert_eq!(group.public_len(), p.len(), "{group:?}");
        let a = DhPrivate::generate(group, &fixed(&xi)).unwrap();
        assert_eq!(a.public_value(), &gi[..], "{group:?} g^i");
        assert_eq!(a.agree(&gr).unwrap(), gir, "{group:?} g^ir");
        let b = DhPrivate::generate(group, &fixed(&xr)).unwrap();
        assert_eq!(b.public_value(), &gr[..], "{group:?} g^r");
        assert_eq!(b.agree(&gi).unwrap(), gir, "{group:?} g^ri");
        // RFC 6989 §2.2 / RFC 7296 §2.12: refuse y <= 1 and y >= p - 1.
        let n = p.len();
        let num = |last: u8| {
            let mut x = vec![0u8; n];
            x[n - 1] = last;
            x
        };
        let mut p_minus_1 = p.clone();
        p_minus_1[n - 1] -= 1;
        for bad in [
            num(0),
            num(1),
            p_minus_1,
            p.clone(),
            vec![0xff; n],
            gr[1..].to_vec(),
        ] {
            assert!(
                DhPrivate::generate(group, &fixed(&xi))
                    .unwrap()
                    .agree(&bad)
                    .is_err(),
                "{group:?} must refuse a bad public value"
            );
        }
        // y = 2 is the smallest acceptable value.
        assert!(DhPrivate::generate(group, &fixed(&xi))
            .unwrap()
            .agree(&num(2))
            .is_ok());
    }
}

#[test]
fn every_group_agrees_with_itself() {
    let rng = ring::rand::SystemRandom::new();
    for g in Group::ALL {
        let a = DhPrivate::generate(g, &rng).unwrap();
        let b = DhPrivate::generate(g, &rng).unwrap();
        assert_eq!(a.public_value().len(), g.public_len(), "{g:?}");
        let (pa, pb) = (a.public_value().to_vec(), b.public_value().to_vec());
        assert_eq!(a.agree(&pb).unwrap(), b.agree(&pa).unwrap(), "{g:?}");
        assert_eq!(Group::from_id(g.id()), Some(g));
    }
}

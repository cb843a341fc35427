//! AES-CBC + HMAC-SHA2 ESP (RFC 3602, RFC 4868, RFC 4303) known answers and
//! behaviour. Sources of the expected values:
//! * AES-CBC: RFC 3602 §4 cases #1 and #2 (AES-128) and NIST SP 800-38A
//!   F.2.1 / F.2.5 (AES-128 / AES-256), each re-checked with `openssl enc -nopad`.
//! * HMAC: RFC 4868 §2.7.2 authenticator test cases (keys of the hash
//!   length, ICV truncated to half), re-checked with Python's `hmac`.
//! * Whole ESP packets: built outside Rust (openssl for AES-256-CBC, Python
//!   `hmac` for the ICV, the ESN high half appended for the ICV only,
//!   RFC 4303 §2.2.1), with the IV given explicitly.

use dodvpn_esp::{
    Aead, CbcHmac, Error, InboundSa, Integ, OutboundSa, CBC_IV_LEN, HEADROOM, NH_IPV4, TAILROOM,
};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn cipher(t: Aead, ek: &[u8], ak: &[u8]) -> CbcHmac {
    let mut km = ek.to_vec();
    km.extend_from_slice(ak);
    CbcHmac::new(t, &km).unwrap()
}

#[test]
fn rfc3602_and_sp800_38a_aes_cbc() {
    let sha = Integ::HmacSha256_128;
    let cases: [(Aead, &str, &str, &str, &str); 4] = [
        // RFC 3602 §4 case #1
        (
            Aead::AesCbc128(sha),
            "06a9214036b8a15b512e03d534120006",
            "3dafba429d9eb430b422da802c9fac41",
            "53696e676c6520626c6f636b206d7367",
            "e353779c1079aeb82708942dbe77181a",
        ),
        // RFC 3602 §4 case #2
        (
            Aead::AesCbc128(sha),
            "c286696d887c9aa0611bbb3e2025a45a",
            "562e17996d093d28ddb3ba695a2e6f58",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
        ),
        // SP 800-38A F.2.1 CBC-AES128.Encrypt
        (
            Aead::AesCbc128(sha),
            "2b7e151628aed2a6abf7158809cf4f3c",
            "000102030405060708090a0b0c0d0e0f",
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2
             73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
        ),
        // SP 800-38A F.2.5 CBC-AES256.Encrypt
        (
            Aead::AesCbc256(sha),
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "000102030405060708090a0b0c0d0e0f",
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d
             39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
        ),
    ];
    for (i, (t, k, iv, pt, ct)) in cases.iter().enumerate() {
        let c = cipher(*t, &h(k), &[0u8; 32]);
        let mut ivb = [0u8; CBC_IV_LEN];
        ivb.copy_from_slice(&h(iv));
        let mut buf = h(pt);
        c.encrypt(&ivb, &mut buf).unwrap();
        assert_eq!(buf, h(ct), "case {i} encrypt");
        c.decrypt(&ivb, &mut buf).unwrap();
        assert_eq!(buf, h(pt), "case {i} decrypt");
    }
}

#[test]
fn rfc4868_hmac_authenticator_vectors() {
    // (integrity, key, data, truncated ICV): AUTH256-1..3, AUTH384-1..3, AUTH512-1..3.
    let jefe = |n: usize| b"Jefe".repeat(n / 4);
    let cases: Vec<(Integ, Vec<u8>, Vec<u8>, &str)> = vec![
        (
            Integ::HmacSha256_128,
            vec![0x0b; 32],
            b"Hi There".to_vec(),
            "198a607eb44bfbc69903a0f1cf2bbdc5",
        ),
        (
            Integ::HmacSha256_128,
            jefe(32),
            b"what do ya want for nothing?".to_vec(),
            "167f928588c5cc2eef8e3093caa0e87c",
        ),
        (
            Integ::HmacSha256_128,
            vec![0xaa; 32],
            vec![0xdd; 50],
            "cdcb1220d1ecccea91e53aba3092f962",
        ),
        (
            Integ::HmacSha384_192,
            vec![0x0b; 48],
            b"Hi There".to_vec(),
            "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
        ),
        (
            Integ::HmacSha384_192,
            jefe(48),
            b"what do ya want for nothing?".to_vec(),
            "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d",
        ),
        (
            Integ::HmacSha384_192,
            vec![0xaa; 48],
            vec![0xdd; 50],
            "809f439be00274321d4a538652164b53554a508184a0c316",
        ),
        (
            Integ::HmacSha512_256,
            vec![0x0b; 64],
            b"Hi There".to_vec(),
            "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
        ),
        (
            Integ::HmacSha512_256,
            jefe(64),
            b"what do ya want for nothing?".to_vec(),
            "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454",
        ),
        (
            Integ::HmacSha512_256,
            vec![0xaa; 64],
            vec![0xdd; 50],
            "2ee7acd783624ca9398710f3ee05ae41b9f9b0510c87e49e586cc9bf961733d8",
        ),
    ];
    for (i, (integ, key, data, want)) in cases.iter().enumerate() {
        let c = cipher(Aead::AesCbc128(*integ), &[0u8; 16], key);
        let mut out = [0u8; 32];
        c.icv(data, &[], &mut out);
        assert_eq!(&out[..integ.icv_len()], &h(want)[..], "case {i}");
        assert!(c.verify(data, &[], &h(want)).is_ok());
        let mut bad = h(want);
        bad[0] ^= 1;
        assert_eq!(c.verify(data, &[], &bad), Err(Error::BadTag));
    }
}

const SPI: u32 = 0x0102_0304;
const INNER: &str =
    "45000028000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223";
const IV: &str = "00112233445566778899aabbccddeeff";
const P1: &str = "010203040000000100112233445566778899aabbccddeeff4a9da5e61935b9cbaa93d52d52f4c6f5bbaef41027f564bff5c4bf923c0d3f3a18fecf2e454adc1a6d3631c4cd24926e889fa4b54977a729de2d692856dbe70e";
const P_ESN: &str = "010203040000000700112233445566778899aabbccddeeff4a9da5e61935b9cbaa93d52d52f4c6f5bbaef41027f564bff5c4bf923c0d3f3a18fecf2e454adc1a6d3631c4cd24926e6d8287378532754864f54f0514f63625";

fn keymat() -> Vec<u8> {
    // encryption key (AES-256) first, then the integrity key (RFC 7296 §2.17).
    let mut k: Vec<u8> = (0x10..0x30).collect();
    k.extend(0x40u8..0x60);
    k
}

#[test]
fn whole_esp_packet_matches_an_independent_build() {
    let t = Aead::AesCbc256(Integ::HmacSha256_128);
    assert_eq!(t.keymat_len(), 64);
    let inner = h(INNER);
    let mut iv = [0u8; CBC_IV_LEN];
    iv.copy_from_slice(&h(IV));
    for (esn, seq_before, want) in [(false, 0u64, P1), (true, (5u64 << 32) | 6, P_ESN)] {
        let mut out = OutboundSa::new(SPI, t, &keymat(), esn).unwrap();
        assert!(out.advance_seq_to(seq_before));
        let mut buf = vec![0u8; HEADROOM + inner.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + inner.len()].copy_from_slice(&inner);
        let n = out
            .seal_cbc_with_explicit_iv_for_kat(iv, inner.len(), &mut buf, NH_IPV4)
            .unwrap();
        assert_eq!(hex::encode(&buf[..n]), want, "esn={esn}");
        assert_eq!(n, t.sealed_len(inner.len()));
        if esn {
            // A fresh receiver infers the high half 0, not 5: the ICV (which covers the
            // high half) must then fail, which shows that the high half is authenticated.
            let mut inb = InboundSa::new(SPI, t, &keymat(), true).unwrap();
            let mut pkt = h(want);
            assert_eq!(inb.open(&mut pkt), Err(Error::BadTag));
            continue;
        }
        let mut inb = InboundSa::new(SPI, t, &keymat(), esn).unwrap();
        let mut pkt = h(want);
        let (r, nh) = inb.open(&mut pkt).unwrap();
        assert_eq!((&pkt[r], nh), (&inner[..], NH_IPV4));
    }
}

fn pair(t: Aead, esn: bool) -> (OutboundSa, InboundSa) {
    let km: Vec<u8> = (0..t.keymat_len() as u8).collect();
    (
        OutboundSa::new(7, t, &km, esn).unwrap(),
        InboundSa::new(7, t, &km, esn).unwrap(),
    )
}

#[test]
fn every_cbc_transform_round_trips_and_refuses_tampering() {
    for t in Aead::CBC_HMAC {
        for esn in [false, true] {
            let (mut out, mut inb) = pair(t, esn);
            for len in [0usize, 1, 13, 14, 15, 16, 40, 1400, 1500] {
                let inner: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
                let mut buf = vec![0u8; HEADROOM + len + TAILROOM];
                buf[HEADROOM..HEADROOM + len].copy_from_slice(&inner);
                let n = out.seal(len, &mut buf, NH_IPV4).unwrap();
                assert_eq!(n, t.sealed_len(len), "{t} len {len}");
                assert_eq!((n - t.payload_offset() - t.tag_len()) % 16, 0);
                // The IV differs from packet to packet and the payload is encrypted.
                if len >= 16 {
                    assert_ne!(&buf[24..40], &inner[..16]);
                }
                let mut tampered = buf[..n].to_vec();
                tampered[n / 2] ^= 0x80;
                assert_eq!(inb.open(&mut tampered), Err(Error::BadTag), "{t}");
                let mut pkt = buf[..n].to_vec();
                let (r, nh) = inb
                    .open(&mut pkt)
                    .unwrap_or_else(|e| panic!("{t} {len}: {e}"));
                assert_eq!((&pkt[r], nh), (&inner[..], NH_IPV4));
                // Replay of the same packet.
                let mut again = buf[..n].to_vec();
                assert!(matches!(inb.open(&mut again), Err(Error::Replay { .. })));
            }
            assert_eq!(inb.counters().drop_bad_tag, 9);
        }
    }
}

#[test]
fn cbc_ivs_are_distinct_and_not_the_counter() {
    let t = Aead::AesCbc128(Integ::HmacSha256_128);
    let (mut out, _) = pair(t, false);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let mut buf = vec![0u8; HEADROOM + 20 + TAILROOM];
        let n = out.seal(20, &mut buf, NH_IPV4).unwrap();
        let iv = buf[8..24].to_vec();
        assert_ne!(&iv[..8], &buf[4..8].repeat(2)[..8]);
        assert!(seen.insert(iv));
        assert!(n > 24);
    }
}

#[test]
fn cbc_bad_input_is_refused_cleanly() {
    let t = Aead::AesCbc256(Integ::HmacSha512_256);
    // Wrong KEYMAT length.
    assert!(matches!(
        OutboundSa::new(1, t, &[0u8; 63], false),
        Err(Error::KeyLength { expected: 96, .. })
    ));
    let (mut out, mut inb) = pair(t, false);
    // Too short for header + IV + one block + ICV.
    for len in 0..t.min_packet_len() {
        let mut p = vec![0u8; len];
        if len >= 4 {
            p[..4].copy_from_slice(&7u32.to_be_bytes());
        }
        assert!(
            matches!(inb.open(&mut p), Err(Error::Truncated { .. })),
            "{len}"
        );
    }
    // Extra padding must keep block alignment.
    let mut buf = vec![0u8; HEADROOM + 20 + TAILROOM];
    assert_eq!(
        out.seal_padded(20, &mut buf, NH_IPV4, 4),
        Err(Error::InvalidPadding(4))
    );
    let n = out.seal_padded(20, &mut buf, NH_IPV4, 32).unwrap();
    assert_eq!(n, t.sealed_len(20) + 32);
    let (r, _) = inb.open(&mut buf[..n]).unwrap();
    assert_eq!(r.len(), 20);
    // Too small a buffer.
    let mut small = vec![0u8; HEADROOM + 20];
    assert!(matches!(
        out.seal(20, &mut small, NH_IPV4),
        Err(Error::BufferTooSmall { .. })
    ));
    // Random garbage of every length never panics.
    for len in 0..200 {
        let mut p: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        if len >= 4 {
            p[..4].copy_from_slice(&7u32.to_be_bytes());
        }
        assert!(inb.open(&mut p).is_err());
    }
}

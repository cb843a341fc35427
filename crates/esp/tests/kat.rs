//! Known-answer tests, run through the crate's own AEAD wrapper with the
//! ESP nonce construction salt(4) || IV(8).
//!
//! * AES-GCM: McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)",
//!   test cases 3 and 4 (AES-128) and 15 and 16 (AES-256), 96-bit IV
//!   cafebabe facedbad decaf888 = salt cafebabe || IV facedbaddecaf888.
//! * ChaCha20-Poly1305: RFC 8439 §2.8.2 (nonce 07000000 || 4041424344454647)
//!   and RFC 7634 Appendix A, the ESP example, reproduced byte-exactly
//!   through `OutboundSa` / `InboundSa`.

use dodvpn_esp::{Aead, Error, InboundSa, OutboundSa, SaCipher, HEADROOM, NH_IPV4, TAILROOM};

fn h(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).expect("valid hex in test vector")
}

struct Kat {
    aead: Aead,
    key: &'static str,
    salt: &'static str,
    iv: &'static str,
    aad: &'static str,
    pt: &'static str,
    ct: &'static str,
    tag: &'static str,
}

const GCM_K128: &str = "feffe9928665731c6d6a8f9467308308";
const GCM_K256: &str = "feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308";
const GCM_P64: &str = "d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72
                       1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b391aafd255";
const GCM_P60: &str = "d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72
                       1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b39";
const GCM_A20: &str = "feedfacedeadbeeffeedfacedeadbeef abaddad2";

const KATS: &[Kat] = &[
    // GCM spec test case 3.
    Kat {
        aead: Aead::AesGcm128,
        key: GCM_K128,
        salt: "cafebabe",
        iv: "facedbaddecaf888",
        aad: "",
        pt: GCM_P64,
        ct: "42831ec2217774244b7221b784d0d49c e3aa212f2c02a4e035c17e2329aca12e
             21d514b25466931c7d8f6a5aac84aa05 1ba30b396a0aac973d58e091473f5985",
        tag: "4d5c2af327cd64a62cf35abd2ba6fab4",
    },
    // GCM spec test case 4.
    Kat {
        aead: Aead::AesGcm128,
        key: GCM_K128,
        salt: "cafebabe",
        iv: "facedbaddecaf888",
        aad: GCM_A20,
        pt: GCM_P60,
        ct: "42831ec2217774244b7221b784d0d49c e3aa212f2c02a4e035c17e2329aca12e
             21d514b25466931c7d8f6a5aac84aa05 1ba30b396a0aac973d58e091",
        tag: "5bc94fbc3221a5db94fae95ae7121a47",
    },
    // GCM spec test case 15.
    Kat {
        aead: Aead::AesGcm256,
        key: GCM_K256,
        salt: "cafebabe",
        iv: "facedbaddecaf888",
        aad: "",
        pt: GCM_P64,
        ct: "522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa
             8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662898015ad",
        tag: "b094dac5d93471bdec1a502270e3cc6c",
    },
    // GCM spec test case 16.
    Kat {
        aead: Aead::AesGcm256,
        key: GCM_K256,
        salt: "cafebabe",
        iv: "facedbaddecaf888",
        aad: GCM_A20,
        pt: GCM_P60,
        ct: "522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa
             8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662",
        tag: "76fc6ece0f4e1768cddf8853bb2d551b",
    },
    // RFC 8439 §2.8.2 (AEAD_CHACHA20_POLY1305 example): "Ladies and Gentlemen of the class of '99: ..."
    Kat {
        aead: Aead::ChaCha20Poly1305,
        key: "808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f",
        salt: "07000000",
        iv: "4041424344454647",
        aad: "50515253c0c1c2c3c4c5c6c7",
        pt: "4c616469657320616e642047656e746c 656d656e206f662074686520636c6173
             73206f66202739393a20496620492063 6f756c64206f6666657220796f75206f
             6e6c79206f6e652074697020666f7220 746865206675747572652c2073756e73
             637265656e20776f756c642062652069 742e",
        ct: "d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6
             3dbea45e8ca9671282fafb69da92728b 1a71de0a9e060b2905d6a5b67ecd3b36
             92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc
             3ff4def08e4b7a9de576d26586cec64b 6116",
        tag: "1ae10b594f09e26a7e902ecbd0600691",
    },
];

#[test]
fn aead_known_answers_seal_and_open() {
    for (i, k) in KATS.iter().enumerate() {
        let mut keymat = h(k.key);
        keymat.extend(h(k.salt));
        assert_eq!(keymat.len(), k.aead.keymat_len(), "vector {i}");
        let c = SaCipher::new(k.aead, &keymat).unwrap();
        let iv: [u8; 8] = h(k.iv).try_into().unwrap();
        let aad = h(k.aad);

        let mut buf = h(k.pt);
        let tag = c.seal_in_place(&iv, &aad, &mut buf);
        assert_eq!(
            hex::encode(&buf),
            hex::encode(h(k.ct)),
            "ciphertext, vector {i}"
        );
        assert_eq!(hex::encode(tag), hex::encode(h(k.tag)), "tag, vector {i}");

        let mut ct = h(k.ct);
        ct.extend(h(k.tag));
        let n = c.open_in_place(&iv, &aad, &mut ct).unwrap();
        assert_eq!(&ct[..n], &h(k.pt)[..], "plaintext, vector {i}");

        // Wrong AAD, wrong IV, flipped tag: all rejected.
        let mut ct2 = h(k.ct);
        ct2.extend(h(k.tag));
        let mut aad2 = aad.clone();
        aad2.push(0);
        assert_eq!(
            c.open_in_place(&iv, &aad2, &mut ct2.clone()),
            Err(Error::BadTag)
        );
        let mut iv2 = iv;
        iv2[7] ^= 1;
        assert_eq!(
            c.open_in_place(&iv2, &aad, &mut ct2.clone()),
            Err(Error::BadTag)
        );
        let last = ct2.len() - 1;
        ct2[last] ^= 0x80;
        assert_eq!(c.open_in_place(&iv, &aad, &mut ct2), Err(Error::BadTag));
    }
}

#[test]
fn keymat_lengths() {
    assert_eq!(Aead::AesGcm128.keymat_len(), 20);
    assert_eq!(Aead::AesGcm256.keymat_len(), 36);
    assert_eq!(Aead::ChaCha20Poly1305.keymat_len(), 36);
    for a in Aead::ALL {
        for len in [0, a.key_len(), a.keymat_len() - 1, a.keymat_len() + 1] {
            assert!(matches!(
                SaCipher::new(a, &vec![0; len]),
                Err(Error::KeyLength { .. })
            ));
        }
        assert!(SaCipher::new(a, &vec![0; a.keymat_len()]).is_ok());
    }
}

// RFC 7634 Appendix A: ESP example.
//   Source 198.51.100.5, destination 192.0.2.5, SPI 0x01020304, sequence 5,
//   ICMP echo request; KEYMAT 80..9f || salt a0a1a2a3; IV 1011121314151617.
const A_KEYMAT: &str = "808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f a0a1a2a3";
const A_IV: &str = "1011121314151617";
const A_INNER: &str = "45000054a6f200004001e778c6336405 c000020508005b7a3a080000553bec10
                       000736270809 0a0b0c0d0e0f10111213 1415161718191a1b1c1d1e1f20212223
                       2425262728292a2b2c2d2e2f30313233 34353637";
// Full ESP packet: SPI || seq || IV || ciphertext (payload, padding 01 02,
// pad length 02, next header 04) || ICV.
const A_ESP: &str = "01020304 00000005 1011121314151617
                     24039428b97f417e3c13753a4f05087b 67c352e6a7fab1b982d466ef407ae5c6
                     14ee8099d52844eb61aa95dfab4c02f7 2aa71e7c4c4f64c9befe2facc638e8f3
                     cbec163fac469b502773f6fb94e664da 9165b82829f641e076aaa8266b7fb0f7
                     b11b369907e1ad43";

#[test]
fn rfc7634_appendix_a_esp_seal() {
    let inner = h(A_INNER);
    assert_eq!(inner.len(), 84);
    let mut out =
        OutboundSa::new(0x0102_0304, Aead::ChaCha20Poly1305, &h(A_KEYMAT), false).unwrap();
    assert!(out.advance_seq_to(4));
    let mut buf = vec![0u8; HEADROOM + inner.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + inner.len()].copy_from_slice(&inner);
    let iv: [u8; 8] = h(A_IV).try_into().unwrap();
    let n = out
        .seal_with_explicit_iv_for_kat(iv, inner.len(), &mut buf, NH_IPV4)
        .unwrap();
    assert_eq!(hex::encode(&buf[..n]), hex::encode(h(A_ESP)));
    assert_eq!(out.seq(), 5);
}

#[test]
fn rfc7634_appendix_a_esp_open() {
    let mut inb = InboundSa::new(0x0102_0304, Aead::ChaCha20Poly1305, &h(A_KEYMAT), false).unwrap();
    let mut pkt = h(A_ESP);
    let (range, nh) = inb.open(&mut pkt).unwrap();
    assert_eq!(nh, 4);
    assert_eq!(hex::encode(&pkt[range]), hex::encode(h(A_INNER)));
    assert_eq!(inb.window().top(), 5);
    // The same packet again is a replay.
    let mut again = h(A_ESP);
    assert!(matches!(
        inb.open(&mut again),
        Err(Error::Replay { seq: 5 })
    ));
}

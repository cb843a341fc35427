//! RFC 7427 signature AUTH with RSA (RSASSA-PKCS1-v1_5 and RSASSA-PSS) and the
//! signer chooser: round trips, a known answer, refusals, and full IKE handshakes
//! over the in-memory Pair harness with RSA certificates.

mod pair;

use std::sync::Arc;

use dodvpn_ike::auth::{
    cert_spki, make_auth, parse_spki, pkcs8_key_kind, verify_signature, KeyKind, PublicKey,
    RSASSA_PSS_SHA256,
};
use dodvpn_ike::*;
use dodvpn_wire::{algorithm_identifier as alg, Auth, AuthMethod};
use pair::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{name}")).unwrap()
}

fn key_of(cert_der: &[u8]) -> PublicKey {
    parse_spki(cert_spki(cert_der).expect("SPKI")).expect("supported key")
}

fn sign_auth(id: &Identity, octets: &[u8]) -> Auth {
    let local = LocalAuth::Cert {
        cert_der: id.cert_der.clone(),
        signer: signer_from_pkcs8(&id.pkcs8, id.rsa_scheme).unwrap(),
    };
    make_auth(&local, Prf::HmacSha256, octets).unwrap()
}

#[test]
fn sign_verify_round_trip_each_algorithm() {
    let octets = b"RealMessage | Nonce | prf(SK_p, IDx')";
    let ids = [
        (
            "rsa pkcs1 sha256",
            rsa_identity("a", RsaScheme::Pkcs1Sha256),
            alg::SHA256_WITH_RSA,
        ),
        (
            "rsa pss sha256",
            rsa_identity("a", RsaScheme::PssSha256),
            RSASSA_PSS_SHA256,
        ),
        (
            "ecdsa p256",
            make_identity_for("e.example", KeyAlg::P256),
            alg::ECDSA_WITH_SHA256,
        ),
        (
            "ecdsa p384",
            make_identity_for("e.example", KeyAlg::P384),
            alg::ECDSA_WITH_SHA384,
        ),
    ];
    for (what, id, want_alg) in ids {
        let a = sign_auth(&id, octets);
        assert_eq!(a.method, AuthMethod::DigitalSignature, "{what}");
        let (alg_id, sig) = a.split_digital_signature().unwrap();
        assert_eq!(alg_id, want_alg, "{what}");
        if matches!(key_of(&id.cert_der), PublicKey::Rsa(_)) {
            assert_eq!(sig.len(), 256, "{what}: RSA-2048 signature length");
        }
        verify_signature(&key_of(&id.cert_der), &a, octets)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // Other octets, or the other identity's key: refused.
        assert!(verify_signature(&key_of(&id.cert_der), &a, b"other octets").is_err());
        let other = rsa_identity("b", RsaScheme::Pkcs1Sha256);
        assert!(verify_signature(&key_of(&other.cert_der), &a, octets).is_err());
    }
}

/// RSASSA-PKCS1-v1_5 is deterministic: our signer reproduces OpenSSL's signature
/// bit for bit; OpenSSL's PSS and PKCS#1 SHA-512 signatures verify.
#[test]
fn rsa_known_answers_from_openssl() {
    let msg = data("kat-msg.txt");
    let id = rsa_identity("a", RsaScheme::Pkcs1Sha256);
    let signer = RsaSigner::from_pkcs8(&id.pkcs8, RsaScheme::Pkcs1Sha256).unwrap();
    assert_eq!(signer.modulus_bits(), 2048);
    let want = data("kat-rsa-a-pkcs1-sha256.sig");
    assert_eq!(signer.sign(&msg).unwrap(), want);
    let key = key_of(&id.cert_der);
    for (alg_id, file) in [
        (alg::SHA256_WITH_RSA, "kat-rsa-a-pkcs1-sha256.sig"),
        (alg::SHA512_WITH_RSA, "kat-rsa-a-pkcs1-sha512.sig"),
        (RSASSA_PSS_SHA256, "kat-rsa-a-pss-sha256.sig"),
    ] {
        let a = Auth::digital_signature(alg_id, &data(file)).unwrap();
        verify_signature(&key, &a, &msg).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // sha256WithRSAEncryption with absent parameters is accepted too (RFC 4055 §5).
    let no_null = &alg::SHA256_WITH_RSA[..13];
    let mut no_null = no_null.to_vec();
    no_null[1] = 0x0b;
    let a = Auth::digital_signature(&no_null, &want).unwrap();
    verify_signature(&key, &a, &msg).unwrap();
}

/// The PSS AlgorithmIdentifier we send is RFC 7427 Appendix A.4.3's.
#[test]
fn pss_algorithm_identifier_octets() {
    let hex = "3041 0609 2a864886f70d01010a 3034 \
               a00f 300d 0609 608648016503040201 0500 \
               a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040201 0500 \
               a203 020120";
    let want = hex::decode(hex.replace(' ', "")).unwrap();
    assert_eq!(RSASSA_PSS_SHA256, &want[..]);
}

#[test]
fn wrong_algorithm_or_garbage_signature_is_refused() {
    let msg = data("kat-msg.txt");
    let id = rsa_identity("a", RsaScheme::Pkcs1Sha256);
    let key = key_of(&id.cert_der);
    let pkcs1 = data("kat-rsa-a-pkcs1-sha256.sig");
    let pss = data("kat-rsa-a-pss-sha256.sig");
    let refuse = |alg_id: &[u8], sig: &[u8], why: &str| {
        let a = Auth::digital_signature(alg_id, sig).unwrap();
        assert!(verify_signature(&key, &a, &msg).is_err(), "{why}");
    };
    refuse(RSASSA_PSS_SHA256, &pkcs1, "PKCS#1 signature labelled PSS");
    refuse(alg::SHA256_WITH_RSA, &pss, "PSS signature labelled PKCS#1");
    refuse(
        alg::SHA384_WITH_RSA,
        &pkcs1,
        "SHA-256 signature labelled SHA-384",
    );
    refuse(alg::ECDSA_WITH_SHA256, &pkcs1, "ECDSA label on an RSA key");
    refuse(alg::ED25519, &pkcs1, "Ed25519 label on an RSA key");
    refuse(alg::SHA256_WITH_RSA, &[0x5a; 256], "garbage");
    refuse(alg::SHA256_WITH_RSA, &pkcs1[..255], "truncated");
    refuse(alg::SHA256_WITH_RSA, &[], "empty");
    // PSS parameter sets ring cannot verify, or that do not match: refused, not mis-verified.
    let mut salt20 = RSASSA_PSS_SHA256.to_vec();
    *salt20.last_mut().unwrap() = 20;
    refuse(&salt20, &pss, "PSS salt length 20");
    refuse(
        &[
            0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
        ],
        &pss,
        "PSS with absent parameters (SHA-1)",
    );
    let mut mgf_sha384 = RSASSA_PSS_SHA256.to_vec();
    // last octet of the MGF1 hash OID (…04 02 01 → …04 02 02)
    let at = 15 + 17 + 4 + 11 + 12;
    assert_eq!(mgf_sha384[at], 0x01);
    mgf_sha384[at] = 0x02;
    refuse(&mgf_sha384, &pss, "PSS MGF1 hash differs from the hash");
    // RFC 4754 method 9 with an RSA key.
    let a = Auth {
        method: AuthMethod::EcdsaSha256P256,
        data: pkcs1.clone(),
    };
    assert!(verify_signature(&key, &a, &msg).is_err());
    // An RSA signature against an EC key.
    let ec = make_identity_for("e.example", KeyAlg::P256);
    let a = Auth::digital_signature(alg::SHA256_WITH_RSA, &pkcs1).unwrap();
    assert!(verify_signature(&key_of(&ec.cert_der), &a, &msg).is_err());
}

#[test]
fn signer_chooser_detects_key_types() {
    let rsa = rsa_identity("a", RsaScheme::Pkcs1Sha256);
    assert_eq!(pkcs8_key_kind(&rsa.pkcs8), Ok(KeyKind::Rsa));
    let p256 = make_identity_for("e.example", KeyAlg::P256);
    assert_eq!(pkcs8_key_kind(&p256.pkcs8), Ok(KeyKind::EcP256));
    let p384 = make_identity_for("e.example", KeyAlg::P384);
    assert_eq!(pkcs8_key_kind(&p384.pkcs8), Ok(KeyKind::EcP384));
    let ed = make_identity_for("e.example", KeyAlg::Ed25519);
    assert!(signer_from_pkcs8(&ed.pkcs8, RsaScheme::Pkcs1Sha256).is_err());
    assert!(signer_from_pkcs8(b"\x30\x03\x02\x01\x00", RsaScheme::Pkcs1Sha256).is_err());
    assert!(signer_from_pkcs8(&rsa.pkcs8[..100], RsaScheme::Pkcs1Sha256).is_err());
    let s = signer_from_pkcs8(&rsa.pkcs8, RsaScheme::PssSha256).unwrap();
    assert_eq!(s.algorithm_identifier(), RSASSA_PSS_SHA256);
    let s = signer_from_pkcs8(&p384.pkcs8, RsaScheme::PssSha256).unwrap();
    assert_eq!(s.algorithm_identifier(), alg::ECDSA_WITH_SHA384);
}

#[test]
fn cert_spki_reads_certificates_with_long_serials() {
    // The fixtures carry OpenSSL's 20-octet serial numbers.
    let id = rsa_identity("b", RsaScheme::Pkcs1Sha256);
    assert!(matches!(key_of(&id.cert_der), PublicKey::Rsa(_)));
    assert!(cert_spki(&id.cert_der[..200]).is_none());
    assert!(cert_spki(b"\x30\x00").is_none());
}

fn assert_established(p: &Pair, what: &str) {
    for (side, ev) in [("a", &p.a_events), ("b", &p.b_events)] {
        assert!(
            ev.iter().any(|e| matches!(e, Event::IkeSaUp { .. })),
            "{what} {side}: {ev:?}"
        );
        assert_eq!(Pair::child_ups(ev).len(), 1, "{what} {side}: {ev:?}");
    }
}

#[test]
fn rsa_certificate_handshakes() {
    let s = "aes128gcm16-prfsha256-ecp256";
    for (what, sa, sb) in [
        (
            "pkcs1/pkcs1",
            RsaScheme::Pkcs1Sha256,
            RsaScheme::Pkcs1Sha256,
        ),
        ("pss/pss", RsaScheme::PssSha256, RsaScheme::PssSha256),
        ("pkcs1/pss", RsaScheme::Pkcs1Sha256, RsaScheme::PssSha256),
    ] {
        let ia = rsa_identity("a", sa);
        let ib = rsa_identity("b", sb);
        let a = cert_config(s, &ia, "rsa-a.example", &ib, "rsa-b.example", true);
        let b = cert_config(s, &ib, "rsa-b.example", &ia, "rsa-a.example", true);
        let mut p = Pair::new(a, b);
        p.connect();
        assert_established(&p, what);
    }
    // RSA on one side, ECDSA P-384 on the other.
    let ia = rsa_identity("a", RsaScheme::PssSha256);
    let ib = make_identity_for("b.example", KeyAlg::P384);
    let a = cert_config(s, &ia, "rsa-a.example", &ib, "b.example", true);
    let b = cert_config(s, &ib, "b.example", &ia, "rsa-a.example", true);
    let mut p = Pair::new(a, b);
    p.connect();
    assert_established(&p, "rsa/ecdsa-p384");
}

/// Signs with PSS but labels the signature PKCS#1 v1.5.
struct MislabelledSigner(RsaSigner);

impl Signer for MislabelledSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        self.0.sign(msg)
    }
    fn algorithm_identifier(&self) -> &'static [u8] {
        alg::SHA256_WITH_RSA
    }
}

#[test]
fn mislabelled_rsa_signature_fails_auth() {
    let s = "aes128gcm16-prfsha256-ecp256";
    let ia = rsa_identity("a", RsaScheme::PssSha256);
    let ib = rsa_identity("b", RsaScheme::Pkcs1Sha256);
    let mut a = cert_config(s, &ia, "rsa-a.example", &ib, "rsa-b.example", true);
    a.local_auth = LocalAuth::Cert {
        cert_der: ia.cert_der.clone(),
        signer: Arc::new(MislabelledSigner(
            RsaSigner::from_pkcs8(&ia.pkcs8, RsaScheme::PssSha256).unwrap(),
        )),
    };
    let b = cert_config(s, &ib, "rsa-b.example", &ia, "rsa-a.example", true);
    let mut p = Pair::new(a, b);
    p.connect();
    assert!(
        p.b_events.iter().any(
            |e| matches!(e, Event::AuthFailed { reason, .. } if reason.contains("bad signature"))
        ),
        "{:?}",
        p.b_events
    );
    assert!(Pair::child_ups(&p.a_events).is_empty() && Pair::child_ups(&p.b_events).is_empty());
}

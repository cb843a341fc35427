//! Our writer and our reader: recipients of each kind, several at once, and every way a
//! message must be refused.
mod common;

use common::{Party, Pki};
use dodvpn_message::kdf::KdfHash;
use dodvpn_message::{
    decrypt, open, seal, sign, sign_and_seal, verify, Error, Recipient, RecipientKey, SealOptions,
    SignerStatus, VerifyOptions,
};
use rand_core::OsRng;

const NOW: u64 = 1_800_000_000;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn to(p: &Party) -> Recipient {
    Recipient {
        cert: p.cert.clone(),
    }
}

fn never(_: &x509_cert::Certificate) -> bool {
    false
}

fn send(pki: &Pki, from: &Party, to_: &[&Party], body: &[u8]) -> Vec<u8> {
    let _ = pki;
    let r: Vec<Recipient> = to_.iter().map(|p| to(p)).collect();
    sign_and_seal(
        body,
        &from.key,
        now(),
        &r,
        &SealOptions::default(),
        &mut OsRng,
    )
    .unwrap()
}

#[test]
fn each_key_kind_opens_and_the_signature_is_trusted() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "p256");
    for kind in ["p256", "p384", "rsa"] {
        let rcpt = pki.issue(&format!("rcpt-{kind}"), kind);
        let msg = send(&pki, &sender, &[&rcpt], b"referral letter for patient 42");
        let anchors = [pki.ca.clone()];
        let opts = VerifyOptions {
            trust_anchors: &anchors,
            is_revoked: &never,
        };
        let opened = open(&msg, &[&rcpt.key], &opts).unwrap();
        assert_eq!(
            &*opened.content, b"referral letter for patient 42",
            "{kind}"
        );
        let sig = opened.signature.expect("signed");
        assert_eq!(sig.status, SignerStatus::Trusted, "{kind}");
        assert_eq!(sig.signer, sender.cert);
    }
}

#[test]
fn p384_and_rsa_senders_sign_too() {
    let pki = Pki::new();
    let rcpt = pki.issue("rcpt", "p256");
    for kind in ["p384", "rsa"] {
        let sender = pki.issue(&format!("sender-{kind}"), kind);
        let msg = send(&pki, &sender, &[&rcpt], b"hello");
        let anchors = [pki.ca.clone()];
        let opened = open(
            &msg,
            &[&rcpt.key],
            &VerifyOptions {
                trust_anchors: &anchors,
                is_revoked: &never,
            },
        )
        .unwrap();
        assert_eq!(
            opened.signature.unwrap().status,
            SignerStatus::Trusted,
            "{kind}"
        );
    }
}

#[test]
fn several_recipients_each_open_and_a_stranger_cannot() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "p256");
    let a = pki.issue("a", "p256");
    let b = pki.issue("b", "p384");
    let c = pki.issue("c", "rsa");
    let stranger = pki.issue("stranger", "p256");
    let msg = send(&pki, &sender, &[&a, &b, &c], b"to three");
    for p in [&a, &b, &c] {
        let (_, plain) = decrypt(&msg, &[&p.key]).unwrap();
        assert!(!plain.is_empty(), "{}", p.name);
    }
    assert_eq!(
        decrypt(&msg, &[&stranger.key]).unwrap_err(),
        Error::NotARecipient
    );
}

/// A key that claims to be the recipient's (same certificate) but is another key:
/// the key wrap integrity check refuses it.
#[test]
fn the_wrong_private_key_for_the_recipient_certificate_is_refused() {
    struct Impostor<'a>(&'a x509_cert::Certificate, &'a dodvpn_message::SoftKey);
    impl RecipientKey for Impostor<'_> {
        fn certificate(&self) -> &x509_cert::Certificate {
            self.0
        }
        fn ecdh(&self, p: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
            self.1.ecdh(p)
        }
        fn rsa_oaep_decrypt(
            &self,
            h: dodvpn_message::HashAlg,
            m: dodvpn_message::HashAlg,
            c: &[u8],
        ) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
            self.1.rsa_oaep_decrypt(h, m, c)
        }
    }
    let pki = Pki::new();
    let sender = pki.issue("sender", "p256");
    let ec = pki.issue("ec", "p256");
    let ec2 = pki.issue("ec2", "p256");
    let rsa = pki.issue("rsa", "rsa");
    let rsa2 = pki.issue("rsa2", "rsa");
    let msg = send(&pki, &sender, &[&ec, &rsa], b"x");
    assert_eq!(
        decrypt(&msg, &[&Impostor(&ec.cert, &ec2.key)]).unwrap_err(),
        Error::KeyDecrypt
    );
    assert_eq!(
        decrypt(&msg, &[&Impostor(&rsa.cert, &rsa2.key)]).unwrap_err(),
        Error::KeyDecrypt
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn modified_ciphertext_or_tag_is_refused() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "p256");
    let rcpt = pki.issue("rcpt", "p256");
    let msg = seal(
        b"0123456789abcdef0123456789abcdef",
        &[to(&rcpt)],
        &SealOptions::default(),
        &mut OsRng,
    )
    .unwrap();
    let _ = sender;
    // The last 16 bytes are the GCM tag; the 32 before them the ciphertext.
    let n = msg.len();
    for at in [n - 1, n - 16, n - 20, n - 18 - 32] {
        let mut bad = msg.clone();
        bad[at] ^= 0x01;
        assert_eq!(
            decrypt(&bad, &[&rcpt.key]).unwrap_err(),
            Error::ContentModified,
            "byte {at}"
        );
    }
}

#[test]
fn modified_signature_or_signed_content_is_refused() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "p256");
    let signed = sign(b"the signed words", &sender.key, NOW).unwrap();
    let anchors = [pki.ca.clone()];
    let opts = VerifyOptions {
        trust_anchors: &anchors,
        is_revoked: &never,
    };
    assert_eq!(verify(&signed, &opts).unwrap().0, b"the signed words");
    // Content changed.
    let mut bad = signed.clone();
    let at = find(&bad, b"signed words").unwrap();
    bad[at] = b'S';
    assert_eq!(verify(&bad, &opts).unwrap_err(), Error::BadSignature);
    // Signature changed (its last byte, at the end of the SignerInfo).
    let mut bad = signed.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x01;
    assert!(
        matches!(verify(&bad, &opts).unwrap_err(), Error::BadSignature),
        "last byte"
    );
    // And through the envelope.
    let rcpt = pki.issue("rcpt", "p256");
    let msg = seal(&bad, &[to(&rcpt)], &SealOptions::default(), &mut OsRng).unwrap();
    assert_eq!(
        open(&msg, &[&rcpt.key], &opts).unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn a_revoked_or_foreign_sender_is_flagged_not_hidden() {
    let pki = Pki::new();
    let other = Pki::new();
    let sender = pki.issue("sender", "p256");
    let foreign = other.issue("foreign", "p256");
    let rcpt = pki.issue("rcpt", "p256");
    let anchors = [pki.ca.clone()];
    let serial = sender.cert.tbs_certificate.serial_number.clone();
    let revoked = move |c: &x509_cert::Certificate| c.tbs_certificate.serial_number == serial;
    let opts = VerifyOptions {
        trust_anchors: &anchors,
        is_revoked: &revoked,
    };
    let msg = send(&pki, &sender, &[&rcpt], b"sent before revocation");
    let opened = open(&msg, &[&rcpt.key], &opts).unwrap();
    assert_eq!(opened.signature.unwrap().status, SignerStatus::Revoked);
    let msg = send(&pki, &foreign, &[&rcpt], b"from elsewhere");
    assert_eq!(
        open(&msg, &[&rcpt.key], &opts)
            .unwrap()
            .signature
            .unwrap()
            .status,
        SignerStatus::UntrustedIssuer
    );
}

#[test]
fn after_renewal_the_old_key_still_opens_old_messages() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "p256");
    let old = pki.issue("site-2025", "p256");
    let msg_old = send(&pki, &sender, &[&old], b"before renewal");
    let new = pki.issue("site-2026", "p256");
    let msg_new = send(&pki, &sender, &[&new], b"after renewal");
    // The key store holds both keys; each message finds its own.
    let store: [&dyn RecipientKey; 2] = [&new.key, &old.key];
    let anchors = [pki.ca.clone()];
    let opts = VerifyOptions {
        trust_anchors: &anchors,
        is_revoked: &never,
    };
    assert_eq!(
        &*open(&msg_old, &store, &opts).unwrap().content,
        b"before renewal"
    );
    assert_eq!(
        &*open(&msg_new, &store, &opts).unwrap().content,
        b"after renewal"
    );
    // Without the old key the old message is closed.
    assert_eq!(
        decrypt(&msg_old, &[&new.key]).unwrap_err(),
        Error::NotARecipient
    );
}

#[test]
fn sha1_kdf_is_written_on_request_and_read() {
    let pki = Pki::new();
    let rcpt = pki.issue("rcpt", "p384");
    let msg = seal(
        b"old reader",
        &[to(&rcpt)],
        &SealOptions {
            ecdh_kdf: KdfHash::Sha1,
        },
        &mut OsRng,
    )
    .unwrap();
    assert!(
        find(
            &msg,
            &[0x2b, 0x81, 0x05, 0x10, 0x86, 0x48, 0x3f, 0x00, 0x02]
        )
        .is_some(),
        "sha1kdf OID written"
    );
    assert_eq!(&*decrypt(&msg, &[&rcpt.key]).unwrap().1, b"old reader");
}

#[test]
fn truncated_cms_gives_a_clear_error_at_every_length() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "p256");
    let rcpt = pki.issue("rcpt", "rsa");
    let msg = send(&pki, &sender, &[&rcpt], b"cut me");
    for n in 0..msg.len() {
        let e = decrypt(&msg[..n], &[&rcpt.key]).unwrap_err();
        assert!(
            matches!(e, Error::Truncated { .. } | Error::Malformed(_)),
            "{n}: {e}"
        );
        if n > 4 {
            assert!(matches!(e, Error::Truncated { .. }), "{n}: {e}");
        }
        assert!(e.to_string().contains(" / "), "bilingual: {e}");
    }
}

#[test]
fn unknown_oids_are_named_in_the_error() {
    let pki = Pki::new();
    let rcpt = pki.issue("rcpt", "p256");
    let msg = seal(b"x", &[to(&rcpt)], &SealOptions::default(), &mut OsRng).unwrap();
    // Content type authEnvelopedData …1.9.16.1.23 -> …1.9.16.1.99
    let ct = [
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17,
    ];
    let mut bad = msg.clone();
    let at = find(&bad, &ct).unwrap() + ct.len() - 1;
    bad[at] = 0x63;
    let e = decrypt(&bad, &[&rcpt.key]).unwrap_err();
    assert_eq!(
        e,
        Error::UnknownOid {
            what: "content type (expected authEnvelopedData)",
            oid: "1.2.840.113549.1.9.16.1.99".into()
        }
    );
    // aes256-GCM …4.1.46 -> …4.1.47
    let gcm = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2e];
    let mut bad = msg.clone();
    let at = find(&bad, &gcm).unwrap() + gcm.len() - 1;
    bad[at] = 0x2f;
    let e = decrypt(&bad, &[&rcpt.key]).unwrap_err();
    assert!(
        matches!(&e, Error::UnknownOid { what: "content encryption algorithm", oid } if oid == "2.16.840.1.101.3.4.1.47"),
        "{e}"
    );
    // dhSinglePass-stdDH-sha256kdf 1.3.132.1.11.1 -> .9
    let kdf = [0x2b, 0x81, 0x04, 0x01, 0x0b, 0x01];
    let mut bad = msg.clone();
    let at = find(&bad, &kdf).unwrap() + kdf.len() - 1;
    bad[at] = 0x09;
    let e = decrypt(&bad, &[&rcpt.key]).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::UnknownOid {
                what: "key agreement algorithm",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn no_recipients_is_an_error() {
    assert_eq!(
        seal(b"x", &[], &SealOptions::default(), &mut OsRng).unwrap_err(),
        Error::NoRecipients
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_at_load() {
    let pki = Pki::new();
    let a = pki.issue("a", "p256");
    let b = pki.issue("b", "p256");
    let e = dodvpn_message::SoftKey::from_pem(
        &std::fs::read_to_string(&a.key_path).unwrap(),
        &std::fs::read_to_string(&b.cert_path).unwrap(),
    );
    assert!(matches!(e, Err(Error::KeyMismatch)));
}

//! Interop with the real OpenSSL 3 both ways: `openssl cms -decrypt`/`-verify` open what we
//! write; we open what `openssl cms -encrypt -aes-256-gcm` and `openssl cms -sign` write.
mod common;

use common::{ok, run, Party, Pki};
use dodvpn_message::{
    decrypt, open, sign_and_seal, Error, Recipient, SealOptions, SignerStatus, VerifyOptions,
};
use rand_core::OsRng;

fn never(_: &x509_cert::Certificate) -> bool {
    false
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn p(x: &std::path::Path) -> &str {
    x.to_str().unwrap()
}

const BODY: &[u8] = b"\xe7\xb4\xb9\xe4\xbb\x8b\xe7\x8a\xb6 referral: patient 42, HbA1c 7.9%\n";

/// openssl cms -decrypt opens ours, then openssl cms -verify checks our signature.
fn openssl_opens_ours(pki: &Pki, sender: &Party, rcpt: &Party, opts: SealOptions) {
    let msg = sign_and_seal(
        BODY,
        &sender.key,
        now(),
        &[Recipient {
            cert: rcpt.cert.clone(),
        }],
        &opts,
        &mut OsRng,
    )
    .unwrap();
    let f = pki.path(&format!("to-{}.der", rcpt.name));
    std::fs::write(&f, &msg).unwrap();
    let signed = ok(
        pki.dir.path(),
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&f),
            "-recip",
            p(&rcpt.cert_path),
            "-inkey",
            p(&rcpt.key_path),
        ],
    );
    let sf = pki.path(&format!("signed-{}.der", rcpt.name));
    std::fs::write(&sf, &signed).unwrap();
    let out = ok(
        pki.dir.path(),
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&sf),
            "-CAfile",
            p(&pki.path("ca.crt")),
        ],
    );
    assert_eq!(out, BODY, "{}", rcpt.name);
    // And a tampered signed blob fails openssl's verify too.
    let mut bad = signed.clone();
    let at = bad.windows(8).position(|w| w == b"referral").unwrap();
    bad[at] = b'R';
    std::fs::write(&sf, &bad).unwrap();
    let r = run(
        pki.dir.path(),
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&sf),
            "-CAfile",
            p(&pki.path("ca.crt")),
        ],
    );
    assert!(!r.status.success(), "openssl verified a modified message");
}

#[test]
fn openssl_decrypts_and_verifies_ours_ecdh_p256_p384() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "p256");
    for kind in ["p256", "p384"] {
        let rcpt = pki.issue(&format!("r-{kind}"), kind);
        openssl_opens_ours(&pki, &sender, &rcpt, SealOptions::default());
        openssl_opens_ours(
            &pki,
            &sender,
            &rcpt,
            SealOptions {
                ecdh_kdf: dodvpn_message::kdf::KdfHash::Sha1,
            },
        );
    }
}

#[test]
fn openssl_decrypts_and_verifies_ours_rsa_oaep() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "rsa");
    let rcpt = pki.issue("r-rsa", "rsa");
    openssl_opens_ours(&pki, &sender, &rcpt, SealOptions::default());
}

#[test]
fn openssl_opens_a_message_to_several_recipients() {
    let pki = Pki::new();
    let sender = pki.issue("sender", "p384");
    let a = pki.issue("a", "p256");
    let b = pki.issue("b", "rsa");
    let msg = sign_and_seal(
        BODY,
        &sender.key,
        now(),
        &[
            Recipient {
                cert: a.cert.clone(),
            },
            Recipient {
                cert: b.cert.clone(),
            },
        ],
        &SealOptions::default(),
        &mut OsRng,
    )
    .unwrap();
    let f = pki.path("multi.der");
    std::fs::write(&f, &msg).unwrap();
    for r in [&a, &b] {
        ok(
            pki.dir.path(),
            &[
                "cms",
                "-decrypt",
                "-binary",
                "-inform",
                "DER",
                "-in",
                p(&f),
                "-recip",
                p(&r.cert_path),
                "-inkey",
                p(&r.key_path),
            ],
        );
    }
}

/// What openssl writes: -encrypt -aes-256-gcm to `rcpt` with `keyopts`, of a message signed by `sender`.
fn openssl_writes(pki: &Pki, sender: &Party, rcpt: &Party, keyopts: &[&str], tag: &str) -> Vec<u8> {
    let body = pki.path("body.txt");
    std::fs::write(&body, BODY).unwrap();
    let signed = pki.path(&format!("os-signed-{tag}.der"));
    ok(
        pki.dir.path(),
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-md",
            "sha256",
            "-in",
            p(&body),
            "-signer",
            p(&sender.cert_path),
            "-inkey",
            p(&sender.key_path),
            "-outform",
            "DER",
            "-out",
            p(&signed),
        ],
    );
    let out = pki.path(&format!("os-enc-{tag}.der"));
    let mut args = vec![
        "cms",
        "-encrypt",
        "-binary",
        "-aes-256-gcm",
        "-in",
        p(&signed),
        "-outform",
        "DER",
        "-out",
        p(&out),
        "-recip",
        p(&rcpt.cert_path),
    ];
    args.extend_from_slice(keyopts);
    ok(pki.dir.path(), &args);
    std::fs::read(out).unwrap()
}

fn we_open(pki: &Pki, msg: &[u8], rcpt: &Party, sender: &Party) {
    let anchors = [pki.ca.clone()];
    let opened = open(
        msg,
        &[&rcpt.key],
        &VerifyOptions {
            trust_anchors: &anchors,
            is_revoked: &never,
        },
    )
    .unwrap();
    assert_eq!(&*opened.content, BODY);
    let sig = opened.signature.expect("openssl's signature");
    assert_eq!(sig.status, SignerStatus::Trusted);
    assert_eq!(sig.signer, sender.cert);
}

#[test]
fn we_open_openssl_ecdh_default_sha1_kdf_and_sha256_kdf() {
    let pki = Pki::new();
    for (sk, rk) in [("p256", "p256"), ("p384", "p384"), ("rsa", "p256")] {
        let sender = pki.issue(&format!("os-sender-{sk}-{rk}"), sk);
        let rcpt = pki.issue(&format!("os-rcpt-{sk}-{rk}"), rk);
        // openssl's default for ECDH is dhSinglePass-stdDH-sha1kdf-scheme.
        let msg = openssl_writes(&pki, &sender, &rcpt, &[], &format!("d{sk}{rk}"));
        assert!(
            msg.windows(9)
                .any(|w| w == [0x2b, 0x81, 0x05, 0x10, 0x86, 0x48, 0x3f, 0x00, 0x02]),
            "sha1kdf"
        );
        we_open(&pki, &msg, &rcpt, &sender);
        let msg = openssl_writes(
            &pki,
            &sender,
            &rcpt,
            &["-keyopt", "ecdh_kdf_md:sha256"],
            &format!("s{sk}{rk}"),
        );
        assert!(
            msg.windows(6)
                .any(|w| w == [0x2b, 0x81, 0x04, 0x01, 0x0b, 0x01]),
            "sha256kdf"
        );
        we_open(&pki, &msg, &rcpt, &sender);
    }
}

#[test]
fn we_open_openssl_rsa_oaep_sha1_and_sha256() {
    let pki = Pki::new();
    let sender = pki.issue("os-sender", "p256");
    let rcpt = pki.issue("os-rcpt", "rsa");
    let msg = openssl_writes(
        &pki,
        &sender,
        &rcpt,
        &["-keyopt", "rsa_padding_mode:oaep"],
        "oaep1",
    );
    we_open(&pki, &msg, &rcpt, &sender);
    let msg = openssl_writes(
        &pki,
        &sender,
        &rcpt,
        &[
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            "rsa_oaep_md:sha256",
        ],
        "oaep256",
    );
    we_open(&pki, &msg, &rcpt, &sender);
}

#[test]
fn we_refuse_openssl_rsa_pkcs1_v15_key_transport_by_name() {
    let pki = Pki::new();
    let sender = pki.issue("os-sender", "p256");
    let rcpt = pki.issue("os-rcpt", "rsa");
    let msg = openssl_writes(&pki, &sender, &rcpt, &[], "v15");
    let e = decrypt(&msg, &[&rcpt.key]).unwrap_err();
    assert!(
        matches!(&e, Error::Unsupported(s) if s.contains("PKCS#1 v1.5")),
        "{e}"
    );
}

#[test]
fn wrong_recipient_and_modified_openssl_messages_are_refused() {
    let pki = Pki::new();
    let sender = pki.issue("os-sender", "p256");
    let rcpt = pki.issue("os-rcpt", "p256");
    let other = pki.issue("other", "p256");
    let msg = openssl_writes(&pki, &sender, &rcpt, &[], "w");
    assert_eq!(
        decrypt(&msg, &[&other.key]).unwrap_err(),
        Error::NotARecipient
    );
    let mut bad = msg.clone();
    let n = bad.len();
    bad[n - 30] ^= 4; // inside the encrypted content
    assert_eq!(
        decrypt(&bad, &[&rcpt.key]).unwrap_err(),
        Error::ContentModified
    );
    // And openssl refuses ours when modified.
    let ours = sign_and_seal(
        BODY,
        &sender.key,
        now(),
        &[Recipient {
            cert: rcpt.cert.clone(),
        }],
        &SealOptions::default(),
        &mut OsRng,
    )
    .unwrap();
    let mut bad = ours.clone();
    let n = bad.len();
    bad[n - 30] ^= 4;
    let f = pki.path("bad.der");
    std::fs::write(&f, &bad).unwrap();
    let r = run(
        pki.dir.path(),
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&f),
            "-recip",
            p(&rcpt.cert_path),
            "-inkey",
            p(&rcpt.key_path),
        ],
    );
    assert!(!r.status.success(), "openssl opened a modified message");
}

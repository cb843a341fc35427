//! Large messages in pieces (R-SVC-4, issue 13): the streaming AES-GCM against `aes-gcm`,
//! the streaming writer and reader against the in-memory ones and against OpenSSL, and
//! the bad input a stream can bring (truncation, modification, a file that changes).
mod common;

use std::io::Read;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use common::{ok, Party, Pki};
use dodvpn_message::gcm::GcmStream;
use dodvpn_message::stream::CHUNK;
use dodvpn_message::{
    digest_reader, open, open_stream, seal_stream, sign_and_seal, Error, MessageSigner, Recipient,
    RecipientKey, SealOptions, SignerStatus, VerifyOptions,
};
use proptest::prelude::*;
use rand_core::{OsRng, RngCore};

fn never(_: &x509_cert::Certificate) -> bool {
    false
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Deterministic bytes, any length, without holding them.
struct Pattern {
    left: u64,
    x: u64,
}
impl Pattern {
    fn new(len: u64) -> Self {
        Pattern {
            left: len,
            x: 0x9e37_79b9_7f4a_7c15 ^ len,
        }
    }
}
impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            *b = self.x as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}
fn pattern(len: u64) -> Vec<u8> {
    let mut v = Vec::new();
    Pattern::new(len).read_to_end(&mut v).unwrap();
    v
}

fn seal(content: &[u8], sender: &Party, rcpts: &[&Party]) -> Vec<u8> {
    let (digest, n) = digest_reader(sender.key.digest_alg(), content).unwrap();
    let recipients: Vec<Recipient> = rcpts
        .iter()
        .map(|r| Recipient {
            cert: r.cert.clone(),
        })
        .collect();
    let mut s = seal_stream(
        &digest,
        n,
        content,
        &sender.key,
        now(),
        &recipients,
        &SealOptions::default(),
        &mut OsRng,
    )
    .unwrap();
    let total = s.total_len();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, total, "total_len is exact");
    out
}

fn open_s(
    msg: &[u8],
    pki: &Pki,
    rcpt: &Party,
) -> (Result<dodvpn_message::StreamOpened, Error>, Vec<u8>) {
    let anchors = [pki.ca.clone()];
    let opts = VerifyOptions {
        trust_anchors: &anchors,
        is_revoked: &never,
    };
    let keys: [&dyn RecipientKey; 1] = [&rcpt.key];
    let mut out = Vec::new();
    let r = open_stream(msg, &keys, &opts, &mut out);
    (r, out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// In pieces of any sizes, the same ciphertext and tag as `aes-gcm` in one go.
    #[test]
    fn gcm_in_pieces_equals_aes_gcm(len in 0usize..5000, cuts in proptest::collection::vec(1usize..700, 1..12)) {
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut key);
        OsRng.fill_bytes(&mut nonce);
        let plain = pattern(len as u64);
        let mut whole = plain.clone();
        let tag = Aes256Gcm::new((&key).into()).encrypt_in_place_detached((&nonce).into(), &[], &mut whole).unwrap();
        let mut g = GcmStream::new(&key, &nonce).unwrap();
        let mut pieces = plain.clone();
        let (mut at, mut i) = (0, 0);
        while at < len {
            let n = cuts[i % cuts.len()].min(len - at);
            g.encrypt(&mut pieces[at..at + n]).unwrap();
            at += n;
            i += 1;
        }
        prop_assert_eq!(&pieces, &whole);
        prop_assert_eq!(g.tag().to_vec(), tag.to_vec());
        let mut g = GcmStream::new(&key, &nonce).unwrap();
        for c in pieces.chunks_mut(cuts[0]) {
            g.decrypt(c).unwrap();
        }
        prop_assert_eq!(&pieces, &plain);
        prop_assert!(g.verify(&tag).is_ok());
    }
}

#[test]
fn streamed_and_in_memory_open_each_other() {
    let pki = Pki::new();
    let sender = pki.issue("st-sender", "p256");
    let r256 = pki.issue("st-p256", "p256");
    let r384 = pki.issue("st-p384", "p384");
    let rsa = pki.issue("st-rsa", "rsa");
    let anchors = [pki.ca.clone()];
    let opts = VerifyOptions {
        trust_anchors: &anchors,
        is_revoked: &never,
    };
    let c = CHUNK as u64;
    for len in [
        0,
        1,
        15,
        16,
        17,
        127,
        128,
        255,
        256,
        c - 1,
        c,
        c + 1,
        3 * c + 5,
        1 << 20,
    ] {
        let content = pattern(len);
        let msg = seal(&content, &sender, &[&r256, &r384, &rsa]);
        for rcpt in [&r256, &r384, &rsa] {
            // The in-memory reader opens the streamed message…
            let keys: [&dyn RecipientKey; 1] = [&rcpt.key];
            let o = open(&msg, &keys, &opts).unwrap_or_else(|e| panic!("len {len}: {e}"));
            assert_eq!(&o.content[..], &content[..], "len {len}");
            assert_eq!(o.signature.unwrap().status, SignerStatus::Trusted);
            // …and the streaming reader too.
            let (r, out) = open_s(&msg, &pki, rcpt);
            let r = r.unwrap_or_else(|e| panic!("len {len}: {e}"));
            assert_eq!(out, content, "len {len}");
            assert_eq!(r.content_len, len);
            assert_eq!(r.signature.unwrap().status, SignerStatus::Trusted);
        }
        // The streaming reader opens what the in-memory writer writes.
        let mem = sign_and_seal(
            &content,
            &sender.key,
            now(),
            &[Recipient {
                cert: r384.cert.clone(),
            }],
            &SealOptions::default(),
            &mut OsRng,
        )
        .unwrap();
        let (r, out) = open_s(&mem, &pki, &r384);
        assert_eq!(r.unwrap().signature.unwrap().status, SignerStatus::Trusted);
        assert_eq!(out, content);
        // Unsigned data (dodvpn_message::seal) streams out as is.
        let plain = dodvpn_message::seal(
            &content,
            &[Recipient {
                cert: r256.cert.clone(),
            }],
            &SealOptions::default(),
            &mut OsRng,
        )
        .unwrap();
        let (r, out) = open_s(&plain, &pki, &r256);
        let r = r.unwrap();
        assert!(r.signature.is_none());
        assert_eq!(out, content);
    }
}

#[test]
fn streamed_bad_input_is_refused_never_accepted() {
    let pki = Pki::new();
    let sender = pki.issue("sb-sender", "p256");
    let rcpt = pki.issue("sb-rcpt", "p256");
    let stranger = pki.issue("sb-stranger", "p256");
    let content = pattern(3 * CHUNK as u64 + 999);
    let msg = seal(&content, &sender, &[&rcpt]);
    // Truncated anywhere: an error, never Ok.
    let step = (msg.len() / 300).max(1);
    for at in (0..msg.len())
        .step_by(step)
        .chain([msg.len() - 1, msg.len() - 17])
    {
        let (r, _) = open_s(&msg[..at], &pki, &rcpt);
        assert!(r.is_err(), "truncated at {at} accepted");
    }
    // One flipped bit in the ciphertext, the tag, or the end: refused as modified.
    for at in [msg.len() / 2, msg.len() - 20, msg.len() - 1] {
        let mut m = msg.clone();
        m[at] ^= 0x01;
        let (r, _) = open_s(&m, &pki, &rcpt);
        assert!(
            matches!(r, Err(Error::ContentModified) | Err(Error::Malformed(_))),
            "at {at}: {r:?}"
        );
    }
    // Data after the message.
    let mut m = msg.clone();
    m.push(0);
    let (r, _) = open_s(&m, &pki, &rcpt);
    assert!(matches!(r, Err(Error::Malformed(_))), "{r:?}");
    // Not a recipient.
    let (r, _) = open_s(&msg, &pki, &stranger);
    assert_eq!(r.unwrap_err(), Error::NotARecipient);
    // BER indefinite length (openssl cms -stream): refused by name.
    let mut m = msg.clone();
    m[1] = 0x80;
    let (r, _) = open_s(&m, &pki, &rcpt);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("indefinite"), "{e}");
    // Arbitrary bytes never panic.
    for len in [0, 1, 2, 10, 100, 1000] {
        let mut junk = vec![0u8; len];
        OsRng.fill_bytes(&mut junk);
        let _ = open_s(&junk, &pki, &rcpt).0;
    }
}

#[test]
fn a_file_that_changes_between_the_passes_fails_before_the_tag() {
    let pki = Pki::new();
    let sender = pki.issue("ch-sender", "p256");
    let rcpt = pki.issue("ch-rcpt", "p256");
    let content = pattern(200_000);
    let (digest, n) = digest_reader(sender.key.digest_alg(), &content[..]).unwrap();
    let rec = [Recipient {
        cert: rcpt.cert.clone(),
    }];
    for changed in [
        {
            let mut c = content.clone();
            c[100_000] ^= 1;
            c
        },
        content[..150_000].to_vec(),
        [content.clone(), vec![1]].concat(),
    ] {
        let mut s = seal_stream(
            &digest,
            n,
            &changed[..],
            &sender.key,
            0,
            &rec,
            &SealOptions::default(),
            &mut OsRng,
        )
        .unwrap();
        let mut out = Vec::new();
        let e = s.read_to_end(&mut out).unwrap_err().to_string();
        assert!(e.contains("while it was being sent"), "{e}");
        assert!((out.len() as u64) < s.total_len());
    }
}

fn p(x: &std::path::Path) -> &str {
    x.to_str().unwrap()
}

/// OpenSSL opens a large streamed message and we stream-open OpenSSL's. The size is
/// DODVPN_STREAM_INTEROP_MIB (default 64 MiB, to keep CI time down).
#[test]
fn openssl_opens_a_large_streamed_message_and_we_open_its() {
    let mib: u64 = std::env::var("DODVPN_STREAM_INTEROP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let pki = Pki::new();
    let sender = pki.issue("big-sender", "p256");
    let rcpt = pki.issue("big-rcpt", "p256");
    let len = mib << 20;
    let body = pki.path("big.bin");
    std::io::copy(
        &mut Pattern::new(len),
        &mut std::fs::File::create(&body).unwrap(),
    )
    .unwrap();
    let (digest, n) =
        digest_reader(sender.key.digest_alg(), std::fs::File::open(&body).unwrap()).unwrap();
    let mut s = seal_stream(
        &digest,
        n,
        std::fs::File::open(&body).unwrap(),
        &sender.key,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        &[Recipient {
            cert: rcpt.cert.clone(),
        }],
        &SealOptions::default(),
        &mut OsRng,
    )
    .unwrap();
    let msg = pki.path("big.cms");
    let written = std::io::copy(&mut s, &mut std::fs::File::create(&msg).unwrap()).unwrap();
    assert_eq!(written, s.total_len());
    let signed = pki.path("big-signed.der");
    let out = pki.path("big-out.bin");
    let d = pki.dir.path();
    ok(
        d,
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&msg),
            "-recip",
            p(&rcpt.cert_path),
            "-inkey",
            p(&rcpt.key_path),
            "-out",
            p(&signed),
        ],
    );
    ok(
        d,
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            p(&signed),
            "-CAfile",
            p(&pki.path("ca.crt")),
            "-out",
            p(&out),
        ],
    );
    assert!(files_equal(&out, &body), "openssl's output differs");
    std::fs::remove_file(&signed).unwrap();
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&msg).unwrap();

    // The other way: openssl cms -sign | -encrypt (without -stream), opened in pieces.
    ok(
        d,
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
    ok(
        d,
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-aes-256-gcm",
            "-in",
            p(&signed),
            "-outform",
            "DER",
            "-out",
            p(&msg),
            "-recip",
            p(&rcpt.cert_path),
            "-keyopt",
            "ecdh_kdf_md:sha256",
        ],
    );
    let anchors = [pki.ca.clone()];
    let opts = VerifyOptions {
        trust_anchors: &anchors,
        is_revoked: &never,
    };
    let keys: [&dyn RecipientKey; 1] = [&rcpt.key];
    let mut f = std::fs::File::create(&out).unwrap();
    let r = open_stream(
        std::io::BufReader::new(std::fs::File::open(&msg).unwrap()),
        &keys,
        &opts,
        &mut f,
    )
    .unwrap();
    drop(f);
    assert_eq!(r.signature.unwrap().status, SignerStatus::Trusted);
    assert_eq!(r.content_len, len);
    assert!(files_equal(&out, &body), "our output differs");
}

fn files_equal(a: &std::path::Path, b: &std::path::Path) -> bool {
    let (mut fa, mut fb) = (
        std::io::BufReader::new(std::fs::File::open(a).unwrap()),
        std::io::BufReader::new(std::fs::File::open(b).unwrap()),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            let k = fb.read(&mut bb[nb..na]).unwrap();
            if k == 0 {
                return false;
            }
            nb += k;
        }
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
    }
}

//! Signed checkpoints of the audit tree (R-AUD-4), in a text format modelled on
//! C2SP signed-note / tlog-checkpoint:
//!
//! ```text
//! dodvpn-audit/<log name>          origin: which log
//! <tree size>                      decimal, no leading zeros
//! <root hash>                      base64 (standard, padded) of 32 bytes
//! time <unix ms>                   when the centre signed it
//!
//! — <signer name> <base64(key id (4 bytes) || ECDSA P-256 SHA-256 DER signature)>
//! ```
//!
//! Decided here:
//! - The signature covers the body: every line up to and including the line
//!   before the blank line, each ending in `\n`. More signature lines may follow
//!   (devices' cosignatures, issue 15 step 4), each over the same body.
//! - Signatures are ECDSA P-256 (the centre's PKI has only P-256 keys), not the
//!   Ed25519 of C2SP notes; the key id is the first 4 bytes of
//!   SHA-256(name || 0x0A || 0x02 || uncompressed public point) and only picks
//!   the key, it proves nothing: the signature does.
//! - The parser is strict (exact line layout, bounded sizes) and never panics;
//!   it is fuzzed (`crates/audit/fuzz`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Prefix of every origin line.
pub const ORIGIN_PREFIX: &str = "dodvpn-audit/";
/// Largest note we read (a checkpoint with many cosignatures).
pub const MAX_NOTE_BYTES: usize = 1 << 20;
/// Most signature lines a note may carry.
pub const MAX_SIGNATURES: usize = 10_000;
const MAX_NAME: usize = 256;
const SIG_DASH: &str = "\u{2014} ";

/// What a checkpoint says: the tree of `size` records has root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// `dodvpn-audit/<log name>`.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Unix time in milliseconds when it was signed.
    pub time_ms: i64,
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSig {
    pub name: String,
    pub key_id: [u8; 4],
    pub sig: Vec<u8>,
}

/// A parsed note: the head, its exact signed text, and the signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    pub head: TreeHead,
    pub body: String,
    pub sigs: Vec<NoteSig>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the checkpoint is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the checkpoint has no valid signature by {name}: it was altered or signed by another key"
    )]
    BadSignature { name: String },
}

impl TreeHead {
    /// The text that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.time_ms
        )
    }
}

/// The key id of a signer (see the module docs).
pub fn key_id(name: &str, public_point: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, 0x02]);
    h.update(public_point);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

impl SignedNote {
    /// A note with one signature line made by `sign` (the centre's log key).
    pub fn sign(
        head: TreeHead,
        name: &str,
        public_point: &[u8],
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<SignedNote, String> {
        if !valid_name(name) {
            return Err("the signer name must be 1–256 printable characters without spaces".into());
        }
        let body = head.body();
        let sig = sign(body.as_bytes())?;
        Ok(SignedNote {
            head,
            body,
            sigs: vec![NoteSig {
                name: name.to_string(),
                key_id: key_id(name, public_point),
                sig,
            }],
        })
    }

    /// Add a signature line (a cosignature) made over the same body.
    pub fn add_signature(&mut self, sig: NoteSig) {
        self.sigs.push(sig);
    }

    pub fn to_text(&self) -> String {
        let mut out = self.body.clone();
        out.push('\n');
        for s in &self.sigs {
            let mut blob = s.key_id.to_vec();
            blob.extend_from_slice(&s.sig);
            out.push_str(SIG_DASH);
            out.push_str(&s.name);
            out.push(' ');
            out.push_str(&B64.encode(blob));
            out.push('\n');
        }
        out
    }

    /// Read a note. Checks the layout only: call [`SignedNote::verify`].
    pub fn parse(text: &str) -> Result<SignedNote, NoteError> {
        use NoteError::Malformed as M;
        if text.len() > MAX_NOTE_BYTES {
            return Err(M("it is larger than 1 MiB"));
        }
        let Some(split) = text.find("\n\n") else {
            return Err(M(
                "there is no blank line between the text and the signatures",
            ));
        };
        let body = &text[..split + 1];
        let sig_text = &text[split + 2..];
        let lines: Vec<&str> = body.split_terminator('\n').collect();
        let [origin, size, root, time] = lines[..] else {
            return Err(M(
                "the text must have exactly four lines: origin, size, root, time",
            ));
        };
        let log_name = origin
            .strip_prefix(ORIGIN_PREFIX)
            .ok_or(M("the origin does not start with dodvpn-audit/"))?;
        if !valid_name(log_name) {
            return Err(M("the log name is empty, too long or has spaces"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(M("the tree size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| M("the tree size is too large"))?;
        if root.len() != 44 {
            return Err(M("the root hash is not 32 bytes of base64"));
        }
        let root_bytes = B64
            .decode(root)
            .map_err(|_| M("the root hash is not base64"))?;
        let root: Hash = root_bytes
            .try_into()
            .map_err(|_| M("the root hash is not 32 bytes"))?;
        let time = time
            .strip_prefix("time ")
            .ok_or(M("the fourth line is not 'time <unix ms>'"))?;
        if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) || time.len() > 18 {
            return Err(M("the time is not a number of milliseconds"));
        }
        let time_ms: i64 = time.parse().map_err(|_| M("the time is out of range"))?;
        let head = TreeHead {
            origin: origin.to_string(),
            size,
            root,
            time_ms,
        };
        if head.body() != body {
            return Err(M("the text is not in canonical form"));
        }
        let mut sigs = Vec::new();
        if !sig_text.ends_with('\n') {
            return Err(M("the last signature line does not end in a newline"));
        }
        for line in sig_text.split_terminator('\n') {
            if sigs.len() >= MAX_SIGNATURES {
                return Err(M("it has more than 10000 signatures"));
            }
            let rest = line
                .strip_prefix(SIG_DASH)
                .ok_or(M("a signature line does not start with '— '"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(M("a signature line has no signature"))?;
            if !valid_name(name) {
                return Err(M("a signer name is empty, too long or has spaces"));
            }
            let blob = B64
                .decode(b64)
                .map_err(|_| M("a signature is not base64"))?;
            if blob.len() < 5 || blob.len() > 4 + 128 {
                return Err(M("a signature has the wrong length"));
            }
            sigs.push(NoteSig {
                name: name.to_string(),
                key_id: [blob[0], blob[1], blob[2], blob[3]],
                sig: blob[4..].to_vec(),
            });
        }
        if sigs.is_empty() {
            return Err(M("it has no signature"));
        }
        Ok(SignedNote {
            head,
            body: body.to_string(),
            sigs,
        })
    }

    /// The signature line by `name` whose key id matches `public_point` must be
    /// a valid ECDSA P-256 signature of the body.
    pub fn verify(&self, name: &str, public_point: &[u8]) -> Result<(), NoteError> {
        let id = key_id(name, public_point);
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            public_point,
        );
        let ok = self
            .sigs
            .iter()
            .filter(|s| s.name == name && s.key_id == id)
            .any(|s| key.verify(self.body.as_bytes(), &s.sig).is_ok());
        if ok {
            Ok(())
        } else {
            Err(NoteError::BadSignature {
                name: name.to_string(),
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    pub fn test_key() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    pub fn signed(key: &EcdsaKeyPair, size: u64, root: Hash) -> SignedNote {
        let head = TreeHead {
            origin: "dodvpn-audit/test".into(),
            size,
            root,
            time_ms: 1_700_000_000_000,
        };
        SignedNote::sign(head, "centre", key.public_key().as_ref(), |b| {
            key.sign(&SystemRandom::new(), b)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "sign".into())
        })
        .unwrap()
    }

    #[test]
    fn round_trip_and_verify() {
        let key = test_key();
        let n = signed(&key, 42, [7u8; 32]);
        let text = n.to_text();
        assert!(text.starts_with("dodvpn-audit/test\n42\nBwcH"));
        assert!(text.contains("\ntime 1700000000000\n\n\u{2014} centre "));
        let back = SignedNote::parse(&text).unwrap();
        assert_eq!(back, n);
        back.verify("centre", key.public_key().as_ref()).unwrap();
    }

    #[test]
    fn a_note_signed_over_another_root_fails() {
        let key = test_key();
        let n = signed(&key, 42, [7u8; 32]);
        let other = signed(&key, 42, [8u8; 32]);
        // The signature line of one note under the text of the other.
        let mut forged = other.clone();
        forged.sigs = n.sigs.clone();
        let forged = SignedNote::parse(&forged.to_text()).unwrap();
        assert_eq!(
            forged.verify("centre", key.public_key().as_ref()),
            Err(NoteError::BadSignature {
                name: "centre".into()
            })
        );
        // Another key.
        let k2 = test_key();
        assert!(n.verify("centre", k2.public_key().as_ref()).is_err());
        // Another name.
        assert!(n.verify("other", key.public_key().as_ref()).is_err());
    }

    #[test]
    fn bad_layouts_are_named() {
        let key = test_key();
        let good = signed(&key, 3, [1u8; 32]).to_text();
        for (bad, why) in [
            (good.replace("\n\n", "\n"), "blank line"),
            (good.replace("dodvpn-audit/", "other/"), "origin"),
            (good.replace("\n3\n", "\n03\n"), "size"),
            (good.replace("\n3\n", "\n-3\n"), "size"),
            (good.replace("time ", "tim "), "time"),
            (good.replace("\u{2014} ", "- "), "signature line"),
            (good.trim_end().to_string(), "newline"),
            (
                format!("{}\n", good.split("\n\n").next().unwrap()) + "\n",
                "no signature",
            ),
        ] {
            let e = SignedNote::parse(&bad).unwrap_err();
            assert!(matches!(e, NoteError::Malformed(_)), "{why}: {e:?}");
        }
    }

    proptest! {
        /// The parser never panics, and what it accepts prints back the same.
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            if let Ok(n) = SignedNote::parse(&s) {
                prop_assert_eq!(n.to_text(), s);
            }
        }

        #[test]
        fn parse_mutated_never_panics(pos in 0usize..400, b in any::<u8>()) {
            let key = test_key();
            let mut bytes = signed(&key, 99, [3u8; 32]).to_text().into_bytes();
            let p = pos % bytes.len();
            bytes[p] = b;
            if let Ok(s) = std::str::from_utf8(&bytes) {
                if let Ok(n) = SignedNote::parse(s) {
                    prop_assert_eq!(n.to_text(), s);
                }
            }
        }
    }
}

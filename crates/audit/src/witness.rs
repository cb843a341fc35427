//! Devices as witnesses of the audit log (R-AUD-4, issue 15 step 3). No I/O.
//!
//! Each agent keeps the newest checkpoint it accepted. When the centre shows a
//! newer one, the agent asks for a consistency proof from the size it kept,
//! [`judge`]s it, and on success keeps the new checkpoint and returns a
//! [`Cosignature`] made with its service key. A centre that cut records off or
//! rebuilt a different history cannot produce such a proof for a checkpoint a
//! device already holds, so the device sees it, even when the centre has
//! deleted every checkpoint of its own that would show it.
//!
//! Decided here:
//! - The cosigned message is [`COSIGN_PREFIX`], then `time <unix ms>\n`, then
//!   the checkpoint's signed body (the four lines the centre signed). The fixed
//!   prefix keeps a cosignature from being read as any other signature the
//!   service key makes (TLS, IKE, the mailbox); the time says when the device
//!   vouched for it (C2SP tlog-cosignature does the same).
//! - The signature is ECDSA P-256 / SHA-256 (DER), the service key's only kind.
//! - On the wire a cosignature is one signed-note line:
//!   `— <device id> base64(key id (4) || time ms (8, big-endian) || DER signature)`,
//!   the key id as in [`crate::note::key_id`] over the device's public point.
//!   [`Cosignature::parse_line`] is strict, bounded and fuzzed.
//! - [`judge`] accepts a checkpoint only if the centre's log key signed it, it
//!   is of the same log, it is not smaller than the kept one, a same-size one
//!   has the same root, and the consistency proof (verified by ct-merkle, see
//!   [`crate::merkle`]) leads from the kept root to the new root. Anything else
//!   is a named [`WitnessError`]; the caller keeps its old checkpoint.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::merkle::{self, Hash};
use crate::note::{key_id, NoteError, SignedNote};

/// Domain separation of the cosigned message.
pub const COSIGN_PREFIX: &str = "dodvpn-audit-cosignature/v1\n";
/// Longest cosignature line we read.
pub const MAX_LINE: usize = 512;
const SIG_DASH: &str = "\u{2014} ";

/// The exact bytes a witness signs for a checkpoint body at `time_ms`.
pub fn cosigned_message(time_ms: i64, body: &str) -> Vec<u8> {
    format!("{COSIGN_PREFIX}time {time_ms}\n{body}").into_bytes()
}

/// The uncompressed P-256 point inside a SubjectPublicKeyInfo (DER), if it is one.
pub fn p256_point(spki_der: &[u8]) -> Option<&[u8]> {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused) 04 || X || Y }
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let point = spki_der.strip_prefix(&PREFIX)?;
    (point.len() == 65 && point[0] == 0x04).then_some(point)
}

/// One witness's signature over one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The device id (the signature line's name).
    pub witness: String,
    pub key_id: [u8; 4],
    /// When the witness signed (Unix ms).
    pub time_ms: i64,
    /// ECDSA P-256 SHA-256 signature, DER.
    pub sig: Vec<u8>,
}

/// Why a checkpoint was refused, or a cosignature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("the checkpoint is unreadable: {0}")]
    Malformed(#[from] NoteError),
    #[error("the checkpoint of size {size} is not signed by the log key this device pinned")]
    BadSignature { size: u64 },
    #[error("the checkpoint is of another log ({new}) than the one this device kept ({kept})")]
    OtherLog { kept: String, new: String },
    #[error("the centre shows a tree of {new} records, smaller than the {kept} this device already saw signed: records were cut off")]
    Rollback { kept: u64, new: u64 },
    #[error("the centre signed two different roots for the same {size} records: the history was rewritten (a fork)")]
    Fork { size: u64 },
    #[error("the tree of {new} records does not extend the {kept} records this device saw signed: the log was truncated or rewritten ({source})")]
    Inconsistent {
        kept: u64,
        new: u64,
        source: merkle::ProofError,
    },
    #[error("the cosignature is malformed: {0}")]
    BadLine(&'static str),
    #[error("the cosignature of {witness} does not verify over this checkpoint with its key")]
    BadCosignature { witness: String },
}

impl WitnessError {
    pub fn code(&self) -> &'static str {
        match self {
            WitnessError::Malformed(_) => "checkpoint_malformed",
            WitnessError::BadSignature { .. } => "checkpoint_bad_signature",
            WitnessError::OtherLog { .. } => "checkpoint_other_log",
            WitnessError::Rollback { .. } => "checkpoint_rollback",
            WitnessError::Fork { .. } => "checkpoint_fork",
            WitnessError::Inconsistent { .. } => "checkpoint_inconsistent",
            WitnessError::BadLine(_) => "cosignature_malformed",
            WitnessError::BadCosignature { .. } => "bad_cosignature",
        }
    }

    /// The same in Japanese, for the person who reads the agent's log.
    pub fn message_ja(&self) -> String {
        match self {
            WitnessError::Malformed(_) => "チェックポイントを読み取れません".into(),
            WitnessError::BadSignature { size } => {
                format!("サイズ {size} のチェックポイントは固定したログ鍵で署名されていません")
            }
            WitnessError::OtherLog { .. } => "保存済みとは別のログのチェックポイントです".into(),
            WitnessError::Rollback { kept, new } => format!(
                "センターの木は {new} 件で、この装置が署名済みで確認した {kept} 件より少ない: レコードが切り詰められました"
            ),
            WitnessError::Fork { size } => format!(
                "同じ {size} 件に対して異なるルートが署名されています: 履歴が書き換えられました（フォーク）"
            ),
            WitnessError::Inconsistent { kept, new, .. } => format!(
                "{new} 件の木は、この装置が確認した {kept} 件の木の延長ではありません: ログが切り詰められたか書き換えられました"
            ),
            WitnessError::BadLine(_) => "連署の形式が不正です".into(),
            WitnessError::BadCosignature { witness } => {
                format!("{witness} の連署がこのチェックポイントに対して検証できません")
            }
        }
    }
}

/// Judge a checkpoint the centre shows (`new`) against the one this witness
/// kept, with the consistency proof from the kept size to the new size. `Ok`
/// means: keep `new` and cosign it. `log_key` is the centre's log key
/// (uncompressed point) the witness pinned, `log_name` the signer name.
pub fn judge(
    log_name: &str,
    log_key: &[u8],
    kept: Option<&SignedNote>,
    new: &SignedNote,
    proof: &[Hash],
) -> Result<(), WitnessError> {
    new.verify(log_name, log_key)
        .map_err(|_| WitnessError::BadSignature {
            size: new.head.size,
        })?;
    let Some(kept) = kept else {
        return Ok(());
    };
    let (k, n) = (&kept.head, &new.head);
    if k.origin != n.origin {
        return Err(WitnessError::OtherLog {
            kept: k.origin.clone(),
            new: n.origin.clone(),
        });
    }
    if n.size < k.size {
        return Err(WitnessError::Rollback {
            kept: k.size,
            new: n.size,
        });
    }
    if n.size == k.size {
        return if n.root == k.root {
            Ok(())
        } else {
            Err(WitnessError::Fork { size: n.size })
        };
    }
    merkle::verify_consistency(k.size, &k.root, n.size, &n.root, proof).map_err(|source| {
        WitnessError::Inconsistent {
            kept: k.size,
            new: n.size,
            source,
        }
    })
}

impl Cosignature {
    /// Sign `note` as `witness` with `sign` (the service key), at `time_ms`.
    pub fn make(
        witness: &str,
        public_point: &[u8],
        note: &SignedNote,
        time_ms: i64,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<Cosignature, String> {
        if time_ms < 0 {
            return Err("the time is before 1970".into());
        }
        let sig = sign(&cosigned_message(time_ms, &note.body))?;
        Ok(Cosignature {
            witness: witness.to_string(),
            key_id: key_id(witness, public_point),
            time_ms,
            sig,
        })
    }

    pub fn to_line(&self) -> String {
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(&(self.time_ms as u64).to_be_bytes());
        blob.extend_from_slice(&self.sig);
        format!("{SIG_DASH}{} {}", self.witness, B64.encode(blob))
    }

    /// Read one cosignature line (without its newline).
    pub fn parse_line(line: &str) -> Result<Cosignature, WitnessError> {
        use WitnessError::BadLine as B;
        if line.len() > MAX_LINE {
            return Err(B("it is longer than 512 bytes"));
        }
        let rest = line
            .strip_prefix(SIG_DASH)
            .ok_or(B("it does not start with '— '"))?;
        let (name, b64) = rest.split_once(' ').ok_or(B("it has no signature"))?;
        if name.is_empty()
            || name.len() > 256
            || !name
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
        {
            return Err(B("the witness name is empty, too long or has spaces"));
        }
        let blob = B64.decode(b64).map_err(|_| B("it is not base64"))?;
        // key id, time, and a DER ECDSA P-256 signature (8 to 72 bytes).
        if blob.len() < 4 + 8 + 8 || blob.len() > 4 + 8 + 72 {
            return Err(B("the signature has the wrong length"));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&blob[4..12]);
        let time = u64::from_be_bytes(t);
        if time > i64::MAX as u64 {
            return Err(B("the time is out of range"));
        }
        Ok(Cosignature {
            witness: name.to_string(),
            key_id: [blob[0], blob[1], blob[2], blob[3]],
            time_ms: time as i64,
            sig: blob[12..].to_vec(),
        })
    }

    /// Verify this cosignature over `body` (a checkpoint's signed text) with the
    /// witness's public key (uncompressed P-256 point).
    pub fn verify(&self, public_point: &[u8], body: &str) -> Result<(), WitnessError> {
        let bad = || WitnessError::BadCosignature {
            witness: self.witness.clone(),
        };
        if self.key_id != key_id(&self.witness, public_point) {
            return Err(bad());
        }
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            public_point,
        )
        .verify(&cosigned_message(self.time_ms, body), &self.sig)
        .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemTree;
    use crate::note::tests::test_key;
    use crate::note::TreeHead;
    use proptest::prelude::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair};

    fn tree(n: u64, salt: u64) -> MemTree {
        let mut t = MemTree::new();
        for i in 0..n {
            t.push(&(i ^ salt).to_be_bytes());
        }
        t
    }

    fn sign_with(key: &EcdsaKeyPair) -> impl Fn(&[u8]) -> Result<Vec<u8>, String> + '_ {
        move |b| {
            key.sign(&SystemRandom::new(), b)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "sign".to_string())
        }
    }

    fn checkpoint(key: &EcdsaKeyPair, t: &MemTree, size: u64) -> SignedNote {
        let head = TreeHead {
            origin: "dodvpn-audit/test".into(),
            size,
            root: t.root(size).unwrap(),
            time_ms: 1_700_000_000_000 + size as i64,
        };
        SignedNote::sign(head, "centre", key.public_key().as_ref(), sign_with(key)).unwrap()
    }

    #[test]
    fn the_cosigned_message_is_fixed() {
        // Known answer: the exact bytes a witness signs.
        let body = "dodvpn-audit/x\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 5\n";
        assert_eq!(
            String::from_utf8(cosigned_message(1234, body)).unwrap(),
            "dodvpn-audit-cosignature/v1\ntime 1234\ndodvpn-audit/x\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 5\n"
        );
    }

    #[test]
    fn spki_point_extraction() {
        let key = test_key();
        let point = key.public_key().as_ref().to_vec();
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(&point);
        assert_eq!(p256_point(&spki), Some(point.as_slice()));
        assert_eq!(p256_point(&spki[..90]), None);
        spki[5] = 0x08; // another algorithm
        assert_eq!(p256_point(&spki), None);
    }

    #[test]
    fn honest_growth_is_accepted_and_cosigned() {
        let log = test_key();
        let lk = log.public_key().as_ref();
        let t = tree(37, 0);
        let kept = checkpoint(&log, &t, 8);
        let new = checkpoint(&log, &t, 37);
        let p = t.consistency(8, 37).unwrap();
        judge("centre", lk, None, &kept, &[]).unwrap();
        judge("centre", lk, Some(&kept), &new, &p).unwrap();
        // The same checkpoint again (a repeated event) is fine too.
        judge("centre", lk, Some(&new), &new, &[]).unwrap();

        let dev = test_key();
        let dp = dev.public_key().as_ref();
        let c = Cosignature::make("dev-1", dp, &new, 1_764_000_000_123, sign_with(&dev)).unwrap();
        let line = c.to_line();
        assert!(line.starts_with("\u{2014} dev-1 "), "{line}");
        let back = Cosignature::parse_line(&line).unwrap();
        assert_eq!(back, c);
        back.verify(dp, &new.body).unwrap();
        // Over another checkpoint, with another key, or another time: refused.
        assert_eq!(
            back.verify(dp, &kept.body).unwrap_err().code(),
            "bad_cosignature"
        );
        assert!(back
            .verify(test_key().public_key().as_ref(), &new.body)
            .is_err());
        let mut later = back.clone();
        later.time_ms += 1;
        assert!(later.verify(dp, &new.body).is_err());
        // A plain note signature by the same key (no prefix) is not a cosignature.
        let plain = SignedNote::sign(new.head.clone(), "dev-1", dp, sign_with(&dev)).unwrap();
        let forged = Cosignature {
            sig: plain.sigs[0].sig.clone(),
            ..back
        };
        assert!(forged.verify(dp, &new.body).is_err());
    }

    #[test]
    fn truncation_fork_rollback_and_forgery_are_named() {
        let log = test_key();
        let lk = log.public_key().as_ref();
        let honest = tree(30, 0);
        let kept = checkpoint(&log, &honest, 20);
        // Cut to 15 records and regrown to 30 with other records: re-signed by the centre.
        let mut fork = MemTree::new();
        for i in 0..30u64 {
            fork.push(&(if i < 15 { i } else { i + 1000 }).to_be_bytes());
        }
        let forged = checkpoint(&log, &fork, 30);
        let p = fork.consistency(20, 30).unwrap();
        let e = judge("centre", lk, Some(&kept), &forged, &p).unwrap_err();
        assert_eq!(e.code(), "checkpoint_inconsistent", "{e}");
        assert!(e.to_string().contains("truncated or rewritten"), "{e}");
        assert!(e.message_ja().contains("書き換え"));
        // An honest proof for the honest tree does not rescue the forged root.
        let hp = honest.consistency(20, 30).unwrap();
        assert!(judge("centre", lk, Some(&kept), &forged, &hp).is_err());
        // Smaller tree: records cut off.
        let short = checkpoint(&log, &honest, 12);
        assert_eq!(
            judge("centre", lk, Some(&kept), &short, &[])
                .unwrap_err()
                .code(),
            "checkpoint_rollback"
        );
        // Same size, other root.
        let same = checkpoint(&log, &fork, 20);
        assert_eq!(
            judge("centre", lk, Some(&kept), &same, &[])
                .unwrap_err()
                .code(),
            "checkpoint_fork"
        );
        // Not the pinned key.
        let other = test_key();
        let by_other = checkpoint(&other, &honest, 30);
        assert_eq!(
            judge("centre", lk, Some(&kept), &by_other, &hp)
                .unwrap_err()
                .code(),
            "checkpoint_bad_signature"
        );
        // Another log.
        let mut head = checkpoint(&log, &honest, 30).head;
        head.origin = "dodvpn-audit/other".into();
        let other_log = SignedNote::sign(head, "centre", lk, sign_with(&log)).unwrap();
        assert_eq!(
            judge("centre", lk, Some(&kept), &other_log, &hp)
                .unwrap_err()
                .code(),
            "checkpoint_other_log"
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let dev = test_key();
        let good = Cosignature {
            witness: "dev-1".into(),
            key_id: [1, 2, 3, 4],
            time_ms: 5,
            sig: vec![0x30; 70],
        }
        .to_line();
        assert!(Cosignature::parse_line(&good).is_ok());
        for bad in [
            good.replace('\u{2014}', "-"),
            good.replace("dev-1 ", "dev 1 "),
            good.replace("dev-1 ", "dev-1"),
            format!("{good}!"),
            format!("\u{2014} dev-1 {}", B64.encode([0u8; 12])),
            format!("\u{2014} dev-1 {}", B64.encode([0u8; 100])),
            format!("\u{2014} dev-1 {}", B64.encode([0xffu8; 30])),
            "x".repeat(600),
        ] {
            let e = Cosignature::parse_line(&bad).unwrap_err();
            assert_eq!(e.code(), "cosignature_malformed", "{bad}");
        }
        let _ = dev;
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Every honest growth old -> new is accepted; the same sizes over a tree
        /// that differs in any leaf below `old` are refused.
        #[test]
        fn judge_matches_the_tree(n in 2u64..80, old in 1u64..80, changed in 0u64..80) {
            let old = 1 + old % (n - 1);
            let changed = changed % old;
            let log = test_key();
            let lk = log.public_key().as_ref().to_vec();
            let honest = tree(n, 0);
            let kept = checkpoint(&log, &honest, old);
            let new = checkpoint(&log, &honest, n);
            let p = honest.consistency(old, n).unwrap();
            prop_assert!(judge("centre", &lk, Some(&kept), &new, &p).is_ok());
            let mut other = MemTree::new();
            for i in 0..n {
                other.push(&(if i == changed { i + 10_000 } else { i }).to_be_bytes());
            }
            let forged = checkpoint(&log, &other, n);
            let p2 = other.consistency(old, n).unwrap();
            prop_assert!(judge("centre", &lk, Some(&kept), &forged, &p2).is_err());
        }

        /// The line parser never panics, and what it accepts prints back the same.
        #[test]
        fn parse_line_never_panics(s in "\\PC{0,200}", blob in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(c) = Cosignature::parse_line(&s) {
                prop_assert_eq!(c.to_line(), s);
            }
            let line = format!("\u{2014} w {}", B64.encode(&blob));
            if let Ok(c) = Cosignature::parse_line(&line) {
                prop_assert_eq!(c.to_line(), line);
            }
        }
    }
}

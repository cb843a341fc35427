//! The auditor's export (R-AUD-3, R-AUD-4): everything `dodvpn audit check`
//! needs to verify the log offline, without the centre.
//!
//! A bundle is one JSON document: the log's public key, every record, and every
//! signed checkpoint the centre made. [`check`] verifies, in order:
//! 1. the hash chain (as [`crate::verify`]);
//! 2. each checkpoint's signature by the log key;
//! 3. each checkpoint against the records: the export holds at least its size
//!    (else the newest records were cut off), and the root of that many records
//!    equals the signed root (else the history was rewritten);
//! 4. every record's inclusion proof in the newest checkpoint, and a
//!    consistency proof between each pair of consecutive checkpoints, verified
//!    with ct-merkle (a second implementation of the same RFC);
//! 5. checkpoints the auditor kept from earlier (`known`, e.g. from a previous
//!    export or a device): each must be consistent with this export.
//!
//! The public key must be pinned by the auditor (its fingerprint is printed);
//! a bundle that only carries its own key proves consistency, not origin.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, MemTree};
use crate::note::SignedNote;
use crate::Record;

pub const FORMAT: &str = "dodvpn-audit-bundle/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// The signer name on the centre's checkpoints.
    pub log_name: String,
    /// The log key: base64 of the uncompressed P-256 point.
    pub log_public_key: String,
    pub records: Vec<Record>,
    /// Signed checkpoint notes, oldest first.
    pub checkpoints: Vec<String>,
    /// RFC 3161 timestamp tokens of checkpoints (absent in exports from before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamps: Vec<Timestamp>,
    /// Devices' cosignatures of checkpoints (absent in exports from before witnesses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosignatures: Vec<BundleCosignature>,
    /// How many distinct witnesses make a checkpoint "witnessed" (the provider's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_threshold: Option<u32>,
}

/// One device's cosignature of one checkpoint, as the centre received and verified it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleCosignature {
    /// The checkpoint's tree size.
    pub size: u64,
    /// The cosignature line (`crate::witness::Cosignature::to_line`).
    pub line: String,
    /// The witness's public key: base64 of its SubjectPublicKeyInfo (DER).
    pub public_key: String,
    /// Serial of the service certificate that key was certified by (the centre's record).
    pub cert_serial: u64,
    /// That service certificate (PEM), so an auditor can check offline that the key is a
    /// device's certified key (`dodvpn audit check --service-ca`). Absent in exports from
    /// before it was included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
}

/// One RFC 3161 token over a checkpoint (imprint: SHA-256 of its signed body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    /// The checkpoint's tree size.
    pub size: u64,
    /// DER TimeStampToken, base64.
    pub token: String,
}

/// What [`check_with`] needs beyond the bundle.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions<'a> {
    /// The log key's fingerprint the auditor trusts.
    pub pinned: Option<&'a str>,
    /// Checkpoints kept from earlier.
    pub known: &'a [String],
    /// DER of the TSA CA the auditor trusts; without it tokens are counted, not verified.
    pub tsa_ca: Option<&'a [u8]>,
    /// Witnesses needed for "witnessed"; default the bundle's own setting, else 1.
    pub witnesses: Option<u32>,
}

/// The SHA-256 fingerprint of the log key (hex), for pinning.
pub fn key_fingerprint(public_point: &[u8]) -> String {
    hex::encode(Sha256::digest(public_point))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub records: u64,
    pub checkpoints: u64,
    pub newest_size: u64,
    pub inclusion_proofs: u64,
    pub consistency_proofs: u64,
    pub key_fingerprint: String,
    /// Timestamp tokens verified against the TSA CA.
    pub timestamps_verified: u64,
    /// Tokens present but not verified (no TSA CA given).
    pub timestamps_unchecked: u64,
    /// The newest stamped checkpoint's size and the token's genTime (Unix s).
    pub newest_timestamp: Option<(u64, u64)>,
    /// Cosignatures verified over their checkpoint with their witness key.
    pub cosignatures_verified: u64,
    /// The threshold applied, and the checkpoints that reach it.
    pub witness_threshold: u32,
    pub witnessed_checkpoints: u64,
    /// The newest checkpoint with enough witnesses.
    pub newest_witnessed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("the export is not a dodvpn audit bundle: {0}")]
    Format(String),
    #[error("the hash chain does not verify: {0}")]
    Chain(#[from] crate::ChainError),
    #[error("checkpoint {index}: {source}")]
    Note {
        index: usize,
        source: crate::note::NoteError,
    },
    #[error("the log key in the export (fingerprint {found}) is not the pinned one ({pinned})")]
    WrongKey { found: String, pinned: String },
    #[error("checkpoint {index} covers {size} records but the export holds only {held}: the newest records were cut off")]
    Truncated { index: usize, size: u64, held: u64 },
    #[error("checkpoint {index} (size {size}) was signed over another root than these records give: the history was rewritten from some record on")]
    RootMismatch { index: usize, size: u64 },
    #[error("checkpoint {index} is older than the one before it (size {size} after {prev})")]
    ShrinkingCheckpoints { index: usize, size: u64, prev: u64 },
    #[error("{0}")]
    Proof(#[from] merkle::ProofError),
    #[error("a kept checkpoint (size {size}) is not consistent with this export: {why}")]
    KnownInconsistent { size: u64, why: String },
    #[error("the timestamp of checkpoint size {size}: {source}")]
    Timestamp {
        size: u64,
        source: dodvpn_tsp::TspError,
    },
    #[error("a timestamp is for size {size}, but the export has no checkpoint of that size")]
    TimestampWithoutCheckpoint { size: u64 },
    #[error("a cosignature of checkpoint size {size}: {source}")]
    Cosignature {
        size: u64,
        source: crate::witness::WitnessError,
    },
    #[error("a cosignature is for size {size}, but the export has no checkpoint of that size")]
    CosignatureWithoutCheckpoint { size: u64 },
}

impl CheckError {
    pub fn code(&self) -> &'static str {
        match self {
            CheckError::Format(_) => "format",
            CheckError::Chain(e) => e.code(),
            CheckError::Note { .. } => "bad_checkpoint",
            CheckError::WrongKey { .. } => "wrong_key",
            CheckError::Truncated { .. } => "truncated",
            CheckError::RootMismatch { .. } => "root_mismatch",
            CheckError::ShrinkingCheckpoints { .. } => "shrinking_checkpoints",
            CheckError::Proof(e) => e.code(),
            CheckError::KnownInconsistent { .. } => "known_checkpoint_inconsistent",
            CheckError::Timestamp { source, .. } => source.code(),
            CheckError::TimestampWithoutCheckpoint { .. } => "timestamp_without_checkpoint",
            CheckError::Cosignature { source, .. } => source.code(),
            CheckError::CosignatureWithoutCheckpoint { .. } => "cosignature_without_checkpoint",
        }
    }
}

/// Build the tree over records (leaf input: each record's chain hash).
pub fn tree_of(records: &[Record]) -> Result<MemTree, CheckError> {
    let mut t = MemTree::new();
    for r in records {
        let input = merkle::record_leaf_input(&r.hash)
            .ok_or(CheckError::Chain(crate::ChainError::Edited { seq: r.seq }))?;
        t.push(&input);
    }
    Ok(t)
}

/// Verify a bundle; see the module docs. `pinned`: the log key's fingerprint the
/// auditor trusts. `known`: checkpoints kept from earlier, verified with the same key.
pub fn check(
    bundle: &Bundle,
    pinned: Option<&str>,
    known: &[String],
) -> Result<CheckReport, CheckError> {
    check_with(
        bundle,
        &CheckOptions {
            pinned,
            known,
            tsa_ca: None,
            witnesses: None,
        },
    )
}

/// [`check`], and the timestamp tokens against `opts.tsa_ca`.
pub fn check_with(bundle: &Bundle, opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let (pinned, known) = (opts.pinned, opts.known);
    if bundle.format != FORMAT {
        return Err(CheckError::Format(format!(
            "format is {:?}, expected {FORMAT:?}",
            bundle.format
        )));
    }
    let key = B64
        .decode(&bundle.log_public_key)
        .map_err(|_| CheckError::Format("the log key is not base64".into()))?;
    let fp = key_fingerprint(&key);
    if let Some(p) = pinned {
        if !p.eq_ignore_ascii_case(&fp) {
            return Err(CheckError::WrongKey {
                found: fp,
                pinned: p.to_string(),
            });
        }
    }
    crate::verify(&bundle.records)?;
    let tree = tree_of(&bundle.records)?;
    let held = tree.len();

    let read = |index: usize, text: &str| -> Result<SignedNote, CheckError> {
        let n = SignedNote::parse(text).map_err(|source| CheckError::Note { index, source })?;
        n.verify(&bundle.log_name, &key)
            .map_err(|source| CheckError::Note { index, source })?;
        Ok(n)
    };
    let mut heads = Vec::new();
    for (i, text) in bundle.checkpoints.iter().enumerate() {
        let n = read(i + 1, text)?;
        let size = n.head.size;
        if let Some(prev) = heads.last().map(|h: &SignedNote| h.head.size) {
            if size < prev {
                return Err(CheckError::ShrinkingCheckpoints {
                    index: i + 1,
                    size,
                    prev,
                });
            }
        }
        if size > held {
            return Err(CheckError::Truncated {
                index: i + 1,
                size,
                held,
            });
        }
        let root = tree.root(size).map_err(|_| CheckError::Truncated {
            index: i + 1,
            size,
            held,
        })?;
        if root != n.head.root {
            return Err(CheckError::RootMismatch { index: i + 1, size });
        }
        heads.push(n);
    }

    // Proofs, verified by ct-merkle: each record in the newest checkpoint, and
    // each checkpoint a prefix of the next.
    let mut inclusion = 0;
    let mut consistency = 0;
    let newest = heads.last().map(|h| h.head.clone());
    if let Some(h) = &newest {
        for (i, r) in bundle.records.iter().take(h.size as usize).enumerate() {
            let i = i as u64;
            let input = merkle::record_leaf_input(&r.hash).unwrap_or_default();
            let p = tree
                .inclusion(i, h.size)
                .map_err(|_| merkle::ProofError::OutOfRange {
                    index: i,
                    size: h.size,
                })?;
            merkle::verify_inclusion(&input, i, h.size, &h.root, &p)?;
            inclusion += 1;
        }
    }
    for w in heads.windows(2) {
        let (a, b) = (&w[0].head, &w[1].head);
        let p = tree
            .consistency(a.size, b.size)
            .map_err(|_| merkle::ProofError::Malformed)?;
        merkle::verify_consistency(a.size, &a.root, b.size, &b.root, &p)?;
        consistency += 1;
    }

    for text in known {
        let n = SignedNote::parse(text).map_err(|source| CheckError::Note { index: 0, source })?;
        n.verify(&bundle.log_name, &key)
            .map_err(|source| CheckError::Note { index: 0, source })?;
        let size = n.head.size;
        let why = if size > held {
            Some(format!(
                "it covers {size} records but the export holds only {held}: the newest records were cut off"
            ))
        } else {
            match tree.root(size) {
                Ok(r) if r == n.head.root => None,
                _ => Some(format!(
                    "the first {size} records of the export have another root: the history was rewritten"
                )),
            }
        };
        if let Some(why) = why {
            return Err(CheckError::KnownInconsistent { size, why });
        }
        consistency += 1;
    }

    // Timestamps: each names a checkpoint of the export and carries its imprint.
    let (mut ts_ok, mut ts_unchecked, mut newest_ts) = (0, 0, None);
    for t in &bundle.timestamps {
        let Some(n) = heads.iter().find(|h| h.head.size == t.size) else {
            return Err(CheckError::TimestampWithoutCheckpoint { size: t.size });
        };
        let token = B64.decode(&t.token).map_err(|_| CheckError::Timestamp {
            size: t.size,
            source: dodvpn_tsp::TspError::Malformed("not base64".into()),
        })?;
        match opts.tsa_ca {
            Some(ca) => {
                let v = dodvpn_tsp::verify(
                    &token,
                    &dodvpn_tsp::imprint_of(n.body.as_bytes()),
                    ca,
                    None,
                )
                .map_err(|source| CheckError::Timestamp {
                    size: t.size,
                    source,
                })?;
                ts_ok += 1;
                if newest_ts.is_none_or(|(s, _)| s < t.size) {
                    newest_ts = Some((t.size, v.gen_time));
                }
            }
            None => ts_unchecked += 1,
        }
    }

    // Cosignatures: each over a checkpoint of the export, by its witness key.
    let threshold = opts
        .witnesses
        .or(bundle.witness_threshold)
        .unwrap_or(1)
        .max(1);
    let mut by_size: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> =
        Default::default();
    let mut cos_ok = 0;
    for c in &bundle.cosignatures {
        let Some(n) = heads.iter().find(|h| h.head.size == c.size) else {
            return Err(CheckError::CosignatureWithoutCheckpoint { size: c.size });
        };
        let err = |source| CheckError::Cosignature {
            size: c.size,
            source,
        };
        let cos = crate::witness::Cosignature::parse_line(&c.line).map_err(err)?;
        let spki = B64.decode(&c.public_key).unwrap_or_default();
        let bad = || {
            err(crate::witness::WitnessError::BadCosignature {
                witness: cos.witness.clone(),
            })
        };
        let point = crate::witness::p256_point(&spki).ok_or_else(bad)?;
        cos.verify(point, &n.body).map_err(err)?;
        cos_ok += 1;
        by_size.entry(c.size).or_default().insert(cos.witness);
    }
    let witnessed: Vec<u64> = by_size
        .iter()
        .filter(|(_, w)| w.len() as u64 >= threshold as u64)
        .map(|(s, _)| *s)
        .collect();

    Ok(CheckReport {
        cosignatures_verified: cos_ok,
        witness_threshold: threshold,
        witnessed_checkpoints: witnessed.len() as u64,
        newest_witnessed: witnessed.last().copied(),
        timestamps_verified: ts_ok,
        timestamps_unchecked: ts_unchecked,
        newest_timestamp: newest_ts,
        records: held,
        checkpoints: heads.len() as u64,
        newest_size: newest.map_or(0, |h| h.size),
        inclusion_proofs: inclusion,
        consistency_proofs: consistency,
        key_fingerprint: fp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::tests::{signed, test_key};
    use crate::note::TreeHead;
    use ring::signature::{EcdsaKeyPair, KeyPair};
    use serde_json::json;

    fn records(n: usize, salt: &str) -> Vec<Record> {
        let mut v: Vec<Record> = Vec::new();
        for i in 0..n {
            let r = crate::next(
                v.last(),
                1_700_000_000_000 + i as i64,
                "center",
                "test",
                &format!("{salt}{i}"),
                json!({"i": i}),
            );
            v.push(r);
        }
        v
    }

    fn note(key: &EcdsaKeyPair, recs: &[Record], size: u64) -> String {
        let t = tree_of(&recs[..size as usize]).unwrap();
        signed(key, size, t.root(size).unwrap()).to_text()
    }

    fn bundle(key: &EcdsaKeyPair, recs: Vec<Record>, sizes: &[u64]) -> Bundle {
        let checkpoints = sizes.iter().map(|s| note(key, &recs, *s)).collect();
        Bundle {
            format: FORMAT.into(),
            log_name: "centre".into(),
            log_public_key: B64.encode(key.public_key().as_ref()),
            records: recs,
            checkpoints,
            timestamps: vec![],
            cosignatures: vec![],
            witness_threshold: None,
        }
    }

    #[test]
    fn honest_export_checks() {
        let key = test_key();
        let b = bundle(&key, records(40, "a"), &[1, 7, 8, 33, 40]);
        let fp = key_fingerprint(key.public_key().as_ref());
        let r = check(&b, Some(&fp), &[]).unwrap();
        assert_eq!(
            (
                r.records,
                r.checkpoints,
                r.newest_size,
                r.inclusion_proofs,
                r.consistency_proofs
            ),
            (40, 5, 40, 40, 4)
        );
        // Serialises and reads back.
        let text = serde_json::to_string(&b).unwrap();
        let back: Bundle = serde_json::from_str(&text).unwrap();
        assert_eq!(check(&back, None, &[]).unwrap(), r);
    }

    #[test]
    fn newest_records_truncated_are_detected() {
        let key = test_key();
        let recs = records(30, "a");
        let kept = note(&key, &recs, 30);
        // The operator cuts the newest 5 records but leaves the checkpoint.
        let mut b = bundle(&key, recs.clone(), &[10, 30]);
        b.records.truncate(25);
        assert!(matches!(
            check(&b, None, &[]),
            Err(CheckError::Truncated {
                size: 30,
                held: 25,
                ..
            })
        ));
        // … and drops the checkpoints that show it: the auditor's kept one does.
        let b = bundle(&key, recs[..25].to_vec(), &[10, 25]);
        assert!(check(&b, None, &[]).is_ok());
        let e = check(&b, None, &[kept]).unwrap_err();
        assert_eq!(e.code(), "known_checkpoint_inconsistent");
        assert!(e.to_string().contains("cut off"), "{e}");
    }

    #[test]
    fn fork_from_record_m_with_the_same_length_is_detected() {
        let key = test_key();
        let honest = records(30, "a");
        let seen = note(&key, &honest, 20);
        // Rebuilt from record 12 on: a valid chain of the same length, re-signed.
        let mut fork = honest[..11].to_vec();
        for i in 11..30 {
            let r = crate::next(
                fork.last(),
                1_700_000_000_000 + i,
                "center",
                "test",
                "forged",
                json!({}),
            );
            fork.push(r);
        }
        assert_eq!(fork.len(), honest.len());
        let b = bundle(&key, fork.clone(), &[30]);
        assert!(check(&b, None, &[]).is_ok(), "self-consistent on its own");
        // The checkpoint an auditor or device kept exposes it.
        let e = check(&b, None, std::slice::from_ref(&seen)).unwrap_err();
        assert!(e.to_string().contains("rewritten"), "{e}");
        // A bundle that still carries the honest checkpoint exposes it too.
        let mut b2 = b.clone();
        b2.checkpoints.insert(0, seen);
        assert!(matches!(
            check(&b2, None, &[]),
            Err(CheckError::RootMismatch { index: 1, size: 20 })
        ));
    }

    #[test]
    fn checkpoint_signed_over_another_root_is_detected() {
        let key = test_key();
        let recs = records(10, "a");
        let mut b = bundle(&key, recs, &[10]);
        // Valid signature, wrong root.
        b.checkpoints = vec![signed(&key, 10, [9u8; 32]).to_text()];
        assert!(matches!(
            check(&b, None, &[]),
            Err(CheckError::RootMismatch { .. })
        ));
        // Right root, signature from another text.
        let good = SignedNote::parse(&note(&key, &b.records, 10)).unwrap();
        let other = signed(&key, 10, [9u8; 32]);
        let forged = SignedNote {
            sigs: other.sigs,
            ..good
        };
        b.checkpoints = vec![forged.to_text()];
        assert!(matches!(
            check(&b, None, &[]),
            Err(CheckError::Note { index: 1, .. })
        ));
    }

    #[test]
    fn wrong_key_and_other_damage() {
        let key = test_key();
        let b = bundle(&key, records(5, "a"), &[5]);
        let e = check(&b, Some(&"00".repeat(32)), &[]).unwrap_err();
        assert_eq!(e.code(), "wrong_key");
        // Signed by another key than the one in the bundle.
        let k2 = test_key();
        let mut b2 = b.clone();
        b2.checkpoints = vec![note(&k2, &b.records, 5)];
        assert!(matches!(
            check(&b2, None, &[]),
            Err(CheckError::Note { .. })
        ));
        // An edited record breaks the chain first.
        let mut b3 = b.clone();
        b3.records[2].actor = "mallory".into();
        assert_eq!(check(&b3, None, &[]).unwrap_err().code(), "edited");
        // Checkpoints out of order.
        let b4 = bundle(&key, records(5, "a"), &[5, 3]);
        assert_eq!(
            check(&b4, None, &[]).unwrap_err().code(),
            "shrinking_checkpoints"
        );
        let mut b5 = b.clone();
        b5.format = "x".into();
        assert_eq!(check(&b5, None, &[]).unwrap_err().code(), "format");
        let _ = TreeHead {
            origin: String::new(),
            size: 0,
            root: [0; 32],
            time_ms: 0,
        };
    }

    fn spki_of(key: &EcdsaKeyPair) -> String {
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(key.public_key().as_ref());
        B64.encode(spki)
    }

    fn cosign(dev: &EcdsaKeyPair, name: &str, note_text: &str) -> BundleCosignature {
        let n = SignedNote::parse(note_text).unwrap();
        let c = crate::witness::Cosignature::make(
            name,
            dev.public_key().as_ref(),
            &n,
            1_764_000_000_000,
            |b| {
                dev.sign(&ring::rand::SystemRandom::new(), b)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| "sign".to_string())
            },
        )
        .unwrap();
        BundleCosignature {
            size: n.head.size,
            line: c.to_line(),
            public_key: spki_of(dev),
            cert_serial: 7,
            cert_pem: None,
        }
    }

    #[test]
    fn cosignatures_are_verified_and_counted_as_witnessed() {
        let key = test_key();
        let mut b = bundle(&key, records(12, "a"), &[5, 12]);
        let (d1, d2) = (test_key(), test_key());
        b.cosignatures = vec![
            cosign(&d1, "dev-1", &b.checkpoints[0]),
            cosign(&d2, "dev-2", &b.checkpoints[0]),
            cosign(&d1, "dev-1", &b.checkpoints[1]),
        ];
        b.witness_threshold = Some(2);
        let r = check(&b, None, &[]).unwrap();
        assert_eq!(r.cosignatures_verified, 3);
        assert_eq!((r.witness_threshold, r.witnessed_checkpoints), (2, 1));
        assert_eq!(r.newest_witnessed, Some(5));
        // The auditor's own threshold wins over the bundle's.
        let r = check_with(
            &b,
            &CheckOptions {
                witnesses: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((r.witnessed_checkpoints, r.newest_witnessed), (2, Some(12)));
        // A cosignature moved to another checkpoint, or under another key: refused.
        let mut moved = b.clone();
        moved.cosignatures[2].size = 5;
        assert_eq!(
            check(&moved, None, &[]).unwrap_err().code(),
            "bad_cosignature"
        );
        let mut rekeyed = b.clone();
        rekeyed.cosignatures[0].public_key = spki_of(&d2);
        assert_eq!(
            check(&rekeyed, None, &[]).unwrap_err().code(),
            "bad_cosignature"
        );
        let mut orphan = b.clone();
        orphan.cosignatures[0].size = 9;
        assert_eq!(
            check(&orphan, None, &[]).unwrap_err().code(),
            "cosignature_without_checkpoint"
        );
        let mut garbled = b.clone();
        garbled.cosignatures[0].line = "\u{2014} dev-1 ???".into();
        assert_eq!(
            check(&garbled, None, &[]).unwrap_err().code(),
            "cosignature_malformed"
        );
        // Serialises and reads back with its cosignatures.
        let back: Bundle = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }
}

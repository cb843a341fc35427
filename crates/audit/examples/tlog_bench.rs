//! Issue 15 benchmark (bench/tlog/README.md): the cost of the Merkle tree itself.
//! One run, no warm-up tricks; prints one line per figure.
//!
//! - appending N records to the chain alone vs chain + tree (in memory: the
//!   hashing cost the tree adds to each append, without the database);
//! - proof sizes and verification time at N records (verification is ct-merkle's);
//! - cosigning: verifying 1,000 device cosignatures (ECDSA P-256) of one
//!   checkpoint, the centre's CPU per checkpoint with 1,000 witnesses: the bare
//!   signature check, and the whole in-memory path of one POST (parse the line,
//!   take the point from the certificate's SPKI, verify over prefix + time + body);
//! - witnessing on the device: judging a checkpoint with a consistency proof.

use std::time::Instant;

use dodvpn_audit::merkle::{self, MemTree};
use dodvpn_audit::note::{SignedNote, TreeHead};
use dodvpn_audit::witness::{judge, p256_point, Cosignature};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let details = serde_json::json!({"applicant": "dev-a", "target": "dev-b"});

    let t = Instant::now();
    let mut prev: Option<dodvpn_audit::Record> = None;
    for i in 0..n {
        prev = Some(dodvpn_audit::next(
            prev.as_ref(),
            i as i64,
            "center",
            "connect.apply",
            "g",
            details.clone(),
        ));
    }
    let chain_only = t.elapsed();

    let t = Instant::now();
    let mut prev: Option<dodvpn_audit::Record> = None;
    let mut tree = MemTree::new();
    let mut leaves = Vec::with_capacity(n as usize);
    for i in 0..n {
        let r = dodvpn_audit::next(
            prev.as_ref(),
            i as i64,
            "center",
            "connect.apply",
            "g",
            details.clone(),
        );
        let input = merkle::record_leaf_input(&r.hash).unwrap();
        tree.push(&input);
        leaves.push(input);
        prev = Some(r);
    }
    let with_tree = t.elapsed();
    println!(
        "append {n} records: chain only {:.0}/s, chain + tree {:.0}/s",
        n as f64 / chain_only.as_secs_f64(),
        n as f64 / with_tree.as_secs_f64()
    );

    let root = tree.root(n).unwrap();
    let idx = n / 3;
    let leaf = leaves[idx as usize];
    let proof = tree.inclusion(idx, n).unwrap();
    let reps = 10_000;
    let t = Instant::now();
    for _ in 0..reps {
        merkle::verify_inclusion(&leaf, idx, n, &root, &proof).unwrap();
    }
    println!(
        "inclusion proof at {n}: {} hashes, {} bytes, verify {:.1} µs",
        proof.len(),
        proof.len() * 32,
        t.elapsed().as_secs_f64() * 1e6 / reps as f64
    );
    let old = n / 2 + 7;
    let old_root = tree.root(old).unwrap();
    let cons = tree.consistency(old, n).unwrap();
    let t = Instant::now();
    for _ in 0..reps {
        merkle::verify_consistency(old, &old_root, n, &root, &cons).unwrap();
    }
    println!(
        "consistency proof {old} -> {n}: {} hashes, {} bytes, verify {:.1} µs",
        cons.len(),
        cons.len() * 32,
        t.elapsed().as_secs_f64() * 1e6 / reps as f64
    );
    let t = Instant::now();
    for _ in 0..1000 {
        let _ = tree.inclusion(idx, n).unwrap();
    }
    println!(
        "inclusion proof generation from stored nodes: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e3
    );

    let rng = SystemRandom::new();
    let body =
        b"dodvpn-audit/bench\n1000000\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 0\n";
    let sigs: Vec<(Vec<u8>, Vec<u8>)> = (0..1000)
        .map(|_| {
            let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pk8.as_ref(), &rng)
                .unwrap();
            (
                k.public_key().as_ref().to_vec(),
                k.sign(&rng, body).unwrap().as_ref().to_vec(),
            )
        })
        .collect();
    let t = Instant::now();
    for (pk, sig) in &sigs {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, pk)
            .verify(body, sig)
            .unwrap();
    }
    println!(
        "verify 1000 cosignatures (ECDSA P-256) of one checkpoint: {:.1} ms CPU",
        t.elapsed().as_secs_f64() * 1e3
    );

    // The centre's CPU for one POST /device/audit/cosignatures, without the
    // database: the line is parsed, the key taken from the SPKI, the signature
    // checked over the cosigned message.
    let log = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .unwrap()
            .as_ref(),
        &rng,
    )
    .unwrap();
    let sign = |k: &EcdsaKeyPair, m: &[u8]| -> Result<Vec<u8>, String> {
        Ok(k.sign(&SystemRandom::new(), m).unwrap().as_ref().to_vec())
    };
    let head = |size: u64| TreeHead {
        origin: "dodvpn-audit/bench".into(),
        size,
        root: tree.root(size).unwrap(),
        time_ms: 1_764_000_000_000,
    };
    let new = SignedNote::sign(head(n), "centre", log.public_key().as_ref(), |m| {
        sign(&log, m)
    })
    .unwrap();
    let kept = SignedNote::sign(head(old), "centre", log.public_key().as_ref(), |m| {
        sign(&log, m)
    })
    .unwrap();
    const SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let posts: Vec<(Vec<u8>, String)> = (0..1000)
        .map(|i| {
            let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pk8.as_ref(), &rng)
                .unwrap();
            let mut spki = SPKI_PREFIX.to_vec();
            spki.extend_from_slice(k.public_key().as_ref());
            let c = Cosignature::make(
                &format!("dev-{i:012x}"),
                k.public_key().as_ref(),
                &new,
                1_764_000_000_000 + i,
                |m| sign(&k, m),
            )
            .unwrap();
            (spki, c.to_line())
        })
        .collect();
    let t = Instant::now();
    for (spki, line) in &posts {
        let c = Cosignature::parse_line(line).unwrap();
        c.verify(p256_point(spki).unwrap(), &new.body).unwrap();
    }
    println!(
        "1000 cosignature POSTs, in-memory part (parse + SPKI + verify): {:.1} ms CPU per checkpoint",
        t.elapsed().as_secs_f64() * 1e3
    );
    // What each device does per checkpoint before it cosigns.
    let reps = 1000;
    let t = Instant::now();
    for _ in 0..reps {
        judge(
            "centre",
            log.public_key().as_ref(),
            Some(&kept),
            &new,
            &cons,
        )
        .unwrap();
    }
    println!(
        "device: judge a checkpoint ({old} -> {n}, log signature + consistency proof): {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / reps as f64
    );
}

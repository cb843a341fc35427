//! An auditor's export and the proofs in it: reading and checking never panics.
#![no_main]
use dodvpn_audit::bundle::{check, Bundle};
use dodvpn_audit::merkle::{verify_consistency, verify_inclusion, Hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = serde_json::from_slice::<Bundle>(data) {
        let _ = check(&b, None, &b.checkpoints);
    }
    // Raw proofs: sizes, indices and hashes taken from the input.
    if data.len() >= 16 {
        let a = u64::from_le_bytes(data[0..8].try_into().unwrap());
        let b = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let hashes: Vec<Hash> = data[16..]
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap())
            .collect();
        let root = hashes.first().copied().unwrap_or_default();
        let _ = verify_inclusion(&data[..8], a, b, &root, &hashes);
        let _ = verify_consistency(a, &root, b, &root, &hashes);
    }
});

//! The certificate-chain path of IKE_AUTH (issue 16 point 5): whatever a peer puts in
//! its CERT payloads (an end-entity certificate and up to a handful of intermediates) is
//! checked against a fixed trust anchor. Nothing may panic; garbage is never accepted.
//!
//! Input: a sequence of elements, each a 2-byte big-endian length and that many bytes;
//! the first is the end-entity certificate, the rest are intermediates (the validator
//! takes at most four; more are refused as a whole).
//!
//!   cargo +nightly fuzz run chain        (from crates/tunnel/fuzz)
#![no_main]

use dodvpn_tunnel::peer::{subject_and_issuer, PeerCertValidator, UnixTime};
use dodvpn_wire::Identification;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;

/// A self-signed P-256 CA made for this target; its key was thrown away, so no input can
/// carry a genuine signature of it.
const ANCHOR: &str = include_str!("anchor.pem");

fn validator() -> &'static PeerCertValidator {
    static V: OnceLock<PeerCertValidator> = OnceLock::new();
    V.get_or_init(|| PeerCertValidator::from_pem(ANCHOR.as_bytes()).expect("anchor"))
}

fn elements(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < 8 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let take = n.min(data.len() - 2);
        out.push(&data[2..2 + take]);
        data = &data[2 + take..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let parts = elements(data);
    let Some((ee, intermediates)) = parts.split_first() else {
        return;
    };
    for p in &parts {
        let _ = subject_and_issuer(p);
    }
    let now = UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000));
    let r = validator().validate_chain_at(ee, intermediates, &Identification::fqdn("peer.example"), now);
    assert!(r.is_err(), "a chain to a CA without a key was accepted");
});

//! The reading path (ContentInfo → AuthEnvelopedData → RecipientInfo → SignedData) on any
//! bytes, with a fixed P-256 recipient key: it must return an error, never panic.
//! Run: `cd crates/message/fuzz && cargo +nightly fuzz run open`.
#![no_main]
use std::sync::OnceLock;

use dodvpn_message::{decrypt, open, verify, SoftKey, VerifyOptions};
use libfuzzer_sys::fuzz_target;

// A fixed test key and self-signed certificate (made with openssl for this target only).
const KEY: &str = include_str!("../seed/recipient.key");
const CERT: &str = include_str!("../seed/recipient.crt");

fn key() -> &'static SoftKey {
    static K: OnceLock<SoftKey> = OnceLock::new();
    K.get_or_init(|| SoftKey::from_pem(KEY, CERT).expect("fuzz key"))
}

fn never(_: &x509_cert::Certificate) -> bool {
    false
}

fuzz_target!(|data: &[u8]| {
    let k = key();
    let _ = dodvpn_message::check_envelope(data);
    let _ = decrypt(data, &[k]);
    let opts = VerifyOptions { trust_anchors: &[], is_revoked: &never };
    let _ = open(data, &[k], &opts);
    let _ = verify(data, &opts);
});

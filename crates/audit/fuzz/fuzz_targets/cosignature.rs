//! Cosignature lines from the network (agents POST them to the centre): parsing
//! never panics, what parses prints back byte for byte, and verifying any of
//! them against any key and text never panics.
#![no_main]
use dodvpn_audit::witness::{p256_point, Cosignature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let (line, body) = text.split_once('\n').unwrap_or((text, ""));
        if let Ok(c) = Cosignature::parse_line(line) {
            assert_eq!(c.to_line(), line);
            let _ = c.verify(&[4u8; 65], body);
        }
    }
    let _ = p256_point(data);
});

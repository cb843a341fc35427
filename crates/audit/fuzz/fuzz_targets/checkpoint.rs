//! Signed checkpoint notes from the network (agents read them from the event
//! stream): parsing never panics, and what parses prints back byte for byte.
#![no_main]
use dodvpn_audit::note::SignedNote;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(note) = SignedNote::parse(text) {
            assert_eq!(note.to_text(), text);
            let _ = note.verify("centre", &[4u8; 65]);
        }
    }
});

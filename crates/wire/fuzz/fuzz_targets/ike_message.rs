#![no_main]
//! Message::parse / locate_encrypted on arbitrary bytes; whatever parses
//! must re-emit to bytes that parse to the same payloads.
use dodvpn_wire::{locate_encrypted, IkeHeader, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = IkeHeader::parse_any_version(data);
    let _ = locate_encrypted(data);
    if let Ok(m) = Message::parse(data) {
        let b = m.to_bytes().expect("parsed message must re-emit");
        let again = Message::parse(&b).expect("re-emitted message must parse");
        assert_eq!(again.payloads, m.payloads);
    }
});

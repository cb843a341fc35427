#![no_main]
//! parse_payload_chain (decrypted SK contents): first byte is the first
//! payload type, the rest the chain.
use dodvpn_wire::{emit_payload_chain, parse_payload_chain, PayloadType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if let Ok(ps) = parse_payload_chain(PayloadType::from(first), rest) {
        let mut out = Vec::new();
        let t = emit_payload_chain(&ps, &mut out).expect("parsed chain must re-emit");
        assert_eq!(parse_payload_chain(t, &out).expect("re-parse"), ps);
    }
});

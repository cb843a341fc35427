//! Any bytes as the IKE layer would get them: reading a reflector answer never
//! panics, and whatever reads as an answer writes back to the same bytes.
#![no_main]
use dodvpn_relay::reflect::{answer, probe_nonce, read_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((nonce, seen)) = read_answer(data) {
        assert_eq!(&answer(nonce, seen)[4..], data);
    }
    if let Some(nonce) = probe_nonce(data) {
        assert!(answer(nonce, "[2001:db8::1]:1".parse().unwrap()).len() < data.len());
    }
});

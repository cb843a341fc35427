//! Any bytes as a TSA's answer: an error or a token, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = dodvpn_tsp::token_from_response(data) {
        let _ = dodvpn_tsp::verify(&token, &[0u8; 32], &[], None);
    }
});

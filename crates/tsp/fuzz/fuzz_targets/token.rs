//! Any bytes as a timestamp token: an error or a verdict, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into a CA certificate and a token.
    let cut = data.first().map_or(0, |b| *b as usize).min(data.len());
    let (ca, token) = data.split_at(cut);
    let _ = dodvpn_tsp::verify(token, &[0u8; 32], ca, Some([1; 8]));
});

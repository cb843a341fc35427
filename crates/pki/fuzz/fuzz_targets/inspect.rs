//! Certificates from peers are untrusted bytes (R-OPS-3): `inspect` must
//! return an error, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dodvpn_pki::inspect(data);
});

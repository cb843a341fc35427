//! Behind the integrity check: a real handshake between two seeded endpoints,
//! then fuzzed payload chains sealed with the IKE SA's own keys and sent to
//! one side as its peer would (requests, responses, retransmissions), mixed
//! with the side's own requests and time passing. A malicious but
//! authenticated peer must never panic it or desynchronise its message IDs;
//! the driver (shared with the proptest in tests/authenticated.rs) asserts that.
#![no_main]

#[path = "../../tests/peer/mod.rs"]
mod peer;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = peer::run(data);
});

#![no_main]
//! IPv4/IPv6 header peek.
use dodvpn_wire::peek_ip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = peek_ip(data) {
        assert!(h.total_len <= data.len());
        assert!(h.l4_offset <= h.total_len);
    }
});

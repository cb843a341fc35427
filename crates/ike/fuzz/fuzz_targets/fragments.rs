//! The RFC 7383 fragment path without keys: arbitrary bytes as IKE messages
//! (the SKF locator must never panic), and arbitrary fragment sequences fed to
//! the reassembler with time passing, which must never panic nor return more
//! than its limits allow. The keyed path (each fragment checked before it is
//! stored) is driven by tests/fragment.rs.
#![no_main]

use std::time::{Duration, Instant};

use dodvpn_ike::fragment::{Added, Fragment, Limits, Reassembler};
use dodvpn_wire::PayloadType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dodvpn_wire::locate_encrypted(data);
    let _ = dodvpn_wire::Message::parse(data);
    let limits = Limits {
        max_fragments: 16,
        max_bytes: 2048,
        timeout: Duration::from_secs(2),
    };
    let mut r = Reassembler::new(limits);
    let start = Instant::now();
    let mut now = start;
    let mut rest = data;
    while rest.len() >= 7 {
        let (h, tail) = rest.split_at(7);
        let len = (h[6] as usize).min(tail.len());
        let (plain, tail) = tail.split_at(len);
        rest = tail;
        now += Duration::from_millis(u64::from(h[0] & 0x0f) * 100);
        let f = Fragment {
            message_id: u32::from(h[0] >> 6),
            number: u16::from_be_bytes([h[1], h[2]]) % 20,
            total: u16::from_be_bytes([h[3], h[4]]) % 20,
            inner_next: PayloadType::from(h[5]),
            plain: plain.to_vec(),
        };
        if let Added::Complete(_, bytes) = r.add(now, f) {
            assert!(bytes.len() <= limits.max_bytes);
        }
    }
});

#![no_main]
//! RFC 3948 demux, ESP header and trailer checks.
use dodvpn_wire::{check_esp_trailer, classify_udp4500, EspHeader, Message, Udp4500};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match classify_udp4500(data) {
        Udp4500::Ike(m) => {
            let _ = Message::parse(m);
        }
        Udp4500::Esp(h) => assert_eq!(EspHeader::parse(data), Ok(h)),
        Udp4500::Keepalive | Udp4500::Invalid => {}
    }
    if let Ok(t) = check_esp_trailer(data) {
        assert_eq!(t.payload_len + t.pad_len as usize + 2, data.len());
    }
});

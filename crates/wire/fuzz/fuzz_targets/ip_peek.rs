#![no_main]
//! IPv4/IPv6 header peek, the upper-layer walk, TCP/UDP headers and the TOS rewrite.
use dodvpn_wire::{peek_ip, set_tos, TcpHeader, UdpHeader, UpperLayer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = peek_ip(data) else {
        return;
    };
    assert!(h.header_len() <= data.len());
    let ul = h.upper_layer();
    if let Ok(UpperLayer::Header { offset, .. }) = ul {
        assert!(offset <= data.len());
        let _ = (TcpHeader::parse(&data[offset..]), UdpHeader::parse(&data[offset..]));
    }
    let (src, dst, tos) = (h.src(), h.dst(), h.tos());
    let mut c = data.to_vec();
    assert!(set_tos(&mut c, !tos));
    let h2 = peek_ip(&c).expect("still a packet");
    assert_eq!((h2.tos(), h2.src(), h2.dst(), h2.upper_layer()), (!tos, src, dst, ul));
});

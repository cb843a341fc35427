//! Address mapping rewrites packets in place (addresses, checksums, quoted headers of
//! ICMP errors): it must never panic or grow the packet, and a packet mapped out and
//! back in (with the roles of source and destination swapped) must not be corrupted
//! beyond the addresses it was asked to change.
#![no_main]
use dodvpn_dataplane::netmap::NetMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let net = |s: &str| s.parse().expect("a prefix");
    let map = NetMap::new(&[(net("10.2.0.0/24"), net("100.64.1.0/24"))]).expect("a mapping");
    let mut pkt = data.to_vec();
    let len = pkt.len();
    map.outbound(&mut pkt);
    assert_eq!(pkt.len(), len);
    map.inbound(&mut pkt);
    assert_eq!(pkt.len(), len);
});

//! The per-SA packet filter reads untrusted decrypted packets (and whatever the TUN
//! hands over): it must never panic, whatever the bytes, in either direction.
#![no_main]
use dodvpn_dataplane::{Direction, FlowRule, PacketFilter, Side};
use libfuzzer_sys::fuzz_target;

fn filter() -> PacketFilter {
    let net = |s: &str| s.parse().expect("a prefix");
    let mut tcp = FlowRule::service(Side::Local, Some(6), &[(22, 22), (8000, 8100)]);
    tcp.remote_hosts = vec![net("10.2.0.50/32")];
    PacketFilter::new(
        vec![net("10.1.0.0/24"), net("fd00:1::/64")],
        vec![net("10.2.0.0/24"), net("fd00:2::/64")],
        vec![
            tcp,
            FlowRule::service(Side::Remote, Some(17), &[(514, 514)]),
            FlowRule::service(Side::Local, Some(1), &[]),
            FlowRule::service(Side::Remote, None, &[]),
        ],
    )
}

fuzz_target!(|data: &[u8]| {
    let f = filter();
    let out = f.verdict(Direction::Outbound, data);
    let inb = f.verdict(Direction::Inbound, data);
    // `allows` is the verdict's yes/no, nothing more.
    assert_eq!(f.allows(Direction::Outbound, data), out == dodvpn_dataplane::Verdict::Allow);
    assert_eq!(f.allows(Direction::Inbound, data), inb == dodvpn_dataplane::Verdict::Allow);
});

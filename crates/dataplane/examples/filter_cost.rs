//! Per-packet cost of [`PacketFilter::verdict`] (run with `--release`):
//! the filter of `bench.sh`'s filtered run (three rules, the matching one
//! last) on a 1400-byte TCP data segment, both directions.
//!
//! ```text
//! cargo run --release -p dodvpn-dataplane --example filter_cost
//! ```

use std::hint::black_box;
use std::time::Instant;

use dodvpn_dataplane::{Direction, FlowRule, PacketFilter, Side, Verdict};

fn main() {
    let n = |s: &str| s.parse().unwrap();
    let f = PacketFilter::new(
        vec![n("10.10.0.0/16")],
        vec![n("10.10.2.0/24")],
        vec![
            FlowRule::service(Side::Local, Some(1), &[]),
            FlowRule::service(Side::Remote, Some(6), &[(5201, 5201)]),
            FlowRule::service(Side::Local, Some(6), &[(5201, 5201)]),
        ],
    );
    let mut pkt = vec![0u8; 1400];
    pkt[0] = 0x45;
    pkt[9] = 6;
    pkt[12..16].copy_from_slice(&[10, 10, 1, 1]);
    pkt[16..20].copy_from_slice(&[10, 10, 2, 1]);
    pkt[20..22].copy_from_slice(&40000u16.to_be_bytes());
    pkt[22..24].copy_from_slice(&5201u16.to_be_bytes());
    pkt[32] = 5 << 4;
    pkt[33] = 0x10;
    let mut reply = pkt.clone();
    reply[12..16].copy_from_slice(&[10, 10, 2, 1]);
    reply[16..20].copy_from_slice(&[10, 10, 1, 1]);
    reply[20..24].copy_from_slice(&[0x14, 0x51, 0x9c, 0x40]);
    assert_eq!(f.verdict(Direction::Outbound, &pkt), Verdict::Allow);
    assert_eq!(f.verdict(Direction::Inbound, &reply), Verdict::Allow);
    const N: u32 = 20_000_000;
    for (name, dir, p) in [
        ("outbound data", Direction::Outbound, &pkt),
        ("inbound reply", Direction::Inbound, &reply),
    ] {
        let t = Instant::now();
        let mut ok = 0u32;
        for _ in 0..N {
            ok += u32::from(black_box(&f).allows(black_box(dir), black_box(p)));
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(N);
        assert_eq!(ok, N);
        println!("{name}: {ns:.1} ns per packet");
    }
}

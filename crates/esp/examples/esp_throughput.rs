//! Single-core ESP throughput: seal and open 1400-byte inner packets for
//! about two seconds per AEAD and print Gbit/s and ns/packet.
//!
//! cargo run --release -p dodvpn-esp --example esp_throughput [seconds-per-aead]

use std::time::{Duration, Instant};

use dodvpn_esp::*;

const INNER: usize = 1400;
const BATCH: usize = 256;

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    println!("inner packet {INNER} B, batches of {BATCH}, ~{secs} s per AEAD, one core");
    println!(
        "{:<18} {:>12} {:>12} {:>12} {:>12}",
        "aead", "seal Gbit/s", "seal ns/pkt", "open Gbit/s", "open ns/pkt"
    );
    for aead in Aead::EVERY {
        let km: Vec<u8> = (0..aead.keymat_len() as u8).collect();
        let mut out = OutboundSa::new(0x1000, aead, &km, true).unwrap();
        let mut inb = InboundSa::new(0x1000, aead, &km, true).unwrap();
        let mut bufs: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| vec![0u8; HEADROOM + INNER + TAILROOM])
            .collect();
        let mut lens = [0usize; BATCH];
        let (mut seal_t, mut open_t) = (Duration::ZERO, Duration::ZERO);
        let mut packets = 0u64;
        let started = Instant::now();
        while started.elapsed() < budget {
            for b in bufs.iter_mut() {
                b[HEADROOM] = 0x45;
            }
            let t = Instant::now();
            for (b, l) in bufs.iter_mut().zip(lens.iter_mut()) {
                *l = out.seal(INNER, b, NH_IPV4).unwrap();
            }
            seal_t += t.elapsed();
            let t = Instant::now();
            for (b, l) in bufs.iter_mut().zip(lens.iter()) {
                let (r, _) = inb.open(&mut b[..*l]).unwrap();
                std::hint::black_box(r);
            }
            open_t += t.elapsed();
            packets += BATCH as u64;
        }
        let gbps = |d: Duration| (packets * INNER as u64 * 8) as f64 / d.as_secs_f64() / 1e9;
        let ns = |d: Duration| d.as_nanos() as f64 / packets as f64;
        println!(
            "{:<18} {:>12.2} {:>12.0} {:>12.2} {:>12.0}",
            format!("{aead:?}"),
            gbps(seal_t),
            ns(seal_t),
            gbps(open_t),
            ns(open_t)
        );
        assert_eq!(inb.counters().packets_opened, packets);
    }
}

//! The cost of one decision with a large allowlist (bench/gateway.sh): 100,000 exact
//! entries over 97 domains plus wildcards, asked for listed hosts, hosts under a
//! wildcard and unlisted hosts in turn. Prints one JSON object: the median of the
//! rounds' nanoseconds per decision, and the cost of building the list.
//!
//!   cargo run --release -p dodvpn-gateway --example decide [ENTRIES] [ROUNDS]

use std::hint::black_box;
use std::time::Instant;

use dodvpn_gateway::{Allowlist, Entry, Target, Verdict};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let t = Instant::now();
    let mut entries: Vec<Entry> = (0..n)
        .filter_map(|i| Entry::parse(&format!("site{i}.example{}.jp", i % 97)).ok())
        .collect();
    entries.extend((0..100).filter_map(|i| Entry::parse(&format!("*.cdn{i}.example.com")).ok()));
    let list = Allowlist::new(entries);
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let hosts: Vec<String> = (0..3000)
        .map(|i| match i % 3 {
            0 => format!("site{}.example{}.jp", i * 31 % n, (i * 31 % n) % 97),
            1 => format!("a.b.cdn{}.example.com", i % 100),
            _ => format!("unlisted{i}.example.org"),
        })
        .collect();
    let per_round = 300_000;
    let mut ns = Vec::new();
    let mut allowed = 0usize;
    for _ in 0..rounds {
        let t = Instant::now();
        for k in 0..per_round {
            let host = &hosts[k % hosts.len()];
            let v = list.decide(black_box(&Target {
                host,
                port: 443,
                path: None,
            }));
            allowed += matches!(v, Verdict::Allow(_)) as usize;
        }
        ns.push(t.elapsed().as_nanos() as f64 / per_round as f64);
    }
    ns.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{{\"entries\":{},\"rounds\":{rounds},\"decisions_per_round\":{per_round},\"ns_per_decision_median\":{:.1},\"ns_per_decision_min\":{:.1},\"ns_per_decision_max\":{:.1},\"build_ms\":{build_ms:.1},\"allowed_fraction\":{:.3}}}",
        list.len(),
        ns[ns.len() / 2],
        ns[0],
        ns[ns.len() - 1],
        allowed as f64 / (rounds * per_round) as f64
    );
}

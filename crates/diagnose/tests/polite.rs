//! The politeness limit on the wire: listeners on loopback count every connection the
//! diagnosis makes and when; no one-second window may hold more than the rate allows.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dodvpn_diagnose::{diagnose, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_rate_probes_per_second_reach_the_target() {
    let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut ports = Vec::new();
    for _ in 0..20 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(l.local_addr().unwrap().port());
        let seen = seen.clone();
        tokio::spawn(async move {
            // Accept and close at once: every connection is one probe counted here.
            while let Ok((s, _)) = l.accept().await {
                seen.lock().unwrap().push(Instant::now());
                drop(s);
            }
        });
    }
    let rate = 25;
    let opts = Options {
        ports: ports.clone(),
        rate,
        greeting_wait: Duration::from_millis(50),
        read_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        udp_and_icmp: false,
        ..Options::default()
    };
    let t0 = Instant::now();
    let report = diagnose(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], &opts).await;
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut at = seen.lock().unwrap().clone();
    at.sort();
    let n = at.len();
    // Every port was connected to (then the HTTP and TLS checks' own connections).
    assert!(n >= ports.len(), "only {n} connections seen");
    assert!(
        report.probes as usize >= n,
        "report counts {} probes, wire saw {n}",
        report.probes
    );
    let mut worst = 0;
    for (i, &t) in at.iter().enumerate() {
        let in_window = at[i..]
            .iter()
            .take_while(|&&u| u < t + Duration::from_secs(1))
            .count();
        worst = worst.max(in_window);
    }
    // One slot per 40 ms: a window of one second holds 25 slots (26 counting both ends);
    // one more for scheduling jitter between connect and accept.
    assert!(
        worst <= rate as usize + 2,
        "{worst} connections in one second at rate {rate}"
    );
    assert!(
        took >= Duration::from_secs_f64((n - 1) as f64 / rate as f64 * 0.95),
        "{n} probes in {took:?} at rate {rate}"
    );
    eprintln!(
        "{n} connections, worst 1-second window {worst}, took {took:?}, report.probes {}",
        report.probes
    );
}

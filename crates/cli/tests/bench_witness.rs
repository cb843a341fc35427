//! Issue 15 benchmark (bench/tlog/witness.sh): the centre's CPU per checkpoint
//! for witnessing, measured on a real centre process over mutual TLS.
//!
//! D devices are enrolled (TR D.6 through the real CLI). Then, for R checkpoints
//! (R·D ≥ 1,000 cosignatures in all), each device does what its agent does on an
//! `audit.checkpoint` event: GET the consistency proof from the checkpoint it
//! kept, then POST its cosignature (made with its service key in its key store).
//! The centre's user + system CPU (/proc/PID/stat) is read around the GET burst
//! and the POST burst of each round (connections already open, as an agent's
//! are); the figure per checkpoint with 1,000 witnesses is the CPU per call ×
//! 1,000. Ignored in normal runs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A device as the benchmark drives it: id, key store, tier-2 client.
type Witness = (
    String,
    Arc<dyn dodvpn_pki::KeyStore>,
    dodvpn_agent::CenterClient,
);

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by bench/tlog/witness.sh"]
async fn centre_cpu_per_checkpoint_for_cosigning() {
    std::env::set_var("DODVPN_AUDIT_CHECKPOINT_SECS", "1");
    let devices = env_usize("WITNESS_BENCH_DEVICES", 100);
    let rounds = 1000_usize.div_ceil(devices);
    let conc = env_usize("WITNESS_BENCH_CONCURRENCY", 16);
    let backend = if std::env::var("WITNESS_BENCH_BACKEND").as_deref() == Ok("postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let c = Centre::start(backend);
    let org = c.org("Bench Hospital", "hospital");
    let t = Instant::now();
    let mut sites = Vec::new();
    for i in 0..devices {
        sites.push(
            onboard(
                &c,
                &org,
                &format!("WB-{i}"),
                &format!("10.{}.{}.0/24", 64 + i / 256, i % 256),
            )
            .await,
        );
    }
    eprintln!(
        "{devices} devices enrolled in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let clients: Arc<Vec<Witness>> = Arc::new(
        sites
            .iter()
            .map(|s| (s.id.clone(), s.store.clone(), s.tier2(&c)))
            .collect(),
    );
    // Agents keep their connection to the centre warm (the event stream, and the
    // pooled connection of the previous round): open each one before measuring.
    for (_, _, client) in clients.iter() {
        let _: Value = client.get("/api/v1/device/whoami").await.unwrap();
    }
    let pid = c.pid();
    let (mut get_cpu, mut post_cpu, mut get_wall, mut post_wall) = (0.0, 0.0, 0.0, 0.0);
    let mut prev = 0u64;
    for r in 0..rounds {
        c.org(&format!("Round {r}"), "clinic");
        let records = c.admin_ok(&["audit", "verify"])["records"]
            .as_u64()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        // The checkpoint that covers every record so far (no newer one comes in this round).
        let size = loop {
            let cp = c.admin(&["audit", "checkpoint"]).unwrap_or(Value::Null);
            let s = cp["size"].as_u64().unwrap_or(0);
            if s >= records && s > prev {
                break s;
            }
            assert!(Instant::now() < deadline, "no new checkpoint");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Let the signer's round finish before measuring.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let burst = |post: bool, size: u64, prev: u64| {
            let clients = clients.clone();
            async move {
                let sem = Arc::new(tokio::sync::Semaphore::new(conc));
                let mut hs = Vec::new();
                for i in 0..clients.len() {
                    let (clients, sem) = (clients.clone(), sem.clone());
                    hs.push(tokio::spawn(async move {
                        let _p = sem.acquire().await.unwrap();
                        let (id, store, client) = &clients[i];
                        let p: Value = client
                            .get(&format!("/api/v1/device/audit/consistency?old={prev}"))
                            .await
                            .unwrap();
                        if !post {
                            return;
                        }
                        let note =
                            dodvpn_audit::note::SignedNote::parse(p["note"].as_str().unwrap())
                                .unwrap();
                        assert_eq!(note.head.size, size);
                        let spki = store
                            .public_key(dodvpn_pki::Tier::Service)
                            .unwrap()
                            .unwrap();
                        let point = dodvpn_audit::witness::p256_point(&spki).unwrap().to_vec();
                        let cos = dodvpn_audit::witness::Cosignature::make(
                            id,
                            &point,
                            &note,
                            1_764_000_000_000,
                            |m| {
                                store
                                    .sign(dodvpn_pki::Tier::Service, m)
                                    .map_err(|e| e.to_string())
                            },
                        )
                        .unwrap();
                        // Only the POST is timed on the centre: make the line first.
                        let _: Value = client
                            .post(
                                "/api/v1/device/audit/cosignatures",
                                &json!({"size": size, "cosignature": cos.to_line()}),
                            )
                            .await
                            .unwrap();
                    }));
                }
                for h in hs {
                    h.await.unwrap();
                }
            }
        };
        let (c0, w0) = (cpu_secs(pid), Instant::now());
        burst(false, size, prev).await;
        let (c1, w1) = (cpu_secs(pid), Instant::now());
        get_cpu += c1 - c0;
        get_wall += (w1 - w0).as_secs_f64();
        // The POST burst repeats the GET (as the agent does); its CPU is net of the GET's.
        burst(true, size, prev).await;
        let (c2, w2) = (cpu_secs(pid), Instant::now());
        post_cpu += (c2 - c1) - (c1 - c0);
        post_wall += (w2 - w1).as_secs_f64() - (w1 - w0).as_secs_f64();
        let cp = c.admin_ok(&["audit", "checkpoint"]);
        assert_eq!(cp["size"].as_u64(), Some(size));
        assert_eq!(cp["cosignatures"].as_u64(), Some(devices as u64), "{cp}");
        prev = size;
    }
    let calls = (rounds * devices) as f64;
    println!(
        "WITNESS BENCH backend={backend:?} devices={devices} checkpoints={rounds} calls_each={calls} concurrency={conc}"
    );
    println!(
        "centre CPU per 1,000 consistency-proof GETs: {:.0} ms ({:.2} ms per call; wall {:.2} ms per call)",
        get_cpu / calls * 1e6,
        get_cpu / calls * 1e3,
        get_wall / calls * 1e3
    );
    println!(
        "centre CPU per 1,000 cosignature POSTs: {:.0} ms ({:.2} ms per call; wall {:.2} ms per call)",
        post_cpu / calls * 1e6,
        post_cpu / calls * 1e3,
        post_wall / calls * 1e3
    );
    println!(
        "centre CPU per checkpoint with 1,000 witnesses (GET + POST each): {:.0} ms",
        (get_cpu + post_cpu) / calls * 1e6
    );
}

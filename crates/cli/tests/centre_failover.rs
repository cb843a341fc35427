//! Failover under load (issue 17 item 6, R-OPS-1): two centre replicas on one real
//! PostgreSQL, behind one address (a real HAProxy in TCP mode), with N connected agents
//! (500 by default; `DODVPN_FAILOVER_AGENTS`) running the agent's own sync loop, and a
//! steady stream of admin writes and connection applications. One replica is killed with
//! SIGKILL. Asserted:
//! - every agent whose stream was on the killed replica reconnects through the proxy to
//!   the other within 10 s, and resumes its event stream by version: afterwards each
//!   agent's grants equal what the centre holds for it (no update missed, none resynced);
//! - no write acknowledged before (or after) the kill is lost;
//! - the audit chain verifies.
//!
//! The reconnect times are printed, and written as JSON to `DODVPN_FAILOVER_REPORT` when
//! set (bench/failover.sh runs this test in release and keeps the figures).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use dodvpn_agent::enroll::{enroll, provision};
use dodvpn_agent::sync::{Agent, SyncState, Update};
use dodvpn_agent::CenterClient;
use dodvpn_pki::{FileKeyStore, KeyStore, Tier};
use serde_json::{json, Value};

/// A real HAProxy in TCP mode in front of the replicas, stopped by its PID on drop.
struct Proxy {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// `conns`: connections to allow (HAProxy needs two descriptors for each, and
    /// refuses to start when the open-files limit cannot hold them).
    fn start(backends: &[&str], conns: usize) -> Proxy {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!("    server r{i} {b} check inter 200ms fall 2 rise 2 on-marked-down shutdown-sessions\n")
            })
            .collect();
        // Long client/server timeouts: event streams are held for hours. `redispatch`
        // sends a connection refused by a dead replica to the other one.
        let cfg = format!(
            "global\n    maxconn {conns}\n\
defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1h\n    timeout server 1h\n    retries 3\n    option redispatch\n\
frontend centre\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
backend replicas\n    balance roundrobin\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy");
        let mut child = child;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("haproxy exited at start ({st}); its messages are above");
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Proxy {
            child,
            url: format!("https://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_haproxy() {
    let ok = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/setup.sh"
    ))
    .args(["--check", "haproxy"])
    .status()
    .map(|s| s.success())
    .unwrap_or(false);
    assert!(
        ok,
        "the failover test needs HAProxy: run scripts/setup.sh (as root) to install it"
    );
}

/// What each agent's sync loop reported, with times.
#[derive(Default)]
struct Seen {
    connected: Vec<Instant>,
    disconnected: Vec<Instant>,
}

struct Fleet {
    ids: Vec<String>,
    stores: Vec<Arc<dyn KeyStore>>,
    _dirs: Vec<tempfile::TempDir>,
}

/// TR D.6 c–l for `n` devices through the proxy, 8 at a time, with the agent library.
async fn enrol_fleet(admin: &CenterClient, url: &str, ca: &str, org: &str, n: usize) -> Fleet {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let mut workers = vec![];
    for _ in 0..8 {
        let (admin, url, ca, org) = (
            admin.clone(),
            url.to_string(),
            ca.to_string(),
            org.to_string(),
        );
        let (next, out) = (next.clone(), out.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let subnet = format!("10.{}.{}.0/24", 64 + i / 256, i % 256);
                let d: Value = admin
                    .post(
                        "/api/v1/devices",
                        &json!({"serial": format!("FO-{i}"), "model": "DV-100", "owner_org": org, "subnets": [subnet]}),
                    )
                    .await
                    .expect("register");
                let id = d["id"].as_str().unwrap().to_string();
                let tmp = tempfile::tempdir().unwrap();
                let store: Arc<dyn KeyStore> = Arc::new(
                    FileKeyStore::open(&tmp.path().join("ks"), PASSPHRASE.as_bytes()).unwrap(),
                );
                provision(&admin, &ca, store.as_ref(), &id).await.expect("provision");
                for step in ["deliver", "service/apply", "service/approve"] {
                    let _: Value = admin
                        .send(admin.request(reqwest::Method::POST, &format!("/api/v1/devices/{id}/{step}")))
                        .await
                        .unwrap_or_else(|e| panic!("{step}: {e:#}"));
                }
                enroll(&url, store.clone()).await.expect("agent enroll");
                let _: Value = admin
                    .send(admin.request(reqwest::Method::POST, &format!("/api/v1/devices/{id}/service/start")))
                    .await
                    .expect("service start");
                let _: Value = admin
                    .post("/api/v1/groups/fleet/members", &json!({"device_id": id}))
                    .await
                    .expect("group add");
                out.lock().unwrap().insert(i, (id, store, tmp));
                if (i + 1) % 100 == 0 {
                    eprintln!("failover: {} of {n} devices enrolled", i + 1);
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let mut fleet = Fleet {
        ids: vec![],
        stores: vec![],
        _dirs: vec![],
    };
    for (_, (id, store, tmp)) in std::mem::take(&mut *out.lock().unwrap()) {
        fleet.ids.push(id);
        fleet.stores.push(store);
        fleet._dirs.push(tmp);
    }
    fleet
}

/// Grant id → version, as the centre holds it for one device.
async fn centre_grants(client: &CenterClient) -> anyhow::Result<BTreeMap<String, u64>> {
    let st: Value = client.get("/api/v1/device/state").await?;
    Ok(st["connection_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["info"]["grant_id"].as_str().unwrap().to_string(),
                s["info"]["version"].as_u64().unwrap(),
            )
        })
        .collect())
}

fn agent_grants(store: &dyn KeyStore) -> BTreeMap<String, u64> {
    SyncState::load(store)
        .unwrap()
        .grants
        .into_iter()
        .map(|(k, s)| (k, s.info.version))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_no_agent_no_write_and_no_update() {
    require_haproxy();
    let n: usize = std::env::var("DODVPN_FAILOVER_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let c1 = Centre::start(Backend::Postgres);
    let c2 = c1.replica();
    let proxy = Proxy::start(&[&c1.listen, &c2.listen], (4 * n).clamp(2000, 9000));
    let ca = c1.ca_pem();
    let admin = CenterClient::admin(&proxy.url, &ca, c1.credential().trim()).unwrap();

    let org = c1.org("Failover Hospital", "hospital");
    c1.admin_ok(&["group", "create", "fleet"]);
    set_policy(&c1, &org, &open_policy());
    let t = Instant::now();
    let fleet = enrol_fleet(&admin, &proxy.url, &ca, &org, n).await;
    eprintln!(
        "failover: {n} devices enrolled through the proxy in {:?}",
        t.elapsed()
    );

    // Every agent runs the agent's own sync loop through the proxy.
    let seen: Vec<Arc<Mutex<Seen>>> = (0..n).map(|_| Arc::default()).collect();
    let mut loops = vec![];
    for (store, seen) in fleet.stores.iter().zip(&seen) {
        let mut agent = Agent::open(store.clone(), Some(&proxy.url)).unwrap();
        let seen = seen.clone();
        loops.push(tokio::spawn(async move {
            let mut on = move |u: &Update, _: &SyncState| {
                let mut s = seen.lock().unwrap();
                match u {
                    Update::Connected { .. } => s.connected.push(Instant::now()),
                    Update::Disconnected { .. } => s.disconnected.push(Instant::now()),
                    _ => {}
                }
            };
            let _ = agent.run(&mut on).await;
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.iter().any(|s| s.lock().unwrap().connected.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "not every agent connected within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The replicas' own count of open streams tells which agents sit on the victim.
    eprintln!("failover: {n} agents connected");

    // Load: admin writes and connection applications, each acknowledged one recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_orgs = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_grants = Arc::new(Mutex::new(Vec::<(usize, usize, String)>::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = vec![];
    {
        let (admin, stop, acked, failed) = (
            admin.clone(),
            stop.clone(),
            acked_orgs.clone(),
            failed.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let r: anyhow::Result<Value> = admin
                    .post(
                        "/api/v1/orgs",
                        &json!({"name": format!("Load Clinic {k}"), "kind": "clinic"}),
                    )
                    .await;
                match r {
                    Ok(v) => acked
                        .lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_string()),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    for w in 0..2usize {
        let (stop, acked, failed) = (stop.clone(), acked_grants.clone(), failed.clone());
        let clients: Vec<CenterClient> = fleet
            .stores
            .iter()
            .map(|s| CenterClient::device(&proxy.url, &ca, s.clone(), Tier::Service).unwrap())
            .collect();
        let ids = fleet.ids.clone();
        load.push(tokio::spawn(async move {
            let mut k = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let from = (k * 31) % ids.len();
                let to = (k * 17 + 1 + w) % ids.len();
                if from == to {
                    continue;
                }
                let r: anyhow::Result<Value> = clients[from]
                    .post("/api/v1/device/connections", &json!({"to_device": ids[to]}))
                    .await;
                match r {
                    Ok(v) => {
                        let g = v["outcomes"][0]["grant_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        acked.lock().unwrap().push((from, to, g));
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    let before: Vec<usize> = seen
        .iter()
        .map(|s| s.lock().unwrap().connected.len())
        .collect();
    let mut c1 = c1;
    let killed_at = Instant::now();
    c1.kill9();
    eprintln!("failover: replica 1 killed (SIGKILL) under load");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }

    // Reconnect time of each agent that lost its stream: kill → its next `Connected`.
    let deadline = killed_at + Duration::from_secs(10);
    loop {
        let waiting = seen
            .iter()
            .filter(|s| {
                let s = s.lock().unwrap();
                s.disconnected.iter().any(|t| *t >= killed_at)
                    && !s.connected.iter().any(|t| *t >= killed_at)
            })
            .count();
        if waiting == 0 || Instant::now() > deadline {
            assert_eq!(
                waiting, 0,
                "{waiting} agents had not reconnected 10 s after the kill"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut reconnect_s: Vec<f64> = seen
        .iter()
        .zip(&before)
        .filter_map(|(s, b)| {
            let s = s.lock().unwrap();
            (s.connected.len() > *b).then(|| {
                let t = s.connected.iter().find(|t| **t >= killed_at).unwrap();
                t.duration_since(killed_at).as_secs_f64()
            })
        })
        .collect();
    reconnect_s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let moved = reconnect_s.len();
    assert!(
        moved >= n / 4,
        "only {moved} of {n} agents lost their stream: the proxy did not spread them over both replicas"
    );
    let max = *reconnect_s.last().unwrap();
    assert!(max < 10.0, "slowest reconnect took {max:.2} s (limit 10 s)");

    // No update missed: each agent's grants equal the centre's, by id and version.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, store) in fleet.stores.iter().enumerate() {
        let client = CenterClient::device(&c2.url, &ca, store.clone(), Tier::Service).unwrap();
        let want = centre_grants(&client).await.unwrap();
        loop {
            let have = agent_grants(store.as_ref());
            if have == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "agent {i} ({}) missed updates: it holds {have:?}, the centre {want:?}",
                fleet.ids[i]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // No acknowledged write lost: every org and every grant is on the survivor.
    let orgs = acked_orgs.lock().unwrap().clone();
    for id in &orgs {
        let v: Value = admin.get(&format!("/api/v1/orgs/{id}")).await.unwrap();
        assert_eq!(v["id"], json!(id), "acknowledged org {id} is lost");
    }
    let grants = acked_grants.lock().unwrap().clone();
    let mut grant_ids = BTreeSet::new();
    for (from, to, g) in &grants {
        assert!(
            !g.is_empty(),
            "an acknowledged application {from} → {to} had no grant"
        );
        grant_ids.insert(g.clone());
        let client =
            CenterClient::device(&c2.url, &ca, fleet.stores[*to].clone(), Tier::Service).unwrap();
        let held = centre_grants(&client).await.unwrap();
        assert!(
            held.contains_key(g),
            "acknowledged grant {g} ({from} → {to}) is lost"
        );
    }
    assert!(
        !orgs.is_empty() && !grants.is_empty(),
        "the load wrote nothing"
    );
    assert!(c2.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());

    let failed = failed.load(Ordering::Relaxed);
    let (p50, p99) = (
        percentile(&reconnect_s, 50.0),
        percentile(&reconnect_s, 99.0),
    );
    eprintln!(
        "failover: {moved} of {n} agents moved to the surviving replica; reconnect p50 {p50:.2} s, p99 {p99:.2} s, max {max:.2} s; \
{} admin writes and {} applications ({} grants) acknowledged, all present; {failed} requests failed at the kill (not acknowledged)",
        orgs.len(),
        grants.len(),
        grant_ids.len()
    );
    if let Ok(path) = std::env::var("DODVPN_FAILOVER_REPORT") {
        let report = json!({
            "agents": n, "moved": moved,
            "reconnect_s": {"p50": p50, "p99": p99, "max": max},
            "acknowledged": {"admin_writes": orgs.len(), "applications": grants.len(), "distinct_grants": grant_ids.len()},
            "failed_requests_at_kill": failed,
            "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        });
        std::fs::write(
            Path::new(&path),
            serde_json::to_vec_pretty(&report).unwrap(),
        )
        .unwrap();
    }
    for l in loops {
        l.abort();
    }
}

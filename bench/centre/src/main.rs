//! `centre-bench`: control-plane benchmarks of a running dodvpn centre.
//!
//! Everything goes over HTTPS to the real centre, the way devices and administrators
//! talk to it: administrators with the provider's bearer credential, devices with
//! mutual TLS (tier 1 for enrolment, tier 2 afterwards) through the agent crate's
//! `CenterClient`, `enroll::{provision, enroll}` and `sse::SseParser`. Only the key
//! store is the benchmark's own (see `keystore.rs`: no Argon2 per simulated device).
//!
//! Phases (see bench/README.md):
//!  A  full TR D.6 enrolment flow, N devices, C workers → devices/s
//!  B  the enrolment call alone (POST /api/v1/device/enroll), warm tier-1 connections
//!  C  connection applications (POST /api/v1/device/connections), closed loop
//!  D  open-loop mixed load at a fixed rate, latency from the scheduled send time
//!  E  push propagation to 1,000 connected devices + centre memory per stream
//!  F  (--scale S) S registered devices, then GET /api/v1/devices/{id} latency
//!     (with --scale-first, before every other phase, so they all run at that size)
//!
//! With --replica-url (two replicas on one PostgreSQL, bench/scale.sh), phase E opens
//! every second stream on the replica, and memory is reported for both processes.
//!
//! Started by bench/centre.sh, which owns the centre process; this program only reads
//! that process's /proc status for memory figures.

mod keystore;
mod stats;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use dodvpn_agent::enroll::{enroll, provision};
use dodvpn_agent::sse::SseParser;
use dodvpn_agent::CenterClient;
use dodvpn_pki::{KeyStore, Tier};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Map, Value};

use keystore::MemKeyStore;
use stats::{median, mix, r3, summarise, Summary};

// ---------------------------------------------------------------- arguments

struct Args {
    url: String,
    data: PathBuf,
    pid: u32,
    devices: usize,
    concurrency: usize,
    enroll_only: usize,
    applications: usize,
    rate: f64,
    duration: f64,
    push_devices: usize,
    push_rounds: usize,
    scale: usize,
    scale_first: bool,
    replica_url: Option<String>,
    replica_pid: u32,
    database: String,
    out: Option<PathBuf>,
    commit: String,
    build: String,
}

const USAGE: &str = "centre-bench --url https://127.0.0.1:PORT --data CENTRE_DATA_DIR --pid CENTRE_PID [options]
  --devices N          phase A: devices through the full enrolment flow (200)
  --concurrency C      concurrent workers (8)
  --enroll-only N      phase B: devices timed on POST /api/v1/device/enroll alone (200)
  --applications N     phase C: connection applications (2000)
  --rate R             phase D: requests per second, open loop (200)
  --duration S         phase D: seconds (10)
  --push-devices N     phase E: connected devices (1000; 0 skips the phase)
  --push-rounds N      phase E: policy changes (5)
  --scale N            phase F: register N more devices, then measure GET latency (off)
  --scale-first        run phase F first, so phases A–E run with those N devices registered
  --replica-url URL    a second replica of the same centre (PostgreSQL): phase E streams alternate
  --replica-pid PID    that replica's PID (memory figures)
  --database TEXT      the centre's database, for the report (\"sqlite (centre default)\")
  --out FILE           JSON results (bench/results/centre-<timestamp>.json by default in centre.sh)
  --commit SHA         git commit recorded in the results
  --build TEXT         build description recorded in the results";

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        url: String::new(),
        data: PathBuf::new(),
        pid: 0,
        devices: 200,
        concurrency: 8,
        enroll_only: 200,
        applications: 2000,
        rate: 200.0,
        duration: 10.0,
        push_devices: 1000,
        push_rounds: 5,
        scale: 0,
        scale_first: false,
        replica_url: None,
        replica_pid: 0,
        database: "sqlite (centre default)".into(),
        out: None,
        commit: "unknown".into(),
        build: "unknown".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "-h" || k == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if k == "--scale-first" {
            a.scale_first = true;
            continue;
        }
        let v = it.next().ok_or_else(|| anyhow!("{k} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.parse::<usize>().with_context(|| format!("{k}: not a number: {v}"));
        match k.as_str() {
            "--url" => a.url = v.trim_end_matches('/').to_string(),
            "--data" => a.data = PathBuf::from(v),
            "--pid" => a.pid = v.parse().context("--pid")?,
            "--devices" => a.devices = num(&v)?,
            "--concurrency" => a.concurrency = num(&v)?.max(1),
            "--enroll-only" => a.enroll_only = num(&v)?,
            "--applications" => a.applications = num(&v)?,
            "--rate" => a.rate = v.parse().context("--rate")?,
            "--duration" => a.duration = v.parse().context("--duration")?,
            "--push-devices" => a.push_devices = num(&v)?,
            "--push-rounds" => a.push_rounds = num(&v)?.max(1),
            "--scale" => a.scale = num(&v)?,
            "--replica-url" => a.replica_url = Some(v.trim_end_matches('/').to_string()),
            "--replica-pid" => a.replica_pid = v.parse().context("--replica-pid")?,
            "--database" => a.database = v,
            "--out" => a.out = Some(PathBuf::from(v)),
            "--commit" => a.commit = v,
            "--build" => a.build = v,
            _ => bail!("unknown option {k}\n{USAGE}"),
        }
    }
    if a.url.is_empty() || a.pid == 0 || a.data.as_os_str().is_empty() {
        bail!("--url, --data and --pid are required\n{USAGE}");
    }
    if !a.url.starts_with("https://127.0.0.1:") {
        bail!("this benchmark talks to a centre on 127.0.0.1 only (got {})", a.url);
    }
    if let Some(r) = &a.replica_url {
        if !r.starts_with("https://127.0.0.1:") || a.replica_pid == 0 {
            bail!("--replica-url must be https://127.0.0.1:PORT and needs --replica-pid");
        }
    }
    if a.devices < 2 {
        bail!("--devices must be at least 2 (connections need a peer)");
    }
    if !(a.rate > 0.0 && a.rate <= 5000.0 && a.duration > 0.0 && a.duration <= 600.0) {
        bail!("--rate must be in (0, 5000] and --duration in (0, 600]");
    }
    Ok(a)
}

// ---------------------------------------------------------------- shared state

struct Ctx {
    url: String,
    /// The second replica, when there is one (streams of phase E alternate).
    replica_url: Option<String>,
    ca: String,
    admin: CenterClient,
    pid: u32,
    /// Makes serial numbers and names unique per run.
    tag: String,
    /// Devices fully enrolled so far (all phases); the centre's RSS is sampled when it hits 1000.
    enrolled: AtomicUsize,
    rss_at_1000: OnceLock<u64>,
    /// Global device index → unique inside subnet.
    next_index: AtomicUsize,
    steps: Mutex<BTreeMap<&'static str, Vec<f64>>>,
}

#[derive(Clone)]
struct Dev {
    id: String,
    /// Tier-2 (service certificate) client, as the agent uses after enrolment.
    client: CenterClient,
    /// The same device's tier-2 client to the second replica, when there is one.
    replica: Option<CenterClient>,
}

impl Ctx {
    fn tier2(&self, store: Arc<dyn KeyStore>) -> anyhow::Result<(CenterClient, Option<CenterClient>)> {
        let client = CenterClient::device(&self.url, &self.ca, store.clone(), Tier::Service)?;
        let replica = match &self.replica_url {
            Some(u) => Some(CenterClient::device(u, &self.ca, store, Tier::Service)?),
            None => None,
        };
        Ok((client, replica))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("no process {pid}"))?;
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kb = rest.trim().trim_end_matches("kB").trim();
            return kb.parse().context("VmRSS unreadable");
        }
    }
    bail!("no VmRSS in /proc/{pid}/status")
}

fn subnet(idx: usize) -> String {
    format!("10.{}.{}.0/24", (idx >> 8) & 0xff, idx & 0xff)
}

/// Run `f(0..n)` on `conc` tokio tasks (so client work spreads over the cores like the
/// centre's does); results come back in index order. Progress goes to stderr.
async fn pool<T, F, Fut>(n: usize, conc: usize, label: &str, f: F) -> Vec<anyhow::Result<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<anyhow::Result<T>>>>> = Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let step = if n >= 1000 { (n / 10).max(1) } else { 100 };
    let mut tasks = Vec::new();
    for _ in 0..conc.clamp(1, n.max(1)) {
        let (f, next, done, results, label) = (f.clone(), next.clone(), done.clone(), results.clone(), label.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(i).await;
                results.lock().unwrap()[i] = Some(r);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if !label.is_empty() && (d % step == 0 || d == n) && n >= 100 {
                    eprintln!("    {label} {d}/{n}");
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut g = results.lock().unwrap();
    g.drain(..).map(|r| r.unwrap_or_else(|| Err(anyhow!("task did not run")))).collect()
}

/// Unwrap a pool's results; report the error count and the first error.
fn all_ok<T>(what: &str, rs: Vec<anyhow::Result<T>>) -> anyhow::Result<Vec<T>> {
    let total = rs.len();
    let mut ok = Vec::with_capacity(total);
    let mut errs = Vec::new();
    for r in rs {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => errs.push(e),
        }
    }
    if let Some(e) = errs.first() {
        bail!("{what}: {} of {total} failed; first error: {e:#}", errs.len());
    }
    Ok(ok)
}

impl Ctx {
    fn record(&self, step: &'static str, t: Instant) {
        let v = ms(t.elapsed());
        self.steps.lock().unwrap().entry(step).or_default().push(v);
    }

    async fn admin_post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.admin.post(path, body).await
    }

    async fn admin_step(&self, id: &str, step: &str) -> anyhow::Result<Value> {
        self.admin.send(self.admin.request(Method::POST, &format!("/api/v1/devices/{id}/{step}"))).await
    }

    fn new_index(&self) -> usize {
        self.next_index.fetch_add(1, Ordering::Relaxed)
    }

    async fn register(&self, idx: usize, org: &str, with_subnet: bool) -> anyhow::Result<String> {
        let subnets: Vec<String> = if with_subnet { vec![subnet(idx)] } else { vec![] };
        let d = self
            .admin_post(
                "/api/v1/devices",
                &json!({"serial": format!("bench-{}-{idx}", self.tag), "model": "bench-router", "owner_org": org, "subnets": subnets}),
            )
            .await
            .context("register")?;
        Ok(d["id"].as_str().ok_or_else(|| anyhow!("register: no id in {d}"))?.to_string())
    }

    /// TR D.6 c–h: register, provision (tier-1 CSR + installed), deliver, apply, approve.
    async fn to_approved(&self, idx: usize, org: &str, timed: bool) -> anyhow::Result<(String, Arc<MemKeyStore>)> {
        let store = Arc::new(MemKeyStore::new(format!("bench-{idx}")));
        let t = Instant::now();
        let id = self.register(idx, org, true).await?;
        if timed {
            self.record("c register (admin)", t);
        }
        let t = Instant::now();
        provision(&self.admin, &self.ca, store.as_ref(), &id).await.context("provision")?;
        if timed {
            self.record("d-e provision: tier-1 CSR + installed", t);
        }
        for (step, name) in [
            ("deliver", "f deliver (admin)"),
            ("service/apply", "g service apply (admin)"),
            ("service/approve", "h service approve (admin)"),
        ] {
            let t = Instant::now();
            self.admin_step(&id, step).await.with_context(|| step.to_string())?;
            if timed {
                self.record(name, t);
            }
        }
        Ok((id, store))
    }

    fn count_enrolled(&self) {
        let n = self.enrolled.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1000 {
            if let Ok(r) = rss_kib(self.pid) {
                let _ = self.rss_at_1000.set(r);
            }
        }
    }

    /// The whole flow of one device (phases A and E).
    async fn enrol_full(&self, org: &str, timed: bool) -> anyhow::Result<Dev> {
        let idx = self.new_index();
        let (id, store) = self.to_approved(idx, org, timed).await?;
        let t = Instant::now();
        let dyn_store: Arc<dyn KeyStore> = store.clone();
        let e = enroll(&self.url, dyn_store.clone()).await.context("agent enroll")?;
        if timed {
            self.record("i-j agent enroll: tier-1 mTLS enroll + tier-2 installed", t);
        }
        if e.device_id != id {
            bail!("enrolled as {} but registered as {id}", e.device_id);
        }
        let t = Instant::now();
        self.admin_step(&id, "service/start").await.context("service start")?;
        if timed {
            self.record("l service start (admin)", t);
        }
        let (client, replica) = self.tier2(dyn_store)?;
        self.count_enrolled();
        Ok(Dev { id, client, replica })
    }
}

// ---------------------------------------------------------------- results

struct Report {
    json: Map<String, Value>,
    table: Vec<(String, String)>,
}

impl Report {
    fn row(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.table.push((k.into(), v.into()));
    }
    fn section(&mut self, title: &str) {
        self.table.push((format!("## {title}"), String::new()));
    }
    fn lat(&mut self, k: &str, s: &Summary) {
        self.row(k, format!("p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={})", s.p50, s.p99, s.max, s.n));
    }
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0)))
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    json!({"nproc": nproc, "cpu_model": model, "mem_total_kib": mem_kib, "kernel": kernel})
}

// ---------------------------------------------------------------- main

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(a: Args) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let token = std::fs::read_to_string(a.data.join("admin.token")).context("reading the provider credential (DATA/admin.token)")?;
    let ca = std::fs::read_to_string(a.data.join("pki/root.pem")).context("reading the TLS root (DATA/pki/root.pem)")?;
    let admin = CenterClient::admin(&a.url, &ca, &token)?;
    let tag = format!("{:x}", started.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis());
    let ctx = Arc::new(Ctx {
        url: a.url.clone(),
        replica_url: a.replica_url.clone(),
        ca,
        admin,
        pid: a.pid,
        tag: tag.clone(),
        enrolled: AtomicUsize::new(0),
        rss_at_1000: OnceLock::new(),
        next_index: AtomicUsize::new(1),
        steps: Mutex::new(BTreeMap::new()),
    });
    let mut rep = Report { json: Map::new(), table: Vec::new() };
    let c = a.concurrency;
    let mach = machine();
    rep.json.insert("machine".into(), mach.clone());
    rep.json.insert("git_commit".into(), json!(a.commit));
    rep.json.insert("build".into(), json!(a.build));
    rep.json.insert(
        "started_unix".into(),
        json!(started.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()),
    );
    rep.json.insert(
        "parameters".into(),
        json!({"devices": a.devices, "concurrency": c, "enroll_only": a.enroll_only, "applications": a.applications,
               "rate_per_s": a.rate, "duration_s": a.duration, "push_devices": a.push_devices, "push_rounds": a.push_rounds,
               "scale": a.scale, "scale_first": a.scale_first, "database": a.database, "centre_url": a.url,
               "replica_url": a.replica_url}),
    );
    let note = format!(
        "benchmark client and centre share this machine ({} CPUs): every figure includes the client's own CPU use (TLS, ECDSA, JSON)",
        mach["nproc"]
    );
    rep.json.insert("note".into(), json!(note));

    // Transport in use (reqwest with a preconfigured rustls config: ALPN decides).
    let resp = ctx.admin.request(Method::GET, "/healthz").send().await.context("centre not reachable")?;
    let http_version = format!("{:?}", resp.version());
    rep.json.insert("http_version".into(), json!(http_version));
    let rss0 = rss_kib(a.pid)?;
    eprintln!("centre {} pid {} RSS {} KiB, transport {http_version}", a.url, a.pid, rss0);

    // Organisations whose subscriber policies accept each other inside group "bench".
    let mut orgs = Vec::new();
    for (n, kind) in [("Hospital", "hospital"), ("Clinic", "clinic")] {
        let o = ctx.admin_post("/api/v1/orgs", &json!({"name": format!("Bench {n} {tag}"), "kind": kind})).await?;
        orgs.push(o["id"].as_str().context("org id")?.to_string());
    }
    let policy = json!({
        "inbound": [{"from": "group:bench", "services": ["any"]}],
        "outbound": [{"to": "group:bench", "services": ["any"]}]
    });
    dodvpn_policy::SubscriberPolicy::from_json(&policy.to_string()).context("bench policy")?;
    for o in &orgs {
        let _: Value = ctx.admin.put(&format!("/api/v1/orgs/{o}/policy"), &policy).await?;
    }
    ctx.admin_post("/api/v1/groups", &json!({"name": "bench"})).await?;
    let orgs = Arc::new(orgs);

    if a.scale > 0 && a.scale_first {
        scale_phase(&ctx, &a, &orgs, &mut rep).await?;
    }

    // ------------------------------------------------------------ A: full enrolment flow
    eprintln!("[A] full enrolment flow: {} devices, {c} workers", a.devices);
    let t = Instant::now();
    let res = {
        let (ctx, orgs) = (ctx.clone(), orgs.clone());
        pool(a.devices, c, "enrolled", move |i| {
            let (ctx, orgs) = (ctx.clone(), orgs.clone());
            async move { ctx.enrol_full(&orgs[i % 2], true).await }
        })
        .await
    };
    let wall_a = t.elapsed();
    let devs = Arc::new(all_ok("enrolment", res)?);
    let rate_a = devs.len() as f64 / wall_a.as_secs_f64();
    let rss_a = rss_kib(a.pid)?;
    rep.section(&format!("A. Full enrolment flow (TR D.6 c–l), {} devices, {c} workers", devs.len()));
    rep.row("devices/s (full flow)", format!("{rate_a:.1}  ({} devices in {:.2} s)", devs.len(), wall_a.as_secs_f64()));
    let mut steps_json = Map::new();
    let steps = std::mem::take(&mut *ctx.steps.lock().unwrap());
    for (k, v) in &steps {
        let s = summarise(v);
        rep.lat(&format!("  step {k}"), &s);
        steps_json.insert(k.to_string(), s.json());
    }
    rep.json.insert(
        "enrolment_full_flow".into(),
        json!({"devices": devs.len(), "concurrency": c, "wall_s": r3(wall_a.as_secs_f64()), "devices_per_s": r3(rate_a),
               "http_calls_per_device": 9, "steps": steps_json}),
    );

    // Members of group "bench" (not part of the timed flow).
    {
        let (ctx2, d2) = (ctx.clone(), devs.clone());
        all_ok(
            "group bench members",
            pool(devs.len(), c, "", move |i| {
                let (ctx, d) = (ctx2.clone(), d2.clone());
                async move { ctx.admin_post("/api/v1/groups/bench/members", &json!({"device_id": d[i].id})).await }
            })
            .await,
        )?;
    }

    // ------------------------------------------------------------ B: enrolment call alone
    let mut push_pool: Vec<Dev> = Vec::new();
    if a.enroll_only > 0 {
        eprintln!("[B] enrolment call alone: {} devices prepared to 'service_approved'", a.enroll_only);
        let prep = {
            let (ctx, orgs) = (ctx.clone(), orgs.clone());
            pool(a.enroll_only, c, "prepared", move |i| {
                let (ctx, orgs) = (ctx.clone(), orgs.clone());
                async move {
                    let idx = ctx.new_index();
                    let (id, store) = ctx.to_approved(idx, &orgs[i % 2], false).await?;
                    let dyn_store: Arc<dyn KeyStore> = store.clone();
                    let tier1 = CenterClient::device(&ctx.url, &ctx.ca, dyn_store.clone(), Tier::Device)?;
                    // Warm the tier-1 connection so the timed call is the enrolment alone.
                    let _: Value = tier1.get("/api/v1/device/whoami").await?;
                    store.generate(Tier::Service)?;
                    let csr = dodvpn_pki::csr_pem(store.as_ref(), Tier::Service, "service")?;
                    Ok((id, store, tier1, csr))
                }
            })
            .await
        };
        let prep = Arc::new(all_ok("enrol-only preparation", prep)?);
        let t = Instant::now();
        let calls = {
            let p = prep.clone();
            pool(prep.len(), c, "enrol calls", move |i| {
                let p = p.clone();
                async move {
                    let (_, _, tier1, csr) = &p[i];
                    let t = Instant::now();
                    let issued: Value = tier1.post("/api/v1/device/enroll", &json!({"csr": csr})).await?;
                    Ok((ms(t.elapsed()), issued))
                }
            })
            .await
        };
        let wall_b = t.elapsed();
        let calls = all_ok("enrol calls", calls)?;
        let lat: Vec<f64> = calls.iter().map(|(l, _)| *l).collect();
        let s = summarise(&lat);
        let rate_b = calls.len() as f64 / wall_b.as_secs_f64();
        rep.section(&format!("B. Enrolment call alone: POST /api/v1/device/enroll (tier-1 mTLS, warm), {c} workers"));
        rep.row("enrol calls/s", format!("{rate_b:.1}  ({} calls in {:.2} s)", calls.len(), wall_b.as_secs_f64()));
        rep.lat("  latency", &s);
        rep.json.insert(
            "enroll_call".into(),
            json!({"calls": calls.len(), "concurrency": c, "wall_s": r3(wall_b.as_secs_f64()), "calls_per_s": r3(rate_b), "latency": s.json()}),
        );
        // Finish these devices (untimed): install the certificate, confirm with it, start.
        let fin = {
            let (ctx, p) = (ctx.clone(), prep.clone());
            let issued: Arc<Vec<Value>> = Arc::new(calls.into_iter().map(|(_, v)| v).collect());
            pool(prep.len(), c, "finished", move |i| {
                let (ctx, p, issued) = (ctx.clone(), p.clone(), issued.clone());
                async move {
                    let (id, store, _, _) = &p[i];
                    let cert = issued[i]["certificate"].as_str().context("no certificate")?;
                    store.put_cert(Tier::Service, cert)?;
                    let dyn_store: Arc<dyn KeyStore> = store.clone();
                    let (tier2, replica) = ctx.tier2(dyn_store)?;
                    let _: Value = tier2
                        .post("/api/v1/device/service-cert/installed", &json!({"fingerprint": issued[i]["fingerprint"]}))
                        .await?;
                    ctx.admin_step(id, "service/start").await?;
                    ctx.count_enrolled();
                    Ok(Dev { id: id.clone(), client: tier2, replica })
                }
            })
            .await
        };
        push_pool = all_ok("finishing enrol-only devices", fin)?;
    }

    // ------------------------------------------------------------ C: connection applications
    eprintln!("[C] connection applications: {} from random devices to random peers, {c} workers", a.applications);
    {
        // Warm every device's tier-2 connection (a running agent holds one).
        let d2 = devs.clone();
        all_ok(
            "warm tier-2",
            pool(devs.len(), c, "", move |i| {
                let d = d2.clone();
                async move { d[i].client.get::<Value>("/api/v1/device/whoami").await }
            })
            .await,
        )?;
    }
    let t = Instant::now();
    let res = {
        let d = devs.clone();
        pool(a.applications, c, "applications", move |i| {
            let d = d.clone();
            async move {
                let r = mix(i as u64 ^ 0xC0);
                let from = (r % d.len() as u64) as usize;
                let mut to = ((r >> 32) % (d.len() as u64 - 1)) as usize;
                if to >= from {
                    to += 1;
                }
                let t = Instant::now();
                let out: Value = d[from].client.post("/api/v1/device/connections", &json!({"to_device": d[to].id})).await?;
                let granted = out["outcomes"][0]["granted"].as_bool().unwrap_or(false);
                Ok((ms(t.elapsed()), granted, out))
            }
        })
        .await
    };
    let wall_c = t.elapsed();
    let res = all_ok("connection applications", res)?;
    let granted = res.iter().filter(|r| r.1).count();
    if granted != res.len() {
        let bad = res.iter().find(|r| !r.1).map(|r| r.2.to_string()).unwrap_or_default();
        eprintln!("    warning: {} of {} applications refused, e.g. {bad}", res.len() - granted, res.len());
    }
    let s = summarise(&res.iter().map(|r| r.0).collect::<Vec<_>>());
    let rate_c = res.len() as f64 / wall_c.as_secs_f64();
    rep.section(&format!("C. Connection applications: POST /api/v1/device/connections (tier-2 mTLS), {c} workers"));
    rep.row("applications/s", format!("{rate_c:.1}  ({} in {:.2} s, {granted} granted)", res.len(), wall_c.as_secs_f64()));
    rep.lat("  latency", &s);
    rep.json.insert(
        "connection_applications".into(),
        json!({"applications": res.len(), "granted": granted, "concurrency": c, "among_devices": devs.len(),
               "wall_s": r3(wall_c.as_secs_f64()), "per_s": r3(rate_c), "latency": s.json()}),
    );

    // ------------------------------------------------------------ D: open loop
    eprintln!("[D] open loop: {} req/s for {} s (mixed GET device, GET state, POST connection)", a.rate, a.duration);
    let open = open_loop(&ctx, &devs, a.rate, a.duration).await?;
    rep.section(&format!("D. Open-loop mixed load at {} req/s for {} s (latency from scheduled send time)", a.rate, a.duration));
    rep.row(
        "achieved rate",
        format!(
            "{:.1} req/s  ({} sent, {} ok, {} errors)",
            open["achieved_per_s"].as_f64().unwrap_or(0.0),
            open["sent"],
            open["ok"],
            open["errors"]
        ),
    );
    for k in ["all", "GET /api/v1/devices/{id}", "GET /api/v1/device/state", "POST /api/v1/device/connections"] {
        let l = &open["latency"][k];
        rep.row(
            format!("  {k}"),
            format!(
                "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={})",
                l["p50_ms"].as_f64().unwrap_or(f64::NAN),
                l["p99_ms"].as_f64().unwrap_or(f64::NAN),
                l["max_ms"].as_f64().unwrap_or(f64::NAN),
                l["n"]
            ),
        );
    }
    rep.json.insert("open_loop".into(), open);

    // ------------------------------------------------------------ E: push + memory
    let mut mem = Map::new();
    mem.insert("rss_fresh_kib".into(), json!(rss0));
    mem.insert(format!("rss_after_phase_a_{}_devices_kib", devs.len()), json!(rss_a));
    if a.push_devices > 0 {
        push_phase(&ctx, &a, &orgs, push_pool, &mut rep, &mut mem).await?;
    }
    if let Some(r) = ctx.rss_at_1000.get() {
        mem.insert("rss_at_1000_enrolled_devices_kib".into(), json!(r));
    }

    // ------------------------------------------------------------ F: scale
    if a.scale > 0 && !a.scale_first {
        scale_phase(&ctx, &a, &orgs, &mut rep).await?;
    }

    let rss_end = rss_kib(a.pid)?;
    mem.insert("rss_end_kib".into(), json!(rss_end));
    if a.replica_pid != 0 {
        mem.insert("replica_rss_end_kib".into(), json!(rss_kib(a.replica_pid)?));
    }
    mem.insert("devices_enrolled_total".into(), json!(ctx.enrolled.load(Ordering::Relaxed)));
    rep.section("Centre memory (VmRSS of the centre process)");
    rep.row("fresh centre", format!("{} KiB", rss0));
    rep.row(format!("after phase A ({} enrolled)", devs.len()), format!("{rss_a} KiB"));
    if let Some(r) = ctx.rss_at_1000.get() {
        rep.row("with 1,000 registered+enrolled devices", format!("{r} KiB ({:.1} MiB)", *r as f64 / 1024.0));
    }
    for k in ["rss_before_streams_kib", "rss_with_streams_kib"] {
        if let Some(v) = mem.get(k) {
            rep.row(k.trim_end_matches("_kib").replace('_', " "), format!("{v} KiB"));
        }
    }
    if let Some(v) = mem.get("per_connected_device_kib") {
        rep.row("per connected device (event stream)", format!("{v} KiB"));
    }
    rep.row("end of run", format!("{rss_end} KiB"));
    if let Some(v) = mem.get("replica_rss_end_kib") {
        rep.row("end of run, second replica", format!("{v} KiB"));
    }
    rep.json.insert("memory".into(), Value::Object(mem));

    // ------------------------------------------------------------ output
    println!();
    println!("dodvpn centre control-plane benchmark  (commit {}, {})", a.commit, a.build);
    println!("machine: {} × {}, {} MiB RAM; centre on {} at {}{}", mach["nproc"], mach["cpu_model"].as_str().unwrap_or("?"),
        mach["mem_total_kib"].as_u64().unwrap_or(0) / 1024, a.database, a.url,
        a.replica_url.as_deref().map(|r| format!(" and {r}")).unwrap_or_default());
    println!("note: {note}");
    println!("transport: {http_version} over TLS 1.3 (rustls), devices with mutual TLS");
    let w = rep.table.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(10).min(64);
    for (k, v) in &rep.table {
        if let Some(t) = k.strip_prefix("## ") {
            println!("\n{t}");
            println!("{}", "-".repeat(t.chars().count().min(100)));
        } else {
            println!("  {k:<w$}  {v}");
        }
    }
    if let Some(out) = &a.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(out, serde_json::to_string_pretty(&Value::Object(rep.json))? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        println!("\nJSON: {}", out.display());
    }
    Ok(())
}

// ---------------------------------------------------------------- D: open loop

async fn open_loop(ctx: &Arc<Ctx>, devs: &Arc<Vec<Dev>>, rate: f64, duration: f64) -> anyhow::Result<Value> {
    const KINDS: [&str; 3] = ["GET /api/v1/devices/{id}", "GET /api/v1/device/state", "POST /api/v1/device/connections"];
    let total = (rate * duration).round() as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, f64, bool, Instant)>();
    let start = Instant::now() + Duration::from_millis(200);
    let first_err: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    for k in 0..total {
        let scheduled = start + period.mul_f64(k as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (ctx, devs, tx, first_err) = (ctx.clone(), devs.clone(), tx.clone(), first_err.clone());
        tokio::spawn(async move {
            let r = mix(k as u64 ^ 0xD0D);
            let kind = k % 3;
            let a = (r % devs.len() as u64) as usize;
            let res: anyhow::Result<Value> = match kind {
                0 => ctx.admin.get(&format!("/api/v1/devices/{}", devs[a].id)).await,
                1 => devs[a].client.get("/api/v1/device/state").await,
                _ => {
                    let mut b = ((r >> 32) % (devs.len() as u64 - 1)) as usize;
                    if b >= a {
                        b += 1;
                    }
                    devs[a].client.post("/api/v1/device/connections", &json!({"to_device": devs[b].id})).await
                }
            };
            let done = Instant::now();
            if let Err(e) = &res {
                first_err.lock().unwrap().get_or_insert_with(|| format!("{e:#}"));
            }
            // Latency from the *scheduled* send time: a slow centre cannot hide its queueing.
            let _ = tx.send((kind, ms(done.saturating_duration_since(scheduled)), res.is_ok(), done));
        });
    }
    drop(tx);
    let mut lat: [Vec<f64>; 3] = Default::default();
    let mut all = Vec::new();
    let (mut ok, mut errors) = (0usize, 0usize);
    let mut last = start;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((kind, l, good, done))) => {
                if good {
                    ok += 1;
                    lat[kind].push(l);
                    all.push(l);
                } else {
                    errors += 1;
                }
                last = last.max(done);
            }
            Ok(None) => break,
            Err(_) => {
                eprintln!("    open loop: responses still missing after 120 s; counting them as errors");
                break;
            }
        }
    }
    let missing = total - ok - errors;
    let achieved = ok as f64 / last.saturating_duration_since(start).as_secs_f64().max(1e-9);
    if let Some(e) = first_err.lock().unwrap().as_ref() {
        eprintln!("    open loop: {errors} errors, first: {e}");
    }
    let mut l = Map::new();
    l.insert("all".into(), summarise(&all).json());
    for (i, k) in KINDS.iter().enumerate() {
        l.insert(k.to_string(), summarise(&lat[i]).json());
    }
    Ok(json!({"target_per_s": rate, "duration_s": duration, "sent": total, "ok": ok, "errors": errors + missing,
              "achieved_per_s": r3(achieved), "latency": l,
              "mix": "1/3 GET /api/v1/devices/{id} (admin), 1/3 GET /api/v1/device/state, 1/3 POST /api/v1/device/connections (tier-2 mTLS)"}))
}

// ---------------------------------------------------------------- E: push propagation

enum StreamMsg {
    Hello(usize),
    Policy { idx: usize, round: usize, at: Instant },
    Closed(usize, String),
}

async fn push_phase(
    ctx: &Arc<Ctx>,
    a: &Args,
    orgs: &Arc<Vec<String>>,
    mut push: Vec<Dev>,
    rep: &mut Report,
    mem: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    let n = a.push_devices;
    let c = a.concurrency;
    push.truncate(n);
    let have = push.len();
    eprintln!("[E] push: enrolling {} more devices (full flow, {c} workers) to reach {n}", n - have);
    let t = Instant::now();
    if have < n {
        let done = Arc::new(AtomicUsize::new(have));
        let res = {
            let (ctx, orgs, done) = (ctx.clone(), orgs.clone(), done.clone());
            pool(n - have, c, "", move |i| {
                let (ctx, orgs, done) = (ctx.clone(), orgs.clone(), done.clone());
                async move {
                    let d = ctx.enrol_full(&orgs[i % 2], false).await?;
                    let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if k % 100 == 0 || k == n {
                        eprintln!("    enrolled {k}/{n}");
                    }
                    Ok(d)
                }
            })
            .await
        };
        push.extend(all_ok("push-device enrolment", res)?);
    }
    let wall_enrol = t.elapsed();
    let rate_e = (n - have) as f64 / wall_enrol.as_secs_f64();
    ctx.admin_post("/api/v1/groups", &json!({"name": "push", "services": ["tcp/443"]})).await?;
    let push = Arc::new(push);
    {
        let (ctx2, p) = (ctx.clone(), push.clone());
        all_ok(
            "group push members",
            pool(n, c, "members added", move |i| {
                let (ctx, p) = (ctx2.clone(), p.clone());
                async move { ctx.admin_post("/api/v1/groups/push/members", &json!({"device_id": p[i].id})).await }
            })
            .await,
        )?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_kib(a.pid)?;
    let replica_rss_before = if a.replica_pid != 0 { rss_kib(a.replica_pid)? } else { 0 };

    // Open the streams: one HTTPS connection per device (its own tier-2 client).
    eprintln!("[E] opening {n} event streams (tier-2 mTLS, /api/v1/device/events?since=0)");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StreamMsg>();
    let opening = Arc::new(tokio::sync::Semaphore::new(64));
    let t_open = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (idx, d) in push.iter().enumerate() {
        // With two replicas, every second stream is held by the second one.
        let client = match (&d.replica, idx % 2) {
            (Some(r), 1) => r.clone(),
            _ => d.client.clone(),
        };
        let (tx, opening) = (tx.clone(), opening.clone());
        tasks.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await.ok();
            let r = stream_device(idx, client, &tx, permit).await;
            let _ = tx.send(StreamMsg::Closed(idx, r.err().map(|e| format!("{e:#}")).unwrap_or_else(|| "ended".into())));
        }));
    }
    drop(tx);
    let mut hellos = vec![false; n];
    let mut hello_count = 0;
    let mut closed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while hello_count < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(StreamMsg::Hello(i))) if !hellos[i] => {
                hellos[i] = true;
                hello_count += 1;
                if hello_count % 100 == 0 {
                    eprintln!("    streams open (hello received) {hello_count}/{n}");
                }
            }
            Ok(Some(StreamMsg::Closed(i, e))) => closed.push((i, e)),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => break,
        }
    }
    let open_s = t_open.elapsed().as_secs_f64();
    if hello_count < n {
        for t in &tasks {
            t.abort();
        }
        bail!("only {hello_count} of {n} event streams said hello within 180 s; closed: {:?}", closed.first());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_with = rss_kib(a.pid)?;
    let replica_rss_with = if a.replica_pid != 0 { rss_kib(a.replica_pid)? } else { 0 };
    let per_dev = (rss_with as f64 - rss_before as f64 + replica_rss_with as f64 - replica_rss_before as f64) / n as f64;
    if a.replica_pid != 0 {
        mem.insert("replica_rss_before_streams_kib".into(), json!(replica_rss_before));
        mem.insert("replica_rss_with_streams_kib".into(), json!(replica_rss_with));
    }
    mem.insert("rss_before_streams_kib".into(), json!(rss_before));
    mem.insert("rss_with_streams_kib".into(), json!(rss_with));
    mem.insert("per_connected_device_kib".into(), r3(per_dev));
    mem.insert("connected_devices".into(), json!(n));

    // Rounds: change the provider policy of group "push", time each member's event.
    let mut rounds = Vec::new();
    let mut late: Vec<(usize, usize, Instant)> = Vec::new();
    for r in 1..=a.push_rounds {
        let services = if r % 2 == 1 { json!(["tcp/443", "udp/53"]) } else { json!(["tcp/443"]) };
        let body = json!({"name": "push", "services": services});
        eprintln!("[E] round {r}/{}: PUT /api/v1/groups/push", a.push_rounds);
        let t0 = Instant::now();
        let put: anyhow::Result<Value> = ctx.admin.put("/api/v1/groups/push", &body).await;
        let put_ms = ms(t0.elapsed());
        put.context("PUT /api/v1/groups/push")?;
        let mut got: Vec<Option<f64>> = vec![None; n];
        let mut count = 0;
        for (idx, round, at) in late.drain(..) {
            if round == r && got[idx].is_none() {
                got[idx] = Some(ms(at.saturating_duration_since(t0)));
                count += 1;
            }
        }
        let deadline = tokio::time::Instant::from_std(t0) + Duration::from_secs(60);
        while count < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(StreamMsg::Policy { idx, round, at })) => {
                    if round == r && got[idx].is_none() {
                        got[idx] = Some(ms(at.saturating_duration_since(t0)));
                        count += 1;
                    } else if round > r {
                        late.push((idx, round, at));
                    }
                }
                Ok(Some(StreamMsg::Closed(i, e))) => closed.push((i, e)),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let lat: Vec<f64> = got.iter().flatten().copied().collect();
        let s = summarise(&lat);
        let missing = n - lat.len();
        eprintln!(
            "    round {r}: {}/{n} got policy_changed; p50 {:.1} ms p99 {:.1} ms last {:.1} ms (PUT answered in {put_ms:.1} ms)",
            lat.len(),
            s.p50,
            s.p99,
            s.max
        );
        rounds.push(json!({"round": r, "received": lat.len(), "missing": missing, "put_ms": r3(put_ms),
                           "latency": s.json(), "all_received_ms": if missing == 0 { r3(s.max) } else { Value::Null }}));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for t in &tasks {
        t.abort();
    }
    let col = |k: &str| -> Vec<f64> {
        rounds.iter().filter_map(|r| r["latency"][k].as_f64()).collect()
    };
    let (p50, p99, mx) = (median(&col("p50_ms")), median(&col("p99_ms")), median(&col("max_ms")));
    let put_med = median(&rounds.iter().filter_map(|r| r["put_ms"].as_f64()).collect::<Vec<_>>());
    let complete = rounds.iter().filter(|r| r["missing"].as_u64() == Some(0)).count();
    rep.section(&format!(
        "E. Push propagation: PUT /api/v1/groups/{{name}} → policy_changed on {n} open event streams (median of {} rounds)",
        rounds.len()
    ));
    rep.row("devices enrolled for this phase", format!("{} (full flow at {rate_e:.1} devices/s, {c} workers)", n - have));
    rep.row("streams opened (all hello)", format!("{n} in {open_s:.2} s"));
    rep.row("per-device delivery p50", format!("{p50:.1} ms"));
    rep.row("per-device delivery p99", format!("{p99:.1} ms"));
    rep.row("per-device delivery max = last of all devices", format!("{mx:.1} ms"));
    rep.row("PUT answered (commit) after", format!("{put_med:.1} ms"));
    rep.row("rounds where all devices got it", format!("{complete}/{}", rounds.len()));
    rep.row("stream failures", format!("{}", closed.len()));
    rep.json.insert(
        "push".into(),
        json!({"devices": n, "rounds": rounds, "median_p50_ms": r3(p50), "median_p99_ms": r3(p99),
               "median_max_ms": r3(mx), "median_all_received_ms": r3(mx), "median_put_ms": r3(put_med),
               "rounds_complete": complete, "stream_failures": closed.len(), "streams_open_s": r3(open_s),
               "enrolment_devices_per_s": r3(rate_e), "enrolled_for_phase": n - have,
               "note": "timed from just before the PUT was sent to the arrival of each device's policy_changed event; client and centre share the CPUs"}),
    );
    Ok(())
}

/// Hold one device's event stream, like `sync::Agent::stream_once`, and report the
/// `hello` and each provider `policy_changed` (the k-th one after hello is round k).
async fn stream_device(
    idx: usize,
    client: CenterClient,
    tx: &tokio::sync::mpsc::UnboundedSender<StreamMsg>,
    mut permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> anyhow::Result<()> {
    let resp = client.request(Method::GET, "/api/v1/device/events?since=0").send().await.context("open stream")?;
    if !resp.status().is_success() {
        let st = resp.status();
        bail!("stream refused: {}", dodvpn_agent::client::api_error(st, &resp.text().await.unwrap_or_default()));
    }
    let mut parser = SseParser::default();
    let mut body = resp.bytes_stream();
    let mut round = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("stream broke")?;
        for e in parser.push(&chunk)? {
            match e.event.as_deref() {
                Some("hello") => {
                    permit.take();
                    let _ = tx.send(StreamMsg::Hello(idx));
                }
                Some("policy_changed") => {
                    let at = Instant::now();
                    let v: Value = serde_json::from_str(&e.data).unwrap_or_default();
                    let p = &v["payload"];
                    if p["group"] == "push" && p["scope"] == "provider" && p.get("joined").is_none() {
                        round += 1;
                        let _ = tx.send(StreamMsg::Policy { idx, round, at });
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- F: scale

async fn scale_phase(ctx: &Arc<Ctx>, a: &Args, orgs: &Arc<Vec<String>>, rep: &mut Report) -> anyhow::Result<()> {
    let n = a.scale;
    let conc = a.concurrency.max(16);
    eprintln!("[F] scale: registering {n} devices ({conc} concurrent)");
    let t = Instant::now();
    let res = {
        let (ctx, orgs) = (ctx.clone(), orgs.clone());
        pool(n, conc, "registered", move |i| {
            let (ctx, orgs) = (ctx.clone(), orgs.clone());
            async move {
                let idx = ctx.new_index();
                ctx.register(idx, &orgs[i % 2], false).await
            }
        })
        .await
    };
    let wall = t.elapsed();
    let ids = Arc::new(all_ok("scale registration", res)?);
    let reg_rate = ids.len() as f64 / wall.as_secs_f64();
    let rss = rss_kib(a.pid)?;
    let replica_rss = if a.replica_pid != 0 { Some(rss_kib(a.replica_pid)?) } else { None };
    let samples = 3000;
    let res = {
        let (ctx, ids) = (ctx.clone(), ids.clone());
        pool(samples, a.concurrency, "", move |i| {
            let (ctx, ids) = (ctx.clone(), ids.clone());
            async move {
                let id = &ids[(mix(i as u64 ^ 0x5CA1E) % ids.len() as u64) as usize];
                let t = Instant::now();
                let d: Value = ctx.admin.get(&format!("/api/v1/devices/{id}")).await?;
                if d["id"] != id.as_str() {
                    bail!("wrong device returned");
                }
                Ok(ms(t.elapsed()))
            }
        })
        .await
    };
    let lat = all_ok("GET after scale", res)?;
    let s = summarise(&lat);
    rep.section(&format!("F. Scale: {n} more devices registered (register step only), {}", a.database));
    rep.row("registrations/s", format!("{reg_rate:.1}  ({} in {:.1} s, {conc} concurrent)", ids.len(), wall.as_secs_f64()));
    rep.lat(&format!("  GET /api/v1/devices/{{id}} afterwards ({} concurrent)", a.concurrency), &s);
    rep.row("  centre RSS afterwards", format!("{rss} KiB"));
    if let Some(r) = replica_rss {
        rep.row("  second replica RSS afterwards", format!("{r} KiB"));
    }
    rep.json.insert(
        "scale".into(),
        json!({"registered": ids.len(), "concurrency": conc, "wall_s": r3(wall.as_secs_f64()), "per_s": r3(reg_rate),
               "get_device_latency": s.json(), "rss_after_kib": rss, "replica_rss_after_kib": replica_rss}),
    );
    Ok(())
}

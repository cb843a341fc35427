//! `dodvpn demo`: the TR §9 network on one machine. A centre on the embedded default
//! (SQLite) and seven sites (two of them on the same private range), each in its own network namespace on a shared "internet"
//! bridge, enrolled through the real flow (TR D.6 a–l) with the real CLI. Then it shows,
//! and checks, what the DOD-VPN is for: on-demand tunnels, group isolation, a vendor
//! maintenance window, and a revocation cutting a live tunnel.
//!
//! Everything it creates (namespaces, processes, files) is removed on exit or Ctrl-C.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

#[derive(clap::Parser, Clone)]
pub struct DemoArgs {
    /// Run the scenario, print the summary and stop (exit status 1 if a check failed),
    /// instead of staying up for exploration until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Working directory for the centre's data, key stores and logs (default: a new
    /// directory under /tmp, removed on exit unless --keep).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Keep the working directory (logs, audit database) after exit.
    #[arg(long)]
    pub keep: bool,
    /// Idle time after which tunnels are deleted.
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}

/// One organisation's site: a namespace with an outer address on the bridge and an
/// inside subnet on a dummy interface.
#[derive(Clone)]
pub struct Site {
    pub key: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub ns: String,
    pub outer: Ipv4Addr,
    /// 10.N.0.0/24; the site's own host is 10.N.0.1.
    pub n: u8,
    pub keystore: PathBuf,
    pub org: String,
    pub device: String,
}

impl Site {
    pub fn subnet(&self) -> String {
        format!("10.{}.0.0/24", self.n)
    }
    pub fn host(&self) -> String {
        format!("10.{}.0.1", self.n)
    }
    pub fn control(&self) -> PathBuf {
        self.keystore.with_file_name(format!("{}.sock", self.key))
    }
}

/// What the demo started; torn down exactly once, on drop or on Ctrl-C.
#[derive(Default)]
struct Owned {
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    work: Option<PathBuf>,
    done: bool,
}

#[derive(Clone, Default)]
pub struct Lab {
    owned: Arc<Mutex<Owned>>,
    pub work: PathBuf,
    pub wan: String,
    pub center_url: String,
    pub exe: PathBuf,
    pub sites: Vec<Site>,
}

const PASSPHRASE: &str = "demo-keystore-passphrase";
const CENTRE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn run_cmd(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run_cmd(Command::new("ip").args(args))
}

impl Lab {
    /// Create the bridge namespace (which also hosts the centre) and one namespace per site.
    pub fn build(
        work: PathBuf,
        specs: &[(&'static str, &'static str, &'static str, u8)],
    ) -> anyhow::Result<Lab> {
        if !nix_is_root() {
            bail!("the demo builds network namespaces and TUN devices: run it as root");
        }
        std::fs::create_dir_all(&work)
            .with_context(|| format!("cannot create {}", work.display()))?;
        let tag = format!("dd{}", std::process::id() % 100_000);
        let mut lab = Lab {
            work: work.clone(),
            wan: format!("{tag}-wan"),
            center_url: format!("https://{CENTRE_ADDR}:8443"),
            exe: std::env::current_exe()?,
            ..Lab::default()
        };
        lab.owned.lock().unwrap().work = Some(work.clone());
        lab.add_ns(&lab.wan.clone())?;
        ip(&["-n", &lab.wan, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &lab.wan,
            "addr",
            "add",
            &format!("{CENTRE_ADDR}/24"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &lab.wan, "link", "set", "br0", "up"])?;
        ip(&["-n", &lab.wan, "link", "set", "lo", "up"])?;
        for (i, (key, name, kind, n)) in specs.iter().enumerate() {
            let n = *n;
            let ns = format!("{tag}-{key}");
            lab.add_ns(&ns)?;
            let outer = Ipv4Addr::new(192, 0, 2, 11 + i as u8);
            let (a, b) = (format!("{tag}{key}"), "out0".to_string());
            let a: String = a.chars().take(15).collect();
            ip(&[
                "-n", &lab.wan, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &ns,
            ])?;
            ip(&["-n", &lab.wan, "link", "set", &a, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{outer}/24"),
                "dev",
                "out0",
            ])?;
            ip(&["-n", &ns, "link", "set", "out0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // The site's inside network: a dummy interface (ifb where there is no dummy).
            if ip(&["-n", &ns, "link", "add", "site0", "type", "dummy"]).is_err() {
                ip(&["-n", &ns, "link", "add", "site0", "type", "ifb"])?;
            }
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.{n}.0.1/24"),
                "dev",
                "site0",
            ])?;
            ip(&["-n", &ns, "link", "set", "site0", "up"])?;
            for k in [
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ] {
                run_cmd(Command::new("ip").args(["netns", "exec", &ns, "sysctl", "-qw", k]))?;
            }
            lab.sites.push(Site {
                key,
                name,
                kind,
                ns,
                outer,
                n,
                keystore: work.join(format!("{key}-keystore")),
                org: String::new(),
                device: String::new(),
            });
        }
        Ok(lab)
    }

    fn add_ns(&self, ns: &str) -> anyhow::Result<()> {
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        if owned.done {
            bail!("the demo is stopping");
        }
        ip(&["netns", "add", ns])?;
        owned.namespaces.push(ns.to_string());
        Ok(())
    }

    /// Start a long-running process inside a namespace, logging to WORK/LOG.
    pub fn spawn(
        &self,
        ns: &str,
        log: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<u32> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join(log))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {args:?}"))?;
        let pid = child.id();
        self.owned
            .lock()
            .unwrap()
            .children
            .push((log.to_string(), child));
        Ok(pid)
    }

    /// Stop one process this lab started (by its log name).
    pub fn stop(&self, log: &str) {
        let mut o = self.owned.lock().unwrap();
        if let Some(pos) = o.children.iter().position(|(l, _)| l == log) {
            let (_, mut c) = o.children.remove(pos);
            terminate(&mut c);
        }
    }

    /// Kill one process this lab started (by its log name) with SIGKILL: a crash.
    pub fn kill9(&self, log: &str) {
        let mut o = self.owned.lock().unwrap();
        if let Some(pos) = o.children.iter().position(|(l, _)| l == log) {
            let (_, mut c) = o.children.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `dodvpn ARGS` inside a namespace, waiting for it; its stdout.
    pub fn dodvpn(&self, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        run_cmd(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(&self.exe)
                .args(args)
                .env("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE),
        )
    }

    /// `dodvpn admin --json ARGS` as the provider (or with another credential file).
    pub fn admin_as(&self, credential: &Path, args: &[&str]) -> anyhow::Result<Value> {
        let ca = self.work.join("center/pki/root.pem");
        let mut full = vec!["admin", "--json", "--center", &self.center_url];
        let ca = ca.to_string_lossy().to_string();
        let cred = credential.to_string_lossy().to_string();
        full.extend(["--ca", &ca, "--credential-file", &cred]);
        full.extend(args);
        let out = self.dodvpn(&self.wan, &full)?;
        serde_json::from_str(&out).with_context(|| format!("admin {args:?} printed no JSON: {out}"))
    }

    pub fn admin(&self, args: &[&str]) -> anyhow::Result<Value> {
        self.admin_as(&self.work.join("center/admin.token"), args)
    }

    pub fn site(&self, key: &str) -> &Site {
        self.sites
            .iter()
            .find(|s| s.key == key)
            .expect("a site of the demo")
    }

    /// One ICMP echo from site A's host to B's host (1 s timeout).
    pub fn ping(&self, from: &str, to_addr: &str) -> bool {
        self.ping_within(from, to_addr, "1")
    }

    /// One ICMP echo, answered within `wait` seconds ("0.3").
    pub fn ping_within(&self, from: &str, to_addr: &str, wait: &str) -> bool {
        let s = self.site(from);
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &s.ns,
                "ping",
                "-c1",
                "-W",
                wait,
                "-q",
                "-I",
                &s.host(),
                to_addr,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    }

    /// Open a TCP connection from site A's host to ADDR:PORT and exchange a line.
    pub fn tcp(&self, from: &str, addr: &str, port: u16) -> bool {
        let s = self.site(from);
        let code = format!(
            "import socket,sys\ns=socket.create_connection(('{addr}',{port}),timeout=2,source_address=('{}',0))\ns.sendall(b'ping\\n')\nsys.exit(0 if s.recv(16)==b'ping\\n' else 1)",
            s.host()
        );
        Command::new("ip")
            .args(["netns", "exec", &s.ns, "python3", "-c", &code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    }

    /// A TCP echo service on ADDR:PORT in a site's namespace.
    pub fn echo_server(&self, at: &str, addr: &str, port: u16) -> anyhow::Result<()> {
        let s = self.site(at);
        let code = format!(
            "import socket,threading\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\nl.bind(('{addr}',{port}))\nl.listen(64)\ndef h(c):\n  with c:\n    while True:\n      d=c.recv(4096)\n      if not d: return\n      c.sendall(d)\nwhile True:\n  c,_=l.accept()\n  threading.Thread(target=h,args=(c,),daemon=True).start()\n"
        );
        self.spawn(
            &s.ns.clone(),
            &format!("echo-{at}-{port}.log"),
            &["python3", "-c", &code],
            &[],
        )?;
        Ok(())
    }

    /// The agent's SAs as `dodvpn tunnel status --json` shows them.
    pub fn tunnel_status(&self, key: &str) -> anyhow::Result<Value> {
        let s = self.site(key);
        let ctl = s.control().to_string_lossy().to_string();
        let out = self.dodvpn(&s.ns, &["tunnel", "status", "--json", "--control", &ctl])?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Live child SAs at a site.
    pub fn live_children(&self, key: &str) -> usize {
        self.tunnel_status(key)
            .ok()
            .and_then(|v| {
                v["connections"].as_array().map(|cs| {
                    cs.iter()
                        .map(|c| c["children"].as_array().map_or(0, |x| x.len()))
                        .sum()
                })
            })
            .unwrap_or(0)
    }

    /// Tear everything down (idempotent).
    pub fn cleanup(&self, keep_work: bool) {
        let mut o = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        if o.done {
            return;
        }
        o.done = true;
        for (_, c) in o.children.iter_mut().rev() {
            terminate(c);
        }
        for ns in o.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !keep_work {
            if let Some(w) = &o.work {
                let _ = std::fs::remove_dir_all(w);
            }
        }
    }
}

fn terminate(c: &mut Child) {
    let pid = c.id() as i32;
    // SAFETY: plain signal to a child we spawned and have not reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Wait until `f` holds, up to `limit`; how long it took.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The six TR §9 sites: key, organisation name, kind.
/// The second clinic uses the same private range as the first (TR D.7 c).
pub const SITES: &[(&str, &str, &str, u8)] = &[
    ("hosp", "Core Hospital", "hospital", 1),
    ("clinic", "Clinic", "clinic", 2),
    ("pharm", "Pharmacy", "pharmacy", 3),
    ("lab", "Lab", "lab", 4),
    ("vendor", "Equipment Vendor", "vendor", 5),
    ("outsider", "Outsider", "clinic", 6),
    ("clinic2", "Second Clinic", "clinic", 2),
];

/// The vendor's contracted host inside the hospital, and its maintenance port.
pub const EQUIPMENT: &str = "10.1.0.50";
pub const MAINTENANCE_PORT: u16 = 22;

/// Checks passed and failed, printed as they happen.
#[derive(Default)]
pub struct Report {
    pub passed: usize,
    pub failed: Vec<String>,
}

impl Report {
    pub fn check(&mut self, ok: bool, what: &str) -> bool {
        if ok {
            self.passed += 1;
            println!("  ✔ {what}");
        } else {
            self.failed.push(what.to_string());
            println!("  ✘ {what}");
        }
        ok
    }
}

pub fn step(title: &str) {
    println!("\n== {title}");
}

impl Lab {
    /// Start the centre in the bridge namespace and wait until it answers.
    pub fn start_centre(&self) -> anyhow::Result<()> {
        let data = self.work.join("center");
        let listen = format!("{CENTRE_ADDR}:8443");
        let data_s = data.to_string_lossy().to_string();
        let exe = self.exe.to_string_lossy().to_string();
        self.spawn(
            &self.wan,
            "center.log",
            &[
                &exe,
                "center",
                "--data",
                &data_s,
                "--listen",
                &listen,
                "--tls-name",
                &CENTRE_ADDR.to_string(),
            ],
            &[],
        )?;
        wait_for(Duration::from_secs(60), || {
            data.join("admin.token").exists() && self.admin(&["org", "list"]).is_ok()
        })
        .context("the centre did not come up within 60 s (see center.log)")?;
        Ok(())
    }

    /// TR D.6 a–l for every site, through the CLI: organisation, order, registration,
    /// provisioning of the tier-1 key, delivery, application, approval, enrolment with a
    /// separate tier-2 key, service start.
    pub fn enrol_all(&mut self) -> anyhow::Result<()> {
        let vendor_org = self.admin(&["org", "create", "Device Provider", "--kind", "vendor"])?;
        let vendor_org = vendor_org["id"].as_str().context("org id")?.to_string();
        let order = self.admin(&["order", "create", "--org", &vendor_org, "--model", "DV-100"])?;
        let order = order["id"].as_str().context("order id")?.to_string();
        let ca = self
            .work
            .join("center/pki/root.pem")
            .to_string_lossy()
            .to_string();
        let token = self
            .work
            .join("center/admin.token")
            .to_string_lossy()
            .to_string();
        for i in 0..self.sites.len() {
            let s = self.sites[i].clone();
            let org = self.admin(&["org", "create", s.name, "--kind", s.kind])?;
            let org = org["id"].as_str().context("org id")?.to_string();
            let dev = self.admin(&[
                "device",
                "register",
                "--serial",
                &format!("DEMO-{}", s.key),
                "--model",
                "DV-100",
                "--owner",
                &org,
                "--order",
                &order,
                "--endpoint",
                &s.outer.to_string(),
                "--subnet",
                &s.subnet(),
            ])?;
            let dev = dev["id"].as_str().context("device id")?.to_string();
            let ks = s.keystore.to_string_lossy().to_string();
            self.dodvpn(
                &self.wan,
                &[
                    "device",
                    "provision",
                    "--center",
                    &self.center_url,
                    "--ca",
                    &ca,
                    "--credential-file",
                    &token,
                    "--keystore",
                    &ks,
                    "--device",
                    &dev,
                ],
            )?;
            self.admin(&["device", "deliver", &dev])?;
            self.admin(&["service", "apply", &dev])?;
            self.admin(&["service", "approve", &dev])?;
            self.dodvpn(
                &s.ns,
                &[
                    "agent",
                    "enroll",
                    "--keystore",
                    &ks,
                    "--center",
                    &self.center_url,
                ],
            )?;
            self.admin(&["service", "start", &dev])?;
            println!(
                "  {:<18} device {dev} enrolled (tier 1 → tier 2), site {} at {}",
                s.name,
                s.subnet(),
                s.outer
            );
            self.sites[i].org = org;
            self.sites[i].device = dev;
        }
        Ok(())
    }

    pub fn set_policy(&self, key: &str, policy: &Value) -> anyhow::Result<()> {
        let f = self.work.join(format!("policy-{key}.json"));
        std::fs::write(&f, policy.to_string())?;
        self.admin(&[
            "policy",
            "set",
            &self.site(key).org,
            "--file",
            &f.to_string_lossy(),
        ])?;
        Ok(())
    }

    pub fn start_agent(&self, key: &str, idle: Duration) -> anyhow::Result<()> {
        let s = self.site(key);
        let ks = s.keystore.to_string_lossy().to_string();
        let ctl = s.control().to_string_lossy().to_string();
        let exe = self.exe.to_string_lossy().to_string();
        let idle = format!("{}ms", idle.as_millis());
        self.spawn(
            &s.ns.clone(),
            &format!("agent-{key}.log"),
            &[
                &exe,
                "agent",
                "run",
                "--keystore",
                &ks,
                "--control",
                &ctl,
                "--idle-timeout",
                &idle,
            ],
            &[
                ("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE),
                ("DODVPN_LOG", "info"),
            ],
        )?;
        wait_for(Duration::from_secs(20), || self.tunnel_status(key).is_ok())
            .with_context(|| format!("the agent of {key} did not start (see agent-{key}.log)"))?;
        Ok(())
    }

    /// Apply for a connection from one site's device to another's; granted or not.
    pub fn apply(&self, from: &str, to: &str) -> anyhow::Result<(bool, String)> {
        let r = self.admin(&[
            "connection",
            "apply",
            "--from",
            &self.site(from).device,
            "--to",
            &self.site(to).device,
        ])?;
        let o = &r["outcomes"][0];
        Ok((
            o["granted"].as_bool().unwrap_or(false),
            o["reason"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// Does the agent at `key` hold a connection (installed grant) to `peer`?
    pub fn has_connection(&self, key: &str, peer: &str) -> bool {
        let dev = &self.site(peer).device;
        self.tunnel_status(key).is_ok_and(|v| {
            v["connections"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["name"].as_str() == Some(dev)))
        })
    }

    /// Audit actions recorded by the centre, in order.
    pub fn audit_actions(&self) -> anyhow::Result<Vec<String>> {
        let v = self.admin(&["audit", "list", "--limit", "100000"])?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["action"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Ping every 50 ms until no answer for a full probe; the time from `t0` to the first
/// failed probe.
pub fn time_until_cut(
    lab: &Lab,
    from: &str,
    to_addr: &str,
    t0: Instant,
    limit: Duration,
) -> Option<Duration> {
    while t0.elapsed() < limit {
        let started = t0.elapsed();
        let ok = lab.ping_within(from, to_addr, "0.3");
        if !ok {
            return Some(started);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Record a cut measured by [`time_until_cut`]: it must come within 2 s.
fn check_cut(report: &mut Report, cut: Option<Duration>, what: &str, after: &str) {
    report.check(
        cut.is_some_and(|d| d <= Duration::from_secs(2)),
        &format!(
            "{what} {}",
            cut.map(|d| format!("{} ms after {after}", d.as_millis()))
                .unwrap_or_else(|| "— NOT within 5 s".into())
        ),
    );
}

/// The scenario of TR §9, checked step by step.
pub fn scenario(lab: &mut Lab, args: &DemoArgs, report: &mut Report) -> anyhow::Result<()> {
    let open = serde_json::json!({"inbound": [{"from": "*", "services": ["any"]}], "outbound": [{"to": "*", "services": ["any"]}]});

    step("Centre (embedded SQLite) starting in its own namespace");
    lab.start_centre()?;
    println!(
        "  centre at {} ; data, audit database and logs under {}",
        lab.center_url,
        lab.work.display()
    );

    step("Enrolling seven sites through TR D.6 a–l (real CLI, real key stores); two clinics share 10.2.0.0/24");
    lab.enrol_all()?;

    step("Groups and policies: A = hospital, lab, vendor; B = hospital, both clinics, pharmacy; C = outsider");
    for (g, members) in [
        ("A", &["hosp", "lab", "vendor"][..]),
        ("B", &["hosp", "clinic", "pharm", "clinic2"][..]),
        ("C", &["outsider"][..]),
    ] {
        lab.admin(&["group", "create", g])?;
        for m in members {
            lab.admin(&["group", "add", g, &lab.site(m).device])?;
        }
    }
    for k in ["clinic", "pharm", "lab", "outsider", "clinic2"] {
        lab.set_policy(k, &open)?;
    }
    let vendor_org = lab.site("vendor").org.clone();
    lab.set_policy("hosp", &serde_json::json!({
        "inbound": [
            {"from": "group:B", "services": ["any"]},
            {"from": "kind:lab", "services": ["any"]},
            {"from": format!("org:{vendor_org}"), "hosts": [format!("{EQUIPMENT}/32")], "services": [format!("tcp/{MAINTENANCE_PORT}")], "require_approval": true}
        ],
        "outbound": [{"to": "*", "services": ["any"]}]
    }))?;
    lab.set_policy("vendor", &serde_json::json!({"inbound": [], "outbound": [{"to": "kind:hospital", "services": [format!("tcp/{MAINTENANCE_PORT}")]}]}))?;
    println!("  hospital accepts group B and the lab for any service, the vendor only at {EQUIPMENT} tcp/{MAINTENANCE_PORT} inside an approval window");

    step("Agents starting in every site (each holds only its own key store)");
    for s in lab.sites.clone() {
        lab.start_agent(s.key, args.idle_timeout)?;
    }
    // The hospital's equipment and its services.
    let hosp_ns = lab.site("hosp").ns.clone();
    ip(&[
        "-n",
        &hosp_ns,
        "addr",
        "add",
        &format!("{EQUIPMENT}/32"),
        "dev",
        "site0",
    ])?;
    lab.echo_server("hosp", EQUIPMENT, MAINTENANCE_PORT)?;
    lab.echo_server("hosp", EQUIPMENT, 80)?;
    lab.echo_server("hosp", &lab.site("hosp").host(), 8080)?;

    step("Connection applications (TR D.6 k)");
    for (from, to, want) in [
        ("clinic", "hosp", true),
        ("pharm", "hosp", true),
        ("lab", "hosp", true),
        ("clinic", "lab", false),
        ("outsider", "hosp", false),
        ("outsider", "clinic", false),
        ("vendor", "hosp", false),
    ] {
        let (granted, why) = lab.apply(from, to)?;
        let what = if want { "granted" } else { "refused" };
        report.check(
            granted == want,
            &format!(
                "{from} → {to}: {what}{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            ),
        );
    }
    let pushed = wait_for(Duration::from_secs(10), || {
        lab.has_connection("clinic", "hosp")
            && lab.has_connection("hosp", "clinic")
            && lab.has_connection("lab", "hosp")
    });
    report.check(
        pushed.is_some(),
        &format!(
            "grants pushed to both ends and installed{}",
            pushed
                .map(|d| format!(" in {} ms", d.as_millis()))
                .unwrap_or_default()
        ),
    );

    step("On demand: no tunnel until traffic, then up at the first packet");
    report.check(
        lab.live_children("clinic") == 0 && lab.live_children("hosp") == 0,
        "no SA exists before any traffic",
    );
    let hosp_host = lab.site("hosp").host();
    let t0 = Instant::now();
    let first = lab.ping("clinic", &hosp_host);
    report.check(
        first,
        &format!(
            "clinic → hospital: the first echo is answered ({} ms including tunnel setup)",
            t0.elapsed().as_millis()
        ),
    );
    report.check(
        lab.tcp("clinic", &hosp_host, 8080),
        "clinic → hospital: TCP through the tunnel",
    );
    report.check(
        lab.ping("pharm", &hosp_host) && lab.ping("lab", &hosp_host),
        "pharmacy and lab reach the hospital too: the hospital holds three sessions at once",
    );
    let sessions = lab
        .tunnel_status("hosp")
        .ok()
        .and_then(|v| {
            v["connections"]
                .as_array()
                .map(|cs| cs.iter().filter(|c| c["state"] == "established").count())
        })
        .unwrap_or(0);
    report.check(
        sessions >= 3,
        &format!("hospital: {sessions} established IKE SAs (multi-session)"),
    );

    step("Overlapping private ranges (TR D.7 c): both clinics are 10.2.0.0/24 inside");
    let visible = |key: &str| -> Option<Ipv4Addr> {
        let d = lab.admin(&["device", "show", &lab.site(key).device]).ok()?;
        let net = d["mapped_subnets"][0].as_str()?.to_string();
        let base: Ipv4Addr = net.split('/').next()?.parse().ok()?;
        println!(
            "  {:<14} inside {} is seen by its peers as {net}",
            lab.site(key).name,
            lab.site(key).subnet()
        );
        Some(Ipv4Addr::from(u32::from(base) + 1))
    };
    let (v1, v2) = (visible("clinic"), visible("clinic2"));
    report.check(
        v1.is_some() && v2.is_some() && v1 != v2,
        "the centre gave the two clinics distinct visible prefixes",
    );
    let (granted, why) = lab.apply("clinic2", "hosp")?;
    report.check(granted, &format!("second clinic → hospital: granted {why}"));
    wait_for(Duration::from_secs(10), || {
        lab.has_connection("clinic2", "hosp")
    });
    report.check(
        lab.ping("clinic2", &hosp_host) && lab.tcp("clinic2", &hosp_host, 8080),
        "second clinic (also 10.2.0.1 inside) → hospital: ICMP and TCP",
    );
    report.check(
        lab.ping("clinic", &hosp_host),
        "first clinic → hospital still works",
    );
    if let (Some(v1), Some(v2)) = (v1, v2) {
        let ping = |to: Ipv4Addr| lab.ping("hosp", &to.to_string());
        report.check(
            ping(v1) && ping(v2),
            &format!("hospital → {v1} and {v2}: each answered by its own clinic"),
        );
    }

    step("Isolation: no grant, no path");
    let lab_host = lab.site("lab").host();
    report.check(
        !lab.ping("clinic", &lab_host),
        "clinic → lab: unreachable (different groups)",
    );
    report.check(
        !lab.ping("outsider", &hosp_host) && !lab.ping("outsider", &lab.site("clinic").host()),
        "outsider → anyone: unreachable",
    );
    report.check(
        !lab.ping("pharm", &lab.site("clinic").host()),
        "pharmacy → clinic: unreachable (no grant between them)",
    );

    step("Idle: tunnels go down by themselves");
    let idle = wait_for(args.idle_timeout * 3 + Duration::from_secs(5), || {
        lab.live_children("clinic") == 0
    });
    report.check(
        idle.is_some(),
        &format!("clinic's SAs deleted after {:?} idle", args.idle_timeout),
    );
    report.check(
        lab.ping("clinic", &hosp_host),
        "…and back on demand at the next packet",
    );

    step("Three-point audit: both ends report the session to the centre under one id");
    let hosp_dev = lab.site("hosp").device.clone();
    let clinic_dev = lab.site("clinic").device.clone();
    let both_ends = |v: &Value| {
        v["ends"].as_array().is_some_and(|e| {
            let who: Vec<&str> = e.iter().filter_map(|x| x["device_id"].as_str()).collect();
            who.contains(&hosp_dev.as_str()) && who.contains(&clinic_dev.as_str())
        })
    };
    lab.ping("clinic", &hosp_host);
    let mut live = None;
    wait_for(Duration::from_secs(5), || {
        live = lab
            .admin(&["session", "list", "--device", &clinic_dev])
            .ok()
            .and_then(|v| v.as_array().and_then(|a| a.last().cloned()))
            .and_then(|s| s["id"].as_str().map(String::from))
            .and_then(|id| {
                lab.admin(&["session", "show", &id])
                    .ok()
                    .filter(both_ends)
                    .map(|_| id)
            });
        live.is_some()
    });
    report.check(
        live.is_some(),
        "clinic ↔ hospital session: reported up by both ends, one session id",
    );
    if let Some(id) = live {
        lab.admin(&["session", "cut", &id, "--reason", "demo: operator cut"])?;
        let gone = wait_for(Duration::from_secs(3), || {
            ["clinic", "hosp"].iter().all(|k| {
                lab.tunnel_status(k)
                    .is_ok_and(|v| !v.to_string().contains(&id))
            })
        });
        report.check(
            gone.is_some(),
            &format!("operator cut session {id}: SAs deleted at both ends"),
        );
        let downs = wait_for(Duration::from_secs(5), || {
            lab.admin(&["session", "show", &id]).is_ok_and(|v| {
                v["ends"]
                    .as_array()
                    .is_some_and(|e| e.len() == 2 && e.iter().all(|x| !x["down_at"].is_null()))
            })
        });
        report.check(
            downs.is_some(),
            "both ends reported the cut session down, with their byte counts",
        );
    }

    step("Vendor maintenance window (TR §9.2): only the contracted equipment and port");
    let hosp_org = lab.site("hosp").org.clone();
    let cred = lab.work.join("hosp-admin.token");
    lab.admin(&["org", "admin", &hosp_org, "--out", &cred.to_string_lossy()])?;
    let appr = lab.admin_as(
        &cred,
        &[
            "approval",
            "open",
            "--approver",
            &hosp_org,
            "--applicant",
            &vendor_org,
            "--minutes",
            "30",
        ],
    )?;
    let appr = appr["id"].as_str().context("approval id")?.to_string();
    println!("  the hospital opened approval window {appr} for the vendor");
    let (granted, why) = lab.apply("vendor", "hosp")?;
    report.check(
        granted,
        &format!("vendor → hospital: granted inside the window {why}"),
    );
    wait_for(Duration::from_secs(10), || {
        lab.has_connection("vendor", "hosp")
    });
    report.check(
        lab.tcp("vendor", EQUIPMENT, MAINTENANCE_PORT),
        &format!("vendor → {EQUIPMENT}:{MAINTENANCE_PORT}: open"),
    );
    report.check(
        !lab.tcp("vendor", EQUIPMENT, 80),
        &format!(
            "vendor → {EQUIPMENT}:80: refused by the agents' service filters (not contracted)"
        ),
    );
    report.check(
        !lab.ping("vendor", &hosp_host),
        "vendor → the hospital's other hosts: unreachable",
    );
    let t0 = Instant::now();
    lab.admin_as(&cred, &["approval", "close", &appr])?;
    let cut = time_until_cut(lab, "vendor", EQUIPMENT, t0, Duration::from_secs(5));
    check_cut(
        report,
        cut,
        "window closed: the vendor's path is cut",
        "the change",
    );
    report.check(
        !lab.tcp("vendor", EQUIPMENT, MAINTENANCE_PORT),
        "vendor → equipment after the window: refused",
    );

    step("A policy narrowed: the hospital now accepts the lab for TCP 8080 only");
    report.check(
        lab.ping("lab", &hosp_host) && lab.tcp("lab", &hosp_host, 8080),
        "lab → hospital: ICMP and TCP 8080 before",
    );
    let t0 = Instant::now();
    lab.set_policy("hosp", &serde_json::json!({
        "inbound": [
            {"from": "group:B", "services": ["any"]},
            {"from": "kind:lab", "services": ["tcp/8080"]},
            {"from": format!("org:{vendor_org}"), "hosts": [format!("{EQUIPMENT}/32")], "services": [format!("tcp/{MAINTENANCE_PORT}")], "require_approval": true}
        ],
        "outbound": [{"to": "*", "services": ["any"]}]
    }))?;
    let cut = time_until_cut(lab, "lab", &hosp_host, t0, Duration::from_secs(5));
    check_cut(
        report,
        cut,
        "the lab's grant re-issued narrower: its ICMP is refused",
        "the policy change",
    );
    report.check(
        lab.tcp("lab", &hosp_host, 8080),
        "lab → hospital TCP 8080 still works on the renegotiated tunnel",
    );

    step("Resilience: the centre goes away, an agent crashes");
    let connects = |lab: &Lab| -> Vec<usize> {
        lab.sites
            .iter()
            .map(|s| {
                std::fs::read_to_string(lab.work.join(format!("agent-{}.log", s.key)))
                    .map(|t| t.matches("connected to the centre").count())
                    .unwrap_or(0)
            })
            .collect()
    };
    let clinic_log = lab.work.join("agent-clinic.log");
    let mark = std::fs::metadata(&clinic_log)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    lab.stop("center.log");
    println!("  centre stopped");
    report.check(
        lab.ping("clinic", &hosp_host),
        "centre down: clinic → hospital still works",
    );
    wait_for(args.idle_timeout * 3 + Duration::from_secs(5), || {
        lab.live_children("clinic") == 0
    });
    report.check(
        lab.ping("clinic", &hosp_host),
        "centre down: after idle teardown, on-demand setup still works for the grants held",
    );
    // Sessions that came and went while the centre was away: their reports wait in
    // the key store, across the crash below.
    let offline: Vec<String> = std::fs::read_to_string(&clinic_log)
        .unwrap_or_default()
        .get(mark..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(": down ("))
        .filter_map(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "session")
                .nth(1)
                .map(String::from)
        })
        .collect();
    lab.kill9("agent-clinic.log");
    println!("  clinic's agent killed with SIGKILL");
    lab.start_agent("clinic", args.idle_timeout)?;
    let back = wait_for(Duration::from_secs(10), || lab.ping("clinic", &hosp_host));
    report.check(back.is_some(), "agent restarted with the centre still down: its grants came back from the key store and the tunnel works");
    let before = connects(lab);
    lab.start_centre()?;
    let back = wait_for(Duration::from_secs(15), || {
        connects(lab)
            .iter()
            .zip(&before)
            .all(|(now, then)| now > then)
    });
    report.check(
        back.is_some(),
        &format!(
            "centre back: every agent reconnected{}",
            back.map(|d| format!(" within {} ms", d.as_millis()))
                .unwrap_or_default()
        ),
    );
    let delivered = !offline.is_empty()
        && wait_for(Duration::from_secs(15), || {
            offline.iter().all(|id| {
                lab.admin(&["session", "show", id]).is_ok_and(|v| {
                    v["ends"].as_array().is_some_and(|e| {
                        e.iter().any(|x| {
                            x["device_id"].as_str() == Some(clinic_dev.as_str())
                                && !x["down_at"].is_null()
                        })
                    })
                })
            })
        })
        .is_some();
    report.check(
        delivered,
        &format!("the clinic's reports of {} session(s) held while the centre was away, across its crash, reached the centre", offline.len()),
    );
    let grant = lab
        .admin(&[
            "grant",
            "list",
            "--device",
            &clinic_dev,
            "--status",
            "active",
        ])?
        .as_array()
        .and_then(|a| a.first().cloned())
        .and_then(|g| g["id"].as_str().map(String::from))
        .context("clinic holds no active grant")?;
    let t0 = Instant::now();
    lab.admin(&[
        "grant",
        "withdraw",
        &grant,
        "--reason",
        "demo: policy review",
    ])?;
    let cut = time_until_cut(lab, "clinic", &hosp_host, t0, Duration::from_secs(10));
    report.check(cut.is_some(), &format!("agents resynchronised with the restarted centre: a grant withdrawn there cut the clinic's path {}", cut.map(|d| format!("{} ms later", d.as_millis())).unwrap_or_default()));

    step("Revocation cuts a live tunnel");
    report.check(lab.ping("pharm", &hosp_host), "pharmacy ↔ hospital live");
    let pharm_dev = lab.site("pharm").device.clone();
    let t0 = Instant::now();
    lab.admin(&[
        "device",
        "revoke",
        &pharm_dev,
        "--reason",
        "demo: stolen device",
    ])?;
    let cut = time_until_cut(lab, "pharm", &hosp_host, t0, Duration::from_secs(5));
    check_cut(
        report,
        cut,
        "pharmacy revoked: tunnel cut",
        "the revocation",
    );
    report.check(
        !lab.ping("pharm", &hosp_host),
        "the revoked pharmacy stays out",
    );

    step("Audit");
    let actions = lab.audit_actions()?;
    for a in [
        "connection.granted",
        "connection.denied",
        "approval.opened",
        "approval.closed",
        "connection.withdrawn",
        "device.revoked",
        "session.up",
        "session.down",
        "session.cut",
    ] {
        report.check(actions.iter().any(|x| x == a), &format!("audit holds {a}"));
    }
    let v = lab.admin(&["audit", "verify"])?;
    report.check(
        v["ok"].as_bool() == Some(true),
        &format!("audit chain verifies ({} records)", v["records"]),
    );
    Ok(())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let work = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("dodvpn-demo-{}", std::process::id())),
    };
    let keep = args.keep || args.work.is_some();
    println!("dodvpn demo: a DOD-VPN on one machine (TR §9). Ctrl-C stops it and removes everything it made.");
    let lab = tokio::task::spawn_blocking({
        let work = work.clone();
        move || Lab::build(work, SITES)
    })
    .await??;
    let cleanup = lab.clone();
    let mut lab2 = lab.clone();
    let args2 = args.clone();
    let scenario = tokio::task::spawn_blocking(move || {
        let mut report = Report::default();
        let r = scenario(&mut lab2, &args2, &mut report);
        (r, report)
    });
    let outcome = tokio::select! {
        r = scenario => Some(r?),
        _ = crate::shutdown_signal() => None,
    };
    let Some((r, report)) = outcome else {
        println!("\nstopping: removing namespaces and processes");
        cleanup.cleanup(keep);
        println!(
            "stopped; nothing left behind{}",
            if keep {
                format!(" but {}", work.display())
            } else {
                String::new()
            }
        );
        // The scenario thread cannot be interrupted mid-step; leave without it.
        std::process::exit(130);
    };
    println!(
        "\n{} checks passed, {} failed",
        report.passed,
        report.failed.len()
    );
    for f in &report.failed {
        println!("  failed: {f}");
    }
    if let Err(e) = &r {
        println!("the demo stopped early: {e:#}");
    }
    println!("audit log: `dodvpn admin audit list` against {} (database {}/center/center.db); API description at {}/openapi.json",
        lab.center_url, work.display(), lab.center_url);
    if !args.exit && r.is_ok() {
        println!("everything stays up for you to explore (e.g. `ip netns exec {} ping {}`); Ctrl-C to stop", lab.site("clinic").ns, lab.site("hosp").host());
        crate::shutdown_signal().await;
    }
    cleanup.cleanup(keep);
    if keep {
        println!("kept {}", work.display());
    }
    r?;
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} of {} checks failed",
            report.failed.len(),
            report.passed + report.failed.len()
        );
    }
    Ok(())
}

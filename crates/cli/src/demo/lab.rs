//! The demo's lab: a bridge namespace (the "internet", also the centre's home) and one
//! namespace per site, the processes started in them, and the probes the steps use.
//! Everything it creates is removed exactly once, on exit or Ctrl-C.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::enrol::D6;

/// One organisation's site: a namespace with an outer address on the bridge and an
/// inside subnet on a dummy interface. A site on a dynamic address sits behind a
/// masquerading NAT of its own (a broadband router): its outer address is private,
/// and only the NAT's public address is on the bridge.
#[derive(Clone)]
pub struct Site {
    pub key: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub ns: String,
    pub outer: Ipv4Addr,
    /// The NAT in front of the site, if any: its namespace and public address.
    pub nat: Option<(String, Ipv4Addr)>,
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
    /// The address the rest of the network sees the site at.
    pub fn public(&self) -> Ipv4Addr {
        self.nat.as_ref().map_or(self.outer, |n| n.1)
    }
    /// The site's next DHCP lease behind its NAT (one up from its current address).
    pub fn next_lease(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.outer) + 1)
    }
}

/// The NAT's rules: masquerade out of the public side, let in only what answers.
const NAT_RULES: &str = "table ip demo_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan0\" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname \"lan0\" oifname \"wan0\" accept
    ct state established,related accept
  }
}
";

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

pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    run_cmd(Command::new("ip").args(args))
}

impl Lab {
    /// Create the bridge namespace (which also hosts the centre) and one namespace per site.
    pub fn build(work: PathBuf, specs: &[SiteSpec]) -> anyhow::Result<Lab> {
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
        for (i, &(key, name, kind, n, behind_nat)) in specs.iter().enumerate() {
            let ns = format!("{tag}-{key}");
            lab.add_ns(&ns)?;
            let public = Ipv4Addr::new(192, 0, 2, 11 + i as u8);
            let a: String = format!("{tag}{key}").chars().take(15).collect();
            let (on_bridge, wan_if) = if behind_nat {
                let nat = format!("{tag}-{key}n");
                lab.add_ns(&nat)?;
                (nat, "wan0")
            } else {
                (ns.clone(), "out0")
            };
            ip(&[
                "-n", &lab.wan, "link", "add", &a, "type", "veth", "peer", "name", wan_if, "netns",
                &on_bridge,
            ])?;
            ip(&["-n", &lab.wan, "link", "set", &a, "master", "br0", "up"])?;
            let addr = |ns: &str, a: Ipv4Addr, dev: &str| -> anyhow::Result<()> {
                ip(&["-n", ns, "addr", "add", &format!("{a}/24"), "dev", dev])?;
                ip(&["-n", ns, "link", "set", dev, "up"])?;
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
                Ok(())
            };
            addr(&on_bridge, public, wan_if)?;
            let (outer, nat) = if behind_nat {
                // A home router: 192.168.N.1 inside, the site at .2 with its default route there.
                let (router, outer) =
                    (Ipv4Addr::new(192, 168, n, 1), Ipv4Addr::new(192, 168, n, 2));
                ip(&[
                    "-n", &on_bridge, "link", "add", "lan0", "type", "veth", "peer", "name",
                    "out0", "netns", &ns,
                ])?;
                addr(&on_bridge, router, "lan0")?;
                addr(&ns, outer, "out0")?;
                ip(&[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &router.to_string(),
                ])?;
                run_cmd(Command::new("ip").args([
                    "netns",
                    "exec",
                    &on_bridge,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ]))?;
                let mut nft = Command::new("ip");
                nft.args(["netns", "exec", &on_bridge, "nft", "-f", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null());
                let mut child = nft.spawn().context("cannot run nft for the site's NAT")?;
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .context("nft stdin")?
                    .write_all(NAT_RULES.as_bytes())?;
                if !child.wait()?.success() {
                    bail!("nft refused the NAT rules for {name}");
                }
                (outer, Some((on_bridge.clone(), public)))
            } else {
                (public, None)
            };
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
                nat,
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

    /// Wait up to `limit` for a process this lab started to exit by itself, and reap it
    /// (no zombie is left until the demo ends); its exit status, None if still running.
    pub fn reap(&self, log: &str, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let mut o = self.owned.lock().unwrap_or_else(|p| p.into_inner());
                let pos = o.children.iter().position(|(l, _)| l == log)?;
                if let Ok(Some(st)) = o.children[pos].1.try_wait() {
                    o.children.remove(pos);
                    return Some(st);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
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

    /// Does the site's namespace hold the agent's nftables table?
    pub fn firewall_installed(&self, key: &str) -> bool {
        let table = dodvpn_agent::firewall::TABLE;
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.site(key).ns,
                "nft",
                "list",
                "table",
                "inet",
                table,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    }

    /// Probes run at once from namespace `ns`, each `{"mark", "src", "addr"[, "port"]}`:
    /// an ICMP echo, or with a port a TCP connection attempt (a refusal is an answer too),
    /// sent with the given socket mark from address `src`. Whether each was answered.
    pub fn probe(&self, ns: &str, probes: &[Value]) -> anyhow::Result<Vec<bool>> {
        const PROBE: &str = r#"
import json, socket, subprocess, sys, threading
probes = json.loads(sys.argv[1]); out = [False] * len(probes)
def run(i, p):
    if "port" not in p:
        r = subprocess.run(["ping", "-c1", "-W1", "-q", "-m", p["mark"], "-I", p["src"], p["addr"]],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[i] = r.returncode == 0
        return
    s = socket.socket(); s.settimeout(1.5)
    s.setsockopt(socket.SOL_SOCKET, 36, int(p["mark"]))  # SO_MARK
    s.bind((p["src"], 0))
    try:
        out[i] = s.connect_ex((p["addr"], p["port"])) in (0, 111)  # connected or refused
    except OSError:
        out[i] = False
ts = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(probes)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"#;
        let arg = serde_json::to_string(probes)?;
        let out =
            run_cmd(Command::new("ip").args(["netns", "exec", ns, "python3", "-c", PROBE, &arg]))?;
        serde_json::from_str(out.trim()).with_context(|| format!("probe printed {out:?}"))
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

/// The seven TR §9 sites: key, organisation name, kind, inside network number.
/// The second clinic uses the same private range as the first (TR D.7 c).
/// (key, name, kind, N of the inside 10.N.0.0/24, behind a NAT on a dynamic address)
pub type SiteSpec = (&'static str, &'static str, &'static str, u8, bool);

pub const SITES: &[SiteSpec] = &[
    ("hosp", "Core Hospital", "hospital", 1, false),
    ("clinic", "Clinic", "clinic", 2, false),
    ("pharm", "Pharmacy", "pharmacy", 3, false),
    ("lab", "Lab", "lab", 4, false),
    ("vendor", "Equipment Vendor", "vendor", 5, false),
    ("outsider", "Outsider", "clinic", 6, false),
    // On consumer broadband: a dynamic address behind its own NAT, no endpoint.
    ("clinic2", "Second Clinic", "clinic", 2, true),
];

/// The vendor's contracted host inside the hospital, and its maintenance port.
pub const EQUIPMENT: &str = "10.1.0.50";
pub const MAINTENANCE_PORT: u16 = 22;

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

    /// TR D.6 a–l for every site, through the CLI: organisation, order, registration
    /// here, then provisioning of the tier-1 key, delivery, application, approval,
    /// enrolment with a separate tier-2 key and service start ([`D6::enrol`]).
    pub fn enrol_all(&mut self) -> anyhow::Result<()> {
        let vendor_org = self.admin(&["org", "create", "Device Provider", "--kind", "vendor"])?;
        let vendor_org = vendor_org["id"].as_str().context("org id")?.to_string();
        let order = self.admin(&["order", "create", "--org", &vendor_org, "--model", "DV-100"])?;
        let order = order["id"].as_str().context("order id")?.to_string();
        let (ca, token) = (
            self.work.join("center/pki/root.pem"),
            self.work.join("center/admin.token"),
        );
        for i in 0..self.sites.len() {
            let s = self.sites[i].clone();
            let org = self.admin(&["org", "create", s.name, "--kind", s.kind])?;
            let org = org["id"].as_str().context("org id")?.to_string();
            let serial = format!("DEMO-{}", s.key);
            let (outer, subnet) = (s.outer.to_string(), s.subnet());
            let mut args = vec![
                "device", "register", "--serial", &serial, "--model", "DV-100", "--owner", &org,
                "--order", &order, "--subnet", &subnet,
            ];
            // A site behind a NAT has no address to register: it is found by its
            // certificate and the candidates its agent reports.
            if s.nat.is_none() {
                args.extend(["--endpoint", &outer]);
            }
            let dev = self.admin(&args)?;
            let dev = dev["id"].as_str().context("device id")?.to_string();
            D6 {
                center: &self.center_url,
                ca: &ca,
                credential: &token,
                provider: &|a| self.dodvpn(&self.wan, a),
                device: &|a| self.dodvpn(&s.ns, a),
            }
            .enrol(&dev, &s.keystore)
            .with_context(|| format!("enrolling {}", s.name))?;
            let at = match &s.nat {
                Some((_, public)) => format!("{} behind a NAT ({public}), no endpoint", s.outer),
                None => s.outer.to_string(),
            };
            println!(
                "  {:<18} device {dev} enrolled (tier 1 → tier 2), site {} at {at}",
                s.name,
                s.subnet(),
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
    /// A refusal exits non-zero and still prints its answer.
    pub fn apply(&self, from: &str, to: &str) -> anyhow::Result<(bool, String)> {
        let ca = self.work.join("center/pki/root.pem");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.wan])
            .arg(&self.exe)
            .args(["admin", "--json", "--center", &self.center_url, "--ca"])
            .arg(&ca)
            .arg("--credential-file")
            .arg(self.work.join("center/admin.token"))
            .args([
                "connection",
                "apply",
                "--from",
                &self.site(from).device,
                "--to",
                &self.site(to).device,
            ])
            .output()
            .context("run dodvpn admin connection apply")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let r: Value = serde_json::from_str(&stdout).with_context(|| {
            format!(
                "connection apply printed no JSON: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let o = &r["outcomes"][0];
        let granted = o["granted"].as_bool().unwrap_or(false);
        anyhow::ensure!(
            granted == out.status.success(),
            "connection apply exited {} for granted={granted}",
            out.status
        );
        Ok((
            granted,
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

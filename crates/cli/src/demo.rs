//! `dodvpn demo`: the TR §9 network on one machine. A centre on the embedded default
//! (SQLite) and six sites, each in its own network namespace on a shared "internet"
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

fn run(cmd: &mut Command) -> anyhow::Result<String> {
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
    run(Command::new("ip").args(args))
}

impl Lab {
    /// Create the bridge namespace (which also hosts the centre) and one namespace per site.
    pub fn build(work: PathBuf, specs: &[(&'static str, &'static str, &'static str)]) -> anyhow::Result<Lab> {
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
        ip(&["-n", &lab.wan, "addr", "add", &format!("{CENTRE_ADDR}/24"), "dev", "br0"])?;
        ip(&["-n", &lab.wan, "link", "set", "br0", "up"])?;
        ip(&["-n", &lab.wan, "link", "set", "lo", "up"])?;
        for (i, (key, name, kind)) in specs.iter().enumerate() {
            let n = i as u8 + 1;
            let ns = format!("{tag}-{key}");
            lab.add_ns(&ns)?;
            let outer = Ipv4Addr::new(192, 0, 2, 10 + n);
            let (a, b) = (format!("{tag}{key}"), "out0".to_string());
            let a: String = a.chars().take(15).collect();
            ip(&["-n", &lab.wan, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &ns])?;
            ip(&["-n", &lab.wan, "link", "set", &a, "master", "br0", "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{outer}/24"), "dev", "out0"])?;
            ip(&["-n", &ns, "link", "set", "out0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // The site's inside network: a dummy interface (ifb where there is no dummy).
            if ip(&["-n", &ns, "link", "add", "site0", "type", "dummy"]).is_err() {
                ip(&["-n", &ns, "link", "add", "site0", "type", "ifb"])?;
            }
            ip(&["-n", &ns, "addr", "add", &format!("10.{n}.0.1/24"), "dev", "site0"])?;
            ip(&["-n", &ns, "link", "set", "site0", "up"])?;
            for k in ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"] {
                run(Command::new("ip").args(["netns", "exec", &ns, "sysctl", "-qw", k]))?;
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
        ip(&["netns", "add", ns])?;
        self.owned.lock().unwrap().namespaces.push(ns.to_string());
        Ok(())
    }

    /// Start a long-running process inside a namespace, logging to WORK/LOG.
    pub fn spawn(&self, ns: &str, log: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<u32> {
        let f = std::fs::File::create(self.work.join(log))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {args:?}"))?;
        let pid = child.id();
        self.owned.lock().unwrap().children.push((log.to_string(), child));
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

    /// `dodvpn ARGS` inside a namespace, waiting for it; its stdout.
    pub fn dodvpn(&self, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&self.exe)
            .args(args)
            .env("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE))
    }

    /// `dodvpn admin --json ARGS` as the provider (or with another credential file).
    pub fn admin_as(&self, credential: &Path, args: &[&str]) -> anyhow::Result<Value> {
        let ca = self.work.join("center/pki/root.crt");
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
        let s = self.site(from);
        Command::new("ip")
            .args(["netns", "exec", &s.ns, "ping", "-c1", "-W1", "-q", "-I", &s.host(), to_addr])
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
        self.spawn(&s.ns.clone(), &format!("echo-{at}-{port}.log"), &["python3", "-c", &code], &[])?;
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

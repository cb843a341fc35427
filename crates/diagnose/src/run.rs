//! The I/O: connect, read with deadlines, pace every probe, and turn what the
//! sans-IO modules judge into findings.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};

use crate::banner::{self, Greeting};
use crate::pace::Pacer;
use crate::{dns, ftp, http, icmp, ports, snmp, socks, tls, Finding, Proto};

#[derive(Clone, Debug)]
pub struct Options {
    /// TCP ports to probe.
    pub ports: Vec<u16>,
    /// Probes per second per target (connections and datagrams).
    pub rate: u32,
    pub connect_timeout: Duration,
    /// Longest wait for one answer.
    pub read_timeout: Duration,
    /// How long to wait for a greeting a server sends unasked.
    pub greeting_wait: Duration,
    /// The provider's own canary `host:port` for the open-proxy check; without it the
    /// check is skipped (never a third party's host).
    pub canary: Option<(String, u16)>,
    /// Zones to try to transfer (AXFR) from DNS servers found.
    pub dns_zones: Vec<String>,
    /// A name the DNS servers are not authoritative for, asked with recursion desired.
    pub recursion_name: String,
    /// Most connections in flight per target.
    pub parallel: usize,
    /// Probe UDP echo/chargen/daytime/SNMP and send one ICMP timestamp request (raw
    /// socket: needs root or CAP_NET_RAW; skipped with a note otherwise).
    pub udp_and_icmp: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ports: ports::default_tcp(),
            rate: 100,
            connect_timeout: Duration::from_millis(1500),
            read_timeout: Duration::from_secs(3),
            greeting_wait: Duration::from_millis(800),
            canary: None,
            dns_zones: Vec::new(),
            recursion_name: "dodvpn-diagnose-recursion.invalid.".into(),
            parallel: 64,
            udp_and_icmp: true,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub targets: Vec<String>,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub open_ports: BTreeMap<String, Vec<u16>>,
    pub findings: Vec<Finding>,
    /// Checks not run, and why.
    pub skipped: Vec<String>,
    pub probes: u64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const HTTP_PORTS: &[u16] = &[
    80, 81, 591, 3000, 3128, 5000, 7070, 8000, 8008, 8080, 8081, 8888, 10000,
];
const TLS_PORTS: &[u16] = &[
    443, 444, 465, 636, 853, 990, 993, 995, 4433, 4443, 5061, 8443, 10443,
];
const PROXY_PORTS: &[u16] = &[3128, 8080, 8000, 8888, 80, 8081, 1080];
const SOCKS_PORTS: &[u16] = &[1080, 1081, 1085, 9050];

/// Diagnose every target (already checked against the organisation's scope).
pub async fn diagnose(targets: &[IpAddr], opts: &Options) -> Report {
    let started_ms = now_ms();
    let opts = Arc::new(opts.clone());
    let probes = Arc::new(AtomicU64::new(0));
    let raw_ok = opts.udp_and_icmp && raw_icmp_socket().is_ok();
    let mut set = tokio::task::JoinSet::new();
    for &t in targets {
        let opts = opts.clone();
        let probes = probes.clone();
        set.spawn(async move { Target::new(t, opts, probes, raw_ok).run().await });
    }
    let mut findings = Vec::new();
    let mut open_ports = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        if let Ok((t, open, f)) = r {
            open_ports.insert(t.to_string(), open);
            findings.extend(f);
        }
    }
    findings.sort_by(|a, b| (&a.target, a.port, &a.check).cmp(&(&b.target, b.port, &b.check)));
    let mut skipped = Vec::new();
    if opts.canary.is_none() {
        skipped.push("proxy: 中継確認用のカナリアが指定されていないため省略 / open-proxy check skipped: no --canary given".into());
    }
    if opts.udp_and_icmp && !raw_ok {
        skipped.push("icmp.timestamp: raw ソケットを開けないため省略（root または CAP_NET_RAW が必要） / ICMP timestamp skipped: cannot open a raw socket (needs root or CAP_NET_RAW)".into());
    }
    if opts.dns_zones.is_empty() {
        skipped.push("dns.axfr: ゾーンが指定されていないため省略 / zone-transfer check skipped: no --dns-zone given".into());
    }
    Report {
        targets: targets.iter().map(|t| t.to_string()).collect(),
        started_ms,
        finished_ms: now_ms(),
        open_ports,
        findings,
        skipped,
        probes: probes.load(Ordering::Relaxed),
    }
}

struct Target {
    ip: IpAddr,
    opts: Arc<Options>,
    pacer: Mutex<Pacer>,
    probes: Arc<AtomicU64>,
    gate: Semaphore,
    raw_ok: bool,
}

impl Target {
    fn new(ip: IpAddr, opts: Arc<Options>, probes: Arc<AtomicU64>, raw_ok: bool) -> Arc<Target> {
        Arc::new(Target {
            ip,
            raw_ok,
            pacer: Mutex::new(Pacer::new(opts.rate)),
            gate: Semaphore::new(opts.parallel.max(1)),
            opts,
            probes,
        })
    }

    /// Wait for this target's next probe slot.
    async fn slot(&self) {
        let at = {
            let mut p = self.pacer.lock().unwrap_or_else(|e| e.into_inner());
            p.slot(std::time::Instant::now())
        };
        self.probes.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep_until(Instant::from_std(at)).await;
    }

    async fn connect(&self, port: u16) -> Option<TcpStream> {
        self.slot().await;
        let addr = SocketAddr::new(self.ip, port);
        match timeout(self.opts.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Some(s),
            _ => None,
        }
    }

    fn finding(&self, port: u16, check: &str, evidence: &[u8]) -> Finding {
        Finding::new(self.ip, Proto::Tcp, port, check, evidence)
    }

    async fn run(self: Arc<Self>) -> (IpAddr, Vec<u16>, Vec<Finding>) {
        let mut set = tokio::task::JoinSet::new();
        for &port in &self.opts.ports {
            let me = self.clone();
            set.spawn(async move {
                let _permit = me.gate.acquire().await.ok()?;
                let mut s = me.connect(port).await?;
                // Whatever the server says unasked; bounded in time and size (chargen).
                let greeting = read_bounded(&mut s, 512, me.opts.greeting_wait, |_| false).await;
                drop(s);
                Some((port, greeting))
            });
        }
        let mut open = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Some(x)) = r {
                open.push(x);
            }
        }
        open.sort();
        let mut set = tokio::task::JoinSet::new();
        for (port, greeting) in open.clone() {
            let me = self.clone();
            set.spawn(async move {
                let _permit = me.gate.acquire().await.ok();
                me.services(port, &greeting).await
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(f) = r {
                out.extend(f);
            }
        }
        if open.iter().any(|(p, _)| *p == 53) {
            out.extend(self.dns_udp().await);
        }
        if self.opts.udp_and_icmp {
            let (a, b) = tokio::join!(self.udp_services(), self.icmp_timestamp());
            out.extend(a);
            out.extend(b);
        }
        (self.ip, open.into_iter().map(|(p, _)| p).collect(), out)
    }

    async fn services(&self, port: u16, greeting: &[u8]) -> Vec<Finding> {
        let mut out =
            vec![self.finding(port, "tcp.open", &banner::first_line(greeting).into_bytes())];
        let kind = banner::classify(greeting);
        match (port, kind) {
            (_, Greeting::Ssh) => {
                out.push(self.finding(port, "ssh.banner", banner::first_line(greeting).as_bytes()))
            }
            (_, Greeting::Smtp) => {
                out.push(self.finding(port, "smtp.banner", banner::first_line(greeting).as_bytes()))
            }
            (_, Greeting::Ftp) => {
                out.push(self.finding(port, "ftp.banner", banner::first_line(greeting).as_bytes()));
                out.extend(self.ftp_anonymous(port).await);
            }
            (_, Greeting::Vnc) | (5900..=5909, _) => {
                out.push(self.finding(port, "vnc.exposed", greeting))
            }
            (_, Greeting::Telnet) | (23, _) => {
                out.push(self.finding(port, "telnet.exposed", greeting))
            }
            (19, _) if !greeting.is_empty() => {
                out.push(self.finding(port, "chargen.tcp", greeting))
            }
            (13, _) if !greeting.is_empty() => {
                out.push(self.finding(port, "daytime.tcp", greeting))
            }
            (7, _) => out.extend(self.echo(port).await),
            (53, _) => out.extend(self.dns_tcp(port).await),
            (3389, _) => out.extend(self.rdp(port).await),
            (139 | 445, _) => {
                out.push(self.finding(port, "smb.exposed", format!("TCP {port} open").as_bytes()))
            }
            _ => {}
        }
        if greeting.is_empty() && (HTTP_PORTS.contains(&port) || !TLS_PORTS.contains(&port)) {
            out.extend(self.http(port).await);
        }
        if greeting.is_empty() && (TLS_PORTS.contains(&port) || !HTTP_PORTS.contains(&port)) {
            out.extend(self.tls(port).await);
        }
        if greeting.is_empty() && SOCKS_PORTS.contains(&port) {
            out.extend(self.socks(port).await);
        }
        if greeting.is_empty() && PROXY_PORTS.contains(&port) {
            out.extend(self.proxy(port).await);
        }
        out
    }

    /// One exchange: send `req`, read until `done` says so, `max` bytes or the deadline.
    async fn exchange(
        &self,
        port: u16,
        req: &[u8],
        max: usize,
        done: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let mut s = self.connect(port).await?;
        timeout(self.opts.read_timeout, s.write_all(req))
            .await
            .ok()?
            .ok()?;
        Some(read_bounded(&mut s, max, self.opts.read_timeout, done).await)
    }

    async fn http(&self, port: u16) -> Vec<Finding> {
        let req = format!("GET / HTTP/1.0\r\nHost: {}\r\nUser-Agent: dodvpn-diagnose\r\nConnection: close\r\n\r\n", host_header(self.ip, port));
        let Some(b) = self
            .exchange(port, req.as_bytes(), 16 * 1024, |_| false)
            .await
        else {
            return vec![];
        };
        let Some(h) = http::parse(&b) else {
            return vec![];
        };
        let mut out = Vec::new();
        let ev = format!(
            "{} | Server: {} | title: {}",
            banner::first_line(&b),
            h.server.as_deref().unwrap_or("-"),
            h.title.as_deref().unwrap_or("-")
        );
        if h.server.is_some() || h.title.is_some() {
            out.push(self.finding(port, "http.banner", ev.as_bytes()));
        }
        if h.is_directory_listing() {
            out.push(self.finding(port, "http.dir_listing", ev.as_bytes()));
        }
        if let Some(p) = h.vpn_login_product() {
            out.push(self.finding(port, "http.vpn_login", format!("{p}: {ev}").as_bytes()));
        }
        out
    }

    /// Through a suspected proxy, to the provider's own canary: GET, then CONNECT.
    async fn proxy(&self, port: u16) -> Vec<Finding> {
        let Some((host, cport)) = self.opts.canary.clone() else {
            return vec![];
        };
        let mut out = Vec::new();
        let get = format!("GET http://{host}:{cport}/ HTTP/1.1\r\nHost: {host}:{cport}\r\nUser-Agent: dodvpn-diagnose\r\nConnection: close\r\n\r\n");
        if let Some(b) = self.exchange(port, get.as_bytes(), 4096, |_| false).await {
            if let Some(h) = http::parse(&b) {
                if (200..300).contains(&h.status) {
                    out.push(
                        self.finding(
                            port,
                            "proxy.http_get",
                            format!("GET http://{host}:{cport}/ → {}", banner::first_line(&b))
                                .as_bytes(),
                        ),
                    );
                }
            }
        }
        let connect = format!("CONNECT {host}:{cport} HTTP/1.1\r\nHost: {host}:{cport}\r\n\r\n");
        if let Some(b) = self
            .exchange(port, connect.as_bytes(), 1024, |b| {
                b.windows(4).any(|w| w == b"\r\n\r\n")
            })
            .await
        {
            if http::parse(&b).is_some_and(|h| h.status == 200) {
                out.push(self.finding(
                    port,
                    "proxy.http_connect",
                    format!("CONNECT {host}:{cport} → {}", banner::first_line(&b)).as_bytes(),
                ));
            }
        }
        out
    }

    /// TLS: the certificate (from a hello up to 1.2, read to ServerHelloDone), the old
    /// versions one by one, and one hello offering only weak suites.
    async fn tls(&self, port: u16) -> Vec<Finding> {
        let hello = tls::client_hello(tls::Version::Tls12, random32(), None);
        let Some(b) = self
            .exchange(port, &hello, 64 * 1024, |b| {
                tls::answer(b) == tls::Answer::NotTls || tls::handshake_messages(b).1
            })
            .await
        else {
            return vec![];
        };
        match tls::answer(&b) {
            tls::Answer::Hello { .. } | tls::Answer::Alert(..) => {}
            _ => return vec![],
        }
        let mut out = Vec::new();
        let (msgs, _) = tls::handshake_messages(&b);
        let leaf = msgs
            .iter()
            .find(|m| m.0 == 11)
            .and_then(|m| tls::certificates(&m.1).into_iter().next());
        if let Some(v) = leaf.and_then(|d| tls::view_certificate(&d, now_ms() / 1000)) {
            let ev = format!(
                "subject: {} | issuer: {} | notAfter: {}",
                v.subject, v.issuer, v.not_after
            );
            if v.expired {
                out.push(self.finding(port, "tls.cert_expired", ev.as_bytes()));
            }
            if v.self_signed {
                out.push(self.finding(port, "tls.cert_self_signed", ev.as_bytes()));
            }
        }
        out.extend(self.tls_versions(port).await);
        let weak = tls::weak_hello(random32());
        if let Some(b) = self
            .exchange(port, &weak, 4096, |b| {
                tls::answer(b) != tls::Answer::Incomplete
            })
            .await
        {
            if let tls::Answer::Hello { version, suite } = tls::answer(&b) {
                if let Some(name) = tls::weak_suite(suite) {
                    out.push(
                        self.finding(
                            port,
                            "tls.weak_cipher",
                            format!(
                                "ServerHello 0x{:02x}{:02x} cipher 0x{suite:04x} {name}",
                                version[0], version[1]
                            )
                            .as_bytes(),
                        ),
                    );
                }
            }
        }
        out
    }

    async fn tls_versions(&self, port: u16) -> Vec<Finding> {
        let mut out = Vec::new();
        for (v, check) in [
            (tls::Version::Tls10, "tls.v1_0"),
            (tls::Version::Tls11, "tls.v1_1"),
        ] {
            let hello = tls::client_hello(v, random32(), None);
            let Some(b) = self
                .exchange(port, &hello, 4096, |b| {
                    tls::answer(b) != tls::Answer::Incomplete
                })
                .await
            else {
                continue;
            };
            match tls::answer(&b) {
                tls::Answer::Hello { version, suite } if version == v.wire() => {
                    out.push(self.finding(
                        port,
                        check,
                        format!("ServerHello {} cipher 0x{suite:04x}", v.name()).as_bytes(),
                    ))
                }
                tls::Answer::NotTls => break,
                _ => {}
            }
        }
        out
    }

    /// Anonymous login and a listing; nothing else (no STOR, MKD, DELE: never write).
    async fn ftp_anonymous(&self, port: u16) -> Vec<Finding> {
        let Some(mut s) = self.connect(port).await else {
            return vec![];
        };
        let rt = self.opts.read_timeout;
        let mut say = async |line: Option<&str>| -> Option<(u16, String)> {
            if let Some(l) = line {
                timeout(rt, s.write_all(format!("{l}\r\n").as_bytes()))
                    .await
                    .ok()?
                    .ok()?;
            }
            let b = read_bounded(&mut s, 4096, rt, |b| ftp::reply(b).is_some()).await;
            ftp::reply(&b)
        };
        if say(None).await.map(|r| r.0) != Some(220) {
            return vec![];
        }
        match say(Some("USER anonymous")).await {
            Some((331, _)) => {}
            Some((230, _)) => {}
            _ => return vec![],
        }
        let Some((230, text)) = say(Some("PASS dodvpn-diagnose@")).await else {
            return vec![];
        };
        let mut out = vec![self.finding(
            port,
            "ftp.anonymous",
            format!("USER anonymous → 230: {text}").as_bytes(),
        )];
        if let Some((227, pasv)) = say(Some("PASV")).await {
            if let Some(dport) = ftp::pasv_port(&pasv) {
                // The data connection goes to the same host, whatever address 227 named.
                if let Some(mut data) = self.connect(dport).await {
                    if let Some((150 | 125, _)) = say(Some("LIST")).await {
                        let listing = read_bounded(&mut data, 16 * 1024, rt, |_| false).await;
                        let text = String::from_utf8_lossy(&listing).to_string();
                        let w = ftp::world_writable_dirs(&text);
                        if !w.is_empty() {
                            out.push(self.finding(
                                port,
                                "ftp.anonymous_writable",
                                w.join("\n").as_bytes(),
                            ));
                        } else if let Some(f) = out.first_mut() {
                            f.evidence = crate::finding::printable(
                                format!("{} | LIST: {}", f.evidence, text).as_bytes(),
                                crate::finding::EVIDENCE_MAX,
                            );
                        }
                    }
                }
            }
        }
        let _ = say(Some("QUIT")).await;
        out
    }

    /// SOCKS5 without authentication, asked to CONNECT to the provider's canary.
    async fn socks(&self, port: u16) -> Vec<Finding> {
        let Some((host, cport)) = self.opts.canary.clone() else {
            return vec![];
        };
        let Some(req) = socks::connect(&host, cport) else {
            return vec![];
        };
        let Some(mut s) = self.connect(port).await else {
            return vec![];
        };
        let rt = self.opts.read_timeout;
        if timeout(rt, s.write_all(&socks::GREETING))
            .await
            .ok()
            .and_then(|r| r.ok())
            .is_none()
        {
            return vec![];
        }
        let b = read_bounded(&mut s, 2, rt, |b| b.len() >= 2).await;
        if !socks::no_auth_accepted(&b) {
            return vec![];
        }
        if timeout(rt, s.write_all(&req))
            .await
            .ok()
            .and_then(|r| r.ok())
            .is_none()
        {
            return vec![];
        }
        let r = read_bounded(&mut s, 32, rt, |b| b.len() >= 10).await;
        match socks::reply(&r) {
            Some(0) => vec![self.finding(
                port,
                "socks.open",
                format!(
                    "SOCKS5 method 00 (no auth) accepted; CONNECT {host}:{cport} → reply 00 (succeeded) {}",
                    crate::finding::printable(&r, 60)
                )
                .as_bytes(),
            )],
            _ => vec![],
        }
    }

    /// UDP echo (7), daytime (13), chargen (19), SNMP `public` (161): one datagram each.
    async fn udp_services(&self) -> Vec<Finding> {
        let probe = b"dodvpn-diagnose udp probe\r\n";
        let id = u32::from_be_bytes(random_bytes::<4>());
        let snmp_req = snmp::get_sysdescr("public", id);
        let (echo, daytime, chargen, snmp_ans) = tokio::join!(
            self.udp(7, probe),
            self.udp(13, b"\r\n"),
            self.udp(19, b"\r\n"),
            self.udp(161, &snmp_req),
        );
        let mut out = Vec::new();
        let f = |port, check: &str, ev: &[u8]| Finding::new(self.ip, Proto::Udp, port, check, ev);
        if let Some(b) = echo.filter(|b| b.starts_with(probe)) {
            out.push(f(7, "echo.udp", &b));
        }
        if let Some(b) = daytime.filter(|b| !b.is_empty()) {
            out.push(f(13, "daytime.udp", &b));
        }
        if let Some(b) = chargen.filter(|b| !b.is_empty()) {
            let ev = format!(
                "{} bytes for 2: {}",
                b.len(),
                crate::finding::printable(&b, 200)
            );
            out.push(f(19, "chargen.udp", ev.as_bytes()));
        }
        if let Some(d) = snmp_ans.and_then(|b| snmp::sysdescr_answer(&b, id)) {
            out.push(f(
                161,
                "snmp.public",
                format!("GET sysDescr.0 community public → \"{d}\"").as_bytes(),
            ));
        }
        out
    }

    /// One ICMP timestamp request (IPv4 only), on a raw socket, off the async threads.
    async fn icmp_timestamp(&self) -> Vec<Finding> {
        let IpAddr::V4(dst) = self.ip else {
            return vec![];
        };
        if !self.raw_ok {
            return vec![];
        }
        self.slot().await;
        let id = u16::from_be_bytes(random_bytes::<2>());
        let wait = self.opts.read_timeout;
        let orig = (now_ms().rem_euclid(86_400_000)) as u32;
        let got = tokio::task::spawn_blocking(move || icmp_exchange(dst, id, orig, wait))
            .await
            .ok()
            .flatten();
        match got {
            Some((rx, tx)) => vec![Finding::new(
                self.ip,
                Proto::Icmp,
                0,
                "icmp.timestamp",
                format!("ICMP type 13 → type 14: originate {orig} receive {rx} transmit {tx} (ms since 00:00 UT)").as_bytes(),
            )],
            None => vec![],
        }
    }

    async fn echo(&self, port: u16) -> Vec<Finding> {
        let probe = b"dodvpn-diagnose echo probe\r\n";
        match self
            .exchange(port, probe, probe.len(), |b| b.len() >= probe.len())
            .await
        {
            Some(b) if b.starts_with(probe) => vec![self.finding(port, "echo.tcp", &b)],
            _ => vec![],
        }
    }

    async fn rdp(&self, port: u16) -> Vec<Finding> {
        // TPKT + X.224 Connection Request (no cookie): a server answers with a Connection Confirm.
        let cr = [3u8, 0, 0, 11, 6, 0xe0, 0, 0, 0, 0, 0];
        let b = self
            .exchange(port, &cr, 64, |b| b.len() >= 11)
            .await
            .unwrap_or_default();
        let confirmed = b.len() >= 6 && b[0] == 3 && b[5] == 0xd0;
        let ev = if confirmed {
            format!(
                "X.224 Connection Confirm {}",
                crate::finding::printable(&b, 80)
            )
        } else {
            "TCP 3389 open".into()
        };
        vec![self.finding(port, "rdp.exposed", ev.as_bytes())]
    }

    /// One finding per server, naming every zone it gave away: the finding's key
    /// (target, port, check) stays unique, so runs compare finding by finding.
    async fn dns_tcp(&self, port: u16) -> Vec<Finding> {
        let framed_done = |b: &[u8]| dns::tcp_missing(b) == 0;
        let mut given = Vec::new();
        for zone in &self.opts.dns_zones {
            let id = rand16();
            let Ok(q) = dns::axfr_query(id, &fqdn(zone)) else {
                continue;
            };
            if let Some(b) = self.exchange(port, &q, 60 * 1024, framed_done).await {
                if let Some(records) = dns::axfr_answer(&b, id) {
                    given.push(axfr_evidence(zone, &records));
                }
            }
        }
        if given.is_empty() {
            return Vec::new();
        }
        vec![self.finding(port, "dns.axfr", given.join("; ").as_bytes())]
    }

    async fn dns_udp(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let id = rand16();
        if let Some(b) = self.udp(53, &dns::version_query(id)).await {
            if let Some(v) = dns::version_answer(&b, id) {
                out.push(Finding::new(
                    self.ip,
                    Proto::Udp,
                    53,
                    "dns.version",
                    format!("version.bind CH TXT \"{v}\"").as_bytes(),
                ));
            }
        }
        let id = rand16();
        if let Ok(q) = dns::recursion_query(id, &fqdn(&self.opts.recursion_name)) {
            if let Some(b) = self.udp(53, &q).await {
                if let Some((true, ev)) = dns::recursion_offered(&b, id) {
                    out.push(Finding::new(
                        self.ip,
                        Proto::Udp,
                        53,
                        "dns.recursion",
                        format!("{} A RD=1 → {ev}", self.opts.recursion_name).as_bytes(),
                    ));
                }
            }
        }
        out
    }

    async fn udp(&self, port: u16, req: &[u8]) -> Option<Vec<u8>> {
        let bind: SocketAddr = if self.ip.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let s = UdpSocket::bind(bind).await.ok()?;
        s.connect(SocketAddr::new(self.ip, port)).await.ok()?;
        self.slot().await;
        s.send(req).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let n = timeout(self.opts.read_timeout, s.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

fn raw_icmp_socket() -> std::io::Result<socket2::Socket> {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV4),
    )
}

/// Send a timestamp request to `dst` and wait up to `wait` for its reply.
fn icmp_exchange(
    dst: std::net::Ipv4Addr,
    id: u16,
    orig: u32,
    wait: Duration,
) -> Option<(u32, u32)> {
    let s = raw_icmp_socket().ok()?;
    let to = socket2::SockAddr::from(SocketAddr::new(IpAddr::V4(dst), 0));
    s.send_to(&icmp::request(id, 1, orig), &to).ok()?;
    let deadline = std::time::Instant::now() + wait;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let n = std::io::Read::read(&mut &s, &mut buf).ok()?;
        if let Some(r) = icmp::reply(&buf[..n], dst, id, 1) {
            return Some(r);
        }
    }
}

fn fqdn(n: &str) -> String {
    if n.ends_with('.') {
        n.to_string()
    } else {
        format!("{n}.")
    }
}

fn host_header(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Read until `done`, `max` bytes, EOF, or `wait` has passed since the start.
async fn read_bounded(
    s: &mut TcpStream,
    max: usize,
    wait: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while buf.len() < max && !done(&buf) {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n.min(max - buf.len())]),
        }
    }
    buf
}

fn random_bytes<const N: usize>() -> [u8; N] {
    // Query ids and the ClientHello random need to be unpredictable to an off-path
    // spoofer, not secret: the std hasher's per-process random keys are enough.
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; N];
    for (i, c) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        c.copy_from_slice(&h.finish().to_be_bytes()[..c.len()]);
    }
    out
}

fn random32() -> [u8; 32] {
    random_bytes::<32>()
}

fn rand16() -> u16 {
    u16::from_be_bytes(random_bytes::<2>())
}

/// "AXFR zone: N records (owner names…)": the names are what a transfer gives away
/// (host names of internal systems); whole records would not fit the evidence.
fn axfr_evidence(zone: &str, records: &[String]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for r in records {
        let name = r.split_whitespace().next().unwrap_or("");
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    format!(
        "AXFR {zone}: {} records ({})",
        records.len(),
        names.join(" ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn axfr_evidence_names_each_owner_once() {
        let records = [
            "example.test. 60 IN SOA ns.example.test. admin.example.test. 1 60 60 60 60",
            "example.test. 60 IN NS ns.example.test.",
            "secret-pacs.example.test. 60 IN A 10.99.0.50",
            "example.test. 60 IN SOA ns.example.test. admin.example.test. 1 60 60 60 60",
        ]
        .map(String::from);
        assert_eq!(
            super::axfr_evidence("example.test", &records),
            "AXFR example.test: 4 records (example.test. secret-pacs.example.test.)"
        );
    }
}

//! End-to-end test of the static tunnel between two network namespaces
//! joined by a veth (192.0.2.0/24 inside the namespaces only), with site
//! subnets 10.10.1.0/24 and 10.10.2.0/24. Needs root, `ip`, `ping`,
//! `tcpdump`, `python3` and `sha256sum`; fails (never skips) without them.
//!
//! Proves: ping through the tunnel; a 24 MB TCP transfer with equal
//! sha256 on both ends; the veth carries only ESP-in-UDP/4500 and never
//! the plaintext marker (while the TUN inside does); a replayed ESP
//! datagram is counted as replay (and an old one as too old) and dropped;
//! packets with no SA (outbound and inbound) are counted; a trap selector
//! raises an Acquire; NAT keepalives are recognised.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MARKER: &[u8] = b"DODVPN-PLAINTEXT-MARKER-7f3a";
const KEY_AB: &str = "000102030405060708090a0b0c0d0e0f10111213";
const KEY_BA: &str = "202122232425262728292a2b2c2d2e2f30313233";
const SPI_AB: u32 = 0xb000_0001; // A -> B (B's inbound)
const SPI_BA: u32 = 0xa000_0001;

struct Env {
    a: String,
    b: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SAFETY: plain kill(2) on a PID we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        let t = Instant::now();
        for c in &mut self.children {
            while t.elapsed() < Duration::from_secs(2) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::env::var_os("DP_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "command failed: {args:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

fn ns_ok(ns: &str, args: &[&str]) -> bool {
    in_ns(ns, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn site(ns: &str, addr: &str) {
    // A dummy interface, or ifb, or lo where the kernel has neither.
    for kind in ["dummy", "ifb"] {
        if Command::new("ip")
            .args(["-n", ns, "link", "add", "site0", "type", kind])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "site0",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "site0", "up"]);
            return;
        }
    }
    sh(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{addr}/32"),
        "dev",
        "lo",
    ]);
}

fn tunnel_bin() -> PathBuf {
    // target/<profile>/deps/netns-xxxx -> target/<profile>/examples/static_tunnel
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/static_tunnel");
    assert!(
        p.exists(),
        "{} not built: run `cargo test -p dodvpn-dataplane` (which builds examples)",
        p.display()
    );
    p
}

fn stats(path: &Path) -> HashMap<String, u64> {
    let s = fs::read_to_string(path).unwrap_or_default();
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn wait_counter(path: &Path, key: &str, at_least: u64) {
    wait_for(
        &format!("{key} >= {at_least} in {}", path.display()),
        Duration::from_secs(5),
        || stats(path).get(key).copied().unwrap_or(0) >= at_least,
    );
}

/// (link-layer payload offset, packets) of a pcap file with Ethernet or
/// Linux "cooked"/raw link types.
fn pcap_packets(data: &[u8]) -> Vec<&[u8]> {
    assert!(data.len() >= 24, "pcap too short");
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2c3d4 || magic == 0xa1b23c4d,
        "unexpected pcap magic {magic:#x}"
    );
    let linktype = u32::from_le_bytes(data[20..24].try_into().unwrap());
    let l2 = match linktype {
        1 => 14,   // Ethernet
        101 => 0,  // raw IP
        113 => 16, // Linux cooked
        276 => 20, // Linux cooked v2
        12 => 0,   // raw (BSD)
        other => panic!("unsupported pcap link type {other}"),
    };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        let start = off + 16;
        let end = (start + incl).min(data.len());
        if end - start > l2 {
            out.push(&data[start + l2..end]);
        }
        off = start + incl;
    }
    out
}

struct Udp<'a> {
    tos: u8,
    sport: u16,
    dport: u16,
    payload: &'a [u8],
}

fn ipv4_udp(pkt: &[u8]) -> Option<Udp<'_>> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != 17 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0xf) * 4;
    let u = pkt.get(ihl..)?;
    if u.len() < 8 {
        return None;
    }
    Some(Udp {
        tos: pkt[1],
        sport: u16::from_be_bytes([u[0], u[1]]),
        dport: u16::from_be_bytes([u[2], u[3]]),
        payload: &u[8..],
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn udp_send(ns: &str, dst: &str, port: u16, payload: &[u8]) {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(bytes.fromhex('{hex}'), ('{dst}', {port}))"
    );
    assert!(
        ns_ok(ns, &["python3", "-c", &script]),
        "python3 UDP sender failed"
    );
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn tcpdump(env: &mut Env, ns: &str, ifname: &str, file: &Path, extra: &[&str]) -> usize {
    let err = env.dir.join(format!("tcpdump-{ifname}.err"));
    let mut args = vec![
        "tcpdump",
        "-i",
        ifname,
        "-n",
        "-U",
        "-s",
        "0",
        "-w",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let child = in_ns(ns, &args)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn tcpdump");
    env.children.push(child);
    wait_for("tcpdump to listen", Duration::from_secs(5), || {
        fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("listening on")
    });
    env.children.len() - 1
}

fn stop(env: &mut Env, idx: usize) {
    let c = &mut env.children[idx];
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGINT);
    }
    let _ = c.wait();
}

/// Two namespaces `dp{tag}<pid>a` / `…b` joined by a veth, each running
/// `static_tunnel` (A: site 10.10.1.0/24 at 192.0.2.1, B: 10.10.2.0/24 at
/// 192.0.2.2, remote selector the other site), with `extra_a` / `extra_b`
/// appended to their arguments; returns once both print `ready`.
fn two_sites(tag: &str, extra_a: &[&str], extra_b: &[&str]) -> Sites {
    assert!(
        dodvpn_dataplane::is_root(),
        "this test creates network namespaces and TUN devices: run it as root"
    );
    // What this test needs is listed once, in scripts/setup.sh, which names a missing package.
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup.sh");
    let check = Command::new("bash")
        .arg(&setup)
        .args(["--check", "netns", "capture", "python"])
        .output()
        .expect("run scripts/setup.sh --check");
    assert!(
        check.status.success(),
        "a package this test needs is missing:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let bin = tunnel_bin();
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("dp-netns-{tag}-{id}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut env = Env {
        a: format!("dp{tag}{id}a"),
        b: format!("dp{tag}{id}b"),
        dir: dir.clone(),
        children: Vec::new(),
    };
    let (a, b) = (env.a.clone(), env.b.clone());
    let (va, vb) = (format!("dp{tag}va"), format!("dp{tag}vb"));
    sh(&["ip", "netns", "add", &a]);
    sh(&["ip", "netns", "add", &b]);
    sh(&[
        "ip", "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b,
    ]);
    sh(&["ip", "-n", &a, "addr", "add", "192.0.2.1/24", "dev", &va]);
    sh(&["ip", "-n", &b, "addr", "add", "192.0.2.2/24", "dev", &vb]);
    for (ns, ifn) in [(&a, &va), (&b, &vb)] {
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", ns, "link", "set", ifn, "up"]);
    }
    site(&a, "10.10.1.1");
    site(&b, "10.10.2.1");

    let start = |env: &mut Env, ns: &str, name: &str, args: &[String]| -> (PathBuf, PathBuf) {
        let log = env.dir.join(format!("{name}.log"));
        let st = env.dir.join(format!("{name}.stats"));
        let mut full: Vec<String> = vec![bin.to_str().unwrap().into()];
        full.extend(args.iter().cloned());
        full.extend(["--stats".into(), st.to_str().unwrap().into()]);
        let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
        let child = in_ns(ns, &refs)
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(env.dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .expect("spawn static_tunnel");
        env.children.push(child);
        (log, st)
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let spi = |x: u32| format!("{x:#x}");
    let (log_a, st_a) = start(
        &mut env,
        &a,
        "a",
        &[
            s(&[
                "--tun",
                "dp0",
                "--mtu",
                "1400",
                "--listen",
                "192.0.2.1:4500",
                "--peer",
                "192.0.2.2:4500",
            ]),
            s(&[
                "--ike-port",
                "0",
                "--aead",
                "aes128gcm",
                "--key-out",
                KEY_AB,
                "--key-in",
                KEY_BA,
            ]),
            vec![
                "--spi-out".into(),
                spi(SPI_AB),
                "--spi-in".into(),
                spi(SPI_BA),
            ],
            s(&["--remote", "10.10.2.0/24", "--src", "10.10.1.1"]),
            s(extra_a),
        ]
        .concat(),
    );
    let (log_b, st_b) = start(
        &mut env,
        &b,
        "b",
        &[
            s(&[
                "--tun",
                "dp0",
                "--mtu",
                "1400",
                "--listen",
                "192.0.2.2:4500",
                "--peer",
                "192.0.2.1:4500",
            ]),
            s(&[
                "--ike-port",
                "0",
                "--aead",
                "aes128gcm",
                "--key-out",
                KEY_BA,
                "--key-in",
                KEY_AB,
            ]),
            vec![
                "--spi-out".into(),
                spi(SPI_BA),
                "--spi-in".into(),
                spi(SPI_AB),
            ],
            s(&["--remote", "10.10.1.0/24", "--src", "10.10.2.1"]),
            s(extra_b),
        ]
        .concat(),
    );
    for (log, name) in [(&log_a, "a"), (&log_b, "b")] {
        let err = dir.join(format!("{name}.err"));
        wait_for(
            &format!("tunnel {name} ready"),
            Duration::from_secs(10),
            || {
                let ready = fs::read_to_string(log)
                    .unwrap_or_default()
                    .contains("ready");
                if !ready {
                    let e = fs::read_to_string(&err).unwrap_or_default();
                    assert!(!e.contains("cannot start"), "tunnel {name} failed: {e}");
                }
                ready
            },
        );
    }
    Sites {
        env,
        dir,
        log_a,
        st_a,
        st_b,
    }
}

struct Sites {
    env: Env,
    dir: PathBuf,
    log_a: PathBuf,
    st_a: PathBuf,
    st_b: PathBuf,
}

#[test]
fn static_tunnel_between_namespaces() {
    let Sites {
        mut env,
        dir,
        log_a,
        st_a,
        st_b,
    } = two_sites("t", &["--trap", "10.10.3.0/24"], &[]);
    let (a, b) = (env.a.clone(), env.b.clone());
    eprintln!("{}", fs::read_to_string(&log_a).unwrap());

    // 1. ping through the tunnel.
    assert!(
        ns_ok(
            &a,
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.10.2.1"]
        ),
        "ping 10.10.1.1 -> 10.10.2.1 through the tunnel failed"
    );

    // 2. 24 MB TCP transfer under capture; sha256 on both ends.
    let src = dir.join("send.bin");
    let dst = dir.join("recv.bin");
    {
        let mut data = Vec::with_capacity(24 << 20);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while data.len() < 24 << 20 {
            if data.len() % 65_536 == 0 {
                data.extend_from_slice(MARKER);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        fs::write(&src, &data).unwrap();
    }
    let veth_cap = dir.join("veth.pcap");
    let tun_cap = dir.join("tun.pcap");
    let cap_veth = tcpdump(&mut env, &b, "dptvb", &veth_cap, &[]);
    let cap_tun = tcpdump(&mut env, &b, "dp0", &tun_cap, &["-c", "300"]);
    let server = in_ns(
        &b,
        &[
            "python3",
            "-c",
            "import socket,sys\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('10.10.2.1', 5001)); s.listen(1); print('listening', flush=True)\nc,_=s.accept(); f=open(sys.argv[1],'wb')\nwhile True:\n  b=c.recv(1<<16)\n  if not b: break\n  f.write(b)\nf.close(); c.close()",
            dst.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("python3 server");
    env.children.push(server);
    let srv = env.children.len() - 1;
    {
        use std::io::BufRead;
        let out = env.children[srv].stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "server did not start");
    }
    // DSCP EF (0xb8) on the inner packet must show on the outer header.
    assert!(
        ns_ok(
            &a,
            &[
                "ping",
                "-c",
                "2",
                "-i",
                "0.2",
                "-Q",
                "0xb8",
                "-W",
                "2",
                "10.10.2.1"
            ]
        ),
        "ping -Q failed"
    );
    let t0 = Instant::now();
    assert!(
        ns_ok(
            &a,
            &[
                "python3",
                "-c",
                "import socket,sys\ns=socket.create_connection(('10.10.2.1', 5001), timeout=60)\ns.sendall(open(sys.argv[1],'rb').read()); s.shutdown(socket.SHUT_WR); s.recv(1)",
                src.to_str().unwrap()
            ]
        ),
        "TCP transfer through the tunnel failed"
    );
    let status = env.children[srv].wait().unwrap();
    assert!(status.success(), "server failed");
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "24 MiB in {secs:.2} s = {:.0} Mbit/s (debug build)",
        24.0 * 8.0 * 1.048_576 / secs
    );
    assert_eq!(
        sha256(&src),
        sha256(&dst),
        "sha256 differs between sender and receiver"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop(&mut env, cap_veth);
    stop(&mut env, cap_tun);

    // 3. The veth carries ESP-in-UDP/4500 only, never the plaintext.
    let raw = fs::read(&veth_cap).unwrap();
    let pkts = pcap_packets(&raw);
    let (mut esp_ab, mut esp_ba, mut other_ip, mut ef) = (Vec::new(), 0usize, 0usize, 0usize);
    for p in &pkts {
        match ipv4_udp(p) {
            Some(u) if u.sport == 4500 && u.dport == 4500 && u.payload.len() >= 8 => {
                let spi = u32::from_be_bytes(u.payload[..4].try_into().unwrap());
                let seq = u32::from_be_bytes(u.payload[4..8].try_into().unwrap());
                if u.tos == 0xb8 {
                    ef += 1;
                }
                match spi {
                    SPI_AB => esp_ab.push((seq, u.payload)),
                    SPI_BA => esp_ba += 1,
                    other => panic!("unexpected SPI {other:#x} on the wire"),
                }
            }
            _ if !p.is_empty() && p[0] >> 4 == 4 => other_ip += 1,
            _ => {} // ARP, IPv6 ND
        }
    }
    eprintln!(
        "veth capture: {} packets, ESP A->B {}, ESP B->A {esp_ba}, other IPv4 {other_ip}",
        pkts.len(),
        esp_ab.len()
    );
    // With UDP GSO the veth carries super-datagrams (several ESP packets
    // back to back under one UDP header), so count bytes, not packets.
    let esp_bytes: usize = esp_ab.iter().map(|(_, p)| p.len()).sum();
    assert!(
        esp_bytes > 24 << 20,
        "too few ESP-in-UDP bytes captured: {esp_bytes}"
    );
    assert!(esp_ba > 10, "no ESP in the reverse direction (ACKs)");
    assert_eq!(other_ip, 0, "non-ESP IPv4 traffic crossed the veth");
    assert!(ef >= 4, "DSCP EF not copied to the outer header ({ef} ESP packets with TOS 0xb8, want 2 requests + 2 replies)");
    assert!(
        !contains(&raw, MARKER),
        "plaintext marker found on the veth"
    );
    let plain = fs::read(&tun_cap).unwrap();
    assert!(
        contains(&plain, MARKER),
        "marker not seen on the TUN (the capture check would be vacuous)"
    );

    // 4. Replay. Capture exactly one fresh A->B datagram (one ping: the
    // newest sequence number, no GSO) and re-send it; then re-send the
    // oldest single datagram of the transfer (left of the window).
    let one_cap = dir.join("one.pcap");
    let cap_one = tcpdump(
        &mut env,
        &b,
        "dptvb",
        &one_cap,
        &["-c", "1", "udp and src host 192.0.2.1 and dst port 4500"],
    );
    assert!(
        ns_ok(&a, &["ping", "-c", "1", "-W", "2", "10.10.2.1"]),
        "ping before replay failed"
    );
    wait_for("one captured datagram", Duration::from_secs(5), || {
        matches!(env.children[cap_one].try_wait(), Ok(Some(_)))
    });
    let one_raw = fs::read(&one_cap).unwrap();
    let one = pcap_packets(&one_raw);
    assert_eq!(one.len(), 1);
    let newest = ipv4_udp(one[0]).expect("captured UDP").payload.to_vec();
    assert_eq!(u32::from_be_bytes(newest[..4].try_into().unwrap()), SPI_AB);
    let oldest = esp_ab
        .iter()
        .filter(|(_, p)| p.len() <= 1500)
        .min_by_key(|(s, _)| *s)
        .unwrap()
        .1
        .to_vec();
    let before = stats(&st_b);
    let g = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    udp_send(&a, "192.0.2.2", 4500, &newest);
    wait_counter(&st_b, "drop.replay", g(&before, "drop.replay") + 1);
    udp_send(&a, "192.0.2.2", 4500, &oldest);
    wait_counter(&st_b, "drop.too_old", g(&before, "drop.too_old") + 1);

    // 5. No SA: inbound (unknown SPI) and outbound (routed into the TUN,
    // no policy).
    let mut bogus = vec![0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1];
    bogus.extend_from_slice(&[0x55; 40]);
    udp_send(&a, "192.0.2.2", 4500, &bogus);
    wait_counter(
        &st_b,
        "drop.no_sa_inbound",
        g(&before, "drop.no_sa_inbound") + 1,
    );
    udp_send(&a, "192.0.2.2", 4500, &[0xff]);
    wait_counter(&st_b, "drop.keepalive", g(&before, "drop.keepalive") + 1);
    let before_a = stats(&st_a);
    sh(&[
        "ip",
        "-n",
        &a,
        "route",
        "add",
        "10.10.9.0/24",
        "dev",
        "dp0",
        "src",
        "10.10.1.1",
    ]);
    let _ = ns_ok(
        &a,
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.10.9.1"],
    );
    wait_counter(
        &st_a,
        "drop.no_sa_outbound",
        g(&before_a, "drop.no_sa_outbound") + 2,
    );

    // 6. Trap: a packet to the trap selector raises an Acquire.
    let _ = ns_ok(&a, &["ping", "-c", "1", "-W", "1", "10.10.3.1"]);
    wait_for("acquire event", Duration::from_secs(5), || {
        fs::read_to_string(&log_a)
            .unwrap_or_default()
            .contains("event acquire selector=10.10.3.0/24 dst=10.10.3.1")
    });

    // The tunnel still works after all that.
    assert!(
        ns_ok(&a, &["ping", "-c", "1", "-W", "2", "10.10.2.1"]),
        "tunnel broken at the end"
    );
    let end_b = stats(&st_b);
    eprintln!(
        "B counters: {:?}",
        end_b.iter().filter(|(_, v)| **v > 0).collect::<Vec<_>>()
    );
    eprintln!("{}", fs::read_to_string(&st_b).unwrap());
}

/// Packets counted on the first `sa.in.…` line of a stats file.
fn sa_in_packets(path: &Path) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("sa.in."))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("packets="))
                .and_then(|v| v.parse().ok())
        })
        .expect("no sa.in line in the stats file")
}

/// A TCP echo server on `ip` and each of `ports` in namespace `ns`, running
/// until the test ends.
fn echo_server(env: &mut Env, ns: &str, ip: &str, ports: &[u16]) {
    let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    let script = format!(
        "import socket,threading\n\
         def serve(p):\n  s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n  \
         s.bind(('{ip}', p)); s.listen(8); ready.release()\n  while True:\n    \
         c,_=s.accept(); c.sendall(c.recv(100)); c.close()\n\
         ports=[{}]\nready=threading.Semaphore(0)\n\
         for p in ports: threading.Thread(target=serve, args=(p,), daemon=True).start()\n\
         for p in ports: ready.acquire()\n\
         print('listening', flush=True)\nthreading.Event().wait()",
        ports.join(",")
    );
    let mut child = in_ns(ns, &["python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 echo server");
    let out = child.stdout.take().unwrap();
    env.children.push(child);
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "echo server did not start");
}

/// Whether a TCP connection from `ns` to `dst:port` (optionally from
/// `src:sport`) completes and echoes within 2 s.
fn tcp_echo(ns: &str, dst: &str, port: u16, src: Option<(&str, u16)>) -> bool {
    let source = match src {
        Some((ip, p)) => format!(", source_address=('{ip}', {p})"),
        None => String::new(),
    };
    let script = format!(
        "import socket\ns=socket.create_connection(('{dst}', {port}), timeout=2{source})\n\
         s.sendall(b'dodvpn'); assert s.recv(100) == b'dodvpn'"
    );
    ns_ok(ns, &["python3", "-c", &script])
}

/// R-DP-7 / TR 8.1 d: B installs a filter that allows only TCP 443 opened
/// by A (A's tunnel has no filter, so everything A sends reaches B's
/// inbound check). A connection to 443 works; TCP 22, UDP 443 and ping are
/// refused on B's inbound side; B cannot open a connection to A (refused
/// on B's outbound side, even from source port 443); a packet A routes
/// into the tunnel for a third site is refused as transit; every refusal is
/// counted and none is counted as SA traffic.
#[test]
fn filter_allows_only_the_granted_service() {
    let Sites {
        mut env,
        log_a: _,
        st_a: _,
        st_b,
        dir: _,
    } = two_sites(
        "f",
        &["--remote", "10.10.7.0/24"],
        &["--local", "10.10.2.0/24", "--allow", "remote:tcp:443"],
    );
    let (a, b) = (env.a.clone(), env.b.clone());
    let g = |k: &str| stats(&st_b).get(k).copied().unwrap_or(0);
    wait_for("B stats file", Duration::from_secs(5), || {
        stats(&st_b).contains_key("drop.outbound_filtered")
    });

    // B opens to A: refused before sealing, from an ephemeral port and from
    // the service port alike (a SYN from the non-opener).
    echo_server(&mut env, &a, "10.10.1.1", &[443, 5001]);
    let out0 = g("drop.outbound_filtered");
    assert!(
        !tcp_echo(&b, "10.10.1.1", 5001, None),
        "B opened a connection to A"
    );
    assert!(
        !tcp_echo(&b, "10.10.1.1", 443, Some(("10.10.2.1", 443))),
        "B opened a connection to A from port 443"
    );
    wait_counter(&st_b, "drop.outbound_filtered", out0 + 2);

    // A opens to B's 443: allowed, both ways.
    echo_server(&mut env, &b, "10.10.2.1", &[443, 22]);
    assert!(
        tcp_echo(&a, "10.10.2.1", 443, None),
        "TCP 443 opened by A did not get through the filter"
    );

    // TCP 22 (listening, so without the filter it would connect): refused.
    let in0 = g("drop.inbound_filtered");
    assert!(
        !tcp_echo(&a, "10.10.2.1", 22, None),
        "TCP 22 got through the filter"
    );
    wait_counter(&st_b, "drop.inbound_filtered", in0 + 1);

    // UDP 443: refused, and not counted as SA traffic.
    std::thread::sleep(Duration::from_millis(600)); // last retransmissions, stats refresh
    let in1 = g("drop.inbound_filtered");
    let sa_before = sa_in_packets(&st_b);
    udp_send(&a, "10.10.2.1", 443, b"not allowed");
    wait_counter(&st_b, "drop.inbound_filtered", in1 + 1);
    assert_eq!(
        sa_in_packets(&st_b),
        sa_before,
        "a filtered packet was counted in the SA's statistics"
    );

    // ICMP is not granted either.
    let in2 = g("drop.inbound_filtered");
    assert!(
        !ns_ok(
            &a,
            &["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.10.2.1"]
        ),
        "ping got through a TCP-443-only filter"
    );
    wait_counter(&st_b, "drop.inbound_filtered", in2 + 2);

    // Transit: A sends to a third site through B; B's local selector does
    // not cover it.
    let sel0 = g("drop.inbound_selector");
    let _ = ns_ok(
        &a,
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.10.7.1"],
    );
    wait_counter(&st_b, "drop.inbound_selector", sel0 + 2);

    // The granted service still works after all that.
    assert!(
        tcp_echo(&a, "10.10.2.1", 443, None),
        "TCP 443 broken at the end"
    );
    eprintln!("{}", fs::read_to_string(&st_b).unwrap());
}

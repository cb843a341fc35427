//! Static test mode: run the data plane with fixed SAs (no IKE).
//!
//! ```text
//! static_tunnel --tun dp0 --listen 192.0.2.1:4500 --peer 192.0.2.2:4500 \
//!     --aead aes128gcm --spi-out 0x2000 --key-out <hex key||salt> \
//!     --spi-in 0x1000 --key-in <hex key||salt> \
//!     --remote 10.10.2.0/24 [--remote …] [--src 10.10.1.1] [--trap 10.10.3.0/24] \
//!     [--mtu 1400] [--queues N] [--no-offload] [--no-gso] [--no-gro] \
//!     [--ike-port 500|0] [--stats FILE] [--run-secs N] \
//!     [--local 10.10.1.0/24 [--local …] [--allow local|remote:tcp|udp|icmp|icmpv6|any|N[:443,8000-8099]] …]
//! ```
//! With `--local`, both SAs get a [`PacketFilter`] whose selectors are the
//! `--local` and `--remote` nets and whose rules are the `--allow`s (none:
//! everything between the selectors); `--allow local:tcp:443` lets our
//! hosts open TCP to the peer's port 443.
//! Prints `ready` on stdout once the data path runs; Acquire events are
//! printed as `event acquire …`; `--stats FILE` is rewritten every 200 ms
//! with the counters (`drop.replay N`, `sa.in.… packets=…`, …).

use std::net::{IpAddr, SocketAddr};
use std::process::exit;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use dodvpn_dataplane::{Dataplane, DataplaneConfig, Event, FlowRule, PacketFilter, Side};
use dodvpn_esp::{Aead, InboundSa, OutboundSa};
use ipnet::IpNet;

fn usage(msg: &str) -> ! {
    eprintln!("static_tunnel: {msg}\nsee the header of examples/static_tunnel.rs for usage");
    exit(2)
}

fn hex(s: &str) -> Vec<u8> {
    if s.len() % 2 != 0 {
        usage("hex key of odd length");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| usage("bad hex key")))
        .collect()
}

fn spi(s: &str) -> u32 {
    let s = s.trim_start_matches("0x");
    u32::from_str_radix(s, 16).unwrap_or_else(|_| usage("bad SPI (hex)"))
}

/// `OPENER:PROTO[:PORTS]`, e.g. `local:tcp:443`, `remote:udp:5000-5010,53`, `local:icmp`.
fn allow(s: &str) -> FlowRule {
    fn bad() -> ! {
        usage("bad --allow (OPENER:PROTO[:PORTS], e.g. local:tcp:443)")
    }
    let mut it = s.split(':');
    let opener = match it.next() {
        Some("local") => Side::Local,
        Some("remote") => Side::Remote,
        _ => bad(),
    };
    let proto = match it.next() {
        Some("tcp") => Some(6),
        Some("udp") => Some(17),
        Some("icmp") => Some(1),
        Some("icmpv6") => Some(58),
        Some("any") => None,
        Some(n) => Some(n.parse::<u8>().unwrap_or_else(|_| bad())),
        None => bad(),
    };
    let mut ports: Vec<(u16, u16)> = Vec::new();
    if let Some(list) = it.next() {
        for r in list.split(',') {
            let (lo, hi) = r.split_once('-').unwrap_or((r, r));
            ports.push((
                lo.parse().unwrap_or_else(|_| bad()),
                hi.parse().unwrap_or_else(|_| bad()),
            ));
        }
    }
    if it.next().is_some() {
        bad()
    }
    FlowRule::service(opener, proto, &ports)
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(if std::env::var_os("DP_DEBUG").is_some() {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .init();
    let mut cfg = DataplaneConfig::default();
    cfg.tun.name = "dp0".into();
    let (mut listen, mut peer) = (None::<SocketAddr>, None::<SocketAddr>);
    let mut aead = Aead::AesGcm128;
    let (mut spi_out, mut spi_in, mut key_out, mut key_in) = (None, None, None, None);
    let mut remotes: Vec<IpNet> = Vec::new();
    let mut traps: Vec<IpNet> = Vec::new();
    let mut locals: Vec<IpNet> = Vec::new();
    let mut rules: Vec<FlowRule> = Vec::new();
    let mut src: Option<IpAddr> = None;
    let mut stats: Option<String> = None;
    let mut run_secs: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--tun" => cfg.tun.name = val(),
            "--mtu" => cfg.tun.mtu = val().parse().unwrap_or_else(|_| usage("bad --mtu")),
            "--queues" => cfg.tun.queues = val().parse().unwrap_or_else(|_| usage("bad --queues")),
            "--no-offload" => cfg.tun.offload = false,
            "--no-gso" => cfg.udp.gso = false,
            "--no-gro" => cfg.udp.gro = false,
            "--listen" => listen = Some(val().parse().unwrap_or_else(|_| usage("bad --listen"))),
            "--peer" => peer = Some(val().parse().unwrap_or_else(|_| usage("bad --peer"))),
            "--aead" => {
                aead = match val().as_str() {
                    "aes128gcm" => Aead::AesGcm128,
                    "aes256gcm" => Aead::AesGcm256,
                    "chacha20poly1305" => Aead::ChaCha20Poly1305,
                    _ => usage("--aead: aes128gcm | aes256gcm | chacha20poly1305"),
                }
            }
            "--spi-out" => spi_out = Some(spi(&val())),
            "--spi-in" => spi_in = Some(spi(&val())),
            "--key-out" => key_out = Some(hex(&val())),
            "--key-in" => key_in = Some(hex(&val())),
            "--remote" => remotes.push(val().parse().unwrap_or_else(|_| usage("bad --remote"))),
            "--local" => locals.push(val().parse().unwrap_or_else(|_| usage("bad --local"))),
            "--allow" => rules.push(allow(&val())),
            "--trap" => traps.push(val().parse().unwrap_or_else(|_| usage("bad --trap"))),
            "--src" => src = Some(val().parse().unwrap_or_else(|_| usage("bad --src"))),
            "--ike-port" => {
                let p: u16 = val().parse().unwrap_or_else(|_| usage("bad --ike-port"));
                cfg.udp.ike_sockets = p != 0;
                cfg.udp.ike_port = p;
            }
            "--stats" => stats = Some(val()),
            "--run-secs" => {
                run_secs = Some(val().parse().unwrap_or_else(|_| usage("bad --run-secs")))
            }
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let listen = listen.unwrap_or_else(|| usage("--listen is required"));
    let peer = peer.unwrap_or_else(|| usage("--peer is required"));
    cfg.udp.natt_port = listen.port();
    match listen.ip() {
        IpAddr::V4(a) => {
            cfg.udp.bind_v4 = Some(a);
            cfg.udp.bind_v6 = None;
        }
        IpAddr::V6(a) => {
            cfg.udp.bind_v4 = None;
            cfg.udp.bind_v6 = Some(a);
        }
    }
    let out = OutboundSa::new(
        spi_out.unwrap_or_else(|| usage("--spi-out is required")),
        aead,
        &key_out.unwrap_or_else(|| usage("--key-out is required")),
        false,
    )
    .unwrap_or_else(|e| usage(&e.to_string()));
    let inb = InboundSa::new(
        spi_in.unwrap_or_else(|| usage("--spi-in is required")),
        aead,
        &key_in.unwrap_or_else(|| usage("--key-in is required")),
        false,
    )
    .unwrap_or_else(|e| usage(&e.to_string()));

    if !rules.is_empty() && locals.is_empty() {
        usage("--allow needs --local (the filter's local selector)");
    }
    let filter = (!locals.is_empty())
        .then(|| std::sync::Arc::new(PacketFilter::new(locals, remotes.clone(), rules)));

    let (ev_tx, ev_rx) = sync_channel::<Event>(1024);
    let dp = Dataplane::start(cfg, Some(ev_tx)).unwrap_or_else(|e| {
        eprintln!("static_tunnel: cannot start the data plane: {e}");
        exit(1)
    });
    match &filter {
        Some(f) => dp.install_inbound_filtered(inb, f.clone()),
        None => dp.install_inbound(inb),
    };
    // One outbound SA shared by every --remote selector (a copy per selector
    // would reuse sequence numbers, i.e. nonces).
    let mut out = Some(out);
    let mut entry = None;
    for net in &remotes {
        match (&entry, out.take()) {
            (None, Some(sa)) => {
                entry = Some(match &filter {
                    Some(f) => dp.install_outbound_filtered(*net, sa, peer, f.clone()),
                    None => dp.install_outbound(*net, sa, peer),
                })
            }
            (Some(e), _) => {
                dp.tables().set_policy(
                    *net,
                    dodvpn_dataplane::SpdAction::Protect(std::sync::Arc::clone(e)),
                );
            }
            (None, None) => unreachable!(),
        }
        if let Err(e) = dp.tun().add_route(*net, src) {
            eprintln!("static_tunnel: route {net}: {e}");
            exit(1);
        }
    }
    for net in &traps {
        dp.add_trap(*net);
        if let Err(e) = dp.tun().add_route(*net, src) {
            eprintln!("static_tunnel: route {net}: {e}");
            exit(1);
        }
    }
    println!(
        "ready tun={} offload={} queues={} gso={} gro={}",
        dp.tun().name(),
        dp.tun().offload(),
        dp.tun().queues(),
        dp.udp().natt_for(&peer).map(|s| s.gso()).unwrap_or(false),
        dp.udp().natt_for(&peer).map(|s| s.gro()).unwrap_or(false),
    );
    let start = Instant::now();
    loop {
        while let Ok(ev) = ev_rx.try_recv() {
            match ev {
                Event::Acquire {
                    selector,
                    first_packet_dst,
                } => {
                    println!("event acquire selector={selector} dst={first_packet_dst}")
                }
                Event::Ike(d) => println!("event ike from={} len={}", d.remote, d.data.len()),
            }
        }
        if let Some(path) = &stats {
            let tmp = format!("{path}.tmp");
            if std::fs::write(&tmp, dp.stats_text()).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
        if run_secs.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    dp.shutdown();
}

//! `dodvpn relay`: the provider relay (issue 19 item 3). A UDP forwarder for sites
//! that cannot reach each other directly (both behind symmetric NAT or CGNAT): each
//! side binds with what the centre gave it, then everything one side sends is sent on
//! to the other as it is — IKE and ESP-in-UDP, ciphertext only. The forwarding table
//! is `dodvpn_relay`; this is its socket loop.
//!
//! It is also the sites' UDP reflector (`dodvpn_relay::reflect`): a probe on the
//! listen port, or on the port after it, is answered with the address and port it
//! came from. Two ports, so an agent can tell a NAT that maps per destination.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use dodvpn_dataplane::udp::{RxBatch, TxBatch, UdpConfig, UdpSock};
use dodvpn_relay::{Action, DropReason, Relay};

#[derive(Parser)]
pub struct RelayArgs {
    /// UDP address to listen on (the centre's DODVPN_RELAY names it to the sites).
    /// The port after it is the second UDP reflector and must be reachable too.
    #[arg(long, env = "DODVPN_RELAY_LISTEN", default_value = "0.0.0.0:4600")]
    listen: SocketAddr,
    /// The secret shared with the centre (its data directory's relay.key).
    #[arg(long, env = "DODVPN_RELAY_SECRET")]
    secret_file: PathBuf,
}

/// How often the table is swept and the counters logged.
const SWEEP: Duration = Duration::from_secs(30);
/// Messages taken per receive call.
const BATCH: usize = 32;

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn run(a: RelayArgs) -> anyhow::Result<()> {
    // The centre names both ports to its agents (center/relays.rs `reflectors`).
    let Some(next) = a
        .listen
        .port()
        .checked_add(1)
        .filter(|_| a.listen.port() != 0)
    else {
        anyhow::bail!(
            "--listen {}: the port must be 1-65534 (the port after it is the second UDP reflector)",
            a.listen
        );
    };
    let secret = std::fs::read(&a.secret_file)
        .with_context(|| format!("cannot read the relay secret {}", a.secret_file.display()))?;
    if secret.len() < 32 {
        anyhow::bail!("{} holds fewer than 32 bytes", a.secret_file.display());
    }
    let cfg = UdpConfig {
        recv_timeout: Duration::from_secs(1),
        ..UdpConfig::default()
    };
    let sock =
        UdpSock::bind(a.listen, &cfg).with_context(|| format!("cannot bind {}", a.listen))?;
    let second = SocketAddr::new(a.listen.ip(), next);
    let reflector = std::net::UdpSocket::bind(second)
        .with_context(|| format!("cannot bind the second reflector {second}"))?;
    std::thread::Builder::new()
        .name("reflector".into())
        .spawn(move || reflect_only(reflector))
        .context("cannot start the reflector thread")?;
    let mut relay = Relay::new(secret);
    tracing::info!(listen = %a.listen, reflector = %second, gso = sock.gso(), gro = sock.gro(),
        "relay up: forwarding between bound sides, no keys held / リレー起動");
    eprintln!(
        "relay listening on {}, reflector also on {second} / リレー待ち受け中",
        a.listen
    );
    // Batched both ways (recvmmsg with GRO, sendmmsg with GSO): a relayed bulk
    // transfer is many equal-size datagrams from one side to the other.
    let mut rx = RxBatch::new(BATCH);
    let mut tx = TxBatch::new(BATCH * 4);
    // What leaves: (message, start, end, destination, TOS), borrowed from `rx` at send.
    let mut out: Vec<(usize, usize, usize, SocketAddr, u8)> = Vec::new();
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        match rx.recv(&sock) {
            Ok(n) => {
                let (now, unix) = (Instant::now(), unix());
                out.clear();
                for i in 0..n {
                    let (m, bytes) = rx.message_mut(i);
                    let seg = m.seg.max(1);
                    let mut start = 0;
                    // A GRO message holds several datagrams of one sender: each is decided alone.
                    while start < m.len {
                        let end = (start + seg).min(m.len);
                        match relay.handle(now, unix, m.src, &bytes[start..end]) {
                            Action::Forward(to) => out.push((i, start, end, to, m.tos)),
                            Action::Reflect(answer) => {
                                if let Err(e) = sock.send_to(&answer, m.src) {
                                    tracing::debug!(to = %m.src, error = %e, "cannot answer a probe");
                                }
                            }
                            Action::Bound {
                                alloc,
                                side,
                                complete,
                            } => {
                                tracing::info!(allocation = %hex::encode(alloc), side, from = %m.src, complete,
                                "side bound / 接続側を登録")
                            }
                            Action::Drop(DropReason::BadBinding(e)) => {
                                tracing::warn!(from = %m.src, error = %e, "binding refused / 登録を拒否")
                            }
                            Action::Drop(_) => {}
                        }
                        start = end;
                    }
                }
                let rx = &rx;
                let sent = tx.send(
                    &sock,
                    out.iter()
                        .map(|&(i, s, e, to, tos)| (&rx.message(i)[s..e], to, tos)),
                );
                if sent < out.len() {
                    tracing::debug!(lost = out.len() - sent, "cannot forward every datagram");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("relay socket"),
        }
        if Instant::now() >= next_sweep {
            relay.expire(Instant::now(), unix());
            let s = relay.stats();
            tracing::info!(
                allocations = s.allocations,
                forwarded_datagrams = s.forwarded_datagrams,
                forwarded_bytes = s.forwarded_bytes,
                dropped = s.dropped,
                probes_answered = s.probes_answered,
                "relay counters"
            );
            next_sweep = Instant::now() + SWEEP;
        }
    }
}

/// The second reflector: answers probes, ignores everything else.
fn reflect_only(sock: std::net::UdpSocket) {
    let mut buf = [0u8; 64];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(nonce) = dodvpn_relay::reflect::probe_nonce(&buf[..n]) {
                    let _ = sock.send_to(&dodvpn_relay::reflect::answer(nonce, from), from);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reflector socket");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

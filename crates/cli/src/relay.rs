//! `dodvpn relay`: the provider relay (issue 19 item 3). A UDP forwarder for sites
//! that cannot reach each other directly (both behind symmetric NAT or CGNAT): each
//! side binds with what the centre gave it, then everything one side sends is sent on
//! to the other as it is — IKE and ESP-in-UDP, ciphertext only. The forwarding table
//! is `dodvpn_relay`; this is its socket loop.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use dodvpn_relay::{Action, DropReason, Relay};

#[derive(Parser)]
pub struct RelayArgs {
    /// UDP address to listen on (the centre's DODVPN_RELAY names it to the sites).
    #[arg(long, env = "DODVPN_RELAY_LISTEN", default_value = "0.0.0.0:4600")]
    listen: SocketAddr,
    /// The secret shared with the centre (its data directory's relay.key).
    #[arg(long, env = "DODVPN_RELAY_SECRET")]
    secret_file: PathBuf,
}

/// How often the table is swept and the counters logged.
const SWEEP: Duration = Duration::from_secs(30);

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn run(a: RelayArgs) -> anyhow::Result<()> {
    let secret = std::fs::read(&a.secret_file)
        .with_context(|| format!("cannot read the relay secret {}", a.secret_file.display()))?;
    if secret.len() < 32 {
        anyhow::bail!("{} holds fewer than 32 bytes", a.secret_file.display());
    }
    let sock = UdpSocket::bind(a.listen).with_context(|| format!("cannot bind {}", a.listen))?;
    sock.set_read_timeout(Some(SWEEP))?;
    let mut relay = Relay::new(secret);
    tracing::info!(listen = %a.listen, "relay up: forwarding between bound sides, no keys held / リレー起動");
    eprintln!("relay listening on {} / リレー待ち受け中", a.listen);
    let mut buf = vec![0u8; 65535];
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => match relay.handle(Instant::now(), unix(), from, &buf[..n]) {
                Action::Forward(to) => {
                    if let Err(e) = sock.send_to(&buf[..n], to) {
                        tracing::debug!(%to, error = %e, "cannot forward");
                    }
                }
                Action::Bound {
                    alloc,
                    side,
                    complete,
                } => tracing::info!(allocation = %hex::encode(alloc), side, %from, complete,
                    "side bound / 接続側を登録"),
                Action::Drop(DropReason::BadBinding(e)) => {
                    tracing::warn!(%from, error = %e, "binding refused / 登録を拒否")
                }
                Action::Drop(_) => {}
            },
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
                "relay counters"
            );
            next_sweep = Instant::now() + SWEEP;
        }
    }
}

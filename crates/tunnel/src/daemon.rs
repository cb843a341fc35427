//! The control thread: it owns one IKE endpoint per connection, feeds it the IKE
//! datagrams and trap hits the data plane reports, installs and removes the child SAs
//! the endpoints negotiate, and deletes what has been idle too long.

use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use dodvpn_dataplane::{
    Dataplane, DataplaneConfig, Event as DpEvent, InboundEntry, OutboundEntry, SpdAction,
    TunConfig, UdpConfig,
};
use dodvpn_esp::{InboundSa, OutboundSa};
use dodvpn_ike::{ChildSaInfo, Endpoint, Event, SaId};
use ipnet::IpNet;
use serde::Serialize;

use crate::config::{Connection, Start, TunnelConfig};

/// A negotiated child SA as installed in the data plane.
struct Child {
    ike_sa: SaId,
    local_spi: u32,
    remote_spi: u32,
    remote_nets: Vec<IpNet>,
    inbound: Arc<InboundEntry>,
    outbound: Arc<OutboundEntry>,
    up_since: Instant,
    /// A rekey created its successor; it only waits for its DELETE.
    replaced: bool,
}

struct Conn {
    cfg: Connection,
    ep: Endpoint,
    local: SocketAddr,
    remote: SocketAddr,
    /// The IKE SA we use for this connection, once there is one.
    ike_sa: Option<SaId>,
    established: bool,
    /// Child wanted as soon as the IKE SA is up (a trap hit while negotiating).
    child_wanted: bool,
    children: Vec<Child>,
    last_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub interface: String,
    pub connections: Vec<ConnStatus>,
    pub drops: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConnStatus {
    pub name: String,
    pub remote: String,
    pub ike_sa: Option<String>,
    pub state: String,
    pub children: Vec<ChildStatus>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChildStatus {
    pub spi_in: String,
    pub spi_out: String,
    pub remote: Vec<String>,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    pub age_secs: u64,
    pub idle_secs: u64,
}

pub struct Daemon {
    dp: Dataplane,
    conns: Vec<Conn>,
    events: Receiver<DpEvent>,
    pub status: Arc<Mutex<Status>>,
    interface: String,
}

/// How often idle timers and the status snapshot are looked at.
const TICK: Duration = Duration::from_millis(250);

impl Daemon {
    pub fn start(cfg: &TunnelConfig) -> anyhow::Result<Daemon> {
        let mut tun = TunConfig {
            name: cfg.interface.clone(),
            mtu: cfg.mtu,
            offload: cfg.offload,
            ..TunConfig::default()
        };
        if let Some(IpNet::V4(a)) = cfg.address {
            tun.ipv4 = Some((a.addr(), a.prefix_len()));
        }
        if let Some(IpNet::V6(a)) = cfg.address {
            tun.ipv6 = Some((a.addr(), a.prefix_len()));
        }
        let udp = UdpConfig {
            ike_port: cfg.ike_port,
            natt_port: cfg.natt_port,
            ..UdpConfig::default()
        };
        let (tx, rx) = sync_channel(4096);
        let dp_cfg = DataplaneConfig {
            tun,
            udp,
            ..DataplaneConfig::default()
        };
        let dp = Dataplane::start(dp_cfg, Some(tx))
            .context("cannot start the data plane (TUN device and UDP 500/4500 need root)")?;
        let mut conns = Vec::new();
        for c in &cfg.connections {
            let mut ike = crate::peer::ike_config(c, cfg.natt_port)?;
            // Our data plane carries ESP only inside UDP (R-DP-5: UDP 500/4500 only).
            ike.force_encap = true;
            for net in &c.remote_subnets {
                dp.tun()
                    .add_route(*net, None)
                    .with_context(|| format!("cannot route {net} into {}", cfg.interface))?;
                if c.start == Start::Trap {
                    dp.add_trap(*net);
                }
            }
            conns.push(Conn {
                cfg: c.clone(),
                ep: Endpoint::new(ike),
                local: SocketAddr::new(c.local_addr, cfg.ike_port),
                remote: SocketAddr::new(c.remote_addr, 500),
                ike_sa: None,
                established: false,
                child_wanted: false,
                children: Vec::new(),
                last_error: None,
            });
        }
        let interface = dp.tun().name().to_string();
        let mut d = Daemon {
            dp,
            conns,
            events: rx,
            status: Arc::new(Mutex::new(Status::default())),
            interface,
        };
        let now = Instant::now();
        for i in 0..d.conns.len() {
            if d.conns[i].cfg.start == Start::Start {
                d.initiate(i, now);
            }
        }
        d.flush(now);
        d.snapshot(now);
        Ok(d)
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    fn initiate(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        // An IKE SA on its way out (idle delete, peer delete) cannot carry a new child:
        // start afresh rather than wait for it to finish going.
        let leaving = c.ike_sa.and_then(|id| c.ep.sa(id)).is_none_or(|sa| {
            matches!(
                sa.state(),
                dodvpn_ike::State::Deleting
                    | dodvpn_ike::State::Closed
                    | dodvpn_ike::State::Rekeyed
            )
        });
        if leaving {
            c.ike_sa = None;
            c.established = false;
        }
        if c.ike_sa.is_some() {
            if c.established {
                if let Some(sa) = c.ike_sa {
                    if c.children.is_empty() && c.ep.create_child(now, sa) {
                        tracing::info!(conn = %c.cfg.name, "creating a child SA on the existing IKE SA");
                    }
                }
            } else {
                c.child_wanted = true;
            }
            return;
        }
        match c.ep.connect(now, c.local, c.remote) {
            Ok(sa) => {
                tracing::info!(conn = %c.cfg.name, "initiating IKE to {}", c.remote);
                c.ike_sa = Some(sa);
                c.established = false;
            }
            Err(e) => c.last_error = Some(format!("cannot initiate: {e}")),
        }
    }

    /// Run until `stop` returns true (checked every tick).
    pub fn run(&mut self, stop: &dyn Fn() -> bool) {
        let mut last_tick = Instant::now();
        loop {
            let now = Instant::now();
            let mut deadline = now + TICK;
            for c in &self.conns {
                if let Some(t) = c.ep.poll_timeout() {
                    deadline = deadline.min(t);
                }
            }
            match self
                .events
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(ev) => self.on_dataplane(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Drain whatever else is already queued before doing timers.
            while let Ok(ev) = self.events.try_recv() {
                self.on_dataplane(ev);
            }
            let now = Instant::now();
            for c in &mut self.conns {
                if c.ep.poll_timeout().is_some_and(|t| t <= now) {
                    c.ep.handle_timeout(now);
                }
            }
            self.flush(now);
            if now.duration_since(last_tick) >= TICK {
                last_tick = now;
                self.idle(now);
                self.flush(now);
                self.snapshot(now);
                if stop() {
                    return;
                }
            }
        }
    }

    fn on_dataplane(&mut self, ev: DpEvent) {
        let now = Instant::now();
        match ev {
            DpEvent::Ike(d) => {
                // Connections are told apart by the peer's address (static configuration).
                if let Some(c) = self
                    .conns
                    .iter_mut()
                    .find(|c| c.cfg.remote_addr == d.remote.ip())
                {
                    c.ep.handle(now, d.remote, d.local, &d.data);
                } else {
                    tracing::debug!("IKE from unknown peer {} ignored", d.remote);
                }
            }
            DpEvent::Acquire {
                selector,
                first_packet_dst,
            } => {
                if let Some(i) = self.conns.iter().position(|c| {
                    c.cfg
                        .remote_subnets
                        .iter()
                        .any(|n| n.contains(&first_packet_dst))
                }) {
                    tracing::info!(conn = %self.conns[i].cfg.name, %selector, "first packet for {first_packet_dst}: negotiating");
                    self.initiate(i, now);
                }
            }
        }
        self.flush(now);
    }

    /// Send what the endpoints want sent, and act on what they report.
    fn flush(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            while let Some(t) = self.conns[i].ep.poll_transmit() {
                let r = if t.bytes == [0xff] && !t.nat_t {
                    self.dp.udp().send_keepalive(t.to)
                } else {
                    self.dp.udp().send_ike(t.nat_t, t.to, &t.bytes)
                };
                if let Err(e) = r {
                    tracing::warn!(to = %t.to, error = %e, "cannot send IKE datagram");
                }
            }
            while let Some(ev) = self.conns[i].ep.poll_event() {
                self.on_ike(i, ev, now);
            }
        }
    }

    fn on_ike(&mut self, i: usize, ev: Event, now: Instant) {
        let name = self.conns[i].cfg.name.clone();
        match ev {
            Event::IkeSaUp {
                sa, remote, nat_t, ..
            } => {
                tracing::info!(conn = %name, %remote, nat_t, "IKE SA established");
                let c = &mut self.conns[i];
                c.ike_sa = Some(sa);
                c.established = true;
                c.last_error = None;
                if c.child_wanted && c.children.is_empty() {
                    c.child_wanted = false;
                    c.ep.create_child(now, sa);
                }
            }
            Event::IkeSaRekeyed { old, new } => {
                tracing::info!(conn = %name, old = format!("{old:016x}"), new = format!("{new:016x}"), "IKE SA rekeyed");
                let c = &mut self.conns[i];
                if c.ike_sa == Some(old) {
                    c.ike_sa = Some(new);
                }
                for ch in &mut c.children {
                    if ch.ike_sa == old {
                        ch.ike_sa = new;
                    }
                }
            }
            Event::ChildSaUp(info) => self.install(i, info),
            Event::ChildSaDeleted { local_spi, .. } => self.uninstall(i, local_spi, "deleted"),
            Event::ChildSaFailed { reason, .. } => {
                tracing::warn!(conn = %name, %reason, "child SA refused");
                self.conns[i].last_error = Some(reason);
            }
            Event::AuthFailed { reason, .. } => {
                tracing::warn!(conn = %name, %reason, "authentication failed");
                self.conns[i].last_error = Some(format!("authentication failed: {reason}"));
            }
            Event::IkeSaDown { sa, reason } => {
                let c = &mut self.conns[i];
                if c.ike_sa == Some(sa) {
                    tracing::info!(conn = %name, ?reason, "IKE SA down");
                    c.ike_sa = None;
                    c.established = false;
                    let spis: Vec<u32> = c
                        .children
                        .iter()
                        .filter(|ch| ch.ike_sa == sa)
                        .map(|ch| ch.local_spi)
                        .collect();
                    for s in spis {
                        self.uninstall(i, s, "IKE SA down");
                    }
                    if !matches!(
                        reason,
                        dodvpn_ike::DownReason::LocalDelete | dodvpn_ike::DownReason::Rekeyed
                    ) {
                        self.conns[i].last_error = Some(format!("IKE SA down: {reason:?}"));
                    }
                    if self.conns[i].cfg.start == Start::Start {
                        self.initiate(i, now);
                    }
                }
            }
        }
    }

    fn install(&mut self, i: usize, info: ChildSaInfo) {
        let c = &mut self.conns[i];
        let inbound = match InboundSa::new(info.local_spi, info.aead, &info.keymat_in, info.esn) {
            Ok(sa) => sa,
            Err(e) => {
                return tracing::error!(conn = %c.cfg.name, error = %e, "cannot build inbound SA")
            }
        };
        let outbound = match OutboundSa::new(info.remote_spi, info.aead, &info.keymat_out, info.esn)
        {
            Ok(sa) => sa,
            Err(e) => {
                return tracing::error!(conn = %c.cfg.name, error = %e, "cannot build outbound SA")
            }
        };
        let remote_nets: Vec<IpNet> = info.remote_ts.iter().flat_map(|t| t.to_nets()).collect();
        // ESP goes to the peer's NAT-T port, from wherever its IKE now comes.
        let peer = SocketAddr::new(
            info.remote_addr.ip(),
            if info.udp_encap {
                info.remote_addr.port()
            } else {
                4500
            },
        );
        if remote_nets.is_empty() {
            return tracing::warn!(conn = %c.cfg.name, "child SA without remote selectors");
        }
        // Make-before-break (RFC 7296 §2.8): the new inbound SA first, the old one stays
        // until it is deleted. Outbound moves to the new SA at once when we started the
        // rekey (the peer already has its inbound SA); when the peer did, only once the
        // old SA is deleted (see `uninstall`), unless nothing protects the nets yet.
        let inbound = self.dp.install_inbound(inbound);
        let protected = |n: &IpNet| {
            matches!(self.dp.tables().load().spd.get(n), Some(SpdAction::Protect(e))
                if c.children.iter().any(|ch| Arc::ptr_eq(e, &ch.outbound)))
        };
        let switch = info.switch_outbound || !remote_nets.iter().all(protected);
        let outbound = if switch {
            let mut nets = remote_nets.iter();
            let first = nets.next().expect("checked");
            let outbound = self.dp.install_outbound(*first, outbound, peer);
            for n in nets {
                self.dp
                    .tables()
                    .set_policy(*n, SpdAction::Protect(outbound.clone()));
            }
            outbound
        } else {
            Arc::new(OutboundEntry::new(outbound, peer))
        };
        if let Some(old) = info.rekey_of {
            for ch in c.children.iter_mut().filter(|ch| ch.local_spi == old) {
                ch.replaced = true;
            }
        }
        tracing::info!(conn = %c.cfg.name, spi_in = format!("{:08x}", info.local_spi), spi_out = format!("{:08x}", info.remote_spi),
            aead = ?info.aead, rekey_of = ?info.rekey_of.map(|s| format!("{s:08x}")), outbound = switch,
            "child SA installed for {:?}", remote_nets);
        c.children.push(Child {
            ike_sa: info.ike_sa,
            local_spi: info.local_spi,
            remote_spi: info.remote_spi,
            remote_nets,
            inbound,
            outbound,
            up_since: Instant::now(),
            replaced: false,
        });
    }

    fn uninstall(&mut self, i: usize, local_spi: u32, why: &str) {
        let c = &mut self.conns[i];
        let Some(pos) = c.children.iter().position(|ch| ch.local_spi == local_spi) else {
            return;
        };
        let ch = c.children.remove(pos);
        self.dp.remove_inbound(ch.local_spi);
        for n in &ch.remote_nets {
            // Only touch the policy if it still points at this SA (a rekey moved it otherwise).
            let ours = matches!(self.dp.tables().load().spd.get(n), Some(SpdAction::Protect(e)) if Arc::ptr_eq(e, &ch.outbound));
            if !ours {
                continue;
            }
            // A successor (the peer's rekey) takes over: the newest SA for this net that
            // is not itself replaced.
            let next = c
                .children
                .iter()
                .filter(|o| o.remote_nets.contains(n))
                .max_by_key(|o| (!o.replaced, o.up_since));
            if let Some(o) = next {
                self.dp
                    .tables()
                    .set_policy(*n, SpdAction::Protect(o.outbound.clone()));
                tracing::info!(conn = %c.cfg.name, spi_out = format!("{:08x}", o.remote_spi), "outbound for {n} moved to the successor SA");
            } else {
                self.dp.remove_outbound(n);
                if c.cfg.start == Start::Trap {
                    self.dp.add_trap(*n);
                }
            }
        }
        tracing::info!(conn = %c.cfg.name, spi_in = format!("{:08x}", ch.local_spi), "child SA removed ({why})");
    }

    /// Delete child SAs idle longer than the connection's idle timeout, then the IKE SA.
    fn idle(&mut self, now: Instant) {
        for c in &mut self.conns {
            let limit = c.cfg.idle_timeout;
            if limit.is_zero() {
                continue;
            }
            let idle: Vec<(SaId, u32)> = c
                .children
                .iter()
                .filter(|ch| {
                    let last = [
                        ch.inbound.stats.last_activity(),
                        ch.outbound.stats.last_activity(),
                        Some(ch.up_since),
                    ]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(ch.up_since);
                    now.duration_since(last) >= limit
                })
                .map(|ch| (ch.ike_sa, ch.local_spi))
                .collect();
            for (sa, spi) in &idle {
                tracing::info!(conn = %c.cfg.name, spi_in = format!("{spi:08x}"), "idle: deleting child SA");
                c.ep.delete_child(now, *sa, *spi);
            }
            if !idle.is_empty() && idle.len() == c.children.len() {
                if let Some(sa) = c.ike_sa {
                    tracing::info!(conn = %c.cfg.name, "idle: deleting IKE SA");
                    c.ep.delete_ike(now, sa);
                }
            }
        }
    }

    fn snapshot(&self, now: Instant) {
        let conns = self
            .conns
            .iter()
            .map(|c| ConnStatus {
                name: c.cfg.name.clone(),
                remote: c.remote.ip().to_string(),
                ike_sa: c.ike_sa.and_then(|id| c.ep.sa(id)).map(|sa| {
                    let (i, r) = sa.spis();
                    format!("{i:016x}_i {r:016x}_r")
                }),
                state: match (c.ike_sa, c.established) {
                    (None, _) => {
                        if c.cfg.start == Start::Trap {
                            "trap"
                        } else {
                            "down"
                        }
                    }
                    (Some(_), false) => "connecting",
                    (Some(_), true) => "established",
                }
                .into(),
                children: c
                    .children
                    .iter()
                    .map(|ch| {
                        let last = [
                            ch.inbound.stats.last_activity(),
                            ch.outbound.stats.last_activity(),
                        ]
                        .into_iter()
                        .flatten()
                        .max();
                        ChildStatus {
                            spi_in: format!("{:08x}", ch.local_spi),
                            spi_out: format!("{:08x}", ch.remote_spi),
                            remote: ch.remote_nets.iter().map(|n| n.to_string()).collect(),
                            bytes_in: ch.inbound.stats.bytes(),
                            packets_in: ch.inbound.stats.packets(),
                            bytes_out: ch.outbound.stats.bytes(),
                            packets_out: ch.outbound.stats.packets(),
                            age_secs: now.duration_since(ch.up_since).as_secs(),
                            idle_secs: now.duration_since(last.unwrap_or(ch.up_since)).as_secs(),
                        }
                    })
                    .collect(),
                last_error: c.last_error.clone(),
            })
            .collect();
        let drops = self
            .dp
            .drops()
            .snapshot()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.name().to_string(), n))
            .collect();
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        *st = Status {
            interface: self.interface.clone(),
            connections: conns,
            drops,
        };
    }
}

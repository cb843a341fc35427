//! The control thread: a thin loop around [`crate::core::Core`]. It hands the core
//! the clock, the IKE datagrams and trap hits the data plane reports and the
//! operator's commands, and carries out what the core decides on the real data plane
//! (TUN routes, SPD/SAD) and the UDP sockets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dodvpn_dataplane::{
    Dataplane, DataplaneConfig, Event as DpEvent, EventSink, InboundEntry, OutboundEntry,
    TunConfig, UdpConfig,
};
use ipnet::IpNet;
use serde::Serialize;

use crate::config::TunnelConfig;
use crate::core::{Command as CoreCommand, Core, Meter, Usage};

pub use crate::core::{ChildStatus, ConnSpec, ConnStatus, Counts, SessionEvent, SessionId};

pub type Observer = Box<dyn Fn(SessionEvent) + Send>;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub interface: String,
    pub connections: Vec<ConnStatus>,
    pub drops: Vec<(String, u64)>,
}

/// What the control thread waits on: the data plane's reports and commands from
/// the control socket (or an embedding agent), on one channel so neither waits.
enum Input {
    Dataplane(DpEvent),
    Command(Command),
}

struct Sink(SyncSender<Input>);

impl EventSink for Sink {
    fn deliver(&self, ev: DpEvent) -> bool {
        self.0.try_send(Input::Dataplane(ev)).is_ok()
    }
}

enum Command {
    Status(SyncSender<Status>),
    /// Delete the IKE SAs (and so the child SAs) of one connection or of all;
    /// traps stay, so the next packet brings the tunnel back.
    Down {
        conn: Option<String>,
        done: SyncSender<usize>,
    },
    /// Add a connection, or replace the one of that name (its SAs are deleted first).
    Upsert(Box<ConnSpec>, SyncSender<Result<(), String>>),
    /// Delete a connection's SAs, routes and traps.
    Remove(String, SyncSender<bool>),
    /// Delete the IKE SA with this session id; false if there is none.
    Cut(String, SyncSender<bool>),
    /// Delete every IKE SA, wait for the peers' answers, then stop the loop.
    Shutdown(SyncSender<usize>),
    /// New candidates of a connection's peer, without touching its SAs.
    Candidates(String, Vec<SocketAddr>, SyncSender<bool>),
    /// Open our NAT mapping towards these addresses of a connection's peer.
    Open(String, Vec<SocketAddr>, SyncSender<bool>),
    /// The peer was introduced: resend our waiting IKE_SA_INITs.
    Introduced(String, SyncSender<usize>),
    /// Go through a relay to a connection's peer.
    Relay(Box<RelayUse>, SyncSender<bool>),
    /// Ask UDP reflectors, from the NAT-T port, which address they see us at.
    Probe(Probe),
}

/// A reflector probe in flight: answers go to `answers` as (index in `to`, the
/// address the reflector saw).
struct Probe {
    nonce: dodvpn_relay::reflect::Nonce,
    to: Vec<SocketAddr>,
    answers: SyncSender<(usize, SocketAddr)>,
}

/// What the centre said about a relay for one peer (issue 19 item 3).
pub struct RelayUse {
    pub conn: String,
    pub relay: SocketAddr,
    /// Our binding datagram for the relay, as the centre made it.
    pub binding: Vec<u8>,
    /// We dial the peer through it (else we answer).
    pub initiate: bool,
}

/// A cheap, cloneable way to talk to a running daemon from other threads.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Input>,
}

/// Whether this host (network namespace) can open IPv6 UDP sockets at all.
fn ipv6_available() -> bool {
    std::net::UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, 0)).is_ok()
}

/// How long a caller waits for the control thread before giving up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

impl Handle {
    fn ask<T>(&self, make: impl FnOnce(SyncSender<T>) -> Command) -> anyhow::Result<T> {
        let (tx, rx) = sync_channel(1);
        self.tx
            .send(Input::Command(make(tx)))
            .map_err(|_| anyhow::anyhow!("the tunnel daemon has stopped"))?;
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| anyhow::anyhow!("the tunnel daemon did not answer within 5 s"))
    }

    /// A fresh snapshot of the SAs and counters.
    pub fn status(&self) -> anyhow::Result<Status> {
        self.ask(Command::Status)
    }

    /// Take the named connection (or every connection) down; returns how many IKE SAs
    /// were deleted. Unknown names are an error.
    pub fn down(&self, conn: Option<&str>) -> anyhow::Result<usize> {
        let n = self.ask(|done| Command::Down {
            conn: conn.map(str::to_string),
            done,
        })?;
        if n == usize::MAX {
            anyhow::bail!("no connection named {:?}", conn.unwrap_or_default());
        }
        Ok(n)
    }

    /// Add a connection, or replace the one of the same name.
    pub fn upsert(&self, spec: ConnSpec) -> anyhow::Result<()> {
        self.ask(|done| Command::Upsert(Box::new(spec), done))?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Remove a connection (its SAs are deleted, the peer told); false if unknown.
    pub fn remove(&self, name: &str) -> anyhow::Result<bool> {
        self.ask(|done| Command::Remove(name.to_string(), done))
    }

    /// Delete the session (IKE SA) with this id; false if no such session is up here.
    pub fn cut(&self, session: &str) -> anyhow::Result<bool> {
        self.ask(|done| Command::Cut(session.to_string(), done))
    }

    /// The peer's current candidates (issue 19): the SAs stay as they are.
    pub fn set_candidates(&self, conn: &str, candidates: Vec<SocketAddr>) -> anyhow::Result<bool> {
        self.ask(|done| Command::Candidates(conn.to_string(), candidates, done))
    }

    /// Hole punching: open our NAT mapping towards the peer's addresses.
    pub fn open_mappings(&self, conn: &str, addrs: Vec<SocketAddr>) -> anyhow::Result<bool> {
        self.ask(|done| Command::Open(conn.to_string(), addrs, done))
    }

    /// [`Core::introduced`]: how many IKE_SA_INITs left again.
    pub fn introduced(&self, conn: &str) -> anyhow::Result<usize> {
        self.ask(|done| Command::Introduced(conn.to_string(), done))
    }

    /// Relay fallback: bind at the relay and dial (or answer) the peer there.
    pub fn use_relay(&self, relay: RelayUse) -> anyhow::Result<bool> {
        self.ask(|done| Command::Relay(Box::new(relay), done))
    }

    /// Endpoint discovery (issue 19 item 1): the public address and port our NAT-T
    /// socket has towards each reflector (`None` where none came back within
    /// `wait`; the probes go twice, UDP may lose one). The answers come to the IKE
    /// port's socket, so they tell the NAT's mapping of the very port peers reach.
    pub fn probe_mapping(
        &self,
        reflectors: &[SocketAddr],
        wait: Duration,
    ) -> anyhow::Result<Vec<Option<SocketAddr>>> {
        let nonce = dodvpn_relay::reflect::fresh_nonce()
            .ok_or_else(|| anyhow::anyhow!("the system's random generator failed"))?;
        let (tx, rx) = sync_channel(reflectors.len() * 2);
        let mut seen = vec![None; reflectors.len()];
        let end = Instant::now() + wait;
        for until in [Instant::now() + wait / 3, end] {
            self.tx
                .send(Input::Command(Command::Probe(Probe {
                    nonce,
                    to: reflectors.to_vec(),
                    answers: tx.clone(),
                })))
                .map_err(|_| anyhow::anyhow!("the tunnel daemon has stopped"))?;
            while seen.iter().any(Option::is_none) {
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok((i, at)) => seen[i] = Some(at),
                    Err(_) => break,
                }
            }
            if seen.iter().all(Option::is_some) {
                break;
            }
        }
        Ok(seen)
    }

    /// Before the process exits: delete every IKE SA, telling each peer, wait at
    /// most [`SHUTDOWN_WAIT`] for their answers, and stop the daemon's loop.
    /// Returns how many IKE SAs were deleted.
    pub fn shutdown(&self) -> anyhow::Result<usize> {
        let (tx, rx) = sync_channel(1);
        self.tx
            .send(Input::Command(Command::Shutdown(tx)))
            .map_err(|_| anyhow::anyhow!("the tunnel daemon has stopped"))?;
        rx.recv_timeout(SHUTDOWN_WAIT + ANSWER_TIMEOUT)
            .map_err(|_| anyhow::anyhow!("the tunnel daemon did not stop in time"))
    }
}

/// How long shutting down waits for the peers to answer our DELETEs: a DELETE
/// and one retransmission (RFC 7296 §2.4 lets us go without an answer).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The child SAs installed in the data plane, by inbound SPI, with their counters.
#[derive(Default)]
struct Installed(HashMap<u32, (Arc<InboundEntry>, Arc<OutboundEntry>)>);

impl Meter for Installed {
    fn usage(&self, local_spi: u32) -> Usage {
        let Some((i, o)) = self.0.get(&local_spi) else {
            return Usage::default();
        };
        Usage {
            counts: Counts {
                bytes_in: i.stats.bytes(),
                bytes_out: o.stats.bytes(),
                packets_in: i.stats.packets(),
                packets_out: o.stats.packets(),
            },
            last_activity: [i.stats.last_activity(), o.stats.last_activity()]
                .into_iter()
                .flatten()
                .max(),
        }
    }
}

pub struct Daemon {
    dp: Dataplane,
    core: Core,
    installed: Installed,
    inputs: Receiver<Input>,
    handle: Handle,
    interface: String,
    observer: Option<Observer>,
    /// The route's source address towards each established peer when last
    /// looked up (see [`Daemon::check_paths`]).
    route_seen: HashMap<String, IpAddr>,
    next_path_check: Instant,
    /// The latest reflector probe (see [`Handle::probe_mapping`]).
    probe: Option<Probe>,
}

/// How often `stop` is asked (and the longest the loop sleeps).
const TICK: Duration = Duration::from_millis(250);

/// How often the routes to established peers are looked up for a new local
/// address: the longest a move waits before MOBIKE (or a reconnect) starts.
const PATH_CHECK: Duration = Duration::from_secs(1);

/// The source address the host's routing picks towards `peer` (nothing is sent).
/// A fresh socket each time: a connected one keeps its first source.
fn route_source(peer: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = match peer {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(SocketAddr::new(peer, 500)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// Whether `ip` is still one of this host's addresses.
fn still_ours(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl Daemon {
    /// Start the data plane and run the connections of a `dodvpn tunnel` file.
    pub fn start(cfg: &TunnelConfig) -> anyhow::Result<Daemon> {
        let specs = cfg
            .connections
            .iter()
            .map(|c| {
                Ok(ConnSpec {
                    name: c.name.clone(),
                    local_addr: c.local_addr,
                    remote_addr: Some(c.remote_addr),
                    candidates: Vec::new(),
                    remote_subnets: c.remote_subnets.clone(),
                    start: c.start,
                    idle_timeout: c.idle_timeout,
                    ike: crate::peer::ike_config(c, cfg.natt_port)?,
                    rules: Vec::new(),
                    local_map: c.local_pairs(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Daemon::with_connections(cfg, specs, None)
    }

    /// Start the data plane (interface and ports from `cfg`; its `connections` are
    /// ignored) with these connections; `observer` hears of sessions coming and going.
    pub fn with_connections(
        cfg: &TunnelConfig,
        specs: Vec<ConnSpec>,
        observer: Option<Observer>,
    ) -> anyhow::Result<Daemon> {
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
            // IKE and ESP-in-UDP over IPv6 too, wherever the host has IPv6: a
            // connection (or, for the agent, a centre-given endpoint) may be IPv6.
            bind_v6: ipv6_available().then_some(std::net::Ipv6Addr::UNSPECIFIED),
            ..UdpConfig::default()
        };
        let (tx, rx) = sync_channel(4096);
        let handle = Handle { tx: tx.clone() };
        let dp_cfg = DataplaneConfig {
            tun,
            udp,
            ..DataplaneConfig::default()
        };
        let dp = Dataplane::start(dp_cfg, Some(Sink(tx)))
            .context("cannot start the data plane (TUN device and UDP 500/4500 need root)")?;
        let interface = dp.tun().name().to_string();
        let mut d = Daemon {
            dp,
            core: Core::new(cfg.ike_port, cfg.natt_port),
            installed: Installed::default(),
            inputs: rx,
            handle,
            interface,
            observer,
            route_seen: HashMap::new(),
            next_path_check: Instant::now() + PATH_CHECK,
            probe: None,
        };
        let now = Instant::now();
        for spec in specs {
            d.add(spec, now)?;
        }
        Ok(d)
    }

    /// Add a connection; if its routes cannot be set, it is taken out again.
    fn add(&mut self, spec: ConnSpec, now: Instant) -> anyhow::Result<()> {
        let name = spec.name.clone();
        self.core.add(now, spec, &self.installed)?;
        if let Err(e) = self.apply() {
            self.core.remove(now, &name, &self.installed);
            let _ = self.apply();
            return Err(e);
        }
        Ok(())
    }

    /// Report handshakes and rekeys to `t` (the agent's metrics).
    pub fn set_telemetry(&mut self, t: Arc<dyn crate::telemetry::Telemetry>) {
        self.core.set_telemetry(t);
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Run until `stop` returns true (checked every tick).
    pub fn run(&mut self, stop: &dyn Fn() -> bool) {
        let mut last_tick = Instant::now();
        loop {
            let now = Instant::now();
            let deadline = self
                .core
                .poll_timeout()
                .map_or(now + TICK, |t| t.min(now + TICK));
            match self
                .inputs
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(Input::Command(Command::Shutdown(done))) => {
                    let n = self.shutdown(SHUTDOWN_WAIT);
                    let _ = done.try_send(n);
                    return;
                }
                Ok(input) => self.on_input(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Drain whatever else is already queued before doing timers.
            while let Ok(input) = self.inputs.try_recv() {
                if let Input::Command(Command::Shutdown(done)) = input {
                    let n = self.shutdown(SHUTDOWN_WAIT);
                    let _ = done.try_send(n);
                    return;
                }
                self.on_input(input);
            }
            let now = Instant::now();
            self.core.handle_timeout(now, &self.installed);
            let _ = self.apply();
            if now >= self.next_path_check {
                self.next_path_check = now + PATH_CHECK;
                self.check_paths(now);
            }
            if now.duration_since(last_tick) >= TICK {
                last_tick = now;
                if stop() {
                    return;
                }
            }
        }
    }

    /// Our address towards an established peer changed when the address the SA
    /// uses is gone from the host (a new DHCP lease) or the route's source moved
    /// since the last look (a failover line). A configured address that is not
    /// the route's preferred source is not a move.
    fn check_paths(&mut self, now: Instant) {
        let paths = self.core.paths();
        self.route_seen
            .retain(|name, _| paths.iter().any(|(n, _, _)| n == name));
        for (name, remote, local) in paths {
            let Some(src) = route_source(remote.ip()) else {
                continue; // no route at all for now: the next look may find one
            };
            let before = self.route_seen.insert(name.clone(), src);
            if src == local {
                continue;
            }
            if before.is_some_and(|b| b != src) || local.is_unspecified() || !still_ours(local) {
                self.core
                    .local_address_changed(now, &name, src, &self.installed);
            }
        }
        let _ = self.apply();
    }

    /// Delete every IKE SA, telling each peer, and wait up to `wait` for their
    /// answers (IKE datagrams only: trap hits would start new SAs, and commands
    /// get no answer). Returns how many IKE SAs were deleted.
    pub fn shutdown(&mut self, wait: Duration) -> usize {
        let start = Instant::now();
        let n = self.core.shutdown(start, &self.installed);
        let _ = self.apply();
        tracing::info!(ike_sas = n, "shutting down: DELETE sent to the peers");
        let end = start + wait;
        while self.core.ike_sas_left() {
            let now = Instant::now();
            if now >= end {
                tracing::warn!("shutting down: a peer did not answer our DELETE in {wait:?}");
                break;
            }
            let deadline = self.core.poll_timeout().map_or(end, |t| t.min(end));
            match self
                .inputs
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(Input::Dataplane(DpEvent::Ike(d))) => {
                    self.core
                        .handle_datagram(now, d.remote, d.local, &d.data, &self.installed)
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.core.handle_timeout(Instant::now(), &self.installed);
            let _ = self.apply();
        }
        n
    }

    fn on_input(&mut self, input: Input) {
        let now = Instant::now();
        let m = &self.installed;
        match input {
            Input::Dataplane(DpEvent::Ike(d)) => {
                if !self.reflector_answer(&d) {
                    self.core
                        .handle_datagram(now, d.remote, d.local, &d.data, m)
                }
            }
            Input::Dataplane(DpEvent::Acquire {
                selector,
                first_packet_dst,
            }) => self
                .core
                .handle_trap_hit(now, selector, first_packet_dst, m),
            Input::Command(Command::Status(reply)) => {
                let _ = reply.try_send(self.status(now));
            }
            Input::Command(Command::Down { conn, done }) => {
                let n = self
                    .core
                    .down(now, conn.as_deref(), m)
                    .unwrap_or(usize::MAX);
                let _ = self.apply();
                let _ = done.try_send(n);
            }
            Input::Command(Command::Upsert(spec, done)) => {
                self.core.remove(now, &spec.name, m);
                let _ = self.apply();
                let r = self.add(*spec, now).map_err(|e| format!("{e:#}"));
                let _ = done.try_send(r);
            }
            Input::Command(Command::Remove(name, done)) => {
                let hit = self.core.remove(now, &name, m);
                let _ = self.apply();
                let _ = done.try_send(hit);
            }
            Input::Command(Command::Cut(session, done)) => {
                let hit = self.core.cut(now, &session, m);
                let _ = self.apply();
                let _ = done.try_send(hit);
            }
            Input::Command(Command::Candidates(name, addrs, done)) => {
                let _ = done.try_send(self.core.set_candidates(&name, addrs));
            }
            Input::Command(Command::Introduced(name, done)) => {
                let _ = done.try_send(self.core.introduced(now, &name, m));
            }
            Input::Command(Command::Open(name, addrs, done)) => {
                let _ = done.try_send(self.core.open_mappings(now, &name, &addrs));
            }
            Input::Command(Command::Relay(r, done)) => {
                let hit = self
                    .core
                    .use_relay(now, &r.conn, r.relay, r.binding, r.initiate, m);
                let _ = done.try_send(hit);
            }
            Input::Command(Command::Probe(p)) => {
                let datagram = dodvpn_relay::reflect::probe(p.nonce);
                for to in &p.to {
                    if let Err(e) = self.dp.udp().send_natt_raw(*to, &datagram) {
                        tracing::debug!(%to, error = %e, "cannot probe the reflector");
                    }
                }
                self.probe = Some(p);
            }
            // Handled by `run`, which stops afterwards.
            Input::Command(Command::Shutdown(done)) => {
                let n = self.shutdown(SHUTDOWN_WAIT);
                let _ = done.try_send(n);
            }
        }
        let _ = self.apply();
    }

    /// Whether `d` is a reflector's answer to our probe (passed on to the prober) or
    /// a late one (dropped); anything else is IKE.
    fn reflector_answer(&self, d: &dodvpn_dataplane::IkeDatagram) -> bool {
        let Some(p) = &self.probe else { return false };
        let Some(i) = p.to.iter().position(|a| *a == d.remote) else {
            return false;
        };
        let Some((nonce, seen)) = dodvpn_relay::reflect::read_answer(&d.data) else {
            return false;
        };
        if nonce == p.nonce {
            let _ = p.answers.try_send((i, seen));
        }
        true
    }

    /// Carry out what the core decided, in order; the first route that cannot be set
    /// is the error (the rest is still done).
    fn apply(&mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(cmd) = self.core.poll_command() {
            match cmd {
                CoreCommand::AddRoute(net) => {
                    let r = self
                        .dp
                        .tun()
                        .add_route(net, None)
                        .with_context(|| format!("cannot route {net} into {}", self.interface));
                    if let Err(e) = r {
                        tracing::error!(error = %format!("{e:#}"));
                        if result.is_ok() {
                            result = Err(e);
                        }
                    }
                }
                CoreCommand::RemoveRoute(net) => {
                    if let Err(e) = self.dp.tun().remove_route(net) {
                        tracing::debug!(%net, error = %e, "route already gone");
                    }
                }
                CoreCommand::Trap(net) => {
                    self.dp.add_trap(net);
                }
                CoreCommand::Unprotect(net) => {
                    self.dp.remove_outbound(&net);
                }
                CoreCommand::InstallChild {
                    local_spi,
                    inbound,
                    outbound,
                    peer,
                    filter,
                } => {
                    let inbound = self.dp.install_inbound_filtered(*inbound, filter.clone());
                    let outbound =
                        Arc::new(OutboundEntry::with_filter(*outbound, peer, Some(filter)));
                    self.installed.0.insert(local_spi, (inbound, outbound));
                }
                CoreCommand::Protect { net, local_spi } => match self.installed.0.get(&local_spi) {
                    Some((_, outbound)) => self.dp.protect(net, outbound),
                    None => tracing::error!(
                        spi_in = format!("{local_spi:08x}"),
                        "no such child SA to protect {net} with"
                    ),
                },
                CoreCommand::RemoveChild { local_spi } => {
                    self.dp.remove_inbound(local_spi);
                    self.installed.0.remove(&local_spi);
                }
                CoreCommand::MoveChild { local_spi, peer } => {
                    if let Some((_, outbound)) = self.installed.0.get(&local_spi) {
                        outbound.set_peer(peer);
                    }
                }
                CoreCommand::Send(t) => {
                    let r = if t.bytes == [0xff] && !t.nat_t {
                        self.dp.udp().send_keepalive(t.to)
                    } else {
                        self.dp.udp().send_ike(t.nat_t, t.to, &t.bytes)
                    };
                    if let Err(e) = r {
                        tracing::warn!(to = %t.to, error = %e, "cannot send IKE datagram");
                    }
                }
                CoreCommand::SendRaw { to, bytes } => {
                    if let Err(e) = self.dp.udp().send_natt_raw(to, &bytes) {
                        tracing::debug!(%to, error = %e, "cannot send from the NAT-T port");
                    }
                }
                CoreCommand::Session(ev) => {
                    if let Some(obs) = &self.observer {
                        obs(ev);
                    }
                }
            }
        }
        result
    }

    fn status(&self, now: Instant) -> Status {
        let drops = self
            .dp
            .drops()
            .snapshot()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.name().to_string(), n))
            .collect();
        Status {
            interface: self.interface.clone(),
            connections: self.core.status(now, &self.installed),
            drops,
        }
    }
}

//! The control thread: it owns one IKE endpoint per connection, feeds it the IKE
//! datagrams and trap hits the data plane reports, installs and removes the child SAs
//! the endpoints negotiate, and deletes what has been idle too long.

use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dodvpn_dataplane::{
    Dataplane, DataplaneConfig, Event as DpEvent, EventSink, FlowRule, InboundEntry, NetMap,
    OutboundEntry, PacketFilter, SpdAction, TunConfig, UdpConfig,
};
use dodvpn_esp::{InboundSa, OutboundSa};
use dodvpn_ike::{ChildSaInfo, Endpoint, Event, SaId};
use ipnet::IpNet;
use serde::Serialize;

use std::net::IpAddr;

use crate::config::{Start, TunnelConfig};

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

/// One connection as the control thread runs it, however it was configured (the
/// TOML file of `dodvpn tunnel`, or the centre's signed grants via the agent).
#[derive(Clone)]
pub struct ConnSpec {
    pub name: String,
    pub local_addr: IpAddr,
    pub remote_addr: IpAddr,
    /// Routed into the TUN device (and trapped when `start` is `Trap`).
    pub remote_subnets: Vec<IpNet>,
    pub start: Start,
    /// Delete child SAs idle this long, then the IKE SA ("0s" = never).
    pub idle_timeout: Duration,
    pub ike: dodvpn_ike::Config,
    /// Services allowed through this connection's child SAs (R-DP-7); empty = all.
    /// Every child SA also drops decrypted packets outside its own traffic selectors,
    /// so nothing transits from one peer to another (TR 8.1 d).
    pub rules: Vec<FlowRule>,
    /// Our real prefixes and the visible ones the peer knows them by (R-DP-8):
    /// every child SA translates outbound sources real → visible and inbound
    /// destinations visible → real. The IKE selectors (`ike.local_ts`) and the
    /// rules' local hosts name the visible prefixes. IPv4; empty = no mapping.
    pub local_map: Vec<(IpNet, IpNet)>,
}

/// A session is one IKE SA; both ends name it by its SPI pair, so their reports meet
/// under one id at the centre (three-point audit, TR A.1 c).
#[derive(Clone, Debug, Serialize)]
pub struct SessionId {
    pub spi_i: u64,
    pub spi_r: u64,
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{:016x}", self.spi_i, self.spi_r)
    }
}

/// Byte and packet counts of a session (all its child SAs, current and past).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

/// What an embedding agent hears about sessions.
#[derive(Clone, Debug)]
pub enum SessionEvent {
    Up {
        conn: String,
        session: SessionId,
    },
    Down {
        conn: String,
        session: SessionId,
        counts: Counts,
        reason: String,
    },
}

pub type Observer = Box<dyn Fn(SessionEvent) + Send>;

struct Conn {
    cfg: ConnSpec,
    ep: Endpoint,
    local: SocketAddr,
    remote: SocketAddr,
    /// The IKE SA we use for this connection, once there is one.
    ike_sa: Option<SaId>,
    established: bool,
    /// Child wanted as soon as the IKE SA is up (a trap hit while negotiating).
    child_wanted: bool,
    children: Vec<Child>,
    /// The session (first IKE SA's SPIs; kept across IKE rekeys) while established.
    session: Option<SessionId>,
    /// Counts of child SAs already gone from the current session.
    past: Counts,
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
    /// The session id both ends report to the centre.
    pub session: Option<String>,
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
}

/// A cheap, cloneable way to talk to a running daemon from other threads.
#[derive(Clone)]
pub struct Handle {
    tx: SyncSender<Input>,
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
}

pub struct Daemon {
    dp: Dataplane,
    conns: Vec<Conn>,
    inputs: Receiver<Input>,
    handle: Handle,
    interface: String,
    observer: Option<Observer>,
    ike_port: u16,
    natt_port: u16,
}

/// How often idle timers are looked at.
const TICK: Duration = Duration::from_millis(250);

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
                    remote_addr: c.remote_addr,
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
            conns: Vec::new(),
            inputs: rx,
            handle,
            interface,
            observer,
            ike_port: cfg.ike_port,
            natt_port: cfg.natt_port,
        };
        let now = Instant::now();
        for spec in specs {
            d.add(spec, now)?;
        }
        d.flush(now);
        Ok(d)
    }

    fn add(&mut self, mut spec: ConnSpec, now: Instant) -> anyhow::Result<()> {
        if self.conns.iter().any(|c| c.cfg.name == spec.name) {
            anyhow::bail!("connection name {:?} is used twice", spec.name);
        }
        // Our data plane carries ESP only inside UDP (R-DP-5: UDP 500/4500 only).
        spec.ike.force_encap = true;
        spec.ike.nat_t_port = self.natt_port;
        NetMap::new(&spec.local_map)
            .map_err(|e| anyhow::anyhow!("connection {:?}: local_map: {e}", spec.name))?;
        for net in &spec.remote_subnets {
            self.dp
                .tun()
                .add_route(*net, None)
                .with_context(|| format!("cannot route {net} into {}", self.interface))?;
            if spec.start == Start::Trap {
                self.dp.add_trap(*net);
            }
        }
        let start = spec.start;
        self.conns.push(Conn {
            ep: Endpoint::new(spec.ike.clone()),
            local: SocketAddr::new(spec.local_addr, self.ike_port),
            remote: SocketAddr::new(spec.remote_addr, 500),
            cfg: spec,
            ike_sa: None,
            established: false,
            child_wanted: false,
            children: Vec::new(),
            session: None,
            past: Counts::default(),
            last_error: None,
        });
        if start == Start::Start {
            self.initiate(self.conns.len() - 1, now);
        }
        Ok(())
    }

    /// Delete a connection's SAs (telling the peer), then its traps and routes.
    fn remove(&mut self, name: &str, now: Instant) -> bool {
        let Some(i) = self.conns.iter().position(|c| c.cfg.name == name) else {
            return false;
        };
        if let Some(sa) = self.conns[i].ike_sa {
            self.conns[i].ep.delete_ike(now, sa);
        }
        self.flush(now);
        let spis: Vec<u32> = self.conns[i].children.iter().map(|c| c.local_spi).collect();
        for spi in spis {
            self.uninstall(i, spi, "connection removed");
        }
        self.session_down(i, "connection removed");
        let c = self.conns.remove(i);
        for net in &c.cfg.remote_subnets {
            self.dp.remove_outbound(net);
            if let Err(e) = self.dp.tun().remove_route(*net) {
                tracing::debug!(conn = %c.cfg.name, %net, error = %e, "route already gone");
            }
        }
        tracing::info!(conn = %c.cfg.name, "connection removed");
        true
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
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
                .inputs
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(input) => self.on_input(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Drain whatever else is already queued before doing timers.
            while let Ok(input) = self.inputs.try_recv() {
                self.on_input(input);
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
                if stop() {
                    return;
                }
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Dataplane(ev) => self.on_dataplane(ev),
            Input::Command(Command::Status(reply)) => {
                let _ = reply.try_send(self.status(Instant::now()));
            }
            Input::Command(Command::Down { conn, done }) => {
                let _ = done.try_send(self.down(conn.as_deref(), Instant::now()));
            }
            Input::Command(Command::Upsert(spec, done)) => {
                let now = Instant::now();
                self.remove(&spec.name, now);
                let r = self.add(*spec, now).map_err(|e| format!("{e:#}"));
                self.flush(now);
                let _ = done.try_send(r);
            }
            Input::Command(Command::Remove(name, done)) => {
                let _ = done.try_send(self.remove(&name, Instant::now()));
            }
            Input::Command(Command::Cut(session, done)) => {
                let now = Instant::now();
                let hit = self.conns.iter().position(|c| {
                    c.session
                        .as_ref()
                        .is_some_and(|id| id.to_string() == session)
                });
                if let Some(i) = hit {
                    tracing::info!(conn = %self.conns[i].cfg.name, %session, "operator cut: deleting IKE SA");
                    self.take_down(i, now, "cut by an operator");
                }
                let _ = done.try_send(hit.is_some());
            }
        }
    }

    /// Current counts of a connection's session: gone child SAs plus live ones.
    fn counts(c: &Conn) -> Counts {
        let mut n = c.past;
        for ch in &c.children {
            n.bytes_in += ch.inbound.stats.bytes();
            n.packets_in += ch.inbound.stats.packets();
            n.bytes_out += ch.outbound.stats.bytes();
            n.packets_out += ch.outbound.stats.packets();
        }
        n
    }

    fn session_down(&mut self, i: usize, reason: &str) {
        let c = &mut self.conns[i];
        if let (Some(obs), Some(session)) = (&self.observer, c.session.take()) {
            obs(SessionEvent::Down {
                conn: c.cfg.name.clone(),
                session,
                counts: Self::counts(c),
                reason: reason.to_string(),
            });
        }
        c.past = Counts::default();
    }

    fn down(&mut self, conn: Option<&str>, now: Instant) -> usize {
        if conn.is_some_and(|n| !self.conns.iter().any(|c| c.cfg.name == n)) {
            return usize::MAX;
        }
        let mut n = 0;
        for i in 0..self.conns.len() {
            if conn.is_some_and(|name| self.conns[i].cfg.name != name) {
                continue;
            }
            if self.conns[i].ike_sa.is_some() {
                tracing::info!(conn = %self.conns[i].cfg.name, "operator: deleting IKE SA");
                self.take_down(i, now, "taken down by an operator");
                n += 1;
            }
        }
        n
    }

    /// Delete a connection's IKE SA and take its child SAs out of the data plane at
    /// once, without waiting for the peer's answer: traffic stops now. The connection
    /// stays (traps re-armed), so a later packet may negotiate afresh.
    fn take_down(&mut self, i: usize, now: Instant, why: &str) {
        let c = &mut self.conns[i];
        c.child_wanted = false;
        let Some(sa) = c.ike_sa else {
            return;
        };
        c.ep.delete_ike(now, sa);
        let spis: Vec<u32> = c.children.iter().map(|ch| ch.local_spi).collect();
        for spi in spis {
            self.uninstall(i, spi, why);
        }
        self.session_down(i, why);
        let c = &mut self.conns[i];
        c.ike_sa = None;
        c.established = false;
        self.flush(now);
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

    /// Act on what the endpoints report, then send what they want sent, until both
    /// are quiet. Events go first so that a responder installs its child SA before
    /// the IKE_AUTH answer leaves: the initiator's first ESP packet then finds it.
    fn flush(&mut self, now: Instant) {
        loop {
            let mut busy = false;
            for i in 0..self.conns.len() {
                while let Some(ev) = self.conns[i].ep.poll_event() {
                    busy = true;
                    self.on_ike(i, ev, now);
                }
                while let Some(t) = self.conns[i].ep.poll_transmit() {
                    busy = true;
                    let r = if t.bytes == [0xff] && !t.nat_t {
                        self.dp.udp().send_keepalive(t.to)
                    } else {
                        self.dp.udp().send_ike(t.nat_t, t.to, &t.bytes)
                    };
                    if let Err(e) = r {
                        tracing::warn!(to = %t.to, error = %e, "cannot send IKE datagram");
                    }
                }
            }
            if !busy {
                return;
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
                c.session = c.ep.sa(sa).map(|s| {
                    let (spi_i, spi_r) = s.spis();
                    SessionId { spi_i, spi_r }
                });
                c.past = Counts::default();
                if let (Some(obs), Some(session)) = (&self.observer, c.session.clone()) {
                    obs(SessionEvent::Up {
                        conn: name.clone(),
                        session,
                    });
                }
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
                    let spis: Vec<u32> = c
                        .children
                        .iter()
                        .filter(|ch| ch.ike_sa == sa)
                        .map(|ch| ch.local_spi)
                        .collect();
                    for s in spis {
                        self.uninstall(i, s, "IKE SA down");
                    }
                    self.session_down(i, &format!("{reason:?}"));
                    let c = &mut self.conns[i];
                    c.ike_sa = None;
                    c.established = false;
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
        let local_nets: Vec<IpNet> = info.local_ts.iter().flat_map(|t| t.to_nets()).collect();
        let netmap = match NetMap::new(&c.cfg.local_map) {
            Ok(m) => m,
            Err(e) => {
                return tracing::error!(conn = %c.cfg.name, error = %e, "cannot map addresses")
            }
        };
        let filter = Arc::new(
            PacketFilter::new(local_nets, remote_nets.clone(), c.cfg.rules.clone())
                .with_netmap(netmap),
        );
        let inbound = self.dp.install_inbound_filtered(inbound, filter.clone());
        let protected = |n: &IpNet| {
            matches!(self.dp.tables().load().spd.get(n), Some(SpdAction::Protect(e))
                if c.children.iter().any(|ch| Arc::ptr_eq(e, &ch.outbound)))
        };
        let switch = info.switch_outbound || !remote_nets.iter().all(protected);
        let outbound = if switch {
            let mut nets = remote_nets.iter();
            let first = nets.next().expect("checked");
            let outbound =
                self.dp
                    .install_outbound_filtered(*first, outbound, peer, filter.clone());
            for n in nets {
                self.dp.protect(*n, &outbound);
            }
            outbound
        } else {
            Arc::new(OutboundEntry::with_filter(outbound, peer, Some(filter)))
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
        c.past.bytes_in += ch.inbound.stats.bytes();
        c.past.packets_in += ch.inbound.stats.packets();
        c.past.bytes_out += ch.outbound.stats.bytes();
        c.past.packets_out += ch.outbound.stats.packets();
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

    fn status(&self, now: Instant) -> Status {
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
                session: c.session.as_ref().map(|s| s.to_string()),
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
        Status {
            interface: self.interface.clone(),
            connections: conns,
            drops,
        }
    }
}

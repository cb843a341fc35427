//! The tunnel's decisions, without I/O: which child SAs go into the data plane and
//! when they leave it (make-before-break on rekey, idle teardown, operator cuts),
//! which traps are armed, and which IKE datagrams leave.
//!
//! Driven in the manner of quinn-proto's `Connection`: every call takes `now`, and
//! what the core wants done is drained with [`Core::poll_command`]. The data plane's
//! counters come in through a [`Meter`]. The daemon (`crate::daemon`) is the loop
//! around it; the tests drive two cores over an in-memory network with a fake clock.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dodvpn_dataplane::{FlowRule, NetMap, PacketFilter};
use dodvpn_esp::{InboundSa, OutboundSa};
use dodvpn_ike::{
    ChildSaInfo, Config, DownReason, Endpoint, Event, PeerSelector, RemoteAuth, SaId, State,
    Transmit,
};
use dodvpn_wire::{ExchangeType, Identification, IkeHeader};
use ipnet::IpNet;
use serde::Serialize;

use crate::config::Start;
use crate::telemetry::{HandshakeResult, RekeyKind, Role, Telemetry};

/// One connection as the core runs it, however it was configured (the TOML file of
/// `dodvpn tunnel`, or the centre's signed grants via the agent).
#[derive(Clone)]
pub struct ConnSpec {
    pub name: String,
    pub local_addr: IpAddr,
    /// The peer's fixed address, if it has one. Without it we cannot initiate, but a
    /// peer identified by certificate may still come to us from wherever it is.
    pub remote_addr: Option<IpAddr>,
    /// Other addresses the peer may be reached at (the ones it reported: local and
    /// public NAT-T addresses, issue 19): raced when there is no fixed address, or
    /// after dialling the fixed one failed.
    pub candidates: Vec<SocketAddr>,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
    }
}

/// What an embedding agent hears about sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    Up {
        conn: String,
        session: SessionId,
        /// The relay the session runs through, if it does (issue 19 item 3).
        relay: Option<SocketAddr>,
    },
    Down {
        conn: String,
        session: SessionId,
        counts: Counts,
        reason: String,
    },
    /// A packet waits for a peer without a fixed address: the centre should tell
    /// both sides at once, so the peer opens its NAT mapping towards us (hole
    /// punching, issue 19 item 2).
    NeedsIntroduction { conn: String },
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
    /// The relay this connection's traffic goes through, if any.
    pub relay: Option<String>,
    /// Traffic since the connection was first added (every session and child SA,
    /// kept across replacements of the same name): only ever grows.
    pub totals: Counts,
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

/// Traffic of one installed child SA, as the data plane counted it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub counts: Counts,
    /// The last packet either way, if any.
    pub last_activity: Option<Instant>,
}

/// The data plane's counters, read by the core (it never writes through this).
pub trait Meter {
    /// Usage of the child SA with this inbound SPI; zero if it is not installed (yet).
    fn usage(&self, local_spi: u32) -> Usage;
}

/// What the core wants done, in order. Data-plane commands that come before a
/// `Send` must be applied before it leaves: a responder's child SA is then in place
/// before its IKE_AUTH answer reaches the initiator, whose first ESP packet finds it.
#[derive(Debug)]
pub enum Command {
    /// Route this prefix into the TUN device.
    AddRoute(IpNet),
    RemoveRoute(IpNet),
    /// Point the prefix at a fresh trap: its packets wait and raise a trap hit.
    Trap(IpNet),
    /// Remove the prefix's outbound policy (SA or trap).
    Unprotect(IpNet),
    /// Install the inbound half of a child SA and keep its outbound half ready; no
    /// prefix uses the outbound half until a `Protect` names it.
    InstallChild {
        local_spi: u32,
        inbound: Box<InboundSa>,
        outbound: Box<OutboundSa>,
        /// Where its ESP goes (the peer's NAT-T address).
        peer: SocketAddr,
        /// Checked before sealing and after opening.
        filter: Arc<PacketFilter>,
    },
    /// Send the prefix's packets with the outbound half of this child SA; packets
    /// waiting in a trap on the prefix leave with it.
    Protect {
        net: IpNet,
        local_spi: u32,
    },
    /// Remove the child SA's inbound half and forget its outbound half.
    RemoveChild {
        local_spi: u32,
    },
    /// The child SA's ESP goes to `peer` from now on (its IKE SA moved).
    MoveChild {
        local_spi: u32,
        peer: SocketAddr,
    },
    /// An IKE datagram (or a NAT keepalive) for the network.
    Send(Transmit),
    /// A datagram sent unchanged from the NAT-T port: a NAT keepalive that opens
    /// our mapping towards a peer, or a relay binding.
    SendRaw {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    Session(SessionEvent),
}

/// `down` named a connection that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownConn(pub String);

/// What the data plane's SPD holds for one prefix, as the core set it (the core is
/// its only writer, so this is exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Trap,
    /// The outbound half of the child SA with this inbound SPI.
    Protect(u32),
}

/// A negotiated child SA as installed in the data plane.
struct Child {
    ike_sa: SaId,
    local_spi: u32,
    remote_spi: u32,
    remote_nets: Vec<IpNet>,
    up_since: Instant,
    /// A rekey created its successor; it only waits for its DELETE.
    replaced: bool,
    /// Whether the peer still answers what we send (see [`Core::stalls`]).
    silence: Silence,
}

/// Our side of a child SA sends and nothing comes back: the peer may be gone, or
/// its ESP may go to a NAT mapping of ours that moved (the NAT's own public address
/// changed; our host saw nothing). One liveness check from here, through the new
/// mapping, lets the peer follow (RFC 7296 §2.23) without waiting for DPD.
#[derive(Default)]
struct Silence {
    /// Packets in and out when a packet last came in.
    packets_in: u64,
    packets_out: u64,
    /// Since when we have been sending with nothing back.
    since: Option<Instant>,
    /// The liveness check for this silence has gone out.
    probed: bool,
}

/// How long we send with nothing back before a liveness check goes out.
pub const STALL_PROBE_AFTER: Duration = Duration::from_secs(2);

struct Conn {
    cfg: ConnSpec,
    ep: Endpoint,
    local: SocketAddr,
    /// Where we initiate to (the configured address), if anywhere.
    remote: Option<SocketAddr>,
    /// Dialling `remote` failed: race the candidates instead next time.
    fixed_failed: bool,
    /// Our IKE SAs racing to the candidates; the first answer wins, the rest go.
    racing: Vec<SaId>,
    /// The relay the centre allocated for this peer: dialled (or answered) there.
    relay: Option<SocketAddr>,
    /// Our binding at the relay, resent every [`REBIND_EVERY`] so that our NAT's
    /// mapping towards the relay (which the relay forwards to) stays the one it knows.
    relay_binding: Vec<u8>,
    next_rebind: Option<Instant>,
    /// Datagrams that open NAT mappings (keepalives, relay bindings), resent
    /// every [`OPEN_EVERY`] until `open_until`.
    opening: Vec<(SocketAddr, Vec<u8>)>,
    open_until: Option<Instant>,
    next_open: Option<Instant>,
    /// Where the peer's current IKE SA talks from (a NAT's mapping, say).
    seen: Option<SocketAddr>,
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
    /// Counts of the sessions already ended (with `past` and the live child SAs:
    /// the connection's totals).
    ended: Counts,
    /// IKE SAs still negotiating: when this end first sent or saw their IKE_SA_INIT.
    negotiating: HashMap<SaId, (Instant, Role)>,
    last_error: Option<String>,
}

/// IKE SA states before IKE_AUTH completes.
fn in_handshake(s: State) -> bool {
    matches!(s, State::InitSent | State::InitDone | State::AuthSent)
}

impl Conn {
    /// Note every IKE SA that has started negotiating since the last look.
    fn note_negotiations(&mut self, now: Instant) {
        for id in self.ep.sa_ids() {
            if let Some(sa) = self.ep.sa(id).filter(|sa| in_handshake(sa.state())) {
                let role = if sa.is_initiator() {
                    Role::Initiator
                } else {
                    Role::Responder
                };
                self.negotiating.entry(id).or_insert((now, role));
            }
        }
    }

    /// Forget negotiations that ended without an event of their own (a collision).
    fn prune_negotiations(&mut self) {
        let ep = &self.ep;
        self.negotiating
            .retain(|id, _| ep.sa(*id).is_some_and(|sa| in_handshake(sa.state())));
    }

    fn totals(&self, m: &dyn Meter) -> Counts {
        let mut n = self.ended;
        n += self.past;
        for ch in &self.children {
            n += m.usage(ch.local_spi).counts;
        }
        n
    }
}

impl Conn {
    /// Where to dial: the relay if there is one; else the fixed address (as before
    /// issue 19); else, or once that failed, every candidate at once.
    fn dial_targets(&self) -> Vec<SocketAddr> {
        if let Some(r) = self.relay {
            return vec![r];
        }
        match self.remote {
            Some(a) if !self.fixed_failed => vec![a],
            _ => self.cfg.candidates.clone(),
        }
    }

    fn add_opener(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if !self.opening.iter().any(|(t, b)| *t == to && *b == bytes) {
            self.opening.push((to, bytes));
        }
    }

    fn start_opening(&mut self, now: Instant) {
        self.open_until = Some(now + OPEN_FOR);
        self.next_open = Some(now);
    }

    /// The peer's address as an operator reads it: where its SA talks from, else
    /// the configured one, else "any" (identified by certificate).
    fn peer_text(&self) -> String {
        match (self.seen.filter(|_| self.established), self.remote) {
            (Some(a), _) => a.ip().to_string(),
            (None, Some(a)) => a.ip().to_string(),
            (None, None) => "any".into(),
        }
    }
}

/// An SA in one of these states has (or will have) our DELETE on the wire.
fn waits_for_delete(s: State) -> bool {
    matches!(s, State::Established | State::Rekeyed | State::Deleting)
}

/// An identity as an operator reads it: FQDN / e-mail as text, addresses as addresses,
/// anything else (DNs, key ids) as its type and hex.
fn id_text(id: &dodvpn_wire::Identification) -> String {
    use dodvpn_wire::IdType;
    match id.id_type {
        IdType::Fqdn | IdType::Rfc822Addr => String::from_utf8_lossy(&id.data).into_owned(),
        IdType::Ipv4Addr if id.data.len() == 4 => {
            std::net::Ipv4Addr::new(id.data[0], id.data[1], id.data[2], id.data[3]).to_string()
        }
        IdType::Ipv6Addr if id.data.len() == 16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&id.data);
            std::net::Ipv6Addr::from(b).to_string()
        }
        t => format!("{t:?}:{}", hex_bytes(&id.data)),
    }
}

/// Whether the peer of a connection is identified by its certificate and a named
/// identity: such a peer is accepted from any address (issue 19 item 5), the
/// identity it proves in IKE_AUTH telling which connection it is.
fn identified_by_certificate(cfg: &Config) -> bool {
    cfg.remote_id.is_some() && matches!(cfg.remote_auth, RemoteAuth::Cert(_))
}

/// A request that starts a new IKE SA (not an answer, no responder SPI yet).
fn is_new_ike_sa_init(data: &[u8]) -> bool {
    IkeHeader::parse(data).is_ok_and(|h| {
        h.exchange_type == ExchangeType::IkeSaInit && !h.flags.response() && h.spi_r == 0
    })
}

/// Where ESP goes: the peer's NAT-T port, from wherever its IKE now comes.
fn esp_peer(ike_remote: SocketAddr, udp_encap: bool) -> SocketAddr {
    if udp_encap {
        ike_remote
    } else {
        SocketAddr::new(ike_remote.ip(), 4500)
    }
}

/// The IKE SA an event is about.
fn event_sa(ev: &Event) -> SaId {
    match ev {
        Event::IkeSaUp { sa, .. }
        | Event::IkeSaDown { sa, .. }
        | Event::AuthFailed { sa, .. }
        | Event::ChildSaFailed { sa, .. }
        | Event::ChildSaDeleted { sa, .. }
        | Event::AddressesChanged { sa, .. } => *sa,
        Event::IkeSaRekeyed { new, .. } => *new,
        Event::ChildSaUp(info) => info.ike_sa,
    }
}

/// Connections whose peers are identified by certificate, by the identity they
/// expect; read by the lobby's selector while it answers IKE_AUTH.
type IdentityTable = Arc<RwLock<Vec<(Identification, Arc<Config>)>>>;

/// Answers IKE_SA_INIT from addresses no connection names, for connections whose
/// peer is identified by certificate. Its SAs move to their connection's endpoint
/// as soon as IKE_AUTH has proved who the peer is; until then they are half-open
/// here, under the endpoint's COOKIE defence (RFC 7296 §2.6) like any other.
struct Lobby {
    ep: Endpoint,
    /// Where the datagram being handled came from (for the refusal log line).
    last_from: Option<SocketAddr>,
    /// When each SA still negotiating here saw its IKE_SA_INIT: the handshake's
    /// duration travels with the SA to the connection its identity picks.
    started: HashMap<SaId, Instant>,
}

impl Lobby {
    fn handle(&mut self, now: Instant, remote: SocketAddr, local: SocketAddr, data: &[u8]) {
        self.last_from = Some(remote);
        self.ep.handle(now, remote, local, data);
        for id in self.ep.sa_ids() {
            if self.ep.sa(id).is_some_and(|sa| in_handshake(sa.state())) {
                self.started.entry(id).or_insert(now);
            }
        }
        let ep = &self.ep;
        self.started.retain(|id, _| ep.sa(*id).is_some());
    }
}

/// The peer label of a handshake that failed before any identity picked a connection.
const UNIDENTIFIED_PEER: &str = "(unidentified)";

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How long, and how often, datagrams that open NAT mappings are sent.
pub const OPEN_FOR: Duration = Duration::from_secs(4);
pub const OPEN_EVERY: Duration = Duration::from_millis(250);
/// How often a relayed connection binds again (below common NAT UDP timeouts of 30 s).
pub const REBIND_EVERY: Duration = Duration::from_secs(15);

/// How often idle timers are looked at.
pub const IDLE_CHECK: Duration = Duration::from_millis(250);

pub struct Core {
    conns: Vec<Conn>,
    spd: HashMap<IpNet, Policy>,
    commands: VecDeque<Command>,
    ike_port: u16,
    natt_port: u16,
    next_idle_check: Option<Instant>,
    unknown_peers: UnknownPeerLog,
    telemetry: Option<Arc<dyn Telemetry>>,
    /// Totals of removed connections by name, so one added again (its grants
    /// changed) continues them and a peer's counters never go backwards.
    retired: HashMap<String, Counts>,
    by_identity: IdentityTable,
    lobby: Option<Lobby>,
}

/// Rate limit for "IKE from an unknown address" lines: one line per address per
/// [`UnknownPeerLog::PER_ADDR`], at most [`UnknownPeerLog::MAX_ADDRS`] addresses
/// remembered (a flood of spoofed sources cannot grow the map or the log without bound).
#[derive(Debug, Default)]
struct UnknownPeerLog {
    last: HashMap<IpAddr, (Instant, u64)>,
}

impl UnknownPeerLog {
    const PER_ADDR: Duration = Duration::from_secs(60);
    const MAX_ADDRS: usize = 1024;

    /// Whether to log this datagram now; with the number suppressed since the last line.
    fn admit(&mut self, ip: IpAddr, now: Instant) -> Option<u64> {
        if let Some((at, n)) = self.last.get_mut(&ip) {
            if now.duration_since(*at) < Self::PER_ADDR {
                *n += 1;
                return None;
            }
            let suppressed = *n;
            *at = now;
            *n = 0;
            return Some(suppressed);
        }
        if self.last.len() >= Self::MAX_ADDRS {
            self.last
                .retain(|_, (at, _)| now.duration_since(*at) < Self::PER_ADDR);
            if self.last.len() >= Self::MAX_ADDRS {
                return None;
            }
        }
        self.last.insert(ip, (now, 0));
        Some(0)
    }
}

impl Core {
    /// A core whose IKE leaves from `ike_port` and whose ESP uses `natt_port`.
    pub fn new(ike_port: u16, natt_port: u16) -> Core {
        Core {
            conns: Vec::new(),
            spd: HashMap::new(),
            commands: VecDeque::new(),
            ike_port,
            natt_port,
            next_idle_check: None,
            unknown_peers: UnknownPeerLog::default(),
            telemetry: None,
            retired: HashMap::new(),
            by_identity: IdentityTable::default(),
            lobby: None,
        }
    }

    /// Report handshakes and rekeys to `t` from now on.
    pub fn set_telemetry(&mut self, t: Arc<dyn Telemetry>) {
        self.telemetry = Some(t);
    }

    /// The next thing to do, in order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`Core::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ike = self
            .conns
            .iter()
            .map(|c| &c.ep)
            .chain(self.lobby.as_ref().map(|l| &l.ep))
            .filter_map(|ep| ep.poll_timeout())
            .min();
        // Idle teardown and stall probes look at the child SAs' counters.
        let idle = self
            .conns
            .iter()
            .any(|c| !c.children.is_empty())
            .then_some(self.next_idle_check)
            .flatten();
        let open = self
            .conns
            .iter()
            .flat_map(|c| [c.next_open, c.next_rebind])
            .flatten()
            .min();
        [ike, idle, open].into_iter().flatten().min()
    }

    /// Add a connection: its routes and traps, and its IKE SA if it starts at once.
    pub fn add(&mut self, now: Instant, mut spec: ConnSpec, m: &dyn Meter) -> anyhow::Result<()> {
        if self.conns.iter().any(|c| c.cfg.name == spec.name) {
            anyhow::bail!("connection name {:?} is used twice", spec.name);
        }
        // Our data plane carries ESP only inside UDP (R-DP-5: UDP 500/4500 only).
        spec.ike.force_encap = true;
        spec.ike.nat_t_port = self.natt_port;
        NetMap::new(&spec.local_map)
            .map_err(|e| anyhow::anyhow!("connection {:?}: local_map: {e}", spec.name))?;
        for net in &spec.remote_subnets {
            self.commands.push_back(Command::AddRoute(*net));
            if spec.start == Start::Trap {
                self.set_trap(*net);
            }
        }
        let start = spec.start;
        let ended = self.retired.remove(&spec.name).unwrap_or_default();
        let ep = Endpoint::new(spec.ike.clone());
        if identified_by_certificate(&spec.ike) {
            self.admit_by_identity(&spec.ike, ep.shared_config());
        }
        self.conns.push(Conn {
            ep,
            local: SocketAddr::new(spec.local_addr, self.ike_port),
            remote: spec.remote_addr.map(|a| SocketAddr::new(a, 500)),
            fixed_failed: false,
            racing: Vec::new(),
            relay: None,
            relay_binding: Vec::new(),
            next_rebind: None,
            opening: Vec::new(),
            open_until: None,
            next_open: None,
            seen: None,
            cfg: spec,
            ike_sa: None,
            established: false,
            child_wanted: false,
            children: Vec::new(),
            session: None,
            past: Counts::default(),
            ended,
            negotiating: HashMap::new(),
            last_error: None,
        });
        if start == Start::Start {
            self.initiate(self.conns.len() - 1, now, m);
        }
        self.drain(now, m);
        Ok(())
    }

    /// Delete a connection's SAs (telling the peer), then its traps and routes; false
    /// if there is no such connection.
    pub fn remove(&mut self, now: Instant, name: &str, m: &dyn Meter) -> bool {
        let Some(i) = self.conns.iter().position(|c| c.cfg.name == name) else {
            return false;
        };
        if let Some(sa) = self.conns[i].ike_sa {
            self.conns[i].ep.delete_ike(now, sa);
        }
        self.drain(now, m);
        let spis: Vec<u32> = self.conns[i].children.iter().map(|c| c.local_spi).collect();
        for spi in spis {
            self.uninstall(i, spi, "connection removed", m);
        }
        self.session_down(i, "connection removed", m);
        let totals = self.conns[i].totals(m);
        let c = self.conns.remove(i);
        self.retired.insert(c.cfg.name.clone(), totals);
        let cfg = c.ep.shared_config();
        let mut table = self.by_identity.write().unwrap_or_else(|p| p.into_inner());
        table.retain(|(_, k)| !Arc::ptr_eq(k, &cfg));
        if table.is_empty() {
            // No connection left for peers from anywhere: unknown addresses are ignored again.
            self.lobby = None;
        }
        drop(table);
        for net in &c.cfg.remote_subnets {
            self.unprotect(*net);
            self.commands.push_back(Command::RemoveRoute(*net));
        }
        tracing::info!(conn = %c.cfg.name, "connection removed");
        true
    }

    /// An IKE datagram from the network (NAT-T marker already stripped).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: SocketAddr,
        data: &[u8],
        m: &dyn Meter,
    ) {
        if let Some(i) = self.conns.iter().position(|c| c.ep.owns(remote, data)) {
            // One of our SAs, wherever the peer now sends from (a NAT's mapping).
            let c = &mut self.conns[i];
            c.ep.handle(now, remote, local, data);
            c.note_negotiations(now);
            self.settle_race(i);
        } else if let Some(l) = self.lobby.as_mut().filter(|l| l.ep.owns(remote, data)) {
            l.handle(now, remote, local, data);
        } else if let Some(c) = self
            .conns
            .iter_mut()
            .find(|c| c.cfg.remote_addr == Some(remote.ip()))
        {
            // A new IKE SA from the address a connection names (static configuration).
            c.ep.handle(now, remote, local, data);
            c.note_negotiations(now);
        } else if let Some(l) = self.lobby.as_mut().filter(|_| is_new_ike_sa_init(data)) {
            if let Some(suppressed) = self.unknown_peers.admit(remote.ip(), now) {
                tracing::info!(
                    peer = %remote,
                    suppressed,
                    "IKE_SA_INIT from an address no connection names: answered; the certificate identity in IKE_AUTH decides (one line per address a minute) / 未登録アドレスからの IKE: 証明書の ID で判断"
                );
            }
            l.handle(now, remote, local, data);
        } else if let Some(suppressed) = self.unknown_peers.admit(remote.ip(), now) {
            tracing::info!(
                peer = %remote,
                len = data.len(),
                suppressed,
                "IKE from an address no connection names: ignored (one line per address a minute) / 未設定のアドレスからの IKE を無視"
            );
        }
        self.drain(now, m);
    }

    /// A packet for `first_packet_dst` hit a trap: negotiate its connection.
    pub fn handle_trap_hit(
        &mut self,
        now: Instant,
        selector: IpNet,
        first_packet_dst: IpAddr,
        m: &dyn Meter,
    ) {
        if let Some(i) = self.conns.iter().position(|c| {
            c.cfg
                .remote_subnets
                .iter()
                .any(|n| n.contains(&first_packet_dst))
        }) {
            tracing::info!(conn = %self.conns[i].cfg.name, %selector, "first packet for {first_packet_dst}: negotiating");
            self.initiate(i, now, m);
        }
        self.drain(now, m);
    }

    /// Time passed: IKE timers that are due, and idle child SAs.
    pub fn handle_timeout(&mut self, now: Instant, m: &dyn Meter) {
        self.pump_openers(now);
        let lobby = self.lobby.as_mut().map(|l| &mut l.ep);
        for ep in self.conns.iter_mut().map(|c| &mut c.ep).chain(lobby) {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
        self.drain(now, m);
        for c in &mut self.conns {
            c.prune_negotiations();
        }
        if self.next_idle_check.is_none_or(|t| t <= now) {
            self.next_idle_check = Some(now + IDLE_CHECK);
            self.idle(now, m);
            self.stalls(now, m);
            self.drain(now, m);
        }
    }

    /// Take the named connection (or every one) down: returns how many IKE SAs were
    /// deleted. Traps stay, so the next packet brings the tunnel back.
    pub fn down(
        &mut self,
        now: Instant,
        conn: Option<&str>,
        m: &dyn Meter,
    ) -> Result<usize, UnknownConn> {
        if let Some(name) = conn.filter(|n| !self.conns.iter().any(|c| c.cfg.name == *n)) {
            return Err(UnknownConn(name.to_string()));
        }
        let mut n = 0;
        for i in 0..self.conns.len() {
            if conn.is_some_and(|name| self.conns[i].cfg.name != name) {
                continue;
            }
            if self.conns[i].ike_sa.is_some() {
                tracing::info!(conn = %self.conns[i].cfg.name, "operator: deleting IKE SA");
                self.take_down(i, now, "taken down by an operator", m);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Before exit: delete every IKE SA of every connection, telling each peer
    /// (RFC 7296 §1.4.1), and take the child SAs out of the data plane. Returns how
    /// many IKE SAs are being deleted; [`Core::ike_sas_left`] says when the peers have
    /// all answered.
    pub fn shutdown(&mut self, now: Instant, m: &dyn Meter) -> usize {
        let mut n = 0;
        for i in 0..self.conns.len() {
            if self.conns[i].ike_sa.is_some() {
                self.take_down(i, now, "shutting down", m);
            }
            // Also SAs the connection no longer names (one a rekey replaced that is
            // still waiting for its DELETE, a responder SA of a collision).
            let c = &mut self.conns[i];
            for id in c.ep.sa_ids() {
                let state = c.ep.sa(id).map(|s| s.state());
                if matches!(state, Some(State::Established | State::Rekeyed)) {
                    c.ep.delete_ike(now, id);
                }
            }
            n += self.conns[i]
                .ep
                .sa_ids()
                .iter()
                .filter(|id| {
                    self.conns[i]
                        .ep
                        .sa(**id)
                        .is_some_and(|s| waits_for_delete(s.state()))
                })
                .count();
        }
        self.drain(now, m);
        n
    }

    /// Whether some IKE SA is still up or waiting for the peer to answer our
    /// DELETE; after [`Core::shutdown`], whether there is still an answer to wait for.
    pub fn ike_sas_left(&self) -> bool {
        self.conns.iter().any(|c| {
            c.ep.sa_ids()
                .iter()
                .any(|id| c.ep.sa(*id).is_some_and(|s| waits_for_delete(s.state())))
        })
    }

    /// Delete the IKE SA with this session id; false if no such session is up here.
    pub fn cut(&mut self, now: Instant, session: &str, m: &dyn Meter) -> bool {
        let hit = self.conns.iter().position(|c| {
            c.session
                .as_ref()
                .is_some_and(|id| id.to_string() == session)
        });
        if let Some(i) = hit {
            tracing::info!(conn = %self.conns[i].cfg.name, %session, "operator cut: deleting IKE SA");
            self.take_down(i, now, "cut by an operator", m);
        }
        hit.is_some()
    }

    /// The connections, their SAs and counters as of `now`.
    pub fn status(&self, now: Instant, m: &dyn Meter) -> Vec<ConnStatus> {
        self.conns
            .iter()
            .map(|c| ConnStatus {
                name: c.cfg.name.clone(),
                remote: c.peer_text(),
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
                        let u = m.usage(ch.local_spi);
                        ChildStatus {
                            spi_in: format!("{:08x}", ch.local_spi),
                            spi_out: format!("{:08x}", ch.remote_spi),
                            remote: ch.remote_nets.iter().map(|n| n.to_string()).collect(),
                            bytes_in: u.counts.bytes_in,
                            packets_in: u.counts.packets_in,
                            bytes_out: u.counts.bytes_out,
                            packets_out: u.counts.packets_out,
                            age_secs: now.saturating_duration_since(ch.up_since).as_secs(),
                            idle_secs: now
                                .saturating_duration_since(u.last_activity.unwrap_or(ch.up_since))
                                .as_secs(),
                        }
                    })
                    .collect(),
                last_error: c.last_error.clone(),
                relay: c.relay.map(|r| r.to_string()),
                totals: c.totals(m),
            })
            .collect()
    }

    fn set_trap(&mut self, net: IpNet) {
        self.spd.insert(net, Policy::Trap);
        self.commands.push_back(Command::Trap(net));
    }

    fn protect(&mut self, net: IpNet, local_spi: u32) {
        self.spd.insert(net, Policy::Protect(local_spi));
        self.commands.push_back(Command::Protect { net, local_spi });
    }

    fn unprotect(&mut self, net: IpNet) {
        self.spd.remove(&net);
        self.commands.push_back(Command::Unprotect(net));
    }

    fn initiate(&mut self, i: usize, now: Instant, m: &dyn Meter) {
        let c = &self.conns[i];
        // An IKE SA on its way out (idle delete, peer delete) cannot carry a new child:
        // start afresh rather than wait for it to finish going.
        let leaving = c.ike_sa.and_then(|id| c.ep.sa(id)).is_none_or(|sa| {
            matches!(sa.state(), State::Deleting | State::Closed | State::Rekeyed)
        });
        if leaving && c.ike_sa.is_some() {
            // Its session ends here: the old SA's own end is no longer ours to report.
            self.session_down(i, "replaced by a new IKE SA", m);
        }
        let c = &mut self.conns[i];
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
        if c.remote.is_none() && c.relay.is_none() {
            // Its NAT may not let us in yet: the centre tells it to open a mapping.
            self.commands
                .push_back(Command::Session(SessionEvent::NeedsIntroduction {
                    conn: c.cfg.name.clone(),
                }));
        }
        if c.relay.is_some() {
            // Our mapping towards the relay may have changed since we last bound.
            c.next_rebind = Some(now);
        }
        let targets = c.dial_targets();
        if targets.is_empty() {
            // No address to dial: the peer (identified by certificate) comes to us.
            tracing::info!(conn = %c.cfg.name, "the peer has no known address: not initiating; it may connect to us / 相手のアドレス不明: こちらから接続しません");
            c.last_error = Some("the peer has no known address: waiting for it to connect".into());
            return;
        }
        c.racing.clear();
        for remote in targets {
            match c.ep.connect(now, c.local, remote) {
                Ok(sa) => {
                    tracing::info!(conn = %c.cfg.name, "initiating IKE to {}", remote);
                    c.ike_sa.get_or_insert(sa);
                    c.racing.push(sa);
                    c.established = false;
                }
                Err(e) => c.last_error = Some(format!("cannot initiate: {e}")),
            }
        }
        c.note_negotiations(now);
        // A due relay binding leaves before the IKE_SA_INIT it must precede.
        self.pump_openers(now);
    }

    /// Each connection with an established IKE SA: its name, the peer's current
    /// address and the local address we last knew towards it. The daemon checks
    /// the host's route to each peer against the last and reports a change with
    /// [`Core::local_address_changed`].
    pub fn paths(&self) -> Vec<(String, SocketAddr, IpAddr)> {
        self.conns
            .iter()
            .filter(|c| c.established)
            .filter_map(|c| {
                let sa = c.ep.sa(c.ike_sa?)?;
                Some((c.cfg.name.clone(), sa.addresses().1, c.local.ip()))
            })
            .collect()
    }

    /// The host now reaches the peer of `name` from `local` (a new DHCP lease, a
    /// failover line). Where MOBIKE was negotiated and we started the SA, it moves
    /// (RFC 4555): same session, its child SAs follow. Otherwise, a peer without
    /// MOBIKE (a standard router, say), the session ends and the next packet
    /// starts a new one from the new address. False if there is no such
    /// connection or nothing changed.
    pub fn local_address_changed(
        &mut self,
        now: Instant,
        name: &str,
        local: IpAddr,
        m: &dyn Meter,
    ) -> bool {
        let Some(i) = self.conns.iter().position(|c| c.cfg.name == name) else {
            return false;
        };
        let c = &mut self.conns[i];
        let old = c.local.ip();
        if old == local {
            return false;
        }
        c.local.set_ip(local);
        c.cfg.local_addr = local;
        if old.is_unspecified() {
            // We answered from whatever address the host chose: nothing to move.
            return true;
        }
        let Some(sa) = c.ike_sa.filter(|_| c.established) else {
            return true;
        };
        let natt = self.natt_port;
        if c.ep.update_addresses(now, sa, SocketAddr::new(local, natt)) {
            tracing::info!(conn = %name, from = %old, to = %local,
                "our address changed: moving the IKE SA with MOBIKE / 自アドレス変更: MOBIKE で IKE SA を移動");
            if c.relay.is_some() {
                // The relay knows us by our mapping: bind again from the new address.
                c.next_rebind = Some(now);
            }
        } else {
            tracing::info!(conn = %name, from = %old, to = %local,
                "our address changed and this SA cannot move (no MOBIKE, or the peer started it): reconnecting on demand / 自アドレス変更: MOBIKE なし、次の通信で再接続");
            self.take_down(i, now, "local address changed", m);
        }
        self.drain(now, m);
        true
    }

    /// The peer's reported addresses changed: dial them from now on; the SAs
    /// stay (they follow the peer wherever it sends from). False if no such connection.
    pub fn set_candidates(&mut self, name: &str, candidates: Vec<SocketAddr>) -> bool {
        let Some(c) = self.conns.iter_mut().find(|c| c.cfg.name == name) else {
            return false;
        };
        c.cfg.candidates = candidates;
        true
    }

    /// Open our NAT mapping towards `addrs` (the peer's candidates, told by the
    /// centre when the peer wants to reach us): NAT keepalives (RFC 3948 §2.3) from
    /// our NAT-T port for [`OPEN_FOR`], so the peer's IKE then gets in. False if
    /// there is no such connection.
    pub fn open_mappings(&mut self, now: Instant, name: &str, addrs: &[SocketAddr]) -> bool {
        let Some(c) = self.conns.iter_mut().find(|c| c.cfg.name == name) else {
            return false;
        };
        for a in addrs {
            c.add_opener(*a, dodvpn_wire::esp::NAT_KEEPALIVE.to_vec());
        }
        tracing::info!(conn = %name, peers = ?addrs, "opening our NAT mapping towards the peer / NAT の穴あけ");
        c.start_opening(now);
        self.pump_openers(now);
        true
    }

    /// The centre has introduced us to this connection's peer, which is opening its
    /// NAT towards us: our IKE_SA_INITs still waiting for an answer leave again now
    /// instead of at their next retransmission (0.5 s after the first). How many
    /// left; 0 if there is no such connection or nothing waits.
    pub fn introduced(&mut self, now: Instant, name: &str, m: &dyn Meter) -> usize {
        let Some(c) = self.conns.iter_mut().find(|c| c.cfg.name == name) else {
            return 0;
        };
        let racing = c.racing.clone();
        let sent = racing
            .into_iter()
            .filter(|sa| c.ep.resend_init(now, *sa))
            .count();
        self.drain(now, m);
        sent
    }

    /// Go through a relay to this peer (issue 19 item 3): `binding` (from the
    /// centre) is sent to the relay until [`OPEN_FOR`] has passed, and, if
    /// `initiate`, our racing IKE SAs give way to one dialled at the relay. The
    /// relay forwards our datagrams as they are; it holds no key.
    pub fn use_relay(
        &mut self,
        now: Instant,
        name: &str,
        relay: SocketAddr,
        binding: Vec<u8>,
        initiate: bool,
        m: &dyn Meter,
    ) -> bool {
        let Some(i) = self.conns.iter().position(|c| c.cfg.name == name) else {
            return false;
        };
        let c = &mut self.conns[i];
        c.relay = Some(relay);
        c.relay_binding = binding.clone();
        c.next_rebind = Some(now + REBIND_EVERY);
        c.add_opener(relay, binding);
        c.start_opening(now);
        tracing::info!(conn = %name, %relay, initiate, "going through the relay / リレー経由");
        self.pump_openers(now);
        let c = &mut self.conns[i];
        if initiate && !c.established {
            for sa in std::mem::take(&mut c.racing) {
                c.ep.take_sa(sa);
            }
            c.ike_sa = None;
            c.prune_negotiations();
            self.initiate(i, now, m);
        }
        self.drain(now, m);
        true
    }

    /// Send the opening datagrams that are due.
    fn pump_openers(&mut self, now: Instant) {
        for c in &mut self.conns {
            if let (Some(relay), Some(at)) = (c.relay, c.next_rebind) {
                if at <= now {
                    self.commands.push_back(Command::SendRaw {
                        to: relay,
                        bytes: c.relay_binding.clone(),
                    });
                    c.next_rebind = Some(now + REBIND_EVERY);
                }
            }
            let Some(at) = c.next_open.filter(|t| *t <= now) else {
                continue;
            };
            let _ = at;
            for (to, bytes) in &c.opening {
                self.commands.push_back(Command::SendRaw {
                    to: *to,
                    bytes: bytes.clone(),
                });
            }
            if c.open_until.is_some_and(|u| now + OPEN_EVERY <= u) {
                c.next_open = Some(now + OPEN_EVERY);
            } else {
                c.next_open = None;
                c.open_until = None;
                c.opening.clear();
            }
        }
    }

    /// The first of our racing IKE SAs the peer answered wins; the others are
    /// dropped (they never got an answer, so nobody holds state for them).
    fn settle_race(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.racing.len() < 2 {
            return;
        }
        let winner = c
            .racing
            .iter()
            .copied()
            .find(|id| c.ep.sa(*id).is_some_and(|sa| sa.state() != State::InitSent));
        if let Some(w) = winner {
            for sa in c.racing.iter().copied().filter(|id| *id != w) {
                c.ep.take_sa(sa);
            }
            let to = c.ep.sa(w).map(|sa| sa.addresses().1);
            tracing::info!(conn = %c.cfg.name, peer = ?to, "the peer answered at this address / この宛先で応答");
            c.racing = vec![w];
            c.ike_sa = Some(w);
            c.prune_negotiations();
        }
    }

    /// One of our racing IKE SAs failed before the peer answered it. True if the
    /// connection goes on with another (a racing SA, or the candidates after the
    /// fixed address failed).
    fn race_lost(&mut self, i: usize, sa: SaId, now: Instant, m: &dyn Meter) -> bool {
        let c = &mut self.conns[i];
        if c.established || !c.racing.contains(&sa) {
            return false;
        }
        c.racing.retain(|id| *id != sa);
        if let Some(next) = c.racing.first().copied() {
            if c.ike_sa == Some(sa) {
                c.ike_sa = Some(next);
            }
            return true;
        }
        let dialled_fixed = c.relay.is_none() && c.remote.is_some() && !c.fixed_failed;
        if dialled_fixed && !c.cfg.candidates.is_empty() {
            tracing::info!(conn = %c.cfg.name, "the fixed address did not answer: trying the reported ones / 固定アドレス応答なし: 候補を試します");
            c.fixed_failed = true;
            c.ike_sa = None;
            self.initiate(i, now, m);
            return true;
        }
        false
    }

    /// Act on what the endpoints report, then queue what they want sent, until all
    /// are quiet. Events go first, so their data-plane commands precede the datagrams.
    fn drain(&mut self, now: Instant, m: &dyn Meter) {
        loop {
            let mut busy = false;
            for i in 0..self.conns.len() {
                while let Some(ev) = self.conns[i].ep.poll_event() {
                    busy = true;
                    self.on_ike(i, ev, now, m);
                }
                while let Some(t) = self.conns[i].ep.poll_transmit() {
                    busy = true;
                    self.commands.push_back(Command::Send(t));
                }
            }
            while let Some(ev) = self.lobby.as_mut().and_then(|l| l.ep.poll_event()) {
                busy = true;
                self.on_lobby(ev, now, m);
            }
            while let Some(t) = self.lobby.as_mut().and_then(|l| l.ep.poll_transmit()) {
                busy = true;
                self.commands.push_back(Command::Send(t));
            }
            if !busy {
                return;
            }
        }
    }

    /// Accept this connection's peer from any address: its identity goes into the
    /// table the lobby selects by, and the lobby opens with the first such connection.
    fn admit_by_identity(&mut self, ike: &Config, shared: Arc<Config>) {
        let Some(id) = ike.remote_id.clone() else {
            return;
        };
        self.by_identity
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, shared));
        if self.lobby.is_none() {
            // Proposals, our identity and CERTREQ of IKE_SA_INIT come from this
            // connection; IKE_AUTH continues with the peer's own connection.
            let table = self.by_identity.clone();
            let mut cfg = ike.clone();
            cfg.remote_id = None;
            cfg.select_by_identity = Some(PeerSelector(Arc::new(move |idi| {
                let t = table.read().unwrap_or_else(|p| p.into_inner());
                t.iter()
                    .find(|(want, _)| dodvpn_ike::auth::id_matches(want, idi))
                    .map(|(_, c)| c.clone())
            })));
            self.lobby = Some(Lobby {
                ep: Endpoint::new(cfg),
                last_from: None,
                started: HashMap::new(),
            });
        }
    }

    /// An event of the lobby: an SA whose peer proved its identity moves to that
    /// peer's connection (and is handled there from now on); a failed one is logged.
    fn on_lobby(&mut self, ev: Event, now: Instant, m: &dyn Meter) {
        let sa = event_sa(&ev);
        if let Some(i) = self.conns.iter().position(|c| c.ep.sa(sa).is_some()) {
            return self.on_ike(i, ev, now, m);
        }
        let Some(lobby) = self.lobby.as_mut() else {
            return;
        };
        let from = lobby.last_from;
        match ev {
            Event::IkeSaUp {
                ref peer_id,
                remote,
                ..
            } => {
                let target = self.conns.iter().position(|c| {
                    identified_by_certificate(&c.cfg.ike)
                        && c.cfg
                            .ike
                            .remote_id
                            .as_ref()
                            .is_some_and(|want| dodvpn_ike::auth::id_matches(want, peer_id))
                });
                let (Some(i), Some(moved)) = (target, lobby.ep.take_sa(sa)) else {
                    tracing::warn!(peer = %remote, peer_id = %id_text(peer_id), "no connection for this identity any more: deleting its IKE SA");
                    lobby.ep.delete_ike(now, sa);
                    return;
                };
                tracing::info!(conn = %self.conns[i].cfg.name, peer = %remote, peer_id = %id_text(peer_id),
                    "peer identified by its certificate, not its address / アドレスではなく証明書で相手を識別");
                let t0 = lobby.started.remove(&sa).unwrap_or(now);
                self.conns[i].ep.adopt(moved);
                self.conns[i].negotiating.insert(sa, (t0, Role::Responder));
                self.on_ike(i, ev, now, m);
            }
            Event::AuthFailed { reason, .. } => {
                let t0 = lobby.started.remove(&sa).unwrap_or(now);
                self.tell_handshake(
                    UNIDENTIFIED_PEER,
                    Role::Responder,
                    HandshakeResult::AuthFailed,
                    now - t0,
                );
                let ip = from.map_or(IpAddr::from([0u8, 0, 0, 0]), |a| a.ip());
                if let Some(suppressed) = self.unknown_peers.admit(ip, now) {
                    tracing::warn!(peer = ?from, %reason, suppressed,
                        "IKE from an address no connection names: authentication failed, dropped / 認証失敗のため破棄");
                }
            }
            other => tracing::debug!(event = ?other, "lobby"),
        }
    }

    fn on_ike(&mut self, i: usize, ev: Event, now: Instant, m: &dyn Meter) {
        let name = self.conns[i].cfg.name.clone();
        match ev {
            Event::IkeSaUp {
                sa,
                remote,
                nat_t,
                peer_id,
                ..
            } => {
                let (spis, suite, initiator) =
                    self.conns[i]
                        .ep
                        .sa(sa)
                        .map_or(((0, 0), String::new(), false), |s| {
                            (
                                s.spis(),
                                s.suite().map(|x| x.name()).unwrap_or_default(),
                                s.is_initiator(),
                            )
                        });
                tracing::info!(
                    conn = %name,
                    peer = %remote,
                    peer_id = %id_text(&peer_id),
                    spi_i = %format!("{:016x}", spis.0),
                    spi_r = %format!("{:016x}", spis.1),
                    %suite,
                    nat_t,
                    initiator,
                    "IKE SA established / IKE SA 確立"
                );
                if let Some((t0, role)) = self.conns[i].negotiating.remove(&sa) {
                    self.tell_handshake(&name, role, HandshakeResult::Established, now - t0);
                }
                let c = &mut self.conns[i];
                c.ike_sa = Some(sa);
                c.seen = Some(remote);
                c.established = true;
                c.last_error = None;
                c.session = c.ep.sa(sa).map(|s| {
                    let (spi_i, spi_r) = s.spis();
                    SessionId { spi_i, spi_r }
                });
                let past = std::mem::take(&mut c.past);
                c.ended += past;
                c.racing.clear();
                let relay = c.relay.filter(|r| *r == remote);
                if let Some(session) = c.session.clone() {
                    self.commands.push_back(Command::Session(SessionEvent::Up {
                        conn: name.clone(),
                        session,
                        relay,
                    }));
                }
                let c = &mut self.conns[i];
                if c.child_wanted && c.children.is_empty() {
                    c.child_wanted = false;
                    c.ep.create_child(now, sa);
                }
            }
            Event::IkeSaRekeyed { old, new } => {
                let (spis, suite) = self.conns[i]
                    .ep
                    .sa(new)
                    .map_or(((0, 0), String::new()), |s| {
                        (s.spis(), s.suite().map(|x| x.name()).unwrap_or_default())
                    });
                let peer = self.conns[i].peer_text();
                tracing::info!(
                    conn = %name,
                    %peer,
                    old = %format!("{old:016x}"),
                    new = %format!("{new:016x}"),
                    spi_i = %format!("{:016x}", spis.0),
                    spi_r = %format!("{:016x}", spis.1),
                    %suite,
                    reason = "rekey",
                    "IKE SA rekeyed / IKE SA 鍵更新"
                );
                if let Some(t) = &self.telemetry {
                    t.rekey(&name, RekeyKind::Ike);
                }
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
            Event::AddressesChanged {
                sa,
                local,
                remote,
                nat_t,
            } => {
                let c = &mut self.conns[i];
                if c.ike_sa != Some(sa) {
                    return;
                }
                let session = c
                    .session
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                tracing::info!(conn = %name, %session, %local, peer = %remote, nat_t,
                    "IKE SA moved to new addresses (MOBIKE), session kept / IKE SA のアドレスを移動 (MOBIKE)、セッション継続");
                c.seen = Some(remote);
                let peer = esp_peer(remote, nat_t);
                for ch in c.children.iter().filter(|ch| ch.ike_sa == sa) {
                    self.commands.push_back(Command::MoveChild {
                        local_spi: ch.local_spi,
                        peer,
                    });
                }
            }
            Event::ChildSaUp(info) => {
                if let (Some(t), Some(_)) = (&self.telemetry, info.rekey_of) {
                    t.rekey(&name, RekeyKind::Child);
                }
                self.install(i, info, now)
            }
            Event::ChildSaDeleted { local_spi, .. } => self.uninstall(i, local_spi, "deleted", m),
            Event::ChildSaFailed { reason, .. } => {
                let peer = self.conns[i].peer_text();
                tracing::warn!(conn = %name, %peer, %reason, "child SA refused / 子 SA を拒否");
                self.conns[i].last_error = Some(reason);
            }
            Event::AuthFailed { sa, reason } => {
                if let Some((t0, role)) = self.conns[i].negotiating.remove(&sa) {
                    self.tell_handshake(&name, role, HandshakeResult::AuthFailed, now - t0);
                }
                let peer = self.conns[i].peer_text();
                tracing::warn!(conn = %name, %peer, %reason, "authentication failed / 認証失敗");
                self.conns[i].last_error = Some(format!("authentication failed: {reason}"));
            }
            Event::IkeSaDown { sa, reason } => {
                if let Some((t0, role)) = self.conns[i].negotiating.remove(&sa) {
                    self.tell_handshake(&name, role, HandshakeResult::Failed, now - t0);
                }
                if self.race_lost(i, sa, now, m) {
                    return;
                }
                let c = &mut self.conns[i];
                if c.ike_sa == Some(sa) {
                    let (spis, suite) = c.ep.sa(sa).map_or(((0, 0), String::new()), |s| {
                        (s.spis(), s.suite().map(|x| x.name()).unwrap_or_default())
                    });
                    tracing::info!(
                        conn = %name,
                        peer = %c.peer_text(),
                        spi_i = %format!("{:016x}", spis.0),
                        spi_r = %format!("{:016x}", spis.1),
                        %suite,
                        reason = ?reason,
                        "IKE SA down / IKE SA 切断"
                    );
                    let spis: Vec<u32> = c
                        .children
                        .iter()
                        .filter(|ch| ch.ike_sa == sa)
                        .map(|ch| ch.local_spi)
                        .collect();
                    for s in spis {
                        self.uninstall(i, s, "IKE SA down", m);
                    }
                    self.session_down(i, &format!("{reason:?}"), m);
                    let c = &mut self.conns[i];
                    c.ike_sa = None;
                    c.established = false;
                    if !matches!(reason, DownReason::LocalDelete | DownReason::Rekeyed) {
                        c.last_error = Some(format!("IKE SA down: {reason:?}"));
                    }
                    if c.cfg.start == Start::Start {
                        self.initiate(i, now, m);
                    }
                }
            }
        }
    }

    fn install(&mut self, i: usize, info: ChildSaInfo, now: Instant) {
        let c = &self.conns[i];
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
        let peer = esp_peer(info.remote_addr, info.udp_encap);
        if remote_nets.is_empty() {
            return tracing::warn!(conn = %c.cfg.name, "child SA without remote selectors");
        }
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
        // Make-before-break (RFC 7296 §2.8): the new inbound SA first, the old one stays
        // until it is deleted. Outbound moves to the new SA at once when we started the
        // rekey (the peer already has its inbound SA); when the peer did, only once the
        // old SA is deleted (see `uninstall`), unless nothing protects the nets yet.
        let protected = |n: &IpNet| {
            matches!(self.spd.get(n), Some(Policy::Protect(s))
                if c.children.iter().any(|ch| ch.local_spi == *s))
        };
        let switch = info.switch_outbound || !remote_nets.iter().all(protected);
        self.commands.push_back(Command::InstallChild {
            local_spi: info.local_spi,
            inbound: Box::new(inbound),
            outbound: Box::new(outbound),
            peer,
            filter,
        });
        if switch {
            for n in &remote_nets {
                self.protect(*n, info.local_spi);
            }
        }
        let c = &mut self.conns[i];
        if let Some(old) = info.rekey_of {
            for ch in c.children.iter_mut().filter(|ch| ch.local_spi == old) {
                ch.replaced = true;
            }
        }
        tracing::info!(conn = %c.cfg.name, peer = %info.remote_addr, spi_in = %format!("{:08x}", info.local_spi), spi_out = %format!("{:08x}", info.remote_spi),
            suite = %info.aead, esn = info.esn, rekey_of = ?info.rekey_of.map(|s| format!("{s:08x}")), outbound = switch,
            reason = if info.rekey_of.is_some() { "rekey" } else { "new" },
            "child SA installed for {:?} / 子 SA 確立", remote_nets);
        c.children.push(Child {
            ike_sa: info.ike_sa,
            local_spi: info.local_spi,
            remote_spi: info.remote_spi,
            remote_nets,
            up_since: now,
            replaced: false,
            silence: Silence::default(),
        });
        // Its counters are looked at from now on (idle teardown, stall probes).
        self.next_idle_check.get_or_insert(now + IDLE_CHECK);
    }

    fn uninstall(&mut self, i: usize, local_spi: u32, why: &str, m: &dyn Meter) {
        let c = &mut self.conns[i];
        let Some(pos) = c.children.iter().position(|ch| ch.local_spi == local_spi) else {
            return;
        };
        let ch = c.children.remove(pos);
        c.past += m.usage(ch.local_spi).counts;
        self.commands.push_back(Command::RemoveChild {
            local_spi: ch.local_spi,
        });
        for n in &ch.remote_nets {
            // Only touch the policy if it still points at this SA (a rekey moved it otherwise).
            if self.spd.get(n) != Some(&Policy::Protect(ch.local_spi)) {
                continue;
            }
            // A successor (the peer's rekey) takes over: the newest SA for this net that
            // is not itself replaced.
            let c = &self.conns[i];
            let next = c
                .children
                .iter()
                .filter(|o| o.remote_nets.contains(n))
                .max_by_key(|o| (!o.replaced, o.up_since))
                .map(|o| (o.local_spi, o.remote_spi));
            if let Some((spi_in, spi_out)) = next {
                tracing::info!(conn = %c.cfg.name, spi_out = %format!("{spi_out:08x}"), "outbound for {n} moved to the successor SA");
                self.protect(*n, spi_in);
            } else {
                let trap = c.cfg.start == Start::Trap;
                self.unprotect(*n);
                if trap {
                    self.set_trap(*n);
                }
            }
        }
        tracing::info!(conn = %self.conns[i].cfg.name, peer = %self.conns[i].peer_text(), spi_in = %format!("{:08x}", ch.local_spi),
            spi_out = %format!("{:08x}", ch.remote_spi), reason = why, "child SA removed ({why}) / 子 SA 削除");
    }

    /// Current counts of a connection's session: gone child SAs plus live ones.
    fn counts(c: &Conn, m: &dyn Meter) -> Counts {
        let mut n = c.past;
        for ch in &c.children {
            n += m.usage(ch.local_spi).counts;
        }
        n
    }

    fn tell_handshake(&self, conn: &str, role: Role, result: HandshakeResult, took: Duration) {
        if let Some(t) = &self.telemetry {
            t.handshake(conn, role, result, took);
        }
    }

    fn session_down(&mut self, i: usize, reason: &str, m: &dyn Meter) {
        let c = &mut self.conns[i];
        if let Some(session) = c.session.take() {
            let counts = Self::counts(c, m);
            self.commands
                .push_back(Command::Session(SessionEvent::Down {
                    conn: c.cfg.name.clone(),
                    session,
                    counts,
                    reason: reason.to_string(),
                }));
        }
        let c = &mut self.conns[i];
        let past = std::mem::take(&mut c.past);
        c.ended += past;
    }

    /// Delete a connection's IKE SA and take its child SAs out of the data plane at
    /// once, without waiting for the peer's answer: traffic stops now. The connection
    /// stays (traps re-armed), so a later packet may negotiate afresh.
    fn take_down(&mut self, i: usize, now: Instant, why: &str, m: &dyn Meter) {
        let c = &mut self.conns[i];
        c.child_wanted = false;
        let Some(sa) = c.ike_sa else {
            return;
        };
        c.ep.delete_ike(now, sa);
        let spis: Vec<u32> = c.children.iter().map(|ch| ch.local_spi).collect();
        for spi in spis {
            self.uninstall(i, spi, why, m);
        }
        self.session_down(i, why, m);
        let c = &mut self.conns[i];
        c.ike_sa = None;
        c.established = false;
        self.drain(now, m);
    }

    /// A child SA that has sent for [`STALL_PROBE_AFTER`] with nothing back gets
    /// one liveness check on its IKE SA, until a packet comes in again.
    fn stalls(&mut self, now: Instant, m: &dyn Meter) {
        for c in &mut self.conns {
            let Some(sa) = c.ike_sa.filter(|_| c.established) else {
                continue;
            };
            let mut probe = false;
            for ch in c.children.iter_mut().filter(|ch| !ch.replaced) {
                let u = m.usage(ch.local_spi).counts;
                let s = &mut ch.silence;
                if u.packets_in != s.packets_in {
                    *s = Silence {
                        packets_in: u.packets_in,
                        packets_out: u.packets_out,
                        ..Silence::default()
                    };
                } else if u.packets_out != s.packets_out && !s.probed {
                    let since = *s.since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= STALL_PROBE_AFTER {
                        s.probed = true;
                        probe = true;
                    }
                }
            }
            if probe && c.ep.send_liveness(now, sa) {
                tracing::info!(conn = %c.cfg.name,
                    "sending, nothing back for {STALL_PROBE_AFTER:?}: liveness check (a moved NAT mapping is followed by the peer) / 応答なし: 生存確認");
            }
        }
    }

    /// Delete child SAs idle longer than the connection's idle timeout, then the IKE SA.
    fn idle(&mut self, now: Instant, m: &dyn Meter) {
        for c in &mut self.conns {
            let limit = c.cfg.idle_timeout;
            if limit.is_zero() {
                continue;
            }
            let idle: Vec<(SaId, u32)> = c
                .children
                .iter()
                .filter(|ch| {
                    let last = m
                        .usage(ch.local_spi)
                        .last_activity
                        .map_or(ch.up_since, |t| t.max(ch.up_since));
                    now.saturating_duration_since(last) >= limit
                })
                .map(|ch| (ch.ike_sa, ch.local_spi))
                .collect();
            for (sa, spi) in &idle {
                tracing::info!(conn = %c.cfg.name, spi_in = %format!("{spi:08x}"), "idle: deleting child SA");
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
}

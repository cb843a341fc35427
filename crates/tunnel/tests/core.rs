//! The tunnel core without sockets or root: two cores, each with its own IKE
//! endpoint, over an in-memory network with a fake clock. Each core's commands drive
//! a small model of the data plane (routes, SPD with trap queues, SAD) that seals and
//! opens real ESP with the negotiated keys, so the tests see which SAs are installed
//! and which packets arrive.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dodvpn_dataplane::{Direction, PacketFilter};
use dodvpn_esp::{InboundSa, OutboundSa, HEADROOM, NH_IPV4, TAILROOM};
use dodvpn_ike::{proposal, Config, LocalAuth, RemoteAuth, Transmit};
use dodvpn_tunnel::config::Start;
use dodvpn_tunnel::core::{
    Command, ConnSpec, ConnStatus, Core, Counts, Meter, SessionEvent, SessionId, UnknownConn, Usage,
};
use dodvpn_tunnel::telemetry::{HandshakeResult, RekeyKind, Role, Telemetry};
use dodvpn_wire::{Identification, TsRange};
use ipnet::IpNet;

const A_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const LATENCY: Duration = Duration::from_millis(5);

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// What one SPD entry of the model holds.
#[derive(Debug)]
enum Act {
    /// Packets waiting for an SA.
    Trap(Vec<Vec<u8>>),
    /// The outbound half of the child SA with this inbound SPI.
    Protect(u32),
}

/// A model of one data plane, changed only by the core's commands.
#[derive(Default)]
struct Plane {
    routes: BTreeSet<IpNet>,
    spd: HashMap<IpNet, Act>,
    inbound: HashMap<u32, (InboundSa, Arc<PacketFilter>)>,
    /// By the child's inbound SPI.
    outbound: HashMap<u32, (OutboundSa, SocketAddr, Arc<PacketFilter>)>,
    usage: HashMap<u32, Usage>,
    /// Inner packets that reached this side's TUN, in order.
    delivered: Vec<Vec<u8>>,
    /// ESP that found no inbound SA or failed to open.
    esp_refused: usize,
    sessions: Vec<SessionEvent>,
}

impl Meter for Plane {
    fn usage(&self, local_spi: u32) -> Usage {
        self.usage.get(&local_spi).copied().unwrap_or_default()
    }
}

impl Plane {
    fn lookup(&self, dst: IpAddr) -> Option<IpNet> {
        self.spd
            .keys()
            .filter(|n| n.contains(&dst))
            .max_by_key(|n| n.prefix_len())
            .copied()
    }

    /// Seal `pkt` with the outbound half of child `spi`; the ESP packet, if it passes.
    fn seal(&mut self, now: Instant, spi: u32, pkt: &[u8]) -> Option<Vec<u8>> {
        let (sa, _, filter) = self.outbound.get_mut(&spi)?;
        if !filter.allows(Direction::Outbound, pkt) {
            return None;
        }
        let mut buf = vec![0u8; HEADROOM + pkt.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(pkt);
        let n = sa.seal(pkt.len(), &mut buf, NH_IPV4).unwrap();
        buf.truncate(n);
        let u = self.usage.entry(spi).or_default();
        u.counts.packets_out += 1;
        u.counts.bytes_out += pkt.len() as u64;
        u.last_activity = Some(now);
        Some(buf)
    }

    fn open(&mut self, now: Instant, mut esp: Vec<u8>) {
        let spi = u32::from_be_bytes(esp[..4].try_into().unwrap());
        let Some((sa, filter)) = self.inbound.get_mut(&spi) else {
            self.esp_refused += 1;
            return;
        };
        let Ok((range, _)) = sa.open(&mut esp) else {
            self.esp_refused += 1;
            return;
        };
        let inner = esp[range].to_vec();
        if !filter.allows(Direction::Inbound, &inner) {
            self.esp_refused += 1;
            return;
        }
        let u = self.usage.entry(spi).or_default();
        u.counts.packets_in += 1;
        u.counts.bytes_in += inner.len() as u64;
        u.last_activity = Some(now);
        self.delivered.push(inner);
    }
}

/// One side: its core, its data plane, its address.
struct Site {
    core: Core,
    plane: Plane,
    ip: IpAddr,
}

impl Site {
    fn children(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.plane.inbound.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn status(&self, now: Instant) -> ConnStatus {
        self.core.status(now, &self.plane).remove(0)
    }

    /// The child SA the SPD sends `dst`'s packets with, if any.
    fn protecting(&self, dst: IpAddr) -> Option<u32> {
        match self.plane.lookup(dst).and_then(|n| self.plane.spd.get(&n)) {
            Some(Act::Protect(spi)) => Some(*spi),
            _ => None,
        }
    }

    fn trapped(&self, dst: IpAddr) -> Option<usize> {
        match self.plane.lookup(dst).and_then(|n| self.plane.spd.get(&n)) {
            Some(Act::Trap(q)) => Some(q.len()),
            _ => None,
        }
    }

    fn ups(&self) -> Vec<SessionId> {
        self.plane
            .sessions
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Up { session, .. } => Some(session.clone()),
                _ => None,
            })
            .collect()
    }

    fn downs(&self) -> Vec<(SessionId, Counts, String)> {
        self.plane
            .sessions
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Down {
                    session,
                    counts,
                    reason,
                    ..
                } => Some((session.clone(), *counts, reason.clone())),
                _ => None,
            })
            .collect()
    }
}

struct World {
    a: Site,
    b: Site,
    now: Instant,
    in_flight: Vec<(Instant, u64, Transmit)>,
    seq: u64,
    /// IKE datagrams delivered so far.
    ike_delivered: usize,
}

fn ike_config(local: &str, remote: &str, local_net: &str, remote_net: &str) -> Config {
    let mut c = Config::new(
        proposal::parse_ike_proposals(&["aes128gcm16-prfsha256-ecp256"]).unwrap(),
        proposal::parse_esp_proposals(&["aes128gcm16"]).unwrap(),
        Identification::fqdn(local),
        LocalAuth::Psk(b"core test psk".to_vec()),
        RemoteAuth::Psk(b"core test psk".to_vec()),
    );
    c.remote_id = Some(Identification::fqdn(remote));
    c.local_ts = vec![TsRange::from_net(net(local_net), 0, 0..=65535)];
    c.remote_ts = vec![TsRange::from_net(net(remote_net), 0, 0..=65535)];
    c
}

/// A's connection to B (10.1.0.0/16 ⇄ 10.2.0.0/16), both ends trapping.
fn spec_a() -> ConnSpec {
    ConnSpec {
        name: "to-b".into(),
        local_addr: A_IP,
        remote_addr: Some(B_IP),
        candidates: Vec::new(),
        remote_subnets: vec![net("10.2.0.0/16")],
        start: Start::Trap,
        idle_timeout: Duration::ZERO,
        ike: ike_config("a.example", "b.example", "10.1.0.0/16", "10.2.0.0/16"),
        rules: Vec::new(),
        local_map: Vec::new(),
    }
}

fn spec_b() -> ConnSpec {
    ConnSpec {
        name: "to-a".into(),
        local_addr: B_IP,
        remote_addr: Some(A_IP),
        candidates: Vec::new(),
        remote_subnets: vec![net("10.1.0.0/16")],
        start: Start::Trap,
        idle_timeout: Duration::ZERO,
        ike: ike_config("b.example", "a.example", "10.2.0.0/16", "10.1.0.0/16"),
        rules: Vec::new(),
        local_map: Vec::new(),
    }
}

/// A host behind A and one behind B.
const HOST_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const HOST_B: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 7);

/// An IPv4/UDP packet carrying `tag`.
fn packet(src: Ipv4Addr, dst: Ipv4Addr, tag: u32) -> Vec<u8> {
    let mut p = vec![0u8; 32];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&12u16.to_be_bytes());
    p[28..32].copy_from_slice(&tag.to_be_bytes());
    p
}

fn tags(pkts: &[Vec<u8>]) -> Vec<u32> {
    pkts.iter()
        .map(|p| u32::from_be_bytes(p[28..32].try_into().unwrap()))
        .collect()
}

impl World {
    fn new(a: ConnSpec, b: ConnSpec) -> World {
        let now = Instant::now();
        let mut w = World {
            a: Site {
                core: Core::new(500, 4500),
                plane: Plane::default(),
                ip: A_IP,
            },
            b: Site {
                core: Core::new(500, 4500),
                plane: Plane::default(),
                ip: B_IP,
            },
            now,
            in_flight: Vec::new(),
            seq: 0,
            ike_delivered: 0,
        };
        w.a.core.add(now, a, &w.a.plane).unwrap();
        w.b.core.add(now, b, &w.b.plane).unwrap();
        w.settle();
        w
    }

    fn site(&mut self, who: char) -> &mut Site {
        if who == 'a' {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Carry out both cores' commands, ESP included (delivered at once), until quiet.
    fn settle(&mut self) {
        loop {
            let mut esp = Vec::new();
            let mut any = false;
            for who in ['a', 'b'] {
                let now = self.now;
                while let Some(cmd) = self.site(who).core.poll_command() {
                    any = true;
                    let p = &mut self.site(who).plane;
                    match cmd {
                        Command::AddRoute(n) => assert!(p.routes.insert(n), "route {n} twice"),
                        Command::RemoveRoute(n) => assert!(p.routes.remove(&n), "no route {n}"),
                        Command::Trap(n) => {
                            p.spd.insert(n, Act::Trap(Vec::new()));
                        }
                        Command::Unprotect(n) => {
                            p.spd.remove(&n);
                        }
                        Command::InstallChild {
                            local_spi,
                            inbound,
                            outbound,
                            peer,
                            filter,
                        } => {
                            assert_eq!(inbound.spi(), local_spi);
                            p.inbound.insert(local_spi, (*inbound, filter.clone()));
                            p.outbound.insert(local_spi, (*outbound, peer, filter));
                        }
                        Command::Protect { net, local_spi } => {
                            assert!(
                                p.outbound.contains_key(&local_spi),
                                "protect with unknown SA"
                            );
                            let old = p.spd.insert(net, Act::Protect(local_spi));
                            // Packets waiting in a trap leave with the new SA, in order.
                            if let Some(Act::Trap(q)) = old {
                                for pkt in q {
                                    if let Some(e) = p.seal(now, local_spi, &pkt) {
                                        esp.push((who, e));
                                    }
                                }
                            }
                        }
                        Command::RemoveChild { local_spi } => {
                            assert!(p.inbound.remove(&local_spi).is_some());
                            p.outbound.remove(&local_spi);
                            p.usage.remove(&local_spi);
                        }
                        Command::MoveChild { local_spi, peer } => {
                            if let Some(o) = p.outbound.get_mut(&local_spi) {
                                o.1 = peer;
                            }
                        }
                        Command::Send(t) => {
                            if t.bytes != [0xff] {
                                self.seq += 1;
                                self.in_flight.push((now + LATENCY, self.seq, t));
                            }
                        }
                        // Fixed addresses, no NAT: nothing to open here.
                        Command::SendRaw { .. } => {}
                        Command::Session(ev) => p.sessions.push(ev),
                    }
                }
            }
            for (from, e) in esp {
                let now = self.now;
                self.site(if from == 'a' { 'b' } else { 'a' })
                    .plane
                    .open(now, e);
            }
            if !any {
                return;
            }
        }
    }

    /// A packet from `who`'s TUN: sealed, sent and opened at once if an SA protects
    /// it; queued (and a trap hit raised, as the data plane does for a fresh queue)
    /// if it is trapped. Returns whether it was sealed.
    fn send(&mut self, who: char, pkt: Vec<u8>) -> bool {
        let now = self.now;
        let dst = IpAddr::V4(Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]));
        let site = self.site(who);
        let Some(n) = site.plane.lookup(dst) else {
            return false;
        };
        match site.plane.spd.get_mut(&n).unwrap() {
            Act::Trap(q) => {
                let first = q.is_empty();
                q.push(pkt);
                if first {
                    let Site { core, plane, .. } = site;
                    core.handle_trap_hit(now, n, dst, plane);
                    self.settle();
                }
                false
            }
            Act::Protect(spi) => {
                let spi = *spi;
                let e = site.plane.seal(now, spi, &pkt);
                if let Some(e) = &e {
                    self.site(if who == 'a' { 'b' } else { 'a' })
                        .plane
                        .open(now, e.clone());
                }
                e.is_some()
            }
        }
    }

    /// One thing happens: the next IKE datagram arrives or the next timer fires.
    /// False when nothing is due up to `end`.
    fn step(&mut self, end: Instant) -> bool {
        self.settle();
        self.in_flight.sort_by_key(|p| (p.0, p.1));
        let next_pkt = self.in_flight.first().map(|p| p.0);
        let next_timer = [self.a.core.poll_timeout(), self.b.core.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = [next_pkt, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if next > end {
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        if next_pkt == Some(next) {
            let (_, _, t) = self.in_flight.remove(0);
            self.ike_delivered += 1;
            let to = if t.to.ip() == A_IP { 'a' } else { 'b' };
            let Site { core, plane, ip } = self.site(to);
            assert_eq!(t.to.ip(), *ip);
            core.handle_datagram(now, t.from, t.to, &t.bytes, plane);
        } else {
            for who in ['a', 'b'] {
                let Site { core, plane, .. } = self.site(who);
                core.handle_timeout(now, plane);
            }
        }
        self.settle();
        true
    }

    /// Let `d` pass, everything due in it happening.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1_000_000 {
            if !self.step(end) {
                self.now = end;
                self.settle();
                return;
            }
        }
        panic!("the world did not settle");
    }

    /// Step until `cond` holds (or panic after `limit`).
    fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&World) -> bool) {
        let end = self.now + limit;
        while !cond(self) {
            assert!(self.step(end), "condition not reached within {limit:?}");
        }
    }

    /// Bring the tunnel up with one packet A→B and return the session.
    fn up(&mut self) -> SessionId {
        let before = self.b.plane.delivered.len();
        assert!(!self.send('a', packet(HOST_A, HOST_B, 9999)));
        self.run_for(Duration::from_secs(1));
        assert_eq!(
            self.b.plane.delivered.len(),
            before + 1,
            "first packet lost"
        );
        assert_eq!(self.a.status(self.now).state, "established");
        self.a.ups().last().unwrap().clone()
    }

    /// Both ends hold one child SA, the two halves of one pair, and each protects
    /// the other's subnet with it.
    fn one_pair(&self) -> (u32, u32) {
        let (a, b) = (self.a.children(), self.b.children());
        assert_eq!((a.len(), b.len()), (1, 1), "a {a:x?} b {b:x?}");
        let (sa, sb) = (a[0], b[0]);
        assert_eq!(self.a.plane.outbound[&sa].0.spi(), sb);
        assert_eq!(self.b.plane.outbound[&sb].0.spi(), sa);
        assert_eq!(self.a.protecting(HOST_B.into()), Some(sa));
        assert_eq!(self.b.protecting(HOST_A.into()), Some(sb));
        (sa, sb)
    }
}

#[test]
fn routes_and_traps_are_set_when_a_connection_is_added() {
    let w = World::new(spec_a(), spec_b());
    assert_eq!(w.a.plane.routes, BTreeSet::from([net("10.2.0.0/16")]));
    assert_eq!(w.a.trapped(HOST_B.into()), Some(0));
    assert!(w.a.children().is_empty());
    assert_eq!(w.a.status(w.now).state, "trap");
    assert!(
        w.in_flight.is_empty(),
        "a trap connection must not negotiate by itself"
    );
}

#[test]
fn on_demand_start_sends_the_queued_packets_in_order() {
    let mut w = World::new(spec_a(), spec_b());
    for tag in 1..=3 {
        assert!(!w.send('a', packet(HOST_A, HOST_B, tag)), "no SA yet");
    }
    assert_eq!(w.a.trapped(HOST_B.into()), Some(3));
    assert_eq!(
        w.in_flight.len(),
        1,
        "one IKE_SA_INIT for the first trap hit"
    );
    w.run_for(Duration::from_secs(1));

    assert_eq!(tags(&w.b.plane.delivered), vec![1, 2, 3]);
    let (sa, sb) = w.one_pair();
    let (ua, ub) = (w.a.ups(), w.b.ups());
    assert_eq!(ua.len(), 1);
    assert_eq!(ua, ub, "both ends name the session alike");
    assert_eq!(
        w.a.status(w.now).session,
        Some(ua[0].to_string()),
        "status shows the session"
    );
    assert_eq!(w.a.plane.usage(sa).counts.packets_out, 3);
    assert_eq!(w.b.plane.usage(sb).counts.packets_in, 3);
    assert_eq!(w.a.status(w.now).children[0].packets_out, 3);
    // The answer goes straight back on the responder's child SA.
    assert!(w.send('b', packet(HOST_B, HOST_A, 4)));
    assert_eq!(tags(&w.a.plane.delivered), vec![4]);
    assert_eq!(w.a.plane.esp_refused + w.b.plane.esp_refused, 0);
}

#[test]
fn a_packet_outside_the_child_sa_selectors_is_not_sent() {
    let mut w = World::new(spec_a(), spec_b());
    w.up();
    // A source outside 10.1.0.0/16: the child SA's filter refuses it (no transit).
    assert!(!w.send('a', packet(Ipv4Addr::new(172, 16, 0, 1), HOST_B, 5)));
    assert_eq!(tags(&w.b.plane.delivered), vec![9999]);
}

#[test]
fn idle_child_sa_and_ike_sa_are_deleted_and_the_trap_rearmed() {
    let mut a = spec_a();
    a.idle_timeout = Duration::from_secs(30);
    let mut w = World::new(a, spec_b());
    let first = w.up();
    w.run_for(Duration::from_secs(20));
    assert!(w.send('a', packet(HOST_A, HOST_B, 1)), "traffic at 20 s");
    w.run_for(Duration::from_secs(25));
    // 25 s after the last packet: still up.
    w.one_pair();
    assert!(w.a.downs().is_empty());
    w.run_for(Duration::from_secs(10));

    assert!(w.a.children().is_empty(), "a: {:x?}", w.a.children());
    assert!(w.b.children().is_empty(), "b: {:x?}", w.b.children());
    assert_eq!(w.a.trapped(HOST_B.into()), Some(0), "trap re-armed at a");
    assert_eq!(w.b.trapped(HOST_A.into()), Some(0), "trap re-armed at b");
    assert_eq!(w.a.status(w.now).state, "trap");
    assert_eq!(w.b.status(w.now).state, "trap");
    let downs = w.a.downs();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(downs[0].0, first);
    assert_eq!(downs[0].1.packets_out, 2, "counts of the whole session");
    assert_eq!(w.b.downs()[0].1.packets_in, 2);
    assert_eq!(w.b.downs()[0].2, "PeerDeleted");

    // The next packet brings a new session.
    let second = w.up();
    assert_ne!(first, second);
    w.one_pair();
}

/// Steps a rekey through while probing both ways after every step: no probe may be
/// lost (make-before-break) and at the end only the new pair is left.
fn rekey(started_by_a: bool) {
    let (mut a, mut b) = (spec_a(), spec_b());
    let short = |c: &mut Config| {
        c.rekey_time = Some(Duration::from_secs(10));
        c.life_time = Some(Duration::from_secs(30));
    };
    if started_by_a {
        short(&mut a.ike);
    } else {
        short(&mut b.ike);
    }
    let mut w = World::new(a, b);
    let session = w.up();
    let (old_a, old_b) = w.one_pair();
    let end = w.now + Duration::from_secs(15);
    let mut tag = 0;
    let mut overlap = false;
    while w.step(end) {
        for (from, src, dst) in [('a', HOST_A, HOST_B), ('b', HOST_B, HOST_A)] {
            tag += 1;
            assert!(
                w.send(from, packet(src, dst, tag)),
                "probe {tag} from {from} not sealed"
            );
        }
        overlap |= w.a.children().len() == 2 && w.b.children().len() == 2;
    }
    assert_eq!(
        w.a.plane.esp_refused + w.b.plane.esp_refused,
        0,
        "a probe was lost"
    );
    assert_eq!(
        w.a.plane.delivered.len() + w.b.plane.delivered.len(),
        tag as usize + 1
    );
    assert!(overlap, "old and new SAs never coexisted");
    let (new_a, new_b) = w.one_pair();
    assert!(new_a != old_a && new_b != old_b, "no rekey happened");
    assert!(
        w.a.downs().is_empty() && w.b.downs().is_empty(),
        "a rekey is no new session"
    );
    assert_eq!(w.a.ups(), vec![session]);
    assert_eq!(w.a.status(w.now).session, Some(w.a.ups()[0].to_string()));
}

#[test]
fn rekey_started_by_the_initiator_is_make_before_break() {
    rekey(true);
}

#[test]
fn rekey_started_by_the_responder_is_make_before_break() {
    rekey(false);
}

#[test]
fn tunnel_down_removes_the_sas_at_once_and_keeps_the_trap() {
    let mut w = World::new(spec_a(), spec_b());
    let first = w.up();
    let now = w.now;
    assert_eq!(
        w.a.core.down(now, Some("nope"), &w.a.plane),
        Err(UnknownConn("nope".into()))
    );
    assert_eq!(w.a.core.down(now, Some("to-b"), &w.a.plane), Ok(1));
    w.settle();
    // Before the peer has heard anything: our SAs are gone, the trap is back.
    assert!(w.a.children().is_empty());
    assert_eq!(w.a.trapped(HOST_B.into()), Some(0));
    assert_eq!(w.a.status(w.now).state, "trap");
    assert_eq!(w.a.downs()[0].0, first);
    assert_eq!(w.a.downs()[0].2, "taken down by an operator");
    assert_eq!(w.b.children().len(), 1, "b not told yet");
    w.run_for(Duration::from_secs(1));
    assert!(w.b.children().is_empty());
    assert_eq!(w.b.trapped(HOST_A.into()), Some(0));
    assert_eq!(w.b.downs()[0].2, "PeerDeleted");
    let now = w.now;
    assert_eq!(
        w.a.core.down(now, None, &w.a.plane),
        Ok(0),
        "nothing left to take down"
    );
    // The trap brings it back.
    let second = w.up();
    assert_ne!(first, second);
}

#[test]
fn operator_cut_deletes_the_session_on_either_end() {
    let mut w = World::new(spec_a(), spec_b());
    let session = w.up();
    let id = session.to_string();
    let now = w.now;
    assert!(!w
        .b
        .core
        .cut(now, "0000000000000000-0000000000000000", &w.b.plane));
    assert!(w.b.core.cut(now, &id, &w.b.plane));
    w.settle();
    assert!(w.b.children().is_empty(), "cut takes effect at once");
    assert_eq!(
        w.b.downs(),
        vec![(
            session.clone(),
            w.b.downs()[0].1,
            "cut by an operator".into()
        )]
    );
    assert!(!w.b.core.cut(now, &id, &w.b.plane), "already cut");
    w.run_for(Duration::from_secs(1));
    assert!(w.a.children().is_empty());
    assert_eq!(w.a.downs()[0].0, session);
    assert_eq!(w.a.downs()[0].2, "PeerDeleted");
    // Traffic now waits in the trap for a new session instead of using the old keys.
    assert!(!w.send('b', packet(HOST_B, HOST_A, 1)));
    w.run_for(Duration::from_secs(1));
    assert_eq!(tags(&w.a.plane.delivered), vec![1]);
    assert_ne!(w.b.ups().last(), Some(&session));
}

#[test]
fn a_trap_hit_while_the_ike_sa_is_being_deleted_starts_a_new_one() {
    let mut a = spec_a();
    a.idle_timeout = Duration::from_secs(30);
    let mut w = World::new(a, spec_b());
    let first = w.up();
    // Idle: the child SA goes first; then the IKE SA's DELETE is on its way.
    w.run_until(Duration::from_secs(40), |w| w.a.children().is_empty());
    assert!(
        w.a.status(w.now).ike_sa.is_some(),
        "the IKE SA should still be there, being deleted"
    );
    assert_eq!(w.a.trapped(HOST_B.into()), Some(0));
    assert!(!w.send('a', packet(HOST_A, HOST_B, 7)));
    w.run_for(Duration::from_secs(1));

    assert_eq!(
        tags(&w.b.plane.delivered),
        vec![9999, 7],
        "the trapped packet got through"
    );
    w.one_pair();
    let ups = w.a.ups();
    assert_eq!(ups.len(), 2);
    assert_ne!(ups[1], first);
    // The old session is reported gone, once.
    let downs = w.a.downs();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(downs[0].0, first);
    assert_eq!(w.a.status(w.now).session, Some(ups[1].to_string()));
}

#[test]
fn removing_a_connection_deletes_its_sas_routes_and_traps() {
    let mut w = World::new(spec_a(), spec_b());
    w.up();
    let now = w.now;
    assert!(!w.a.core.remove(now, "nope", &w.a.plane));
    assert!(w.a.core.remove(now, "to-b", &w.a.plane));
    w.settle();
    assert!(w.a.children().is_empty());
    assert!(w.a.plane.routes.is_empty());
    assert!(w.a.plane.spd.is_empty());
    assert!(w.a.core.status(w.now, &w.a.plane).is_empty());
    assert_eq!(w.a.downs()[0].2, "connection removed");
    w.run_for(Duration::from_secs(1));
    assert!(w.b.children().is_empty(), "the peer was told");
}

#[test]
fn a_connection_name_is_used_once() {
    let mut w = World::new(spec_a(), spec_b());
    let now = w.now;
    let e = w.a.core.add(now, spec_a(), &w.a.plane).unwrap_err();
    assert!(e.to_string().contains("used twice"), "{e}");
}

#[test]
fn shutdown_deletes_every_ike_sa_and_waits_only_for_the_answers() {
    let mut w = World::new(spec_a(), spec_b());
    w.up();
    let now = w.now;
    assert!(w.a.core.ike_sas_left());
    assert_eq!(w.a.core.shutdown(now, &w.a.plane), 1);
    w.settle();
    // Traffic stops at once; the DELETE is on its way.
    assert!(w.a.children().is_empty());
    assert!(w.a.core.ike_sas_left(), "waits for the peer's answer");
    w.run_until(Duration::from_secs(2), |w| !w.a.core.ike_sas_left());
    // The peer was told: its SAs are gone too, not left to DPD.
    assert!(w.b.children().is_empty());
    assert_eq!(w.b.downs()[0].2, "PeerDeleted");
    let now = w.now;
    assert_eq!(w.a.core.shutdown(now, &w.a.plane), 0, "nothing left");
    assert!(!w.a.core.ike_sas_left());
}

#[test]
fn shutdown_on_the_responder_tells_the_initiator() {
    let mut w = World::new(spec_a(), spec_b());
    w.up();
    let now = w.now;
    assert_eq!(w.b.core.shutdown(now, &w.b.plane), 1);
    w.settle();
    w.run_until(Duration::from_secs(2), |w| !w.b.core.ike_sas_left());
    assert!(w.a.children().is_empty());
    assert_eq!(w.a.downs()[0].2, "PeerDeleted");
}

/// What the core tells the agent's metrics, recorded.
#[derive(Default)]
struct Recorder {
    handshakes: std::sync::Mutex<Vec<(String, Role, HandshakeResult, Duration)>>,
    rekeys: std::sync::Mutex<Vec<(String, RekeyKind)>>,
}

impl Telemetry for Recorder {
    fn handshake(&self, conn: &str, role: Role, result: HandshakeResult, took: Duration) {
        self.handshakes
            .lock()
            .unwrap()
            .push((conn.into(), role, result, took));
    }
    fn rekey(&self, conn: &str, kind: RekeyKind) {
        self.rekeys.lock().unwrap().push((conn.into(), kind));
    }
}

/// Issue 17 item 3: handshakes with their role and duration, rekeys, and per-connection
/// totals that only grow (across sessions and across the connection being replaced).
#[test]
fn telemetry_reports_handshakes_rekeys_and_totals_that_only_grow() {
    let (mut a, mut b) = (spec_a(), spec_b());
    for c in [&mut a.ike, &mut b.ike] {
        c.rekey_time = Some(Duration::from_secs(10));
        c.life_time = Some(Duration::from_secs(30));
    }
    let mut w = World::new(a, b);
    let (ta, tb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    w.a.core.set_telemetry(ta.clone());
    w.b.core.set_telemetry(tb.clone());
    w.up();
    {
        let ha = ta.handshakes.lock().unwrap();
        assert_eq!(ha.len(), 1, "{ha:?}");
        let (conn, role, result, took) = &ha[0];
        assert_eq!(
            (conn.as_str(), *role, *result),
            ("to-b", Role::Initiator, HandshakeResult::Established)
        );
        // IKE_SA_INIT and IKE_AUTH, each a round trip over the 5 ms network.
        assert!(*took >= 4 * LATENCY, "initiator handshake took {took:?}");
        let hb = tb.handshakes.lock().unwrap();
        assert_eq!(hb.len(), 1, "{hb:?}");
        let (conn, role, result, took) = &hb[0];
        assert_eq!(
            (conn.as_str(), *role, *result),
            ("to-a", Role::Responder, HandshakeResult::Established)
        );
        // From the IKE_SA_INIT request to the IKE_AUTH request: one round trip.
        assert!(
            *took >= 2 * LATENCY && *took < 4 * LATENCY,
            "responder handshake took {took:?}"
        );
    }
    for tag in 0..10 {
        assert!(w.send('a', packet(HOST_A, HOST_B, tag)));
    }
    let before = w.a.status(w.now).totals;
    assert_eq!(before.packets_out, 11, "the first packet and ten more");
    // Through a child rekey: the old SA's counts move into the totals, none lost.
    w.run_for(Duration::from_secs(15));
    assert!(
        ta.rekeys
            .lock()
            .unwrap()
            .iter()
            .any(|(c, k)| c == "to-b" && *k == RekeyKind::Child)
            || tb
                .rekeys
                .lock()
                .unwrap()
                .iter()
                .any(|(c, k)| c == "to-a" && *k == RekeyKind::Child),
        "no child rekey reported: a {:?} b {:?}",
        ta.rekeys.lock().unwrap(),
        tb.rekeys.lock().unwrap()
    );
    assert!(w.send('a', packet(HOST_A, HOST_B, 100)));
    let after_rekey = w.a.status(w.now).totals;
    assert_eq!(after_rekey.packets_out, 12, "{after_rekey:?}");
    assert_eq!(after_rekey.bytes_out, 12 * 32);
    // Replaced (the agent does this when a peer's grants change): the totals go on.
    let now = w.now;
    assert!(w.a.core.remove(now, "to-b", &w.a.plane));
    w.settle();
    w.a.core.add(now, spec_a(), &w.a.plane).unwrap();
    w.settle();
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.a.status(w.now).totals, after_rekey, "totals restarted");
    w.up();
    let last = w.a.status(w.now).totals;
    assert_eq!(last.packets_out, 13, "{last:?}");
    assert!(last.packets_in >= after_rekey.packets_in);
    assert_eq!(
        ta.handshakes.lock().unwrap().len(),
        2,
        "the second session is a second handshake"
    );
}

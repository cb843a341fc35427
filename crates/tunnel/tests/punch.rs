//! Sites without a fixed address reaching each other (issue 19 items 1–3): two
//! clinics, each behind its own NAT, dial each other's reported candidates; the
//! centre's introduction makes the called side open its NAT mapping (hole punching);
//! behind symmetric NATs they meet at a relay that forwards what it cannot read.
//! Cores over an in-memory network with NAT models and a fake clock.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::Pki;
use dodvpn_ike::{proposal, Config};
use dodvpn_relay::{Action, Binding, Relay};
use dodvpn_tunnel::config::Start;
use dodvpn_tunnel::core::{Command, ConnSpec, Core, Meter, SessionEvent, Usage};
use dodvpn_wire::{Identification, TsRange};
use ipnet::IpNet;

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}
fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}
fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

const LATENCY: Duration = Duration::from_millis(10);
const SECRET: &[u8] = b"shared by the centre and the relay";

/// How a NAT maps and filters (RFC 4787 terms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Endpoint-independent mapping and filtering (a port forward of 4500).
    FullCone,
    /// Endpoint-independent mapping (the port kept), address-and-port-dependent
    /// filtering: a masquerading home router.
    PortRestricted,
    /// A new public port per destination (`masquerade random`, CGNAT).
    Symmetric,
}

struct Nat {
    kind: Kind,
    public: IpAddr,
    next_port: u16,
    /// (inside port, destination if symmetric) → public port.
    out: HashMap<(u16, Option<SocketAddr>), u16>,
    /// public port → (inside port, destinations it sent to).
    mapped: HashMap<u16, (u16, HashSet<SocketAddr>)>,
    dropped: usize,
}

impl Nat {
    fn new(kind: Kind, public: IpAddr) -> Nat {
        let mut mapped = HashMap::new();
        if kind == Kind::FullCone {
            // The port forward exists before anything is sent.
            mapped.insert(4500, (4500, HashSet::new()));
        }
        Nat {
            kind,
            public,
            next_port: 40000,
            out: HashMap::new(),
            mapped,
            dropped: 0,
        }
    }

    fn outbound(&mut self, from_port: u16, to: SocketAddr) -> u16 {
        let key = (from_port, (self.kind == Kind::Symmetric).then_some(to));
        let port = match self.out.get(&key) {
            Some(p) => *p,
            None => {
                let p = if self.kind == Kind::Symmetric {
                    self.next_port += 7;
                    self.next_port
                } else {
                    from_port
                };
                self.out.insert(key, p);
                p
            }
        };
        self.mapped
            .entry(port)
            .or_insert((from_port, HashSet::new()))
            .1
            .insert(to);
        port
    }

    fn inbound(&mut self, port: u16, from: SocketAddr) -> Option<u16> {
        let hit = self.mapped.get(&port).and_then(|(inside, peers)| {
            (self.kind == Kind::FullCone || peers.contains(&from)).then_some(*inside)
        });
        if hit.is_none() {
            // A home router drops what nobody inside asked for (no state is kept).
            self.dropped += 1;
        }
        hit
    }
}

struct Site {
    core: Core,
    ip: IpAddr,
    nat: Option<Nat>,
    sessions: Vec<SessionEvent>,
    /// Inbound SPI → where its ESP goes.
    esp_peer: HashMap<u32, SocketAddr>,
}

/// A datagram on the wire (the non-ESP marker included for IKE on port 4500).
struct Datagram {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

struct World {
    sites: Vec<Site>,
    relay: Option<(IpAddr, Relay)>,
    now: Instant,
    in_flight: Vec<(Instant, u64, Datagram)>,
    seq: u64,
    /// Datagrams the relay forwarded.
    relayed: Vec<Vec<u8>>,
}

const A: usize = 0;
const B: usize = 1;

impl World {
    fn new(sites: Vec<(IpAddr, Option<Nat>, Vec<ConnSpec>)>) -> World {
        let now = Instant::now();
        let mut w = World {
            sites: Vec::new(),
            relay: None,
            now,
            in_flight: Vec::new(),
            seq: 0,
            relayed: Vec::new(),
        };
        for (ip, nat, specs) in sites {
            let mut core = Core::new(500, 4500);
            for s in specs {
                core.add(now, s, &NoMeter).unwrap();
            }
            w.sites.push(Site {
                core,
                ip,
                nat,
                sessions: Vec::new(),
                esp_peer: HashMap::new(),
            });
        }
        w.settle();
        w
    }

    fn send(&mut self, site: usize, mut d: Datagram) {
        let s = &mut self.sites[site];
        if let Some(nat) = &mut s.nat {
            let port = nat.outbound(d.from.port(), d.to);
            d.from = sa(nat.public, port);
        }
        self.seq += 1;
        self.in_flight.push((self.now + LATENCY, self.seq, d));
    }

    fn settle(&mut self) {
        for i in 0..self.sites.len() {
            while let Some(cmd) = self.sites[i].core.poll_command() {
                let ip = self.sites[i].ip;
                match cmd {
                    Command::Send(t) => {
                        let mut bytes = Vec::new();
                        if t.nat_t {
                            bytes.extend_from_slice(&[0, 0, 0, 0]);
                        }
                        bytes.extend_from_slice(&t.bytes);
                        let port = if t.nat_t || t.bytes == [0xff] {
                            4500
                        } else {
                            500
                        };
                        self.send(
                            i,
                            Datagram {
                                from: sa(ip, port),
                                to: t.to,
                                bytes,
                            },
                        );
                    }
                    Command::SendRaw { to, bytes } => self.send(
                        i,
                        Datagram {
                            from: sa(ip, 4500),
                            to,
                            bytes,
                        },
                    ),
                    Command::InstallChild {
                        local_spi, peer, ..
                    } => {
                        self.sites[i].esp_peer.insert(local_spi, peer);
                    }
                    Command::Session(ev) => self.sites[i].sessions.push(ev),
                    _ => {}
                }
            }
        }
    }

    fn deliver(&mut self, mut d: Datagram) {
        if let Some((rip, relay)) = &mut self.relay {
            if d.to.ip() == *rip {
                if let Action::Forward(to) = relay.handle(self.now, 1000, d.from, &d.bytes) {
                    self.relayed.push(d.bytes.clone());
                    let rip = *rip;
                    self.seq += 1;
                    self.in_flight.push((
                        self.now + LATENCY,
                        self.seq,
                        Datagram {
                            from: sa(rip, 4600),
                            to,
                            bytes: d.bytes,
                        },
                    ));
                }
                return;
            }
        }
        let now = self.now;
        let Some(s) = self
            .sites
            .iter_mut()
            .find(|s| s.nat.as_ref().map_or(s.ip, |n| n.public) == d.to.ip())
        else {
            return; // a private address from outside: no route
        };
        if let Some(nat) = &mut s.nat {
            let Some(port) = nat.inbound(d.to.port(), d.from) else {
                return;
            };
            d.to = sa(s.ip, port);
        }
        let ike = match d.to.port() {
            500 => &d.bytes[..],
            _ if d.bytes.len() > 4 && d.bytes[..4] == [0, 0, 0, 0] => &d.bytes[4..],
            _ => return, // ESP or a keepalive: the data plane's, not the core's
        };
        s.core.handle_datagram(now, d.from, d.to, ike, &NoMeter);
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            self.in_flight.sort_by_key(|p| (p.0, p.1));
            let next_pkt = self.in_flight.first().map(|p| p.0);
            let next_timer = self
                .sites
                .iter()
                .filter_map(|s| s.core.poll_timeout())
                .min();
            let Some(next) = [next_pkt, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if next_pkt == Some(next) {
                let (_, _, d) = self.in_flight.remove(0);
                self.deliver(d);
            } else {
                let now = self.now;
                for s in &mut self.sites {
                    s.core.handle_timeout(now, &NoMeter);
                }
            }
        }
        self.now = end;
        self.settle();
    }

    fn trap(&mut self, site: usize, dst: &str) {
        let now = self.now;
        let dst: IpAddr = dst.parse().unwrap();
        self.sites[site]
            .core
            .handle_trap_hit(now, IpNet::from(dst), dst, &NoMeter);
        self.settle();
    }

    fn state(&self, site: usize) -> String {
        self.sites[site].core.status(self.now, &NoMeter)[0]
            .state
            .clone()
    }

    fn wants_introduction(&self, site: usize) -> bool {
        self.sites[site]
            .sessions
            .iter()
            .any(|e| matches!(e, SessionEvent::NeedsIntroduction { .. }))
    }

    /// What the centre does on an introduction: both sides open their mapping
    /// towards the other's candidates, at once.
    fn introduce(&mut self, a_cands: &[SocketAddr], b_cands: &[SocketAddr]) {
        let now = self.now;
        assert!(self.sites[A].core.open_mappings(now, "b", b_cands));
        assert!(self.sites[B].core.open_mappings(now, "a", a_cands));
        self.settle();
    }

    fn session_up(&self, site: usize) -> Option<(String, Option<SocketAddr>)> {
        self.sites[site].sessions.iter().find_map(|e| match e {
            SessionEvent::Up { session, relay, .. } => Some((session.to_string(), *relay)),
            _ => None,
        })
    }
}

struct NoMeter;
impl Meter for NoMeter {
    fn usage(&self, _: u32) -> Usage {
        Usage::default()
    }
}

/// Clinic `me` → clinic `peer`; `cands` are the peer's reported candidates.
#[allow(clippy::too_many_arguments)]
fn conn(
    pki: &Pki,
    name: &str,
    me: &str,
    peer: &str,
    local: IpAddr,
    fixed: Option<IpAddr>,
    cands: &[SocketAddr],
    local_net: &str,
    remote_net: &str,
) -> ConnSpec {
    let mut c = Config::new(
        proposal::parse_ike_proposals(&["aes128gcm16-prfsha256-ecp256"]).unwrap(),
        proposal::parse_esp_proposals(&["aes128gcm16"]).unwrap(),
        Identification::fqdn(me),
        pki.local_auth(me),
        pki.remote_auth(),
    );
    c.remote_id = Some(Identification::fqdn(peer));
    c.local_ts = vec![TsRange::from_net(net(local_net), 0, 0..=65535)];
    c.remote_ts = vec![TsRange::from_net(net(remote_net), 0, 0..=65535)];
    ConnSpec {
        name: name.into(),
        local_addr: local,
        remote_addr: fixed,
        candidates: cands.to_vec(),
        remote_subnets: vec![net(remote_net)],
        start: Start::Trap,
        idle_timeout: Duration::ZERO,
        ike: c,
        rules: Vec::new(),
        local_map: Vec::new(),
    }
}

const A_PRIV: [u8; 4] = [192, 168, 1, 2];
const B_PRIV: [u8; 4] = [192, 168, 2, 2];

/// Two clinics behind NATs of these kinds, each knowing the other's candidates
/// (its private and its NAT's public address on 4500, as the agent reports them).
fn two_clinics(pki: &Pki, a_kind: Kind, b_kind: Kind) -> (World, Vec<SocketAddr>, Vec<SocketAddr>) {
    let (a_priv, b_priv) = (IpAddr::from(A_PRIV), IpAddr::from(B_PRIV));
    let (a_pub, b_pub) = (ip(203, 0, 113, 10), ip(198, 51, 100, 20));
    let a_cands = vec![sa(a_priv, 4500), sa(a_pub, 4500)];
    let b_cands = vec![sa(b_priv, 4500), sa(b_pub, 4500)];
    let w = World::new(vec![
        (
            a_priv,
            Some(Nat::new(a_kind, a_pub)),
            vec![conn(
                pki,
                "b",
                "a.example",
                "b.example",
                a_priv,
                None,
                &b_cands,
                "10.1.0.0/16",
                "10.2.0.0/16",
            )],
        ),
        (
            b_priv,
            Some(Nat::new(b_kind, b_pub)),
            vec![conn(
                pki,
                "a",
                "b.example",
                "a.example",
                b_priv,
                None,
                &a_cands,
                "10.2.0.0/16",
                "10.1.0.0/16",
            )],
        ),
    ]);
    (w, a_cands, b_cands)
}

#[test]
fn two_clinics_behind_their_own_nats_reach_each_other_once_introduced() {
    let pki = Pki::new();
    for b_kind in [Kind::FullCone, Kind::PortRestricted] {
        let (mut w, a_cands, b_cands) = two_clinics(&pki, Kind::PortRestricted, b_kind);
        w.trap(A, "10.2.0.9");
        assert!(
            w.wants_introduction(A),
            "{b_kind:?}: no introduction asked for"
        );
        w.run_for(LATENCY * 2); // the centre's push reaches both
        w.introduce(&a_cands, &b_cands);
        w.run_for(Duration::from_secs(3));
        assert_eq!(w.state(A), "established", "{b_kind:?}");
        assert_eq!(w.state(B), "established", "{b_kind:?}");
        let (sa_a, relay) = w.session_up(A).expect("session up at A");
        assert_eq!(relay, None);
        assert_eq!(
            Some(sa_a),
            w.session_up(B).map(|s| s.0),
            "one session, one id"
        );
        // ESP goes to the other NAT's public mapping of port 4500, both ways.
        let a_peer = *w.sites[A].esp_peer.values().next().unwrap();
        let b_peer = *w.sites[B].esp_peer.values().next().unwrap();
        assert_eq!(a_peer, sa(ip(198, 51, 100, 20), 4500), "{b_kind:?}");
        assert_eq!(b_peer, sa(ip(203, 0, 113, 10), 4500), "{b_kind:?}");
        assert_eq!(w.sites[A].core.status(w.now, &NoMeter)[0].relay, None);
        if b_kind == Kind::PortRestricted {
            assert!(
                w.sites[B].nat.as_ref().unwrap().dropped > 0,
                "B's NAT let in IKE before B opened it: the test proves nothing"
            );
        }
    }
}

/// The caller resends its IKE_SA_INIT once the introduction is out (the agent does
/// 50 ms after the centre answered): through a port-restricted NAT the tunnel is up
/// in a few round trips, not at the first retransmission 0.5 s later.
#[test]
fn resending_after_the_introduction_punches_through_before_the_first_retransmission() {
    let pki = Pki::new();
    let (mut w, a_cands, b_cands) = two_clinics(&pki, Kind::PortRestricted, Kind::PortRestricted);
    let t0 = w.now;
    w.trap(A, "10.2.0.9");
    w.run_for(LATENCY * 2);
    w.introduce(&a_cands, &b_cands);
    w.run_for(LATENCY * 3); // B's keepalives are through its NAT
    let now = w.now;
    assert!(
        w.sites[A].core.introduced(now, "b", &NoMeter) >= 1,
        "nothing resent"
    );
    w.settle();
    w.run_for(Duration::from_millis(150));
    assert_eq!(w.state(A), "established");
    assert_eq!(w.state(B), "established");
    assert!(w.now - t0 < Duration::from_millis(400), "{:?}", w.now - t0);
    assert!(
        w.sites[B].nat.as_ref().unwrap().dropped > 0,
        "B's NAT let in the first IKE_SA_INIT: the test proves nothing"
    );
    // Once up, nothing waits: a further resend sends nothing.
    let now = w.now;
    assert_eq!(w.sites[A].core.introduced(now, "b", &NoMeter), 0);
    assert_eq!(w.sites[A].core.introduced(now, "nobody", &NoMeter), 0);
}

#[test]
fn without_the_introduction_a_port_restricted_nat_keeps_the_peer_out() {
    let pki = Pki::new();
    let (mut w, _, _) = two_clinics(&pki, Kind::PortRestricted, Kind::PortRestricted);
    w.trap(A, "10.2.0.9");
    w.run_for(Duration::from_secs(3));
    assert_ne!(w.state(A), "established");
    assert_ne!(w.state(B), "established");
    assert!(w.sites[B].nat.as_ref().unwrap().dropped > 0);
}

#[test]
fn behind_symmetric_nats_punching_fails_and_the_relay_carries_the_session() {
    let pki = Pki::new();
    let (mut w, a_cands, b_cands) = two_clinics(&pki, Kind::Symmetric, Kind::Symmetric);
    let relay_ip = ip(192, 0, 2, 1);
    let relay = sa(relay_ip, 4600);
    w.relay = Some((relay_ip, Relay::new(SECRET.to_vec())));
    w.trap(A, "10.2.0.9");
    w.run_for(LATENCY * 2);
    w.introduce(&a_cands, &b_cands);
    w.run_for(Duration::from_millis(2500));
    assert_ne!(
        w.state(A),
        "established",
        "a symmetric NAT let the punch through"
    );

    // The centre allocates a relay and gives each side its binding.
    let bind = |side| {
        Binding {
            expires: 2000,
            alloc: [9; 16],
            side,
        }
        .seal(SECRET)
    };
    let now = w.now;
    assert!(w.sites[A]
        .core
        .use_relay(now, "b", relay, bind(0), true, &NoMeter));
    assert!(w.sites[B]
        .core
        .use_relay(now, "a", relay, bind(1), false, &NoMeter));
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.state(A), "established");
    assert_eq!(w.state(B), "established");
    let (id_a, relay_a) = w.session_up(A).unwrap();
    let (id_b, relay_b) = w.session_up(B).unwrap();
    assert_eq!(id_a, id_b);
    assert_eq!(
        (relay_a, relay_b),
        (Some(relay), Some(relay)),
        "the session is reported as relayed"
    );
    assert!(w.sites[A].esp_peer.values().all(|p| *p == relay));
    assert!(w.sites[B].esp_peer.values().all(|p| *p == relay));
    let st = w.sites[A].core.status(w.now, &NoMeter);
    assert_eq!(st[0].relay.as_deref(), Some("192.0.2.1:4600"));
    // Both sides keep binding while relayed, so a NAT mapping that moved is followed.
    let bound = |w: &World| w.relay.as_ref().unwrap().1.stats().forwarded_datagrams;
    let before = bound(&w);
    w.run_for(Duration::from_secs(40));
    assert_eq!(w.state(A), "established", "the relayed session held");
    assert!(bound(&w) > before, "keepalives went through the relay");
    // The relay forwarded IKE (with the marker) and never a binding.
    assert!(w
        .relayed
        .iter()
        .any(|d| d.len() > 4 && d[..4] == [0, 0, 0, 0]));
    assert!(!w.relayed.iter().any(|d| d.starts_with(b"DODR")));
}

#[test]
fn a_fixed_address_is_dialled_first_and_the_candidates_after_it_fails() {
    let pki = Pki::new();
    let b_pub = ip(198, 51, 100, 20);
    let dead = ip(198, 51, 100, 99);
    let a_priv = IpAddr::from(A_PRIV);
    let b_cands = vec![sa(IpAddr::from(B_PRIV), 4500), sa(b_pub, 4500)];
    let mut w = World::new(vec![
        (
            a_priv,
            None,
            vec![conn(
                &pki,
                "b",
                "a.example",
                "b.example",
                a_priv,
                Some(dead),
                &b_cands,
                "10.1.0.0/16",
                "10.2.0.0/16",
            )],
        ),
        (
            IpAddr::from(B_PRIV),
            Some(Nat::new(Kind::FullCone, b_pub)),
            vec![conn(
                &pki,
                "a",
                "b.example",
                "a.example",
                IpAddr::from(B_PRIV),
                Some(a_priv),
                &[],
                "10.2.0.0/16",
                "10.1.0.0/16",
            )],
        ),
    ]);
    w.trap(A, "10.2.0.9");
    assert!(
        !w.wants_introduction(A),
        "a peer with a fixed address needs no introduction"
    );
    assert!(
        w.in_flight.iter().all(|p| p.2.to == sa(dead, 500)),
        "the fixed address first, alone"
    );
    w.run_for(Duration::from_secs(40));
    assert_eq!(w.state(A), "established");
    assert_eq!(w.sites[A].esp_peer.values().next(), Some(&sa(b_pub, 4500)));
}

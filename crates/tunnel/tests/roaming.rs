//! Identity, not address (issue 19 item 5): a responder accepts IKE from any address
//! for a connection whose peer is identified by certificate, picks the connection by
//! the identity proved in IKE_AUTH, and drops the peer only when that fails. Cores
//! over an in-memory network with a masquerading NAT in front of the clinic and a
//! fake clock; certificates made on the spot.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Pki;
use dodvpn_ike::{proposal, Config, LocalAuth, RemoteAuth, Transmit};
use dodvpn_tunnel::config::Start;
use dodvpn_tunnel::core::{Command, ConnSpec, Core, Meter, Usage};
use dodvpn_tunnel::telemetry::{HandshakeResult, RekeyKind, Role, Telemetry};
use dodvpn_wire::{Identification, Message, NotifyType, Payload, TsRange};
use ipnet::IpNet;

const HOSP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const CLINIC_PRIVATE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 7, 2));
/// The clinic's next DHCP lease, behind the same NAT.
const CLINIC_NEW_LEASE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 7, 3));
const NAT_PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99));
const LATENCY: Duration = Duration::from_millis(5);

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A connection `name` from `me` (certificate for `cert_name`) to the peer `peer`.
#[allow(clippy::too_many_arguments)]
fn spec(
    pki: &Pki,
    name: &str,
    me: &str,
    cert_name: &str,
    peer: &str,
    local: IpAddr,
    remote: Option<IpAddr>,
    local_net: &str,
    remote_net: &str,
    start: Start,
) -> ConnSpec {
    let mut c = Config::new(
        proposal::parse_ike_proposals(&["aes128gcm16-prfsha256-ecp256"]).unwrap(),
        proposal::parse_esp_proposals(&["aes128gcm16"]).unwrap(),
        Identification::fqdn(me),
        pki.local_auth(cert_name),
        pki.remote_auth(),
    );
    c.remote_id = Some(Identification::fqdn(peer));
    c.local_ts = vec![TsRange::from_net(net(local_net), 0, 0..=65535)];
    c.remote_ts = vec![TsRange::from_net(net(remote_net), 0, 0..=65535)];
    ConnSpec {
        name: name.into(),
        local_addr: local,
        remote_addr: remote,
        candidates: Vec::new(),
        remote_subnets: vec![net(remote_net)],
        start,
        idle_timeout: Duration::ZERO,
        ike: c,
        rules: Vec::new(),
        local_map: Vec::new(),
    }
}

/// Nothing installed is ever metered here.
struct NoMeter;
impl Meter for NoMeter {
    fn usage(&self, _: u32) -> Usage {
        Usage::default()
    }
}

/// A site's traffic as its data plane would count it: every child SA alike.
#[derive(Default)]
struct Traffic {
    packets_in: std::cell::Cell<u64>,
    packets_out: std::cell::Cell<u64>,
}
impl Meter for Traffic {
    fn usage(&self, _: u32) -> Usage {
        Usage {
            counts: dodvpn_tunnel::core::Counts {
                packets_in: self.packets_in.get(),
                packets_out: self.packets_out.get(),
                ..Default::default()
            },
            last_activity: None,
        }
    }
}

/// What a core asked of its data plane.
#[derive(Default)]
struct Plane {
    /// Inbound SPI → (outbound SPI, where its ESP goes).
    children: HashMap<u32, (u32, SocketAddr)>,
    /// Protected prefix → inbound SPI of the child SA.
    protect: HashMap<IpNet, u32>,
}

struct Site {
    core: Core,
    plane: Plane,
    traffic: Traffic,
    /// The address the site's datagrams leave from (before any NAT).
    ip: IpAddr,
}

/// A network with a masquerading NAT in front of the clinic: the clinic's datagrams
/// leave from NAT_PUBLIC with a port of the NAT's choosing, and only answers to a
/// mapping the clinic opened come back in (a port-restricted cone).
struct World {
    sites: Vec<Site>,
    now: Instant,
    in_flight: Vec<(Instant, u64, Transmit)>,
    seq: u64,
    /// (clinic address) → public port, and (public port, peer) pairs the NAT lets in.
    nat_out: HashMap<SocketAddr, u16>,
    nat_in: HashMap<(u16, SocketAddr), SocketAddr>,
    /// Datagrams the NAT dropped (no mapping for them).
    nat_dropped: usize,
    /// Every datagram a site sent, after the NAT: (site, datagram).
    sent: Vec<(usize, Transmit)>,
}

const H: usize = 0;
const C: usize = 1;

fn behind_the_nat(ip: IpAddr) -> bool {
    net("192.168.7.0/24").contains(&ip)
}

impl World {
    fn new(sites: Vec<(IpAddr, Vec<ConnSpec>)>) -> World {
        let now = Instant::now();
        let mut w = World {
            sites: Vec::new(),
            now,
            in_flight: Vec::new(),
            seq: 0,
            nat_out: HashMap::new(),
            nat_in: HashMap::new(),
            nat_dropped: 0,
            sent: Vec::new(),
        };
        for (ip, specs) in sites {
            let mut core = Core::new(500, 4500);
            for s in specs {
                core.add(now, s, &NoMeter).unwrap();
            }
            w.sites.push(Site {
                core,
                plane: Plane::default(),
                traffic: Traffic::default(),
                ip,
            });
        }
        w.settle();
        w
    }

    fn settle(&mut self) {
        for i in 0..self.sites.len() {
            while let Some(cmd) = self.sites[i].core.poll_command() {
                let p = &mut self.sites[i].plane;
                match cmd {
                    Command::InstallChild {
                        local_spi,
                        outbound,
                        peer,
                        ..
                    } => {
                        p.children.insert(local_spi, (outbound.spi(), peer));
                    }
                    Command::Protect { net, local_spi } => {
                        p.protect.insert(net, local_spi);
                    }
                    Command::RemoveChild { local_spi } => {
                        p.children.remove(&local_spi);
                    }
                    Command::MoveChild { local_spi, peer } => {
                        if let Some(c) = p.children.get_mut(&local_spi) {
                            c.1 = peer;
                        }
                    }
                    Command::Send(mut t) => {
                        if behind_the_nat(self.sites[i].ip) {
                            // Masquerade: a new public port per clinic address and port;
                            // the datagram leaves from the site's current address.
                            let from = SocketAddr::new(self.sites[i].ip, t.from.port());
                            let n = self.nat_out.len() as u16;
                            let public = *self.nat_out.entry(from).or_insert(30000 + n);
                            self.nat_in.insert((public, t.to), from);
                            t.from = SocketAddr::new(NAT_PUBLIC, public);
                        }
                        self.sent.push((i, t.clone()));
                        if t.bytes != [0xff] {
                            self.seq += 1;
                            self.in_flight.push((self.now + LATENCY, self.seq, t));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn deliver(&mut self, mut t: Transmit) {
        if t.to.ip() == NAT_PUBLIC {
            let Some(inside) = self.nat_in.get(&(t.to.port(), t.from)).copied() else {
                self.nat_dropped += 1;
                return;
            };
            t.to = inside;
        }
        let now = self.now;
        if let Some(s) = self.sites.iter_mut().find(|s| s.ip == t.to.ip()) {
            s.core
                .handle_datagram(now, t.from, t.to, &t.bytes, &NoMeter);
        }
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
                let (_, _, t) = self.in_flight.remove(0);
                self.deliver(t);
            } else {
                let now = self.now;
                for s in &mut self.sites {
                    s.core.handle_timeout(now, &s.traffic);
                }
            }
        }
        self.now = end;
        self.settle();
    }

    fn trap(&mut self, site: usize, dst: &str) {
        let now = self.now;
        let dst: IpAddr = dst.parse().unwrap();
        let selector = self.sites[site].core.status(now, &NoMeter)[0].name.clone();
        let _ = selector;
        self.sites[site]
            .core
            .handle_trap_hit(now, IpNet::from(dst), dst, &NoMeter);
        self.settle();
    }

    fn state(&self, site: usize, conn: &str) -> (String, String) {
        let st = self.sites[site].core.status(self.now, &NoMeter);
        let c = st
            .iter()
            .find(|c| c.name == conn)
            .expect("no such connection");
        (c.state.clone(), c.remote.clone())
    }
}

/// The hospital: a lab on a fixed address first (so the lobby's IKE_SA_INIT is
/// built from the lab's connection), then the clinic it knows no address of.
fn hospital(pki: &Pki) -> Vec<ConnSpec> {
    vec![
        spec(
            pki,
            "lab",
            "hosp.example",
            "hosp.example",
            "lab.example",
            HOSP,
            Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 50))),
            "10.1.0.0/16",
            "10.5.0.0/16",
            Start::None,
        ),
        spec(
            pki,
            "clinic",
            "hosp.example",
            "hosp.example",
            "clinic.example",
            HOSP,
            None,
            "10.1.0.0/16",
            "10.9.0.0/16",
            Start::Trap,
        ),
    ]
}

fn clinic(pki: &Pki, cert_name: &str) -> Vec<ConnSpec> {
    vec![spec(
        pki,
        "hosp",
        "clinic.example",
        cert_name,
        "hosp.example",
        CLINIC_PRIVATE,
        Some(HOSP),
        "10.9.0.0/16",
        "10.1.0.0/16",
        Start::Trap,
    )]
}

#[test]
fn a_clinic_behind_a_nat_without_an_endpoint_reaches_the_hospital_and_is_answered() {
    let pki = Pki::new();
    let mut w = World::new(vec![
        (HOSP, hospital(&pki)),
        (CLINIC_PRIVATE, clinic(&pki, "clinic.example")),
    ]);
    assert_eq!(w.state(H, "clinic"), ("trap".into(), "any".into()));

    // The hospital cannot dial the clinic: nothing leaves, the trap stays.
    w.trap(H, "10.9.0.5");
    assert!(
        w.in_flight.is_empty(),
        "the hospital dialled a peer it has no address of"
    );
    let st = w.sites[H].core.status(w.now, &NoMeter);
    assert!(st[1]
        .last_error
        .as_deref()
        .unwrap()
        .contains("no known address"));

    // The clinic initiates from behind its NAT.
    w.trap(C, "10.1.0.5");
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.state(C, "hosp").0, "established");
    assert_eq!(
        w.state(H, "clinic"),
        ("established".into(), NAT_PUBLIC.to_string()),
        "the hospital's connection is the clinic's, at the NAT's address"
    );
    assert_eq!(
        w.state(H, "lab").0,
        "down",
        "the lab's connection is untouched"
    );

    // One child SA each, the two halves of one pair; the hospital's ESP goes to the
    // NAT's mapping of the clinic's NAT-T port, and it protects the clinic's subnet.
    let (h, c) = (&w.sites[H].plane, &w.sites[C].plane);
    assert_eq!((h.children.len(), c.children.len()), (1, 1));
    let (&h_in, &(h_out, h_peer)) = h.children.iter().next().unwrap();
    let (&c_in, &(c_out, c_peer)) = c.children.iter().next().unwrap();
    assert_eq!((h_out, c_out), (c_in, h_in));
    assert_eq!(h_peer.ip(), NAT_PUBLIC);
    assert_eq!(
        w.nat_in
            .get(&(h_peer.port(), SocketAddr::new(HOSP, 4500)))
            .map(|a| a.port()),
        Some(4500),
        "the hospital answers on the mapping of the clinic's port 4500"
    );
    assert_eq!(c_peer, SocketAddr::new(HOSP, 4500));
    assert_eq!(
        h.protect.get(&net("10.9.0.0/16")),
        Some(&h_in),
        "the hospital can answer"
    );
    assert_eq!(c.protect.get(&net("10.1.0.0/16")), Some(&c_in));
    assert_eq!(w.nat_dropped, 0);

    // The hospital's traffic now rides the clinic's IKE SA: no error, nothing dialled.
    let sent = w.sent.len();
    w.trap(H, "10.9.0.5");
    assert_eq!(w.sites[H].core.status(w.now, &NoMeter)[1].last_error, None);
    assert_eq!(w.sent.len(), sent);

    // The NAT mapping is held open by the clinic (RFC 3948 keepalives, 0xFF).
    let before = w
        .sent
        .iter()
        .filter(|(s, t)| *s == C && t.bytes == [0xff])
        .count();
    w.run_for(Duration::from_secs(45));
    let after = w
        .sent
        .iter()
        .filter(|(s, t)| *s == C && t.bytes == [0xff])
        .count();
    assert!(
        after > before,
        "the clinic behind the NAT sends no keepalives"
    );
    assert_eq!(w.state(H, "clinic").0, "established");
}

#[test]
fn a_valid_certificate_for_an_identity_no_connection_names_is_dropped_after_auth() {
    let pki = Pki::new();
    let stranger = spec(
        &pki,
        "hosp",
        "stranger.example",
        "stranger.example",
        "hosp.example",
        STRANGER,
        Some(HOSP),
        "10.7.0.0/16",
        "10.1.0.0/16",
        Start::Trap,
    );
    let mut w = World::new(vec![(HOSP, hospital(&pki)), (STRANGER, vec![stranger])]);
    w.trap(1, "10.1.0.5");
    w.run_for(Duration::from_secs(5));
    assert_ne!(w.state(1, "hosp").0, "established");
    let err = w.sites[1].core.status(w.now, &NoMeter)[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(err.contains("AuthenticationFailed"), "{err}");
    for conn in ["lab", "clinic"] {
        assert_ne!(w.state(H, conn).0, "established");
    }
    assert!(w.sites[H].plane.children.is_empty());
    // The hospital answered IKE_SA_INIT (it could not know yet) and then refused.
    assert!(w.sent.iter().any(|(s, _)| *s == H));
}

#[test]
fn a_clinic_claiming_an_identity_its_certificate_does_not_carry_is_dropped() {
    let pki = Pki::new();
    // Says "clinic.example" in IDi, but the certificate is issued to another name.
    let mut w = World::new(vec![
        (HOSP, hospital(&pki)),
        (CLINIC_PRIVATE, clinic(&pki, "other.example")),
    ]);
    w.trap(C, "10.1.0.5");
    w.run_for(Duration::from_secs(5));
    assert_ne!(w.state(C, "hosp").0, "established");
    assert_ne!(w.state(H, "clinic").0, "established");
    assert!(w.sites[H].plane.children.is_empty());
}

#[test]
fn a_psk_connection_still_answers_only_its_configured_address() {
    let pki = Pki::new();
    // The hospital's clinic connection with a PSK: not identified by certificate.
    let mut h = hospital(&pki);
    for s in &mut h {
        s.ike.remote_auth = RemoteAuth::Psk(b"k".to_vec());
        s.ike.local_auth = LocalAuth::Psk(b"k".to_vec());
    }
    let mut c = clinic(&pki, "clinic.example");
    c[0].ike.remote_auth = RemoteAuth::Psk(b"k".to_vec());
    c[0].ike.local_auth = LocalAuth::Psk(b"k".to_vec());
    let mut w = World::new(vec![(HOSP, h), (CLINIC_PRIVATE, c)]);
    w.trap(C, "10.1.0.5");
    w.run_for(Duration::from_secs(5));
    assert!(
        !w.sent.iter().any(|(s, _)| *s == H),
        "the hospital answered an unknown address"
    );
    assert_ne!(w.state(C, "hosp").0, "established");
}

/// A fresh IKE_SA_INIT request as a real initiator would send it.
fn ike_sa_init(pki: &Pki, from: SocketAddr) -> Vec<u8> {
    let s = &clinic(pki, "clinic.example")[0];
    let mut ep = dodvpn_ike::Endpoint::new(s.ike.clone());
    ep.connect(Instant::now(), from, SocketAddr::new(HOSP, 500))
        .unwrap();
    ep.poll_transmit().unwrap().bytes
}

#[test]
fn unknown_addresses_meet_the_cookie_defence_and_stop_being_answered_with_the_last_connection() {
    let pki = Pki::new();
    let mut core = Core::new(500, 4500);
    let now = Instant::now();
    for s in hospital(&pki) {
        core.add(now, s, &NoMeter).unwrap();
    }
    let local = SocketAddr::new(HOSP, 500);
    let mut answers = Vec::new();
    for n in 0..20u8 {
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 100 + n)), 500);
        core.handle_datagram(now, from, local, &ike_sa_init(&pki, from), &NoMeter);
        while let Some(cmd) = core.poll_command() {
            if let Command::Send(t) = cmd {
                answers.push(Message::parse(&t.bytes).unwrap());
            }
        }
    }
    assert_eq!(answers.len(), 20, "every IKE_SA_INIT is answered");
    let cookie = |m: &Message| matches!(m.payloads.as_slice(), [Payload::Notify(n)] if n.notify_type == NotifyType::Cookie);
    // Up to the threshold (16 half-open SAs) a real answer, then only COOKIEs.
    assert!(answers[..16].iter().all(|m| !cookie(m)));
    assert!(
        answers[16..].iter().all(cookie),
        "no COOKIE demanded past 16 half-open SAs"
    );

    // Without a connection identified by certificate, unknown addresses are ignored
    // (the lab's is one too: its peer also has a certificate identity).
    core.remove(now, "clinic", &NoMeter);
    core.remove(now, "lab", &NoMeter);
    while core.poll_command().is_some() {}
    let from = SocketAddr::new(STRANGER, 500);
    core.handle_datagram(now, from, local, &ike_sa_init(&pki, from), &NoMeter);
    assert!(
        std::iter::from_fn(|| core.poll_command()).all(|c| !matches!(c, Command::Send(_))),
        "answered an unknown address with no connection for peers from anywhere"
    );
}

#[derive(Default)]
struct Handshakes(std::sync::Mutex<Vec<(String, Role, HandshakeResult, Duration)>>);

impl Telemetry for Handshakes {
    fn handshake(&self, conn: &str, role: Role, result: HandshakeResult, took: Duration) {
        self.0
            .lock()
            .unwrap()
            .push((conn.into(), role, result, took));
    }
    fn rekey(&self, _: &str, _: RekeyKind) {}
}

/// A handshake that began in the lobby is counted for the connection its identity
/// picked, with its whole duration; one no identity picks is counted as unidentified.
#[test]
fn handshakes_through_the_lobby_reach_the_telemetry() {
    let pki = Pki::new();
    let mut w = World::new(vec![
        (HOSP, hospital(&pki)),
        (CLINIC_PRIVATE, clinic(&pki, "clinic.example")),
    ]);
    let seen = Arc::new(Handshakes::default());
    w.sites[H].core.set_telemetry(seen.clone());
    w.trap(C, "10.1.0.5");
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.state(H, "clinic").0, "established");
    {
        let got = seen.0.lock().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        let (conn, role, result, took) = &got[0];
        assert_eq!(
            (conn.as_str(), *role, *result),
            ("clinic", Role::Responder, HandshakeResult::Established)
        );
        // IKE_SA_INIT and IKE_AUTH: two round trips over the 5 ms links and the NAT.
        assert!(*took >= 2 * LATENCY, "{took:?}");
    }

    let stranger = spec(
        &pki,
        "hosp",
        "clinic.example",
        "other.example",
        "hosp.example",
        STRANGER,
        Some(HOSP),
        "10.7.0.0/16",
        "10.1.0.0/16",
        Start::Trap,
    );
    let mut w = World::new(vec![(HOSP, hospital(&pki)), (STRANGER, vec![stranger])]);
    let seen = Arc::new(Handshakes::default());
    w.sites[H].core.set_telemetry(seen.clone());
    w.trap(1, "10.1.0.5");
    w.run_for(Duration::from_secs(5));
    let got = seen.0.lock().unwrap();
    assert!(
        got.iter().any(|(c, role, r, _)| c == "(unidentified)"
            && *role == Role::Responder
            && *r == HandshakeResult::AuthFailed),
        "{got:?}"
    );
    assert!(!got
        .iter()
        .any(|(_, _, r, _)| *r == HandshakeResult::Established));
}

/// The session both ends report for a connection.
fn session(w: &World, site: usize, conn: &str) -> Option<String> {
    let st = w.sites[site].core.status(w.now, &NoMeter);
    st.into_iter().find(|c| c.name == conn)?.session
}

/// Where the site's only child SA sends its ESP.
fn esp_peer(w: &World, site: usize) -> SocketAddr {
    let p = &w.sites[site].plane;
    assert_eq!(p.children.len(), 1, "one child SA at site {site}");
    p.children.values().next().unwrap().1
}

/// The NAT's public address for `inside`'s NAT-T port.
fn mapping(w: &World, inside: IpAddr) -> SocketAddr {
    let port = w.nat_out[&SocketAddr::new(inside, 4500)];
    SocketAddr::new(NAT_PUBLIC, port)
}

/// The clinic, behind its NAT, up with the hospital: the world and the session.
fn clinic_up(hospital_mobike: bool) -> (World, String) {
    let pki = Pki::new();
    let mut hosp = hospital(&pki);
    for s in &mut hosp {
        s.ike.mobike = hospital_mobike;
    }
    let mut w = World::new(vec![
        (HOSP, hosp),
        (CLINIC_PRIVATE, clinic(&pki, "clinic.example")),
    ]);
    w.trap(C, "10.1.0.5");
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.state(H, "clinic").0, "established");
    let first = session(&w, C, "hosp").expect("a session");
    assert_eq!(session(&w, H, "clinic").as_ref(), Some(&first));
    assert_eq!(esp_peer(&w, H), mapping(&w, CLINIC_PRIVATE));
    (w, first)
}

/// The clinic, up behind its NAT, takes a new DHCP lease: its next datagrams leave
/// through a new NAT mapping.
fn clinic_up_then_new_lease(hospital_mobike: bool) -> (World, String) {
    let (mut w, first) = clinic_up(hospital_mobike);
    w.sites[C].ip = CLINIC_NEW_LEASE;
    let now = w.now;
    assert!(w.sites[C]
        .core
        .local_address_changed(now, "hosp", CLINIC_NEW_LEASE, &NoMeter));
    (w, first)
}

/// RFC 4555 (issue 19 item 4): with MOBIKE on both sides the clinic moves its IKE SA
/// with UPDATE_SA_ADDRESSES; the hospital's ESP follows to the new NAT mapping in one
/// round trip, and both ends keep the same session (no new IKE SA, no new child SA).
#[test]
fn a_new_address_moves_the_session_with_mobike() {
    let (mut w, first) = clinic_up_then_new_lease(true);
    let (h_in, c_in) = (
        *w.sites[H].plane.children.keys().next().unwrap(),
        *w.sites[C].plane.children.keys().next().unwrap(),
    );
    w.run_for(Duration::from_millis(100));
    let moved = mapping(&w, CLINIC_NEW_LEASE);
    assert_ne!(moved, mapping(&w, CLINIC_PRIVATE));
    assert_eq!(
        esp_peer(&w, H),
        moved,
        "the hospital's ESP goes to the clinic's new mapping"
    );
    assert_eq!(session(&w, C, "hosp").as_ref(), Some(&first));
    assert_eq!(session(&w, H, "clinic").as_ref(), Some(&first));
    assert_eq!(
        (
            *w.sites[H].plane.children.keys().next().unwrap(),
            *w.sites[C].plane.children.keys().next().unwrap()
        ),
        (h_in, c_in),
        "the child SAs stay"
    );
    assert!(
        !w.nat_out
            .contains_key(&SocketAddr::new(CLINIC_NEW_LEASE, 500)),
        "the update left over the NAT-T port, not a new IKE_SA_INIT on 500"
    );
    assert_eq!(
        w.state(H, "clinic"),
        ("established".into(), NAT_PUBLIC.to_string())
    );
    // Liveness and rekeying go on at the new addresses.
    w.run_for(Duration::from_secs(120));
    assert_eq!(session(&w, C, "hosp").as_ref(), Some(&first));
    assert_eq!(esp_peer(&w, H), moved);
}

/// A peer without MOBIKE (a standard router; here the hospital with it off): the
/// clinic cannot move the SA, so the session ends and the next packet starts a new
/// one from the new address; the hospital's ESP goes to the new mapping.
#[test]
fn without_mobike_a_new_address_reconnects_on_demand() {
    let (mut w, first) = clinic_up_then_new_lease(false);
    w.run_for(Duration::from_millis(100));
    assert_eq!(session(&w, C, "hosp"), None, "the old session ended");
    assert_eq!(w.state(C, "hosp").0, "trap", "armed for the next packet");
    w.trap(C, "10.1.0.5");
    w.run_for(Duration::from_secs(2));
    let second = session(&w, C, "hosp").expect("a new session");
    assert_ne!(second, first);
    assert_eq!(session(&w, H, "clinic").as_ref(), Some(&second));
    assert_eq!(esp_peer(&w, H), mapping(&w, CLINIC_NEW_LEASE));
}

/// The NAT's own public mapping of the clinic moves (its ISP gave it a new address;
/// the clinic's host sees nothing). The clinic keeps sending and nothing comes back:
/// after 2 s it sends one liveness check, which leaves through the new mapping; the
/// hospital follows it (RFC 7296 §2.23) and its ESP goes there, long before DPD's 30 s.
#[test]
fn a_moved_nat_mapping_is_found_by_a_liveness_check_when_nothing_comes_back() {
    let (mut w, first) = clinic_up(true);
    let old = esp_peer(&w, H);
    // The NAT forgets its mappings and hands out new ports.
    w.nat_out.clear();
    w.nat_in.clear();
    // (The model numbers ports by how many mappings it holds: these make the next new.)
    for p in 1..=5 {
        w.nat_out.insert(SocketAddr::new(STRANGER, p), 0);
    }
    let sent_before = w.sent.len();
    // 1 s of two-way traffic, then the clinic sends and nothing comes back.
    for _ in 0..4 {
        let t = &w.sites[C].traffic;
        t.packets_in.set(t.packets_in.get() + 10);
        t.packets_out.set(t.packets_out.get() + 10);
        w.run_for(Duration::from_millis(250));
    }
    assert_eq!(esp_peer(&w, H), old, "nothing has told the hospital yet");
    for _ in 0..12 {
        let t = &w.sites[C].traffic;
        t.packets_out.set(t.packets_out.get() + 10);
        w.run_for(Duration::from_millis(250));
    }
    let moved = esp_peer(&w, H);
    assert_ne!(
        moved, old,
        "the hospital's ESP still goes to the old mapping"
    );
    assert_eq!(moved, mapping(&w, CLINIC_PRIVATE));
    assert_eq!(
        session(&w, C, "hosp").as_ref(),
        Some(&first),
        "the same session"
    );
    assert_eq!(session(&w, H, "clinic").as_ref(), Some(&first));
    // One liveness check, not one per tick: the clinic sent few datagrams meanwhile.
    let ike_sent = w.sent[sent_before..]
        .iter()
        .filter(|(s, t)| *s == C && t.bytes != [0xff])
        .count();
    assert!(ike_sent <= 2, "{ike_sent} IKE datagrams from the clinic");
}

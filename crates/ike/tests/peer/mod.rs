//! A malicious but authenticated peer: a real handshake between two seeded
//! endpoints, then messages forged with the IKE SA's own keys, so that what is
//! behind the integrity check (IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL
//! contents) is reached. Shared by `tests/authenticated.rs` (proptest) and the
//! cargo-fuzz target `fuzz_targets/authenticated.rs`, which includes this file.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use dodvpn_ike::crypto::DhPrivate;
use dodvpn_ike::*;
use dodvpn_wire::{
    emit_encrypted, emit_payload_chain, locate_encrypted, parse_payload_chain, Auth, AuthMethod,
    CertEncoding, Certificate, Delete, DhGroup, ExchangeType, Flags, Identification, IkeHeader,
    KeyExchange, Notify, NotifyType, Payload, PayloadType, ProtocolId, TsRange,
};

pub const A: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
pub const B: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 500);

pub fn config(local: &str, remote: &str) -> Config {
    let mut c = Config::new(
        proposal::parse_ike_proposals(&["aes128gcm16-prfsha256-x25519", "aes256-sha256-x25519"])
            .unwrap(),
        proposal::parse_esp_proposals(&["aes128gcm16-x25519", "aes256gcm16"]).unwrap(),
        Identification::fqdn(local),
        LocalAuth::Psk(b"fuzz psk".to_vec()),
        RemoteAuth::Psk(b"fuzz psk".to_vec()),
    );
    c.remote_id = Some(Identification::fqdn(remote));
    c
}

/// Two seeded endpoints with one IKE SA and one child SA between them.
pub struct Established {
    pub a: Endpoint,
    pub b: Endpoint,
    pub now: Instant,
}

/// Deliver everything both sides send until they are quiet.
pub fn shuttle(a: &mut Endpoint, b: &mut Endpoint, now: Instant) {
    for _ in 0..64 {
        let mut any = false;
        while let Some(t) = a.poll_transmit() {
            any = true;
            b.handle(now, t.from, t.to, &t.bytes);
        }
        while let Some(t) = b.poll_transmit() {
            any = true;
            a.handle(now, t.from, t.to, &t.bytes);
        }
        if !any {
            return;
        }
    }
}

impl Established {
    pub fn new() -> Established {
        let now = Instant::now();
        let mut a = Endpoint::with_seed(config("a.example", "b.example"), 1);
        let mut b = Endpoint::with_seed(config("b.example", "a.example"), 2);
        a.connect(now, A, B).unwrap();
        shuttle(&mut a, &mut b, now);
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        let e = Established { a, b, now };
        assert_eq!(e.sa(true).state(), State::Established);
        assert_eq!(e.sa(false).state(), State::Established);
        e
    }

    pub fn endpoint(&mut self, a: bool) -> &mut Endpoint {
        if a {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// The (first) IKE SA of a or b.
    pub fn sa(&self, a: bool) -> &IkeSa {
        let e = if a { &self.a } else { &self.b };
        e.sa(e.sa_ids()[0]).unwrap()
    }
}

/// Seal a payload chain (`first` is its first payload type) as the peer of `sa` would.
pub fn seal_as_peer(
    sa: &IkeSa,
    exchange: ExchangeType,
    response: bool,
    msg_id: u32,
    first: PayloadType,
    chain: &[u8],
) -> Vec<u8> {
    let (spi_i, spi_r) = sa.spis();
    let keys = sa.keys().expect("keyed SA");
    let cipher = sa.suite().expect("keyed SA").cipher;
    // The peer sends with the keys of its role: SK_ei/ai if it is the initiator.
    let (ek, ak) = if sa.is_initiator() {
        (&keys.sk_er, &keys.sk_ar)
    } else {
        (&keys.sk_ei, &keys.sk_ai)
    };
    let header = IkeHeader::new(
        spi_i,
        spi_r,
        exchange,
        Flags::new(!sa.is_initiator(), response),
        msg_id,
    );
    let mut out = Vec::new();
    let loc = emit_encrypted(&header, &[], first, cipher.body_len(chain.len()), &mut out).unwrap();
    cipher
        .seal(
            ek,
            ak,
            &mut out,
            loc.body.start,
            chain,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
    out
}

/// Seal payloads as the peer of `sa` would.
pub fn seal_payloads(
    sa: &IkeSa,
    exchange: ExchangeType,
    response: bool,
    msg_id: u32,
    payloads: &[Payload],
) -> Vec<u8> {
    let mut chain = Vec::new();
    let first = emit_payload_chain(payloads, &mut chain).unwrap();
    seal_as_peer(sa, exchange, response, msg_id, first, &chain)
}

/// Open a message `sa` sent, as its peer: header and payloads (panics if it
/// does not authenticate or parse: `sa` must only send well-formed messages).
pub fn open_from(sa: &IkeSa, bytes: &[u8]) -> (IkeHeader, Vec<Payload>) {
    let header = IkeHeader::parse(bytes).unwrap();
    let keys = sa.keys().expect("keyed SA");
    let cipher = sa.suite().expect("keyed SA").cipher;
    let (ek, ak) = if sa.is_initiator() {
        (&keys.sk_ei, &keys.sk_ai)
    } else {
        (&keys.sk_er, &keys.sk_ar)
    };
    let loc = locate_encrypted(bytes).unwrap();
    let mut buf = bytes.to_vec();
    let range = cipher.open(ek, ak, &mut buf, loc.body.start).unwrap();
    let payloads = parse_payload_chain(loc.inner_next, &buf[range]).unwrap();
    (header, payloads)
}

// ---- the structure-aware driver ----------------------------------------------

/// Reads fuzz input; zeros once it runs out.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize % (max + 1)).min(self.0.len());
        let (v, rest) = self.0.split_at(n);
        self.0 = rest;
        v.to_vec()
    }
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.u8() as usize % from.len()]
    }
}

const NOTIFIES: &[NotifyType] = &[
    NotifyType::RekeySa,
    NotifyType::InvalidKePayload,
    NotifyType::NoProposalChosen,
    NotifyType::TemporaryFailure,
    NotifyType::ChildSaNotFound,
    NotifyType::AuthenticationFailed,
    NotifyType::InvalidSyntax,
    NotifyType::UpdateSaAddresses,
    NotifyType::Cookie2,
    NotifyType::NatDetectionSourceIp,
    NotifyType::NatDetectionDestinationIp,
    NotifyType::TsUnacceptable,
];

const GROUPS: &[DhGroup] = &[DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::None];

fn an_addr(u: &mut Input<'_>) -> IpAddr {
    if u.u8() & 1 == 0 {
        IpAddr::V4(Ipv4Addr::from(u.u32()))
    } else {
        IpAddr::V6(Ipv6Addr::from(u128::from(u.u32()) << 96))
    }
}

fn selectors(u: &mut Input<'_>) -> Vec<dodvpn_wire::TrafficSelector> {
    let n = u.u8() % 3;
    let mut v = Vec::new();
    for _ in 0..n {
        if u.u8() & 1 == 0 {
            v.push(TsRange::any(u.u8() & 1 == 1));
        } else {
            let (s, e) = (an_addr(u), an_addr(u));
            v.push(TsRange {
                ip_proto: u.pick(&[0, 1, 6, 17, 58]),
                start_port: u.u16(),
                end_port: u.u16(),
                start_addr: s,
                end_addr: if s.is_ipv4() == e.is_ipv4() { e } else { s },
            });
        }
    }
    dodvpn_ike::child::to_wire(&v)
}

/// One payload, mostly plausible (real proposals, KE values, SPIs of live child SAs).
fn payload(u: &mut Input<'_>, cfg: &Config, child_spis: &[u32]) -> Payload {
    let spi = |u: &mut Input<'_>| {
        if !child_spis.is_empty() && u.u8() & 1 == 0 {
            child_spis[u.u8() as usize % child_spis.len()]
        } else {
            u.u32()
        }
    };
    match u.u8() % 13 {
        0 => {
            let t = if u.u8() & 3 == 0 {
                NotifyType::from(u.u16())
            } else {
                u.pick(NOTIFIES)
            };
            if u.u8() & 1 == 0 {
                let s = spi(u);
                Payload::Notify(Notify::with_spi(ProtocolId::Esp, s, t, u.bytes(8)))
            } else {
                Payload::Notify(Notify::new(t, u.bytes(24)))
            }
        }
        1 => {
            let s = spi(u);
            Payload::Notify(Notify::with_spi(
                ProtocolId::Esp,
                s,
                NotifyType::RekeySa,
                vec![],
            ))
        }
        2 => match u.u8() % 3 {
            0 => Payload::Delete(Delete::ike()),
            _ => {
                let n = u.u8() % 3 + 1;
                let spis: Vec<u32> = (0..n).map(|_| spi(u)).collect();
                Payload::Delete(Delete::esp(&spis))
            }
        },
        3 => {
            let mut sa = if u.u8() & 1 == 0 {
                let s = spi(u);
                proposal::esp_sa_payload(&cfg.esp_proposals, s, u.u8() & 1 == 0)
            } else {
                proposal::ike_sa_payload(&cfg.ike_proposals, u.u32().to_be_bytes().repeat(2))
            };
            // Mutations: drop proposals or transforms, change an SPI's length.
            match u.u8() % 4 {
                0 if sa.proposals.len() > 1 => {
                    sa.proposals.truncate(1);
                }
                1 => {
                    if let Some(p) = sa.proposals.first_mut() {
                        let n = u.u8() as usize % (p.transforms.len() + 1);
                        p.transforms.truncate(n);
                    }
                }
                2 => {
                    if let Some(p) = sa.proposals.first_mut() {
                        p.spi = u.bytes(9);
                    }
                }
                _ => {}
            }
            Payload::SecurityAssociation(sa)
        }
        4 => {
            let group = u.pick(GROUPS);
            let data = match (u.u8() & 1, Group::from_id(group)) {
                (0, Some(g)) => DhPrivate::generate(g, &ring::rand::SystemRandom::new())
                    .unwrap()
                    .public_value()
                    .to_vec(),
                _ => u.bytes(70),
            };
            Payload::KeyExchange(KeyExchange { group, data })
        }
        5 => Payload::Nonce(if u.u8() & 1 == 0 {
            vec![u.u8(); 32]
        } else {
            u.bytes(40)
        }),
        6 => Payload::TsInitiator(selectors(u)),
        7 => Payload::TsResponder(selectors(u)),
        8 => {
            let id = Identification::fqdn(u.pick(&["a.example", "b.example", "x"]));
            if u.u8() & 1 == 0 {
                Payload::IdInitiator(id)
            } else {
                Payload::IdResponder(id)
            }
        }
        9 => Payload::Authentication(Auth {
            method: AuthMethod::from(u.u8()),
            data: u.bytes(48),
        }),
        10 => Payload::Certificate(Certificate {
            encoding: CertEncoding::from(u.u8()),
            data: u.bytes(48),
        }),
        11 => Payload::Unknown {
            payload_type: u.pick(&[1, 43, 47, 48, 200, 255]),
            body: u.bytes(16),
        },
        _ => Payload::Nonce(u.bytes(300)),
    }
}

/// A chain: structured payloads, or (rarely) raw bytes that may not parse.
fn chain(u: &mut Input<'_>, cfg: &Config, child_spis: &[u32]) -> (PayloadType, Vec<u8>) {
    if u.u8() % 8 == 0 {
        return (PayloadType::from(u.u8()), u.bytes(64));
    }
    let n = u.u8() % 6;
    let payloads: Vec<Payload> = (0..n).map(|_| payload(u, cfg, child_spis)).collect();
    let mut out = Vec::new();
    match emit_payload_chain(&payloads, &mut out) {
        Ok(first) => (first, out),
        Err(_) => (PayloadType::NoNextPayload, Vec::new()),
    }
}

const EXCHANGES: &[ExchangeType] = &[
    ExchangeType::CreateChildSa,
    ExchangeType::Informational,
    ExchangeType::CreateChildSa,
    ExchangeType::Informational,
    ExchangeType::IkeAuth,
    ExchangeType::Unknown(99),
];

/// Drive one side ("the victim") of an established SA with forged, authentic
/// messages from its peer, read from `data`. Panics (a finding) when the
/// victim panics, leaves an authentic request with the expected message ID
/// unanswered, answers anything else, changes its message IDs other than one
/// step per answered request, or sends a message its peer cannot open.
/// Returns how many forged requests were answered.
pub fn run(data: &[u8]) -> usize {
    let mut answered = 0;
    let mut u = Input(data);
    let mut e = Established::new();
    let victim = u.u8() & 1 == 0;
    let id = e.endpoint(victim).sa_ids()[0];
    let cfg = e.endpoint(victim).config().clone();
    let mut now = e.now;
    for _ in 0..24 {
        if u.is_empty() {
            break;
        }
        let Some(sa) = e.endpoint(victim).sa(id) else {
            break; // closed (e.g. the peer deleted it)
        };
        if sa.is_closed() {
            break;
        }
        let before = sa.message_ids();
        let live = matches!(
            sa.state(),
            State::Established | State::Rekeyed | State::Deleting
        );
        let child_spis: Vec<u32> = sa.children().iter().map(|c| c.remote_spi).collect();
        let op = u.u8() % 8;
        let ep = e.endpoint(victim);
        match op {
            // A request from the peer: expected ID, a retransmission, or anything.
            0..=4 => {
                let exchange = u.pick(EXCHANGES);
                let msg_id = match u.u8() % 6 {
                    0 => before.1.wrapping_sub(1),
                    1 => u.u32(),
                    _ => before.1,
                };
                let (first, body) = chain(&mut u, &cfg, &child_spis);
                let sa = ep.sa(id).unwrap();
                let bytes = seal_as_peer(sa, exchange, false, msg_id, first, &body);
                let (from, to) = addresses(sa);
                ep.handle(now, from, to, &bytes);
                let answers = drain_answers(ep, id, msg_id);
                if msg_id == before.1 && live {
                    assert_eq!(answers, 1, "request {msg_id} answered once");
                    answered += 1;
                    if let Some(s) = ep.sa(id) {
                        assert_eq!(s.message_ids().1, before.1.wrapping_add(1));
                    }
                } else if msg_id == before.1.wrapping_sub(1) {
                    assert!(answers <= 1, "a retransmission gets the cached answer");
                } else {
                    assert_eq!(
                        answers, 0,
                        "request {msg_id} (expecting {}) ignored",
                        before.1
                    );
                }
            }
            // A response to the victim's outstanding request (or a stray one).
            5 => {
                let msg_id = if u.u8() & 3 == 0 {
                    u.u32()
                } else {
                    before.0.wrapping_sub(1)
                };
                let exchange = u.pick(EXCHANGES);
                let (first, body) = chain(&mut u, &cfg, &child_spis);
                let sa = ep.sa(id).unwrap();
                let bytes = seal_as_peer(sa, exchange, true, msg_id, first, &body);
                let (from, to) = addresses(sa);
                ep.handle(now, from, to, &bytes);
                assert_eq!(
                    drain_answers(ep, id, msg_id),
                    0,
                    "responses are not answered"
                );
                if let Some(s) = ep.sa(id) {
                    assert_eq!(
                        s.message_ids().1,
                        before.1,
                        "a response never moves the peer's ID"
                    );
                }
            }
            // The victim starts something.
            6 => {
                let spi = ep.sa(id).unwrap().children().first().map(|c| c.local_spi);
                match u.u8() % 5 {
                    0 => ep.send_liveness(now, id),
                    1 => ep.create_child(now, id),
                    2 => ep.rekey_child(now, id, spi.unwrap_or(0)),
                    3 => ep.rekey_ike(now, id),
                    _ => ep.delete_child(now, id, spi.unwrap_or(0)),
                };
                drain_answers(ep, id, u32::MAX);
            }
            // Time passes.
            _ => {
                now += Duration::from_millis(u64::from(u.u16()) * 10);
                ep.handle_timeout(now);
                drain_answers(ep, id, u32::MAX);
            }
        }
        while e.endpoint(victim).poll_event().is_some() {}
    }
    let ep = e.endpoint(victim);
    ep.handle_timeout(now + Duration::from_secs(3600));
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    answered
}

/// Where the peer sends from and to (the victim may have floated to 4500).
fn addresses(sa: &IkeSa) -> (SocketAddr, SocketAddr) {
    let (local, remote, _) = sa.addresses();
    (remote, local)
}

/// Drain the victim's transmits. Every one of the victim's own SA must open
/// with the SA's keys and parse; returns how many are responses with `msg_id`,
/// and asserts there is no response with any other ID.
fn drain_answers(ep: &mut Endpoint, id: SaId, msg_id: u32) -> usize {
    let (spis, keyed) = match ep.sa(id) {
        Some(s) => (Some(s.spis()), s.keys().is_some()),
        None => (None, false),
    };
    let mut sent = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        sent.push(t);
    }
    let Some(sa) = ep.sa(id) else {
        return sent
            .iter()
            .filter_map(|t| IkeHeader::parse(&t.bytes).ok())
            .filter(|h| h.flags.response() && h.message_id == msg_id)
            .count();
    };
    let mut answers = 0;
    for t in &sent {
        let Ok(h) = IkeHeader::parse(&t.bytes) else {
            continue; // NAT keepalive
        };
        if Some((h.spi_i, h.spi_r)) != spis || !keyed {
            continue; // a rekeyed successor's message
        }
        let (h, _payloads) = open_from(sa, &t.bytes);
        if h.flags.response() {
            assert_eq!(
                h.message_id, msg_id,
                "a response to a request that was not made"
            );
            answers += 1;
        }
    }
    answers
}

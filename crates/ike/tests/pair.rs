//! In-memory two-endpoint harness (as quinn-proto's tests/util.rs) with a
//! fake clock that can drop, delay, duplicate and reorder datagrams.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dodvpn_ike::*;
use dodvpn_wire::{Identification, IkeHeader, TsRange};

pub const A_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
pub const B_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

/// What the network does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
    Delay(Duration),
}

pub struct Packet {
    pub at: Instant,
    pub seq: u64,
    pub t: Transmit,
}

pub type Filter = Box<dyn FnMut(&Transmit, Option<IkeHeader>) -> Fate>;

pub struct Pair {
    pub a: Endpoint,
    pub b: Endpoint,
    pub now: Instant,
    pub in_flight: Vec<Packet>,
    pub filter: Filter,
    pub a_events: Vec<Event>,
    pub b_events: Vec<Event>,
    /// Every IKE datagram delivered, with its destination ('a' or 'b').
    pub log: Vec<(char, Transmit)>,
    pub latency: Duration,
    seq: u64,
}

impl Pair {
    pub fn new(a: Config, b: Config) -> Pair {
        Pair::with(Endpoint::new(a), Endpoint::new(b))
    }

    /// Endpoints with seeded nonces and SPIs: a run can be replayed.
    pub fn seeded(a: Config, b: Config, seed_a: u64, seed_b: u64) -> Pair {
        Pair::with(
            Endpoint::with_seed(a, seed_a),
            Endpoint::with_seed(b, seed_b),
        )
    }

    fn with(a: Endpoint, b: Endpoint) -> Pair {
        Pair {
            a,
            b,
            now: Instant::now(),
            in_flight: Vec::new(),
            filter: Box::new(|_, _| Fate::Deliver),
            a_events: Vec::new(),
            b_events: Vec::new(),
            log: Vec::new(),
            latency: Duration::from_millis(5),
            seq: 0,
        }
    }

    pub fn a_addr() -> SocketAddr {
        SocketAddr::new(A_IP, 500)
    }
    pub fn b_addr() -> SocketAddr {
        SocketAddr::new(B_IP, 500)
    }

    pub fn connect(&mut self) -> SaId {
        let id = self
            .a
            .connect(self.now, Self::a_addr(), Self::b_addr())
            .unwrap();
        self.drive();
        id
    }

    fn collect(&mut self) {
        loop {
            let mut any = false;
            while let Some(t) = self.a.poll_transmit() {
                any = true;
                self.enqueue(t);
            }
            while let Some(t) = self.b.poll_transmit() {
                any = true;
                self.enqueue(t);
            }
            while let Some(e) = self.a.poll_event() {
                any = true;
                self.a_events.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                any = true;
                self.b_events.push(e);
            }
            if !any {
                break;
            }
        }
    }

    fn enqueue(&mut self, t: Transmit) {
        if t.bytes == [0xff] {
            return; // NAT keepalive: the I/O layer's business
        }
        let h = IkeHeader::parse(&t.bytes).ok();
        let fate = (self.filter)(&t, h);
        let at = self.now + self.latency;
        self.seq += 1;
        match fate {
            Fate::Drop => {}
            Fate::Deliver => self.in_flight.push(Packet {
                at,
                seq: self.seq,
                t,
            }),
            Fate::Duplicate => {
                self.in_flight.push(Packet {
                    at,
                    seq: self.seq,
                    t: t.clone(),
                });
                self.seq += 1;
                self.in_flight.push(Packet {
                    at,
                    seq: self.seq,
                    t,
                });
            }
            Fate::Delay(d) => self.in_flight.push(Packet {
                at: at + d,
                seq: self.seq,
                t,
            }),
        }
    }

    /// Deliver one datagram to whichever endpoint owns its destination IP.
    pub fn deliver(&mut self, t: Transmit) {
        let now = self.now;
        if t.to.ip() == A_IP {
            self.log.push(('a', t.clone()));
            self.a.handle(now, t.from, t.to, &t.bytes);
        } else if t.to.ip() == B_IP {
            self.log.push(('b', t.clone()));
            self.b.handle(now, t.from, t.to, &t.bytes);
        }
    }

    /// Run until nothing is in flight and no timer is due before `horizon` from now.
    pub fn drive_for(&mut self, horizon: Duration) {
        let end = self.now + horizon;
        for _ in 0..100_000 {
            self.collect();
            self.in_flight.sort_by_key(|p| (p.at, p.seq));
            let next_pkt = self.in_flight.first().map(|p| p.at);
            let next_timer = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let next = [next_pkt, next_timer].into_iter().flatten().min();
            let Some(next) = next else { return };
            if next > end {
                return;
            }
            if next > self.now {
                self.now = next;
            }
            if next_pkt == Some(next) {
                let p = self.in_flight.remove(0);
                self.deliver(p.t);
            } else {
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
        }
        panic!("harness did not settle");
    }

    /// Run the exchanges in flight (short horizon: DPD timers stay idle).
    pub fn drive(&mut self) {
        self.drive_for(Duration::from_secs(10));
    }

    pub fn child_ups(events: &[Event]) -> Vec<ChildSaInfo> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaUp(i) => Some(i.clone()),
                _ => None,
            })
            .collect()
    }
}

// ---- configurations ---------------------------------------------------------

pub fn psk_config(ike: &[&str], esp: &[&str], local: &str, remote: &str, psk: &[u8]) -> Config {
    let mut c = Config::new(
        proposal::parse_ike_proposals(ike).unwrap(),
        proposal::parse_esp_proposals(esp).unwrap(),
        Identification::fqdn(local),
        LocalAuth::Psk(psk.to_vec()),
        RemoteAuth::Psk(psk.to_vec()),
    );
    c.remote_id = Some(Identification::fqdn(remote));
    c
}

pub fn psk_pair(ike: &str) -> Pair {
    let mut a = psk_config(
        &[ike],
        &["aes128gcm16"],
        "a.example",
        "b.example",
        b"secret psk",
    );
    a.local_ts = vec![TsRange::from_net(
        "10.1.0.0/16".parse().unwrap(),
        0,
        0..=65535,
    )];
    a.remote_ts = vec![TsRange::from_net(
        "10.2.0.0/16".parse().unwrap(),
        0,
        0..=65535,
    )];
    let mut b = psk_config(
        &[ike],
        &["aes128gcm16"],
        "b.example",
        "a.example",
        b"secret psk",
    );
    b.local_ts = a.remote_ts.clone();
    b.remote_ts = a.local_ts.clone();
    Pair::new(a, b)
}

pub struct Identity {
    pub cert_der: Vec<u8>,
    pub pkcs8: Vec<u8>,
    /// How an RSA key signs (ignored for EC keys).
    pub rsa_scheme: RsaScheme,
}

/// The key types of the fixed identities in tests/data (see its README).
#[derive(Clone, Copy)]
pub enum KeyAlg {
    P256,
    P384,
    Ed25519,
}

pub fn make_identity(name: &str) -> Identity {
    make_identity_for(name, KeyAlg::P256)
}

/// A fixed self-signed identity for `name` ("a.example", "b.example" or "e.example"),
/// made once with openssl (tests/data/README.md).
pub fn make_identity_for(name: &str, alg: KeyAlg) -> Identity {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let alg = match alg {
        KeyAlg::P256 => "p256",
        KeyAlg::P384 => "p384",
        KeyAlg::Ed25519 => "ed25519",
    };
    let who = name
        .strip_suffix(".example")
        .expect("a fixture name: a/b/e.example");
    let read = |ext: &str| {
        std::fs::read(format!("{dir}/{alg}-{who}.{ext}"))
            .unwrap_or_else(|e| panic!("fixture {alg}-{who}.{ext}: {e}"))
    };
    Identity {
        cert_der: read("crt.der"),
        pkcs8: read("pk8"),
        rsa_scheme: RsaScheme::Pkcs1Sha256,
    }
}

/// RSA-2048 identities made with openssl (ring cannot generate RSA keys), see
/// tests/data/README.md: `which` is "a" (rsa-a.example) or "b" (rsa-b.example).
pub fn rsa_identity(which: &str, scheme: RsaScheme) -> Identity {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    Identity {
        cert_der: std::fs::read(format!("{dir}/rsa-{which}.crt.der")).unwrap(),
        pkcs8: std::fs::read(format!("{dir}/rsa-{which}.pk8")).unwrap(),
        rsa_scheme: scheme,
    }
}

/// Accepts exactly one certificate (by DER), or refuses everything.
pub struct PinValidator {
    pub accept: Option<Vec<u8>>,
}

impl PeerValidator for PinValidator {
    fn validate(&self, der: &[u8], _id: &Identification) -> Result<(), String> {
        match &self.accept {
            Some(d) if d == der => Ok(()),
            _ => Err("certificate not trusted".into()),
        }
    }
}

pub fn cert_config(
    ike: &str,
    me: &Identity,
    my_name: &str,
    peer: &Identity,
    peer_name: &str,
    trust: bool,
) -> Config {
    let mut c = Config::new(
        proposal::parse_ike_proposals(&[ike]).unwrap(),
        proposal::parse_esp_proposals(&["aes256gcm16"]).unwrap(),
        Identification::fqdn(my_name),
        LocalAuth::Cert {
            cert_der: me.cert_der.clone(),
            signer: signer_from_pkcs8(&me.pkcs8, me.rsa_scheme).unwrap(),
        },
        RemoteAuth::Cert(Arc::new(PinValidator {
            accept: trust.then(|| peer.cert_der.clone()),
        })),
    );
    c.remote_id = Some(Identification::fqdn(peer_name));
    c
}

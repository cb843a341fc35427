//! The provider relay's forwarding table (issue 19 item 3), without I/O.
//!
//! Two sites behind symmetric NATs (or CGNAT) cannot punch a hole to each other:
//! their NATs pick a new public port for every destination. Both can reach the relay,
//! though. The centre allocates a relay session for the pair and hands each side a
//! *binding*: a datagram signed with a secret only the centre and the relay hold.
//! Each side sends its binding to the relay from its NAT-T port; the relay learns
//! the NAT's mapping of each side from it, and from then on forwards every datagram
//! from one side to the other unchanged — IKE with its non-ESP marker, ESP-in-UDP,
//! NAT keepalives. It holds no key of theirs and cannot read or alter what it forwards
//! (ESP and IKE are integrity-protected end to end).
//!
//! Binding (62 bytes): `"DODR"` · version 1 · expiry (Unix seconds, u64 BE) ·
//! allocation id (16 bytes) · side (0 or 1) · HMAC-SHA-256 over all of the above.
//! An ESP packet's SPI could start with "DODR"; it is still forwarded unless the
//! whole datagram is a binding whose MAC verifies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ring::hmac;

pub mod reflect;

pub const MAGIC: [u8; 4] = *b"DODR";
pub const VERSION: u8 = 1;
pub const BINDING_LEN: usize = 4 + 1 + 8 + 16 + 1 + 32;
/// Allocations a relay holds at most; more are refused until some expire.
pub const MAX_ALLOCATIONS: usize = 4096;
/// An allocation whose sides have sent nothing this long is forgotten (both sides
/// send NAT keepalives every 20 s while their SA is up).
pub const IDLE: Duration = Duration::from_secs(300);

/// What a binding says: which allocation and which side of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Unix seconds after which the binding is refused.
    pub expires: u64,
    pub alloc: [u8; 16],
    /// 0 or 1: the two ends of the allocation.
    pub side: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("not a relay binding")]
    NotABinding,
    #[error("relay binding version {0} is not supported (1 is)")]
    Version(u8),
    #[error("relay binding for side {0}: only 0 and 1 exist")]
    Side(u8),
    #[error("relay binding not signed by the centre (MAC mismatch)")]
    Mac,
    #[error("relay binding expired")]
    Expired,
}

impl Binding {
    /// The binding datagram, signed with `secret` (the centre does this).
    pub fn seal(&self, secret: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(BINDING_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.extend_from_slice(&self.alloc);
        out.push(self.side);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &out);
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Read and check a binding datagram at Unix time `now`. The MAC is checked in
    /// constant time (ring's `hmac::verify`) before anything it covers is believed.
    pub fn open(datagram: &[u8], secret: &[u8], now: u64) -> Result<Binding, BindError> {
        if datagram.len() != BINDING_LEN || datagram[..4] != MAGIC {
            return Err(BindError::NotABinding);
        }
        let (body, tag) = datagram.split_at(BINDING_LEN - 32);
        hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), body, tag)
            .map_err(|_| BindError::Mac)?;
        if body[4] != VERSION {
            return Err(BindError::Version(body[4]));
        }
        let expires = u64::from_be_bytes(body[5..13].try_into().expect("8 bytes"));
        let mut alloc = [0u8; 16];
        alloc.copy_from_slice(&body[13..29]);
        let side = body[29];
        if side > 1 {
            return Err(BindError::Side(side));
        }
        if now > expires {
            return Err(BindError::Expired);
        }
        Ok(Binding {
            expires,
            alloc,
            side,
        })
    }
}

/// What to do with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send it, unchanged, to this address (the other side).
    Forward(SocketAddr),
    /// It was a reflector probe: send this answer back to `from`.
    Reflect(Vec<u8>),
    /// It was a binding: `from` is now this side of the allocation.
    Bound {
        alloc: [u8; 16],
        side: u8,
        /// Whether the other side is bound too (forwarding works both ways now).
        complete: bool,
    },
    Drop(DropReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// From an address no binding names.
    Unbound,
    /// The other side has not bound yet.
    PeerNotBound,
    /// A binding that does not verify, or expired.
    BadBinding(BindError),
    /// Too many allocations.
    Full,
}

struct Alloc {
    sides: [Option<SocketAddr>; 2],
    expires: u64,
    last_seen: Instant,
}

/// Counters, for the operator's log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub allocations: usize,
    pub forwarded_datagrams: u64,
    pub forwarded_bytes: u64,
    pub dropped: u64,
    pub probes_answered: u64,
}

/// The relay's table: allocations and which address is which side of which.
pub struct Relay {
    secret: Vec<u8>,
    allocs: HashMap<[u8; 16], Alloc>,
    by_addr: HashMap<SocketAddr, ([u8; 16], u8)>,
    stats: Stats,
}

impl Relay {
    pub fn new(secret: Vec<u8>) -> Relay {
        Relay {
            secret,
            allocs: HashMap::new(),
            by_addr: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// One datagram from `from` at `now` (Unix time `unix`).
    pub fn handle(&mut self, now: Instant, unix: u64, from: SocketAddr, datagram: &[u8]) -> Action {
        let action = self.decide(now, unix, from, datagram);
        match &action {
            Action::Forward(_) => {
                self.stats.forwarded_datagrams += 1;
                self.stats.forwarded_bytes += datagram.len() as u64;
            }
            Action::Drop(_) => self.stats.dropped += 1,
            Action::Reflect(_) => self.stats.probes_answered += 1,
            Action::Bound { .. } => {}
        }
        action
    }

    fn decide(&mut self, now: Instant, unix: u64, from: SocketAddr, datagram: &[u8]) -> Action {
        // Answered from bound sides too: an agent whose relayed SA is up still probes
        // its mapping (a probe is never ESP, see `reflect`).
        if let Some(nonce) = reflect::probe_nonce(datagram) {
            return Action::Reflect(reflect::answer(nonce, from));
        }
        if datagram.len() == BINDING_LEN && datagram[..4] == MAGIC {
            match Binding::open(datagram, &self.secret, unix) {
                Ok(b) => return self.bind(now, from, b),
                // From a bound side, a datagram that only looks like a binding is its
                // traffic (an ESP SPI may spell "DODR").
                Err(e) if !self.by_addr.contains_key(&from) => {
                    return Action::Drop(DropReason::BadBinding(e))
                }
                Err(_) => {}
            }
        }
        let Some((id, side)) = self.by_addr.get(&from).copied() else {
            return Action::Drop(DropReason::Unbound);
        };
        let Some(a) = self.allocs.get_mut(&id) else {
            return Action::Drop(DropReason::Unbound);
        };
        a.last_seen = now;
        match a.sides[usize::from(1 - side)] {
            Some(to) => Action::Forward(to),
            None => Action::Drop(DropReason::PeerNotBound),
        }
    }

    fn bind(&mut self, now: Instant, from: SocketAddr, b: Binding) -> Action {
        if !self.allocs.contains_key(&b.alloc) && self.allocs.len() >= MAX_ALLOCATIONS {
            return Action::Drop(DropReason::Full);
        }
        // An address is one side of one allocation: a rebinding moves it.
        if let Some((old, side)) = self.by_addr.remove(&from) {
            if let Some(a) = self.allocs.get_mut(&old) {
                a.sides[usize::from(side)] = None;
            }
        }
        let a = self.allocs.entry(b.alloc).or_insert(Alloc {
            sides: [None, None],
            expires: b.expires,
            last_seen: now,
        });
        a.expires = a.expires.max(b.expires);
        a.last_seen = now;
        // The side's NAT mapping changed: the old address no longer speaks for it.
        if let Some(prev) = a.sides[usize::from(b.side)].replace(from) {
            if prev != from {
                self.by_addr.remove(&prev);
            }
        }
        self.by_addr.insert(from, (b.alloc, b.side));
        Action::Bound {
            alloc: b.alloc,
            side: b.side,
            complete: a.sides.iter().all(Option::is_some),
        }
    }

    /// Forget allocations that expired or went idle.
    pub fn expire(&mut self, now: Instant, unix: u64) {
        let gone: Vec<[u8; 16]> = self
            .allocs
            .iter()
            .filter(|(_, a)| unix > a.expires || now.saturating_duration_since(a.last_seen) > IDLE)
            .map(|(k, _)| *k)
            .collect();
        for id in gone {
            if let Some(a) = self.allocs.remove(&id) {
                for addr in a.sides.into_iter().flatten() {
                    self.by_addr.remove(&addr);
                }
            }
        }
    }

    pub fn stats(&self) -> Stats {
        Stats {
            allocations: self.allocs.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"centre and relay only";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn binding(side: u8, expires: u64) -> Vec<u8> {
        Binding {
            expires,
            alloc: [7; 16],
            side,
        }
        .seal(SECRET)
    }

    #[test]
    fn two_bound_sides_are_forwarded_to_each_other_and_nobody_else() {
        let mut r = Relay::new(SECRET.to_vec());
        let now = Instant::now();
        let (a, b, stranger) = (
            addr("203.0.113.5:40001"),
            addr("198.51.100.9:51234"),
            addr("192.0.2.66:4500"),
        );
        assert_eq!(
            r.handle(now, 10, a, b"esp"),
            Action::Drop(DropReason::Unbound)
        );
        assert_eq!(
            r.handle(now, 10, a, &binding(0, 100)),
            Action::Bound {
                alloc: [7; 16],
                side: 0,
                complete: false
            }
        );
        assert_eq!(
            r.handle(now, 10, a, b"esp"),
            Action::Drop(DropReason::PeerNotBound)
        );
        assert_eq!(
            r.handle(now, 10, b, &binding(1, 100)),
            Action::Bound {
                alloc: [7; 16],
                side: 1,
                complete: true
            }
        );
        assert_eq!(r.handle(now, 10, a, b"\0\0\0\0ike"), Action::Forward(b));
        assert_eq!(r.handle(now, 10, b, &[0xff]), Action::Forward(a));
        assert_eq!(
            r.handle(now, 10, stranger, b"esp"),
            Action::Drop(DropReason::Unbound)
        );
        let s = r.stats();
        assert_eq!(
            (s.allocations, s.forwarded_datagrams, s.forwarded_bytes),
            (1, 2, 8)
        );
    }

    #[test]
    fn a_new_nat_mapping_rebinds_the_side() {
        let mut r = Relay::new(SECRET.to_vec());
        let now = Instant::now();
        let (a, a2, b) = (
            addr("203.0.113.5:40001"),
            addr("203.0.113.5:40777"),
            addr("198.51.100.9:51234"),
        );
        r.handle(now, 10, a, &binding(0, 100));
        r.handle(now, 10, b, &binding(1, 100));
        r.handle(now, 10, a2, &binding(0, 100));
        assert_eq!(r.handle(now, 10, b, b"x"), Action::Forward(a2));
        assert_eq!(
            r.handle(now, 10, a, b"x"),
            Action::Drop(DropReason::Unbound)
        );
    }

    #[test]
    fn forged_expired_and_malformed_bindings_are_refused() {
        let mut r = Relay::new(SECRET.to_vec());
        let now = Instant::now();
        let a = addr("203.0.113.5:40001");
        let forged = Binding {
            expires: 100,
            alloc: [7; 16],
            side: 0,
        }
        .seal(b"another secret");
        assert_eq!(
            r.handle(now, 10, a, &forged),
            Action::Drop(DropReason::BadBinding(BindError::Mac))
        );
        assert_eq!(
            r.handle(now, 101, a, &binding(0, 100)),
            Action::Drop(DropReason::BadBinding(BindError::Expired))
        );
        let mut flipped = binding(0, 100);
        flipped[20] ^= 1;
        assert_eq!(Binding::open(&flipped, SECRET, 10), Err(BindError::Mac));
        assert_eq!(
            Binding::open(&binding(2, 100), SECRET, 10),
            Err(BindError::Side(2))
        );
        assert_eq!(
            Binding::open(b"DODR", SECRET, 10),
            Err(BindError::NotABinding)
        );
        assert_eq!(r.stats().allocations, 0);
    }

    #[test]
    fn idle_and_expired_allocations_are_forgotten() {
        let mut r = Relay::new(SECRET.to_vec());
        let now = Instant::now();
        let (a, b) = (addr("203.0.113.5:40001"), addr("198.51.100.9:51234"));
        r.handle(now, 10, a, &binding(0, 1000));
        r.handle(now, 10, b, &binding(1, 1000));
        r.expire(now + IDLE / 2, 20);
        assert_eq!(r.handle(now + IDLE / 2, 20, a, b"x"), Action::Forward(b));
        r.expire(now + IDLE / 2, 1001);
        assert_eq!(r.stats().allocations, 0);
        assert_eq!(
            r.handle(now, 20, a, b"x"),
            Action::Drop(DropReason::Unbound)
        );
    }

    #[test]
    fn probes_are_answered_whether_or_not_the_sender_is_bound() {
        let mut r = Relay::new(SECRET.to_vec());
        let now = Instant::now();
        let (a, b) = (addr("203.0.113.5:40001"), addr("198.51.100.9:51234"));
        let probe = reflect::probe([3; 12]);
        let answered = |act: Action| match act {
            Action::Reflect(bytes) => reflect::read_answer(&bytes[4..]),
            other => panic!("not answered: {other:?}"),
        };
        assert_eq!(answered(r.handle(now, 10, a, &probe)), Some(([3; 12], a)));
        r.handle(now, 10, a, &binding(0, 100));
        r.handle(now, 10, b, &binding(1, 100));
        assert_eq!(answered(r.handle(now, 10, a, &probe)), Some(([3; 12], a)));
        // Anything else from a bound side is still forwarded, probe-like or not.
        let mut esp = probe;
        esp[47] = 9;
        assert_eq!(r.handle(now, 10, a, &esp), Action::Forward(b));
        assert_eq!(r.stats().probes_answered, 2);
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_bind_or_forward(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut r = Relay::new(SECRET.to_vec());
            let a = addr("203.0.113.5:40001");
            let act = r.handle(Instant::now(), 10, a, &data);
            prop_assert!(matches!(act, Action::Drop(_)));
        }

        #[test]
        fn bindings_round_trip(expires in 10u64.., alloc in any::<[u8; 16]>(), side in 0u8..2) {
            let b = Binding { expires, alloc, side };
            prop_assert_eq!(Binding::open(&b.seal(SECRET), SECRET, 10), Ok(b));
        }
    }
}

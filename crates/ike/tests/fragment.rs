//! IKE fragmentation (RFC 7383) and certificate chains in IKE_AUTH, over the
//! in-memory Pair harness: a path that drops every datagram larger than its
//! MTU (as a path that drops IP fragments does), fragments reordered,
//! duplicated and lost, the negotiation itself, chains and CERTREQ.

mod pair;

use std::sync::{Arc, Mutex};

use dodvpn_ike::fragment::{self, Added, Fragment, Limits, Reassembler};
use dodvpn_ike::*;
use dodvpn_wire::{Identification, IkeHeader, Message, NotifyType, Payload, PayloadType};
use pair::*;
use proptest::prelude::*;

/// Accepts one end-entity certificate and records the chains it was shown.
struct ChainRecorder {
    accept: Vec<u8>,
    seen: Mutex<Vec<Vec<Vec<u8>>>>,
    hashes: Vec<[u8; 20]>,
}

impl PeerValidator for ChainRecorder {
    fn validate(&self, der: &[u8], id: &Identification) -> Result<(), String> {
        self.validate_chain(der, &[], id)
    }
    fn validate_chain(
        &self,
        der: &[u8],
        intermediates: &[&[u8]],
        _id: &Identification,
    ) -> Result<(), String> {
        self.seen
            .lock()
            .unwrap()
            .push(intermediates.iter().map(|d| d.to_vec()).collect());
        if der == self.accept {
            Ok(())
        } else {
            Err("not trusted".into())
        }
    }
    fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        self.hashes.clone()
    }
}

/// RSA-2048 identities on both sides, each sending `chain` after its
/// certificate (stand-ins for intermediates: any DER certificate will do to
/// make IKE_AUTH large), fragments of at most `size` bytes.
fn rsa_pair(size: usize, chain: usize) -> (Pair, Arc<ChainRecorder>, Arc<ChainRecorder>) {
    let a_id = rsa_identity("a", RsaScheme::Pkcs1Sha256);
    let b_id = rsa_identity("b", RsaScheme::Pkcs1Sha256);
    let filler = make_identity("e.example").cert_der;
    let rec = |peer: &Identity| {
        Arc::new(ChainRecorder {
            accept: peer.cert_der.clone(),
            seen: Mutex::new(Vec::new()),
            hashes: Vec::new(),
        })
    };
    let (ra, rb) = (rec(&b_id), rec(&a_id));
    let mut a = cert_config(
        "aes256gcm16-prfsha256-ecp256",
        &a_id,
        "rsa-a.example",
        &b_id,
        "rsa-b.example",
        true,
    );
    let mut b = cert_config(
        "aes256gcm16-prfsha256-ecp256",
        &b_id,
        "rsa-b.example",
        &a_id,
        "rsa-a.example",
        true,
    );
    a.remote_auth = RemoteAuth::Cert(ra.clone());
    b.remote_auth = RemoteAuth::Cert(rb.clone());
    for c in [&mut a, &mut b] {
        c.fragment_size = size;
        c.local_chain = vec![filler.clone(); chain];
    }
    (Pair::new(a, b), ra, rb)
}

/// The path drops any IP datagram (IPv4 + UDP headers counted) above `mtu`.
fn narrow_path(p: &mut Pair, mtu: usize) {
    p.filter = Box::new(move |t, _| {
        if t.bytes.len() + 28 > mtu {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
}

fn up(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::IkeSaUp { .. }))
}

fn is_fragment(bytes: &[u8]) -> bool {
    IkeHeader::parse(bytes).is_ok_and(|h| h.next_payload == PayloadType::EncryptedFragment)
}

#[test]
fn ike_auth_over_a_path_that_drops_ip_fragments() {
    let (mut p, ra, rb) = rsa_pair(576, 2);
    narrow_path(&mut p, 576);
    p.connect();
    assert!(up(&p.a_events), "initiator up: {:?}", p.a_events);
    assert!(up(&p.b_events), "responder up: {:?}", p.b_events);
    assert_eq!(Pair::child_ups(&p.a_events).len(), 1);
    // Both IKE_AUTH messages went as fragments, none larger than the budget.
    let frags: Vec<&(char, Transmit)> = p
        .log
        .iter()
        .filter(|(_, t)| is_fragment(&t.bytes))
        .collect();
    assert!(frags.iter().any(|(to, _)| *to == 'a'));
    assert!(frags.iter().any(|(to, _)| *to == 'b'));
    assert!(
        frags.len() >= 2 * 5,
        "two RSA certificates and two more each: {}",
        frags.len()
    );
    for (_, t) in &p.log {
        assert!(t.bytes.len() <= fragment::max_message_len(576, false, false));
    }
    // The chain arrived whole and in order on both sides.
    let filler = make_identity("e.example").cert_der;
    assert_eq!(ra.seen.lock().unwrap()[0], vec![filler.clone(); 2]);
    assert_eq!(rb.seen.lock().unwrap()[0], vec![filler; 2]);
}

#[test]
fn without_fragmentation_ike_auth_never_arrives() {
    let (mut p, _, _) = rsa_pair(576, 2);
    narrow_path(&mut p, 576);
    let mut b_cfg = p.b.config().clone();
    b_cfg.fragmentation = false;
    p.b = Endpoint::new(b_cfg);
    p.connect();
    p.drive_for(std::time::Duration::from_secs(60));
    assert!(!up(&p.a_events) && !up(&p.b_events));
    // Nothing fragmented: the responder did not announce support.
    assert!(!p.log.iter().any(|(_, t)| is_fragment(&t.bytes)));
}

#[test]
fn fragmentation_is_negotiated_in_ike_sa_init() {
    let (mut p, _, _) = rsa_pair(4000, 0);
    p.connect();
    let init: Vec<Message> = p
        .log
        .iter()
        .filter(|(_, t)| {
            IkeHeader::parse(&t.bytes)
                .is_ok_and(|h| h.exchange_type == dodvpn_wire::ExchangeType::IkeSaInit)
        })
        .map(|(_, t)| Message::parse(&t.bytes).unwrap())
        .collect();
    assert_eq!(init.len(), 2);
    for m in &init {
        assert!(m
            .find_notify(NotifyType::Ikev2FragmentationSupported)
            .is_some());
    }
    // Below the fragment size: IKE_AUTH stays one message each way.
    assert!(up(&p.a_events));
    assert!(!p.log.iter().any(|(_, t)| is_fragment(&t.bytes)));
}

#[test]
fn fragments_reordered_duplicated_and_lost_still_reassemble() {
    let (mut p, _, _) = rsa_pair(576, 2);
    let mut n = 0u32;
    p.filter = Box::new(move |t, _| {
        if !is_fragment(&t.bytes) {
            return Fate::Deliver;
        }
        n += 1;
        match n % 5 {
            0 => Fate::Duplicate,
            1 => Fate::Delay(std::time::Duration::from_millis(30)),
            // The third fragment sent is lost once: the retransmission brings it.
            3 if n == 3 => Fate::Drop,
            _ => Fate::Deliver,
        }
    });
    p.connect();
    assert!(up(&p.a_events), "{:?}", p.a_events);
    assert!(up(&p.b_events), "{:?}", p.b_events);
}

#[test]
fn no_fragmentation_notify_when_it_is_off() {
    // Fragmentation off on A: B sees no notify and answers without one.
    let (mut p, _, _) = rsa_pair(1280, 0);
    let mut a_cfg = p.a.config().clone();
    a_cfg.fragmentation = false;
    p.a = Endpoint::new(a_cfg);
    p.connect();
    assert!(up(&p.a_events));
    let init_resp = p
        .log
        .iter()
        .find(|(to, _)| *to == 'a')
        .map(|(_, t)| Message::parse(&t.bytes).unwrap())
        .unwrap();
    assert!(init_resp
        .find_notify(NotifyType::Ikev2FragmentationSupported)
        .is_none());
}

#[test]
fn certreq_is_sent_and_cuts_our_chain_at_the_named_ca() {
    let (mut p, ra, rb) = rsa_pair(1280, 0);
    let filler = make_identity("e.example").cert_der;
    let other = make_identity("b.example").cert_der;
    // A sends [filler, other]; B's CERTREQ names `other`, so A stops before it.
    let mut a_cfg = p.a.config().clone();
    a_cfg.local_chain = vec![filler.clone(), other.clone()];
    p.a = Endpoint::new(a_cfg);
    let mut b_cfg = p.b.config().clone();
    let rec = Arc::new(ChainRecorder {
        accept: rsa_identity("a", RsaScheme::Pkcs1Sha256).cert_der,
        seen: Mutex::new(Vec::new()),
        hashes: vec![auth::spki_sha1(&other).unwrap()],
    });
    b_cfg.remote_auth = RemoteAuth::Cert(rec.clone());
    p.b = Endpoint::new(b_cfg);
    let _ = (ra, rb);
    p.connect();
    assert!(up(&p.a_events) && up(&p.b_events));
    assert_eq!(rec.seen.lock().unwrap()[0], vec![filler]);
    // B's IKE_SA_INIT answer carried the CERTREQ.
    let init_resp = p
        .log
        .iter()
        .find(|(to, _)| *to == 'a')
        .map(|(_, t)| Message::parse(&t.bytes).unwrap())
        .unwrap();
    let cr = init_resp
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::CertificateRequest(c) => Some(c.clone()),
            _ => None,
        })
        .expect("CERTREQ");
    assert_eq!(cr.authorities, auth::spki_sha1(&other).unwrap().to_vec());
}

#[test]
fn too_many_certificates_are_refused() {
    let (mut p, _, _) = rsa_pair(1280, 5);
    p.connect();
    assert!(!up(&p.b_events));
    assert!(p
        .b_events
        .iter()
        .any(|e| matches!(e, Event::AuthFailed { reason, .. } if reason.contains("certificates"))));
}

// ---- the reassembler on its own ----------------------------------------------

proptest! {
    /// Any message cut at any size, its fragments given in any order with
    /// duplicates, comes back whole, exactly once.
    #[test]
    fn reassembly_restores_any_cut(
        msg in proptest::collection::vec(any::<u8>(), 1..4000),
        chunk in 1usize..700,
        order in proptest::collection::vec(any::<u16>(), 0..200),
        dups in proptest::collection::vec(any::<u16>(), 0..10),
    ) {
        let parts: Vec<&[u8]> = msg.chunks(chunk).collect();
        prop_assume!(parts.len() <= 64);
        let total = parts.len() as u16;
        let mut idx: Vec<usize> = (0..parts.len()).collect();
        for (i, o) in order.iter().enumerate() {
            let n = idx.len();
            idx.swap(i % n, *o as usize % n);
        }
        // Duplicates of fragments already given, before the one that completes it
        // (after completion a duplicate starts a new message: the IKE SA's message
        // IDs tell it is old).
        let last = idx.pop().expect("one part at least");
        let mut seq = idx.clone();
        if !idx.is_empty() {
            seq.extend(dups.iter().map(|d| idx[*d as usize % idx.len()]));
        }
        seq.push(last);
        let now = std::time::Instant::now();
        let mut r = Reassembler::new(Limits::default());
        let mut done = Vec::new();
        for i in seq {
            let f = Fragment {
                message_id: 7,
                number: i as u16 + 1,
                total,
                inner_next: if i == 0 { PayloadType::IdInitiator } else { PayloadType::NoNextPayload },
                plain: parts[i].to_vec(),
            };
            match r.add(now, f) {
                Added::Complete(first, bytes) => done.push((first, bytes)),
                Added::Incomplete => {}
                Added::Refused(why) => prop_assert!(false, "refused: {why}"),
            }
        }
        prop_assert_eq!(done, vec![(PayloadType::IdInitiator, msg.clone())]);
    }

    /// Arbitrary fragments never panic the reassembler, and nothing it gives
    /// back exceeds the limits.
    #[test]
    fn reassembly_respects_limits(
        frags in proptest::collection::vec(
            (0u32..3, 0u16..12, 0u16..12, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)),
            0..60,
        ),
    ) {
        let limits = Limits { max_fragments: 8, max_bytes: 1000, timeout: std::time::Duration::from_secs(1) };
        let mut r = Reassembler::new(limits);
        let start = std::time::Instant::now();
        for (k, (id, number, total, first, plain)) in frags.into_iter().enumerate() {
            let now = start + std::time::Duration::from_millis(100 * k as u64);
            let inner_next = if first { PayloadType::Nonce } else { PayloadType::NoNextPayload };
            if let Added::Complete(_, bytes) = r.add(now, Fragment { message_id: id, number, total, inner_next, plain }) {
                prop_assert!(bytes.len() <= limits.max_bytes);
            }
        }
    }

    /// The cut always fits the budget, for every SK body shape we have.
    #[test]
    fn chunk_len_fits(max in 60usize..2000, iv in prop_oneof![Just(8usize), Just(16)], icv in prop_oneof![Just(12usize), Just(16), Just(24), Just(32)], block in prop_oneof![Just(1usize), Just(16)]) {
        let body = |n: usize| iv + (n + 1).div_ceil(block) * block + icv;
        if let Some(c) = fragment::chunk_len(max, body) {
            prop_assert!(36 + body(c) <= max);
            prop_assert!(36 + body(c + block) > max);
        }
    }
}

#[test]
fn forged_fragments_never_displace_real_ones() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let (mut p, _, _) = rsa_pair(576, 2);
    let seen: Rc<RefCell<Vec<Transmit>>> = Rc::default();
    let s = seen.clone();
    p.filter = Box::new(move |t, _| {
        if is_fragment(&t.bytes) && t.to == Pair::b_addr() {
            s.borrow_mut().push(t.clone());
            Fate::Delay(std::time::Duration::from_millis(100))
        } else {
            Fate::Deliver
        }
    });
    let now = p.now;
    p.a.connect(now, Pair::a_addr(), Pair::b_addr()).unwrap();
    p.drive_for(std::time::Duration::from_millis(50));
    let real = seen.borrow().clone();
    assert!(
        real.len() >= 3,
        "IKE_AUTH went as fragments: {}",
        real.len()
    );
    for t in &real {
        // A bad ICV; and a larger Total Fragments (which would restart reassembly
        // if it were believed) with the same bad ICV.
        let mut forged = t.clone();
        *forged.bytes.last_mut().unwrap() ^= 1;
        p.deliver(forged.clone());
        let total = u16::from_be_bytes([forged.bytes[34], forged.bytes[35]]);
        forged.bytes[34..36].copy_from_slice(&(total + 5).to_be_bytes());
        p.deliver(forged);
    }
    assert!(!up(&p.b_events));
    p.drive();
    assert!(up(&p.a_events), "{:?}", p.a_events);
    assert!(up(&p.b_events), "{:?}", p.b_events);
    // The first transmission sufficed: no retransmission was needed.
    assert_eq!(seen.borrow().len(), real.len());
}

#[test]
fn a_retransmitted_fragmented_request_is_answered_once() {
    use std::cell::Cell;
    use std::rc::Rc;
    let (mut p, _, _) = rsa_pair(576, 2);
    let to_b = Rc::new(Cell::new(0u32));
    let to_a = Rc::new(Cell::new(0u32));
    let dropped = Rc::new(Cell::new(0u32));
    let first_round = Rc::new(Cell::new(None::<u32>));
    let (tb, ta, fr, dr) = (
        to_b.clone(),
        to_a.clone(),
        first_round.clone(),
        dropped.clone(),
    );
    p.filter = Box::new(move |t, _| {
        if !is_fragment(&t.bytes) {
            return Fate::Deliver;
        }
        if t.to == Pair::b_addr() {
            tb.set(tb.get() + 1);
            return Fate::Deliver;
        }
        ta.set(ta.get() + 1);
        // All of B's first answer is lost (A's whole request had gone out by then).
        let first = *fr.get().get_or_insert(tb.get());
        fr.set(Some(first));
        if tb.get() == first {
            dr.set(dr.get() + 1);
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    p.connect();
    assert!(up(&p.a_events) && up(&p.b_events));
    let n = first_round.get().unwrap();
    assert_eq!(to_b.get(), 2 * n, "A sent its request twice");
    let m = dropped.get();
    assert!(m >= 2, "B's answer went as fragments");
    assert_eq!(
        to_a.get(),
        2 * m,
        "B answered the retransmission once, not once per fragment"
    );
}

/// Seven distinct DER certificates to stand in for intermediates.
fn pool() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    [
        "p256-e",
        "p384-a",
        "p384-b",
        "p384-e",
        "ed25519-a",
        "ed25519-b",
        "ed25519-e",
    ]
    .iter()
    .map(|n| std::fs::read(format!("{dir}/{n}.crt.der")).unwrap())
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Whatever chain A is configured with and whichever of its CAs B's CERTREQ
    /// names, B's validator is shown exactly A's chain in order, cut below the
    /// named CA; more than five CERT payloads in all are refused.
    #[test]
    fn cert_payload_lists_arrive_whole_in_order(
        picks in proptest::collection::vec(0usize..7, 0..7),
        requested in proptest::option::of(0usize..7),
        size in prop_oneof![Just(576usize), Just(1280), Just(8000)],
    ) {
        let pool = pool();
        // Distinct certificates, in the order picked.
        let mut chain: Vec<Vec<u8>> = Vec::new();
        for i in picks {
            if !chain.contains(&pool[i]) {
                chain.push(pool[i].clone());
            }
        }
        let a_id = make_identity("a.example");
        let b_id = make_identity("b.example");
        let mut a = cert_config("aes128gcm16-prfsha256-ecp256", &a_id, "a.example", &b_id, "b.example", true);
        let mut b = cert_config("aes128gcm16-prfsha256-ecp256", &b_id, "b.example", &a_id, "a.example", true);
        a.local_chain = chain.clone();
        let named = requested.and_then(|r| chain.get(r).cloned());
        let rec = Arc::new(ChainRecorder {
            accept: a_id.cert_der.clone(),
            seen: Mutex::new(Vec::new()),
            hashes: named.iter().map(|c| auth::spki_sha1(c).unwrap()).collect(),
        });
        b.remote_auth = RemoteAuth::Cert(rec.clone());
        a.fragment_size = size;
        b.fragment_size = size;
        let mut p = Pair::new(a, b);
        p.connect();
        let expected: Vec<Vec<u8>> = match &named {
            Some(n) => chain.iter().take_while(|c| *c != n).cloned().collect(),
            None => chain.clone(),
        };
        if 1 + expected.len() > 5 {
            prop_assert!(!up(&p.b_events));
            prop_assert!(rec.seen.lock().unwrap().is_empty());
        } else {
            prop_assert!(up(&p.b_events), "{:?}", p.b_events);
            prop_assert_eq!(rec.seen.lock().unwrap().clone(), vec![expected]);
        }
    }
}

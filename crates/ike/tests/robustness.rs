//! Arbitrary bytes and mutated real messages never panic `handle` and never
//! change an established SA's state.

mod pair;

use dodvpn_ike::*;
use pair::*;
use proptest::prelude::*;

fn established() -> (Pair, Vec<Vec<u8>>) {
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    p.connect();
    let a = p.a.sa_ids()[0];
    p.a.send_liveness(p.now, a);
    p.drive();
    let real: Vec<Vec<u8>> = p.log.iter().map(|(_, t)| t.bytes.clone()).collect();
    (p, real)
}

/// One SA as seen from outside: id, state, message ids, child SPIs, keys.
type SaView = (
    u64,
    State,
    (u32, u32),
    Vec<u32>,
    Option<dodvpn_ike::keys::IkeKeys>,
);

#[derive(Debug, PartialEq)]
struct Snapshot(Vec<SaView>);

fn snap(e: &Endpoint) -> Snapshot {
    Snapshot(
        e.sa_ids()
            .into_iter()
            .map(|id| {
                let s = e.sa(id).unwrap();
                (
                    id,
                    s.state(),
                    s.message_ids(),
                    s.children().iter().map(|c| c.local_spi).collect(),
                    s.keys().cloned(),
                )
            })
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_do_nothing(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (mut p, _) = established();
        let (sa, sb) = (snap(&p.a), snap(&p.b));
        p.a.handle(p.now, Pair::b_addr(), Pair::a_addr(), &data);
        p.b.handle(p.now, Pair::a_addr(), Pair::b_addr(), &data);
        prop_assert_eq!(snap(&p.a), sa);
        // b may create a half-open SA for a well-formed IKE_SA_INIT, but never touches the established one
        let sb2 = snap(&p.b);
        prop_assert!(sb.0.iter().all(|x| sb2.0.contains(x)));
        while let Some(e) = p.a.poll_event() { prop_assert!(false, "event {:?}", e); }
    }

    #[test]
    fn mutated_real_messages_do_nothing(idx in 0usize..64, pos in any::<prop::sample::Index>(), xor in 1u8..=255, trunc in any::<bool>()) {
        let (mut p, real) = established();
        let mut m = real[idx % real.len()].clone();
        // Keep the header (SPIs, message ID) so the message reaches the SA; mutate past it
        // or truncate (the IKE_SA_INIT pair is excluded: it is not authenticated by design).
        if dodvpn_wire::IkeHeader::parse(&m).map(|h| h.exchange_type == dodvpn_wire::ExchangeType::IkeSaInit).unwrap_or(true) {
            return Ok(());
        }
        if trunc {
            let n = pos.index(m.len());
            m.truncate(n);
        } else {
            let i = pos.index(m.len());
            m[i] ^= xor;
        }
        let (sa, sb) = (snap(&p.a), snap(&p.b));
        p.a.handle(p.now, Pair::b_addr(), Pair::a_addr(), &m);
        p.b.handle(p.now, Pair::a_addr(), Pair::b_addr(), &m);
        prop_assert_eq!(snap(&p.a), sa);
        prop_assert_eq!(snap(&p.b), sb);
        while let Some(e) = p.a.poll_event() { prop_assert!(false, "event {:?}", e); }
        while let Some(e) = p.b.poll_event() { prop_assert!(false, "event {:?}", e); }
    }

    #[test]
    fn replayed_real_messages_are_not_reprocessed(idx in 0usize..64) {
        let (mut p, real) = established();
        let m = real[idx % real.len()].clone();
        let (sa, sb) = (snap(&p.a), snap(&p.b));
        p.a.handle(p.now, Pair::b_addr(), Pair::a_addr(), &m);
        p.b.handle(p.now, Pair::a_addr(), Pair::b_addr(), &m);
        // A reflected IKE_SA_INIT request is a fresh request for the other endpoint
        // (it may open a half-open SA); the established SAs never change.
        let (sa2, sb2) = (snap(&p.a), snap(&p.b));
        prop_assert!(sa.0.iter().all(|x| sa2.0.contains(x)));
        prop_assert!(sb.0.iter().all(|x| sb2.0.contains(x)));
        prop_assert!(sa2.0.iter().chain(sb2.0.iter()).filter(|x| x.1 == State::Established).count() == 2);
    }
}

//! Behind the integrity check: authentic messages from the peer that do not
//! parse get their RFC 7296 answer (§2.5, §2.21), and a malicious but
//! authenticated peer never panics or desynchronises the SA (the same driver
//! as the cargo-fuzz target `authenticated`).

mod peer;

use dodvpn_ike::*;
use dodvpn_wire::{ExchangeType, IkeHeader, Notify, NotifyType, Payload, PayloadType};
use peer::*;
use proptest::prelude::*;

/// The one response `to` sent, opened.
fn the_answer(e: &mut Established, to_a: bool) -> (IkeHeader, Vec<Payload>) {
    let mut sent = Vec::new();
    while let Some(t) = e.endpoint(to_a).poll_transmit() {
        sent.push(t);
    }
    assert_eq!(sent.len(), 1, "exactly one answer");
    open_from(e.sa(to_a), &sent[0].bytes)
}

fn notifies(payloads: &[Payload]) -> Vec<Notify> {
    payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// Send `chain` (first payload type `first`) as an authentic request from b to a.
fn forge_request(
    e: &mut Established,
    exchange: ExchangeType,
    first: PayloadType,
    chain: &[u8],
) -> u32 {
    let sa = e.sa(true);
    let id = sa.message_ids().1;
    let bytes = seal_as_peer(sa, exchange, false, id, first, chain);
    e.a.handle(e.now, B, A, &bytes);
    id
}

#[test]
fn unsupported_critical_payload_is_answered_with_its_type() {
    let mut e = Established::new();
    // One payload of unknown type 200 with the critical bit set (§2.5).
    let chain = [0u8, 0x80, 0, 8, 1, 2, 3, 4];
    let id = forge_request(
        &mut e,
        ExchangeType::Informational,
        PayloadType::from(200),
        &chain,
    );
    let (h, payloads) = the_answer(&mut e, true);
    assert!(h.flags.response());
    assert_eq!(
        (h.message_id, h.exchange_type),
        (id, ExchangeType::Informational)
    );
    let n = notifies(&payloads);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].notify_type, NotifyType::UnsupportedCriticalPayload);
    assert_eq!(n[0].data, vec![200], "the notify names the payload type");
    // The request counts as answered; the SA carries on in step.
    let sa = e.sa(true);
    assert_eq!(sa.state(), State::Established);
    assert_eq!(sa.message_ids().1, id + 1);
    let ida = e.a.sa_ids()[0];
    e.a.send_liveness(e.now, ida);
    shuttle(&mut e.a, &mut e.b, e.now);
    assert_eq!(e.sa(false).message_ids().1, e.sa(true).message_ids().0);
}

#[test]
fn garbled_chain_is_answered_invalid_syntax() {
    let mut e = Established::new();
    // A Nonce payload whose length runs past the end of the chain.
    let chain = [0u8, 0, 0, 40, 1, 2, 3, 4];
    let id = forge_request(
        &mut e,
        ExchangeType::CreateChildSa,
        PayloadType::Nonce,
        &chain,
    );
    let (h, payloads) = the_answer(&mut e, true);
    assert_eq!(
        (h.message_id, h.exchange_type),
        (id, ExchangeType::CreateChildSa)
    );
    let n = notifies(&payloads);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].notify_type, NotifyType::InvalidSyntax);
    assert!(n[0].data.is_empty());
    // A retransmission of the same request gets the same answer, not a second one.
    let before = e.sa(true).message_ids();
    let sa = e.sa(true);
    let bytes = seal_as_peer(
        sa,
        ExchangeType::CreateChildSa,
        false,
        id,
        PayloadType::Nonce,
        &chain,
    );
    e.a.handle(e.now, B, A, &bytes);
    let (h2, p2) = the_answer(&mut e, true);
    assert_eq!(h2.message_id, id);
    assert_eq!(notifies(&p2)[0].notify_type, NotifyType::InvalidSyntax);
    assert_eq!(e.sa(true).message_ids(), before);
    assert_eq!(e.sa(true).state(), State::Established);
}

#[test]
fn a_forged_icv_is_still_dropped_silently() {
    let mut e = Established::new();
    let sa = e.sa(true);
    let id = sa.message_ids().1;
    let mut bytes = seal_as_peer(
        sa,
        ExchangeType::Informational,
        false,
        id,
        PayloadType::from(200),
        &[0, 0x80, 0, 4],
    );
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    e.a.handle(e.now, B, A, &bytes);
    assert!(
        e.a.poll_transmit().is_none(),
        "no answer to an unauthenticated message"
    );
    assert_eq!(e.sa(true).message_ids().1, id);
}

#[test]
fn malformed_ike_auth_request_is_answered_and_no_sa_is_set_up() {
    // b answered IKE_SA_INIT; the initiator's IKE_AUTH is replaced by an
    // authentic one whose chain does not parse.
    let now = std::time::Instant::now();
    let mut a = Endpoint::with_seed(config("a.example", "b.example"), 1);
    let mut b = Endpoint::with_seed(config("b.example", "a.example"), 2);
    a.connect(now, A, B).unwrap();
    let init = a.poll_transmit().unwrap();
    b.handle(now, init.from, init.to, &init.bytes);
    let resp = b.poll_transmit().unwrap();
    a.handle(now, resp.from, resp.to, &resp.bytes);
    let _real_auth = a.poll_transmit().unwrap();
    let idb = b.sa_ids()[0];
    let half_open = b.sa(idb).unwrap();
    assert_eq!(half_open.state(), State::InitDone);
    let chain = [0u8, 0x80, 0, 5, 9];
    let bytes = seal_as_peer(
        half_open,
        ExchangeType::IkeAuth,
        false,
        1,
        PayloadType::from(201),
        &chain,
    );
    // Keep the keys to read the answer: the SA is gone afterwards.
    let reader = a.sa(a.sa_ids()[0]).unwrap();
    b.handle(now, A, B, &bytes);
    let answer = b.poll_transmit().expect("an answer");
    let (h, payloads) = peer_open(reader, &answer.bytes);
    assert_eq!((h.message_id, h.exchange_type), (1, ExchangeType::IkeAuth));
    let n = notifies(&payloads);
    assert_eq!(n[0].notify_type, NotifyType::UnsupportedCriticalPayload);
    assert_eq!(n[0].data, vec![201]);
    assert!(b.sa(idb).is_none(), "no IKE SA without a valid IKE_AUTH");
    let mut events = Vec::new();
    while let Some(ev) = b.poll_event() {
        events.push(ev);
    }
    assert!(events.iter().any(|ev| matches!(ev, Event::IkeSaDown { reason: DownReason::Failed(r), .. } if r.contains("malformed"))), "{events:?}");
    assert!(!events.iter().any(|ev| matches!(ev, Event::IkeSaUp { .. })));
}

/// Open a message sent *to* `sa` (by its peer), with `sa`'s inbound keys.
fn peer_open(sa: &IkeSa, bytes: &[u8]) -> (IkeHeader, Vec<Payload>) {
    let keys = sa.keys().unwrap();
    let cipher = sa.suite().unwrap().cipher;
    let (ek, ak) = if sa.is_initiator() {
        (&keys.sk_er, &keys.sk_ar)
    } else {
        (&keys.sk_ei, &keys.sk_ai)
    };
    let loc = dodvpn_wire::locate_encrypted(bytes).unwrap();
    let mut buf = bytes.to_vec();
    let range = cipher.open(ek, ak, &mut buf, loc.body.start).unwrap();
    (
        IkeHeader::parse(bytes).unwrap(),
        dodvpn_wire::parse_payload_chain(loc.inner_next, &buf[range]).unwrap(),
    )
}

#[test]
fn malformed_authentic_response_ends_the_sa() {
    let mut e = Established::new();
    let ida = e.a.sa_ids()[0];
    e.a.send_liveness(e.now, ida);
    let _request = e.a.poll_transmit().unwrap();
    let sa = e.sa(true);
    let id = sa.message_ids().0 - 1;
    let bytes = seal_as_peer(
        sa,
        ExchangeType::Informational,
        true,
        id,
        PayloadType::Nonce,
        &[0, 0, 0, 99],
    );
    e.a.handle(e.now, B, A, &bytes);
    assert!(
        e.a.poll_transmit().is_none(),
        "a response is never answered"
    );
    assert!(e.a.sa(ida).is_none());
    let mut down = None;
    while let Some(ev) = e.a.poll_event() {
        if let Event::IkeSaDown { reason, .. } = ev {
            down = Some(reason);
        }
    }
    assert!(matches!(down, Some(DownReason::Failed(r)) if r.contains("malformed")));
}

#[test]
fn the_driver_reaches_the_exchanges() {
    // A fixed input: a CREATE_CHILD_SA rekey of the child with a real proposal, KE, nonce.
    let answered: usize = [
        &[0u8, 0, 0, 2, 1, 3, 0, 0, 5, 0, 0][..],
        &[1; 64],
        &[2; 64],
        &[9; 90],
    ]
    .iter()
    .map(|d| run(d))
    .sum();
    assert!(answered >= 4, "{answered} forged requests answered");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn malicious_authenticated_peer_never_panics_or_desynchronises(
        data in proptest::collection::vec(any::<u8>(), 0..400)
    ) {
        let _ = run(&data);
    }
}

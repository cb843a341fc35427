//! End-to-end IKE tests over the in-memory Pair harness.

mod pair;

use std::time::Duration;

use dodvpn_ike::*;
use dodvpn_wire::{ExchangeType, Message, NotifyType, Payload, TsRange};
use pair::*;

fn assert_up(p: &Pair) -> (ChildSaInfo, ChildSaInfo) {
    assert!(
        p.a_events
            .iter()
            .any(|e| matches!(e, Event::IkeSaUp { .. })),
        "a: {:?}",
        p.a_events
    );
    assert!(
        p.b_events
            .iter()
            .any(|e| matches!(e, Event::IkeSaUp { .. })),
        "b: {:?}",
        p.b_events
    );
    let ca = Pair::child_ups(&p.a_events);
    let cb = Pair::child_ups(&p.b_events);
    assert_eq!(ca.len(), 1, "{:?}", p.a_events);
    assert_eq!(cb.len(), 1, "{:?}", p.b_events);
    let (a, b) = (ca[0].clone(), cb[0].clone());
    assert_eq!(a.keymat_out, b.keymat_in);
    assert_eq!(a.keymat_in, b.keymat_out);
    assert_ne!(a.keymat_in, a.keymat_out, "directions must differ");
    assert_eq!(a.remote_spi, b.local_spi);
    assert_eq!(a.local_spi, b.remote_spi);
    assert_eq!(a.keymat_in.len(), a.aead.keymat_len());
    // The keys work with the ESP data path.
    dodvpn_esp::OutboundSa::new(a.remote_spi, a.aead, &a.keymat_out, a.esn).unwrap();
    dodvpn_esp::InboundSa::new(b.local_spi, b.aead, &b.keymat_in, b.esn).unwrap();
    (a, b)
}

const SUITES: &[&str] = &[
    "aes128gcm16-prfsha256-ecp256",
    "aes256gcm16-prfsha384-ecp384",
    "aes128gcm16-prfsha256-x25519",
    "aes256gcm16-prfsha512-ecp256",
    "aes256-sha256-ecp256",
    "aes256-sha256-x25519",
    "aes128-sha384-ecp384",
    "chacha20poly1305-prfsha256-x25519",
];

#[test]
fn psk_handshake_every_suite() {
    for s in SUITES {
        let mut p = psk_pair(s);
        p.connect();
        let (a, _) = assert_up(&p);
        assert_eq!(
            a.local_ts,
            vec![TsRange::from_net(
                "10.1.0.0/16".parse().unwrap(),
                0,
                0..=65535
            )]
        );
        let ids = p.a.sa_ids();
        let sa = p.a.sa(ids[0]).unwrap();
        assert_eq!(sa.state(), State::Established, "{s}");
        let bsa = p.b.sa(p.b.sa_ids()[0]).unwrap();
        assert_eq!(sa.keys(), bsa.keys(), "{s}: IKE keys agree");
        // Only IKE_SA_INIT travels in the clear: NAT-D and SIGNATURE_HASH_ALGORITHMS present.
        let init = Message::parse(&p.log[0].1.bytes).unwrap();
        assert!(init.find_notify(NotifyType::NatDetectionSourceIp).is_some());
        assert!(init
            .find_notify(NotifyType::NatDetectionDestinationIp)
            .is_some());
        assert!(init
            .find_notify(NotifyType::SignatureHashAlgorithms)
            .is_some());
    }
}

#[test]
fn cert_handshake_each_group() {
    let ia = make_identity("a.example");
    let ib = make_identity("b.example");
    for s in [
        "aes128gcm16-prfsha256-ecp256",
        "aes256gcm16-prfsha384-ecp384",
        "aes128gcm16-prfsha256-x25519",
        "aes256-sha256-ecp256",
    ] {
        let a = cert_config(s, &ia, "a.example", &ib, "b.example", true);
        let b = cert_config(s, &ib, "b.example", &ia, "a.example", true);
        let mut p = Pair::new(a, b);
        p.connect();
        assert_up(&p);
    }
}

#[test]
fn untrusted_peer_cert_fails_auth() {
    let ia = make_identity("a.example");
    let ib = make_identity("b.example");
    let s = "aes128gcm16-prfsha256-ecp256";
    let a = cert_config(s, &ia, "a.example", &ib, "b.example", true);
    let b = cert_config(s, &ib, "b.example", &ia, "a.example", false);
    let mut p = Pair::new(a, b);
    p.connect();
    assert!(
        p.b_events.iter().any(
            |e| matches!(e, Event::AuthFailed { reason, .. } if reason.contains("not trusted"))
        ),
        "{:?}",
        p.b_events
    );
    assert!(p
        .a_events
        .iter()
        .any(|e| matches!(e, Event::AuthFailed { .. })));
    assert!(Pair::child_ups(&p.a_events).is_empty() && Pair::child_ups(&p.b_events).is_empty());
    assert!(p.a.sa_ids().is_empty() && p.b.sa_ids().is_empty());
}

#[test]
fn wrong_psk_fails_both_sides() {
    let a = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "a.example",
        "b.example",
        b"one",
    );
    let b = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "b.example",
        "a.example",
        b"two",
    );
    let mut p = Pair::new(a, b);
    p.connect();
    assert!(
        p.b_events
            .iter()
            .any(|e| matches!(e, Event::AuthFailed { .. })),
        "{:?}",
        p.b_events
    );
    assert!(p.a_events.iter().any(|e| matches!(e, Event::AuthFailed { reason, .. } if reason.contains("AuthenticationFailed"))), "{:?}", p.a_events);
    assert!(Pair::child_ups(&p.a_events).is_empty() && Pair::child_ups(&p.b_events).is_empty());
    assert!(!p
        .a_events
        .iter()
        .any(|e| matches!(e, Event::IkeSaUp { .. })));
}

#[test]
fn wrong_remote_identity_fails() {
    let a = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "a.example",
        "c.example",
        b"k",
    );
    let b = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "b.example",
        "a.example",
        b"k",
    );
    let mut p = Pair::new(a, b);
    p.connect();
    assert!(
        p.a_events
            .iter()
            .any(|e| matches!(e, Event::AuthFailed { .. })),
        "{:?}",
        p.a_events
    );
}

#[test]
fn invalid_ke_retry() {
    let a = psk_config(
        &[
            "aes128gcm16-prfsha256-x25519",
            "aes128gcm16-prfsha256-ecp256",
        ],
        &["aes128gcm16"],
        "a.example",
        "b.example",
        b"k",
    );
    let b = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "b.example",
        "a.example",
        b"k",
    );
    let mut p = Pair::new(a, b);
    p.connect();
    assert_up(&p);
    let inits: Vec<_> = p
        .log
        .iter()
        .filter(|(to, t)| {
            *to == 'b'
                && Message::parse(&t.bytes)
                    .is_ok_and(|m| m.header.exchange_type == ExchangeType::IkeSaInit)
        })
        .collect();
    assert_eq!(inits.len(), 2, "one retry with the requested group");
    let answer = p.log.iter().find(|(to, _)| *to == 'a').unwrap();
    assert!(Message::parse(&answer.1.bytes)
        .unwrap()
        .find_notify(NotifyType::InvalidKePayload)
        .is_some());
    assert_eq!(
        p.a.sa(p.a.sa_ids()[0]).unwrap().suite().unwrap().group,
        Group::Ecp256
    );
}

#[test]
fn no_proposal_chosen() {
    let a = psk_config(
        &["aes128gcm16-prfsha256-x25519"],
        &["aes128gcm16"],
        "a.example",
        "b.example",
        b"k",
    );
    let b = psk_config(
        &["aes256-sha256-ecp384"],
        &["aes128gcm16"],
        "b.example",
        "a.example",
        b"k",
    );
    let mut p = Pair::new(a, b);
    p.connect();
    assert!(p.a_events.iter().any(|e| matches!(e, Event::IkeSaDown { reason: DownReason::Failed(r), .. } if r.contains("NoProposalChosen"))), "{:?}", p.a_events);
    assert!(p.b.sa_ids().is_empty());
}

#[test]
fn cookie_round_trip_under_half_open_load() {
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    // Fill the responder's half-open table with initiators that never finish.
    let mut junk = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "x",
        "y",
        b"k",
    );
    junk.retransmit_tries = 1;
    let mut other = Endpoint::new(junk);
    for i in 0..16u16 {
        let from = std::net::SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7)),
            1000 + i,
        );
        other.connect(p.now, from, Pair::b_addr()).unwrap();
        while let Some(t) = other.poll_transmit() {
            p.b.handle(p.now, t.from, t.to, &t.bytes);
        }
    }
    while p.b.poll_transmit().is_some() {}
    assert_eq!(p.b.sa_ids().len(), 16);
    p.connect();
    assert_up(&p);
    let to_b: Vec<Message> = p
        .log
        .iter()
        .filter(|(to, _)| *to == 'b')
        .map(|(_, t)| Message::parse(&t.bytes).unwrap())
        .collect();
    assert!(
        matches!(&to_b[1].payloads[0], Payload::Notify(n) if n.notify_type == NotifyType::Cookie),
        "retry starts with COOKIE"
    );
    let first_answer = p.log.iter().find(|(to, _)| *to == 'a').unwrap();
    assert!(Message::parse(&first_answer.1.bytes)
        .unwrap()
        .find_notify(NotifyType::Cookie)
        .is_some());
    // The cookie was stateless: no SA was created for the cookie-less first try.
    assert_eq!(p.b.sa_ids().len(), 17);
}

#[test]
fn lost_auth_response_is_retransmitted() {
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    let mut dropped = 0;
    p.filter = Box::new(move |_t, h| match h {
        Some(h)
            if h.exchange_type == ExchangeType::IkeAuth && h.flags.response() && dropped == 0 =>
        {
            dropped += 1;
            Fate::Drop
        }
        _ => Fate::Deliver,
    });
    p.connect();
    assert_up(&p);
    let auth_reqs = p
        .log
        .iter()
        .filter(|(to, t)| *to == 'b' && IkeHeader_of(t).exchange_type == ExchangeType::IkeAuth)
        .count();
    assert_eq!(auth_reqs, 2, "initiator retransmitted IKE_AUTH");
}

#[allow(non_snake_case)]
fn IkeHeader_of(t: &Transmit) -> dodvpn_wire::IkeHeader {
    dodvpn_wire::IkeHeader::parse(&t.bytes).unwrap()
}

#[test]
fn duplicated_and_reordered_datagrams() {
    let mut p = psk_pair("aes256gcm16-prfsha384-ecp384");
    let mut n = 0u32;
    p.filter = Box::new(move |_t, _h| {
        n += 1;
        match n % 3 {
            0 => Fate::Duplicate,
            1 => Fate::Delay(Duration::from_millis(3)),
            _ => Fate::Deliver,
        }
    });
    p.connect();
    // Exactly one child SA on each side despite duplicated requests (answered from cache).
    assert_up(&p);
    let a = p.a.sa_ids()[0];
    p.a.send_liveness(p.now, a);
    p.drive();
    let sa = p.b.sa(p.b.sa_ids()[0]).unwrap();
    assert_eq!(
        sa.message_ids().1,
        3,
        "responder processed IKE_AUTH and one INFORMATIONAL once each"
    );
}

#[test]
fn ts_narrowing_and_unacceptable() {
    let mut a = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "a.example",
        "b.example",
        b"k",
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
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "b.example",
        "a.example",
        b"k",
    );
    b.local_ts = vec![TsRange::from_net(
        "10.2.3.0/24".parse().unwrap(),
        6,
        443..=443,
    )];
    b.remote_ts = vec![TsRange::from_net(
        "10.1.0.0/16".parse().unwrap(),
        0,
        0..=65535,
    )];
    let mut p = Pair::new(a.clone(), b.clone());
    p.connect();
    let (ca, cb) = assert_up(&p);
    let narrowed = TsRange::from_net("10.2.3.0/24".parse().unwrap(), 6, 443..=443);
    assert_eq!(ca.remote_ts, vec![narrowed]);
    assert_eq!(cb.local_ts, vec![narrowed]);

    b.local_ts = vec![TsRange::from_net(
        "10.9.0.0/16".parse().unwrap(),
        0,
        0..=65535,
    )];
    let mut p = Pair::new(a, b);
    p.connect();
    assert!(
        p.a_events
            .iter()
            .any(|e| matches!(e, Event::IkeSaUp { .. })),
        "IKE SA still comes up"
    );
    assert!(p.a_events.iter().any(|e| matches!(e, Event::ChildSaFailed { reason, .. } if reason.contains("TsUnacceptable"))), "{:?}", p.a_events);
    assert!(Pair::child_ups(&p.a_events).is_empty() && Pair::child_ups(&p.b_events).is_empty());
}

#[test]
fn child_rekey_with_pfs_replaces_old_sa() {
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    // PFS on both sides for CREATE_CHILD_SA.
    let mut a = p.a.config().clone();
    let mut b = p.b.config().clone();
    a.esp_proposals = proposal::parse_esp_proposals(&["aes128gcm16-ecp256"]).unwrap();
    b.esp_proposals = a.esp_proposals.clone();
    p = Pair::new(a, b);
    p.connect();
    let (ca, _) = assert_up(&p);
    let sa = p.a.sa_ids()[0];
    p.a.rekey_child(p.now, sa, ca.local_spi);
    p.drive();
    let ups_a = Pair::child_ups(&p.a_events);
    let ups_b = Pair::child_ups(&p.b_events);
    assert_eq!(ups_a.len(), 2);
    let (na, nb) = (&ups_a[1], &ups_b[1]);
    assert_eq!(na.rekey_of, Some(ca.local_spi));
    assert_eq!(na.keymat_out, nb.keymat_in);
    assert_eq!(na.keymat_in, nb.keymat_out);
    assert_ne!(na.keymat_out, ca.keymat_out, "new keys");
    assert!(p.a_events.iter().any(
        |e| matches!(e, Event::ChildSaDeleted { local_spi, .. } if *local_spi == ca.local_spi)
    ));
    assert!(p.b_events.iter().any(
        |e| matches!(e, Event::ChildSaDeleted { remote_spi, .. } if *remote_spi == ca.local_spi)
    ));
    let kids = p.a.sa(sa).unwrap().children();
    assert_eq!(kids.len(), 1);
    assert_eq!(kids[0].local_spi, na.local_spi);
    // The CREATE_CHILD_SA request carried a KE payload (PFS).
    assert!(p
        .log
        .iter()
        .any(|(_, t)| IkeHeader_of(t).exchange_type == ExchangeType::CreateChildSa));
}

#[test]
fn new_child_sa_without_pfs() {
    let mut p = psk_pair("aes256-sha256-x25519");
    p.connect();
    assert_up(&p);
    let sa = p.a.sa_ids()[0];
    p.a.create_child(p.now, sa);
    p.drive();
    let ups = Pair::child_ups(&p.b_events);
    assert_eq!(ups.len(), 2);
    assert_eq!(p.a.sa(sa).unwrap().children().len(), 2);
}

#[test]
fn ike_rekey_moves_children_and_deletes_old() {
    for responder_rekeys in [false, true] {
        let mut p = psk_pair("aes128gcm16-prfsha256-x25519");
        p.connect();
        let (ca, _) = assert_up(&p);
        let old_a = p.a.sa_ids()[0];
        let old_b = p.b.sa_ids()[0];
        let old_keys = p.a.sa(old_a).unwrap().keys().unwrap().clone();
        if responder_rekeys {
            p.b.rekey_ike(p.now, old_b);
        } else {
            p.a.rekey_ike(p.now, old_a);
        }
        p.drive();
        assert_eq!(p.a.sa_ids().len(), 1, "old SA gone: {:?}", p.a_events);
        assert_eq!(p.b.sa_ids().len(), 1);
        let new_a = p.a.sa_ids()[0];
        assert_ne!(new_a, old_a);
        let na = p.a.sa(new_a).unwrap();
        let nb = p.b.sa(p.b.sa_ids()[0]).unwrap();
        assert_eq!(na.keys(), nb.keys());
        assert_ne!(na.keys().unwrap(), &old_keys);
        assert_eq!(na.children().len(), 1);
        assert_eq!(na.children()[0].local_spi, ca.local_spi);
        assert!(p.a_events.iter().any(
            |e| matches!(e, Event::IkeSaRekeyed { old, new } if *old == old_a && *new == new_a)
        ));
        assert!(
            !p.a_events
                .iter()
                .any(|e| matches!(e, Event::ChildSaDeleted { .. })),
            "children survive"
        );
        // The new SA works: a child rekey over it.
        p.a.rekey_child(p.now, new_a, ca.local_spi);
        p.drive();
        assert_eq!(Pair::child_ups(&p.b_events).len(), 2);
    }
}

#[test]
fn delete_child_and_ike_from_either_side() {
    // Child from the responder, then IKE from the initiator.
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    p.connect();
    let (ca, cb) = assert_up(&p);
    p.b.delete_child(p.now, p.b.sa_ids()[0], cb.local_spi);
    p.drive();
    assert!(p.a_events.iter().any(
        |e| matches!(e, Event::ChildSaDeleted { local_spi, .. } if *local_spi == ca.local_spi)
    ));
    assert!(p.b_events.iter().any(
        |e| matches!(e, Event::ChildSaDeleted { local_spi, .. } if *local_spi == cb.local_spi)
    ));
    // The response carried the paired DELETE.
    let last_to_b = p.log.iter().rev().find(|(to, _)| *to == 'b').unwrap();
    assert!(IkeHeader_of(&last_to_b.1).flags.response());
    p.a.delete_ike(p.now, p.a.sa_ids()[0]);
    p.drive();
    assert!(p.a_events.iter().any(|e| matches!(
        e,
        Event::IkeSaDown {
            reason: DownReason::LocalDelete,
            ..
        }
    )));
    assert!(p.b_events.iter().any(|e| matches!(
        e,
        Event::IkeSaDown {
            reason: DownReason::PeerDeleted,
            ..
        }
    )));
    assert!(p.a.sa_ids().is_empty() && p.b.sa_ids().is_empty());

    // IKE delete from the responder takes the children with it.
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    p.connect();
    assert_up(&p);
    p.b.delete_ike(p.now, p.b.sa_ids()[0]);
    p.drive();
    assert!(p
        .a_events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { .. })));
    assert!(p.a_events.iter().any(|e| matches!(
        e,
        Event::IkeSaDown {
            reason: DownReason::PeerDeleted,
            ..
        }
    )));
    assert!(p.a.sa_ids().is_empty() && p.b.sa_ids().is_empty());
}

#[test]
fn dpd_detects_dead_peer() {
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    p.connect();
    assert_up(&p);
    let up_at = p.now;
    p.filter = Box::new(|_, _| Fate::Drop);
    // Liveness after dpd_delay (30 s), then 0.5+1+2+4+8 s of retransmissions.
    p.drive_for(Duration::from_secs(120));
    let down = p.a_events.iter().any(|e| {
        matches!(
            e,
            Event::IkeSaDown {
                reason: DownReason::DeadPeer,
                ..
            }
        )
    });
    assert!(down, "{:?}", p.a_events);
    assert!(p.now - up_at >= Duration::from_millis(30_000 + 15_500));
    assert!(p.a.sa_ids().is_empty());
}

#[test]
fn liveness_keeps_sa_alive() {
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    p.connect();
    assert_up(&p);
    p.drive_for(Duration::from_secs(100));
    assert!(!p
        .a_events
        .iter()
        .any(|e| matches!(e, Event::IkeSaDown { .. })));
    assert_eq!(p.a.sa(p.a.sa_ids()[0]).unwrap().state(), State::Established);
}

#[test]
fn forced_encapsulation_floats_to_4500() {
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    let mut a = p.a.config().clone();
    a.force_encap = true;
    let b = p.b.config().clone();
    p = Pair::new(a, b);
    p.connect();
    let (ca, cb) = assert_up(&p);
    assert!(ca.udp_encap && cb.udp_encap);
    assert_eq!(ca.remote_addr.port(), 4500);
    assert_eq!(cb.remote_addr.port(), 4500);
    let auth = p
        .log
        .iter()
        .find(|(_, t)| IkeHeader_of(t).exchange_type == ExchangeType::IkeAuth)
        .unwrap();
    assert!(auth.1.nat_t && auth.1.to.port() == 4500 && auth.1.from.port() == 4500);
}

#[test]
fn mobike_informational_answered() {
    use dodvpn_wire::{Flags, IkeHeader, Notify};
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    p.connect();
    assert_up(&p);
    // Build an INFORMATIONAL with UPDATE_SA_ADDRESSES + COOKIE2 by hand using a's keys.
    let sa = p.a.sa(p.a.sa_ids()[0]).unwrap();
    let keys = sa.keys().unwrap().clone();
    let suite = sa.suite().unwrap();
    let (spi_i, spi_r) = sa.spis();
    let (next_id, _) = sa.message_ids();
    let payloads = vec![
        Payload::Notify(Notify::new(NotifyType::UpdateSaAddresses, vec![])),
        Payload::Notify(Notify::new(NotifyType::Cookie2, vec![9; 16])),
        Payload::Notify(Notify::new(
            NotifyType::AdditionalIp4Address,
            vec![192, 0, 2, 9],
        )),
    ];
    let mut plain = Vec::new();
    let inner = dodvpn_wire::emit_payload_chain(&payloads, &mut plain).unwrap();
    let h = IkeHeader::new(
        spi_i,
        spi_r,
        ExchangeType::Informational,
        Flags::new(true, false),
        next_id,
    );
    let mut out = Vec::new();
    let loc =
        dodvpn_wire::emit_encrypted(&h, &[], inner, suite.cipher.body_len(plain.len()), &mut out)
            .unwrap();
    suite
        .cipher
        .seal(
            &keys.sk_ei,
            &keys.sk_ai,
            &mut out,
            loc.body.start,
            &plain,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
    p.b.handle(p.now, Pair::a_addr(), Pair::b_addr(), &out);
    let resp = p.b.poll_transmit().expect("answered");
    let mut buf = resp.bytes.clone();
    let l = dodvpn_wire::locate_encrypted(&buf).unwrap();
    let r = suite
        .cipher
        .open(&keys.sk_er, &keys.sk_ar, &mut buf, l.body.start)
        .unwrap();
    let got = dodvpn_wire::parse_payload_chain(l.inner_next, &buf[r]).unwrap();
    assert!(got.iter().any(|p| matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::Cookie2 && n.data == vec![9; 16])), "{got:?}");
    assert!(IkeHeader_of(&resp).flags.response());
    assert_eq!(IkeHeader_of(&resp).message_id, next_id);
}

/// RFC 4555 §3.2, §3.5: MOBIKE_SUPPORTED both ways in IKE_AUTH makes the original
/// initiator the side that moves the SA; its UPDATE_SA_ADDRESSES leaves from the new
/// address on the NAT-T port, the responder answers there and both report the move.
#[test]
fn mobike_moves_the_sa_to_the_initiators_new_address() {
    let mut p = psk_pair("aes128gcm16-prfsha256-ecp256");
    p.connect();
    assert_up(&p);
    let (sa_a, sa_b) = (p.a.sa_ids()[0], p.b.sa_ids()[0]);
    let (a, b) = (p.a.sa(sa_a).unwrap(), p.b.sa(sa_b).unwrap());
    assert!(a.can_move() && a.mobike());
    assert!(
        b.mobike() && !b.can_move(),
        "the responder never moves the SA"
    );
    let spis = a.spis();
    let moved: std::net::SocketAddr = "192.0.2.77:4500".parse().unwrap();
    let now = p.now;
    assert!(!p.b.update_addresses(now, sa_b, moved));
    assert!(p.b.poll_transmit().is_none());
    assert!(p.a.update_addresses(now, sa_a, moved));
    let req = p.a.poll_transmit().expect("UPDATE_SA_ADDRESSES sent");
    assert_eq!((req.from, req.to.port(), req.nat_t), (moved, 4500, true));
    assert_eq!(
        IkeHeader_of(&req).exchange_type,
        ExchangeType::Informational
    );
    assert!(!IkeHeader_of(&req).flags.response());
    p.b.handle(now, req.from, req.to, &req.bytes);
    let resp = p.b.poll_transmit().expect("answered");
    assert_eq!(resp.to, moved, "answered at the new address");
    assert!(resp.nat_t);
    let b_ev: Vec<Event> = std::iter::from_fn(|| p.b.poll_event()).collect();
    assert!(
        b_ev.iter().any(
            |e| matches!(e, Event::AddressesChanged { remote, nat_t: true, .. } if *remote == moved)
        ),
        "{b_ev:?}"
    );
    p.a.handle(now, resp.from, moved, &resp.bytes);
    let a_ev: Vec<Event> = std::iter::from_fn(|| p.a.poll_event()).collect();
    assert!(
        a_ev.iter().any(
            |e| matches!(e, Event::AddressesChanged { local, remote, .. } if *local == moved && remote.port() == 4500)
        ),
        "{a_ev:?}"
    );
    let a = p.a.sa(sa_a).unwrap();
    assert_eq!(a.spis(), spis, "the same IKE SA");
    assert_eq!(a.state(), State::Established);
    assert_eq!(p.b.sa(sa_b).unwrap().addresses().1, moved);
    // A replay of the update (same message ID) is answered from the cache only.
    p.b.handle(
        now,
        "203.0.113.66:4500".parse().unwrap(),
        req.to,
        &req.bytes,
    );
    assert_eq!(
        p.b.sa(sa_b).unwrap().addresses().1,
        moved,
        "a replay moves nothing"
    );
}

/// A peer without MOBIKE (a standard router) does not answer MOBIKE_SUPPORTED: the
/// SA cannot move and nothing is sent; the caller sets up a new SA instead.
#[test]
fn without_mobike_on_either_side_the_sa_does_not_move() {
    for off in ['a', 'b'] {
        let p0 = psk_pair("aes128gcm16-prfsha256-ecp256");
        let (mut a, mut b) = (p0.a.config().clone(), p0.b.config().clone());
        if off == 'a' {
            a.mobike = false;
        } else {
            b.mobike = false;
        }
        let mut p = Pair::new(a, b);
        p.connect();
        assert_up(&p);
        let sa_a = p.a.sa_ids()[0];
        assert!(!p.a.sa(sa_a).unwrap().mobike(), "{off} off");
        assert!(!p.b.sa(p.b.sa_ids()[0]).unwrap().mobike(), "{off} off");
        let now = p.now;
        assert!(!p
            .a
            .update_addresses(now, sa_a, "192.0.2.77:4500".parse().unwrap()));
        assert!(p.a.poll_transmit().is_none());
    }
}

/// RFC 7296 §2.23, RFC 3948 §2.2: a peer dialled at a port other than 500 (a NAT's
/// mapping, a relay) is spoken to from our NAT-T port with the non-ESP marker from the
/// very first IKE_SA_INIT, and answered the same way; the peer's port is kept.
#[test]
fn dialled_at_a_nat_mapping_ike_starts_on_nat_t_and_keeps_the_port() {
    let a = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "a.example",
        "b.example",
        b"k",
    );
    let b = psk_config(
        &["aes128gcm16-prfsha256-ecp256"],
        &["aes128gcm16"],
        "b.example",
        "a.example",
        b"k",
    );
    let (mut ea, mut eb) = (Endpoint::new(a), Endpoint::new(b));
    let now = std::time::Instant::now();
    let b_mapped = std::net::SocketAddr::new(B_IP, 41234);
    ea.connect(now, Pair::a_addr(), b_mapped).unwrap();
    let t = ea.poll_transmit().unwrap();
    assert!(t.nat_t, "IKE_SA_INIT to a mapped port without the marker");
    assert_eq!((t.from.port(), t.to), (4500, b_mapped));
    // B sees it arrive on its NAT-T port from A's NAT-T port: answered there.
    let b_local = std::net::SocketAddr::new(B_IP, 4500);
    eb.handle(now, t.from, b_local, &t.bytes);
    let r = eb.poll_transmit().unwrap();
    assert!(r.nat_t && r.from == b_local && r.to == t.from, "{r:?}");
    ea.handle(now, b_mapped, t.from, &r.bytes);
    let auth = ea.poll_transmit().unwrap();
    assert_eq!(auth.to, b_mapped, "the mapped port survives NAT detection");
    assert!(auth.nat_t);
}

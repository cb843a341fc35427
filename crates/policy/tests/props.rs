//! Property tests: service algebra and deny-by-default guarantees.

use dodvpn_policy::*;
use ipnet::IpNet;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn arb_proto() -> impl Strategy<Value = Proto> {
    prop_oneof![
        Just(Proto::Any),
        Just(Proto::Tcp),
        Just(Proto::Udp),
        Just(Proto::Icmp)
    ]
}

/// Ports clustered so that random ranges overlap often.
fn arb_port() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..64, 400u16..460, any::<u16>(), Just(u16::MAX)]
}

fn arb_range() -> impl Strategy<Value = PortRange> {
    (arb_port(), arb_port()).prop_map(|(a, b)| PortRange {
        start: a.min(b),
        end: a.max(b),
    })
}

fn arb_service() -> impl Strategy<Value = Service> {
    (arb_proto(), prop::collection::vec(arb_range(), 0..3)).prop_map(|(proto, ports)| {
        let ports = if proto == Proto::Icmp {
            Vec::new()
        } else {
            ports
        };
        Service { proto, ports }
    })
}

fn arb_services() -> impl Strategy<Value = Vec<Service>> {
    prop::collection::vec(arb_service(), 0..4)
}

/// An IP protocol number and optional destination port to probe with.
fn arb_packet() -> impl Strategy<Value = (u8, Option<u16>)> {
    (
        prop_oneof![
            Just(6u8),
            Just(17u8),
            Just(1u8),
            Just(58u8),
            Just(47u8),
            any::<u8>()
        ],
        prop::option::of(arb_port()),
    )
}

fn arb_selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        3 => Just(Selector::Any),
        1 => "[ab]".prop_map(|o| Selector::Org(format!("org-{o}"))),
        1 => prop_oneof![Just(OrgKind::Hospital), Just(OrgKind::Clinic), Just(OrgKind::Lab)].prop_map(Selector::Kind),
        1 => "[ab]".prop_map(|d| Selector::Device(format!("dev-{d}"))),
        1 => "[ABC]".prop_map(Selector::Group),
    ]
}

fn arb_policy() -> impl Strategy<Value = SubscriberPolicy> {
    let inbound = (arb_selector(), arb_services(), any::<bool>(), any::<bool>()).prop_map(
        |(from, services, win, appr)| InboundRule {
            from,
            hosts: vec![],
            services,
            windows: if win {
                vec![TimeWindow::daily(540, 1020)]
            } else {
                vec![]
            },
            require_approval: appr,
        },
    );
    let outbound =
        (arb_selector(), arb_services()).prop_map(|(to, services)| OutboundRule { to, services });
    (
        prop::collection::vec(inbound, 0..3),
        prop::collection::vec(outbound, 0..3),
    )
        .prop_map(|(inbound, outbound)| SubscriberPolicy { inbound, outbound })
}

fn arb_groups() -> impl Strategy<Value = BTreeSet<String>> {
    // Mostly in some group, sometimes in none (group C).
    prop_oneof![1 => Just(BTreeSet::new()), 4 => prop::collection::btree_set("[AB]", 1..3)]
}

fn arb_party(id: &'static str) -> impl Strategy<Value = Party> {
    (
        prop_oneof![
            Just(OrgKind::Hospital),
            Just(OrgKind::Clinic),
            Just(OrgKind::Lab)
        ],
        arb_groups(),
        prop::bool::weighted(0.8),
        0u8..4,
    )
        .prop_map(move |(kind, groups, checksheet, net)| Party {
            device_id: format!("dev-{id}"),
            org_id: format!("org-{id}"),
            org_kind: kind,
            groups,
            subnets: vec![format!("10.{net}.0.0/16")
                .parse::<IpNet>()
                .unwrap_or_else(|_| unreachable!())],
            mapped_subnets: Vec::new(),
            endpoint: None,
            checksheet_passed: checksheet,
            candidates: Vec::new(),
            checksheet_scores: Default::default(),
            identity: format!("CN=dev-{id}"),
        })
}

fn arb_provider() -> impl Strategy<Value = ProviderPolicy> {
    prop::collection::btree_map(
        "[AB]",
        (prop::bool::weighted(0.3), prop::option::of(arb_services())).prop_map(
            |(require_checksheet, services)| GroupPolicy {
                require_checksheet,
                services,
                checksheet_gate: None,
            },
        ),
        1..3,
    )
    .prop_map(|groups| ProviderPolicy { groups })
}

fn arb_approvals() -> impl Strategy<Value = Vec<Approval>> {
    prop::collection::vec(
        (
            prop_oneof![Just("org-a"), Just("org-b")],
            prop_oneof![Just("org-a"), Just("org-b")],
            -7200i64..7200,
            0i64..14400,
        )
            .prop_map(|(approver, applicant, from, len)| Approval {
                approver_org: approver.into(),
                applicant_org: applicant.into(),
                applicant_device: None,
                not_before: NOW + from,
                not_after: NOW + from + len,
                hosts: vec![],
                services: vec![],
            }),
        0..2,
    )
}

/// Put both parties in group A and make sure the provider has it, so that a
/// test reaches the subscriber-policy stages often.
fn share_group_a(
    mut a: Party,
    mut t: Party,
    mut provider: ProviderPolicy,
) -> (Party, Party, ProviderPolicy) {
    a.groups.insert("A".into());
    t.groups.insert("A".into());
    provider.groups.entry("A".into()).or_default();
    (a, t, provider)
}

// 2024-01-01 12:00 UTC.
const NOW: i64 = 1_704_067_200 + 12 * 3600;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn intersection_is_commutative(a in arb_services(), b in arb_services()) {
        prop_assert_eq!(intersect_services(&a, &b), intersect_services(&b, &a));
    }

    #[test]
    fn intersection_is_a_subset_of_both(a in arb_services(), b in arb_services(), probes in prop::collection::vec(arb_packet(), 16)) {
        let i = intersect_services(&a, &b);
        for (proto, port) in probes {
            let in_both = allows(&a, proto, port) && allows(&b, proto, port);
            prop_assert_eq!(allows(&i, proto, port), in_both, "proto {} port {:?} i={:?}", proto, port, i);
        }
    }

    #[test]
    fn normal_form_keeps_meaning(a in arb_services(), probes in prop::collection::vec(arb_packet(), 16)) {
        let n = normalize_services(&a);
        prop_assert_eq!(normalize_services(&n), n.clone());
        for (proto, port) in probes {
            prop_assert_eq!(allows(&n, proto, port), allows(&a, proto, port));
        }
    }

    #[test]
    fn union_is_a_superset(a in arb_services(), b in arb_services(), probes in prop::collection::vec(arb_packet(), 16)) {
        let u = union_services(&a, &b);
        for (proto, port) in probes {
            let either = allows(&a, proto, port) || allows(&b, proto, port);
            if port.is_some() {
                prop_assert_eq!(allows(&u, proto, port), either);
            } else {
                // A portless TCP/UDP packet (a later fragment) passes only where every port
                // is allowed, and two partial ranges can together cover every port: the
                // union may allow what neither part did, never the reverse.
                prop_assert!(!either || allows(&u, proto, port));
            }
        }
    }

    #[test]
    fn service_text_round_trips(s in arb_service()) {
        let text = s.to_string();
        prop_assert_eq!(text.parse::<Service>().ok(), Some(s));
    }

    #[test]
    fn default_policy_never_grants(
        a in arb_party("a"), t in arb_party("b"), provider in arb_provider(),
        other in arb_policy(), approvals in arb_approvals(), default_is_applicant in any::<bool>(),
    ) {
        let req = Request { applicant: &a, target: &t, now: NOW };
        let deny_all = SubscriberPolicy::default();
        let d = if default_is_applicant {
            decide(&req, &provider, &deny_all, &other, &approvals)
        } else {
            decide(&req, &provider, &other, &deny_all, &approvals)
        };
        prop_assert!(d.grant().is_none(), "{:?}", d);
    }

    #[test]
    fn never_grants_without_a_common_group(
        a in arb_party("a"), t in arb_party("b"), provider in arb_provider(),
        ap in arb_policy(), tp in arb_policy(), approvals in arb_approvals(),
    ) {
        let req = Request { applicant: &a, target: &t, now: NOW };
        let d = decide(&req, &provider, &ap, &tp, &approvals);
        if let Some(g) = d.grant() {
            prop_assert!(!g.groups.is_empty());
            for name in &g.groups {
                prop_assert!(a.groups.contains(name) && t.groups.contains(name) && provider.groups.contains_key(name));
            }
        }
        let common = a.groups.intersection(&t.groups).any(|g| provider.groups.contains_key(g));
        if !common {
            prop_assert!(d.grant().is_none());
        }
    }

    #[test]
    fn grants_stay_within_every_policy(
        a in arb_party("a"), t in arb_party("b"), provider in arb_provider(),
        ap in arb_policy(), tp in arb_policy(), approvals in arb_approvals(),
        probes in prop::collection::vec(arb_packet(), 8),
    ) {
        let (a, t, provider) = share_group_a(a, t, provider);
        let req = Request { applicant: &a, target: &t, now: NOW };
        if let Some(g) = decide(&req, &provider, &ap, &tp, &approvals).grant() {
            prop_assert!(!g.services.is_empty());
            prop_assert!(g.not_after > NOW && g.not_after <= NOW + DEFAULT_VALIDITY_SECS);
            let out: Vec<Service> = ap.outbound.iter().filter(|r| r.to.matches(&t)).flat_map(|r| r.services.clone()).collect();
            let inb: Vec<Service> = tp.inbound.iter().filter(|r| r.from.matches(&a)).flat_map(|r| r.services.clone()).collect();
            for (proto, port) in probes {
                if allows(&g.services, proto, port) {
                    prop_assert!(allows(&out, proto, port) && allows(&inb, proto, port));
                }
            }
            for h in &g.target_hosts {
                prop_assert!(t.subnets.iter().any(|s| s.contains(h)), "target host {} outside the target", h);
            }
        }
    }

    #[test]
    fn policy_parsing_never_panics(s in "\\PC{0,200}") {
        let _ = SubscriberPolicy::from_json(&s);
        let _ = ProviderPolicy::from_json(&s);
        let _ = s.parse::<Service>();
        let _ = s.parse::<Selector>();
    }
}

/// The decide properties above are only meaningful if the generators
/// produce grants too, not just denials.
#[test]
fn generators_reach_grants() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strat = (
        arb_party("a"),
        arb_party("b"),
        arb_provider(),
        arb_policy(),
        arb_policy(),
        arb_approvals(),
    );
    let mut grants = 0;
    let mut reasons = std::collections::BTreeMap::new();
    for _ in 0..2000 {
        let Ok(tree) = strat.new_tree(&mut runner) else {
            continue;
        };
        let (a, t, provider, ap, tp, approvals) = tree.current();
        let (a, t, provider) = share_group_a(a, t, provider);
        let req = Request {
            applicant: &a,
            target: &t,
            now: NOW,
        };
        match decide(&req, &provider, &ap, &tp, &approvals) {
            Decision::Grant(_) => grants += 1,
            Decision::Deny(r) => *reasons.entry(r.code()).or_insert(0) += 1,
        }
    }
    assert!(
        grants >= 50,
        "only {grants} grants in 2000 random cases; denials: {reasons:?}"
    );
}

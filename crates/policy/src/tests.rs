//! Unit tests: every deny reason and the TR D.3 scenarios.

use super::*;

// 2024-01-01 00:00 UTC, a Monday.
const MON: i64 = 1_704_067_200;
const H: i64 = 3600;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn party(device: &str, org: &str, kind: OrgKind, groups: &[&str], subnet: &str) -> Party {
    Party {
        device_id: device.into(),
        org_id: org.into(),
        org_kind: kind,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        subnets: vec![net(subnet)],
        mapped_subnets: Vec::new(),
        endpoint: Some(format!("{device}.example:4500")),
        checksheet_passed: true,
        candidates: Vec::new(),
        checksheet_scores: BTreeMap::new(),
        identity: format!("CN={device}"),
    }
}

fn svcs(list: &[&str]) -> Vec<Service> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// TR D.3 / Figure D.2: group A = core hospital + lab + equipment vendor,
/// group B = core hospital + clinic + pharmacy + patient.
struct World {
    provider: ProviderPolicy,
    hospital: Party,
    lab: Party,
    vendor: Party,
    clinic: Party,
    pharmacy: Party,
    outsider: Party,
    hospital_policy: SubscriberPolicy,
    lab_policy: SubscriberPolicy,
    vendor_policy: SubscriberPolicy,
    clinic_policy: SubscriberPolicy,
    open_policy: SubscriberPolicy,
}

fn world() -> World {
    let provider = ProviderPolicy::from_json(
        r#"{"groups": {
            "A": {"require_checksheet": true},
            "B": {}
        }}"#,
    )
    .unwrap();
    let hospital_policy = SubscriberPolicy::from_json(
        r#"{
        "inbound": [
            {"from": "group:B", "services": ["tcp/443,104"]},
            {"from": "kind:lab", "services": ["tcp/443"]},
            {"from": "org:vendor-1", "hosts": ["10.1.5.20/32"], "services": ["tcp/22"], "require_approval": true}
        ],
        "outbound": [
            {"to": "group:A", "services": ["any"]},
            {"to": "group:B", "services": ["any"]}
        ]}"#,
    )
    .unwrap();
    let lab_policy = SubscriberPolicy::from_json(
        r#"{"inbound": [{"from": "kind:hospital", "services": ["tcp/443"]}],
            "outbound": [{"to": "kind:hospital", "services": ["tcp/443"]}]}"#,
    )
    .unwrap();
    let vendor_policy = SubscriberPolicy::from_json(
        r#"{"outbound": [{"to": "org:hospital-1", "services": ["tcp/22,443"]}]}"#,
    )
    .unwrap();
    let clinic_policy = SubscriberPolicy::from_json(
        r#"{"inbound": [{"from": "kind:hospital", "services": ["tcp/443"]}],
            "outbound": [{"to": "*", "services": ["any"]}]}"#,
    )
    .unwrap();
    let open_policy = SubscriberPolicy::from_json(
        r#"{"inbound": [{"from": "*", "services": ["any"]}], "outbound": [{"to": "*", "services": ["any"]}]}"#,
    )
    .unwrap();
    World {
        provider,
        hospital: party(
            "hosp-gw",
            "hospital-1",
            OrgKind::Hospital,
            &["A", "B"],
            "10.1.0.0/16",
        ),
        lab: party("lab-gw", "lab-1", OrgKind::Lab, &["A"], "10.2.0.0/16"),
        vendor: party(
            "vend-gw",
            "vendor-1",
            OrgKind::Vendor,
            &["A"],
            "10.3.0.0/24",
        ),
        clinic: party(
            "clin-gw",
            "clinic-1",
            OrgKind::Clinic,
            &["B"],
            "10.4.0.0/24",
        ),
        pharmacy: party(
            "pharm-gw",
            "pharmacy-1",
            OrgKind::Pharmacy,
            &["B"],
            "10.5.0.0/24",
        ),
        outsider: party("out-gw", "outsider-1", OrgKind::Clinic, &[], "10.9.0.0/24"),
        hospital_policy,
        lab_policy,
        vendor_policy,
        clinic_policy,
        open_policy,
    }
}

fn run(
    w: &World,
    a: &Party,
    ap: &SubscriberPolicy,
    t: &Party,
    tp: &SubscriberPolicy,
    approvals: &[Approval],
    now: i64,
) -> Decision {
    decide(
        &Request {
            applicant: a,
            target: t,
            now,
        },
        &w.provider,
        ap,
        tp,
        approvals,
    )
}

fn deny(d: Decision) -> DenyReason {
    match d {
        Decision::Deny(r) => r,
        Decision::Grant(g) => panic!("expected a denial, got {g:?}"),
    }
}

fn grant(d: Decision) -> Grant {
    match d {
        Decision::Grant(g) => g,
        Decision::Deny(r) => panic!("expected a grant, got denial: {r}"),
    }
}

fn maintenance_approval(w: &World, from: i64, to: i64) -> Approval {
    Approval {
        approver_org: w.hospital.org_id.clone(),
        applicant_org: w.vendor.org_id.clone(),
        applicant_device: None,
        not_before: from,
        not_after: to,
        hosts: vec![],
        services: vec![],
    }
}

// ---- TR scenarios ---------------------------------------------------------

#[test]
fn clinic_to_hospital_in_group_b() {
    let w = world();
    let g = grant(run(
        &w,
        &w.clinic,
        &w.clinic_policy,
        &w.hospital,
        &w.hospital_policy,
        &[],
        MON,
    ));
    assert_eq!(g.services, svcs(&["tcp/104,443"]));
    assert_eq!(g.groups, vec!["B".to_string()]);
    assert_eq!(g.target_hosts, vec![net("10.1.0.0/16")]);
    assert_eq!(g.applicant_hosts, vec![net("10.4.0.0/24")]);
    assert_eq!(g.not_after, MON + 24 * H);
    assert!(!g.needs_approval);
}

#[test]
fn hospital_to_lab_in_group_a() {
    let w = world();
    let g = grant(run(
        &w,
        &w.hospital,
        &w.hospital_policy,
        &w.lab,
        &w.lab_policy,
        &[],
        MON,
    ));
    assert_eq!(g.services, svcs(&["tcp/443"]));
    assert_eq!(g.groups, vec!["A".to_string()]);
}

#[test]
fn clinic_to_lab_is_denied_no_common_group() {
    // The clinic's own policy would allow anything: the provider's groups still decide.
    let w = world();
    let d = run(
        &w,
        &w.clinic,
        &w.clinic_policy,
        &w.lab,
        &w.open_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::NoCommonGroup);
}

#[test]
fn pharmacy_and_lab_cannot_reach_each_other() {
    let w = world();
    assert_eq!(
        deny(run(
            &w,
            &w.pharmacy,
            &w.open_policy,
            &w.lab,
            &w.open_policy,
            &[],
            MON
        )),
        DenyReason::NoCommonGroup
    );
    assert_eq!(
        deny(run(
            &w,
            &w.lab,
            &w.open_policy,
            &w.pharmacy,
            &w.open_policy,
            &[],
            MON
        )),
        DenyReason::NoCommonGroup
    );
}

#[test]
fn outsider_without_group_is_denied_both_ways() {
    let w = world();
    assert_eq!(
        deny(run(
            &w,
            &w.outsider,
            &w.open_policy,
            &w.hospital,
            &w.open_policy,
            &[],
            MON
        )),
        DenyReason::NoCommonGroup
    );
    assert_eq!(
        deny(run(
            &w,
            &w.hospital,
            &w.open_policy,
            &w.outsider,
            &w.open_policy,
            &[],
            MON
        )),
        DenyReason::NoCommonGroup
    );
}

#[test]
fn group_c_device_without_service_certificate_is_denied() {
    let w = world();
    let mut c = w.clinic.clone();
    c.identity.clear();
    let d = run(
        &w,
        &c,
        &w.open_policy,
        &w.hospital,
        &w.open_policy,
        &[],
        MON,
    );
    assert_eq!(
        deny(d),
        DenyReason::NoServiceCertificate {
            device_id: "clin-gw".into()
        }
    );
    let d = run(
        &w,
        &w.hospital,
        &w.open_policy,
        &c,
        &w.open_policy,
        &[],
        MON,
    );
    assert_eq!(
        deny(d),
        DenyReason::NoServiceCertificate {
            device_id: "clin-gw".into()
        }
    );
}

#[test]
fn vendor_maintenance_needs_an_open_approval() {
    let w = world();
    let d = run(
        &w,
        &w.vendor,
        &w.vendor_policy,
        &w.hospital,
        &w.hospital_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::ApprovalRequired);
}

#[test]
fn vendor_maintenance_with_approval_reaches_only_the_contracted_host_and_port() {
    let w = world();
    let ap = maintenance_approval(&w, MON - H, MON + 2 * H);
    let g = grant(run(
        &w,
        &w.vendor,
        &w.vendor_policy,
        &w.hospital,
        &w.hospital_policy,
        &[ap],
        MON,
    ));
    // Vendor asked for ssh and https; the hospital opened only ssh to one host.
    assert_eq!(g.services, svcs(&["tcp/22"]));
    assert_eq!(g.target_hosts, vec![net("10.1.5.20/32")]);
    assert_eq!(g.not_after, MON + 2 * H, "capped by the approval");
    assert!(g.needs_approval);
    assert!(allows(&g.services, 6, Some(22)));
    assert!(!allows(&g.services, 6, Some(443)));
    assert!(!allows(&g.services, 17, Some(22)));
}

/// The hospital's approver opens one host and one port of what its rule would allow:
/// the grant carries only those, and a contract outside the rule opens nothing.
#[test]
fn an_approval_narrows_to_its_contracted_host_and_port() {
    let w = world();
    let wide = SubscriberPolicy::from_json(
        r#"{"inbound": [{"from": "org:vendor-1", "hosts": ["10.1.5.0/24"], "services": ["tcp/22,443"], "require_approval": true}]}"#,
    )
    .unwrap();
    let vendor_all = SubscriberPolicy::from_json(
        r#"{"outbound": [{"to": "kind:hospital", "services": ["tcp/22,443"]}]}"#,
    )
    .unwrap();
    let contracted = Approval {
        hosts: vec![net("10.1.5.21/32")],
        services: svcs(&["tcp/443"]),
        ..maintenance_approval(&w, MON - H, MON + H)
    };
    let g = grant(run(
        &w,
        &w.vendor,
        &vendor_all,
        &w.hospital,
        &wide,
        std::slice::from_ref(&contracted),
        MON,
    ));
    assert_eq!(g.services, svcs(&["tcp/443"]));
    assert_eq!(g.target_hosts, vec![net("10.1.5.21/32")]);
    // Without a contract the window opens everything the rule allows.
    let open = maintenance_approval(&w, MON - H, MON + H);
    let g = grant(run(
        &w,
        &w.vendor,
        &vendor_all,
        &w.hospital,
        &wide,
        &[open],
        MON,
    ));
    assert_eq!(g.target_hosts, vec![net("10.1.5.0/24")]);
    assert!(allows(&g.services, 6, Some(22)) && allows(&g.services, 6, Some(443)));
    // A port or a host the rule does not allow is not opened by the window.
    let wrong_port = Approval {
        services: svcs(&["tcp/3389"]),
        ..contracted.clone()
    };
    assert_eq!(
        deny(run(
            &w,
            &w.vendor,
            &vendor_all,
            &w.hospital,
            &wide,
            &[wrong_port],
            MON
        )),
        DenyReason::NoServiceOverlap
    );
    let wrong_host = Approval {
        hosts: vec![net("10.9.9.9/32")],
        ..contracted
    };
    assert_eq!(
        deny(run(
            &w,
            &w.vendor,
            &vendor_all,
            &w.hospital,
            &wide,
            &[wrong_host],
            MON
        )),
        DenyReason::NoAddresses
    );
}

#[test]
fn vendor_approval_must_be_current_and_for_this_vendor() {
    let w = world();
    let expired = maintenance_approval(&w, MON - 3 * H, MON - H);
    let future = maintenance_approval(&w, MON + H, MON + 2 * H);
    let ends_now = maintenance_approval(&w, MON - H, MON);
    let other_org = Approval {
        applicant_org: "vendor-2".into(),
        ..maintenance_approval(&w, MON - H, MON + H)
    };
    let other_approver = Approval {
        approver_org: "clinic-1".into(),
        ..maintenance_approval(&w, MON - H, MON + H)
    };
    let other_device = Approval {
        applicant_device: Some("vend-gw-2".into()),
        ..maintenance_approval(&w, MON - H, MON + H)
    };
    for ap in [
        expired,
        future,
        ends_now,
        other_org,
        other_approver,
        other_device,
    ] {
        let d = run(
            &w,
            &w.vendor,
            &w.vendor_policy,
            &w.hospital,
            &w.hospital_policy,
            std::slice::from_ref(&ap),
            MON,
        );
        assert_eq!(deny(d), DenyReason::ApprovalRequired, "{ap:?}");
    }
    let this_device = Approval {
        applicant_device: Some("vend-gw".into()),
        ..maintenance_approval(&w, MON - H, MON + H)
    };
    grant(run(
        &w,
        &w.vendor,
        &w.vendor_policy,
        &w.hospital,
        &w.hospital_policy,
        &[this_device],
        MON,
    ));
}

#[test]
fn vendor_cannot_reach_the_lab() {
    // Same group A, but neither the vendor's nor the lab's policy allows it.
    let w = world();
    let d = run(
        &w,
        &w.vendor,
        &w.vendor_policy,
        &w.lab,
        &w.lab_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::ApplicantPolicy);
    let d = run(
        &w,
        &w.vendor,
        &w.open_policy,
        &w.lab,
        &w.lab_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::TargetPolicy);
}

// ---- each deny reason -----------------------------------------------------

#[test]
fn deny_same_peer() {
    let w = world();
    let d = run(
        &w,
        &w.hospital,
        &w.open_policy,
        &w.hospital,
        &w.open_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::SamePeer);
}

#[test]
fn deny_unknown_group_is_no_common_group() {
    // Sharing a group the provider has not defined does not count.
    let w = world();
    let mut a = w.clinic.clone();
    let mut t = w.lab.clone();
    a.groups.insert("Z".into());
    t.groups.insert("Z".into());
    assert_eq!(
        deny(run(&w, &a, &w.open_policy, &t, &w.open_policy, &[], MON)),
        DenyReason::NoCommonGroup
    );
}

#[test]
fn a_gate_admits_only_a_current_score_of_a_named_sheet_at_the_minimum() {
    let w = world();
    let mut provider = w.provider.clone();
    provider.groups.get_mut("A").unwrap().checksheet_gate = Some(ChecksheetGate {
        sheets: vec!["large".into(), "small".into()],
        min_percent: 80,
        on_expiry: OnExpiry::Suspend,
    });
    let mut w = World { provider, ..w };
    let scored = |p: &Party, sheet: &str, percent: u8, expired: bool| {
        let mut p = p.clone();
        p.checksheet_passed = false;
        p.checksheet_scores = [(sheet.to_string(), SheetStanding { percent, expired })]
            .into_iter()
            .collect();
        p
    };
    let hospital = scored(&w.hospital, "large", 92, false);
    for (lab, admitted, on_expiry) in [
        (scored(&w.lab, "small", 80, false), true, OnExpiry::Suspend),
        (scored(&w.lab, "small", 79, false), false, OnExpiry::Suspend),
        (scored(&w.lab, "mhlw", 100, false), false, OnExpiry::Suspend),
        (scored(&w.lab, "small", 100, true), false, OnExpiry::Suspend),
        (scored(&w.lab, "small", 100, true), true, OnExpiry::Warn),
        (scored(&w.lab, "small", 10, true), false, OnExpiry::Warn),
        // The provider's attestation does not stand in for a gate's sheet.
        (
            Party {
                checksheet_passed: true,
                ..scored(&w.lab, "none", 0, false)
            },
            false,
            OnExpiry::Warn,
        ),
    ] {
        w.provider
            .groups
            .get_mut("A")
            .unwrap()
            .checksheet_gate
            .as_mut()
            .unwrap()
            .on_expiry = on_expiry;
        let d = run(
            &w,
            &hospital,
            &w.hospital_policy,
            &lab,
            &w.lab_policy,
            &[],
            MON,
        );
        if admitted {
            grant(d);
        } else {
            assert_eq!(
                deny(d),
                DenyReason::ChecksheetRequired { group: "A".into() },
                "{lab:?}"
            );
        }
    }
}

#[test]
fn deny_checksheet_required() {
    let w = world();
    let mut lab = w.lab.clone();
    lab.checksheet_passed = false;
    let d = run(
        &w,
        &w.hospital,
        &w.hospital_policy,
        &lab,
        &w.lab_policy,
        &[],
        MON,
    );
    assert_eq!(
        deny(d),
        DenyReason::ChecksheetRequired { group: "A".into() }
    );
    // Either side failing blocks it.
    let mut hosp = w.hospital.clone();
    hosp.checksheet_passed = false;
    let d = run(
        &w,
        &w.lab,
        &w.lab_policy,
        &hosp,
        &w.hospital_policy,
        &[],
        MON,
    );
    assert_eq!(
        deny(d),
        DenyReason::ChecksheetRequired { group: "A".into() }
    );
    // Group B has no gate: the hospital still reaches the clinic.
    grant(run(
        &w,
        &hosp,
        &w.hospital_policy,
        &w.clinic,
        &w.clinic_policy,
        &[],
        MON,
    ));
}

#[test]
fn deny_applicant_policy_and_default_policy() {
    let w = world();
    let d = run(
        &w,
        &w.clinic,
        &SubscriberPolicy::default(),
        &w.hospital,
        &w.open_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::ApplicantPolicy);
}

#[test]
fn deny_target_policy_and_default_policy() {
    let w = world();
    let d = run(
        &w,
        &w.clinic,
        &w.open_policy,
        &w.hospital,
        &SubscriberPolicy::default(),
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::TargetPolicy);
    // The pharmacy is in group B but the clinic only accepts hospitals.
    let d = run(
        &w,
        &w.pharmacy,
        &w.open_policy,
        &w.clinic,
        &w.clinic_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::TargetPolicy);
}

#[test]
fn deny_outside_window_and_first_open_rule_wins() {
    let w = world();
    let office = TimeWindow {
        weekdays: vec![0, 1, 2, 3, 4],
        start_minute: 9 * 60,
        end_minute: 17 * 60,
    };
    let mut tp = SubscriberPolicy {
        inbound: vec![InboundRule {
            from: Selector::Kind(OrgKind::Clinic),
            hosts: vec![],
            services: svcs(&["tcp/443"]),
            windows: vec![office],
            require_approval: false,
        }],
        outbound: vec![],
    };
    let run_at =
        |tp: &SubscriberPolicy, now| run(&w, &w.clinic, &w.open_policy, &w.hospital, tp, &[], now);
    assert_eq!(deny(run_at(&tp, MON + 8 * H)), DenyReason::OutsideWindow);
    assert_eq!(
        deny(run_at(&tp, MON + 5 * 24 * H + 10 * H)),
        DenyReason::OutsideWindow,
        "Saturday"
    );
    let g = grant(run_at(&tp, MON + 10 * H));
    assert_eq!(g.not_after, MON + 17 * H, "ends with the window");

    // A later, always-open rule is used when the first is shut.
    tp.inbound.push(InboundRule {
        from: Selector::Any,
        hosts: vec![],
        services: svcs(&["icmp"]),
        windows: vec![],
        require_approval: false,
    });
    assert_eq!(grant(run_at(&tp, MON + 8 * H)).services, svcs(&["icmp"]));
    assert_eq!(
        grant(run_at(&tp, MON + 10 * H)).services,
        svcs(&["tcp/443"])
    );
}

#[test]
fn deny_approval_required() {
    let w = world();
    let tp = SubscriberPolicy {
        inbound: vec![InboundRule {
            from: Selector::Any,
            hosts: vec![],
            services: svcs(&["any"]),
            windows: vec![],
            require_approval: true,
        }],
        outbound: vec![],
    };
    let d = run(&w, &w.clinic, &w.open_policy, &w.hospital, &tp, &[], MON);
    assert_eq!(deny(d), DenyReason::ApprovalRequired);
}

#[test]
fn deny_no_service_overlap() {
    let w = world();
    let ap = SubscriberPolicy::from_json(r#"{"outbound": [{"to": "*", "services": ["udp/53"]}]}"#)
        .unwrap();
    let d = run(
        &w,
        &w.clinic,
        &ap,
        &w.hospital,
        &w.hospital_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::NoServiceOverlap);
    // An empty service list allows nothing.
    let ap = SubscriberPolicy::from_json(r#"{"outbound": [{"to": "*", "services": []}]}"#).unwrap();
    let d = run(
        &w,
        &w.clinic,
        &ap,
        &w.hospital,
        &w.hospital_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::NoServiceOverlap);
}

#[test]
fn provider_group_services_restrict() {
    let mut w = world();
    w.provider.groups.insert(
        "B".into(),
        GroupPolicy {
            require_checksheet: false,
            services: Some(svcs(&["tcp/443"])),
            checksheet_gate: None,
        },
    );
    let g = grant(run(
        &w,
        &w.clinic,
        &w.clinic_policy,
        &w.hospital,
        &w.hospital_policy,
        &[],
        MON,
    ));
    assert_eq!(g.services, svcs(&["tcp/443"]));
    w.provider.groups.insert(
        "B".into(),
        GroupPolicy {
            require_checksheet: false,
            services: Some(svcs(&["udp"])),
            checksheet_gate: None,
        },
    );
    let d = run(
        &w,
        &w.clinic,
        &w.clinic_policy,
        &w.hospital,
        &w.hospital_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::NoServiceOverlap);
}

#[test]
fn several_common_groups_union_their_services() {
    let mut w = world();
    let mut clinic = w.clinic.clone();
    clinic.groups.insert("A".into());
    w.provider.groups.insert(
        "A".into(),
        GroupPolicy {
            require_checksheet: false,
            services: Some(svcs(&["tcp/104"])),
            checksheet_gate: None,
        },
    );
    w.provider.groups.insert(
        "B".into(),
        GroupPolicy {
            require_checksheet: false,
            services: Some(svcs(&["tcp/443", "udp/53"])),
            checksheet_gate: None,
        },
    );
    let g = grant(run(
        &w,
        &clinic,
        &w.open_policy,
        &w.hospital,
        &w.open_policy,
        &[],
        MON,
    ));
    assert_eq!(g.services, svcs(&["tcp/104,443", "udp/53"]));
    assert_eq!(g.groups, vec!["A".to_string(), "B".to_string()]);
    // Only groups that leave something are named.
    let tp =
        SubscriberPolicy::from_json(r#"{"inbound": [{"from": "*", "services": ["tcp/104"]}]}"#)
            .unwrap();
    let g = grant(run(&w, &clinic, &w.open_policy, &w.hospital, &tp, &[], MON));
    assert_eq!(g.groups, vec!["A".to_string()]);
}

#[test]
fn deny_no_addresses() {
    let w = world();
    // The rule names a host the hospital does not own.
    let tp = SubscriberPolicy::from_json(
        r#"{"inbound": [{"from": "*", "hosts": ["192.168.1.10/32"], "services": ["any"]}]}"#,
    )
    .unwrap();
    let d = run(&w, &w.clinic, &w.open_policy, &w.hospital, &tp, &[], MON);
    assert_eq!(deny(d), DenyReason::NoAddresses);
    // The applicant has no subnets.
    let mut c = w.clinic.clone();
    c.subnets.clear();
    let d = run(
        &w,
        &c,
        &w.open_policy,
        &w.hospital,
        &w.open_policy,
        &[],
        MON,
    );
    assert_eq!(deny(d), DenyReason::NoAddresses);
}

#[test]
fn rule_hosts_are_clipped_to_own_subnets() {
    let w = world();
    let tp = SubscriberPolicy::from_json(
        r#"{"inbound": [{"from": "*", "hosts": ["10.1.5.20/32", "192.168.1.0/24", "10.0.0.0/8"], "services": ["any"]}]}"#,
    )
    .unwrap();
    let g = grant(run(
        &w,
        &w.clinic,
        &w.open_policy,
        &w.hospital,
        &tp,
        &[],
        MON,
    ));
    // 10.0.0.0/8 is wider than the site: narrowed to the site's /16, which covers the /32.
    assert_eq!(g.target_hosts, vec![net("10.1.0.0/16")]);
}

#[test]
fn deny_reasons_read_as_sentences() {
    let all = [
        DenyReason::SamePeer,
        DenyReason::NoServiceCertificate {
            device_id: "d".into(),
        },
        DenyReason::NoCommonGroup,
        DenyReason::ChecksheetRequired { group: "A".into() },
        DenyReason::ApplicantPolicy,
        DenyReason::TargetPolicy,
        DenyReason::OutsideWindow,
        DenyReason::ApprovalRequired,
        DenyReason::NoServiceOverlap,
        DenyReason::NoAddresses,
    ];
    for r in &all {
        let s = r.to_string();
        assert!(s.len() > 20 && !s.ends_with('.'), "{s}");
        let j = serde_json::to_string(r).unwrap();
        assert!(j.contains(r.code()), "{j}");
        assert_eq!(&serde_json::from_str::<DenyReason>(&j).unwrap(), r);
    }
    assert_eq!(
        DenyReason::ChecksheetRequired { group: "A".into() }.to_string(),
        "group A requires both organisations to have passed the security check sheet"
    );
}

// ---- parsing -----------------------------------------------------------------

#[test]
fn selectors_parse_and_round_trip() {
    for s in [
        "*",
        "org:hospital-1",
        "kind:lab",
        "device:vend-gw",
        "group:A",
    ] {
        let sel: Selector = s.parse().unwrap();
        assert_eq!(sel.to_string(), s);
        let j = serde_json::to_string(&sel).unwrap();
        assert_eq!(serde_json::from_str::<Selector>(&j).unwrap(), sel);
    }
    assert_eq!("any".parse::<Selector>().unwrap(), Selector::Any);
    assert_eq!(
        "kind:Hospital".parse::<Selector>().unwrap(),
        Selector::Kind(OrgKind::Hospital)
    );
    for bad in ["", "org:", "kind:robot", "team:x", "hospital"] {
        assert!(bad.parse::<Selector>().is_err(), "{bad}");
    }
}

#[test]
fn org_kind_parse_and_display() {
    for k in OrgKind::ALL {
        assert_eq!(k.to_string().parse::<OrgKind>().unwrap(), k);
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
    }
    assert!("school".parse::<OrgKind>().is_err());
}

#[test]
fn policy_typos_are_errors() {
    assert!(SubscriberPolicy::from_json(r#"{"inbund": []}"#).is_err());
    assert!(SubscriberPolicy::from_json(
        r#"{"inbound": [{"from": "*", "services": ["any"], "require_aproval": true}]}"#
    )
    .is_err());
    assert!(
        SubscriberPolicy::from_json(r#"{"inbound": [{"from": "*"}]}"#).is_err(),
        "services are required"
    );
    assert!(
        SubscriberPolicy::from_json(r#"{"outbound": [{"to": "grp:A", "services": ["any"]}]}"#)
            .is_err()
    );
    assert!(SubscriberPolicy::from_json(
        r#"{"outbound": [{"to": "*", "services": ["tcp/99999"]}]}"#
    )
    .is_err());
    assert!(
        ProviderPolicy::from_json(r#"{"groups": {"A": {"require_check_sheet": true}}}"#).is_err()
    );
    assert_eq!(
        SubscriberPolicy::from_json("{}").unwrap(),
        SubscriberPolicy::default()
    );
    let p = ProviderPolicy::from_json(r#"{"groups": {"A": {"services": ["tcp/443"]}}}"#).unwrap();
    assert_eq!(p.groups["A"].services, Some(svcs(&["tcp/443"])));
}

// ---- connection info ---------------------------------------------------------

#[test]
fn connection_info_pair_mirrors_selectors() {
    let w = world();
    let ap = maintenance_approval(&w, MON - H, MON + 2 * H);
    let g = grant(run(
        &w,
        &w.vendor,
        &w.vendor_policy,
        &w.hospital,
        &w.hospital_policy,
        &[ap],
        MON,
    ));
    let (ci_a, ci_t) = connection_info_pair("grant-7", 3, &g, &w.vendor, &w.hospital, MON);

    assert_eq!(ci_a.role, Role::Initiator);
    assert_eq!(ci_t.role, Role::Responder);
    assert_eq!(ci_a.traffic_selectors.local, vec![net("10.3.0.0/24")]);
    assert_eq!(ci_a.traffic_selectors.remote, vec![net("10.1.5.20/32")]);
    assert_eq!(ci_t.traffic_selectors.local, ci_a.traffic_selectors.remote);
    assert_eq!(ci_t.traffic_selectors.remote, ci_a.traffic_selectors.local);
    assert_eq!(ci_a.peer.identity, "CN=hosp-gw");
    assert_eq!(ci_a.peer.org_id, "hospital-1");
    assert_eq!(
        ci_a.peer.subnets,
        vec![net("10.1.5.20/32")],
        "only the granted part of the peer is disclosed"
    );
    assert_eq!(ci_t.peer.identity, "CN=vend-gw");
    assert_eq!(ci_t.local.subnets, vec![net("10.1.0.0/16")]);
    assert_eq!(ci_a.services, svcs(&["tcp/22"]));
    assert_eq!(
        (ci_a.version, ci_a.issued_at, ci_a.not_after),
        (3, MON, MON + 2 * H)
    );
    assert!(ci_a.is_valid_at(MON) && !ci_a.is_valid_at(MON + 2 * H));
    assert_eq!(ci_a.ike_proposals.len(), 3);
    assert_eq!(
        ci_a.esp_proposals,
        vec!["aes128gcm16", "aes256gcm16", "chacha20poly1305"]
    );
}

#[test]
fn canonical_bytes_are_stable_and_ordered() {
    let w = world();
    let g = grant(run(
        &w,
        &w.clinic,
        &w.clinic_policy,
        &w.hospital,
        &w.hospital_policy,
        &[],
        MON,
    ));
    let (ci, _) = connection_info_pair("g1", 1, &g, &w.clinic, &w.hospital, MON);
    let bytes = ci.canonical_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"grant_id":"g1","version":1,"issued_at":"#),
        "{text}"
    );
    assert!(text.contains(r#""services":["tcp/104,443"]"#), "{text}");
    let back: ConnectionInfo = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, ci);
    assert_eq!(back.canonical_bytes(), bytes);
}

#[test]
fn mapped_sites_are_shown_by_their_visible_prefixes() {
    // R-DP-8: the clinic's 10.4.0.0/24 also exists elsewhere; the centre
    // mapped it to 100.64.1.0/24. The hospital also had its 10.1.0.0/16
    // mapped (both ends of an overlap are), so its granted host moves too.
    let mut w = world();
    w.clinic.mapped_subnets = vec![net("100.64.1.0/24")];
    let g = grant(run(
        &w,
        &w.clinic,
        &w.clinic_policy,
        &w.hospital,
        &w.hospital_policy,
        &[],
        MON,
    ));
    assert_eq!(
        g.applicant_hosts,
        vec![net("10.4.0.0/24")],
        "grants stay real"
    );
    let (ci_c, ci_h) = connection_info_pair("g1", 1, &g, &w.clinic, &w.hospital, MON);
    assert_eq!(ci_c.local.subnets, vec![net("10.4.0.0/24")]);
    assert_eq!(ci_c.local.mapped_subnets, vec![net("100.64.1.0/24")]);
    assert_eq!(
        ci_c.local.mapping(),
        vec![(net("10.4.0.0/24"), net("100.64.1.0/24"))]
    );
    assert_eq!(ci_c.traffic_selectors.local, vec![net("100.64.1.0/24")]);
    assert_eq!(ci_h.peer.subnets, vec![net("100.64.1.0/24")]);
    assert_eq!(ci_h.traffic_selectors.remote, vec![net("100.64.1.0/24")]);
    assert!(ci_h.local.mapped_subnets.is_empty());
    let text = String::from_utf8(ci_h.canonical_bytes()).unwrap();
    assert!(
        !text.contains("mapped_subnets"),
        "absent when unmapped: {text}"
    );
    let back: ConnectionInfo = serde_json::from_slice(&ci_c.canonical_bytes()).unwrap();
    assert_eq!(back, ci_c);

    // The hospital mapped too: a rule's host (real 10.1.5.20) keeps its offset.
    w.hospital.mapped_subnets = vec![net("100.65.0.0/16")];
    let g = grant(run(
        &w,
        &w.vendor,
        &w.vendor_policy,
        &w.hospital,
        &w.hospital_policy,
        &[maintenance_approval(&w, MON - H, MON + 2 * H)],
        MON,
    ));
    let (ci_v, ci_h) = connection_info_pair("g2", 1, &g, &w.vendor, &w.hospital, MON);
    assert_eq!(ci_v.traffic_selectors.remote, vec![net("100.65.5.20/32")]);
    assert_eq!(ci_v.peer.subnets, vec![net("100.65.5.20/32")]);
    assert_eq!(ci_h.traffic_selectors.local, vec![net("100.65.5.20/32")]);
    assert_eq!(ci_h.local.subnets, vec![net("10.1.0.0/16")]);
}

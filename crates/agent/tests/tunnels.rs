//! The agent's side of IKE_AUTH and of turning grants into connections: who is accepted
//! as a peer (tier-2 service certificate of the centre's service CA, the grant's identity,
//! not revoked) and how grants become per-peer connections and filter rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use dodvpn_agent::tunnels::{plan, rules_of, ServiceCertValidator};
use dodvpn_dataplane::{FlowRule, Side};
use dodvpn_ike::PeerValidator;
use dodvpn_pki::{csr_pem, FileKeyStore, IssuedCert, KeyStore, Pki, RevokedEntry, Tier};
use dodvpn_policy::{ConnectionInfo, LocalEnd, PeerEnd, Role, TrafficSelectors};
use dodvpn_wire::Identification;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn new_pki() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = Pki::create(&dir.path().join("pki"), &["centre.test".to_string()]).unwrap();
    (dir, pki)
}

/// A device's tier-1 and tier-2 certificates from `pki`.
fn device(pki: &Pki, id: &str, serials: (u64, u64)) -> (tempfile::TempDir, IssuedCert, IssuedCert) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileKeyStore::open(&dir.path().join("ks"), b"passphrase").unwrap();
    store.generate(Tier::Device).unwrap();
    store.generate(Tier::Service).unwrap();
    let csr1 = csr_pem(&store, Tier::Device, "SN-1").unwrap();
    let dev = pki
        .issue_device_cert(&csr1, "SN-1", "DV-100", "org-a", serials.0, 365)
        .unwrap();
    let csr2 = csr_pem(&store, Tier::Service, id).unwrap();
    let svc = pki
        .issue_service_cert(&csr2, id, "org-a", serials.1, 30)
        .unwrap();
    (dir, dev, svc)
}

fn validator(pki: &Pki) -> ServiceCertValidator {
    ServiceCertValidator {
        service_ca_pem: pki.service_ca_pem().to_string(),
        revoked: Arc::default(),
    }
}

#[test]
fn a_valid_service_certificate_with_the_grants_identity_is_accepted() {
    let (_d, pki) = new_pki();
    let (_s, _dev, svc) = device(&pki, "dev-42", (1, 2));
    let v = validator(&pki);
    v.validate(&svc.der, &Identification::fqdn("dev-42.dodvpn"))
        .expect("accepted");
}

#[test]
fn another_identity_is_refused() {
    let (_d, pki) = new_pki();
    let (_s, _dev, svc) = device(&pki, "dev-42", (1, 2));
    let e = validator(&pki)
        .validate(&svc.der, &Identification::fqdn("dev-43.dodvpn"))
        .unwrap_err();
    assert!(e.contains("not issued to"), "{e}");
}

#[test]
fn a_tier_one_device_certificate_is_refused_in_ike() {
    let (_d, pki) = new_pki();
    let (_s, dev, _svc) = device(&pki, "dev-42", (1, 2));
    let e = validator(&pki)
        .validate(&dev.der, &Identification::fqdn("dev-42.dodvpn"))
        .unwrap_err();
    assert!(
        e.to_lowercase().contains("tier") || e.contains("profile"),
        "{e}"
    );
}

#[test]
fn an_expired_service_certificate_is_refused() {
    let (_d, pki) = new_pki();
    let (_s, _dev, svc) = device(&pki, "dev-42", (1, 2));
    let v = validator(&pki);
    let id = Identification::fqdn("dev-42.dodvpn");
    let at = |days: i64| {
        dodvpn_tunnel::peer::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            (now() + days * 86_400) as u64,
        ))
    };
    v.validate_at(&svc.der, &id, at(29))
        .expect("valid for 30 days");
    let e = v.validate_at(&svc.der, &id, at(31)).unwrap_err();
    assert!(e.contains("refused") && e.contains("Expired"), "{e}");
}

#[test]
fn a_certificate_of_another_centre_is_refused() {
    let (_d, pki) = new_pki();
    let (_d2, foreign) = new_pki();
    let (_s, _dev, svc) = device(&foreign, "dev-42", (1, 2));
    let e = validator(&pki)
        .validate(&svc.der, &Identification::fqdn("dev-42.dodvpn"))
        .unwrap_err();
    assert!(e.contains("refused"), "{e}");
}

#[test]
fn a_peer_in_the_service_crl_is_refused_even_without_its_push() {
    let (_d, pki) = new_pki();
    let (_s, _dev, svc) = device(&pki, "dev-42", (1, 2));
    let (_s2, _dev2, other) = device(&pki, "dev-43", (3, 4));
    let v = validator(&pki);
    let crl = pki
        .crl_pem(
            Tier::Service,
            &[RevokedEntry {
                serial: svc.serial,
                revoked_at_unix: now(),
            }],
            7,
            now(),
            3600,
        )
        .unwrap();
    let serials = dodvpn_pki::crl_revoked_serials(&crl, pki.service_ca_pem()).unwrap();
    *v.revoked.write().unwrap() = serials.into_iter().collect();
    let e = v
        .validate(&svc.der, &Identification::fqdn("dev-42.dodvpn"))
        .unwrap_err();
    assert!(e.to_lowercase().contains("revoked"), "{e}");
    v.validate(&other.der, &Identification::fqdn("dev-43.dodvpn"))
        .expect("others stay accepted");
    // A CRL signed by the device CA does not verify as the service CRL.
    let wrong = pki.crl_pem(Tier::Device, &[], 1, now(), 3600).unwrap();
    assert!(dodvpn_pki::crl_revoked_serials(&wrong, pki.service_ca_pem()).is_err());
}

fn info(
    id: &str,
    peer: &str,
    role: Role,
    endpoint: Option<&str>,
    services: &[&str],
) -> ConnectionInfo {
    ConnectionInfo {
        grant_id: id.into(),
        version: 1,
        issued_at: now() - 10,
        not_after: now() + 3600,
        role,
        local: LocalEnd {
            device_id: "dev-me".into(),
            identity: "dev-me.dodvpn".into(),
            subnets: vec!["10.1.0.0/24".parse().unwrap()],
            mapped_subnets: Vec::new(),
        },
        peer: PeerEnd {
            candidates: Vec::new(),
            device_id: peer.into(),
            org_id: "org-p".into(),
            identity: format!("{peer}.dodvpn"),
            endpoint: endpoint.map(String::from),
            subnets: vec!["10.2.0.0/24".parse().unwrap()],
        },
        traffic_selectors: TrafficSelectors {
            local: vec!["10.1.0.0/24".parse().unwrap()],
            remote: vec!["10.2.0.50/32".parse().unwrap()],
        },
        services: services.iter().map(|s| s.parse().unwrap()).collect(),
        ike_proposals: vec!["aes128gcm16-prfsha256-ecp256".into()],
        esp_proposals: vec!["aes128gcm16".into()],
    }
}

#[test]
fn grants_to_one_peer_share_one_connection_and_unusable_ones_are_reported() {
    let mut g = BTreeMap::new();
    g.insert(
        "g1".to_string(),
        info(
            "g1",
            "dev-a",
            Role::Initiator,
            Some("192.0.2.2"),
            &["tcp/22"],
        ),
    );
    let mut two = info(
        "g2",
        "dev-a",
        Role::Responder,
        Some("192.0.2.2"),
        &["tcp/443"],
    );
    two.traffic_selectors.remote = vec!["10.2.0.60/32".parse().unwrap()];
    g.insert("g2".to_string(), two);
    g.insert(
        "g3".to_string(),
        info("g3", "dev-b", Role::Initiator, None, &["any"]),
    );
    let mut old = info("g4", "dev-c", Role::Initiator, Some("192.0.2.4"), &["any"]);
    old.not_after = now() - 1;
    g.insert("g4".to_string(), old);
    let (plans, skipped) = plan(&g, now());
    // Issue 19: a peer without an endpoint (dev-b) still gets its connection, with
    // no address to dial; it is answered when it comes from wherever it is.
    assert_eq!(plans.len(), 2, "{plans:?}");
    assert_eq!(plans[1].peer_device, "dev-b");
    assert_eq!(plans[1].remote_addr, None);
    let p = &plans[0];
    assert_eq!(p.peer_device, "dev-a");
    assert!(p.initiate, "one grant lets us open");
    assert_eq!(p.remote_nets.len(), 2);
    assert_eq!(p.grants.len(), 2);
    assert_eq!(p.rules.len(), 2);
    let why: Vec<&str> = skipped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(why, ["g4"], "only the expired grant");
}

#[test]
fn rules_follow_who_opens() {
    let r = rules_of(&info(
        "g",
        "dev-a",
        Role::Initiator,
        Some("192.0.2.2"),
        &["tcp/22"],
    ));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].opener, Side::Local);
    assert_eq!(r[0].proto, Some(6));
    assert_eq!(r[0].ports, vec![(22, 22)]);
    assert_eq!(
        r[0].remote_hosts,
        vec!["10.2.0.50/32".parse::<ipnet::IpNet>().unwrap()]
    );
    let r = rules_of(&info(
        "g",
        "dev-a",
        Role::Responder,
        Some("192.0.2.2"),
        &["udp/514", "icmp"],
    ));
    assert!(r.iter().all(|x| x.opener == Side::Remote));
    // `icmp` is ICMP and ICMPv6 (an IPv6 inner subnet pings with ICMPv6).
    assert_eq!(
        r.iter().map(|x| x.proto).collect::<Vec<_>>(),
        [Some(17), Some(1), Some(58)]
    );
    let r = rules_of(&info("g", "dev-a", Role::Both, Some("192.0.2.2"), &["any"]));
    assert_eq!(
        r.iter().map(|x| x.opener).collect::<Vec<_>>(),
        [Side::Local, Side::Remote]
    );
    // A grant without services lets nothing through (not "everything").
    let mut g = BTreeMap::new();
    g.insert(
        "g".to_string(),
        info("g", "dev-a", Role::Initiator, Some("192.0.2.2"), &[]),
    );
    let (plans, _) = plan(&g, now());
    assert_eq!(
        plans[0].rules,
        vec![FlowRule::service(Side::Local, Some(255), &[])]
    );
}

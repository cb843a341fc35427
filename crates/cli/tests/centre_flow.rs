//! The centre end to end: initialisation and restart, TR D.6 steps a–l through the
//! real CLI, group/policy decisions (R-POL-1..3) and signed connection info, each on
//! SQLite (embedded default) and on a real PostgreSQL server (R-OPS-1).

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

both_backends!(init_and_restart_keep_state);
both_backends!(steps_a_to_l_through_the_cli);
both_backends!(groups_and_two_sided_policy);

async fn init_and_restart_keep_state(b: Backend) {
    let mut c = Centre::start(b);
    let out = c.stdout_lines.join("\n");
    for what in [
        "accreditation root",
        "device CA (tier 1)",
        "service CA (tier 2)",
        "centre TLS certificate",
        "admin credential",
    ] {
        assert!(out.contains(what), "startup output names {what}: {out}");
    }
    // Secrets are 0600, the data directory 0700.
    assert_eq!(mode_of(&c.credential_path()), 0o600);
    assert_eq!(mode_of(&c.dir), 0o700);
    for key in [
        "root.key",
        "device-ca.key",
        "service-ca.key",
        "centre-tls.key",
        "centre-signing.key",
    ] {
        let p = c.dir.join("pki").join(key);
        assert!(p.exists(), "{key} exists");
        assert_eq!(mode_of(&p), 0o600, "{key} is 0600");
    }
    let root_before = c.ca_pem();
    let org = c.org("Central Hospital", "hospital");
    c.restart();
    assert!(
        c.stdout_lines.join("\n").contains("started"),
        "second start reuses the data directory"
    );
    assert_eq!(c.ca_pem(), root_before, "the PKI is kept across restarts");
    let orgs = c.admin_ok(&["org", "list"]);
    assert_eq!(orgs[0]["id"], json!(org), "state survives a restart");
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn steps_a_to_l_through_the_cli(b: Backend) {
    let c = Centre::start(b);
    let ca = c.ca_path();
    let ca = ca.to_str().unwrap();
    let env = [("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE)];
    // a) subscription
    let hosp = c.org("Central Hospital", "hospital");
    let vendor = c.org("Imaging Vendor", "vendor");
    // b) order
    let order = c.admin_ok(&["order", "create", "--org", &hosp, "--model", "DV-100"]);
    // c) registration by the device provider: the provider made the vendor one and
    // contracted it to serve the hospital
    c.admin_ok(&["org", "device-provider", "grant", &vendor]);
    c.admin_ok(&["org", "provider-contract", "add", &vendor, &hosp]);
    let vendor_cred = tempfile::NamedTempFile::new().unwrap();
    c.admin_ok(&[
        "org",
        "admin",
        &vendor,
        "--label",
        "device provider",
        "--out",
        vendor_cred.path().to_str().unwrap(),
    ]);
    assert_eq!(
        mode_of(vendor_cred.path()),
        0o600,
        "credential files are 0600"
    );
    let dev = c
        .admin_as(
            vendor_cred.path(),
            &[
                "device",
                "register",
                "--serial",
                "SN-0001",
                "--model",
                "DV-100",
                "--owner",
                &hosp,
                "--order",
                order["id"].as_str().unwrap(),
                "--subnet",
                "10.1.0.0/24",
            ],
        )
        .unwrap();
    let dev = dev["id"].as_str().unwrap().to_string();
    // The owner's side confirms the device before it is certified (here the provider).
    c.admin_ok(&["device", "confirm", &dev]);
    // d) + e) provisioning: the tier-1 key is generated in the key store
    let ks = tempfile::tempdir().unwrap();
    let ksd = ks.path().join("ks");
    let ksd = ksd.to_str().unwrap();
    let (ok, so, se) = run(
        &[
            "device",
            "provision",
            "--center",
            &c.url,
            "--ca",
            ca,
            "--credential-file",
            vendor_cred.path().to_str().unwrap(),
            "--keystore",
            ksd,
            "--device",
            &dev,
        ],
        &env,
    );
    assert!(ok, "provision: {se}");
    assert!(so.contains("device certificate installed"), "{so}");
    // f) delivery, g) application, h) approval
    c.admin_as(vendor_cred.path(), &["device", "deliver", &dev])
        .unwrap();
    let hosp_cred = tempfile::NamedTempFile::new().unwrap();
    c.admin_ok(&[
        "org",
        "admin",
        &hosp,
        "--out",
        hosp_cred.path().to_str().unwrap(),
    ]);
    c.admin_as(hosp_cred.path(), &["service", "apply", &dev])
        .unwrap();
    let e = c
        .admin_as(hosp_cred.path(), &["service", "approve", &dev])
        .unwrap_err();
    assert!(
        e.contains("provider_only"),
        "only the provider approves: {e}"
    );
    c.admin_ok(&["service", "approve", &dev]);
    // i) + j) enrolment with the tier-1 certificate; the service key is separate
    let (ok, so, se) = run(
        &["agent", "enroll", "--keystore", ksd, "--center", &c.url],
        &env,
    );
    assert!(ok, "enroll: {se}");
    assert!(so.contains(&format!("enrolled: device {dev}")), "{so}");
    // l) service start
    c.admin_ok(&["service", "start", &dev]);
    let d = c.admin_ok(&["device", "show", &dev]);
    assert_eq!(d["status"], json!("in_service"));
    // k) a connection application from the device itself (nobody to reach yet: refused)
    let (ok, so, se) = run(
        &[
            "agent",
            "connect",
            "--keystore",
            ksd,
            "--group",
            "A",
            "--json",
        ],
        &env,
    );
    assert!(ok, "connect: {se}");
    let v: Value = serde_json::from_str(&so).unwrap();
    assert_eq!(v["outcomes"], json!([]), "empty group: nobody granted");
    let (ok, so, _) = run(&["agent", "status", "--keystore", ksd, "--json"], &env);
    assert!(ok);
    let st: Value = serde_json::from_str(&so).unwrap();
    assert_eq!(st["device_certificate"], json!(true));
    assert_eq!(st["service_certificate"], json!(true));
    // The two tiers are two different keys and certificates.
    let certs = c.admin_ok(&["cert", "list", "--device", &dev]);
    let tiers: Vec<&str> = certs
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, vec!["device", "service"]);
    assert_ne!(certs[0]["fingerprint"], certs[1]["fingerprint"]);
    // Every step is an audit record, in order.
    let steps: Vec<String> = audit_actions(&c)
        .into_iter()
        .filter_map(|(_, d)| d.get("step").and_then(|s| s.as_str()).map(String::from))
        .collect();
    let mut seen = steps.clone();
    seen.dedup();
    assert_eq!(
        seen,
        ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "l", "k"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        "{steps:?}"
    );
    // TR order has k before l; here the application comes after service start, as a device can only apply once in service.
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}

async fn groups_and_two_sided_policy(b: Backend) {
    let c = Centre::start(b);
    let hosp = c.org("Core Hospital", "hospital");
    let clinic = c.org("Clinic", "clinic");
    let pharm = c.org("Pharmacy", "pharmacy");
    let lab = c.org("Lab", "lab");
    let vendor = c.org("Vendor", "vendor");
    let outsider_org = c.org("Outsider", "clinic");
    let h = onboard(&c, &hosp, "H1", "10.1.0.0/24").await;
    let cl = onboard(&c, &clinic, "C1", "10.2.0.0/24").await;
    let ph = onboard(&c, &pharm, "P1", "10.3.0.0/24").await;
    let lb = onboard(&c, &lab, "L1", "10.4.0.0/24").await;
    let vd = onboard(&c, &vendor, "V1", "10.5.0.0/24").await;
    let out = onboard(&c, &outsider_org, "X1", "10.6.0.0/24").await;
    c.admin_ok(&["group", "create", "A"]);
    c.admin_ok(&["group", "create", "B"]);
    for d in [&h.id, &lb.id, &vd.id] {
        c.admin_ok(&["group", "add", "A", d]);
    }
    for d in [&h.id, &cl.id, &ph.id] {
        c.admin_ok(&["group", "add", "B", d]);
    }
    // Deny by default: before any subscriber policy, even group members reach no one.
    let r = c.admin_refused(&["connection", "apply", "--from", &cl.id, "--to", &h.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(false), "{r}");
    for org in [&hosp, &clinic, &pharm, &lab, &outsider_org] {
        set_policy(&c, org, &open_policy());
    }
    // The hospital accepts the vendor only to one host and port, only with approval.
    set_policy(
        &c,
        &hosp,
        &json!({
            "inbound": [
                {"from": format!("org:{vendor}"), "hosts": ["10.1.0.50/32"], "services": ["tcp/22"], "require_approval": true},
                {"from": "*", "services": ["any"]}
            ],
            "outbound": [{"to": "*", "services": ["any"]}]
        }),
    );
    set_policy(
        &c,
        &vendor,
        &json!({"inbound": [], "outbound": [{"to": "kind:hospital", "services": ["tcp/22", "tcp/443"]}]}),
    );

    // Group B: clinic → hospital granted.
    let r = c.admin_ok(&["connection", "apply", "--from", &cl.id, "--to", &h.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(true), "{r}");
    // Clinic ↔ lab: no common group (TR D.3).
    let r = c.admin_refused(&["connection", "apply", "--from", &cl.id, "--to", &lb.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(false));
    assert!(
        r["outcomes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("group"),
        "{r}"
    );
    // The outsider (group C) reaches no one, even with an open policy.
    let r = c.admin_refused(&["connection", "apply", "--from", &out.id, "--to", &h.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(false));
    // Vendor → hospital needs the hospital's approval window.
    let r = c.admin_refused(&["connection", "apply", "--from", &vd.id, "--to", &h.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(false));
    assert!(
        r["outcomes"][0]["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("approv"),
        "{r}"
    );
    let hosp_cred = tempfile::NamedTempFile::new().unwrap();
    c.admin_ok(&[
        "org",
        "admin",
        &hosp,
        "--out",
        hosp_cred.path().to_str().unwrap(),
    ]);
    let appr = c
        .admin_as(
            hosp_cred.path(),
            &[
                "approval",
                "open",
                "--approver",
                &hosp,
                "--applicant",
                &vendor,
                "--minutes",
                "30",
            ],
        )
        .unwrap();
    // The vendor applies from its device, over mutual TLS with its service certificate.
    let r: Value = vd
        .tier2(&c)
        .post("/api/v1/device/connections", &json!({"to_device": h.id}))
        .await
        .unwrap();
    assert_eq!(r["outcomes"][0]["granted"], json!(true), "{r}");
    let grant_id = r["outcomes"][0]["grant_id"].as_str().unwrap().to_string();

    // The vendor's connection info: only the contracted host and port, signed by the centre.
    let st: Value = vd.tier2(&c).get("/api/v1/device/state").await.unwrap();
    let infos = st["connection_info"].as_array().unwrap();
    let info = infos
        .iter()
        .find(|i| i["info"]["grant_id"] == json!(grant_id))
        .unwrap();
    assert_eq!(
        info["info"]["traffic_selectors"]["remote"],
        json!(["10.1.0.50/32"])
    );
    assert_eq!(
        info["info"]["traffic_selectors"]["local"],
        json!(["10.5.0.0/24"])
    );
    assert_eq!(info["info"]["peer"]["device_id"], json!(h.id));
    assert_eq!(
        info["info"]["peer"]["identity"],
        json!(format!("{}.dodvpn", h.id))
    );
    assert!(!info["info"]["ike_proposals"].as_array().unwrap().is_empty());
    let signed: dodvpn_agent::sync::SignedInfo = serde_json::from_value(info.clone()).unwrap();
    let signer = st["signer_certificate"].as_str().unwrap();
    dodvpn_agent::sync::verify(signer, &signed).expect("connection info verifies");
    let mut forged = signed.clone();
    forged.info.traffic_selectors.remote = vec!["10.1.0.0/16".parse().unwrap()];
    assert!(
        dodvpn_agent::sync::verify(signer, &forged).is_err(),
        "a widened selector breaks the signature"
    );
    // The hospital got the mirrored half.
    let hs: Value = h.tier2(&c).get("/api/v1/device/state").await.unwrap();
    let hinfo = hs["connection_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["info"]["grant_id"] == json!(grant_id))
        .unwrap();
    assert_eq!(
        hinfo["info"]["traffic_selectors"]["local"],
        json!(["10.1.0.50/32"])
    );

    // Closing the window withdraws the grant.
    c.admin_as(
        hosp_cred.path(),
        &["approval", "close", appr["id"].as_str().unwrap()],
    )
    .unwrap();
    let g = c.admin_ok(&["grant", "list", "--device", &vd.id]);
    let g = g
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == json!(grant_id))
        .unwrap()
        .clone();
    assert_eq!(g["status"], json!("withdrawn"), "{g}");
    // Narrowing the clinic's policy withdraws the clinic's live grant (R-POL-5).
    set_policy(&c, &clinic, &json!({"inbound": [], "outbound": []}));
    let live = c.admin_ok(&["grant", "list", "--status", "active"]);
    assert_eq!(
        live,
        json!([]),
        "no grant survives a policy that allows nothing"
    );
    let actions: Vec<String> = audit_actions(&c).into_iter().map(|(a, _)| a).collect();
    for a in [
        "connection.granted",
        "connection.denied",
        "approval.opened",
        "approval.closed",
        "connection.withdrawn",
        "policy.subscriber_changed",
    ] {
        assert!(actions.iter().any(|x| x == a), "audit has {a}");
    }
}

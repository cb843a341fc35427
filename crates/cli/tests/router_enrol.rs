//! A standard IKEv2 router as a site (issue 4, item 7): enrolment from the router's own
//! certificate request (`dodvpn agent enroll --csr`, its key never leaves it), clear
//! refusals of bad requests, and `dodvpn admin grant show` printing each end's
//! connection info for configuring the router by hand.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use serde_json::Value;

/// `dodvpn agent enroll ARGS` against the test centre; (success, stdout, stderr).
fn agent_enroll(c: &Centre, ks: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["agent", "enroll", "--center", &c.url, "--keystore"])
        .arg(ks)
        .args(extra)
        .env("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .output()
        .expect("run dodvpn agent enroll");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A router's key and certificate request, made outside dodvpn.
fn router_csr(san: Option<&str>) -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "hospital router");
    if let Some(s) = san {
        p.subject_alt_names = vec![SanType::DnsName(s.try_into().unwrap())];
    }
    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_router_enrols_from_its_own_request_and_gets_its_connection_info() {
    let c = Centre::start(Backend::Sqlite);
    let org = c.org("Core Hospital", "hospital");
    let router = register(&c, &org, "RTR-1", "10.2.0.0/24");
    // The provider provisions a key store holding only the router's tier-1 identity.
    let (tmp, ks, store) = new_store();
    dodvpn_agent::enroll::provision(&c.client(), &c.ca_pem(), store.as_ref(), &router)
        .await
        .unwrap();
    drop(store);
    c.admin_ok(&["device", "deliver", &router]);
    c.admin_ok(&["service", "apply", &router]);
    c.admin_ok(&["service", "approve", &router]);
    let dir = tmp.path();
    let cert_out = dir.join("router.crt");
    let cert_s = cert_out.to_str().unwrap();

    // Bad requests are refused before anything is issued, each with a clear reason.
    let garbage = dir.join("garbage.csr");
    std::fs::write(&garbage, b"this is not a certificate request\n").unwrap();
    let (ok, _, err) = agent_enroll(
        &c,
        &ks,
        &["--csr", garbage.to_str().unwrap(), "--cert-out", cert_s],
    );
    assert!(!ok);
    assert!(
        err.contains("not a PKCS#10 certificate request"),
        "garbage: {err}"
    );
    let (key, _) = router_csr(None);
    let keyfile = dir.join("router.key");
    std::fs::write(&keyfile, key.serialize_pem()).unwrap();
    let (ok, _, err) = agent_enroll(
        &c,
        &ks,
        &["--csr", keyfile.to_str().unwrap(), "--cert-out", cert_s],
    );
    assert!(!ok);
    assert!(
        err.contains("not a CERTIFICATE REQUEST") && err.contains("PRIVATE KEY"),
        "a key instead of a request: {err}"
    );
    let (_, wrong) = router_csr(Some("router.example.org"));
    let wrongfile = dir.join("wrong.csr");
    std::fs::write(&wrongfile, wrong).unwrap();
    let (ok, _, err) = agent_enroll(
        &c,
        &ks,
        &["--csr", wrongfile.to_str().unwrap(), "--cert-out", cert_s],
    );
    assert!(!ok);
    assert!(
        err.contains("router.example.org") && err.contains(&format!("{router}.dodvpn")),
        "wrong SAN: {err}"
    );
    // A tampered request (signature no longer verifies).
    let (_, good) = router_csr(Some(&format!("{router}.dodvpn")));
    let der = pem_body(&good);
    let mut bad = der.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x55;
    let badfile = dir.join("tampered.csr");
    std::fs::write(&badfile, &bad).unwrap();
    let (ok, _, err) = agent_enroll(
        &c,
        &ks,
        &["--csr", badfile.to_str().unwrap(), "--cert-out", cert_s],
    );
    assert!(!ok);
    assert!(err.contains("signature does not verify"), "tampered: {err}");
    assert!(!cert_out.exists());
    assert_eq!(
        c.admin_ok(&["device", "show", &router])["status"],
        "service_approved",
        "nothing was issued for the refused requests"
    );

    // The router's real request (DER, as strongSwan's `pki --req` writes by default).
    let (router_key, good) = router_csr(Some(&format!("{router}.dodvpn")));
    let goodfile = dir.join("router.csr");
    std::fs::write(&goodfile, pem_body(&good)).unwrap();
    let (ok, out, err) = agent_enroll(
        &c,
        &ks,
        &["--csr", goodfile.to_str().unwrap(), "--cert-out", cert_s],
    );
    assert!(ok, "enrol from the router's request: {err}");
    assert!(out.contains(&format!("enrolled: device {router}")), "{out}");
    assert!(
        out.contains(&format!("IKE identity: {router}.dodvpn")),
        "{out}"
    );
    let pem = std::fs::read_to_string(&cert_out).unwrap();
    let info = dodvpn_pki::inspect(&pem_body(&pem)).unwrap();
    assert_eq!(
        info.public_key_spki_der,
        pem_body(&router_key.public_key_pem())
    );
    assert_eq!(info.dns_names, vec![format!("{router}.dodvpn")]);
    assert_eq!(info.tier, Some(dodvpn_pki::Tier::Service));
    let ca = std::fs::read_to_string(dir.join("service-ca.pem")).unwrap();
    let root = std::fs::read_to_string(dir.join("root-ca.pem")).unwrap();
    assert_eq!(root.trim(), c.ca_pem().trim(), "the root CA is written too");
    dodvpn_pki::validate(
        &pem_body(&pem),
        dodvpn_pki::Tier::Service,
        &ca,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        &|_| false,
    )
    .unwrap();
    // Step j confirmed (by the tier-1 certificate) and service can start (step l).
    assert_eq!(
        c.admin_ok(&["device", "show", &router])["status"],
        "service_installed"
    );
    let j = audit_actions(&c)
        .into_iter()
        .find(|(a, _)| a == "service_cert.installed")
        .expect("step j audited");
    assert_eq!(j.1["confirmed_with"], "device", "{j:?}");
    c.admin_ok(&["service", "start", &router]);
    // The key store never held a service key: the router's key stayed with the router.
    let store = dodvpn_pki::FileKeyStore::open(&ks, PASSPHRASE.as_bytes()).unwrap();
    assert!(
        dodvpn_pki::KeyStore::public_key(&store, dodvpn_pki::Tier::Service)
            .unwrap()
            .is_none()
    );
    drop(store);

    // Re-running (e.g. after a crash before the file was written) fetches the same certificate.
    std::fs::remove_file(&cert_out).unwrap();
    let (ok, out, err) = agent_enroll(
        &c,
        &ks,
        &["--csr", goodfile.to_str().unwrap(), "--cert-out", cert_s],
    );
    assert!(ok, "re-run: {err}");
    assert!(out.contains("recovered"), "{out}");
    assert_eq!(std::fs::read_to_string(&cert_out).unwrap(), pem);
    // Another key for an enrolled device is refused, saying why.
    let (_, other) = router_csr(None);
    let otherfile = dir.join("other.csr");
    std::fs::write(&otherfile, other).unwrap();
    let (ok, _, err) = agent_enroll(
        &c,
        &ks,
        &["--csr", otherfile.to_str().unwrap(), "--cert-out", cert_s],
    );
    assert!(!ok);
    assert!(err.contains("for another key"), "{err}");

    // A clinic running the agent applies to the router; the operator reads the router's
    // end of the grant to configure it by hand.
    let corg = c.org("Clinic", "clinic");
    let clinic = onboard(&c, &corg, "CLN-1", "10.1.0.0/24").await;
    set_policy(&c, &org, &open_policy());
    set_policy(&c, &corg, &open_policy());
    c.admin_ok(&["group", "create", "B"]);
    c.admin_ok(&["group", "add", "B", &router]);
    c.admin_ok(&["group", "add", "B", &clinic.id]);
    let r = c.admin_ok(&["connection", "apply", "--from", &clinic.id, "--to", &router]);
    assert_eq!(r["outcomes"][0]["granted"], true, "{r}");
    let grants = c.admin_ok(&["grant", "list", "--device", &router]);
    let gid = grants[0]["id"].as_str().unwrap().to_string();
    let g = c.admin_ok(&["grant", "show", &gid]);
    let t: &Value = &g["target_connection_info"]["info"];
    assert_eq!(t["role"], "responder", "{g}");
    assert_eq!(t["local"]["identity"], format!("{router}.dodvpn"));
    assert_eq!(t["peer"]["identity"], format!("{}.dodvpn", clinic.id));
    assert_eq!(t["traffic_selectors"]["local"][0], "10.2.0.0/24");
    assert_eq!(t["traffic_selectors"]["remote"][0], "10.1.0.0/24");
    assert!(t["ike_proposals"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(t["esp_proposals"].as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(g["applicant_connection_info"]["info"]["role"], "initiator");
    assert!(c.admin(&["grant", "show", "no-such-grant"]).is_err());
}

/// The DER inside the first PEM block.
fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

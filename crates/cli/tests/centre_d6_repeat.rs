//! Every step of TR D.6 is safe to repeat after a crash on either side (issue 9 point 2).
//! Each test opens one window between "the centre committed" and "the client recorded"
//! (by doing the step's call directly and then killing and restarting the centre, or by
//! deleting what the client wrote), runs the real `dodvpn` command again, and checks
//! that it completes, that nothing was lost or doubled, and that another key or
//! certificate is still refused.

mod common;

use std::path::Path;

use common::*;
use dodvpn_agent::client::refusal_code;
use dodvpn_pki::Tier;
use serde_json::{json, Value};

fn provision_cli(c: &Centre, keystore: &Path, device: &str) -> anyhow::Result<String> {
    dodvpn(&[
        "device",
        "provision",
        "--center",
        &c.url,
        "--ca",
        c.ca_path().to_str().unwrap(),
        "--credential-file",
        c.credential_path().to_str().unwrap(),
        "--keystore",
        keystore.to_str().unwrap(),
        "--device",
        device,
    ])
}

fn enroll_cli(c: &Centre, keystore: &Path) -> anyhow::Result<String> {
    dodvpn(&[
        "agent",
        "enroll",
        "--keystore",
        keystore.to_str().unwrap(),
        "--center",
        &c.url,
    ])
}

fn status(c: &Centre, id: &str) -> Value {
    c.admin_ok(&["device", "show", id])["status"].clone()
}

fn count(c: &Centre, action: &str) -> usize {
    audit_actions(c).iter().filter(|(a, _)| a == action).count()
}

fn certs_of(c: &Centre, id: &str, tier: &str) -> Vec<Value> {
    c.admin_ok(&["cert", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["device_id"] == json!(id) && x["tier"] == json!(tier))
        .cloned()
        .collect()
}

/// Provision (d–e): the centre issued the device certificate and the key store holds
/// it, but the centre died before installation was confirmed; then the confirmation was
/// committed but its answer never reached the client.
async fn provision_repeatable(backend: Backend) {
    let mut c = Centre::start(backend);
    let org = c.org("Hospital", "hospital");
    let id = register(&c, &org, "P-1", "10.1.0.0/24");
    let (_tmp, dir, store) = new_store();

    // Step d committed and recorded by the client; the centre dies before step e.
    store.generate(Tier::Device).unwrap();
    let csr = dodvpn_pki::csr_pem(store.as_ref(), Tier::Device, &id).unwrap();
    let issued: Value = c
        .client()
        .post(
            &format!("/api/v1/devices/{id}/device-cert"),
            &json!({ "csr": csr }),
        )
        .await
        .unwrap();
    store
        .put_cert(Tier::Device, issued["certificate"].as_str().unwrap())
        .unwrap();
    store
        .put_file("ca.pem", issued["ca"]["root"].as_str().unwrap().as_bytes())
        .unwrap();
    c.kill9();
    c.spawn();
    assert_eq!(status(&c, &id), json!("certified"));

    // Running provision again confirms the installation it could not confirm before.
    let out = provision_cli(&c, &dir, &id).expect("provision re-run after the crash");
    assert!(out.contains("recovered"), "{out}");
    assert!(
        out.contains(&format!("serial {}", issued["serial"])),
        "the certificate already stored is the one confirmed: {out}"
    );
    assert_eq!(status(&c, &id), json!("installed"));
    assert_eq!(count(&c, "device_cert.installed"), 1);

    // Step e committed, its answer lost: a repeat answers 200 and changes nothing.
    let fp = issued["fingerprint"].as_str().unwrap();
    let again: Value = c
        .client()
        .post(
            &format!("/api/v1/devices/{id}/device-cert/installed"),
            &json!({ "fingerprint": fp }),
        )
        .await
        .expect("a repeat of a committed confirmation answers 200");
    assert_eq!(again["status"], json!("installed"));
    provision_cli(&c, &dir, &id).expect("provision run a third time");
    assert_eq!(status(&c, &id), json!("installed"));
    assert_eq!(
        count(&c, "device_cert.installed"),
        1,
        "a repeat is not a new step"
    );
    let device_certs = certs_of(&c, &id, "device");
    assert_eq!(
        device_certs.len(),
        1,
        "no second certificate: {device_certs:?}"
    );
    assert_eq!(device_certs[0]["serial"], issued["serial"]);

    // Another certificate is still refused, with a clear 409.
    let err = c
        .client()
        .post::<_, Value>(
            &format!("/api/v1/devices/{id}/device-cert/installed"),
            &json!({ "fingerprint": "00".repeat(32) }),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal_code(&err), Some("unknown_certificate"), "{err:#}");
    // A fresh key store (another key) cannot take the device over.
    let (_t2, fresh, _) = new_store();
    let err = provision_cli(&c, &fresh, &id).unwrap_err().to_string();
    assert!(
        err.contains("no device certificate for the key in this key store"),
        "{err}"
    );
    // Nor can a key store that holds another device's certificate.
    let other = register(&c, &org, "P-2", "10.2.0.0/24");
    let (_t3, other_dir, _) = new_store();
    provision_cli(&c, &other_dir, &other).expect("provision the other device");
    let err = provision_cli(&c, &other_dir, &id).unwrap_err().to_string();
    assert!(
        err.contains(&format!("not a valid device certificate of device {id}")),
        "{err}"
    );
    assert_eq!(certs_of(&c, &id, "device").len(), 1);

    // The device goes on through D.6: delivery is no longer refused.
    c.admin_ok(&["device", "deliver", &id]);
    assert_eq!(status(&c, &id), json!("delivered"));
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_rerun_after_a_crash_confirms_installation_sqlite() {
    provision_repeatable(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_rerun_after_a_crash_confirms_installation_postgres() {
    provision_repeatable(Backend::Postgres).await;
}

/// A device registered, provisioned, delivered and approved (c–h), ready to enrol.
fn approved(
    c: &Centre,
    serial: &str,
    subnet: &str,
) -> (String, tempfile::TempDir, std::path::PathBuf) {
    let org = c.org(&format!("Clinic {serial}"), "clinic");
    let id = register(c, &org, serial, subnet);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keystore");
    provision_cli(c, &dir, &id).expect("provision");
    c.admin_ok(&["device", "deliver", &id]);
    c.admin_ok(&["service", "apply", &id]);
    c.admin_ok(&["service", "approve", &id]);
    (id, tmp, dir)
}

fn open_store(dir: &Path) -> std::sync::Arc<dyn dodvpn_pki::KeyStore> {
    std::sync::Arc::new(dodvpn_pki::FileKeyStore::open(dir, PASSPHRASE.as_bytes()).unwrap())
}

/// Enrol (i): the centre issued the service certificate, and the centre died before
/// the client stored it. Service install (j): the client stored it, the centre died
/// before the confirmation.
#[tokio::test(flavor = "multi_thread")]
async fn enrol_rerun_after_a_crash_recovers_the_issued_certificate() {
    let mut c = Centre::start(Backend::Sqlite);

    // i committed, never stored by the client.
    let (id, _tmp, dir) = approved(&c, "E-1", "10.3.0.0/24");
    let store = open_store(&dir);
    store.generate(Tier::Service).unwrap();
    let csr = dodvpn_pki::csr_pem(store.as_ref(), Tier::Service, "service").unwrap();
    let tier1 =
        dodvpn_agent::CenterClient::device(&c.url, &c.ca_pem(), store.clone(), Tier::Device)
            .unwrap();
    let issued: Value = tier1
        .post("/api/v1/device/enroll", &json!({ "csr": csr }))
        .await
        .unwrap();
    c.kill9();
    c.spawn();
    assert_eq!(status(&c, &id), json!("enrolled"));
    assert!(store.cert(Tier::Service).unwrap().is_none());
    // Running enrol again installs the certificate issued before the crash.
    let out = enroll_cli(&c, &dir).expect("enrol re-run after the crash");
    assert!(out.contains("recovered"), "{out}");
    assert!(
        out.contains(&format!("serial {}", issued["serial"])),
        "{out}"
    );
    assert_eq!(status(&c, &id), json!("service_installed"));
    assert_eq!(
        store.cert(Tier::Service).unwrap().as_deref(),
        issued["certificate"].as_str(),
        "the key store holds the certificate issued before the crash"
    );
    assert_eq!(
        certs_of(&c, &id, "service").len(),
        1,
        "nothing issued twice"
    );
    assert_eq!(count(&c, "service_cert.issued"), 1);

    // j: the client stored the certificate, the centre died before confirming it.
    let (id2, _tmp2, dir2) = approved(&c, "E-2", "10.4.0.0/24");
    let store2 = open_store(&dir2);
    store2.generate(Tier::Service).unwrap();
    let csr = dodvpn_pki::csr_pem(store2.as_ref(), Tier::Service, "service").unwrap();
    let tier1 =
        dodvpn_agent::CenterClient::device(&c.url, &c.ca_pem(), store2.clone(), Tier::Device)
            .unwrap();
    let issued2: Value = tier1
        .post("/api/v1/device/enroll", &json!({ "csr": csr }))
        .await
        .unwrap();
    store2
        .put_cert(Tier::Service, issued2["certificate"].as_str().unwrap())
        .unwrap();
    c.kill9();
    c.spawn();
    assert_eq!(status(&c, &id2), json!("enrolled"));
    let out = enroll_cli(&c, &dir2).expect("enrol re-run before step j");
    assert!(
        out.contains(&format!("serial {}", issued2["serial"])),
        "{out}"
    );
    assert_eq!(status(&c, &id2), json!("service_installed"));
    assert_eq!(certs_of(&c, &id2, "service").len(), 1);

    // Another tier-2 key is still refused: the centre will not issue a second service
    // certificate, and a key store with the device certificate but a fresh service key
    // cannot adopt the one issued.
    let (_t, _, stranger) = new_store();
    stranger.generate(Tier::Service).unwrap();
    let csr = dodvpn_pki::csr_pem(stranger.as_ref(), Tier::Service, "service").unwrap();
    let err = tier1
        .post::<_, Value>("/api/v1/device/enroll", &json!({ "csr": csr }))
        .await
        .unwrap_err();
    assert_eq!(refusal_code(&err), Some("already_enrolled"), "{err:#}");
    let copy = tempfile::tempdir().unwrap();
    let copy_dir = copy.path().join("keystore");
    copy_tree(&dir2, &copy_dir);
    std::fs::remove_file(copy_dir.join("tier2.key.enc")).unwrap();
    std::fs::remove_file(copy_dir.join("tier2.crt.pem")).unwrap();
    let err = enroll_cli(&c, &copy_dir).unwrap_err().to_string();
    assert!(
        err.contains("no service certificate for the key in this key store"),
        "{err}"
    );
    assert_eq!(certs_of(&c, &id2, "service").len(), 1);

    // Both devices go on to service.
    c.admin_ok(&["service", "start", &id]);
    c.admin_ok(&["service", "start", &id2]);
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}

/// Service install (j) committed, but the client never recorded it (agent.json, which
/// `dodvpn agent run` needs, is missing): enrol again completes, even after the provider
/// started service, and changes nothing at the centre.
#[tokio::test(flavor = "multi_thread")]
async fn enrol_rerun_after_service_install_was_committed_changes_nothing() {
    let c = Centre::start(Backend::Sqlite);
    let (id, _tmp, dir) = approved(&c, "S-1", "10.5.0.0/24");
    enroll_cli(&c, &dir).expect("enrol");
    c.admin_ok(&["service", "start", &id]);
    let before = certs_of(&c, &id, "service");
    assert_eq!(before.len(), 1);
    std::fs::remove_file(dir.join("files/agent.json")).unwrap();
    let out = enroll_cli(&c, &dir).expect("enrol re-run after step j was committed");
    assert!(
        out.contains(&format!("serial {}", before[0]["serial"])),
        "{out}"
    );
    assert!(
        dir.join("files/agent.json").exists(),
        "the client records it now"
    );
    assert_eq!(
        status(&c, &id),
        json!("in_service"),
        "the state is left alone"
    );
    assert_eq!(
        certs_of(&c, &id, "service"),
        before,
        "nothing issued or changed"
    );
    // A confirmation for another certificate is refused.
    let store = open_store(&dir);
    let tier1 =
        dodvpn_agent::CenterClient::device(&c.url, &c.ca_pem(), store, Tier::Device).unwrap();
    let err = tier1
        .post::<_, Value>(
            "/api/v1/device/service-cert/installed",
            &json!({ "fingerprint": "00".repeat(32) }),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal_code(&err), Some("unknown_certificate"), "{err:#}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

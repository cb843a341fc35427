//! Nothing lost, nothing half-written (R-OPS-3, R-AUD-1): a centre killed in the middle
//! of enrolments, a tampered audit log, the OpenAPI description, and enrolment with a
//! PKCS#11 key store on a real SoftHSM2 token (R-PKI-3).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn centre_killed_during_enrolment_loses_nothing() {
    let mut c = Centre::start(Backend::Sqlite);
    let org = c.org("Hospital", "hospital");
    const N: usize = 16;
    let mut devices = vec![];
    for i in 0..N {
        let id = register(&c, &org, &format!("K-{i}"), &format!("10.{i}.0.0/24"));
        let (tmp, _dir, store) = new_store();
        dodvpn_agent::enroll::provision(&c.client(), &c.ca_pem(), store.as_ref(), &id)
            .await
            .unwrap();
        c.admin_ok(&["device", "deliver", &id]);
        c.admin_ok(&["service", "apply", &id]);
        c.admin_ok(&["service", "approve", &id]);
        devices.push((id, store, tmp));
    }
    // All devices enrol at once; the centre is killed while they do.
    let mut tasks = vec![];
    for (_, store, _) in &devices {
        let (url, store) = (c.url.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            dodvpn_agent::enroll::enroll(&url, store).await.map(|_| ())
        }));
    }
    // Kill as soon as the first one has finished: the rest are somewhere mid-flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !tasks.iter().any(|t| t.is_finished()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.kill9();
    let mut interrupted = 0;
    for t in tasks {
        if t.await.unwrap().is_err() {
            interrupted += 1;
        }
    }
    c.spawn();
    // The log is whole, and every issued certificate is recorded with its audit record.
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
    let issued = audit_actions(&c)
        .iter()
        .filter(|(a, _)| a == "service_cert.issued")
        .count();
    let certs = c.admin_ok(&["cert", "list"]);
    let service_certs = certs
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["tier"] == json!("service"))
        .count();
    assert_eq!(
        issued, service_certs,
        "no certificate without its audit record, and none missing"
    );
    // Every device finishes by simply running enrol again, recovering a certificate the
    // centre issued but the device never received.
    for (id, store, _) in &devices {
        dodvpn_agent::enroll::enroll(&c.url, store.clone())
            .await
            .unwrap_or_else(|e| panic!("{id}: {e:#}"));
        let d = c.admin_ok(&["device", "show", id]);
        assert_eq!(d["status"], json!("service_installed"), "{id}");
    }
    let certs = c.admin_ok(&["cert", "list"]);
    let per_device = certs
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["tier"] == json!("service"))
        .count();
    eprintln!("{interrupted} of {N} enrolments were interrupted by the kill");
    assert_eq!(
        per_device, N,
        "exactly one service certificate per device ({interrupted} enrolments were interrupted)"
    );
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}

fn sqlite(c: &Centre, sql: &str) {
    let conn = rusqlite::Connection::open(c.dir.join("center.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_detects_edited_removed_and_reordered_records() {
    let c = Centre::start(Backend::Sqlite);
    for i in 0..6 {
        c.org(&format!("Org {i}"), "clinic");
    }
    let ok = c.admin_ok(&["audit", "verify"]);
    assert_eq!(ok["ok"], json!(true));
    let n = ok["records"].as_u64().unwrap();
    assert!(n >= 7);
    // Export for auditors and verify the file offline.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("audit.jsonl");
    let f = file.to_str().unwrap();
    let exp = c.admin_ok(&["audit", "export", "--out", f]);
    assert_eq!(exp["records"].as_u64().unwrap(), n);
    assert_eq!(
        c.admin_ok(&["audit", "verify", "--file", f])["ok"],
        json!(true)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("Org 2", "Org X", 1)).unwrap();
    let e = c.admin(&["audit", "verify", "--file", f]).unwrap_err();
    assert!(
        e.contains("does not verify"),
        "an edited export is caught: {e}"
    );

    let verify_err = || c.admin(&["audit", "verify"]).unwrap_err();
    // Edited.
    sqlite(
        &c,
        // By content, not by number: the console's first invitation is a record too.
        "UPDATE audit SET details = replace(details, 'Org 3', 'Org Z') WHERE details LIKE '%Org 3%'",
    );
    let e = verify_err();
    assert!(e.contains("does not verify"), "{e}");
    sqlite(
        &c,
        "UPDATE audit SET details = replace(details, 'Org Z', 'Org 3') WHERE details LIKE '%Org Z%'",
    );
    assert_eq!(
        c.admin_ok(&["audit", "verify"])["ok"],
        json!(true),
        "restoring the byte restores the chain"
    );
    // Timestamp moved.
    sqlite(&c, "UPDATE audit SET ts_ms = ts_ms + 1 WHERE seq = 3");
    assert!(verify_err().contains("does not verify"));
    sqlite(&c, "UPDATE audit SET ts_ms = ts_ms - 1 WHERE seq = 3");
    // Reordered: two records swap places.
    sqlite(&c, "UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -1;");
    assert!(verify_err().contains("does not verify"));
    sqlite(&c, "UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -1;");
    assert_eq!(c.admin_ok(&["audit", "verify"])["ok"], json!(true));
    // Removed from the middle.
    sqlite(&c, "DELETE FROM audit WHERE seq = 4");
    assert!(verify_err().contains("does not verify"));
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_describes_every_route() {
    let c = Centre::start(Backend::Sqlite);
    let v: Value = c.anonymous().get("/openapi.json").await.unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/api/v1/orgs",
        "/api/v1/orgs/{id}/policy",
        "/api/v1/orders",
        "/api/v1/devices",
        "/api/v1/devices/{id}/device-cert",
        "/api/v1/devices/{id}/service/approve",
        "/api/v1/devices/{id}/service/start",
        "/api/v1/devices/{id}/revoke",
        "/api/v1/device/enroll",
        "/api/v1/device/events",
        "/api/v1/device/connections",
        "/api/v1/groups/{name}/members",
        "/api/v1/approvals",
        "/api/v1/grants",
        "/api/v1/audit/verify",
        "/api/v1/device/sessions",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/api/v1/sessions/{id}/cut",
        "/pki/crl/{tier}",
        "/pki/status/{serial}",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lists {p}");
    }
    for (p, ops) in paths {
        for (m, op) in ops.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {p} documents its responses"
            );
        }
    }
    assert!(v["components"]["schemas"]["ErrorBody"].is_object());
    assert!(v["components"]["schemas"]["SessionReport"].is_object());
    assert!(v["components"]["schemas"]["SessionDetail"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn pkcs11_key_store_on_softhsm2_enrols_end_to_end() {
    let module = "/usr/lib/softhsm/libsofthsm2.so";
    assert!(
        std::path::Path::new(module).exists(),
        "SoftHSM2 is not installed ({module} missing): run ./scripts/setup.sh"
    );
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "dodvpn-test",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pin = tmp.path().join("pin");
    std::fs::write(&pin, "1234").unwrap();
    let ks = tmp.path().join("ks");

    let c = Centre::start(Backend::Sqlite);
    let org = c.org("Hospital", "hospital");
    let id = register(&c, &org, "HSM-1", "10.1.0.0/24");
    let hsm = |args: &[&str]| {
        let out = Command::new(BIN)
            .env("SOFTHSM2_CONF", &conf)
            .args(args)
            .arg("--keystore")
            .arg(&ks)
            .args([
                "--pkcs11-module",
                module,
                "--pkcs11-token",
                "dodvpn-test",
                "--pkcs11-pin-file",
            ])
            .arg(&pin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let ca = c.ca_path();
    let cred = c.credential_path();
    let so = hsm(&[
        "device",
        "provision",
        "--center",
        &c.url,
        "--ca",
        ca.to_str().unwrap(),
        "--credential-file",
        cred.to_str().unwrap(),
        "--device",
        &id,
    ]);
    assert!(so.contains("device certificate installed"), "{so}");
    c.admin_ok(&["device", "deliver", &id]);
    c.admin_ok(&["service", "apply", &id]);
    c.admin_ok(&["service", "approve", &id]);
    let so = hsm(&["agent", "enroll", "--center", &c.url]);
    assert!(so.contains("enrolled"), "{so}");
    // The keys are on the token, sensitive and not extractable; only certificates are on disk.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let store =
        dodvpn_pki::Pkcs11KeyStore::open(std::path::Path::new(module), "dodvpn-test", "1234", &ks)
            .unwrap();
    for tier in [dodvpn_pki::Tier::Device, dodvpn_pki::Tier::Service] {
        assert_eq!(
            store.key_protection(tier).unwrap(),
            (true, false),
            "{tier:?} key is sensitive and not extractable"
        );
    }
    let mut dirs = vec![ks.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let text = std::fs::read(&p).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains("PRIVATE KEY"),
                "{} holds no private key",
                p.display()
            );
        }
    }
    // And the service certificate from the token authenticates to the centre.
    let store: Arc<dyn dodvpn_pki::KeyStore> = Arc::new(store);
    let who: Value =
        dodvpn_agent::CenterClient::device(&c.url, &c.ca_pem(), store, dodvpn_pki::Tier::Service)
            .unwrap()
            .get("/api/v1/device/whoami")
            .await
            .unwrap();
    assert_eq!(who["device_id"], json!(id));
    assert_eq!(who["tier"], json!("service"));
}

//! The API does what `/openapi.json` says, and says everything it does: schemathesis
//! (PyPI, pinned in scripts/setup.sh) generates requests from the served description,
//! valid and invalid, and checks every answer against it. It runs as each kind of
//! caller the API knows (R-OPS-2, R-PKI-2):
//! - a device with its tier-2 (service) certificate, over mutual TLS;
//! - an organisation's administrator;
//! - the provider's operator, last, since it may revoke and cut what the others use.
//!
//! Passing means 0 server errors, 0 undocumented status codes, 0 undocumented content
//! types and 0 bodies that do not match their schema.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use dodvpn_agent::CenterClient;
use dodvpn_pki::{KeyStore, PkiError, Tier};
use serde_json::json;

/// Requests per operation and phase: enough to reach every documented limit and the
/// usual invalid shapes, small enough for the suite (about a minute per caller).
const EXAMPLES: &str = "25";

fn schemathesis() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/setup.sh"))
        .args(["--check", "apifuzz"])
        .output()
        .expect("run scripts/setup.sh");
    assert!(
        out.status.success(),
        "schemathesis is needed for this test: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    PathBuf::from(std::env::var("DODVPN_PYTOOLS").unwrap_or_else(|_| "/opt/dodvpn/pytools".into()))
        .join("bin/schemathesis")
}

/// A key store whose keys can be written out as PEM: schemathesis presents the device's
/// client certificate from files, which no real key store (encrypted file, PKCS#11)
/// allows. Everything else about the device is real: the centre issues both tiers
/// through the agent's own D.6 code.
struct ExportableKeys {
    keys: Mutex<[Option<rcgen::KeyPair>; 2]>,
    certs: Mutex<[Option<String>; 2]>,
    files: Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

fn slot(tier: Tier) -> usize {
    match tier {
        Tier::Device => 0,
        Tier::Service => 1,
    }
}

impl ExportableKeys {
    fn new() -> Self {
        ExportableKeys {
            keys: Mutex::new([None, None]),
            certs: Mutex::new([None, None]),
            files: Mutex::new(Default::default()),
        }
    }
    fn key_pem(&self, tier: Tier) -> String {
        self.keys.lock().unwrap()[slot(tier)]
            .as_ref()
            .unwrap()
            .serialize_pem()
    }
}

impl KeyStore for ExportableKeys {
    fn generate(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let mut keys = self.keys.lock().unwrap();
        if keys[slot(tier)].is_some() {
            return Err(PkiError::Crypto("key exists".into()));
        }
        let k = rcgen::KeyPair::generate().map_err(|e| PkiError::Crypto(e.to_string()))?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&k);
        keys[slot(tier)] = Some(k);
        Ok(spki)
    }
    fn replace(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        self.keys.lock().unwrap()[slot(tier)] = None;
        self.certs.lock().unwrap()[slot(tier)] = None;
        self.generate(tier)
    }
    fn public_key(&self, tier: Tier) -> Result<Option<Vec<u8>>, PkiError> {
        Ok(self.keys.lock().unwrap()[slot(tier)]
            .as_ref()
            .map(rcgen::PublicKeyData::subject_public_key_info))
    }
    fn sign(&self, tier: Tier, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        use rcgen::SigningKey;
        let keys = self.keys.lock().unwrap();
        let k = keys[slot(tier)]
            .as_ref()
            .ok_or_else(|| PkiError::Crypto("no key".into()))?;
        k.sign(msg).map_err(|e| PkiError::Crypto(e.to_string()))
    }
    fn put_cert(&self, tier: Tier, pem: &str) -> Result<(), PkiError> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::Crypto(e.to_string()))?;
        let spki = self
            .public_key(tier)?
            .ok_or_else(|| PkiError::Crypto("no key".into()))?;
        // The SubjectPublicKeyInfo is carried verbatim in the certificate.
        if !der.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(PkiError::Crypto("certificate is not for this key".into()));
        }
        self.certs.lock().unwrap()[slot(tier)] = Some(pem.to_string());
        Ok(())
    }
    fn cert(&self, tier: Tier) -> Result<Option<String>, PkiError> {
        Ok(self.certs.lock().unwrap()[slot(tier)].clone())
    }
    fn put_file(&self, name: &str, data: &[u8]) -> Result<(), PkiError> {
        self.files
            .lock()
            .unwrap()
            .insert(name.to_string(), data.to_vec());
        Ok(())
    }
    fn get_file(&self, name: &str) -> Result<Option<Vec<u8>>, PkiError> {
        Ok(self.files.lock().unwrap().get(name).cloned())
    }
    fn describe(&self) -> String {
        "test key store with exportable keys".into()
    }
}

/// Run schemathesis as one caller: its whole report if it found something.
fn fuzz(st: &Path, c: &Centre, who: &str, auth: &[String], report: &Path) -> Option<String> {
    let mut cmd = Command::new(st);
    // Its cache of crashes goes in the working directory: keep it out of the checkout.
    cmd.current_dir(report.parent().unwrap())
        .arg("run")
        .arg(format!("{}/openapi.json", c.url))
        .args(["--tls-verify", c.ca_path().to_str().unwrap()])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", EXAMPLES, "--seed", "11636"])
        .args(["--workers", "2", "--request-timeout", "15", "--no-color"])
        // A stream that stays open by design; its content type is checked below.
        .args(["--exclude-path", "/api/v1/device/events"])
        .args(["--report", "junit", "--report-dir"])
        .arg(report)
        .args(["--generation-database", "none"])
        // Credentials stay the real ones given below: generated Authorization values
        // carry bytes HTTP forbids, which hyper answers with 400 and a closed
        // connection before any route runs (a client writing a body then sees EOF).
        // Bad credentials have their own tests (centre_security).
        .args(["--generation-with-security-parameters", "false"])
        .args(auth)
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let out = cmd.output().expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !(l.contains("= WARNINGS =") || l.contains("= SUMMARY =")))
        .collect();
    println!("schemathesis as {who}:\n{}", summary.join("\n"));
    (!out.status.success()).then(|| {
        format!(
            "schemathesis as {who} found differences between /openapi.json and the server:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let st = schemathesis();
    let c = Centre::start(Backend::Sqlite);
    let hospital = c.org("Schema Hospital", "hospital");
    let clinic = c.org("Schema Clinic", "clinic");
    set_policy(&c, &hospital, &open_policy());
    set_policy(&c, &clinic, &open_policy());
    // Something to list and to name: a peer device, a group, an approval window.
    let peer = onboard(&c, &clinic, "SCHEMA-PEER", "10.62.2.0/24").await;

    // The device under test, enrolled to tier 2 through the agent's own D.6 code.
    let id = register(&c, &hospital, "SCHEMA-DEV", "10.62.1.0/24");
    let store = Arc::new(ExportableKeys::new());
    let admin = CenterClient::admin(&c.url, &c.ca_pem(), &c.credential()).unwrap();
    dodvpn_agent::enroll::provision(&admin, &c.ca_pem(), store.as_ref(), &id)
        .await
        .expect("provision");
    c.admin_ok(&["device", "deliver", &id]);
    c.admin_ok(&["service", "apply", &id]);
    c.admin_ok(&["service", "approve", &id]);
    dodvpn_agent::enroll::enroll(&c.url, store.clone())
        .await
        .expect("enrol tier 2");
    c.admin_ok(&["service", "start", &id]);
    c.admin_ok(&["group", "create", "schema-group"]);
    for d in [&id, &peer.id] {
        c.admin_ok(&["group", "add", "schema-group", d]);
    }

    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("service.pem");
    let key = tmp.path().join("service.key");
    std::fs::write(&cert, store.cert(Tier::Service).unwrap().unwrap()).unwrap();
    std::fs::write(&key, store.key_pem(Tier::Service)).unwrap();
    let org_cred = tmp.path().join("org-admin.token");
    c.admin_ok(&[
        "org",
        "admin",
        &hospital,
        "--out",
        org_cred.to_str().unwrap(),
    ]);

    // The device's own endpoints answer the stream in the type the description gives.
    let tier2 = client_with_cert(
        &c,
        &store.cert(Tier::Service).unwrap().unwrap(),
        &rcgen::KeyPair::from_pem(&store.key_pem(Tier::Service)).unwrap(),
    );
    let resp = tier2
        .get(format!("{}/api/v1/device/events?since=0", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    drop(resp);
    let api: serde_json::Value = reqwest_get_json(&c, "/openapi.json").await;
    let documented = &api["paths"]["/api/v1/device/events"]["get"]["responses"]["200"]["content"];
    assert!(
        documented.get(&ct).is_some(),
        "events answered {ct}, the description says {documented}"
    );

    let reports = tmp.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let mut found = vec![];
    found.extend(fuzz(
        &st,
        &c,
        "a device (tier-2 certificate)",
        &[
            "--request-cert".into(),
            cert.display().to_string(),
            "--request-cert-key".into(),
            key.display().to_string(),
        ],
        &reports.join("device"),
    ));
    let bearer = |token: &str| {
        vec![
            "-H".to_string(),
            format!("Authorization: Bearer {}", token.trim()),
        ]
    };
    found.extend(fuzz(
        &st,
        &c,
        "an organisation administrator",
        &bearer(&std::fs::read_to_string(&org_cred).unwrap()),
        &reports.join("org-admin"),
    ));
    found.extend(fuzz(
        &st,
        &c,
        "the provider",
        &bearer(&c.credential()),
        &reports.join("provider"),
    ));
    assert!(found.is_empty(), "{}", found.join("\n\n"));
    // The fuzzing changed data; the chain of what it changed still verifies.
    let v = c.admin_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], json!(true), "audit chain after fuzzing: {v}");
}

async fn reqwest_get_json(c: &Centre, path: &str) -> serde_json::Value {
    c.anonymous().get(path).await.unwrap()
}

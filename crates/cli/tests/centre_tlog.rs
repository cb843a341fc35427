//! Issue 15 (R-AUD-4) against a real centre: the Merkle tree grows with the
//! records, checkpoints are signed, `admin audit prove` verifies an inclusion
//! proof, `audit check` verifies a bundle offline, and records cut off or a
//! rewritten history are caught: by the centre at start, and by an auditor who
//! kept an earlier checkpoint. Two replicas on one PostgreSQL build one tree.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn start(backend: Backend) -> Centre {
    // Checkpoints every second, so the test need not wait 10.
    std::env::set_var("DODVPN_AUDIT_CHECKPOINT_SECS", "1");
    Centre::start(backend)
}

/// Wait until the newest checkpoint covers `size` records.
fn checkpoint_at_least(c: &Centre, size: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(v) = c.admin(&["audit", "checkpoint"]) {
            if v["size"].as_u64().unwrap_or(0) >= size {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size} records within 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn record_count(c: &Centre) -> u64 {
    c.admin_ok(&["audit", "verify"])["records"]
        .as_u64()
        .unwrap()
}

/// `dodvpn audit check` (offline): Ok(json) or Err(stdout json + stderr).
fn audit_check(bundle: &Path, args: &[&str]) -> Result<Value, (Value, String)> {
    let out = Command::new(BIN)
        .args(["audit", "check"])
        .arg(bundle)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if out.status.success() {
        Ok(v)
    } else {
        Err((v, String::from_utf8_lossy(&out.stderr).to_string()))
    }
}

async fn tree_signed_proved_and_checked(backend: Backend) {
    let mut c = start(backend);
    for i in 0..5 {
        c.org(&format!("Org {i}"), "clinic");
    }
    let n = record_count(&c);
    let cp = checkpoint_at_least(&c, n);
    let note = cp["note"].as_str().unwrap().to_string();
    assert!(note.starts_with("dodvpn-audit/"), "{note}");
    assert!(note.contains("\n\n\u{2014} centre "), "{note}");
    let key = c.admin_ok(&["audit", "log-key"]);
    let fp = key["fingerprint"].as_str().unwrap().to_string();
    // The log key is its own 0600 file in the PKI directory.
    assert_eq!(mode_of(&c.dir.join("pki/audit-log.key")) & 0o777, 0o600);

    // Inclusion proof, verified by the CLI against the signed checkpoint.
    let p = c.admin_ok(&["audit", "prove", "2", "--key-fingerprint", &fp]);
    assert_eq!(p["ok"], json!(true));
    assert_eq!(p["tree_size"].as_u64(), cp["size"].as_u64());
    assert!(!p["proof"].as_array().unwrap().is_empty());
    let e = c
        .admin(&["audit", "prove", "2", "--key-fingerprint", &"0".repeat(64)])
        .unwrap_err();
    assert!(e.contains("not the pinned one"), "{e}");
    let e = c.admin(&["audit", "prove", "999999"]).unwrap_err();
    assert!(e.contains("out_of_range") || e.contains("seq"), "{e}");

    // The API answers bad queries with 400, never 500.
    let resp = c
        .client()
        .request(
            reqwest::Method::GET,
            "/api/v1/audit/proof/consistency?old=5&new=2",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = c
        .client()
        .request(
            reqwest::Method::GET,
            "/api/v1/audit/proof/inclusion?seq=abc",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // The whole bundle checks offline, pinned to the key.
    let tmp = tempfile::tempdir().unwrap();
    let b1 = tmp.path().join("bundle1.json");
    let out = c.admin_ok(&["audit", "bundle", "--out", b1.to_str().unwrap()]);
    assert!(out["checkpoints"].as_u64().unwrap() >= 1);
    let r = audit_check(&b1, &["--key-fingerprint", &fp]).unwrap();
    assert_eq!(r["ok"], json!(true));
    assert!(r["inclusion_proofs_verified"].as_u64().unwrap() >= n);
    let kept = tmp.path().join("kept.note");
    std::fs::write(&kept, &note).unwrap();

    // More records, then the operator cuts the newest 2 off, together with their
    // tree rows and the chain-guard file (the hash chain that is left is intact).
    c.org("Late 1", "clinic");
    c.org("Late 2", "clinic");
    let m = record_count(&c);
    let note_m = checkpoint_at_least(&c, m)["note"]
        .as_str()
        .unwrap()
        .to_string();
    let kept_m = tmp.path().join("kept-m.note");
    std::fs::write(&kept_m, &note_m).unwrap();
    c.stop();
    let cut = m - 2;
    c.sql(&format!("DELETE FROM audit WHERE seq > {cut}"));
    c.sql(&format!(
        "DELETE FROM audit_tree WHERE (idx + 1) * (1 << level) > {cut}"
    ));
    std::fs::remove_file(c.dir.join("audit.checkpoint")).unwrap();
    c.spawn();
    let line = c
        .stdout_lines
        .iter()
        .find(|l| l.contains("AUDIT TREE INCONSISTENT"))
        .unwrap_or_else(|| panic!("truncation not named at start: {:?}", c.stdout_lines))
        .clone();
    assert!(
        line.contains("cut off") && line.contains("READ-ONLY"),
        "{line}"
    );
    let e = c
        .admin(&["org", "create", "After", "--kind", "clinic"])
        .unwrap_err();
    assert!(e.contains("cut off"), "{e}");

    // The checkpoints that show it are removed too: the centre cannot tell any
    // more, the auditor who kept a checkpoint can.
    c.stop();
    c.sql(&format!("DELETE FROM audit_checkpoints WHERE size > {cut}"));
    c.spawn();
    assert!(
        !c.stdout_lines.iter().any(|l| l.contains("INCONSISTENT")),
        "{:?}",
        c.stdout_lines
    );
    let b2 = tmp.path().join("bundle2.json");
    c.admin_ok(&["audit", "bundle", "--out", b2.to_str().unwrap()]);
    assert!(
        audit_check(&b2, &["--key-fingerprint", &fp]).is_ok(),
        "self-consistent alone"
    );
    // The older kept checkpoint is a prefix of what is left: no false alarm.
    assert!(audit_check(&b2, &["--known", kept.to_str().unwrap()]).is_ok());
    let (v, err) = audit_check(&b2, &["--known", kept_m.to_str().unwrap()]).unwrap_err();
    assert_eq!(v["problem"], json!("known_checkpoint_inconsistent"), "{v}");
    assert!(
        err.contains("cut off") && err.contains("監査バンドル"),
        "{err}"
    );
    // An edited record in the bundle file is caught offline as well.
    let mut b: Value = serde_json::from_str(&std::fs::read_to_string(&b1).unwrap()).unwrap();
    b["records"][1]["actor"] = json!("mallory");
    let b3 = tmp.path().join("bundle3.json");
    std::fs::write(&b3, b.to_string()).unwrap();
    let (v, _) = audit_check(&b3, &[]).unwrap_err();
    assert_eq!(v["problem"], json!("edited"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tree_is_signed_proved_checked_and_truncation_caught_sqlite() {
    tree_signed_proved_and_checked(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tree_is_signed_proved_checked_and_truncation_caught_postgres() {
    tree_signed_proved_and_checked(Backend::Postgres).await;
}

/// Two centres on one PostgreSQL, writing at the same time, extend one tree: every
/// record is a leaf once, in seq order, and both sign the same roots.
#[tokio::test(flavor = "multi_thread")]
async fn two_postgres_replicas_build_one_consistent_tree() {
    let a = start(Backend::Postgres);
    let b = a.replica();
    let (ca, cb) = (&a, &b);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..6 {
                ca.org(&format!("A {i}"), "clinic");
            }
        });
        s.spawn(|| {
            for i in 0..6 {
                cb.org(&format!("B {i}"), "clinic");
            }
        });
    });
    let n = record_count(&a);
    assert_eq!(record_count(&b), n);
    let from_a = checkpoint_at_least(&a, n);
    let from_b = checkpoint_at_least(&b, n);
    assert_eq!(from_a["size"], from_b["size"]);
    assert_eq!(from_a["root"], from_b["root"], "one tree, one root");
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bundle.json");
    b.admin_ok(&["audit", "bundle", "--out", f.to_str().unwrap()]);
    let r = audit_check(&f, &[]).unwrap();
    assert_eq!(r["records"].as_u64(), Some(n));
    // Every checkpoint either replica signed is consistent with the others.
    assert!(
        r["consistency_proofs_verified"].as_u64().unwrap() + 1
            >= r["checkpoints"].as_u64().unwrap()
    );
    // Consistency proofs from either replica verify against both checkpoints.
    let p = a.admin_ok(&["audit", "prove", "1"]);
    assert_eq!(p["ok"], json!(true));
}

fn bundle_of(c: &Centre, path: &Path) -> Value {
    c.admin_ok(&["audit", "bundle", "--out", path.to_str().unwrap()]);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Wait until the bundle holds at least `n` timestamp tokens.
fn timestamps_at_least(c: &Centre, path: &Path, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = bundle_of(c, path);
        if b["timestamps"].as_array().map_or(0, |a| a.len()) >= n {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} timestamp tokens within 30 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// RFC 3161 (issue 15 step 2): a real `openssl ts -reply` TSA on loopback stamps
/// the centre's checkpoints; `audit check --tsa-ca` verifies the tokens offline,
/// and catches a token moved to another checkpoint, a TSA certificate without
/// the timeStamping EKU, and a TSA under another CA.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_are_timestamped_and_bad_tokens_are_caught_sqlite() {
    timestamped(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_are_timestamped_and_bad_tokens_are_caught_postgres() {
    timestamped(Backend::Postgres).await;
}

async fn timestamped(backend: Backend) {
    let tsa = dodvpn_tsp::testing::LocalTsa::start().unwrap();
    std::env::set_var("DODVPN_AUDIT_TSA_URL", &tsa.url);
    std::env::set_var("DODVPN_AUDIT_TSA_CA", &tsa.ca_pem_path);
    std::env::set_var("DODVPN_AUDIT_TSA_EVERY", "1");
    let c = start(backend);
    assert!(
        c.stdout_lines
            .iter()
            .any(|l| l.contains("RFC 3161") && l.contains(&tsa.url)),
        "{:?}",
        c.stdout_lines
    );
    c.org("Stamped 1", "clinic");
    checkpoint_at_least(&c, record_count(&c));
    c.org("Stamped 2", "clinic");
    checkpoint_at_least(&c, record_count(&c));
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bundle.json");
    let b = timestamps_at_least(&c, &f, 2);
    assert!(tsa.served.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    let ca = tsa.ca_pem_path.to_str().unwrap();

    let r = audit_check(&f, &["--tsa-ca", ca]).unwrap();
    assert_eq!(r["ok"], json!(true));
    let stamped = b["timestamps"].as_array().unwrap().len() as u64;
    assert_eq!(r["timestamps_verified"].as_u64(), Some(stamped), "{r}");
    assert!(r["newest_timestamp"]["gen_time"].as_u64().unwrap() > 1_700_000_000);
    // Without the CA the tokens are counted, not trusted.
    let r = audit_check(&f, &[]).unwrap();
    assert_eq!(r["timestamps_unchecked"].as_u64(), Some(stamped));
    assert_eq!(r["timestamps_verified"].as_u64(), Some(0));

    let write = |name: &str, v: &Value| {
        let p = tmp.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    // A genuine token moved to another checkpoint: its imprint is the other's.
    let mut moved = b.clone();
    let (s0, s1) = (
        moved["timestamps"][0]["size"].clone(),
        moved["timestamps"][1]["size"].clone(),
    );
    moved["timestamps"][0]["size"] = s1;
    moved["timestamps"][1]["size"] = s0;
    let (v, err) = audit_check(&write("moved.json", &moved), &["--tsa-ca", ca]).unwrap_err();
    assert_eq!(v["problem"], json!("timestamp_wrong_imprint"), "{v}");
    assert!(err.contains("another checkpoint"), "{err}");

    // The same TSTInfo re-signed by a certificate of the same CA without the EKU.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let tok = b64
        .decode(b["timestamps"][0]["token"].as_str().unwrap())
        .unwrap();
    let mut forged = b.clone();
    forged["timestamps"][0]["token"] = json!(b64.encode(tsa.resign_without_eku(&tok).unwrap()));
    let (v, _) = audit_check(&write("forged.json", &forged), &["--tsa-ca", ca]).unwrap_err();
    assert_eq!(v["problem"], json!("timestamp_no_eku"), "{v}");

    // Another TSA CA than the one the auditor trusts.
    let other = dodvpn_tsp::testing::LocalTsa::start().unwrap();
    let (v, _) = audit_check(&f, &["--tsa-ca", other.ca_pem_path.to_str().unwrap()]).unwrap_err();
    assert_eq!(v["problem"], json!("timestamp_untrusted"), "{v}");

    // A token for a checkpoint the export does not have.
    let mut orphan = b.clone();
    orphan["timestamps"][0]["size"] = json!(999_999);
    let (v, _) = audit_check(&write("orphan.json", &orphan), &["--tsa-ca", ca]).unwrap_err();
    assert_eq!(v["problem"], json!("timestamp_without_checkpoint"), "{v}");
}

/// A TSA URL without its CA is a start error, not a centre that silently stamps nothing.
#[test]
fn a_tsa_url_without_its_ca_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["center", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("DODVPN_AUDIT_TSA_URL", "http://127.0.0.1:9/tsa")
        .env_remove("DODVPN_AUDIT_TSA_CA")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the centre started without the TSA's CA");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("DODVPN_AUDIT_TSA_CA"), "{err}");
}

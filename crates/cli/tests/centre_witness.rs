//! Issue 15 step 3 (R-AUD-4): devices as witnesses, against a real centre
//! (SQLite and PostgreSQL) and the agent library's real sync loop with real key
//! stores. An honest log gets cosigned and becomes witnessed; the cosignatures
//! are in the bundle and verify offline. Then the operator cuts the newest
//! records, deletes every checkpoint (and cosignature) that shows them, and grows
//! a different history past them, re-signed with the centre's own key: each
//! agent that kept the earlier checkpoint finds the new tree inconsistent with
//! it, says so, the alert reaches the provider's list (audited), the agent keeps
//! its checkpoint and keeps running, and no cosignature is stored for the
//! rewritten log.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use dodvpn_agent::witness::Outcome;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

fn start(backend: Backend) -> Centre {
    std::env::set_var("DODVPN_AUDIT_CHECKPOINT_SECS", "1");
    std::env::set_var("DODVPN_AUDIT_WITNESSES", "2");
    Centre::start(backend)
}

/// Run the agent's sync loop for `site`; its witness outcomes arrive on the channel.
fn run_agent(site: &Site) -> (tokio::task::JoinHandle<()>, UnboundedReceiver<Outcome>) {
    let store = site.store.clone();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let h = tokio::spawn(async move {
        let mut agent = dodvpn_agent::sync::Agent::open(store, None).unwrap();
        let mut on = move |u: &dodvpn_agent::sync::Update, _: &dodvpn_agent::sync::SyncState| {
            if let dodvpn_agent::sync::Update::Witness(o) = u {
                let _ = tx.send(o.clone());
            }
        };
        let _ = agent.run(&mut on).await;
    });
    (h, rx)
}

/// The next outcome that satisfies `pred`, within `secs`.
async fn outcome_where(
    rx: &mut UnboundedReceiver<Outcome>,
    secs: u64,
    what: &str,
    mut pred: impl FnMut(&Outcome) -> bool,
) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let o = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {secs} s"))
            .expect("agent loop stopped");
        if pred(&o) {
            return o;
        }
    }
}

fn checkpoint(c: &Centre) -> Value {
    c.admin_ok(&["audit", "checkpoint"])
}

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

fn kept(site: &Site) -> dodvpn_agent::witness::Kept {
    dodvpn_agent::witness::Kept::load(site.store.as_ref())
        .unwrap()
        .expect("the agent kept a checkpoint")
}

fn kept_size(site: &Site) -> u64 {
    dodvpn_audit::note::SignedNote::parse(&kept(site).note)
        .unwrap()
        .head
        .size
}

async fn witnesses(backend: Backend) {
    let mut c = start(backend);
    assert!(
        c.stdout_lines
            .iter()
            .any(|l| l.contains("witnessed with 2 device cosignature(s)")),
        "{:?}",
        c.stdout_lines
    );
    let org = c.org("Witness Hospital", "hospital");
    let a = onboard(&c, &org, "W-A", "10.31.0.0/24").await;
    let b = onboard(&c, &org, "W-B", "10.32.0.0/24").await;
    let (ha, mut rx_a) = run_agent(&a);
    let (hb, mut rx_b) = run_agent(&b);

    // Honest run: both agents cosign; the newest checkpoint becomes witnessed.
    let deadline = Instant::now() + Duration::from_secs(40);
    let cp = loop {
        // 404 until the first checkpoint is signed.
        let cp = c.admin(&["audit", "checkpoint"]).unwrap_or(Value::Null);
        if cp["witnessed"] == json!(true) {
            break cp;
        }
        assert!(
            Instant::now() < deadline,
            "the newest checkpoint was not witnessed within 40 s: {cp}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(cp["witness_threshold"], json!(2));
    assert!(cp["cosignatures"].as_u64().unwrap() >= 2, "{cp}");
    assert_eq!(cp["newest_witnessed"], cp["size"]);
    let k = cp["size"].as_u64().unwrap();
    outcome_where(
        &mut rx_a,
        20,
        "cosignature by a",
        |o| matches!(o, Outcome::Cosigned { size, .. } if *size == k),
    )
    .await;
    outcome_where(
        &mut rx_b,
        20,
        "cosignature by b",
        |o| matches!(o, Outcome::Cosigned { size, .. } if *size == k),
    )
    .await;
    // The kept checkpoint is in the key store, 0600, and is the centre's note.
    assert_eq!(kept_size(&a), k);
    assert_eq!(mode_of(&a.dir.join("files/audit-checkpoint.json")), 0o600);
    assert_eq!(kept(&a).note, cp["note"].as_str().unwrap());

    // The bundle carries the cosignatures; they verify offline.
    let tmp = tempfile::tempdir().unwrap();
    let b1 = tmp.path().join("b1.json");
    let out = c.admin_ok(&["audit", "bundle", "--out", b1.to_str().unwrap()]);
    assert!(out["cosignatures"].as_u64().unwrap() >= 2, "{out}");
    let r = audit_check(&b1, &["--require-witnessed"]).unwrap();
    assert!(r["cosignatures_verified"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["witness_threshold"], json!(2));
    assert_eq!(r["newest_witnessed"].as_u64(), Some(k), "{r}");
    // A cosignature altered in the file is caught.
    let mut bv: Value = serde_json::from_str(&std::fs::read_to_string(&b1).unwrap()).unwrap();
    let pk0 = bv["cosignatures"][0]["public_key"].clone();
    let pk1 = bv["cosignatures"][1]["public_key"].clone();
    assert_ne!(pk0, pk1);
    bv["cosignatures"][0]["public_key"] = pk1;
    let b2 = tmp.path().join("b2.json");
    std::fs::write(&b2, bv.to_string()).unwrap();
    let (v, _) = audit_check(&b2, &[]).unwrap_err();
    assert_eq!(v["problem"], json!("bad_cosignature"), "{v}");
    // With the provider's service CA, each cosigning key is shown to be the key of that
    // device's own service certificate; the device CA (tier 1), a certificate swapped to
    // another device's, or an export without certificates is refused.
    let service_ca = c.dir.join("pki/service-ca.pem");
    let device_ca = c.dir.join("pki/device-ca.pem");
    let r = audit_check(&b1, &["--service-ca", service_ca.to_str().unwrap()]).unwrap();
    assert_eq!(
        r["witness_certificates_verified"], r["cosignatures_verified"],
        "{r}"
    );
    let (v, err) = audit_check(&b1, &["--service-ca", device_ca.to_str().unwrap()]).unwrap_err();
    assert_eq!(v["problem"], json!("witness_certificate"), "{v}");
    assert!(err.contains("証明書"), "{err}");
    let mut swapped: Value = serde_json::from_str(&std::fs::read_to_string(&b1).unwrap()).unwrap();
    let other_cert = swapped["cosignatures"][1]["cert_pem"].clone();
    assert!(
        other_cert.is_string(),
        "the export carries the certificates"
    );
    swapped["cosignatures"][0]["cert_pem"] = other_cert;
    let b4 = tmp.path().join("b4.json");
    std::fs::write(&b4, swapped.to_string()).unwrap();
    let (v, err) = audit_check(&b4, &["--service-ca", service_ca.to_str().unwrap()]).unwrap_err();
    assert_eq!(v["problem"], json!("witness_certificate"), "{v}");
    assert!(err.contains("not the certificate's key"), "{err}");
    swapped["cosignatures"][0]
        .as_object_mut()
        .unwrap()
        .remove("cert_pem");
    std::fs::write(&b4, swapped.to_string()).unwrap();
    let (_, err) = audit_check(&b4, &["--service-ca", service_ca.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("carries no certificate"), "{err}");
    // More witnesses than there are: not witnessed, and --require-witnessed says so.
    let (v, err) = audit_check(&b1, &["--witnesses", "3", "--require-witnessed"]).unwrap_err();
    assert_eq!(v["problem"], json!("not_witnessed"), "{v}");
    assert!(err.contains("連署"), "{err}");

    // The centre refuses a cosignature that is not made with the presenting
    // device's service key (here: a's key, under b's name, sent by b), and
    // audits the refusal; and one under another device's name.
    let note = dodvpn_audit::note::SignedNote::parse(cp["note"].as_str().unwrap()).unwrap();
    let spki_a = a
        .store
        .public_key(dodvpn_pki::Tier::Service)
        .unwrap()
        .unwrap();
    let point_a = dodvpn_audit::witness::p256_point(&spki_a).unwrap().to_vec();
    let forged =
        dodvpn_audit::witness::Cosignature::make(&b.id, &point_a, &note, 1_764_000_000_000, |m| {
            a.store
                .sign(dodvpn_pki::Tier::Service, m)
                .map_err(|e| e.to_string())
        })
        .unwrap();
    let e = b
        .tier2(&c)
        .post::<_, Value>(
            "/api/v1/device/audit/cosignatures",
            &json!({"size": k, "cosignature": forged.to_line()}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        dodvpn_agent::client::refusal_code(&e),
        Some("bad_cosignature"),
        "{e:#}"
    );
    let as_a =
        dodvpn_audit::witness::Cosignature::make(&a.id, &point_a, &note, 1_764_000_000_000, |m| {
            a.store
                .sign(dodvpn_pki::Tier::Service, m)
                .map_err(|e| e.to_string())
        })
        .unwrap();
    let e = b
        .tier2(&c)
        .post::<_, Value>(
            "/api/v1/device/audit/cosignatures",
            &json!({"size": k, "cosignature": as_a.to_line()}),
        )
        .await
        .unwrap_err();
    assert_eq!(dodvpn_agent::client::refusal_code(&e), Some("other_device"));
    let e = b
        .tier2(&c)
        .post::<_, Value>(
            "/api/v1/device/audit/cosignatures",
            &json!({"size": k, "cosignature": "\u{2014} x !!"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        dodvpn_agent::client::refusal_code(&e),
        Some("cosignature_malformed")
    );
    assert!(
        audit_actions(&c)
            .iter()
            .any(|(a, d)| a == "audit.cosignature_refused"
                && d["problem"] == json!("bad_cosignature"))
    );
    assert!(c
        .admin_ok(&["audit", "alerts"])
        .as_array()
        .unwrap()
        .is_empty());
    // The refusals are audit records, so the tree grew: wait until the checkpoint
    // over every record is witnessed and kept by both agents.
    let records = c.admin_ok(&["audit", "verify"])["records"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let k = loop {
        let cp = checkpoint(&c);
        let s = cp["size"].as_u64().unwrap();
        if s >= records
            && cp["witnessed"] == json!(true)
            && kept_size(&a) == s
            && kept_size(&b) == s
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the checkpoint over {records} records was not witnessed and kept within 40 s: {cp}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // The operator cuts the newest records and removes every checkpoint and
    // cosignature that shows them, then grows a different history past them.
    c.stop();
    let cut = k - 3;
    c.sql(&format!("DELETE FROM audit WHERE seq > {cut}"));
    c.sql(&format!(
        "DELETE FROM audit_tree WHERE (idx + 1) * (1 << level) > {cut}"
    ));
    c.sql(&format!("DELETE FROM audit_checkpoints WHERE size > {cut}"));
    c.sql(&format!(
        "DELETE FROM audit_cosignatures WHERE size > {cut}"
    ));
    std::fs::remove_file(c.dir.join("audit.checkpoint")).unwrap();
    c.spawn();
    assert!(
        !c.stdout_lines.iter().any(|l| l.contains("INCONSISTENT")),
        "the centre alone cannot tell: {:?}",
        c.stdout_lines
    );
    for i in 0..6 {
        c.org(&format!("Rewritten {i}"), "clinic");
    }
    // Each agent finds the later tree inconsistent with what it kept, and says so.
    for (site, rx) in [(&a, &mut rx_a), (&b, &mut rx_b)] {
        let o = outcome_where(
            rx,
            60,
            "an alarm about the rewritten log",
            |o| matches!(o, Outcome::Alarm { new_size, .. } if *new_size > k),
        )
        .await;
        let Outcome::Alarm {
            problem,
            message_en,
            message_ja,
            kept_size: ks,
            reported,
            ..
        } = &o
        else {
            unreachable!()
        };
        assert_eq!(problem, "checkpoint_inconsistent", "{o:?}");
        assert!(message_en.contains("truncated or rewritten"), "{o:?}");
        assert!(message_ja.contains("書き換え"), "{o:?}");
        assert_eq!(*ks, k);
        assert!(*reported, "the alert reached the centre");
        assert!(
            dodvpn_agent::witness::describe(&o).contains("AUDIT LOG ALARM"),
            "{o:?}"
        );
        // The agent keeps the checkpoint it had.
        assert_eq!(kept_size(site), k, "{}", site.id);
    }
    // The provider's list has both alerts; the first of each is audited.
    let alerts = c.admin_ok(&["audit", "alerts"]);
    let alerts = alerts.as_array().unwrap();
    for site in [&a, &b] {
        let al = alerts
            .iter()
            .find(|x| x["device_id"] == json!(site.id))
            .unwrap_or_else(|| panic!("no alert from {}: {alerts:?}", site.id));
        assert_eq!(al["kept_size"].as_u64(), Some(k));
        assert!(al["new_size"].as_u64().unwrap() > k);
        assert_eq!(al["problem"], json!("checkpoint_inconsistent"));
        assert_eq!(al["kept_note"], json!(kept(site).note));
    }
    let audited: Vec<Value> = audit_actions(&c)
        .into_iter()
        .filter(|(a, _)| a == "audit.witness_alert")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert!(audited
        .iter()
        .all(|d| d["kept_signed_by_this_centre"] == json!(true)));
    // No cosignature for the rewritten log: the newest checkpoint is not witnessed.
    let now = checkpoint(&c);
    assert!(now["size"].as_u64().unwrap() > k);
    assert_eq!(now["cosignatures"], json!(0), "{now}");
    assert_eq!(now["witnessed"], json!(false));
    let b3 = tmp.path().join("b3.json");
    let bundle = c.admin_ok(&["audit", "bundle", "--out", b3.to_str().unwrap()]);
    let bv: Value = serde_json::from_str(&std::fs::read_to_string(&b3).unwrap()).unwrap();
    assert!(
        bv["cosignatures"]
            .as_array()
            .is_none_or(|v| v.iter().all(|c| c["size"].as_u64().unwrap() <= cut)),
        "{bundle}"
    );
    // The auditor with a device's kept checkpoint sees it offline too.
    let kept_file = tmp.path().join("kept.note");
    std::fs::write(&kept_file, kept(&a).note).unwrap();
    let (v, _) = audit_check(&b3, &["--known", kept_file.to_str().unwrap()]).unwrap_err();
    assert_eq!(v["problem"], json!("known_checkpoint_inconsistent"), "{v}");
    // The agents keep running (their loops are alive; tunnels are not touched).
    assert!(!ha.is_finished() && !hb.is_finished());
    ha.abort();
    hb.abort();
}

both_backends!(witnesses);

/// A witness threshold that is not 1–10000 stops the start with a clear error.
#[test]
fn a_bad_witness_threshold_stops_the_start() {
    for bad in ["0", "lots", "10001"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["center", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .env("DODVPN_AUDIT_WITNESSES", bad)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the centre started with DODVPN_AUDIT_WITNESSES={bad}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("DODVPN_AUDIT_WITNESSES")
                && err.contains("1–10000")
                && err.contains("証人"),
            "{err}"
        );
    }
}

//! Issue 9, points 4 and 5, against a real centre: a damaged audit chain is named
//! (unreadable record, reordering) and makes a restarted centre read-only;
//! refusals are audited and aggregated under a flood; an organisation and its
//! auditor read, verify and export their own trail and nothing else.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use serde_json::{json, Value};

/// Refusal windows short enough for a test (the same in every test of this binary).
const WINDOW_MS: u64 = 1500;

fn start(backend: Backend) -> Centre {
    std::env::set_var("DODVPN_REFUSAL_WINDOW_MS", WINDOW_MS.to_string());
    Centre::start(backend)
}

/// GET as the provider, with the status (no CLI in between).
async fn get_status(c: &Centre, path: &str) -> (u16, String) {
    let resp = c
        .client()
        .request(reqwest::Method::GET, path)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn records(c: &Centre, credential: &Path) -> Vec<Value> {
    c.admin_as(credential, &["audit", "list", "--limit", "10000"])
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_whose_details_are_not_json_is_named_not_a_server_error() {
    let c = start(Backend::Sqlite);
    for i in 0..4 {
        c.org(&format!("Org {i}"), "clinic");
    }
    c.sql("UPDATE audit SET details = '{not json' WHERE seq = 3");
    let (status, body) = get_status(&c, "/api/v1/audit/verify").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["problem"], json!("unreadable"));
    assert_eq!(v["first_bad_seq"], json!(3));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("audit record 3 cannot be read: its details are not JSON"),
        "{v}"
    );
    let e = c.admin(&["audit", "verify"]).unwrap_err();
    assert!(e.contains("audit record 3 cannot be read"), "{e}");
    // The damaged record still shows (as the text stored), and listing does not fail.
    let (status, body) = get_status(&c, "/api/v1/audit?limit=10").await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[2]["details"], json!("{not json"));
    // The export carries it too, and offline verification names it.
    let (status, body) = get_status(&c, "/api/v1/audit/export").await;
    assert_eq!(status, 200);
    let recs = dodvpn_audit::from_jsonl(&body).unwrap();
    assert_eq!(
        dodvpn_audit::verify(&recs),
        Err(dodvpn_audit::ChainError::Edited { seq: 3 })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_swapped_records_are_reported_as_reordered() {
    let c = start(Backend::Sqlite);
    for i in 0..5 {
        c.org(&format!("Org {i}"), "clinic");
    }
    c.sql("UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -1;");
    let (_, body) = get_status(&c, "/api/v1/audit/verify").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["problem"], json!("reordered"), "{v}");
    assert_eq!(v["first_bad_seq"], json!(3));
    let e = c.admin(&["audit", "verify"]).unwrap_err();
    assert!(
        e.contains("reordered: record 4 stands where record 3 belongs"),
        "{e}"
    );
    // Swapped lines of an export are a reordering too.
    c.sql("UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -1;");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("audit.jsonl");
    let f = file.to_str().unwrap();
    c.admin_ok(&["audit", "export", "--out", f]);
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.swap(1, 2);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let e = c.admin(&["audit", "verify", "--file", f]).unwrap_err();
    assert!(
        e.contains("reordered: record 3 stands where record 2 belongs"),
        "{e}"
    );
}

async fn tampered_chain_makes_the_restarted_centre_read_only(backend: Backend) {
    let mut c = start(backend);
    for i in 0..4 {
        c.org(&format!("Org {i}"), "clinic");
    }
    let good = c.admin_ok(&["audit", "verify"]);
    assert_eq!(good["ok"], json!(true));
    let n = good["records"].as_u64().unwrap();
    // Appended after the last verification, then altered while the centre is down.
    c.org("Late", "clinic");
    c.stop();
    let bad = n + 1;
    c.sql(&format!(
        "UPDATE audit SET subject = subject || 'x' WHERE seq = {bad}"
    ));
    c.spawn();
    let line = c
        .stdout_lines
        .iter()
        .find(|l| l.contains("AUDIT CHAIN BROKEN"))
        .unwrap_or_else(|| {
            panic!(
                "no word about the broken chain at start: {:?}",
                c.stdout_lines
            )
        })
        .clone();
    assert!(
        line.contains(&format!("audit record {bad} was altered")) && line.contains("READ-ONLY"),
        "{line}"
    );
    // Changes are refused, naming the record; the evidence stays readable.
    let e = c
        .admin(&["org", "create", "After", "--kind", "clinic"])
        .unwrap_err();
    assert!(
        e.contains("audit_chain_broken") && e.contains(&format!("audit record {bad}")),
        "{e}"
    );
    assert_eq!(records(&c, &c.credential_path()).len() as u64, n + 1);
    assert!(c
        .admin(&["audit", "verify"])
        .unwrap_err()
        .contains("was altered"));

    // Restored: the next start is clean and writable again.
    c.stop();
    c.sql(&format!(
        "UPDATE audit SET subject = substr(subject, 1, length(subject) - 1) WHERE seq = {bad}"
    ));
    c.spawn();
    assert!(
        c.stdout_lines
            .iter()
            .any(|l| l.contains("audit chain") && l.contains(&format!("{n}–{bad} verified"))),
        "incremental check from the checkpoint: {:?}",
        c.stdout_lines
    );
    c.org("After", "clinic");
    let head = c.admin_ok(&["audit", "verify"])["records"]
        .as_u64()
        .unwrap();

    // The newest verified record deleted (or an older database put back): named at start.
    c.stop();
    c.sql(&format!("DELETE FROM audit WHERE seq = {head}"));
    c.spawn();
    assert!(
        c.stdout_lines
            .iter()
            .any(|l| l.contains("AUDIT CHAIN BROKEN")
                && l.contains(&format!(
                    "audit record {head} was verified earlier but is now missing"
                ))),
        "{:?}",
        c.stdout_lines
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_chain_makes_the_restarted_centre_read_only_sqlite() {
    tampered_chain_makes_the_restarted_centre_read_only(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_chain_makes_the_restarted_centre_read_only_postgres() {
    tampered_chain_makes_the_restarted_centre_read_only(Backend::Postgres).await;
}

/// The refusal records of one action: (record count, sum of their counts).
fn refusal_records(c: &Centre, action: &str) -> (usize, u64, Vec<Value>) {
    let recs: Vec<Value> = records(c, &c.credential_path())
        .into_iter()
        .filter(|r| r["action"] == json!(action))
        .collect();
    let sum = recs
        .iter()
        .map(|r| r["details"]["count"].as_u64().unwrap())
        .sum();
    (recs.len(), sum, recs)
}

/// Wait until every window has been summed (a window plus a flush tick, twice over).
async fn after_windows() {
    tokio::time::sleep(Duration::from_millis(WINDOW_MS * 2 + 800)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refusals_gives_a_few_records_with_the_count() {
    let c = start(Backend::Sqlite);
    let a = c.org("Clinic A", "clinic");
    let b = c.org("Hospital B", "hospital");
    let tmp = tempfile::tempdir().unwrap();
    let cred_a = tmp.path().join("a.token");
    c.admin_ok(&["org", "admin", &a, "--out", cred_a.to_str().unwrap()]);
    let site = onboard(&c, &b, "FLOOD-1", "10.2.0.0/24").await;
    let before = records(&c, &c.credential_path()).len();

    // Wrong organisation: A's administrator reads B's policy, 60 times at once.
    const N: usize = 60;
    let admin_a = dodvpn_agent::CenterClient::admin(
        &c.url,
        &c.ca_pem(),
        std::fs::read_to_string(&cred_a).unwrap().trim(),
    )
    .unwrap();
    let path = format!("/api/v1/orgs/{b}/policy");
    let calls = (0..N).map(|_| admin_a.get::<Value>(&path));
    for r in futures_util::future::join_all(calls).await {
        assert!(format!("{:#}", r.unwrap_err()).contains("other_organisation"));
    }
    // Wrong tier: B's tier-1 certificate on a tier-2 endpoint, 40 times.
    let t1 = site.tier1(&c);
    for _ in 0..40 {
        assert!(format!(
            "{:#}",
            t1.get::<Value>("/api/v1/device/state").await.unwrap_err()
        )
        .contains("wrong_tier"));
    }
    // A certificate of no CA of this centre, refused in the TLS handshake, 30 times.
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "foreign");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let foreign = p.self_signed(&key).unwrap();
    let foreign_client = client_with_cert(&c, &foreign.pem(), &key);
    for _ in 0..30 {
        assert!(foreign_client
            .get(format!("{}/healthz", c.url))
            .send()
            .await
            .is_err());
    }
    // The first of each is on record at once.
    let (n, sum, recs) = refusal_records(&c, "refused.other_organisation");
    assert!(n >= 1 && sum >= 1, "first refusal recorded at once");
    assert_eq!(recs[0]["details"]["count"], json!(1));
    assert!(
        recs[0]["actor"]
            .as_str()
            .unwrap()
            .ends_with(&format!("@{a}")),
        "{}",
        recs[0]
    );
    assert!(recs[0]["subject"].as_str().unwrap().contains(&b));

    after_windows().await;
    for (action, total) in [
        ("refused.other_organisation", N as u64),
        ("refused.wrong_tier", 40),
        ("refused.tls_certificate", 30),
    ] {
        let (n, sum, recs) = refusal_records(&c, action);
        assert_eq!(
            sum, total,
            "{action}: the counts add up to every refusal: {recs:?}"
        );
        assert!(
            (1..=4).contains(&n),
            "{action}: a bounded number of records, got {n}"
        );
        assert_eq!(recs[0]["details"]["repeated"], json!(false));
        assert!(recs[1..]
            .iter()
            .all(|r| r["details"]["repeated"] == json!(true)));
    }
    let (_, _, tier) = refusal_records(&c, "refused.wrong_tier");
    assert!(tier[0]["actor"].as_str().unwrap().contains(&site.id));
    let (_, _, tls) = refusal_records(&c, "refused.tls_certificate");
    assert!(
        tls[0]["details"]["message"]
            .as_str()
            .unwrap()
            .contains("UnknownIssuer"),
        "{}",
        tls[0]
    );
    // A revoked certificate: the handshake passes (revocation is the database's to
    // decide), the call is refused, and the record names the device.
    c.admin_ok(&["device", "revoke", &site.id, "--reason", "stolen"]);
    let t2 = site.tier2(&c);
    for _ in 0..5 {
        let e = format!(
            "{:#}",
            t2.get::<Value>("/api/v1/device/state").await.unwrap_err()
        );
        assert!(e.contains("revoked"), "{e}");
    }
    let (n, sum, revoked) = refusal_records(&c, "refused.revoked");
    assert!(
        n == 1 && sum == 1,
        "first at once, the rest counted: {revoked:?}"
    );
    assert_eq!(revoked[0]["details"]["device"], json!(site.id));
    let after = records(&c, &c.credential_path()).len();
    assert!(
        after - before <= 12,
        "130 refusals added {} records",
        after - before
    );
    assert_eq!(c.admin_ok(&["audit", "verify"])["ok"], json!(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_and_its_auditor_read_verify_and_export_only_its_own_trail() {
    let c = start(Backend::Sqlite);
    let a = c.org("Clinic A", "clinic");
    let b = c.org("Hospital B", "hospital");
    let tmp = tempfile::tempdir().unwrap();
    let cred_a = tmp.path().join("a.token");
    c.admin_ok(&["org", "admin", &a, "--out", cred_a.to_str().unwrap()]);
    let dev_a = register(&c, &a, "OWN-A", "10.1.0.0/24");
    let dev_b = register(&c, &b, "OWN-B", "10.2.0.0/24");
    let all = records(&c, &c.credential_path());

    // The organisation's administrator: its own records, nothing of B's.
    let own = records(&c, &cred_a);
    let text = |r: &Value| r.to_string();
    assert!(!own.is_empty() && own.len() < all.len());
    assert!(
        own.iter()
            .all(|r| text(r).contains(&a) || text(r).contains(&dev_a)),
        "{own:?}"
    );
    assert!(own
        .iter()
        .all(|r| !text(r).contains(&b) && !text(r).contains(&dev_b)));
    let actions: Vec<&str> = own.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"org.subscribed") && actions.contains(&"device.registered"),
        "{actions:?}"
    );
    // Every record of the full log that names A is there.
    let expected = all
        .iter()
        .filter(|r| text(r).contains(&a) || text(r).contains(&dev_a))
        .count();
    assert_eq!(own.len(), expected);
    // It verifies the whole chain without seeing it.
    let v = c.admin_as(&cred_a, &["audit", "verify"]).unwrap();
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["own_records"].as_u64().unwrap() as usize, own.len());
    // Export, checked offline as an excerpt.
    let file = tmp.path().join("a.jsonl");
    let f = file.to_str().unwrap();
    let exp = c
        .admin_as(&cred_a, &["audit", "export", "--out", f])
        .unwrap();
    assert_eq!(exp["records"].as_u64().unwrap() as usize, own.len());
    assert_eq!(
        c.admin(&["audit", "verify", "--file", f, "--excerpt"])
            .unwrap()["ok"],
        json!(true)
    );
    let mut edited = std::fs::read_to_string(&file).unwrap();
    edited = edited.replacen("Clinic A", "Clinic Z", 1);
    std::fs::write(&file, edited).unwrap();
    assert!(c
        .admin(&["audit", "verify", "--file", f, "--excerpt"])
        .unwrap_err()
        .contains("was altered"));

    // An auditor for A, created by A's administrator: reads the same, changes nothing.
    let cred_aud = tmp.path().join("aud.token");
    let made = c
        .admin_as(
            &cred_a,
            &[
                "org",
                "auditor",
                &a,
                "--label",
                "external auditor",
                "--out",
                cred_aud.to_str().unwrap(),
            ],
        )
        .unwrap();
    let aud_id = made["id"].as_str().unwrap().to_string();
    assert!(std::fs::read_to_string(&cred_aud)
        .unwrap()
        .starts_with("dodvpn-auditor."));
    assert_eq!(mode_of(&cred_aud), 0o600);
    let seen = records(&c, &cred_aud);
    assert_eq!(
        seen.len(),
        own.len() + 1,
        "the same records, and its own creation"
    );
    assert_eq!(seen.last().unwrap()["action"], json!("auditor.created"));
    assert_eq!(
        c.admin_as(&cred_aud, &["audit", "verify"]).unwrap()["ok"],
        json!(true)
    );
    for args in [
        vec!["org", "create", "Mallory", "--kind", "clinic"],
        vec!["device", "list"],
        vec!["org", "auditor", &a],
    ] {
        let e = c.admin_as(&cred_aud, &args).unwrap_err();
        assert!(e.contains("auditor_read_only"), "{args:?}: {e}");
    }
    // A cannot make an auditor for B; B's refusal is A's record.
    let e = c.admin_as(&cred_a, &["org", "auditor", &b]).unwrap_err();
    assert!(e.contains("other_organisation"), "{e}");
    assert!(records(&c, &cred_aud)
        .iter()
        .any(|r| r["action"] == json!("refused.auditor_read_only")));
    // Revoked at once.
    c.admin_as(&cred_a, &["audit", "revoke-auditor", &aud_id])
        .unwrap();
    let e = c.admin_as(&cred_aud, &["audit", "list"]).unwrap_err();
    assert!(
        e.contains("401") || e.contains("invalid administrator credential"),
        "{e}"
    );
    // The provider still sees everything.
    assert!(records(&c, &c.credential_path()).len() > all.len());
}

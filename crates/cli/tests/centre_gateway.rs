//! The gateway centre in the centre (issue 12, R-SVC-1), on both back-ends: only a
//! device the provider registered as a gateway node may read the policy and send logs;
//! an organisation's application is approved or refused by its administrator or the
//! provider, with an expiry; every change reaches the node as a `gateway.policy` push;
//! an organisation reads only its own requests; a day's digest enters the audit chain
//! once; Proxy-Authorization is checked against the organisation's console accounts.

mod common;

use std::process::Command;

use common::*;
use dodvpn_gateway::feed::{
    GatewayPolicy, LogBatch, LogDigest, LogRecord, Outcome, UserCheck, DIGEST_PATH, LOG_PATH,
    POLICY_EVENT, POLICY_PATH, USER_CHECK_PATH,
};
use serde_json::{json, Value};

fn record(org: &str, device: &str, host: &str) -> LogRecord {
    LogRecord {
        at_ms: 1_000,
        org_id: org.into(),
        device_id: device.into(),
        user: None,
        host: host.into(),
        port: 443,
        method: "CONNECT".into(),
        bytes_up: 10,
        bytes_down: 20,
        duration_ms: 5,
        outcome: Outcome::Allowed,
        reason: format!("allowed:{host}"),
    }
}

/// A console account of `org` with `password` (the console's own Argon2id hashing),
/// written straight into the centre's database as the console's invitation flow would.
fn console_user(c: &Centre, org: &str, user: &str, password: &str) {
    let phc = dodvpn_console::password::hash(password).unwrap();
    let sql = format!(
        "INSERT INTO console_users (id, username, role, org_id, password_hash, totp_secret, created_ms) \
         VALUES ('usr-{user}', '{user}', 'org_admin', '{org}', '{phc}', 'AAAA', 0)"
    );
    match &c.db {
        Some(url) => {
            let out = Command::new("psql")
                .arg(url)
                .args(["-q", "-c", &sql])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => {
            let db = rusqlite::Connection::open(c.dir.join("center.db")).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            db.execute(&sql, []).unwrap();
        }
    }
}

async fn the_gateway_workflow(backend: Backend) {
    let c = Centre::start(backend);
    let provider = c.org("Gateway Provider", "vendor");
    let org1 = c.org("Hospital", "hospital");
    let org2 = c.org("Clinic", "clinic");
    let node = onboard(&c, &provider, "GW-1", "10.99.0.0/24").await;
    let site = onboard(&c, &org1, "S-1", "10.1.0.0/24").await;
    let nodec = node.tier2(&c);

    // Only a registered gateway node reads the policy.
    let e = nodec.get::<Value>(POLICY_PATH).await.unwrap_err();
    assert!(format!("{e:#}").contains("not_a_gateway_node"), "{e:#}");
    let tmp = tempfile::tempdir().unwrap();
    let (t1, t2) = (tmp.path().join("org1"), tmp.path().join("org2"));
    c.admin_ok(&["org", "admin", &org1, "--out", t1.to_str().unwrap()]);
    c.admin_ok(&["org", "admin", &org2, "--out", t2.to_str().unwrap()]);
    assert!(c
        .admin_as(&t1, &["gateway", "node", "add", &node.id])
        .is_err());
    c.admin_ok(&["gateway", "node", "add", &node.id]);
    let e = site.tier2(&c).get::<Value>(POLICY_PATH).await.unwrap_err();
    assert!(format!("{e:#}").contains("not_a_gateway_node"), "{e:#}");
    let p: GatewayPolicy = nodec.get(POLICY_PATH).await.unwrap();
    assert!(p.orgs.is_empty(), "deny by default: {p:?}");

    let mut rx = stream(&node, &c, 0).await;
    next_kind(&mut rx, "hello").await;

    // Apply, approve with an expiry: pushed, in the policy.
    let app = c
        .admin_as(
            &t1,
            &[
                "gateway",
                "apply",
                "--org",
                &org1,
                "--entry",
                "news.example.jp",
                "--reason",
                "診療報酬の情報",
            ],
        )
        .unwrap();
    assert_eq!(app["status"], json!("pending"));
    let id = app["id"].as_str().unwrap().to_string();
    assert!(
        c.admin_as(
            &t2,
            &[
                "gateway",
                "approve",
                &id,
                "--org",
                &org1,
                "--expires-in",
                "1h"
            ]
        )
        .is_err(),
        "another organisation's administrator cannot decide"
    );
    assert!(
        c.admin_as(
            &t1,
            &["gateway", "apply", "--org", &org1, "--entry", "*.co.jp", "--reason", "x"]
        )
        .is_err(),
        "a wildcard at a public suffix is refused"
    );
    let ok = c
        .admin_as(
            &t1,
            &[
                "gateway",
                "approve",
                &id,
                "--org",
                &org1,
                "--expires-in",
                "1h",
                "--note",
                "ok",
            ],
        )
        .unwrap();
    assert_eq!(ok["status"], json!("approved"));
    let ev = next_kind(&mut rx, POLICY_EVENT).await;
    let p: GatewayPolicy = nodec.get(POLICY_PATH).await.unwrap();
    assert_eq!(ev["payload"]["version"], json!(p.version));
    let o = p
        .orgs
        .iter()
        .find(|o| o.org_id == org1)
        .expect("org 1 in the policy");
    assert_eq!(o.rules.len(), 1);
    assert_eq!(o.rules[0].entry, "news.example.jp");
    assert_eq!(o.rules[0].application_id.as_deref(), Some(id.as_str()));
    assert!(o.rules[0].expires_ms.unwrap() > ok["decided_ms"].as_i64().unwrap());
    assert!(
        c.admin_as(
            &t1,
            &[
                "gateway",
                "approve",
                &id,
                "--org",
                &org1,
                "--expires-in",
                "1h"
            ]
        )
        .is_err(),
        "decided once"
    );

    // A refusal changes nothing the node decides; a withdrawal removes the rule, pushed.
    let other = c
        .admin_as(
            &t1,
            &[
                "gateway",
                "apply",
                "--org",
                &org1,
                "--entry",
                "games.example.jp",
                "--reason",
                "x",
            ],
        )
        .unwrap();
    let refused = c.admin_ok(&[
        "gateway",
        "refuse",
        other["id"].as_str().unwrap(),
        "--org",
        &org1,
        "--note",
        "not for work",
    ]);
    assert_eq!(refused["status"], json!("refused"));
    c.admin_as(&t1, &["gateway", "withdraw", &id, "--org", &org1])
        .unwrap();
    next_kind(&mut rx, POLICY_EVENT).await;
    let p: GatewayPolicy = nodec.get(POLICY_PATH).await.unwrap();
    assert!(p.orgs.iter().all(|o| o.org_id != org1), "{p:?}");
    assert!(c
        .admin_as(&t2, &["gateway", "list", "--org", &org1])
        .is_err());

    // Logs: kept for each organisation, read only by it (and the provider).
    let batch = LogBatch {
        records: vec![
            record(&org1, &site.id, "a.example.jp"),
            record(&org1, &site.id, "b.example.jp"),
            record(&org2, "dev-x", "c.example.jp"),
        ],
    };
    let r: Value = nodec.post(LOG_PATH, &batch).await.unwrap();
    assert_eq!(r["accepted"], json!(3));
    assert!(site
        .tier2(&c)
        .post::<_, Value>(LOG_PATH, &batch)
        .await
        .is_err());
    let l1 = c
        .admin_as(&t1, &["gateway", "log", "--org", &org1])
        .unwrap();
    assert_eq!(l1.as_array().unwrap().len(), 2);
    assert!(l1
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["org_id"] == json!(org1) && r["node_id"] == json!(node.id)));
    assert_eq!(
        c.admin_as(&t2, &["gateway", "log", "--org", &org2])
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(c
        .admin_as(&t2, &["gateway", "log", "--org", &org1])
        .is_err());

    // A day's digest: into the audit chain once; a different one for the same day is refused.
    let d = LogDigest {
        day: "2026-12-03".into(),
        records: 3,
        sha256: "ab".repeat(32),
    };
    let r: Value = nodec.post(DIGEST_PATH, &d).await.unwrap();
    assert_eq!(r["accepted"], json!(1));
    let r: Value = nodec.post(DIGEST_PATH, &d).await.unwrap();
    assert_eq!(r["accepted"], json!(0), "a retry is not a second record");
    let e = nodec
        .post::<_, Value>(
            DIGEST_PATH,
            &LogDigest {
                sha256: "cd".repeat(32),
                ..d.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("digest_differs"), "{e:#}");
    let audit = audit_actions(&c);
    let digests: Vec<_> = audit
        .iter()
        .filter(|(a, _)| a == "gateway.log_digest")
        .collect();
    assert_eq!(digests.len(), 1);
    assert_eq!(digests[0].1["sha256"], json!("ab".repeat(32)));
    for a in [
        "gateway.node_added",
        "gateway.applied",
        "gateway.approved",
        "gateway.refused",
        "gateway.withdrawn",
    ] {
        assert!(audit.iter().any(|(x, _)| x == a), "{a} not audited");
    }
    assert_eq!(c.admin_ok(&["audit", "verify"])["ok"], json!(true));

    // Proxy-Authorization against the organisation's console accounts (C 4-8-2).
    console_user(&c, &org1, "nurse1", "a long enough pass phrase");
    let check = |org: &str, user: &str, password: &str| UserCheck {
        org_id: org.into(),
        user: user.into(),
        password: password.into(),
    };
    let yes: Value = nodec
        .post(
            USER_CHECK_PATH,
            &check(&org1, "nurse1", "a long enough pass phrase"),
        )
        .await
        .unwrap();
    assert_eq!(yes["ok"], json!(true));
    for (org, user, pw) in [
        (&org1, "nurse1", "wrong"),
        (&org2, "nurse1", "a long enough pass phrase"),
        (&org1, "nobody", "a long enough pass phrase"),
    ] {
        let no: Value = nodec
            .post(USER_CHECK_PATH, &check(org, user, pw))
            .await
            .unwrap();
        assert_eq!(no["ok"], json!(false), "{org} {user} {pw}");
    }
    assert!(site
        .tier2(&c)
        .post::<_, Value>(
            USER_CHECK_PATH,
            &check(&org1, "nurse1", "a long enough pass phrase")
        )
        .await
        .is_err());
}

both_backends!(the_gateway_workflow);

//! Issue 11 (R-SVC-3, R-POL-6) against a real centre on SQLite and PostgreSQL: a
//! group's check-sheet gate holds a membership until the sheet passes, the centre
//! pre-fills what its own records answer, every submission is kept and compared, bad
//! submissions change nothing, and an expired sheet suspends the membership.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A submission answering every item asked of `sheet` with `value`, from the
/// centre's own prefill skeleton (which already holds the items it could answer).
fn answered(c: &Centre, org: &str, sheet: &str, value: &str) -> Value {
    let mut body = c.admin_ok(&["checksheet", "prefill", org, "--sheet", sheet]);
    let sheets = c.admin_ok(&["checksheet", "sheets"]);
    let cat = sheets["catalogues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["catalogue"] == body["catalogue"])
        .unwrap()
        .clone();
    let sh = cat["sheet"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == sheet)
        .unwrap()
        .clone();
    let mut answers = vec![];
    for item in cat["item"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        // The most specific rule decides, as the centre does.
        let mut scope = Some(id.to_string());
        let rule = loop {
            let Some(s) = scope else { break None };
            if let Some(r) = sh["rules"].get(&s) {
                break Some(r.clone());
            }
            scope = s.rfind('-').map(|i| s[..i].to_string());
        };
        for (role, applies) in rule
            .as_ref()
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if applies == "always" {
                answers.push(
                    json!({"item": id, "role": role, "value": value, "note": "checked on site"}),
                );
            }
        }
    }
    body["answers"] = json!(answers);
    body
}

fn submit(c: &Centre, org: &str, body: &Value) -> Result<Value, String> {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), body.to_string()).unwrap();
    c.admin(&["checksheet", "submit", org, f.path().to_str().unwrap()])
}

/// A refusal (or withdrawal) for want of a check sheet.
fn gated(reason: &str) -> bool {
    reason.contains("check sheet") || reason.contains("checksheet")
}

fn granted(c: &Centre, from: &str, to: &str) -> Result<Value, String> {
    c.admin(&["connection", "apply", "--from", from, "--to", to])
}

async fn scenario(backend: Backend) {
    // A year is too long to wait: each submission stands 25 s here (warning 2.5 s before).
    std::env::set_var("DODVPN_CHECKSHEET_VALID_SECS", "25");
    let c = Centre::start(backend);
    let hospital = c.org("Core Hospital", "hospital");
    let lab = c.org("City Lab", "lab");
    let h = onboard(&c, &hospital, "CS-H", "10.31.0.0/24").await;
    let l = onboard(&c, &lab, "CS-L", "10.32.0.0/24").await;
    for org in [&hospital, &lab] {
        set_policy(&c, org, &open_policy());
    }
    c.admin_ok(&[
        "group",
        "create",
        "A",
        "--require-checksheet",
        "--gate-sheet",
        "large",
        "--gate-sheet",
        "small",
        "--gate-min",
        "90",
    ]);
    // A gate naming a sheet that does not exist is refused.
    let e = c
        .admin(&[
            "group",
            "create",
            "B",
            "--require-checksheet",
            "--gate-sheet",
            "iso9001",
        ])
        .unwrap_err();
    assert!(e.contains("iso9001") && e.contains("不明"), "{e}");
    for s in [&h, &l] {
        c.admin_ok(&["group", "add", "A", &s.id]);
    }

    // 1. Pending check sheet: no grant.
    let e = granted(&c, &l.id, &h.id).unwrap_err();
    assert!(gated(&e), "{e}");

    // 2. The centre pre-fills what its records answer: no transit, deny by default.
    let pre = c.admin_ok(&["checksheet", "prefill", &hospital, "--sheet", "large"]);
    let pre_items: Vec<&str> = pre["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["item"].as_str().unwrap())
        .collect();
    assert!(pre_items.contains(&"2-2-1"), "{pre}");
    let transit = pre["answers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["item"] == "2-2-1")
        .unwrap();
    assert_eq!(transit["value"], "yes");
    assert!(transit["note"].as_str().unwrap().contains("R-POL-4"));

    // 3. Bad submissions are refused and stored nothing.
    let good = answered(&c, &hospital, "large", "yes");
    let mut stale = good.clone();
    stale["version"] = json!("2001.1");
    let mut unknown = good.clone();
    unknown["answers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"item": "9-9-9", "role": "admin", "value": "yes"}));
    let mut twice = good.clone();
    let first = twice["answers"][0].clone();
    twice["answers"].as_array_mut().unwrap().push(first);
    let mut garbage = good.clone();
    garbage["answers"][0]["value"] = json!("maybe");
    for (bad, needle) in [
        (&stale, "2001.1"),
        (&unknown, "9-9-9"),
        (&twice, "twice"),
        (&garbage, "maybe"),
    ] {
        let e = submit(&c, &hospital, bad).unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    assert_eq!(c.admin_ok(&["checksheet", "history", &hospital]), json!([]));

    // 4. A failing sheet (all "no") does not open the gate; its gaps are listed.
    let failing = submit(&c, &lab, &answered(&c, &lab, "small", "no")).unwrap();
    assert_eq!(failing["percent"], 0);
    assert!(!failing["score"]["gaps"].as_array().unwrap().is_empty());
    submit(&c, &hospital, &good).unwrap();
    assert!(gated(&granted(&c, &l.id, &h.id).unwrap_err()));

    // 5. Both pass: the grant is issued. History keeps both lab submissions; compare names the change.
    let passing = submit(&c, &lab, &answered(&c, &lab, "small", "yes")).unwrap();
    assert_eq!(passing["percent"], 100, "{passing}");
    assert_eq!(passing["state"], "current");
    let r = granted(&c, &l.id, &h.id).unwrap();
    assert_eq!(r["outcomes"][0]["granted"], json!(true), "{r}");
    let history = c.admin_ok(&["checksheet", "history", &lab]);
    let states: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["current", "superseded"]);
    let cmp = c.admin_ok(&[
        "checksheet",
        "compare",
        &lab,
        failing["id"].as_str().unwrap(),
        passing["id"].as_str().unwrap(),
    ]);
    assert_eq!(cmp["from_percent"], 0);
    assert_eq!(cmp["to_percent"], 100);
    assert!(cmp["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|ch| ch["before"] == "no" && ch["after"] == "yes"));

    // 6. An organisation's administrator sees its own sheets only.
    let cred = c.dir.join("lab.token");
    c.admin_ok(&["org", "admin", &lab, "--out", cred.to_str().unwrap()]);
    assert!(c.admin_as(&cred, &["checksheet", "history", &lab]).is_ok());
    let e = c
        .admin_as(&cred, &["checksheet", "history", &hospital])
        .unwrap_err();
    assert!(e.contains("own organisation"), "{e}");
    assert!(submit_as(&c, &cred, &hospital, &good)
        .unwrap_err()
        .contains("own organisation"));

    // 7. Expiry: warned first, then the membership is suspended and the grant withdrawn.
    let grant = r["outcomes"][0]["grant_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let g = c.admin_ok(&["grant", "show", &grant])["grant"].clone();
        if g["status"] != "active" {
            assert!(gated(g["end_reason"].as_str().unwrap_or("")), "{g}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired sheet did not suspend the grant: {g}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let actions = audit_actions(&c);
    let pos = |a: &str| {
        actions
            .iter()
            .position(|(x, _)| x == a)
            .unwrap_or_else(|| panic!("no {a} in {actions:?}"))
    };
    assert!(pos("checksheet.submitted") < pos("checksheet.expiring"));
    assert!(pos("checksheet.expiring") < pos("checksheet.expired"));
    let expiring = &actions[pos("checksheet.expiring")].1;
    assert!(expiring["message_ja"]
        .as_str()
        .unwrap()
        .contains("有効期限"));
    assert_eq!(
        c.admin_ok(&["checksheet", "history", &lab])[0]["state"],
        "expired"
    );
    assert!(gated(&granted(&c, &l.id, &h.id).unwrap_err()));
}

fn submit_as(c: &Centre, cred: &std::path::Path, org: &str, body: &Value) -> Result<Value, String> {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), body.to_string()).unwrap();
    c.admin_as(
        cred,
        &["checksheet", "submit", org, f.path().to_str().unwrap()],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_holds_until_the_sheet_passes_and_suspends_on_expiry_sqlite() {
    scenario(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_holds_until_the_sheet_passes_and_suspends_on_expiry_postgres() {
    scenario(Backend::Postgres).await
}

/// Evidence files: uploaded per organisation (0600 on disk, audited, checked by SHA-256
/// when read back), named by id in an answer; an unknown or another organisation's id,
/// an empty or oversized file, a bad name are refused with nothing stored.
fn evidence_files(backend: Backend) {
    let c = Centre::start(backend);
    let org = c.org("Evidence Hospital", "hospital");
    let other = c.org("Other Clinic", "clinic");
    let file = c.dir.join("contract.pdf");
    let content = b"%PDF-1.4 maintenance contract, remote access clause".repeat(100);
    std::fs::write(&file, &content).unwrap();
    let att = c.admin_ok(&[
        "checksheet",
        "attach",
        &org,
        file.to_str().unwrap(),
        "--name",
        "保守契約書 2026.pdf",
    ]);
    let id = att["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("att-"), "{att}");
    assert_eq!(att["name"], "保守契約書 2026.pdf");
    assert_eq!(att["size"], content.len());
    let stored = c.dir.join("attachments").join(&id);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = c.admin_ok(&["checksheet", "attachments", &org]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let back = c.dir.join("back.pdf");
    c.admin_ok(&[
        "checksheet",
        "attachment",
        &org,
        &id,
        "--out",
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&back).unwrap(), content);

    // An answer names it; the submission keeps the id.
    let mut body = answered(&c, &org, "mhlw", "yes");
    body["answers"][0]["attachment"] = json!(id);
    let sub = submit(&c, &org, &body).unwrap();
    let shown = c.admin_ok(&["checksheet", "show", &org, sub["id"].as_str().unwrap()]);
    assert_eq!(
        shown["body"]["answers"][0]["attachment"],
        json!(id),
        "{shown}"
    );

    // Refused, storing nothing: an id that does not exist, another organisation's id,
    // reading another organisation's file, an empty or oversized file, a bad name.
    let history = |c: &Centre, o: &str| {
        c.admin_ok(&["checksheet", "history", o])
            .as_array()
            .unwrap()
            .len()
    };
    let before = history(&c, &org);
    body["answers"][0]["attachment"] = json!("att-000000000000");
    let e = submit(&c, &org, &body).unwrap_err();
    assert!(
        e.contains("no attachment att-000000000000") && e.contains("添付ファイル"),
        "{e}"
    );
    let mut theirs = answered(&c, &other, "small", "yes");
    theirs["answers"][0]["attachment"] = json!(id);
    let e = submit(&c, &other, &theirs).unwrap_err();
    assert!(e.contains(&format!("no attachment {id}")), "{e}");
    assert_eq!(history(&c, &org), before);
    assert_eq!(history(&c, &other), 0);
    let cred = c.dir.join("other.token");
    c.admin_ok(&["org", "admin", &other, "--out", cred.to_str().unwrap()]);
    let e = c
        .admin_as(
            &cred,
            &[
                "checksheet",
                "attachment",
                &org,
                &id,
                "--out",
                back.to_str().unwrap(),
            ],
        )
        .unwrap_err();
    assert!(e.contains("403") || e.contains("other_organisation"), "{e}");
    let empty = c.dir.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let e = c
        .admin(&["checksheet", "attach", &org, empty.to_str().unwrap()])
        .unwrap_err();
    assert!(e.contains("empty") && e.contains("空"), "{e}");
    let big = c.dir.join("big.bin");
    std::fs::write(&big, vec![7u8; 10 * 1024 * 1024 + 1]).unwrap();
    let e = c
        .admin(&["checksheet", "attach", &org, big.to_str().unwrap()])
        .unwrap_err();
    assert!(e.contains("413") || e.contains("too_large"), "{e}");
    let e = c
        .admin(&[
            "checksheet",
            "attach",
            &org,
            file.to_str().unwrap(),
            "--name",
            "a\u{7}b",
        ])
        .unwrap_err();
    assert!(e.contains("printable"), "{e}");
    assert_eq!(
        c.admin_ok(&["checksheet", "attachments", &org])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let files: Vec<_> = std::fs::read_dir(c.dir.join("attachments"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "no file left behind by a refusal");

    // A file changed on disk is refused when read, not served.
    std::fs::write(&stored, b"tampered").unwrap();
    let e = c
        .admin(&[
            "checksheet",
            "attachment",
            &org,
            &id,
            "--out",
            back.to_str().unwrap(),
        ])
        .unwrap_err();
    assert!(e.contains("does not match its SHA-256"), "{e}");
    let audit = audit_actions(&c);
    assert_eq!(
        audit
            .iter()
            .filter(|(a, _)| a == "checksheet.attachment_added")
            .count(),
        1
    );
}

#[test]
fn evidence_files_sqlite() {
    evidence_files(Backend::Sqlite);
}

#[test]
fn evidence_files_postgres() {
    evidence_files(Backend::Postgres);
}

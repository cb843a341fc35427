//! Issue 14 (R-SVC-5) against a real centre on SQLite and PostgreSQL: public addresses
//! are the provider's to change (audited); `dodvpn diagnose` refuses anything else
//! before probing; a posted run outside them is refused; runs compare new/fixed/unchanged.

mod common;

use common::*;
use serde_json::{json, Value};

fn finding(target: &str, port: u16, check: &str) -> Value {
    json!({"target": target, "proto": "tcp", "port": port, "check": check, "severity": "high",
        "evidence": "220 x", "title_en": "t", "title_ja": "t", "recommendation_en": "r", "recommendation_ja": "r"})
}

fn scenario(backend: Backend) {
    let c = Centre::start(backend);
    let org = c.org("Diagnosed Clinic", "clinic");
    let other = c.org("Other Clinic", "clinic");
    let set = c.admin_ok(&[
        "org",
        "public-addresses",
        "set",
        &org,
        "127.0.0.1",
        "192.0.2.0/30",
    ]);
    assert_eq!(set["addresses"], json!(["127.0.0.1/32", "192.0.2.0/30"]));
    assert!(c
        .admin(&["org", "public-addresses", "set", &org, "10.0.0.0/8"])
        .unwrap_err()
        .contains("more than 1024"));
    assert!(c
        .admin(&["org", "public-addresses", "set", &org, "nonsense"])
        .is_err());

    // The organisation itself may read its list and diagnose itself, not change the list.
    let cred = c.dir.join("org.token");
    c.admin_ok(&["org", "admin", &org, "--out", cred.to_str().unwrap()]);
    assert_eq!(
        c.admin_as(&cred, &["org", "public-addresses", "list", &org])
            .unwrap()["addresses"][0],
        "127.0.0.1/32"
    );
    assert!(c
        .admin_as(
            &cred,
            &["org", "public-addresses", "set", &org, "198.51.100.1"]
        )
        .unwrap_err()
        .contains("provider"));
    assert!(c
        .admin_as(&cred, &["org", "public-addresses", "list", &other])
        .is_err());

    // The CLI refuses an unregistered address, in both languages, and records nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dodvpn"))
        .args([
            "diagnose", "--org", &org, "--center", &c.url, "--ports", "1",
        ])
        .arg("--ca")
        .arg(c.ca_path())
        .arg("--credential-file")
        .arg(&cred)
        .arg("198.51.100.1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("登録されていない")
            && err.contains("not registered")
            && err.contains("198.51.100.1"),
        "{err}"
    );

    // A run on loopback (registered), one closed port: no findings, posted and audited.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dodvpn"))
        .args([
            "diagnose",
            "--json",
            "--org",
            &org,
            "--center",
            &c.url,
            "--ports",
            "1",
            // Loopback answers ICMP timestamps (as root), and the host may run snmpd:
            // this run is about the record, not about those checks.
            "--no-udp",
            "127.0.0.1",
        ])
        .arg("--ca")
        .arg(c.ca_path())
        .arg("--credential-file")
        .arg(&cred)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["findings"], json!([]));
    assert!(v["comparison"]["run"]["id"]
        .as_str()
        .unwrap()
        .starts_with("diag-"));

    // Through the API: outside the scope is 403; comparisons are computed by the centre.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = c.client();
        let path = format!("/api/v1/orgs/{org}/diagnoses");
        let e = api.post::<_, Value>(&path, &json!({"started_ms": 1, "finished_ms": 2, "targets": ["198.51.100.1"], "findings": []})).await.unwrap_err();
        assert!(e.to_string().contains("address_not_registered") || e.to_string().contains("403"), "{e}");
        let r1: Value = api.post(&path, &json!({"started_ms": 1, "finished_ms": 2, "targets": ["192.0.2.1", "192.0.2.2"],
            "findings": [finding("192.0.2.1", 21, "ftp.anonymous"), finding("192.0.2.1", 7, "echo.tcp"), finding("192.0.2.2", 53, "dns.axfr")]})).await.unwrap();
        assert_eq!(r1["new"].as_array().unwrap().len(), 3);
        // The second run probes only 192.0.2.1: echo is fixed, 192.0.2.2's AXFR is not.
        let r2: Value = api.post(&path, &json!({"started_ms": 3, "finished_ms": 4, "targets": ["192.0.2.1"],
            "findings": [finding("192.0.2.1", 21, "ftp.anonymous"), finding("192.0.2.1", 22, "ssh.banner")]})).await.unwrap();
        let checks = |k: &str| r2[k].as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(checks("new"), ["ssh.banner"]);
        assert_eq!(checks("fixed"), ["echo.tcp"]);
        assert_eq!(checks("unchanged"), ["ftp.anonymous"]);
        // The ledger's view: one run with all its findings, compared with the one before.
        let id2 = r2["run"]["id"].as_str().unwrap();
        let got: Value = api.get(&format!("{path}/{id2}")).await.unwrap();
        assert_eq!(got["previous"], r1["run"]["id"]);
        assert_eq!(got["new"], r2["new"]);
        assert_eq!(got["fixed"], r2["fixed"]);
        assert_eq!(got["unchanged"][0]["evidence"], "220 x");
        let id1 = r1["run"]["id"].as_str().unwrap();
        let first: Value = api.get(&format!("{path}/{id1}")).await.unwrap();
        assert_eq!(first["new"].as_array().unwrap().len(), 3);
        assert_eq!(first["previous"], v["comparison"]["run"]["id"], "the CLI run came before");
        let e = api.get::<Value>(&format!("{path}/diag-nonexistent")).await.unwrap_err();
        assert!(e.to_string().contains("404") || e.to_string().contains("not_found"), "{e}");
        let e = api.get::<Value>(&format!("/api/v1/orgs/{other}/diagnoses/{id2}")).await.unwrap_err();
        assert!(e.to_string().contains("404") || e.to_string().contains("not_found"), "a run is found only under its own organisation: {e}");
        // An ICMP finding (port 0) is accepted.
        let mut icmp = finding("192.0.2.1", 0, "icmp.timestamp");
        icmp["proto"] = json!("icmp");
        let r3: Value = api.post(&path, &json!({"started_ms": 5, "finished_ms": 6, "targets": ["192.0.2.1"],
            "findings": [icmp]})).await.unwrap();
        assert_eq!(r3["new"][0]["proto"], "icmp");
        let bad = api.post::<_, Value>(&path, &json!({"started_ms": 5, "finished_ms": 4, "targets": ["192.0.2.1"], "findings": []})).await;
        assert!(bad.is_err());
    });
    let audit = audit_actions(&c);
    assert_eq!(
        audit
            .iter()
            .filter(|(a, _)| a == "org.public_addresses_set")
            .count(),
        1
    );
    let runs: Vec<_> = audit.iter().filter(|(a, _)| a == "diagnose.run").collect();
    assert_eq!(
        runs.len(),
        4,
        "the CLI run and the three API runs; refusals write nothing"
    );
    assert!(runs
        .iter()
        .any(|(_, d)| d["targets"] == json!(["127.0.0.1"])));
}

/// Findings are filed under the ledger rows whose public addresses they were seen on; those
/// on no row's address are called out (an unknown connection point fails MHLW M-2-2); the
/// report and the check-sheet evidence show them; a second run marks them fixed/unchanged.
fn findings_in_the_ledger(backend: Backend) {
    let c = Centre::start(backend);
    let org = c.org("Exposed Hospital", "hospital");
    c.admin_ok(&["org", "public-addresses", "set", &org, "192.0.2.0/29"]);
    let today = &dodvpn_ledger::Date::from_unix_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
    .to_string();
    let outside = format!(
        "id,kind,contractor,responsible,last_reviewed,addresses\n\
         X-1,vendor-vpn,給食サービス株式会社,山田,{today},192.0.2.1\n"
    );
    let f = c.dir.join("outside.csv");
    std::fs::write(&f, outside).unwrap();
    c.admin_ok(&["ledger", "import", &org, "outside", f.to_str().unwrap()]);
    let eq = format!(
        "id,category,name,location,owner,remote_maintenance,last_reviewed,addresses\n\
         EQ-1,network,境界ルータ,B1,情報システム課,有,{today},192.0.2.2\n"
    );
    let f = c.dir.join("equipment.csv");
    std::fs::write(&f, eq).unwrap();
    c.admin_ok(&["ledger", "import", &org, "equipment", f.to_str().unwrap()]);
    let bad = c.dir.join("bad.csv");
    std::fs::write(
        &bad,
        format!("id,kind,contractor,responsible,last_reviewed,addresses\nX-1,internet,A,B,{today},vpn.example.jp\n"),
    )
    .unwrap();
    let e = c
        .admin(&["ledger", "import", &org, "outside", bad.to_str().unwrap()])
        .unwrap_err();
    assert!(
        e.contains("line 2, column 6") && e.contains("IP アドレス"),
        "{e}"
    );

    let l = c.admin_ok(&["ledger", "show", &org]);
    assert!(l["exposure"].is_null(), "no run yet: {l}");
    assert_eq!(l["outside"][0]["findings"], json!([]));
    assert_eq!(l["outside"][0]["row"]["addresses"], json!(["192.0.2.1"]));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = format!("/api/v1/orgs/{org}/diagnoses");
    let targets = json!(["192.0.2.1", "192.0.2.2", "192.0.2.5"]);
    let r1: Value = rt
        .block_on(c.client().post(&path, &json!({"started_ms": 1, "finished_ms": 2, "targets": targets,
            "findings": [finding("192.0.2.1", 443, "http.vpn_login"), finding("192.0.2.2", 22, "ssh.banner"),
                         finding("192.0.2.5", 3389, "rdp.exposed")]})))
        .unwrap();
    let l = c.admin_ok(&["ledger", "show", &org]);
    let checks = |v: &Value| -> Vec<(String, bool)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["finding"]["check"].as_str().unwrap().into(),
                    f["new"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        checks(&l["outside"][0]["findings"]),
        [("http.vpn_login".into(), true)]
    );
    assert_eq!(
        checks(&l["equipment"][0]["findings"]),
        [("ssh.banner".into(), true)]
    );
    let x = &l["exposure"];
    assert_eq!(x["run_id"], r1["run"]["id"]);
    assert_eq!(x["findings"], 3);
    assert_eq!(checks(&x["unledgered"]), [("rdp.exposed".into(), true)]);
    assert_eq!(x["unknown_connection_points"], 1);
    assert!(
        x["note_ja"]
            .as_str()
            .unwrap()
            .contains("台帳のどの行にもない"),
        "{x}"
    );
    assert!(
        x["note_en"]
            .as_str()
            .unwrap()
            .contains("no ledger row names"),
        "{x}"
    );

    // The check-sheet evidence: an unknown remote-access point fails M-2-2, and the
    // high-severity findings fail M-2-9.
    let pre = c.admin_ok(&["checksheet", "prefill", &org, "--sheet", "mhlw"]);
    let answer = |pre: &Value, item: &str| -> (String, String) {
        let a = pre["answers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["item"] == item && a["role"] == "institution")
            .unwrap_or_else(|| panic!("{item} not pre-filled: {pre}"));
        (
            a["value"].as_str().unwrap().into(),
            a["note"].as_str().unwrap().into(),
        )
    };
    let (v, note) = answer(&pre, "M-2-2");
    assert_eq!(v, "no");
    assert!(
        note.contains("192.0.2.5:3389 rdp.exposed") && note.contains("台帳"),
        "{note}"
    );
    let (v, note) = answer(&pre, "M-2-9");
    assert_eq!(v, "no");
    assert!(
        note.contains("3 high-severity") && note.contains("重大な指摘 3 件"),
        "{note}"
    );

    // The inspector's report lists every finding, under its row or as not in the ledger.
    let report = c.dir.join("report.html");
    c.admin_ok(&[
        "ledger",
        "report",
        &org,
        "--format",
        "html",
        "--out",
        report.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&report).unwrap();
    let section = html
        .split("6. 外部からの診断 / Exposure diagnosis")
        .nth(1)
        .expect("section 6");
    for needle in [
        "X-1",
        "EQ-1",
        "192.0.2.1:443",
        "192.0.2.2:22",
        "192.0.2.5:3389",
        "台帳にない / not in the ledger",
    ] {
        assert!(
            section.contains(needle),
            "{needle} missing from the report's section 6"
        );
    }

    // The second run: the VPN login page is still there, RDP is gone.
    rt.block_on(c.client().post::<_, Value>(
        &path,
        &json!({"started_ms": 3, "finished_ms": 4, "targets": targets,
        "findings": [finding("192.0.2.1", 443, "http.vpn_login")]}),
    ))
    .unwrap();
    let l = c.admin_ok(&["ledger", "show", &org]);
    assert_eq!(
        checks(&l["outside"][0]["findings"]),
        [("http.vpn_login".into(), false)]
    );
    assert_eq!(l["equipment"][0]["findings"], json!([]));
    assert_eq!(l["exposure"]["unledgered"], json!([]));
    assert_eq!(l["exposure"]["unknown_connection_points"], 0);
    let fixed: Vec<&str> = l["exposure"]["fixed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(fixed, ["ssh.banner", "rdp.exposed"]);
    let pre = c.admin_ok(&["checksheet", "prefill", &org, "--sheet", "mhlw"]);
    assert_eq!(answer(&pre, "M-2-2").0, "yes", "no unknown point is left");

    // Export keeps the addresses (and only the row's own fields) and reads back.
    for table in ["outside", "equipment"] {
        let out = c.dir.join(format!("{table}-out.csv"));
        c.admin_ok(&[
            "ledger",
            "export",
            &org,
            table,
            "--out",
            out.to_str().unwrap(),
        ]);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("公開アドレス (addresses)"), "{text}");
        assert!(text.contains("192.0.2."), "{text}");
        c.admin_ok(&["ledger", "import", &org, table, out.to_str().unwrap()]);
    }
    let again = c.admin_ok(&["ledger", "show", &org]);
    assert_eq!(again["outside"][0]["row"], l["outside"][0]["row"]);
    assert_eq!(again["equipment"][0]["addresses"], json!(["192.0.2.2"]));
}

#[test]
fn findings_in_the_ledger_sqlite() {
    findings_in_the_ledger(Backend::Sqlite);
}

#[test]
fn findings_in_the_ledger_postgres() {
    findings_in_the_ledger(Backend::Postgres);
}

#[test]
fn diagnose_scope_and_comparison_sqlite() {
    scenario(Backend::Sqlite);
}

#[test]
fn diagnose_scope_and_comparison_postgres() {
    scenario(Backend::Postgres);
}

//! Issue 11 (R-SVC-2) against a real centre on SQLite and PostgreSQL: a known scene
//! gives exactly the expected ledger rows and diagram nodes and edges (the SVG Graphviz
//! drew, parsed); CSV goes in as Shift_JIS and out for Excel; a bad file imports
//! nothing; the PDF renders; 0 and 500 connections draw.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn require_tools() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/setup.sh"))
        .args(["--check", "ledger"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Graphviz and poppler are needed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (class, title) of every node and edge group in a Graphviz SVG.
fn svg_items(svg: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut nodes, mut edges) = (BTreeSet::new(), BTreeSet::new());
    for part in svg.split("<g id=").skip(1) {
        let class = part
            .split("class=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        let Some(title) = part
            .split("<title>")
            .nth(1)
            .and_then(|s| s.split("</title>").next())
        else {
            continue;
        };
        let title = title.replace("&#45;", "-").replace("&gt;", ">");
        match class {
            "node" if !title.starts_with("legend_") => {
                nodes.insert(title);
            }
            "edge" if !title.starts_with("legend_") => {
                edges.insert(title);
            }
            _ => {}
        }
    }
    (nodes, edges)
}

fn diagram(c: &Centre, org: &str, format: &str) -> Vec<u8> {
    let out = c.dir.join(format!("diagram-{org}.{format}"));
    c.admin_ok(&[
        "ledger",
        "diagram",
        org,
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ]);
    std::fs::read(&out).unwrap()
}

fn write(c: &Centre, name: &str, bytes: &[u8]) -> String {
    let p = c.dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

async fn scenario(backend: Backend) {
    require_tools();
    let c = Centre::start(backend);
    let hosp = c.org("中央病院", "hospital");
    let lab = c.org("City Lab", "lab");
    let vendor = c.org("保守ベンダー", "vendor");
    let empty = c.org("Empty Clinic", "clinic");
    let h1 = onboard(&c, &hosp, "LG-H1", "10.41.0.0/24").await;
    let h2 = onboard(&c, &hosp, "LG-H2", "10.1.0.0/24").await;
    let l1 = onboard(&c, &lab, "LG-L1", "10.42.0.0/24").await;
    let v1 = onboard(&c, &vendor, "LG-V1", "10.43.0.0/24").await;
    c.admin_ok(&["group", "create", "G"]);
    for s in [&h1, &h2, &l1, &v1] {
        c.admin_ok(&["group", "add", "G", &s.id]);
    }
    for org in [&lab, &vendor] {
        set_policy(&c, org, &open_policy());
    }
    set_policy(
        &c,
        &hosp,
        &json!({
            "inbound": [
                {"from": format!("org:{vendor}"), "hosts": ["10.1.0.50/32"], "services": ["tcp/22"], "require_approval": true},
                {"from": "*", "services": ["any"]}
            ],
            "outbound": [{"to": "*", "services": ["tcp/443"]}]
        }),
    );
    let g1 = c.admin_ok(&["connection", "apply", "--from", &h1.id, "--to", &l1.id])["outcomes"][0]
        ["grant_id"]
        .clone();
    c.admin_ok(&[
        "approval",
        "open",
        "--approver",
        &hosp,
        "--applicant",
        &vendor,
        "--minutes",
        "60",
    ]);
    let g2 = c.admin_ok(&[
        "connection",
        "apply",
        "--from",
        &v1.id,
        "--to",
        &h2.id,
        "--purpose",
        "給食システムの保守 / meal system maintenance",
    ])["outcomes"][0]["grant_id"]
        .clone();
    let long = "x".repeat(201);
    let e = c
        .admin(&[
            "connection",
            "apply",
            "--from",
            &v1.id,
            "--to",
            &h2.id,
            "--purpose",
            &long,
        ])
        .unwrap_err();
    assert!(
        e.contains("purpose must be 1–200") && e.contains("目的"),
        "{e}"
    );
    // The vendor's agent reports what it runs.
    let sw: Value = v1
        .tier2(&c)
        .put(
            "/api/v1/device/software",
            &json!({"version": "0.1.0", "os": "Debian GNU/Linux 12 (bookworm), linux 6.1"}),
        )
        .await
        .unwrap();
    assert_eq!(sw["version"], "0.1.0");

    // Connections outside dodvpn, typed in Excel and saved as Shift_JIS.
    let outside = "管理番号,種別,契約先,契約番号,機種,ファームウェア版,終端場所,責任者,最終確認日\r\n\
                   X-1,事業者のVPN装置,給食サービス株式会社,K-2019-07,VPN-BOX 3000,2.1.0,栄養科,山田,2020-04-01\r\n\
                   X-2,leased-line,回線事業者,L-1,,,サーバ室,佐藤,2099-01-01\r\n";
    let (sjis, _, lossy) = encoding_rs::SHIFT_JIS.encode(outside);
    assert!(!lossy);
    let f = write(&c, "outside.csv", &sjis);
    c.admin_ok(&["ledger", "import", &hosp, "outside", &f]);
    let eq = "\u{feff}id,category,name,location,owner,model,os_version,remote_maintenance,vendor,last_reviewed\n\
              EQ-1,network,コアスイッチ,B1,情報システム課,RTX1210,Rev.14,有,保守ベンダー,2026-04-01\n";
    let f = write(&c, "equipment.csv", eq.as_bytes());
    c.admin_ok(&["ledger", "import", &hosp, "equipment", &f]);

    // A bad file is named by line and column and imports nothing.
    let bad = "id,kind,contractor,responsible,last_reviewed\nX-9,internet,A,B,2026-01-01\nX-10,fax,A,B,2026-01-01\n";
    let f = write(&c, "bad.csv", bad.as_bytes());
    let e = c
        .admin(&["ledger", "import", &hosp, "outside", &f])
        .unwrap_err();
    assert!(
        e.contains("line 3, column 2") && e.contains("3 行目") && e.contains("fax"),
        "{e}"
    );

    // The ledger: exactly the two grants and the two recorded lines, one overdue.
    let l = c.admin_ok(&["ledger", "show", &hosp]);
    let rows: BTreeSet<(String, String, String, String)> = l["dodvpn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (
                s("device_id"),
                s("peer_device_id"),
                s("direction"),
                s("state"),
            )
        })
        .collect();
    let expect: BTreeSet<_> = [
        (
            h1.id.clone(),
            l1.id.clone(),
            "outbound".to_string(),
            "idle".to_string(),
        ),
        (
            h2.id.clone(),
            v1.id.clone(),
            "inbound".to_string(),
            "window-bound".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(rows, expect, "{l}");
    let vendor_row = l["dodvpn"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["grant_id"] == g2)
        .unwrap();
    assert_eq!(vendor_row["peer_org_name"], "保守ベンダー");
    assert_eq!(
        vendor_row["purpose"],
        "給食システムの保守 / meal system maintenance"
    );
    assert_eq!(
        vendor_row["windows"].as_array().unwrap().len(),
        1,
        "{vendor_row}"
    );
    assert!(
        vendor_row["windows"][0]["not_after_ms"].as_i64().unwrap()
            > vendor_row["windows"][0]["not_before_ms"].as_i64().unwrap()
    );
    assert_eq!(
        vendor_row["approved_by"],
        json!([vendor_row["windows"][0]["opened_by"]])
    );
    assert!(
        vendor_row["approved_by"][0]
            .as_str()
            .unwrap()
            .contains("admin"),
        "{vendor_row}"
    );
    let lab_row = l["dodvpn"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["grant_id"] == g1)
        .unwrap();
    assert!(
        lab_row["purpose"].is_null()
            && lab_row["approved_by"] == json!([])
            && lab_row["windows"] == json!([]),
        "{lab_row}"
    );
    assert_eq!(vendor_row["services"], json!(["tcp/22"]));
    assert_eq!(vendor_row["peer_model"], "DV-100");
    assert!(vendor_row["peer_software"]
        .as_str()
        .unwrap()
        .contains("0.1.0"));
    assert!(
        vendor_row["created_by"].as_str().unwrap().contains("admin"),
        "{vendor_row}"
    );
    let out: Vec<(String, bool)> = l["outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["row"]["id"].as_str().unwrap().into(),
                o["review_overdue"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(out, [("X-1".to_string(), true), ("X-2".to_string(), false)]);
    assert!(l["outside"][0]["note_ja"]
        .as_str()
        .unwrap()
        .contains("DOD-VPN"));
    assert_eq!(l["equipment"][0]["remote_maintenance"], true);
    assert_eq!(l["equipment"][0]["name"], "コアスイッチ");

    // The MHLW sheet's ledger items are pre-filled from this ledger.
    let pre = c.admin_ok(&["checksheet", "prefill", &hosp, "--sheet", "mhlw"]);
    let answer = |item: &str| -> (String, String) {
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
    assert_eq!(
        answer("M-2-1").0,
        "yes",
        "one equipment row, reviewed this year"
    );
    let (v, note) = answer("M-2-2");
    assert_eq!(v, "no");
    assert!(
        note.contains("1 of 2") && note.contains("確認期限切れ"),
        "{note}"
    );
    let (v, note) = answer("M-2-7");
    assert_eq!(v, "no", "the hospital's agents never reported a version");
    assert!(note.contains(&h1.id) && note.contains(&h2.id), "{note}");

    // CSV out for Excel, and back in unchanged.
    let exported = c.dir.join("export.csv");
    c.admin_ok(&[
        "ledger",
        "export",
        &hosp,
        "outside",
        "--out",
        exported.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&exported).unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    c.admin_ok(&[
        "ledger",
        "import",
        &hosp,
        "outside",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(
        c.admin_ok(&["ledger", "show", &hosp])["outside"],
        l["outside"]
    );

    // Other organisations cannot read it.
    let cred = c.dir.join("lab.token");
    c.admin_ok(&["org", "admin", &lab, "--out", cred.to_str().unwrap()]);
    assert!(c
        .admin_as(&cred, &["ledger", "show", &hosp])
        .unwrap_err()
        .contains("own organisation"));
    assert!(c
        .admin_as(&cred, &["ledger", "import", &hosp, "outside", &f])
        .is_err());

    // The diagram: the nodes and edges of the scene, coloured by state.
    let svg = String::from_utf8(diagram(&c, &hosp, "svg")).unwrap();
    let (nodes, edges) = svg_items(&svg);
    let want_nodes: BTreeSet<String> = [&h1.id, &h2.id, &l1.id, &v1.id]
        .iter()
        .map(|s| s.to_string())
        .chain(["outside-X-1".into(), "outside-X-2".into()])
        .collect();
    assert_eq!(nodes, want_nodes);
    // Outside lines hang off the organisation's first device (by id).
    let anchor = h1.id.clone().min(h2.id.clone());
    let want_edges: BTreeSet<String> = [
        format!("{}->{}", h1.id, l1.id),
        format!("{}->{}", h2.id, v1.id),
        format!("{anchor}->outside-X-1"),
        format!("{anchor}->outside-X-2"),
    ]
    .into_iter()
    .collect();
    assert_eq!(edges, want_edges);
    assert!(svg.contains("#cf222e") && svg.contains("#9a6700") && svg.contains("中央病院"));
    let dot = String::from_utf8(diagram(&c, &hosp, "dot")).unwrap();
    assert!(dot.starts_with("digraph"));

    // The PDF renders (pdftoppm to PNG).
    let pdf = diagram(&c, &hosp, "pdf");
    assert!(pdf.starts_with(b"%PDF"));
    let pdf_path = write(&c, "d.pdf", &pdf);
    let png = c.dir.join("d");
    let st = Command::new("pdftoppm")
        .args(["-png", "-singlefile", &pdf_path])
        .arg(&png)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::metadata(png.with_extension("png")).unwrap().len() > 1000);

    // An organisation with nothing, and one with 500 recorded connections, both draw.
    let (n, e) = svg_items(&String::from_utf8(diagram(&c, &empty, "svg")).unwrap());
    assert_eq!((n.len(), e.len()), (1, 0));
    let mut many = String::from("id,kind,contractor,responsible,last_reviewed\n");
    for i in 0..500 {
        many.push_str(&format!("M-{i},internet,ISP {},NOC,2026-01-01\n", i % 20));
    }
    let f = write(&c, "many.csv", many.as_bytes());
    c.admin_ok(&["ledger", "import", &lab, "outside", &f]);
    let (n, e) = svg_items(&String::from_utf8(diagram(&c, &lab, "svg")).unwrap());
    assert_eq!(
        (n.len(), e.len()),
        (502, 501),
        "the lab's device, its hospital peer, 500 outside ends"
    );

    // The provider-wide picture holds every member's devices and every live grant.
    let out = c.dir.join("all.svg");
    c.admin_ok(&["ledger", "diagram", "--all", "--out", out.to_str().unwrap()]);
    let (n, e) = svg_items(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(n.len(), 4);
    assert_eq!(
        e,
        [
            format!("{}->{}", h1.id, l1.id),
            format!("{}->{}", v1.id, h2.id)
        ]
        .into_iter()
        .collect()
    );
    let _ = g1;

    // The inspector's report: HTML, and a PDF that renders.
    submit_failing_sheet(&c, &hosp);
    let report = c.dir.join("report.html");
    c.admin_ok(&[
        "ledger",
        "report",
        &hosp,
        "--format",
        "html",
        "--out",
        report.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&report).unwrap();
    for needle in [
        "中央病院",
        "External connections and security report",
        "給食サービス株式会社",
        "要確認 / overdue",
        "コアスイッチ",
        "<svg",
        "2-2-1",
        "未対応 / not met",
    ] {
        assert!(page.contains(needle), "{needle} missing from the report");
    }
    let report = c.dir.join("report.pdf");
    c.admin_ok(&["ledger", "report", &hosp, "--out", report.to_str().unwrap()]);
    assert!(std::fs::read(&report).unwrap().starts_with(b"%PDF"));
    let png = c.dir.join("report");
    let st = Command::new("pdftoppm")
        .args(["-png", "-singlefile", "-r", "50"])
        .arg(&report)
        .arg(&png)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::metadata(png.with_extension("png")).unwrap().len() > 1000);

    // Every replacement is audited with before → after.
    let actions = audit_actions(&c);
    let (_, d) = actions
        .iter()
        .filter(|(a, _)| a == "ledger.outside_replaced")
        .nth(1)
        .unwrap();
    assert_eq!(d["before"], json!(["X-1", "X-2"]));
    assert!(actions
        .iter()
        .any(|(a, d)| a == "device.software" && d["after"]["version"] == "0.1.0"));
}

/// A small-institution sheet answered "no" throughout, so the report has gaps to show.
fn submit_failing_sheet(c: &Centre, org: &str) {
    let mut body = c.admin_ok(&["checksheet", "prefill", org, "--sheet", "small"]);
    body["answers"] = json!([{"item": "2-2-1", "role": "si", "value": "no", "note": ""}]);
    let f = write(c, "sheet.json", body.to_string().as_bytes());
    c.admin_ok(&["checksheet", "submit", org, &f]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_scene_gives_the_expected_ledger_and_diagram_sqlite() {
    scenario(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_scene_gives_the_expected_ledger_and_diagram_postgres() {
    scenario(Backend::Postgres).await
}

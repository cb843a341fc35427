//! The web console (issue 10, R-OPS-2) in a real browser against a real `dodvpn center`:
//! Debian's Chromium, headless, driven by playwright-core with axe-core (both from npm,
//! pinned in scripts/setup.sh, need `browser`). The script (tests/browser/console.mjs)
//! logs in with password + TOTP, walks every page with axe-core and a screenshot,
//! checks that a clinic's administrator cannot see or change the hospital's devices,
//! sessions or audit records even by typing ids, that a POST without a CSRF token is
//! 403, the lockout, and cuts a live session; this test then checks, outside the
//! browser, that the cut reached both ends' event streams and what the audit says.
//! Screenshots and axe results: target/console-browser/.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use dodvpn_policy::{session_id, SessionEvent, SessionReport};
use serde_json::{json, Value};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn up(sid: &str, peer: &Site, grant: &str) -> SessionReport {
    SessionReport {
        session_id: sid.to_string(),
        event: SessionEvent::Up,
        peer_device_id: peer.id.clone(),
        grant_ids: vec![grant.to_string()],
        bytes_in: 0,
        bytes_out: 0,
        packets_in: 0,
        packets_out: 0,
        at: now() - 5,
        reason: None,
        // Through the provider relay: the console's session list says so (issue 19).
        relay: Some(RELAY.into()),
    }
}

const RELAY: &str = "192.0.2.1:4600";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_login_isolation_csrf_lockout_axe_cut() {
    let out = std::process::Command::new(repo().join("scripts/setup.sh"))
        .args(["--check", "browser"])
        .output()
        .expect("run scripts/setup.sh");
    assert!(
        out.status.success(),
        "the browser tests need Chromium, Node and the npm packages of scripts/setup.sh: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let c = Centre::start(Backend::Sqlite);
    let code_file = c.dir.join("console-setup.code");
    assert!(
        c.stdout_lines
            .iter()
            .any(|l| l.contains(&code_file.display().to_string())),
        "the start-up lines name the setup code file: {:?}",
        c.stdout_lines
    );
    assert_eq!(mode_of(&code_file) & 0o777, 0o600);
    let setup_code = std::fs::read_to_string(&code_file).unwrap();

    // The hospital: two enrolled devices with a grant and a live session between them.
    let hospital = c.org("Central Hospital", "hospital");
    let a = onboard(&c, &hospital, "H-A", "10.1.0.0/24").await;
    let b = onboard(&c, &hospital, "H-B", "10.2.0.0/24").await;
    c.admin_ok(&["group", "create", "G"]);
    for s in [&a, &b] {
        c.admin_ok(&["group", "add", "G", &s.id]);
    }
    set_policy(&c, &hospital, &open_policy());
    let r = c.admin_ok(&["connection", "apply", "--from", &a.id, "--to", &b.id]);
    let grant = r["outcomes"][0]["grant_id"].as_str().unwrap().to_string();
    let sid = session_id(0x1111_2222_3333_4444, 0x5555_6666_7777_8888);
    a.tier2(&c)
        .report_session(&up(&sid, &b, &grant))
        .await
        .unwrap();
    b.tier2(&c)
        .report_session(&up(&sid, &a, &grant))
        .await
        .unwrap();
    let mut rx_a = stream(&a, &c, 0).await;
    let mut rx_b = stream(&b, &c, 0).await;
    next_kind(&mut rx_a, "hello").await;
    next_kind(&mut rx_b, "hello").await;
    // The vendor: the hospital lets it reach its maintenance subnet on ssh and https,
    // only inside a window its approver opens. Its first application waits.
    let vendor = c.org("Vendor", "vendor");
    let v = onboard(&c, &vendor, "V-1", "10.5.0.0/24").await;
    c.admin_ok(&["group", "add", "G", &v.id]);
    set_policy(
        &c,
        &hospital,
        &json!({
            "inbound": [
                {"from": format!("org:{vendor}"), "hosts": ["10.1.0.0/24"], "services": ["tcp/22,443"], "require_approval": true},
                {"from": "*", "services": ["any"]}
            ],
            "outbound": [{"to": "*", "services": ["any"]}]
        }),
    );
    set_policy(
        &c,
        &vendor,
        &json!({"outbound": [{"to": "kind:hospital", "services": ["tcp/22,443"]}]}),
    );
    let vendor_apply = {
        let (client, to) = (v.tier2(&c), a.id.clone());
        move || {
            let (client, to) = (client.clone(), to.clone());
            async move {
                let r: Value = client
                    .post("/api/v1/device/connections", &json!({"to_device": to}))
                    .await
                    .unwrap();
                r["outcomes"][0].clone()
            }
        }
    };
    let o = vendor_apply().await;
    assert_eq!(o["granted"], json!(false), "before a window: {o}");
    // The clinic: one registered device.
    let clinic = c.org("Clinic", "clinic");
    let clinic_dev = register(&c, &clinic, "C-1", "10.9.0.0/24");

    // Once the browser has the sessions page open (it writes a marker file), end A
    // reports its counters every second or so.
    let shots = repo().join("target/console-browser");
    let _ = std::fs::remove_dir_all(&shots);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let updates = {
        let (stop, client, sid, grant, peer) = (
            stop.clone(),
            a.tier2(&c),
            sid.clone(),
            grant.clone(),
            b.id.clone(),
        );
        let marker = shots.join("sessions-page-open");
        tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if !marker.exists() {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                let at = now();
                if at != last {
                    let r = SessionReport {
                        session_id: sid.clone(),
                        event: SessionEvent::Update,
                        peer_device_id: peer.clone(),
                        grant_ids: vec![grant.clone()],
                        bytes_in: 4321,
                        bytes_out: 8765,
                        packets_in: 3,
                        packets_out: 5,
                        at,
                        reason: None,
                        relay: None,
                    };
                    client.report_session(&r).await.expect("update report");
                    last = at;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            }
        })
    };
    // Once the approver has opened the vendor's window in the browser, the vendor applies.
    let vendor_task = {
        let (marker, done, apply) = (
            shots.join("window-opened"),
            shots.join("vendor-granted"),
            vendor_apply.clone(),
        );
        tokio::spawn(async move {
            for _ in 0..1200 {
                if marker.exists() {
                    let o = apply().await;
                    let line = o["grant_id"]
                        .as_str()
                        .map_or_else(|| format!("refused: {o}"), str::to_string);
                    std::fs::write(&done, line).unwrap();
                    return o;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Value::Null
        })
    };
    let tools =
        std::env::var("DODVPN_NODETOOLS").unwrap_or_else(|_| "/opt/dodvpn/nodetools".into());
    let out = tokio::process::Command::new("node")
        .arg(repo().join("crates/cli/tests/browser/console.mjs"))
        .env("DODVPN_NODETOOLS", &tools)
        .env("CONSOLE_URL", &c.url)
        .env("SCREENSHOT_DIR", &shots)
        .env("SETUP_CODE", setup_code.trim())
        .env("HOSPITAL_DEVICE", &a.id)
        .env("CLINIC_DEVICE", &clinic_dev)
        .env("CLINIC_ORG", &clinic)
        .env("HOSPITAL_ORG", &hospital)
        .env("SESSION_ID", &sid)
        .env("SESSION_RELAY", RELAY)
        .env("VENDOR_ORG", &vendor)
        .env("VENDOR_DEVICE", &v.id)
        .output()
        .await
        .expect("run node");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    updates.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no verdict from the browser script; stdout {stdout}; stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(
        verdict["ok"],
        json!(true),
        "browser checks failed: {:#}",
        verdict["failures"]
    );
    assert!(out.status.success());
    let passed = verdict["checks"].as_array().unwrap();
    assert!(
        passed.len() >= 40,
        "only {} checks ran: {passed:?}",
        passed.len()
    );
    let pngs = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert!(pngs >= 15, "{pngs} screenshots");

    // The cut made in the browser reached both ends' event streams.
    for (rx, peer) in [(&mut rx_a, &b), (&mut rx_b, &a)] {
        let e = next_kind(rx, "session_cut").await;
        assert_eq!(e["payload"]["session_id"], json!(sid));
        assert_eq!(e["payload"]["peer_device_id"], json!(peer.id));
        assert_eq!(e["payload"]["reason"], json!("cut from the console"));
    }
    // What the audit says: logins with both factors, the lockout, the cut by a console
    // user, refusals of the clinic's attempts; the hospital's device is not revoked.
    let trail = audit_actions(&c);
    let count = |a: &str| trail.iter().filter(|(x, _)| x == a).count();
    // root and clinic with TOTP; approver and auditor with TOTP, the approver again
    // with its passkey.
    assert_eq!(count("console.login"), 5, "{trail:?}");
    assert!(count("console.login.failed") >= 5);
    assert_eq!(count("console.login.locked"), 1);
    let cut = trail.iter().find(|(x, _)| x == "session.cut").unwrap();
    assert_eq!(cut.1["reason"], json!("cut from the console"));
    assert!(!trail.iter().any(|(x, _)| x == "device.revoked"));
    // The ledger edits and the sheet made in the browser: added, edited, changed from
    // a second page, deleted; the refused and the stale saves wrote nothing.
    assert_eq!(count("ledger.outside_replaced"), 4, "{trail:?}");
    assert_eq!(count("checksheet.submitted"), 1);
    assert_eq!(count("approval.opened"), 2);
    assert_eq!(count("approval.closed"), 2);
    // The vendor's window, opened and closed by the hospital's approver: granted inside
    // it with only the contract, withdrawn when it closed.
    let vo = vendor_task.await.unwrap();
    assert_eq!(vo["granted"], json!(true), "{vo}");
    let vg = c.admin_ok(&["grant", "show", vo["grant_id"].as_str().unwrap()]);
    assert_eq!(vg["grant"]["status"], json!("withdrawn"), "{vg}");
    assert_eq!(
        vg["applicant_connection_info"]["info"]["traffic_selectors"]["remote"],
        json!(["10.1.0.50/32"])
    );
    // Passkeys: two registered, one login with the passkey alone, the other user's
    // passkey refused and counted as a failure.
    assert_eq!(count("console.factor.passkey_added"), 2, "{trail:?}");
    assert!(trail
        .iter()
        .any(|(x, d)| x == "console.login" && d["factors"] == json!(["passkey"])));
    assert!(trail
        .iter()
        .any(|(x, d)| x == "console.login.failed" && d["factor"] == json!("passkey")));
    // `dodvpn admin user …` sees what the pages made, and disables like the page.
    let users = c.admin_ok(&["user", "list"]);
    let find = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == json!(name))
            .unwrap_or_else(|| panic!("{name} in {users}"))
            .clone()
    };
    assert_eq!(find("hosp-approver")["passkeys"], json!(1));
    assert_eq!(find("hosp-approver")["role"], json!("org_approver"));
    let auditor = find("hosp-auditor");
    let off = c.admin_ok(&["user", "disable", auditor["id"].as_str().unwrap()]);
    assert!(off["disabled_ms"].is_i64(), "{off}");
    // The gateway application made by the approver and approved by the provider.
    assert_eq!(count("gateway.applied"), 1, "{trail:?}");
    assert_eq!(count("gateway.approved"), 1, "{trail:?}");
    let dev = c.admin_ok(&["device", "show", &a.id]);
    assert_eq!(dev["status"], json!("in_service"));
}

//! Issue 10 in the centre, through the real CLI and a device's mutual TLS, on SQLite and
//! PostgreSQL: maintenance windows with a start, an end and a contracted host and port,
//! the approver's inbox of waiting vendors, the vendor warned before its window ends and
//! cut when it does; the policy dry run; console accounts over the API.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::{json, Value};

both_backends!(maintenance_windows_contract_warning_and_end);
both_backends!(policy_dry_run_lists_changes_and_stores_nothing);
both_backends!(console_accounts_through_the_api);

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn org_admin(c: &Centre, org: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    c.admin_ok(&["org", "admin", org, "--out", f.path().to_str().unwrap()]);
    f
}

async fn maintenance_windows_contract_warning_and_end(b: Backend) {
    let c = Centre::start(b);
    let hosp = c.org("Hospital", "hospital");
    let vendor = c.org("Vendor", "vendor");
    let clinic = c.org("Clinic", "clinic");
    let h = onboard(&c, &hosp, "H1", "10.1.0.0/24").await;
    let vd = onboard(&c, &vendor, "V1", "10.5.0.0/24").await;
    c.admin_ok(&["group", "create", "M"]);
    for d in [&h.id, &vd.id] {
        c.admin_ok(&["group", "add", "M", d]);
    }
    // The hospital's rule would let the vendor reach its whole maintenance subnet on
    // ssh and https, but only inside a window it opens.
    set_policy(
        &c,
        &hosp,
        &json!({"inbound": [{"from": format!("org:{vendor}"), "hosts": ["10.1.0.0/24"], "services": ["tcp/22,443"], "require_approval": true}]}),
    );
    set_policy(
        &c,
        &vendor,
        &json!({"outbound": [{"to": "kind:hospital", "services": ["tcp/22,443"]}]}),
    );
    let hosp_cred = org_admin(&c, &hosp);
    let clinic_cred = org_admin(&c, &clinic);

    // The vendor asks before any window: refused, and waiting in the hospital's inbox.
    let apply = || async {
        let r: Value = vd
            .tier2(&c)
            .post("/api/v1/device/connections", &json!({"to_device": h.id}))
            .await
            .unwrap();
        r["outcomes"][0].clone()
    };
    let o = apply().await;
    assert_eq!(o["granted"], json!(false), "{o}");
    let waiting = c
        .admin_as(hosp_cred.path(), &["approval", "requests"])
        .unwrap();
    let w = waiting.as_array().unwrap();
    assert_eq!(w.len(), 1, "{waiting}");
    assert_eq!(w[0]["applicant_device"], json!(vd.id));
    assert_eq!(w[0]["target_device"], json!(h.id));
    assert_eq!(w[0]["applicant_org"], json!(vendor));
    // Another organisation's administrator sees none of it.
    let other = c
        .admin_as(clinic_cred.path(), &["approval", "requests"])
        .unwrap();
    assert_eq!(other, json!([]), "the clinic sees no hospital request");

    // Bad windows are refused with their reason, and open nothing.
    let now = SystemTime::now();
    let base = [
        "approval",
        "open",
        "--approver",
        &hosp,
        "--applicant",
        &vendor,
    ];
    for (extra, why) in [
        (
            vec![
                "--start".to_string(),
                rfc3339(now + Duration::from_secs(3600)),
                "--end".into(),
                rfc3339(now + Duration::from_secs(1800)),
            ],
            "end before start",
        ),
        (
            vec![
                "--end".to_string(),
                rfc3339(now + Duration::from_secs(25 * 3600)),
            ],
            "longer than 24 hours",
        ),
        (
            vec![
                "--start".to_string(),
                rfc3339(now + Duration::from_secs(100 * 86400)),
                "--end".into(),
                rfc3339(now + Duration::from_secs(100 * 86400 + 60)),
            ],
            "more than 90 days ahead",
        ),
        (
            vec![
                "--minutes".to_string(),
                "10".into(),
                "--host".into(),
                "not-an-address".into(),
            ],
            "a host that is no address",
        ),
        (
            vec![
                "--minutes".to_string(),
                "10".into(),
                "--service".into(),
                "tcp/99999".into(),
            ],
            "a port out of range",
        ),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra.iter().map(String::as_str));
        let r = c.admin_as(hosp_cred.path(), &args);
        assert!(r.is_err(), "{why} is refused: {r:?}");
    }
    assert_eq!(
        c.admin_as(hosp_cred.path(), &["approval", "list"]).unwrap(),
        json!([]),
        "no refused window was stored"
    );
    // The clinic cannot open the hospital's door.
    assert!(c
        .admin_as(
            clinic_cred.path(),
            &[
                "approval",
                "open",
                "--approver",
                &hosp,
                "--applicant",
                &vendor,
                "--minutes",
                "5"
            ]
        )
        .is_err());

    // A 20-second window on one host and one port: the vendor's application succeeds
    // and carries only the contract.
    let mut events = stream(&vd, &c, 0).await;
    let end = now + Duration::from_secs(20);
    let mut args: Vec<&str> = base.to_vec();
    let end_s = rfc3339(end);
    args.extend([
        "--end",
        &end_s,
        "--host",
        "10.1.0.50",
        "--service",
        "tcp/22",
    ]);
    let appr = c.admin_as(hosp_cred.path(), &args).unwrap();
    assert_eq!(appr["hosts"], json!(["10.1.0.50/32"]), "{appr}");
    assert_eq!(appr["services"], json!(["tcp/22"]), "{appr}");
    assert!(
        appr["opened_by"].as_str().unwrap().contains(&hosp),
        "{appr}"
    );
    let o = apply().await;
    assert_eq!(o["granted"], json!(true), "{o}");
    let grant_id = o["grant_id"].as_str().unwrap().to_string();
    let st: Value = vd.tier2(&c).get("/api/v1/device/state").await.unwrap();
    let info = st["connection_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["info"]["grant_id"] == json!(grant_id))
        .unwrap()
        .clone();
    assert_eq!(
        info["info"]["traffic_selectors"]["remote"],
        json!(["10.1.0.50/32"])
    );
    assert_eq!(info["info"]["services"], json!(["tcp/22"]));
    assert_eq!(
        c.admin_as(hosp_cred.path(), &["approval", "requests"])
            .unwrap(),
        json!([]),
        "a granted application leaves the inbox"
    );

    // Before the end, the vendor's device is warned on its event stream; at the end
    // the grant is withdrawn (both ends drop the tunnels).
    let warned = next_kind_within(&mut events, "approval_ending", 25).await;
    assert_eq!(warned["payload"]["approval"], appr["id"], "{warned}");
    let left = warned["payload"]["seconds_left"].as_i64().unwrap();
    assert!((1..=10).contains(&left), "warned {left} s before the end");
    let gone = next_kind_within(&mut events, "grant_withdrawn", 25).await;
    assert_eq!(gone["payload"]["grant_id"], json!(grant_id), "{gone}");
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert!(
        secs(SystemTime::now()) >= secs(end),
        "withdrawn at the end of the window (whole seconds), not before"
    );
    let o = apply().await;
    assert_eq!(
        o["granted"],
        json!(false),
        "after the window: refused again {o}"
    );

    // A window closed early cuts at once.
    let appr2 = c
        .admin_as(
            hosp_cred.path(),
            &[
                "approval",
                "open",
                "--approver",
                &hosp,
                "--applicant",
                &vendor,
                "--minutes",
                "30",
            ],
        )
        .unwrap();
    let o = apply().await;
    assert_eq!(o["granted"], json!(true), "{o}");
    let g2 = o["grant_id"].as_str().unwrap().to_string();
    c.admin_as(
        hosp_cred.path(),
        &["approval", "close", appr2["id"].as_str().unwrap()],
    )
    .unwrap();
    let gone = next_kind_within(&mut events, "grant_withdrawn", 10).await;
    assert_eq!(gone["payload"]["grant_id"], json!(g2));

    let actions: Vec<(String, Value)> = audit_actions(&c);
    for a in [
        "approval.opened",
        "approval.ending",
        "approval.expired",
        "approval.closed",
        "connection.withdrawn",
    ] {
        assert!(actions.iter().any(|(x, _)| x == a), "audit has {a}");
    }
    let opened = actions
        .iter()
        .find(|(a, d)| a == "approval.opened" && d["hosts"] == json!(["10.1.0.50/32"]))
        .expect("the contract is in the audit record");
    assert_eq!(opened.1["services"], json!(["tcp/22"]));
}

async fn next_kind_within(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    kind: &str,
    secs: u64,
) -> Value {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let v = tokio::time::timeout_at(until, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within {secs} s"))
            .expect("stream ended");
        if v["kind"] == json!(kind) {
            return v;
        }
    }
}

async fn policy_dry_run_lists_changes_and_stores_nothing(b: Backend) {
    let c = Centre::start(b);
    let hosp = c.org("Hospital", "hospital");
    let clinic = c.org("Clinic", "clinic");
    let lab = c.org("Lab", "lab");
    let h = onboard(&c, &hosp, "H1", "10.1.0.0/24").await;
    let cl = onboard(&c, &clinic, "C1", "10.2.0.0/24").await;
    let lb = onboard(&c, &lab, "L1", "10.4.0.0/24").await;
    c.admin_ok(&["group", "create", "B"]);
    for d in [&h.id, &cl.id, &lb.id] {
        c.admin_ok(&["group", "add", "B", d]);
    }
    let hosp_policy = json!({
        "inbound": [{"from": "kind:clinic", "services": ["tcp/443,104"]}],
        "outbound": [{"to": "*", "services": ["any"]}]
    });
    set_policy(&c, &hosp, &hosp_policy);
    for org in [&clinic, &lab] {
        set_policy(&c, org, &open_policy());
    }
    let r = c.admin_ok(&["connection", "apply", "--from", &cl.id, "--to", &h.id]);
    let grant = r["outcomes"][0]["grant_id"].as_str().unwrap().to_string();
    // The lab is refused: the hospital accepts only clinics.
    let r = c.admin_refused(&["connection", "apply", "--from", &lb.id, "--to", &h.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(false));

    // The refusal is listed for the organisations at either end, with its reason.
    let refused = c
        .admin_as(org_admin(&c, &hosp).path(), &["connection", "refused"])
        .unwrap();
    assert_eq!(refused.as_array().unwrap().len(), 1, "{refused}");
    assert_eq!(refused[0]["applicant_device"], json!(lb.id));
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("policy"),
        "{refused}"
    );
    let seen_by_clinic = c
        .admin_as(org_admin(&c, &clinic).path(), &["connection", "refused"])
        .unwrap();
    assert_eq!(seen_by_clinic, json!([]), "the clinic is at neither end");
    let dry = |doc: Value| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), doc.to_string()).unwrap();
        c.admin(&[
            "policy",
            "dry-run",
            &hosp,
            "--file",
            f.path().to_str().unwrap(),
        ])
    };
    let before_audit = audit_actions(&c).len();
    let before_policy = c.admin_ok(&["policy", "show", &hosp]);
    let before_grants = c.admin_ok(&["grant", "list", "--status", "active"]);

    // Narrower: clinics on 443 only; and the lab accepted on 443.
    let d = dry(json!({"inbound": [
        {"from": "kind:clinic", "services": ["tcp/443"]},
        {"from": "kind:lab", "services": ["tcp/443"]}
    ]}))
    .unwrap();
    assert_eq!(d["narrowed"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["narrowed"][0]["grant_id"], json!(grant));
    assert_eq!(
        d["narrowed"][0]["services_after"],
        json!(["tcp/443"]),
        "{d}"
    );
    assert_eq!(d["added"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["added"][0]["applicant_device"], json!(lb.id));
    assert_eq!(d["added"][0]["target_device"], json!(h.id));
    assert_eq!(d["withdrawn"], json!([]));
    // Nothing accepted: the clinic's grant would go, with the reason.
    let d = dry(json!({"inbound": []})).unwrap();
    assert_eq!(d["withdrawn"].as_array().unwrap().len(), 1, "{d}");
    assert!(
        d["withdrawn"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("policy"),
        "{d}"
    );
    // Wider: every service for clinics.
    let d = dry(json!({"inbound": [{"from": "kind:clinic", "services": ["any"]}]})).unwrap();
    assert_eq!(d["widened"].as_array().unwrap().len(), 1, "{d}");
    // The same policy: nothing changes.
    let d = dry(hosp_policy.clone()).unwrap();
    assert_eq!(d["unchanged"], json!(1), "{d}");
    // An invalid document is refused with its reason.
    let bad = dry(json!({"inbound": [{"from": "kind:clinic", "services": ["tcp/70000"]}]}));
    assert!(bad.is_err(), "{bad:?}");
    let bad = dry(json!({"inbound": [{"form": "kind:clinic"}]}));
    assert!(bad.unwrap_err().contains("form"), "names the unknown field");

    // Nothing was stored, audited or re-issued.
    assert_eq!(c.admin_ok(&["policy", "show", &hosp]), before_policy);
    assert_eq!(
        c.admin_ok(&["grant", "list", "--status", "active"]),
        before_grants
    );
    assert_eq!(
        audit_actions(&c).len(),
        before_audit,
        "a dry run writes no audit record"
    );
    // Another organisation cannot dry-run the hospital's policy.
    let clinic_cred = org_admin(&c, &clinic);
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "{}").unwrap();
    assert!(c
        .admin_as(
            clinic_cred.path(),
            &[
                "policy",
                "dry-run",
                &hosp,
                "--file",
                f.path().to_str().unwrap()
            ]
        )
        .is_err());
}

async fn console_accounts_through_the_api(b: Backend) {
    let c = Centre::start(b);
    let hosp = c.org("Hospital", "hospital");
    let clinic = c.org("Clinic", "clinic");
    let hosp_cred = org_admin(&c, &hosp);
    // The provider hands out any role, in the right scope.
    let inv = c.admin_ok(&["user", "invite", "--role", "provider_operator"]);
    assert!(
        inv["code"].as_str().unwrap().starts_with("dodvpn-invite."),
        "{inv}"
    );
    assert_eq!(inv["org_id"], Value::Null);
    let inv = c.admin_ok(&["user", "invite", "--role", "org_approver", "--org", &hosp]);
    assert_eq!(inv["org_id"], json!(hosp));
    for (args, why) in [
        (
            vec!["user", "invite", "--role", "org_admin"],
            "an organisation role without its organisation",
        ),
        (
            vec!["user", "invite", "--role", "provider_admin", "--org", &hosp],
            "a provider role inside an organisation",
        ),
        (
            vec!["user", "invite", "--role", "superuser"],
            "an unknown role",
        ),
        (
            vec![
                "user",
                "invite",
                "--role",
                "org_admin",
                "--org",
                "org-missing",
            ],
            "an unknown organisation",
        ),
    ] {
        assert!(c.admin(&args).is_err(), "{why} is refused");
    }
    // An organisation's administrator: its own organisation, its own roles only.
    let ok = c
        .admin_as(
            hosp_cred.path(),
            &["user", "invite", "--role", "org_approver", "--org", &hosp],
        )
        .unwrap();
    assert_eq!(ok["role"], json!("org_approver"));
    for args in [
        vec!["user", "invite", "--role", "org_admin", "--org", &clinic],
        vec!["user", "invite", "--role", "provider_admin"],
        vec![
            "user",
            "invite",
            "--role",
            "device_provider",
            "--org",
            &hosp,
        ],
    ] {
        let r = c.admin_as(hosp_cred.path(), &args);
        assert!(r.is_err(), "{args:?} refused: {r:?}");
    }
    assert_eq!(
        c.admin_as(hosp_cred.path(), &["user", "list"]).unwrap(),
        json!([])
    );
    assert!(c.admin(&["user", "disable", "usr-missing"]).is_err());
    let invited: Vec<Value> = audit_actions(&c)
        .into_iter()
        .filter(|(a, _)| a == "console.user.invited")
        .map(|(_, d)| d)
        .collect();
    // The first provider admin's invitation (written at start-up) and the three above.
    assert_eq!(invited.len(), 4, "{invited:?}");
    assert!(
        !serde_json::to_string(&invited)
            .unwrap()
            .contains("dodvpn-invite."),
        "no invitation code in the audit log"
    );
}

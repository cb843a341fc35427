//! Three-point audit (R-AUD-2, TR A.1 c): both ends of a tunnel report it up, its
//! counters and its end to the centre under one session id (the IKE SA's SPI pair);
//! every report is an audit record; the operator sees both ends side by side and can
//! cut a session, which reaches both devices' event streams. On SQLite and on a real
//! PostgreSQL server.

mod common;

use common::*;
use dodvpn_policy::{session_id, SessionEvent, SessionReport};
use serde_json::{json, Value};

both_backends!(both_ends_report_under_one_session_id);
both_backends!(cut_reaches_both_ends_and_is_audited);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Three devices in one group with an open policy; a grant from a to b. x is in the
/// same group but holds no grant with either.
async fn setup(c: &Centre) -> (Site, Site, Site, String) {
    let org = c.org("Hospital", "hospital");
    let a = onboard(c, &org, "S-A", "10.1.0.0/24").await;
    let b = onboard(c, &org, "S-B", "10.2.0.0/24").await;
    let x = onboard(c, &org, "S-X", "10.3.0.0/24").await;
    c.admin_ok(&["group", "create", "G"]);
    for s in [&a, &b, &x] {
        c.admin_ok(&["group", "add", "G", &s.id]);
    }
    set_policy(c, &org, &open_policy());
    let r = c.admin_ok(&["connection", "apply", "--from", &a.id, "--to", &b.id]);
    let grant = r["outcomes"][0]["grant_id"].as_str().unwrap().to_string();
    (a, b, x, grant)
}

#[allow(clippy::too_many_arguments)]
fn report(
    sid: &str,
    event: SessionEvent,
    peer: &Site,
    grants: &[&str],
    bytes: (u64, u64),
    packets: (u64, u64),
    at: i64,
    reason: Option<&str>,
) -> SessionReport {
    SessionReport {
        session_id: sid.to_string(),
        event,
        peer_device_id: peer.id.clone(),
        grant_ids: grants.iter().map(|g| g.to_string()).collect(),
        bytes_in: bytes.0,
        bytes_out: bytes.1,
        packets_in: packets.0,
        packets_out: packets.1,
        at,
        reason: reason.map(str::to_string),
        relay: None,
    }
}

/// POST a raw body as `site`; (status, JSON answer).
async fn post_raw(site: &Site, c: &Centre, body: &str) -> (u16, Value) {
    let resp = site
        .tier2(c)
        .request(reqwest::Method::POST, "/api/v1/device/sessions")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(site: &Site, c: &Centre, r: &SessionReport) -> (u16, Value) {
    post_raw(site, c, &serde_json::to_string(r).unwrap()).await
}

/// Audit records about one session, in order: (action, details).
fn session_audit(c: &Centre, sid: &str) -> Vec<(String, Value)> {
    c.admin_ok(&["audit", "list", "--limit", "10000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["subject"] == json!(sid))
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["details"].clone(),
            )
        })
        .collect()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

async fn both_ends_report_under_one_session_id(backend: Backend) {
    let c = Centre::start(backend);
    let (a, b, x, grant) = setup(&c).await;
    // a initiated the IKE SA; both ends know both SPIs and compute the same id.
    let sid = session_id(0x1111_2222_3333_4444, 0x5555_6666_7777_8888);
    assert_eq!(sid, "1111222233334444-5555666677778888");
    let t = now() - 100;
    let g = [grant.as_str()];

    // Up from both ends, through the agent library.
    a.tier2(&c)
        .report_session(&report(
            &sid,
            SessionEvent::Up,
            &b,
            &g,
            (0, 0),
            (0, 0),
            t,
            None,
        ))
        .await
        .unwrap();
    b.tier2(&c)
        .report_session(&report(
            &sid,
            SessionEvent::Up,
            &a,
            &g,
            (0, 0),
            (0, 0),
            t,
            None,
        ))
        .await
        .unwrap();
    let live = c.admin_ok(&["session", "list"]);
    assert_eq!(ids(&live), vec![sid.clone()]);
    assert_eq!(live[0]["status"], json!("up"));
    assert_eq!(live[0]["grant_ids"], json!([grant]));

    // Counters while up; a's out is b's in.
    let ua = report(
        &sid,
        SessionEvent::Update,
        &b,
        &g,
        (700, 1000),
        (7, 10),
        t + 30,
        None,
    );
    assert_eq!(post(&a, &c, &ua).await.0, 201);
    let ub = report(
        &sid,
        SessionEvent::Update,
        &a,
        &g,
        (1000, 700),
        (10, 7),
        t + 31,
        None,
    );
    assert_eq!(post(&b, &c, &ub).await.0, 201);

    // A duplicate is accepted and recorded once; the same key with other counters is refused.
    let (st, v) = post(&a, &c, &ua).await;
    assert_eq!((st, &v["recorded"]), (200, &json!(false)), "{v}");
    let mut forged = ua.clone();
    forged.bytes_out = 1;
    let (st, v) = post(&a, &c, &forged).await;
    assert_eq!((st, v["error"].as_str()), (409, Some("conflicting_report")));

    // A device that holds no grant with b cannot report about it, nor about a's grant.
    let (st, v) = post(
        &x,
        &c,
        &report(&sid, SessionEvent::Up, &b, &g, (0, 0), (0, 0), t, None),
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (403, Some("not_party")), "{v}");
    let (st, v) = post(
        &x,
        &c,
        &report(&sid, SessionEvent::Up, &a, &g, (0, 0), (0, 0), t, None),
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (403, Some("not_party")), "{v}");
    // …nor can a party name another peer, or a grant that does not exist.
    let (st, v) = post(
        &a,
        &c,
        &report(&sid, SessionEvent::Up, &x, &g, (0, 0), (0, 0), t, None),
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (403, Some("not_party")), "{v}");
    let (st, v) = post(
        &a,
        &c,
        &report(
            &sid,
            SessionEvent::Up,
            &b,
            &["grant-000000000000"],
            (0, 0),
            (0, 0),
            t,
            None,
        ),
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (403, Some("not_party")), "{v}");

    // The grant is withdrawn: the ends still report the tunnel's end (recently withdrawn).
    c.admin_ok(&["grant", "withdraw", &grant, "--reason", "maintenance over"]);
    let da = report(
        &sid,
        SessionEvent::Down,
        &b,
        &g,
        (900, 1200),
        (9, 12),
        t + 60,
        Some("grant withdrawn"),
    );
    a.tier2(&c).report_session(&da).await.unwrap();
    let db = report(
        &sid,
        SessionEvent::Down,
        &a,
        &g,
        (1200, 900),
        (12, 9),
        t + 60,
        Some("deleted by peer"),
    );
    b.tier2(&c).report_session(&db).await.unwrap();
    // Retried after a lost answer: still recorded once.
    b.tier2(&c).report_session(&db).await.unwrap();

    // Down sessions leave the default list and stay in --all.
    assert!(ids(&c.admin_ok(&["session", "list"])).is_empty());
    assert_eq!(
        ids(&c.admin_ok(&["session", "list", "--all"])),
        vec![sid.clone()]
    );
    assert_eq!(
        ids(&c.admin_ok(&["session", "list", "--all", "--device", &x.id])),
        Vec::<String>::new()
    );

    // The audit trail holds every report once, under the one session id, from both ends.
    let trail = session_audit(&c, &sid);
    let seen: Vec<(String, String)> = trail
        .iter()
        .map(|(act, d)| (act.clone(), d["reporter"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("session.up".to_string(), a.id.clone()),
            ("session.up".to_string(), b.id.clone()),
            ("session.update".to_string(), a.id.clone()),
            ("session.update".to_string(), b.id.clone()),
            ("session.down".to_string(), a.id.clone()),
            ("session.down".to_string(), b.id.clone()),
        ]
    );
    for (_, d) in &trail {
        assert_eq!(d["grants"], json!([grant]));
        assert!(d["peer"] == json!(a.id) || d["peer"] == json!(b.id));
    }
    let last = &trail[5].1;
    assert_eq!(
        (
            &last["bytes_in"],
            &last["bytes_out"],
            &last["packets_in"],
            &last["packets_out"]
        ),
        (&json!(1200), &json!(900), &json!(12), &json!(9))
    );
    assert_eq!(last["reason"], json!("deleted by peer"));
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());

    // The operator sees both ends side by side.
    let show = c.admin_ok(&["session", "show", &sid]);
    assert_eq!(show["status"], json!("down"));
    let ends = show["ends"].as_array().unwrap();
    assert_eq!(ends.len(), 2);
    let end = |id: &str| {
        ends.iter()
            .find(|e| e["device_id"] == json!(id))
            .unwrap()
            .clone()
    };
    let (ea, eb) = (end(&a.id), end(&b.id));
    assert_eq!(
        (ea["reports"].as_i64(), eb["reports"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!((&ea["up_at"], &ea["down_at"]), (&json!(t), &json!(t + 60)));
    assert_eq!(ea["bytes_out"], eb["bytes_in"]);
    assert_eq!(ea["bytes_in"], eb["bytes_out"]);
    assert_eq!(eb["reason"], json!("deleted by peer"));
    assert_eq!(show["reports"].as_array().unwrap().len(), 6);
    // The human form names both ends too.
    let out = std::process::Command::new(BIN)
        .args(["admin", "--center", &c.url])
        .arg("--ca")
        .arg(c.ca_path())
        .arg("--credential-file")
        .arg(c.credential_path())
        .args(["session", "show", &sid])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("ends:") && text.contains(&a.id) && text.contains(&b.id),
        "{text}"
    );

    // Another organisation's administrator sees none of it; the own one does.
    let other = c.org("Lab", "lab");
    let cred = tempfile::NamedTempFile::new().unwrap();
    c.admin_ok(&[
        "org",
        "admin",
        &other,
        "--out",
        cred.path().to_str().unwrap(),
    ]);
    let listed = c
        .admin_as(cred.path(), &["session", "list", "--all"])
        .unwrap();
    assert!(ids(&listed).is_empty());
    let e = c
        .admin_as(cred.path(), &["session", "show", &sid])
        .unwrap_err();
    assert!(e.contains("404"), "{e}");
    let e = c
        .admin_as(cred.path(), &["session", "cut", &sid])
        .unwrap_err();
    assert!(e.contains("404"), "{e}");
    let own = tempfile::NamedTempFile::new().unwrap();
    c.admin_ok(&[
        "org",
        "admin",
        &a.org,
        "--out",
        own.path().to_str().unwrap(),
    ]);
    let listed = c
        .admin_as(own.path(), &["session", "list", "--all"])
        .unwrap();
    assert_eq!(ids(&listed), vec![sid.clone()]);

    // Unknown ids: a clear 404, well formed or not.
    for bad in ["0000000000000001-0000000000000002", "nope"] {
        let e = c.admin(&["session", "show", bad]).unwrap_err();
        assert!(e.contains("404") && e.contains("no session"), "{e}");
        let e = c.admin(&["session", "cut", bad]).unwrap_err();
        assert!(e.contains("404") && e.contains("no session"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_reports_are_refused_with_clear_codes() {
    let c = Centre::start(Backend::Sqlite);
    let (a, b, _x, grant) = setup(&c).await;
    let sid = session_id(0xabc, 0xdef);
    let good = report(
        &sid,
        SessionEvent::Up,
        &b,
        &[&grant],
        (0, 0),
        (0, 0),
        now(),
        None,
    );
    let gv = serde_json::to_value(&good).unwrap();
    let with = |k: &str, v: Value| {
        let mut x = gv.clone();
        x[k] = v;
        x.to_string()
    };
    let many: Vec<String> = (0..65).map(|i| format!("grant-{i}")).collect();
    let cases: Vec<(String, u16, &str)> = vec![
        ("not json".into(), 400, "invalid_body"),
        ("{}".into(), 422, "invalid_body"),
        (with("extra", json!(1)), 422, "invalid_body"),
        (with("event", json!("sideways")), 422, "invalid_body"),
        (with("bytes_in", json!(-1)), 422, "invalid_body"),
        (with("at", json!("yesterday")), 422, "invalid_body"),
        (
            with("session_id", json!("ABC-DEF")),
            400,
            "invalid_session_id",
        ),
        (
            with("session_id", json!("0000000000000000-0000000000000def")),
            400,
            "invalid_session_id",
        ),
        (
            with("session_id", json!(format!("{sid}-x"))),
            400,
            "invalid_session_id",
        ),
        (with("peer_device_id", json!(a.id)), 400, "invalid_peer"),
        (
            with("peer_device_id", json!("../../etc")),
            400,
            "invalid_peer",
        ),
        (with("grant_ids", json!([])), 400, "invalid_grants"),
        (with("grant_ids", json!(many)), 400, "invalid_grants"),
        (
            with("grant_ids", json!([grant, grant])),
            400,
            "invalid_grants",
        ),
        (with("bytes_out", json!(u64::MAX)), 400, "invalid_counter"),
        (with("reason", json!("why not")), 400, "invalid_reason"),
        (with("at", json!(now() + 3600)), 400, "invalid_time"),
        (with("at", json!(now() - 40 * 86400)), 400, "stale_report"),
        (with("at", json!(0)), 400, "invalid_time"),
    ];
    for (body, status, code) in &cases {
        let (st, v) = post_raw(&a, &c, body).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (*status, Some(*code)),
            "body {body}: {v}"
        );
    }
    // Oversized: refused before it is parsed.
    let huge = with("reason", json!("x".repeat(100_000)));
    assert_eq!(post_raw(&a, &c, &huge).await.0, 413);
    // Only a service certificate may report; an administrator may not.
    let resp = a
        .tier1(&c)
        .request(reqwest::Method::POST, "/api/v1/device/sessions")
        .json(&gv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = c
        .client()
        .request(reqwest::Method::POST, "/api/v1/device/sessions")
        .json(&gv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Nothing above was recorded; the good report is.
    assert!(session_audit(&c, &sid).is_empty());
    assert_eq!(post(&a, &c, &good).await.0, 201);
    assert_eq!(session_audit(&c, &sid).len(), 1);
}

async fn cut_reaches_both_ends_and_is_audited(backend: Backend) {
    let c = Centre::start(backend);
    let (a, b, _x, grant) = setup(&c).await;
    let sid = session_id(0x0102_0304_0506_0708, 0x0a0b_0c0d_0e0f_1011);
    let t = now() - 10;
    let g = [grant.as_str()];
    a.tier2(&c)
        .report_session(&report(
            &sid,
            SessionEvent::Up,
            &b,
            &g,
            (0, 0),
            (0, 0),
            t,
            None,
        ))
        .await
        .unwrap();
    b.tier2(&c)
        .report_session(&report(
            &sid,
            SessionEvent::Up,
            &a,
            &g,
            (0, 0),
            (0, 0),
            t,
            None,
        ))
        .await
        .unwrap();
    let mut rx_a = stream(&a, &c, 0).await;
    let mut rx_b = stream(&b, &c, 0).await;
    next_kind(&mut rx_a, "hello").await;
    next_kind(&mut rx_b, "hello").await;

    let v = c.admin_ok(&["session", "cut", &sid, "--reason", "suspicious traffic"]);
    assert_eq!(v["cut_reason"], json!("suspicious traffic"));
    assert!(v["cut_ms"].as_i64().is_some());

    // Both devices get it on their event stream, each told who the other end is.
    for (rx, peer) in [(&mut rx_a, &b), (&mut rx_b, &a)] {
        let e = next_kind(rx, "session_cut").await;
        assert_eq!(
            e["payload"],
            json!({"session_id": sid, "peer_device_id": peer.id, "grant_ids": [grant], "reason": "suspicious traffic"})
        );
    }
    let trail = session_audit(&c, &sid);
    let (act, d) = trail.last().unwrap();
    assert_eq!(act, "session.cut");
    assert_eq!(d["reason"], json!("suspicious traffic"));
    assert_eq!(d["grants"], json!([grant]));
    let mut devices: Vec<String> = d["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    devices.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(devices, want);

    // Until the ends confirm, the cut session is still listed as live (so an operator
    // sees a cut that did not take); once they report down it is gone.
    assert_eq!(ids(&c.admin_ok(&["session", "list"])), vec![sid.clone()]);
    for (me, peer) in [(&a, &b), (&b, &a)] {
        me.tier2(&c)
            .report_session(&report(
                &sid,
                SessionEvent::Down,
                peer,
                &g,
                (5, 5),
                (1, 1),
                t + 5,
                Some("cut by the centre"),
            ))
            .await
            .unwrap();
    }
    assert!(ids(&c.admin_ok(&["session", "list"])).is_empty());
    let show = c.admin_ok(&["session", "show", &sid]);
    assert_eq!(show["status"], json!("down"));
    assert!(show["ends"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["down_at"] == json!(t + 5)));
    // Cutting it again is refused clearly.
    let e = c.admin(&["session", "cut", &sid]).unwrap_err();
    assert!(e.contains("409") && e.contains("not_live"), "{e}");
    assert!(c.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}

//! Issue 19: an endpoint an administrator types (`dodvpn admin device network
//! --endpoint`) reaches every peer already holding a grant to that device, at once:
//! the grant is re-issued with the new address (and without one, when it is
//! cleared). The centre tells a device the address it sees it come from, and the
//! candidates a device reports reach its peers the same way. A real centre on SQLite
//! and PostgreSQL.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

both_backends!(a_new_endpoint_reaches_existing_grants_on_both_sides);
both_backends!(reported_candidates_reach_the_peers_and_the_observed_address_is_told);
both_backends!(introductions_and_relays_reach_both_sides_only_under_a_grant);
both_backends!(without_a_relay_the_centre_refuses_to_allocate_one);

/// The connection info of `grant` held by `site`, verified under the centre's signer.
async fn info(c: &Centre, site: &Site, grant: &str) -> Value {
    let st: Value = site.tier2(c).get("/api/v1/device/state").await.unwrap();
    let signed = st["connection_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["info"]["grant_id"] == json!(grant))
        .unwrap_or_else(|| panic!("{} holds grant {grant}: {st}", site.id))
        .clone();
    let s: dodvpn_agent::sync::SignedInfo = serde_json::from_value(signed.clone()).unwrap();
    dodvpn_agent::sync::verify(st["signer_certificate"].as_str().unwrap(), &s)
        .expect("connection info verifies");
    signed["info"].clone()
}

fn endpoint(i: &Value) -> Option<&str> {
    i["peer"].get("endpoint").and_then(Value::as_str)
}

async fn a_new_endpoint_reaches_existing_grants_on_both_sides(b: Backend) {
    let c = Centre::start(b);
    let hosp = c.org("Core Hospital", "hospital");
    let clinic = c.org("Dynamic Clinic", "clinic");
    let h = onboard(&c, &hosp, "EH1", "10.1.0.0/24").await;
    let k = onboard(&c, &clinic, "EK1", "10.2.0.0/24").await;
    c.admin_ok(&["group", "create", "E"]);
    for org in [&hosp, &clinic] {
        set_policy(&c, org, &open_policy());
    }
    for d in [&h.id, &k.id] {
        c.admin_ok(&["group", "add", "E", d]);
    }
    let r = c.admin_ok(&["connection", "apply", "--from", &k.id, "--to", &h.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(true), "{r}");
    let g = r["outcomes"][0]["grant_id"].as_str().unwrap().to_string();
    let (hi, ki) = (info(&c, &h, &g).await, info(&c, &k, &g).await);
    assert_eq!(
        endpoint(&hi),
        None,
        "the clinic was registered without an endpoint"
    );
    let (hv, kv) = (
        hi["version"].as_u64().unwrap(),
        ki["version"].as_u64().unwrap(),
    );

    // The clinic's endpoint typed in: the hospital's grant names it at once.
    c.admin_ok(&[
        "device",
        "network",
        &k.id,
        "--endpoint",
        "203.0.113.9",
        "--subnet",
        "10.2.0.0/24",
    ]);
    let hi = info(&c, &h, &g).await;
    assert_eq!(endpoint(&hi), Some("203.0.113.9"), "{hi}");
    assert!(hi["version"].as_u64().unwrap() > hv, "re-issued: {hi}");
    assert_eq!(hi["traffic_selectors"]["remote"], json!(["10.2.0.0/24"]));

    // The hospital's endpoint changes: the clinic's grant follows.
    c.admin_ok(&[
        "device",
        "network",
        &h.id,
        "--endpoint",
        "198.51.100.20",
        "--subnet",
        "10.1.0.0/24",
    ]);
    let ki = info(&c, &k, &g).await;
    assert_eq!(endpoint(&ki), Some("198.51.100.20"), "{ki}");
    assert!(ki["version"].as_u64().unwrap() > kv, "re-issued: {ki}");

    // Cleared again: the hospital's grant no longer names an address.
    c.admin_ok(&["device", "network", &k.id, "--subnet", "10.2.0.0/24"]);
    let hi = info(&c, &h, &g).await;
    assert_eq!(endpoint(&hi), None, "{hi}");

    // Nothing changed: no new version (re-issue only when something moved).
    let v = info(&c, &h, &g).await["version"].as_u64().unwrap();
    c.admin_ok(&["device", "network", &k.id, "--subnet", "10.2.0.0/24"]);
    assert_eq!(info(&c, &h, &g).await["version"].as_u64().unwrap(), v);
}

async fn reported_candidates_reach_the_peers_and_the_observed_address_is_told(b: Backend) {
    let c = Centre::start(b);
    let hosp = c.org("Core Hospital", "hospital");
    let clinic = c.org("Dynamic Clinic", "clinic");
    let h = onboard(&c, &hosp, "CH1", "10.1.0.0/24").await;
    let k = onboard(&c, &clinic, "CK1", "10.2.0.0/24").await;
    c.admin_ok(&["group", "create", "K"]);
    for org in [&hosp, &clinic] {
        set_policy(&c, org, &open_policy());
    }
    for d in [&h.id, &k.id] {
        c.admin_ok(&["group", "add", "K", d]);
    }
    let r = c.admin_ok(&["connection", "apply", "--from", &k.id, "--to", &h.id]);
    let g = r["outcomes"][0]["grant_id"].as_str().unwrap().to_string();

    // The address the centre sees this connection come from (here: loopback).
    let who: Value = k.tier2(&c).get("/api/v1/device/whoami").await.unwrap();
    let observed: std::net::SocketAddr = who["observed"].as_str().unwrap().parse().unwrap();
    assert!(observed.ip().is_loopback() && observed.port() != 0, "{who}");
    assert_eq!(who["device_id"], json!(k.id));

    // Reported candidates: the hospital's grant names them, re-issued at once.
    let v = info(&c, &h, &g).await["version"].as_u64().unwrap();
    let cands = json!({"candidates": ["192.168.7.2:4500", "203.0.113.7:4500"]});
    let back: Value = k
        .tier2(&c)
        .put("/api/v1/device/candidates", &cands)
        .await
        .unwrap();
    assert_eq!(back, cands);
    let hi = info(&c, &h, &g).await;
    assert_eq!(hi["peer"]["candidates"], cands["candidates"], "{hi}");
    assert!(hi["version"].as_u64().unwrap() > v);
    assert!(
        audit_actions(&c)
            .iter()
            .any(|(a, d)| a == "device.candidates" && d["candidates"] == cands["candidates"]),
        "candidates are audited"
    );
    // The clinic's own grant does not list its own candidates as its peer's.
    assert!(info(&c, &k, &g).await["peer"].get("candidates").is_none());

    // The same again: nothing re-issued.
    let v = info(&c, &h, &g).await["version"].as_u64().unwrap();
    let _: Value = k
        .tier2(&c)
        .put("/api/v1/device/candidates", &cands)
        .await
        .unwrap();
    assert_eq!(info(&c, &h, &g).await["version"].as_u64().unwrap(), v);

    // Bad input is refused with a reason, and nothing changes.
    let many: Vec<String> = (0..17).map(|i| format!("198.51.100.{i}:4500")).collect();
    for (bad, why) in [
        (json!({"candidates": ["not an address"]}), "not IP:port"),
        (json!({"candidates": ["203.0.113.7"]}), "not IP:port"),
        (
            json!({"candidates": ["0.0.0.0:4500"]}),
            "not an address a peer can send to",
        ),
        (
            json!({"candidates": ["203.0.113.7:4500", "203.0.113.7:4500"]}),
            "given twice",
        ),
        (json!({"candidates": many}), "at most 16"),
        (json!({"candidates": [], "extra": 1}), ""),
    ] {
        let e = k
            .tier2(&c)
            .put::<_, Value>("/api/v1/device/candidates", &bad)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains(why), "{bad}: {e:#}");
    }
    assert_eq!(
        info(&c, &h, &g).await["peer"]["candidates"],
        cands["candidates"]
    );
    // A tier-1 certificate may not report them.
    assert!(k
        .tier1(&c)
        .put::<_, Value>("/api/v1/device/candidates", &cands)
        .await
        .is_err());

    // Cleared: the peer's grant lists none.
    let _: Value = k
        .tier2(&c)
        .put("/api/v1/device/candidates", &json!({"candidates": []}))
        .await
        .unwrap();
    assert!(info(&c, &h, &g).await["peer"].get("candidates").is_none());
}

/// Hole punching and the relay, centre side (issue 19 items 2, 3): a device asks to
/// be introduced to a peer it holds a grant with, and both are told at once where the
/// other may be reached; asked for a relay, the centre gives each side its binding,
/// signed with the secret the relay reads. Without a grant, neither.
async fn introductions_and_relays_reach_both_sides_only_under_a_grant(b: Backend) {
    // nextest runs each test in its own process: the centre inherits this.
    std::env::set_var("DODVPN_RELAY", "192.0.2.1:4600");
    let c = Centre::start(b);
    let hosp = c.org("Core Hospital", "hospital");
    let clinic = c.org("Dynamic Clinic", "clinic");
    let h = onboard(&c, &hosp, "IH1", "10.1.0.0/24").await;
    let k = onboard(&c, &clinic, "IK1", "10.2.0.0/24").await;
    let x = onboard(&c, &clinic, "IX1", "10.3.0.0/24").await;
    c.admin_ok(&["group", "create", "I"]);
    for org in [&hosp, &clinic] {
        set_policy(&c, org, &open_policy());
    }
    for d in [&h.id, &k.id] {
        c.admin_ok(&["group", "add", "I", d]);
    }
    let r = c.admin_ok(&["connection", "apply", "--from", &k.id, "--to", &h.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(true), "{r}");
    let kc = json!({"candidates": ["192.168.7.2:4500", "203.0.113.7:4500"]});
    let hc = json!({"candidates": ["198.51.100.4:4500"]});
    let _: Value = k
        .tier2(&c)
        .put("/api/v1/device/candidates", &kc)
        .await
        .unwrap();
    let _: Value = h
        .tier2(&c)
        .put("/api/v1/device/candidates", &hc)
        .await
        .unwrap();
    let mut hs = stream(&h, &c, 0).await;
    let mut ks = stream(&k, &c, 0).await;

    let body = json!({"peer_device_id": h.id});
    let r: Value = k
        .tier2(&c)
        .post("/api/v1/device/introduce", &body)
        .await
        .unwrap();
    assert_eq!(r["candidates"], hc["candidates"], "{r}");
    assert_eq!(r["relay_available"], json!(true));
    let to_h = next_kind(&mut hs, "introduce").await;
    assert_eq!(to_h["payload"]["peer_device_id"], json!(k.id));
    assert_eq!(to_h["payload"]["candidates"], kc["candidates"], "{to_h}");
    assert!(to_h["payload"]["at_ms"].as_i64().unwrap() > 0);
    let to_k = next_kind(&mut ks, "introduce").await;
    assert_eq!(to_k["payload"]["peer_device_id"], json!(h.id));
    assert_eq!(to_k["payload"]["candidates"], hc["candidates"]);
    // Asked again at once: 429, in both languages; the peer's stream is not flooded.
    let e = k
        .tier2(&c)
        .post::<_, Value>("/api/v1/device/introduce", &body)
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("429") && text.contains("too_many_requests") && text.contains("再試行"),
        "{text}"
    );

    // The relay: each side its own binding, both valid under the relay's secret.
    let r: Value = k
        .tier2(&c)
        .post("/api/v1/device/relay", &body)
        .await
        .unwrap();
    assert_eq!(r["relay"], json!("192.0.2.1:4600"), "{r}");
    let secret = std::fs::read(c.dir.join("relay.key")).unwrap();
    assert_eq!(mode_of(&c.dir.join("relay.key")), 0o600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut sides = Vec::new();
    for (rx, peer, initiate) in [(&mut ks, &h.id, true), (&mut hs, &k.id, false)] {
        let ev = next_kind(rx, "relay").await;
        assert_eq!(ev["payload"]["peer_device_id"], json!(peer));
        assert_eq!(ev["payload"]["initiate"], json!(initiate));
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ev["payload"]["binding"].as_str().unwrap())
            .unwrap();
        let bind = dodvpn_relay::Binding::open(&bytes, &secret, now).expect("binding verifies");
        assert_eq!(hex::encode(bind.alloc), r["allocation"].as_str().unwrap());
        sides.push(bind.side);
    }
    assert_eq!(sides, [0, 1]);
    assert!(
        audit_actions(&c)
            .iter()
            .any(|(a, d)| a == "relay.allocated" && d["peer"] == json!(h.id)),
        "relay allocations are audited"
    );

    // No grant between the clinic and x: no introduction, no relay.
    let body = json!({"peer_device_id": x.id});
    for path in ["/api/v1/device/introduce", "/api/v1/device/relay"] {
        let e = k.tier2(&c).post::<_, Value>(path, &body).await.unwrap_err();
        assert!(format!("{e:#}").contains("no live grant"), "{path}: {e:#}");
    }
    // A tier-1 certificate may not ask.
    assert!(k
        .tier1(&c)
        .post::<_, Value>("/api/v1/device/introduce", &json!({"peer_device_id": h.id}))
        .await
        .is_err());

    // The reflectors: the relay's port and the one after it.
    let who: Value = k.tier2(&c).get("/api/v1/device/whoami").await.unwrap();
    assert_eq!(
        who["reflectors"],
        json!(["192.0.2.1:4600", "192.0.2.1:4601"]),
        "{who}"
    );

    // Both behind NATs the probes showed symmetric: punching is skipped, nobody is
    // told, and the caller goes to the relay at once.
    c.admin_ok(&["group", "add", "I", &x.id]);
    let r = c.admin_ok(&["connection", "apply", "--from", &x.id, "--to", &h.id]);
    assert_eq!(r["outcomes"][0]["granted"], json!(true), "{r}");
    let report = async |site: &Site, a: &str, nat: &str| {
        let cands = json!({"candidates": [a], "nat": nat});
        let back: Value = site
            .tier2(&c)
            .put("/api/v1/device/candidates", &cands)
            .await
            .unwrap();
        assert_eq!(back, cands);
    };
    // Introductions of a pair are paced: 2 s apart.
    let introduce_x_to_h = async |after: Duration| -> Value {
        tokio::time::sleep(after).await;
        x.tier2(&c)
            .post("/api/v1/device/introduce", &json!({"peer_device_id": h.id}))
            .await
            .unwrap()
    };
    report(&x, "203.0.113.9:4500", "symmetric").await;
    report(&h, "198.51.100.4:4500", "symmetric").await;
    let e = x
        .tier2(&c)
        .put::<_, Value>(
            "/api/v1/device/candidates",
            &json!({"candidates": [], "nat": "leaky"}),
        )
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("nat"), "{e:#}");
    let r = introduce_x_to_h(Duration::ZERO).await;
    assert_eq!(r["punch"], json!(false), "{r}");
    assert_eq!(r["candidates"], json!(["198.51.100.4:4500"]));
    // The hospital's stream carries no introduction from x (a grant event, maybe).
    let quiet = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            let ev = hs.recv().await.expect("stream ended");
            if ev["kind"] == json!("introduce") {
                return ev;
            }
        }
    })
    .await;
    assert!(
        quiet.is_err(),
        "told of a punch that cannot work: {quiet:?}"
    );
    // A clinic whose NAT is a cone, to the same symmetric hospital: still relayed.
    report(&x, "203.0.113.9:4500", "cone").await;
    let r = introduce_x_to_h(Duration::from_millis(2100)).await;
    assert_eq!(r["punch"], json!(false), "{r}");
    // The hospital on a public address: punching (an introduction) again.
    report(&h, "198.51.100.4:4500", "none").await;
    let r = introduce_x_to_h(Duration::from_millis(2100)).await;
    assert_eq!(r["punch"], json!(true), "{r}");
    let to_h = next_kind(&mut hs, "introduce").await;
    assert_eq!(to_h["payload"]["peer_device_id"], json!(x.id));
}

/// Without DODVPN_RELAY the centre says so, in both languages.
async fn without_a_relay_the_centre_refuses_to_allocate_one(b: Backend) {
    std::env::remove_var("DODVPN_RELAY");
    let c = Centre::start(b);
    let hosp = c.org("Core Hospital", "hospital");
    let h = onboard(&c, &hosp, "NH1", "10.1.0.0/24").await;
    let k = onboard(&c, &hosp, "NK1", "10.2.0.0/24").await;
    set_policy(&c, &hosp, &open_policy());
    c.admin_ok(&["group", "create", "N"]);
    for d in [&h.id, &k.id] {
        c.admin_ok(&["group", "add", "N", d]);
    }
    c.admin_ok(&["connection", "apply", "--from", &k.id, "--to", &h.id]);
    let body = json!({"peer_device_id": h.id});
    let r: Value = k
        .tier2(&c)
        .post("/api/v1/device/introduce", &body)
        .await
        .unwrap();
    assert_eq!(r["relay_available"], json!(false));
    // No relay, no reflectors.
    let who: Value = k.tier2(&c).get("/api/v1/device/whoami").await.unwrap();
    assert!(who.get("reflectors").is_none(), "{who}");
    let e = k
        .tier2(&c)
        .post::<_, Value>("/api/v1/device/relay", &body)
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("no_relay") && text.contains("リレー"),
        "{text}"
    );
}

/// `dodvpn relay` needs the port after its own for the second reflector: a listen
/// port that leaves none, or a short secret, is refused with a reason before
/// anything is bound.
#[test]
fn the_relay_refuses_a_port_without_room_for_its_reflector_and_a_short_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("relay.key");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, [7u8; 8]).unwrap();
    for (listen, key, why) in [
        ("127.0.0.1:65535", &secret, "1-65534"),
        ("127.0.0.1:0", &secret, "1-65534"),
        ("127.0.0.1:4600", &short, "fewer than 32 bytes"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dodvpn"))
            .args(["relay", "--listen", listen, "--secret-file"])
            .arg(key)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{listen}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

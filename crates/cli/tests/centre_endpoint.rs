//! Issue 19: an endpoint an administrator types (`dodvpn admin device network
//! --endpoint`) reaches every peer already holding a grant to that device, at once:
//! the grant is re-issued with the new address (and without one, when it is
//! cleared). The centre tells a device the address it sees it come from, and the
//! candidates a device reports reach its peers the same way. A real centre on SQLite
//! and PostgreSQL.

mod common;

use common::*;
use serde_json::{json, Value};

both_backends!(a_new_endpoint_reaches_existing_grants_on_both_sides);
both_backends!(reported_candidates_reach_the_peers_and_the_observed_address_is_told);

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

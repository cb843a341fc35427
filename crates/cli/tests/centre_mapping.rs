//! R-DP-8 (TR D.7 c) at the centre: two clinics registering the same private range
//! get distinct visible prefixes from the mapping space, peers' connection info
//! names only the visible prefixes, and each clinic's own info carries the pairs its
//! data plane translates. On SQLite and PostgreSQL.

mod common;

use common::*;
use serde_json::{json, Value};

both_backends!(overlapping_clinics_get_distinct_visible_prefixes);

/// The connection info of `grant` held by `site`.
async fn info(c: &Centre, site: &Site, grant: &str) -> Value {
    let st: Value = site.tier2(c).get("/api/v1/device/state").await.unwrap();
    let signed = st["connection_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["info"]["grant_id"] == json!(grant))
        .unwrap_or_else(|| panic!("{} holds grant {grant}: {st}", site.id))
        .clone();
    // Still signed by the centre, mapping included.
    let s: dodvpn_agent::sync::SignedInfo = serde_json::from_value(signed.clone()).unwrap();
    dodvpn_agent::sync::verify(st["signer_certificate"].as_str().unwrap(), &s)
        .expect("connection info verifies");
    signed["info"].clone()
}

fn apply(c: &Centre, from: &str, to: &str) -> String {
    let r = c.admin_ok(&["connection", "apply", "--from", from, "--to", to]);
    assert_eq!(r["outcomes"][0]["granted"], json!(true), "{r}");
    r["outcomes"][0]["grant_id"].as_str().unwrap().to_string()
}

fn mapped(c: &Centre, id: &str) -> Value {
    c.admin_ok(&["device", "show", id])["mapped_subnets"].clone()
}

fn in_cgnat(v: &Value) -> String {
    let s = v[0].as_str().unwrap().to_string();
    let n: ipnet::Ipv4Net = s.parse().unwrap();
    assert_eq!(n.prefix_len(), 24, "same length as the real prefix: {s}");
    assert!(
        "100.64.0.0/10"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&n),
        "{s} is in the mapping space"
    );
    s
}

async fn overlapping_clinics_get_distinct_visible_prefixes(b: Backend) {
    let c = Centre::start(b);
    let hosp = c.org("Core Hospital", "hospital");
    let clinic1 = c.org("North Clinic", "clinic");
    let clinic2 = c.org("South Clinic", "clinic");
    let h = onboard(&c, &hosp, "H1", "10.1.0.0/24").await;
    let c1 = onboard(&c, &clinic1, "C1", "10.2.0.0/24").await;
    c.admin_ok(&["group", "create", "B"]);
    for org in [&hosp, &clinic1, &clinic2] {
        set_policy(&c, org, &open_policy());
    }
    for d in [&h.id, &c1.id] {
        c.admin_ok(&["group", "add", "B", d]);
    }
    // Alone on its range, the first clinic is seen by its real prefix.
    let g1 = apply(&c, &c1.id, &h.id);
    assert_eq!(mapped(&c, &c1.id), json!([]));
    let i = info(&c, &c1, &g1).await;
    assert_eq!(i["traffic_selectors"]["local"], json!(["10.2.0.0/24"]));
    assert!(i["local"].get("mapped_subnets").is_none(), "{i}");
    let v_before = i["version"].as_u64().unwrap();

    // The second clinic uses the same range: both are mapped, to distinct prefixes.
    let c2 = onboard(&c, &clinic2, "C2", "10.2.0.0/24").await;
    c.admin_ok(&["group", "add", "B", &c2.id]);
    let m1 = in_cgnat(&mapped(&c, &c1.id));
    let m2 = in_cgnat(&mapped(&c, &c2.id));
    assert_ne!(m1, m2);
    assert_eq!(
        mapped(&c, &h.id),
        json!([]),
        "the hospital collides with no one"
    );
    assert!(
        audit_actions(&c)
            .iter()
            .any(|(a, d)| a == "device.mapped" && d["mapped_subnets"] == json!([m1])),
        "mappings are audited"
    );

    // The first clinic's live grant was re-issued with its visible prefix.
    let i = info(&c, &c1, &g1).await;
    assert!(i["version"].as_u64().unwrap() > v_before, "{i}");
    assert_eq!(i["local"]["subnets"], json!(["10.2.0.0/24"]));
    assert_eq!(i["local"]["mapped_subnets"], json!([m1]));
    assert_eq!(i["traffic_selectors"]["local"], json!([m1]));
    assert_eq!(i["traffic_selectors"]["remote"], json!(["10.1.0.0/24"]));
    let g2 = apply(&c, &c2.id, &h.id);
    let i = info(&c, &c2, &g2).await;
    assert_eq!(i["local"]["subnets"], json!(["10.2.0.0/24"]));
    assert_eq!(i["local"]["mapped_subnets"], json!([m2]));
    assert_eq!(i["traffic_selectors"]["local"], json!([m2]));

    // The hospital's connection info names the visible prefixes only.
    for (g, m, clinic) in [(&g1, &m1, &c1), (&g2, &m2, &c2)] {
        let hi = info(&c, &h, g).await;
        assert_eq!(hi["peer"]["device_id"], json!(clinic.id));
        assert_eq!(hi["peer"]["subnets"], json!([m]));
        assert_eq!(hi["traffic_selectors"]["remote"], json!([m]));
        assert_eq!(hi["traffic_selectors"]["local"], json!(["10.1.0.0/24"]));
        assert!(hi["local"].get("mapped_subnets").is_none(), "{hi}");
        assert!(
            !hi.to_string().contains("10.2.0."),
            "no real clinic address: {hi}"
        );
    }

    // The two clinics may reach each other too, each by the other's visible prefix.
    let g12 = apply(&c, &c1.id, &c2.id);
    let i = info(&c, &c1, &g12).await;
    assert_eq!(i["traffic_selectors"]["local"], json!([m1]));
    assert_eq!(i["traffic_selectors"]["remote"], json!([m2]));
    assert_eq!(i["peer"]["subnets"], json!([m2]));

    // A third site on a range inside the mapping space does not collide with them.
    let other = c.org("Odd Lab", "clinic");
    let odd = register(&c, &other, "X1", &m1);
    let mo = in_cgnat(&mapped(&c, &odd));
    assert!(mo != m1 && mo != m2, "{mo}");
    assert_eq!(in_cgnat(&mapped(&c, &c1.id)), m1, "mappings are stable");

    // The second clinic renumbers away: its new range is its own, the first
    // clinic keeps its visible prefix (addresses do not move under a peer).
    c.admin_ok(&["device", "network", &c2.id, "--subnet", "10.7.0.0/24"]);
    assert_eq!(mapped(&c, &c2.id), json!([]));
    assert_eq!(in_cgnat(&mapped(&c, &c1.id)), m1);
    let hi = info(&c, &h, &g2).await;
    assert_eq!(hi["traffic_selectors"]["remote"], json!(["10.7.0.0/24"]));
}

//! Push (R-POL-5): each device holds one event stream; changes arrive as pushes; a
//! dropped stream resumes by version and loses nothing; PostgreSQL replicas fan
//! events out to each other's streams (LISTEN/NOTIFY).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

async fn two_sites(c: &Centre) -> (String, Site, Site) {
    let org = c.org("Hospital", "hospital");
    let a = onboard(c, &org, "P-A", "10.1.0.0/24").await;
    let b = onboard(c, &org, "P-B", "10.2.0.0/24").await;
    c.admin_ok(&["group", "create", "A"]);
    c.admin_ok(&["group", "add", "A", &a.id]);
    c.admin_ok(&["group", "add", "A", &b.id]);
    set_policy(c, &org, &open_policy());
    (org, a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_and_policy_changes_arrive_as_pushes_and_resume_by_version() {
    let c = Centre::start(Backend::Sqlite);
    let (_org, a, b) = two_sites(&c).await;
    let mut rx_b = stream(&b, &c, 0).await;
    let hello = next_kind(&mut rx_b, "hello").await;
    assert_eq!(hello["payload"]["device_id"], json!(b.id));
    // A grant from a's application reaches b, the target, as a push.
    let r = c.admin_ok(&["connection", "apply", "--from", &a.id, "--to", &b.id]);
    let grant = r["outcomes"][0]["grant_id"].as_str().unwrap().to_string();
    let g = next_kind(&mut rx_b, "grant").await;
    assert_eq!(g["payload"]["grant_id"], json!(grant));
    let seen = g["seq"].as_i64().unwrap();
    // Drop the stream; changes happen while b is away.
    drop(rx_b);
    c.admin_ok(&["group", "update", "A", "--service", "tcp/443"]);
    c.admin_ok(&["grant", "withdraw", &grant, "--reason", "maintenance over"]);
    // b comes back with its last version and receives exactly what it missed, in order.
    let mut rx_b = stream(&b, &c, seen).await;
    next_kind(&mut rx_b, "hello").await;
    let mut kinds = vec![];
    let mut last = seen;
    while kinds.len() < 3 {
        let v = tokio::time::timeout(Duration::from_secs(10), rx_b.recv())
            .await
            .unwrap()
            .unwrap();
        let seq = v["seq"].as_i64().unwrap();
        assert!(seq > last, "events in order, none repeated");
        last = seq;
        kinds.push(v["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds[0], "policy_changed");
    assert_eq!(kinds[1], "grant", "the narrowed grant is re-issued");
    assert_eq!(kinds.last().unwrap(), "grant_withdrawn");
}

async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    what: &str,
) -> Result<String, ()> {
    let fut = async {
        loop {
            let s = rx.recv().await.expect("agent stopped");
            if s.contains(what) {
                return s;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .map_err(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_loop_keeps_state_across_restarts_and_centre_outages() {
    let mut c = Centre::start(Backend::Sqlite);
    let (_org, a, b) = two_sites(&c).await;
    let run_agent = |store: std::sync::Arc<dyn dodvpn_pki::KeyStore>| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let h = tokio::spawn(async move {
            let mut agent = dodvpn_agent::sync::Agent::open(store, None).unwrap();
            let mut on = move |u: &dodvpn_agent::sync::Update,
                               _: &dodvpn_agent::sync::SyncState| {
                let _ = tx.send(format!("{u:?}"));
            };
            let _ = agent.run(&mut on).await;
        });
        (h, rx)
    };
    let (h, mut rx) = run_agent(b.store.clone());
    wait_for(&mut rx, "Connected").await.unwrap();
    c.admin_ok(&["connection", "apply", "--from", &a.id, "--to", &b.id]);
    wait_for(&mut rx, "GrantInstalled").await.unwrap();
    // The agent process dies; its state is in the key store.
    h.abort();
    let st = dodvpn_agent::sync::SyncState::load(b.store.as_ref()).unwrap();
    assert_eq!(
        st.grants.len(),
        1,
        "the signed connection info survived the agent"
    );
    // The centre goes down and comes back on the same address; the agent reconnects
    // and resumes from its version.
    let (h, mut rx) = run_agent(b.store.clone());
    wait_for(&mut rx, "Connected").await.unwrap();
    c.kill9();
    wait_for(&mut rx, "Disconnected").await.unwrap();
    c.spawn();
    let v = c.admin_ok(&["grant", "list", "--status", "active"]);
    let grant = v[0]["id"].as_str().unwrap().to_string();
    c.admin_ok(&["grant", "withdraw", &grant, "--reason", "test"]);
    let s = wait_for(&mut rx, "GrantRemoved")
        .await
        .expect("the withdrawal made while reconnecting is not lost");
    assert!(s.contains(&grant));
    h.abort();
    let st = dodvpn_agent::sync::SyncState::load(b.store.as_ref()).unwrap();
    assert!(st.grants.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_replicas_share_state_and_fan_out_events() {
    let c1 = Centre::start(Backend::Postgres);
    let c2 = c1.replica();
    assert_ne!(c1.url, c2.url);
    let (_org, a, b) = two_sites(&c1).await;
    // b streams from replica 2; the change is made on replica 1.
    let mut rx = stream(&b, &c2, 0).await;
    next_kind(&mut rx, "hello").await;
    // Everything done so far on replica 1 is visible on replica 2.
    assert_eq!(
        c2.admin_ok(&["device", "show", &a.id])["status"],
        json!("in_service")
    );
    let t0 = std::time::Instant::now();
    c1.admin_ok(&["connection", "apply", "--from", &a.id, "--to", &b.id]);
    let g = next_kind(&mut rx, "grant").await;
    assert!(g["payload"]["connection_info"]["info"]["peer"]["device_id"] == json!(a.id));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "cross-replica push took {:?}",
        t0.elapsed()
    );
    // Writes from both replicas interleave into one audit chain that verifies.
    for i in 0..5 {
        let c = if i % 2 == 0 { &c1 } else { &c2 };
        c.org(&format!("Org {i}"), "lab");
    }
    assert!(c2.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}

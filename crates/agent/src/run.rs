//! `dodvpn agent run`: the whole VPN device. The sync loop keeps the signed connection
//! info current; every change is applied to the tunnels at once; the service CRL is
//! refreshed in the background; sessions are reported as they come and go.
//!
//! With the centre away, the tunnels keep running from the connection info and CRL
//! last stored in the key store, and on-demand setup still works for those grants.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dodvpn_pki::KeyStore;
use dodvpn_policy::{SessionEvent as ReportKind, SessionReport};
use dodvpn_tunnel::daemon::{Counts, RelayUse, SessionEvent};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::client::CenterClient;
use crate::firewall::{FirewallOptions, GatewayFirewall};
use crate::sync::{Agent, SyncState, Update};
use crate::tunnels::{Changes, TunnelOptions, Tunnels, SERVICE_CA_FILE, SERVICE_CRL_FILE};

/// How often the service CRL is fetched again.
const CRL_REFRESH: Duration = Duration::from_secs(60);
/// How often grants are checked for expiry.
const EXPIRY_CHECK: Duration = Duration::from_secs(5);

/// After asking the centre to introduce us to a peer, how long hole punching gets
/// before we ask for a relay; and how often one peer is introduced at most.
const PUNCH_WAIT: Duration = Duration::from_millis(1500);
/// After the introduction (or the relay's bindings), when our waiting IKE_SA_INITs
/// are sent again: once the peer has likely opened its NAT (or bound at the relay),
/// and once more for a slower line or agent.
const RESEND_SOON: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(200)];
const INTRODUCE_EVERY: Duration = Duration::from_secs(5);

/// How often unsent session reports are retried, and how many are kept.
const REPORT_RETRY: Duration = Duration::from_secs(5);
const MAX_PENDING_REPORTS: usize = 10_000;
/// Key-store file holding session reports the centre has not taken yet.
const PENDING_REPORTS_FILE: &str = "pending-session-reports.json";

/// The report the centre gets for a session event (three-point audit, TR A.1 c).
/// Send our IKE_SA_INITs still waiting for `conn`'s peer again at [`RESEND_SOON`]:
/// the peer is opening its NAT or binding at the relay right now, and what we sent a
/// moment ago was dropped before it did; the normal retransmission is 0.5 s later.
/// Returns when the last went.
async fn resend_soon(handle: &dodvpn_tunnel::daemon::Handle, conn: &str) -> Duration {
    let mut waited = Duration::ZERO;
    for at in RESEND_SOON {
        tokio::time::sleep(at - waited).await;
        waited = at;
        let (handle, conn) = (handle.clone(), conn.to_string());
        let _ = tokio::task::spawn_blocking(move || handle.introduced(&conn)).await;
    }
    waited
}

fn session_report(ev: &SessionEvent, tunnels: &Mutex<Tunnels>) -> Option<SessionReport> {
    let (conn, session, counts, event, reason, relay) = match ev {
        SessionEvent::Up {
            conn,
            session,
            relay,
        } => (
            conn,
            session,
            Counts::default(),
            ReportKind::Up,
            None,
            relay.map(|r| r.to_string()),
        ),
        SessionEvent::Down {
            conn,
            session,
            counts,
            reason,
        } => (
            conn,
            session,
            *counts,
            ReportKind::Down,
            Some(reason.clone()),
            None,
        ),
        // Not about a session (and taken off to the introducer in `run`).
        SessionEvent::NeedsIntroduction { .. } => return None,
    };
    Some(SessionReport {
        session_id: session.to_string(),
        event,
        peer_device_id: conn.clone(),
        grant_ids: tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .grants_for(conn),
        bytes_in: counts.bytes_in,
        bytes_out: counts.bytes_out,
        packets_in: counts.packets_in,
        packets_out: counts.packets_out,
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        reason,
        relay,
    })
}

/// Progress lines for the operator (printed by the CLI).
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

#[derive(Deserialize)]
struct CaBundle {
    root: String,
    service_ca: String,
}

/// Fetch the service CA (checked against the root stored at enrolment) and the
/// service CRL (checked under that CA); store both; return the revoked serials.
pub async fn refresh_pki(client: &CenterClient, store: &dyn KeyStore) -> anyhow::Result<Vec<u64>> {
    let root = crate::enroll::ca_pem(store)?;
    let bundle: CaBundle = client.get("/pki/ca").await?;
    if bundle.root.trim() != root.trim() {
        anyhow::bail!("the centre presents a different accreditation root than at enrolment");
    }
    let crl = client.get_text("/pki/crl/service").await?;
    let serials = dodvpn_pki::crl_revoked_serials(&crl, &bundle.service_ca)
        .context("the service CRL does not verify under the service CA")?;
    store.put_file(SERVICE_CA_FILE, bundle.service_ca.as_bytes())?;
    store.put_file(SERVICE_CRL_FILE, crl.as_bytes())?;
    Ok(serials)
}

fn describe(c: &Changes) -> Vec<String> {
    let mut out = Vec::new();
    for p in &c.added {
        out.push(format!(
            "tunnel to {p}: ready (comes up on the first packet)"
        ));
    }
    for p in &c.moved {
        out.push(format!(
            "tunnel to {p}: the peer's addresses changed (SAs kept)"
        ));
    }
    for p in &c.replaced {
        out.push(format!("tunnel to {p}: grants changed, SAs renegotiated"));
    }
    for p in &c.removed {
        out.push(format!("tunnel to {p}: removed, SAs deleted"));
    }
    for (g, why) in &c.skipped {
        out.push(format!("grant {g}: not installed ({why})"));
    }
    out
}

fn reconcile(tunnels: &Mutex<Tunnels>, state: &SyncState, say: &Say) {
    let r = tokio::task::block_in_place(|| {
        tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reconcile(state)
    });
    match r {
        Ok(c) => describe(&c).into_iter().for_each(|l| say(l)),
        Err(e) => say(format!("cannot apply the grants to the tunnels: {e:#}")),
    }
}

/// The interface the centre is reached over: the outer one, unless the operator named it.
async fn outer_towards_centre(center: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(center).with_context(|| format!("centre URL {center:?}"))?;
    let host = url.host_str().context("the centre URL names no host")?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("cannot resolve the centre {host}"))?
        .next()
        .with_context(|| format!("the centre {host} has no address"))?;
    tokio::task::block_in_place(|| crate::firewall::interface_towards(addr.ip()))
}

/// This agent's version and the operating system under it, as the ledger lists them.
pub fn software() -> serde_json::Value {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut os = format!("{pretty}, {} {}", std::env::consts::OS, kernel.trim());
    os.truncate(
        os.char_indices()
            .nth(200)
            .map(|(i, _)| i)
            .unwrap_or(os.len()),
    );
    serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "os": os.trim()})
}

/// Run the device until it is revoked (an error) or the future is dropped. The gateway
/// firewall goes up first and comes down when this returns or is dropped; without it
/// the device does not run.
pub async fn run(
    agent: Agent,
    store: Arc<dyn KeyStore>,
    opts: TunnelOptions,
    fw: FirewallOptions,
    say: Say,
) -> anyhow::Result<()> {
    run_observed(agent, store, opts, fw, say, None).await
}

/// What a service built on the agent (the gateway node) sees of each update, after the
/// agent applied it: events it does not know itself, and the grants it holds.
pub type Observer = Arc<dyn Fn(&Update, &SyncState) + Send + Sync>;

/// [`run`], telling `observe` of every update.
pub async fn run_observed(
    mut agent: Agent,
    store: Arc<dyn KeyStore>,
    opts: TunnelOptions,
    fw: FirewallOptions,
    say: Say,
    observe: Option<Observer>,
) -> anyhow::Result<()> {
    let outer = if fw.outer.is_empty() {
        vec![outer_towards_centre(&agent.client.base)
            .await
            .context("cannot find the outer interface (name it with --outer-interface)")?]
    } else {
        fw.outer.clone()
    };
    let firewall =
        tokio::task::block_in_place(|| GatewayFirewall::install(outer, &opts.interface, &fw))
            .context("the agent does not run without its gateway firewall")?;
    say(format!(
        "gateway firewall up (nftables table inet {}): from {} only this gateway's own address and the tunnels; {} inbound and {} outbound exceptions",
        crate::firewall::TABLE,
        firewall.outer.join(", "),
        fw.allow_in.len(),
        fw.allow_out.len()
    ));
    match refresh_pki(&agent.client, store.as_ref()).await {
        Ok(r) => say(format!(
            "service CA and CRL fetched ({} revoked certificates)",
            r.len()
        )),
        Err(e) => say(format!(
            "centre unreachable for the CRL ({e:#}); using the stored service CA and CRL"
        )),
    }
    // The centre's ledger shows each site's software (R-SVC-2); a failure is not fatal.
    if let Err(e) = agent
        .client
        .put::<_, serde_json::Value>("/api/v1/device/software", &software())
        .await
    {
        say(format!(
            "could not report this agent's version to the centre ({e:#})"
        ));
    }
    let (sessions_tx, mut sessions_rx) = mpsc::unbounded_channel::<SessionEvent>();
    let (intro_tx, mut intro_rx) = mpsc::unbounded_channel::<(String, std::time::Instant)>();
    // When each peer's last session came up: punching worked if it did after the
    // introduction, even if the session is already gone again.
    let last_up: Arc<Mutex<std::collections::HashMap<String, std::time::Instant>>> = Arc::default();
    let seen_up = last_up.clone();
    let observer = Box::new(move |ev| match ev {
        SessionEvent::NeedsIntroduction { conn } => {
            let _ = intro_tx.send((conn, std::time::Instant::now()));
        }
        ev => {
            if let SessionEvent::Up { conn, .. } = &ev {
                seen_up
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(conn.clone(), std::time::Instant::now());
            }
            let _ = sessions_tx.send(ev);
        }
    });
    let tunnels = tokio::task::block_in_place(|| {
        Tunnels::start(store.clone(), opts.clone(), Some(observer))
    })?;
    say(format!(
        "data plane up on {} (control socket {})",
        opts.interface,
        opts.control.display()
    ));
    let prober = tunnels.handle().clone();
    let tunnels = Arc::new(Mutex::new(tunnels));
    // Grants held from before a restart work at once, centre or not.
    reconcile(&tunnels, &agent.state, &say);
    // Where peers may reach us (issue 19): reported now (the reflectors are probed
    // from the data plane's NAT-T port, so after it is up) and re-checked every minute.
    let mut candidates = None;
    match crate::candidates::report(&agent.client, opts.natt_port, &prober, &mut candidates).await {
        Ok(Some(c)) => say(format!("reachable at {c} (reported to the centre)")),
        Ok(None) => {}
        Err(e) => say(format!(
            "could not report this agent's addresses to the centre ({e:#})"
        )),
    }
    let latest = Arc::new(Mutex::new(agent.state.clone()));

    // Hole punching, then the relay (issue 19 items 2, 3): a packet waits for a peer
    // without a fixed address; the centre tells both of us at once, the peer opens
    // its NAT towards us; if we are still not through, the centre allocates a relay.
    let introducer = {
        let (say, client) = (say.clone(), agent.client.clone());
        let handle = tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handle()
            .clone();
        tokio::spawn(async move {
            let mut last: std::collections::HashMap<String, std::time::Instant> =
                Default::default();
            while let Some((conn, asked)) = intro_rx.recv().await {
                if last
                    .get(&conn)
                    .is_some_and(|t| t.elapsed() < INTRODUCE_EVERY)
                {
                    continue;
                }
                last.insert(conn.clone(), std::time::Instant::now());
                let (say, client, last_up) = (say.clone(), client.clone(), last_up.clone());
                let handle = handle.clone();
                tokio::spawn(async move {
                    let body = serde_json::json!({ "peer_device_id": conn });
                    let intro = match client
                        .post::<_, serde_json::Value>("/api/v1/device/introduce", &body)
                        .await
                    {
                        Ok(v) => v,
                        Err(e) => return say(format!("the centre could not introduce us to {conn} ({e:#}) / センターによる紹介に失敗")),
                    };
                    // The centre knows both NATs: behind a symmetric one and another
                    // NAT, punching cannot work and the relay is asked for at once.
                    if intro["punch"].as_bool() != Some(false) {
                        // The peer hears of it now and opens its NAT.
                        let waited = resend_soon(&handle, &conn).await;
                        tokio::time::sleep(PUNCH_WAIT.saturating_sub(waited)).await;
                        let came_up = last_up
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(&conn)
                            .is_some_and(|t| *t >= asked);
                        if came_up {
                            return;
                        }
                    } else {
                        say(format!("{conn}: both NATs rule hole punching out (one is symmetric): straight to the relay / 対称型 NAT のため直接リレーへ"));
                    }
                    match client
                        .post::<_, serde_json::Value>("/api/v1/device/relay", &body)
                        .await
                    {
                        Ok(_) => say(format!("no direct path to {conn}: the centre allocated a relay / 直接接続できないためリレーを使用")),
                        Err(e) => say(format!("no direct path to {conn}, and no relay ({e:#}) / 直接接続できず、リレーもありません")),
                    }
                });
            }
        })
    };
    let reporter = {
        let (say, client, tunnels) = (say.clone(), agent.client.clone(), tunnels.clone());
        let store = store.clone();
        tokio::spawn(async move {
            // Reports wait here until the centre has taken them (it may be away); the
            // queue is kept in the key store so a restart or a crash loses none.
            let mut pending: VecDeque<SessionReport> = store
                .get_file(PENDING_REPORTS_FILE)
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let save = |pending: &VecDeque<SessionReport>| {
                if let Err(e) = serde_json::to_vec(pending)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(store.put_file(PENDING_REPORTS_FILE, &b)?))
                {
                    tracing::warn!(error = %e, "cannot keep unsent session reports");
                }
            };
            loop {
                let ev = if pending.is_empty() {
                    sessions_rx.recv().await
                } else {
                    tokio::select! {
                        ev = sessions_rx.recv() => ev,
                        _ = tokio::time::sleep(REPORT_RETRY) => None,
                    }
                };
                if let Some(ev) = ev {
                    let Some(report) = session_report(&ev, &tunnels) else {
                        continue;
                    };
                    match &ev {
                        SessionEvent::Up {
                            conn,
                            session,
                            relay: None,
                        } => say(format!("session {session} to {conn}: up")),
                        SessionEvent::Up {
                            conn,
                            session,
                            relay: Some(r),
                        } => say(format!(
                            "session {session} to {conn}: up, through the relay {r} / リレー経由"
                        )),
                        SessionEvent::NeedsIntroduction { .. } => continue,
                        SessionEvent::Down {
                            conn,
                            session,
                            counts,
                            reason,
                        } => say(format!(
                            "session {session} to {conn}: down ({reason}); {} bytes in, {} bytes out",
                            counts.bytes_in, counts.bytes_out
                        )),
                    }
                    pending.push_back(report);
                    if pending.len() > MAX_PENDING_REPORTS {
                        pending.pop_front();
                        say("too many unreported sessions: the oldest report was dropped".into());
                    }
                    save(&pending);
                }
                let queued = pending.len();
                while let Some(r) = pending.front() {
                    match client.report_session(r).await {
                        Ok(()) => {
                            pending.pop_front();
                        }
                        Err(e) if crate::client::refusal_code(&e).is_some() => {
                            say(format!("the centre refused a session report: {e:#}"));
                            pending.pop_front();
                        }
                        Err(_) => break, // unreachable: retry later
                    }
                }
                if pending.len() != queued {
                    save(&pending);
                }
            }
        })
    };
    let housekeeping = {
        let (tunnels, latest, say) = (tunnels.clone(), latest.clone(), say.clone());
        let (client, store) = (agent.client.clone(), store.clone());
        let natt_port = opts.natt_port;
        let reconnect = agent.reconnect.clone();
        tokio::spawn(async move {
            let mut expiry = tokio::time::interval(EXPIRY_CHECK);
            let mut crl = tokio::time::interval(CRL_REFRESH);
            let centre = crate::candidates::centre_addr(&client).await.ok().flatten();
            loop {
                tokio::select! {
                    _ = expiry.tick() => {
                        let st = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        reconcile(&tunnels, &st, &say);
                        // Our address moved: tell the centre now, not at the next refresh.
                        if centre.is_some_and(|c| crate::candidates::local_moved(c, natt_port, &candidates)) {
                            reconnect.notify_one();
                            match crate::candidates::report(&client, natt_port, &prober, &mut candidates).await {
                                Ok(Some(c)) => say(format!("address changed: now reachable at {c} (reported to the centre)")),
                                Ok(None) => {}
                                Err(e) => tracing::debug!("candidates not reported: {e:#}"),
                            }
                        }
                    }
                    _ = crl.tick() => {
                        if let Ok(serials) = refresh_pki(&client, store.as_ref()).await {
                            tunnels.lock().unwrap_or_else(|p| p.into_inner()).set_revoked(serials);
                        }
                        match crate::candidates::report(&client, natt_port, &prober, &mut candidates).await {
                            Ok(Some(c)) => say(format!("now reachable at {c} (reported to the centre)")),
                            Ok(None) => {}
                            Err(e) => tracing::debug!("candidates not reported: {e:#}"),
                        }
                    }
                }
            }
        })
    };

    let metrics = opts.metrics.clone();
    let mut on = |u: &Update, st: &SyncState| {
        if let Some(m) = &metrics {
            m.on_update(u, st);
        }
        if let Some(o) = &observe {
            o(u, st);
        }
        match u {
            Update::Connected { version } => say(format!(
                "connected to the centre, resuming after event {version}; {} grants held",
                st.grants.len()
            )),
            Update::GrantInstalled {
                grant_id,
                peer,
                version,
            } => say(format!(
                "grant {grant_id} to {peer} installed (version {version})"
            )),
            Update::GrantRemoved { grant_id, reason } => {
                say(format!("grant {grant_id} removed: {reason}"))
            }
            Update::PolicyChanged { seq } => say(format!("policy changed (event {seq})")),
            Update::Revoked => say("this device has been REVOKED: all tunnels go down".into()),
            Update::SessionCut { session_id, reason } => {
                let cut = tokio::task::block_in_place(|| {
                    let t = tunnels.lock().unwrap_or_else(|p| p.into_inner());
                    t.handle().cut(session_id)
                });
                match cut {
                    Ok(true) => say(format!(
                        "session {session_id} cut by an operator ({reason}): SAs deleted"
                    )),
                    Ok(false) => say(format!(
                        "session {session_id} cut by an operator: not up here"
                    )),
                    Err(e) => say(format!("cannot cut session {session_id}: {e:#}")),
                }
            }
            Update::WindowEnding {
                approval,
                seconds_left,
            } => say(crate::sync::window_ending_message(approval, *seconds_left)),
            Update::Introduce { peer, candidates } => {
                let r = tokio::task::block_in_place(|| {
                    let t = tunnels.lock().unwrap_or_else(|p| p.into_inner());
                    t.handle().open_mappings(peer, candidates.clone())
                });
                match r {
                    Ok(true) => say(format!(
                        "introduced to {peer}: opening our NAT towards {} / 穴あけ",
                        candidates
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    Ok(false) => say(format!("introduced to {peer}: no tunnel to it here")),
                    Err(e) => say(format!("introduced to {peer}: {e:#}")),
                }
            }
            Update::Relay {
                peer,
                relay,
                binding,
                initiate,
            } => {
                let (r, handle) = tokio::task::block_in_place(|| {
                    let t = tunnels.lock().unwrap_or_else(|p| p.into_inner());
                    let r = t.handle().use_relay(RelayUse {
                        conn: peer.clone(),
                        relay: *relay,
                        binding: binding.clone(),
                        initiate: *initiate,
                    });
                    (r, t.handle().clone())
                });
                match r {
                    Ok(true) => {
                        say(format!(
                            "tunnel to {peer}: through the relay {relay} / リレー {relay} 経由"
                        ));
                        // The peer binds at the relay as we do; until it has, the
                        // relay has nobody to forward our IKE_SA_INIT to.
                        if *initiate {
                            let peer = peer.clone();
                            tokio::spawn(async move { resend_soon(&handle, &peer).await });
                        }
                    }
                    Ok(false) => say(format!("relay for {peer}: no tunnel to it here")),
                    Err(e) => say(format!("relay for {peer}: {e:#}")),
                }
            }
            Update::Other { seq, kind } => say(format!("event {seq}: {kind}")),
            Update::Witness(o) => say(crate::witness::describe(o)),
            Update::WitnessUnavailable { error } => say(format!(
                "audit checkpoint not witnessed now ({error}); tried again on the next one / 監査チェックポイントを今は確認できません"
            )),
            Update::Disconnected { error, retry_in } => say(format!(
                "centre unreachable ({error}); tunnels keep running; retrying in {retry_in:?}"
            )),
        }
        *latest.lock().unwrap_or_else(|p| p.into_inner()) = st.clone();
        if !matches!(
            u,
            Update::Disconnected { .. } | Update::Witness(_) | Update::WitnessUnavailable { .. }
        ) {
            reconcile(&tunnels, st, &say);
        }
    };
    let r = agent.run(&mut on).await;
    housekeeping.abort();
    reporter.abort();
    introducer.abort();
    drop(firewall);
    r
}

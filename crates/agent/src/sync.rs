//! The agent's sync loop (R-ENR-2, R-POL-5): hold one event stream to the centre, keep
//! the device's signed connection info current, and survive anything in between.
//!
//! State (the last sequence number seen and every live grant's connection info) is
//! written atomically to the key store after each event, so a restart or `kill -9`
//! resumes exactly where it stopped; a dropped stream resumes from that number, so a
//! push is never lost (the centre replays what was missed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use dodvpn_pki::{KeyStore, Tier};
use dodvpn_policy::ConnectionInfo;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::client::CenterClient;
use crate::enroll::{ca_pem, load_config};
use crate::sse::SseParser;

pub const STATE_FILE: &str = "state.json";
/// The centre's event carrying a new audit checkpoint (issue 15 step 3).
pub const CHECKPOINT_EVENT: &str = "audit.checkpoint";

/// Longest wait between reconnection attempts: a centre back from an outage reaches
/// every agent within this, so changes made then cut tunnels promptly.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The centre sends a keep-alive on the event stream every 15 s: this long without
/// a byte means the path is gone (our address changed, a NAT forgot the mapping)
/// even though TCP has not noticed yet, so the stream is opened again.
const STREAM_SILENCE: Duration = Duration::from_secs(40);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedInfo {
    pub info: ConnectionInfo,
    pub signature: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncState {
    /// Sequence number of the last event applied.
    pub version: i64,
    /// grant id → connection info, as signed by the centre.
    pub grants: BTreeMap<String, SignedInfo>,
    /// Certificate that signs connection info.
    pub signer: Option<String>,
    /// True once the centre said this device is revoked.
    pub revoked: bool,
}

impl SyncState {
    pub fn load(store: &dyn KeyStore) -> anyhow::Result<SyncState> {
        match store.get_file(STATE_FILE)? {
            None => Ok(SyncState::default()),
            Some(b) => {
                serde_json::from_slice(&b).context("state.json in the key store is unreadable")
            }
        }
    }
    pub fn save(&self, store: &dyn KeyStore) -> anyhow::Result<()> {
        store.put_file(STATE_FILE, &serde_json::to_vec(self)?)?;
        Ok(())
    }
}

/// The vendor's warning that its maintenance window is about to end, in both languages.
pub fn window_ending_message(approval: &str, seconds_left: i64) -> String {
    format!(
        "WARNING: maintenance window {approval} ends in {seconds_left} s; its sessions are cut then / 警告: メンテナンス枠 {approval} はあと {seconds_left} 秒で終了し、その時点でセッションは切断されます"
    )
}

/// What the loop reports to whoever drives it (CLI printing, the data plane later).
#[derive(Debug)]
pub enum Update {
    Connected {
        version: i64,
    },
    GrantInstalled {
        grant_id: String,
        peer: String,
        version: u64,
    },
    GrantRemoved {
        grant_id: String,
        reason: String,
    },
    PolicyChanged {
        seq: i64,
    },
    Revoked,
    /// An operator cut this session (`dodvpn admin session cut`).
    SessionCut {
        session_id: String,
        reason: String,
    },
    /// A maintenance window this device works in is about to end: its tunnels go
    /// down when it does (TR 9.2). [`window_ending_message`] says it to the person.
    WindowEnding {
        approval: String,
        seconds_left: i64,
    },
    /// A peer wants to reach us (or we it) and its NAT may need a hole: open our
    /// mapping towards these addresses of it (issue 19 item 2).
    Introduce {
        peer: String,
        candidates: Vec<SocketAddr>,
    },
    /// Punching failed: the centre allocated a relay for us and this peer.
    Relay {
        peer: String,
        relay: SocketAddr,
        binding: Vec<u8>,
        initiate: bool,
    },
    Other {
        seq: i64,
        kind: String,
    },
    /// An audit checkpoint was witnessed: cosigned, or an alarm raised (witness.rs).
    Witness(crate::witness::Outcome),
    /// A checkpoint arrived but could not be witnessed now (centre busy or away).
    WitnessUnavailable {
        error: String,
    },
    Disconnected {
        error: String,
        retry_in: Duration,
    },
}

#[derive(Deserialize)]
struct WireEvent {
    seq: i64,
    kind: String,
    payload: serde_json::Value,
}

#[derive(Deserialize)]
struct DeviceState {
    version: i64,
    connection_info: Vec<SignedInfo>,
    signer_certificate: String,
}

/// How old an introduction or relay event may be and still be acted on.
const FRESH_MS: i64 = 120_000;

fn fresh(payload: &serde_json::Value) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    payload["at_ms"]
        .as_i64()
        .is_some_and(|at| (now - at).abs() <= FRESH_MS)
}

/// "IP:port" strings as addresses; anything else is left out.
fn addrs(v: &serde_json::Value) -> Vec<SocketAddr> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Check the centre's signature on connection info before it is believed.
pub fn verify(signer_pem: &str, s: &SignedInfo) -> anyhow::Result<()> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&s.signature)
        .context("connection info signature is not base64")?;
    dodvpn_pki::verify_blob(signer_pem, &s.info.canonical_bytes(), &sig)
        .context("connection info signature does not verify")?;
    Ok(())
}

pub struct Agent {
    pub store: Arc<dyn KeyStore>,
    pub client: CenterClient,
    pub device_id: String,
    pub state: SyncState,
    /// Notified when our address changed: the event stream's connection still has
    /// the old source and is opened again at once.
    pub reconnect: Arc<tokio::sync::Notify>,
}

impl Agent {
    pub fn open(store: Arc<dyn KeyStore>, center_override: Option<&str>) -> anyhow::Result<Agent> {
        let cfg = load_config(store.as_ref())?
            .context("this key store is not enrolled yet: run `dodvpn agent enroll` first")?;
        if store.cert(Tier::Service)?.is_none() {
            bail!("the key store holds no service certificate: run `dodvpn agent enroll`");
        }
        let ca = ca_pem(store.as_ref())?;
        let center = center_override.unwrap_or(&cfg.center).to_string();
        let client = CenterClient::device(&center, &ca, store.clone(), Tier::Service)?;
        let state = SyncState::load(store.as_ref())?;
        Ok(Agent {
            store,
            client,
            device_id: cfg.device_id,
            state,
            reconnect: Arc::default(),
        })
    }

    /// Full resync from the centre's current state (first start, or state lost).
    pub async fn resync(&mut self) -> anyhow::Result<()> {
        let st: DeviceState = self.client.get("/api/v1/device/state").await?;
        let mut grants = BTreeMap::new();
        for s in st.connection_info {
            verify(&st.signer_certificate, &s)?;
            grants.insert(s.info.grant_id.clone(), s);
        }
        self.state = SyncState {
            version: st.version,
            grants,
            signer: Some(st.signer_certificate),
            revoked: false,
        };
        self.state.save(self.store.as_ref())
    }

    /// Apply one pushed event; returns what changed.
    fn apply(&mut self, ev: WireEvent) -> anyhow::Result<Update> {
        let up = match ev.kind.as_str() {
            "grant" => {
                let s: SignedInfo = serde_json::from_value(ev.payload["connection_info"].clone())
                    .context("a grant event without readable connection info")?;
                let signer = self
                    .state
                    .signer
                    .as_deref()
                    .context("no signer certificate known")?;
                verify(signer, &s)?;
                let up = Update::GrantInstalled {
                    grant_id: s.info.grant_id.clone(),
                    peer: s.info.peer.device_id.clone(),
                    version: s.info.version,
                };
                self.state.grants.insert(s.info.grant_id.clone(), s);
                up
            }
            "grant_withdrawn" => {
                let id = ev.payload["grant_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.state.grants.remove(&id);
                Update::GrantRemoved {
                    grant_id: id,
                    reason: ev.payload["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                }
            }
            "peer_revoked" => {
                let peer = ev.payload["device_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let gone: Vec<String> = self
                    .state
                    .grants
                    .iter()
                    .filter(|(_, s)| s.info.peer.device_id == peer)
                    .map(|(k, _)| k.clone())
                    .collect();
                for g in &gone {
                    self.state.grants.remove(g);
                }
                Update::GrantRemoved {
                    grant_id: gone.join(","),
                    reason: format!("peer {peer} revoked"),
                }
            }
            "revoked" => {
                self.state.grants.clear();
                self.state.revoked = true;
                Update::Revoked
            }
            "policy_changed" => Update::PolicyChanged { seq: ev.seq },
            "session_cut" => Update::SessionCut {
                session_id: ev.payload["session_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                reason: ev.payload["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            },
            "approval_ending" => Update::WindowEnding {
                approval: ev.payload["approval"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                seconds_left: ev.payload["seconds_left"].as_i64().unwrap_or(0),
            },
            // Only fresh ones: an introduction replayed after a reconnect is stale.
            "introduce" | "relay" if !fresh(&ev.payload) => Update::Other {
                seq: ev.seq,
                kind: format!("{} (stale, ignored)", ev.kind),
            },
            "introduce" => Update::Introduce {
                peer: ev.payload["peer_device_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                candidates: addrs(&ev.payload["candidates"]),
            },
            "relay" => {
                let relay = ev.payload["relay"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .context("a relay event without a relay address")?;
                let binding = base64::engine::general_purpose::STANDARD
                    .decode(ev.payload["binding"].as_str().unwrap_or_default())
                    .context("a relay event with an unreadable binding")?;
                Update::Relay {
                    peer: ev.payload["peer_device_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    relay,
                    binding,
                    initiate: ev.payload["initiate"].as_bool().unwrap_or(false),
                }
            }
            _ => Update::Other {
                seq: ev.seq,
                kind: ev.kind.clone(),
            },
        };
        if ev.seq > self.state.version {
            self.state.version = ev.seq;
        }
        self.state.save(self.store.as_ref())?;
        Ok(up)
    }

    /// Hold the stream until it breaks; each event is applied and reported.
    pub async fn stream_once(
        &mut self,
        on: &mut (dyn FnMut(&Update, &SyncState) + Send),
    ) -> anyhow::Result<()> {
        if self.state.signer.is_none() {
            self.resync().await?;
        }
        let resp = self
            .client
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/device/events?since={}", self.state.version),
            )
            .send()
            .await
            .context("cannot open the event stream")?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(crate::client::api_error(status, &body).into());
        }
        on(
            &Update::Connected {
                version: self.state.version,
            },
            &self.state,
        );
        let mut parser = SseParser::default();
        let mut body = resp.bytes_stream();
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout(STREAM_SILENCE, body.next()) => n,
                _ = self.reconnect.notified() => bail!("our address changed: opening the event stream again / アドレス変更のためイベントストリームを再接続"),
            };
            let Ok(next) = next else {
                bail!(
                    "nothing on the event stream for {} s (the centre sends a keep-alive every 15 s): opening it again / イベントストリームが無応答のため再接続",
                    STREAM_SILENCE.as_secs()
                );
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.context("the event stream broke")?;
            for e in parser.push(&chunk)? {
                if e.event.as_deref() == Some("hello") {
                    continue;
                }
                let ev: WireEvent =
                    serde_json::from_str(&e.data).context("unreadable event from the centre")?;
                if ev.kind == CHECKPOINT_EVENT {
                    // Not a per-device event: no sequence number, nothing to save here.
                    let up = match crate::witness::witness(
                        &self.client,
                        self.store.as_ref(),
                        &self.device_id,
                    )
                    .await
                    {
                        Ok(o) => Update::Witness(o),
                        Err(e) => Update::WitnessUnavailable {
                            error: format!("{e:#}"),
                        },
                    };
                    on(&up, &self.state);
                    continue;
                }
                if ev.seq <= self.state.version {
                    continue; // already applied before a reconnect
                }
                let up = self.apply(ev)?;
                on(&up, &self.state);
                if matches!(up, Update::Revoked) {
                    bail!("this device has been revoked by the centre");
                }
            }
        }
        bail!("the centre closed the event stream")
    }

    /// Run forever, reconnecting with capped exponential backoff. Returns only when the
    /// device has been revoked.
    pub async fn run(
        &mut self,
        on: &mut (dyn FnMut(&Update, &SyncState) + Send),
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(250);
        loop {
            let started = Instant::now();
            let err = match self.stream_once(on).await {
                Ok(()) => continue,
                Err(e) => e,
            };
            if self.state.revoked {
                return Err(err);
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(250);
            }
            on(
                &Update::Disconnected {
                    error: format!("{err:#}"),
                    retry_in: backoff,
                },
                &self.state,
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

//! The agent's Prometheus metrics (issue 17 item 3, docs/metrics.md), served on a local
//! port by `dodvpn agent run --metrics-listen ADDR` (crates/metrics).
//!
//! Handshakes and rekeys are told by the tunnel core as they happen
//! ([`Telemetry`]); tunnels, traffic per peer and drops are read from the data
//! plane's status snapshot at each scrape; the centre connection from the sync loop.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use dodvpn_dataplane::counters::DropReason;
use dodvpn_tunnel::daemon::{Handle, Status};
use dodvpn_tunnel::telemetry::{HandshakeResult, RekeyKind, Role, Telemetry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::sync::{SyncState, Update};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    /// The peer device's id (the connection's name).
    peer: String,
    role: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RekeyLabels {
    peer: String,
    sa: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    peer: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterLabels {
    direction: &'static str,
    /// `service`: inside the selectors but no grant allows it; `selector`: an address
    /// outside the SA's selectors (transit, spoofing).
    why: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Seconds: an IKE handshake on a LAN takes milliseconds, over a congested line or with
/// retransmissions seconds.
const HANDSHAKE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn handshake_histogram() -> Histogram {
    Histogram::new(HANDSHAKE_BUCKETS)
}

const TUNNEL_STATES: [&str; 4] = ["established", "connecting", "trap", "down"];

/// The filter's refusals among the drop reasons: (reason, direction, why).
const FILTER_REASONS: [(DropReason, &str, &str); 4] = [
    (DropReason::InboundFiltered, "inbound", "service"),
    (DropReason::InboundSelector, "inbound", "selector"),
    (DropReason::OutboundFiltered, "outbound", "service"),
    (DropReason::OutboundSelector, "outbound", "selector"),
];

pub struct AgentMetrics {
    registry: Registry,
    handle: OnceLock<Handle>,
    center_connected: Gauge,
    center_disconnects: Counter,
    grants: Gauge,
    revoked: Gauge,
    dataplane_up: Gauge,
    tunnels: Family<StateLabel, Gauge>,
    child_sas: Gauge,
    handshakes: Family<HandshakeLabels, Counter>,
    handshake_seconds: Family<RoleLabel, Histogram, fn() -> Histogram>,
    rekeys: Family<RekeyLabels, Counter>,
    bytes: Family<TrafficLabels, Counter>,
    packets: Family<TrafficLabels, Counter>,
    drops: Family<ReasonLabel, Counter>,
    filter_refusals: Family<FilterLabels, Counter>,
    /// The snapshot values already added to each counter read from the data plane
    /// (they are absolute there, increments here).
    seen: Mutex<HashMap<(String, &'static str, &'static str), u64>>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentMetrics")
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> AgentMetrics {
        let mut r = Registry::with_prefix("dodvpn_agent");
        let m = AgentMetrics {
            registry: Registry::default(),
            handle: OnceLock::new(),
            center_connected: Gauge::default(),
            center_disconnects: Counter::default(),
            grants: Gauge::default(),
            revoked: Gauge::default(),
            dataplane_up: Gauge::default(),
            tunnels: Family::default(),
            child_sas: Gauge::default(),
            handshakes: Family::default(),
            handshake_seconds: Family::new_with_constructor(handshake_histogram),
            rekeys: Family::default(),
            bytes: Family::default(),
            packets: Family::default(),
            drops: Family::default(),
            filter_refusals: Family::default(),
            seen: Mutex::default(),
        };
        let build: Family<VersionLabel, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "The agent's version (always 1)", build);
        r.register(
            "center_connected",
            "1 while the event stream to the centre is open",
            m.center_connected.clone(),
        );
        r.register(
            "center_disconnects",
            "Times the centre became unreachable (the tunnels keep running meanwhile)",
            m.center_disconnects.clone(),
        );
        r.register(
            "grants",
            "Signed grants (connection info) this device holds",
            m.grants.clone(),
        );
        r.register(
            "revoked",
            "1 once the centre said this device is revoked",
            m.revoked.clone(),
        );
        r.register(
            "dataplane_up",
            "1 when the data plane answered the last scrape (0 with --sync-only)",
            m.dataplane_up.clone(),
        );
        r.register(
            "tunnels",
            "Connections to peer devices by state (established = the tunnel is up)",
            m.tunnels.clone(),
        );
        r.register(
            "child_sas",
            "ESP child SAs installed in the data plane",
            m.child_sas.clone(),
        );
        r.register(
            "handshakes",
            "IKE SA negotiations by peer, role and result",
            m.handshakes.clone(),
        );
        r.register_with_unit(
            "handshake_duration",
            "Time from the first IKE_SA_INIT to the established IKE SA (successful handshakes)",
            Unit::Seconds,
            m.handshake_seconds.clone(),
        );
        r.register(
            "rekeys",
            "Rekeys by peer and SA kind (ike or child)",
            m.rekeys.clone(),
        );
        r.register_with_unit(
            "tunnel",
            "Inner (plaintext) bytes through the tunnels by peer and direction",
            Unit::Bytes,
            m.bytes.clone(),
        );
        r.register(
            "tunnel_packets",
            "Inner packets through the tunnels by peer and direction",
            m.packets.clone(),
        );
        r.register(
            "drops",
            "Packets the data plane dropped, by reason",
            m.drops.clone(),
        );
        r.register(
            "filter_refusals",
            "Packets the per-grant service filter refused (also counted in drops)",
            m.filter_refusals.clone(),
        );
        for s in TUNNEL_STATES {
            drop(m.tunnels.get_or_create(&StateLabel { state: s }));
        }
        for reason in DropReason::ALL {
            drop(m.drops.get_or_create(&ReasonLabel {
                reason: reason.name(),
            }));
        }
        for (_, direction, why) in FILTER_REASONS {
            drop(
                m.filter_refusals
                    .get_or_create(&FilterLabels { direction, why }),
            );
        }
        AgentMetrics { registry: r, ..m }
    }

    /// The running data plane whose status each scrape reads.
    pub fn attach(&self, handle: Handle) {
        let _ = self.handle.set(handle);
    }

    /// What the sync loop reported.
    pub fn on_update(&self, u: &Update, st: &SyncState) {
        match u {
            Update::Connected { .. } => {
                self.center_connected.set(1);
            }
            // `set` answers the previous value: an outage is counted once, not once per retry.
            Update::Disconnected { .. } if self.center_connected.set(0) == 1 => {
                self.center_disconnects.inc();
            }
            _ => {}
        }
        self.grants.set(st.grants.len() as i64);
        self.revoked.set(i64::from(st.revoked));
    }

    /// Add what a counter gained since the last snapshot (the data plane's values
    /// only grow; a smaller one means it started again and counts from zero).
    fn advance(&self, c: &Counter, key: (String, &'static str, &'static str), now: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let last = seen.insert(key, now).unwrap_or(0);
        let delta = if now >= last { now - last } else { now };
        if delta > 0 {
            c.inc_by(delta);
        }
    }

    fn absorb(&self, st: &Status) {
        let mut states: HashMap<&str, i64> = TUNNEL_STATES.iter().map(|s| (*s, 0)).collect();
        let mut children = 0;
        for c in &st.connections {
            *states.entry(c.state.as_str()).or_insert(0) += 1;
            children += c.children.len();
            for (direction, bytes, packets) in [
                ("in", c.totals.bytes_in, c.totals.packets_in),
                ("out", c.totals.bytes_out, c.totals.packets_out),
            ] {
                let l = TrafficLabels {
                    peer: c.name.clone(),
                    direction,
                };
                self.advance(
                    &self.bytes.get_or_create(&l),
                    (c.name.clone(), direction, "bytes"),
                    bytes,
                );
                self.advance(
                    &self.packets.get_or_create(&l),
                    (c.name.clone(), direction, "packets"),
                    packets,
                );
            }
        }
        for s in TUNNEL_STATES {
            let n = states.get(s).copied().unwrap_or(0);
            self.tunnels.get_or_create(&StateLabel { state: s }).set(n);
        }
        self.child_sas.set(children as i64);
        let drop_count = |r: DropReason| {
            st.drops
                .iter()
                .find(|(name, _)| name == r.name())
                .map_or(0, |(_, n)| *n)
        };
        for reason in DropReason::ALL {
            let n = drop_count(reason);
            self.advance(
                &self.drops.get_or_create(&ReasonLabel {
                    reason: reason.name(),
                }),
                (String::new(), reason.name(), "drops"),
                n,
            );
        }
        for (reason, direction, why) in FILTER_REASONS {
            self.advance(
                &self
                    .filter_refusals
                    .get_or_create(&FilterLabels { direction, why }),
                (String::new(), reason.name(), "filter"),
                drop_count(reason),
            );
        }
    }

    /// The exposition text, with the data plane's status read now.
    pub async fn render(&self) -> String {
        if let Some(h) = self.handle.get().cloned() {
            match tokio::task::spawn_blocking(move || h.status()).await {
                Ok(Ok(st)) => {
                    self.dataplane_up.set(1);
                    self.absorb(&st);
                }
                Ok(Err(e)) => {
                    self.dataplane_up.set(0);
                    tracing::warn!(error = %format!("{e:#}"), "metrics: the data plane did not answer");
                }
                Err(e) => {
                    self.dataplane_up.set(0);
                    tracing::warn!(error = %e, "metrics: the status task failed");
                }
            }
        }
        dodvpn_metrics::encode(&self.registry)
    }
}

impl Telemetry for AgentMetrics {
    fn handshake(&self, conn: &str, role: Role, result: HandshakeResult, took: Duration) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                peer: conn.to_string(),
                role: role.as_str(),
                result: result.as_str(),
            })
            .inc();
        if result == HandshakeResult::Established {
            self.handshake_seconds
                .get_or_create(&RoleLabel {
                    role: role.as_str(),
                })
                .observe(took.as_secs_f64());
        }
    }

    fn rekey(&self, conn: &str, kind: RekeyKind) {
        self.rekeys
            .get_or_create(&RekeyLabels {
                peer: conn.to_string(),
                sa: kind.as_str(),
            })
            .inc();
    }
}

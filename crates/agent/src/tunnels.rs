//! The agent's tunnels (TR D.3, D.4; R-DP-3, R-POL-5): every grant the centre signed
//! becomes part of one connection to that grant's peer device, run by the same control
//! thread as `dodvpn tunnel`. Connections start on the first packet and go when idle;
//! a grant withdrawn, narrowed or expired takes its connection's SAs down at once.
//!
//! Peers prove themselves with a tier-2 service certificate issued by the centre's
//! service CA, not revoked in the last CRL the agent fetched (R-PKI-3, R-PKI-4).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use dodvpn_dataplane::{FlowRule, Side};
use dodvpn_ike::{LocalAuth, PeerValidator, RemoteAuth};
use dodvpn_pki::{KeyStore, Tier};
use dodvpn_policy::{ConnectionInfo, Proto, Role};
use dodvpn_tunnel::config::Start;
use dodvpn_tunnel::daemon::{ConnSpec, Daemon, Handle, Observer};
use dodvpn_tunnel::peer::{PeerCertValidator, UnixTime, EKU_CLIENT_AUTH, EKU_SERVER_AUTH};
use dodvpn_tunnel::TunnelConfig;
use dodvpn_wire::{Identification, TsRange};

use crate::signer::KeyStoreSigner;
use ipnet::IpNet;

use crate::sync::SyncState;

/// Key-store files the tunnels keep so that they work with the centre away.
pub const SERVICE_CA_FILE: &str = "service-ca.pem";
pub const SERVICE_CRL_FILE: &str = "service-crl.pem";

/// Interface and timers of the agent's data plane.
#[derive(Clone, Debug)]
pub struct TunnelOptions {
    pub interface: String,
    pub mtu: u16,
    pub ike_port: u16,
    pub natt_port: u16,
    /// Child SAs idle this long are deleted, then the IKE SA.
    pub idle_timeout: Duration,
    /// Control socket (`dodvpn tunnel status --control …` works on it).
    pub control: PathBuf,
    /// Where handshakes and rekeys are counted and the status is read for `/metrics`.
    pub metrics: Option<Arc<crate::metrics::AgentMetrics>>,
}

impl Default for TunnelOptions {
    fn default() -> Self {
        TunnelOptions {
            interface: "dodvpn0".into(),
            mtu: 1400,
            ike_port: 500,
            natt_port: 4500,
            idle_timeout: Duration::from_secs(60),
            control: PathBuf::from("/run/dodvpn/agent.sock"),
            metrics: None,
        }
    }
}

/// Serials of revoked service certificates, from the last CRL that verified.
pub type Revoked = Arc<RwLock<BTreeSet<u64>>>;

/// Checks a peer's certificate in IKE_AUTH: a tier-2 service certificate of the
/// centre's service CA, valid now, not revoked, carrying the identity the grant names.
pub struct ServiceCertValidator {
    pub service_ca_pem: String,
    pub revoked: Revoked,
}

impl ServiceCertValidator {
    /// [`PeerValidator::validate`] at a given time.
    pub fn validate_at(
        &self,
        end_entity_der: &[u8],
        peer_id: &Identification,
        now: UnixTime,
    ) -> Result<(), String> {
        let revoked = self.revoked.clone();
        // The path is checked by the tunnel's validator (webpki); the tier-2 profile
        // and the CRL's serials are the centre's rules on top of it.
        PeerCertValidator::from_pem(self.service_ca_pem.as_bytes())
            .map_err(|e| format!("peer certificate refused: the service CA: {e:#}"))?
            .requiring_usages(&[EKU_CLIENT_AUTH, EKU_SERVER_AUTH])
            .requiring_identity()
            .with_profile(|der| match dodvpn_pki::inspect(der) {
                Ok(info) if info.tier == Some(Tier::Service) => dodvpn_pki::check_certificate_key(der)
                    .map_err(|e| format!("peer certificate refused: its key: {e}")),
                Ok(info) => Err(format!(
                    "peer certificate refused: wrong certificate profile: expected a tier-2 service certificate, found {}",
                    info.profile.map_or("no dodvpn profile".to_string(), |p| p.to_string())
                )),
                Err(e) => Err(format!("peer certificate refused: {e}")),
            })
            .with_revocation(move |serial| {
                // dodvpn serials are 64-bit; a longer one cannot be in our CRL.
                serial.len() <= 8 && {
                    let n = serial.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                    revoked.read().unwrap_or_else(|p| p.into_inner()).contains(&n)
                }
            })
            .validate_at(end_entity_der, peer_id, now)
    }
}

impl PeerValidator for ServiceCertValidator {
    fn validate(&self, end_entity_der: &[u8], peer_id: &Identification) -> Result<(), String> {
        self.validate_at(end_entity_der, peer_id, UnixTime::now())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The address this host uses towards `peer` (a routing lookup; nothing is sent).
fn local_addr_towards(peer: IpAddr) -> anyhow::Result<IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = UdpSocket::bind(any)?;
    s.connect(SocketAddr::new(peer, 500))
        .with_context(|| format!("no route to peer {peer}"))?;
    Ok(s.local_addr()?.ip())
}

/// A peer endpoint from connection info: "IP" or "IP:port" (the port is IKE's, 500).
fn endpoint_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Everything one peer device's connection is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPlan {
    pub peer_device: String,
    /// The peer's endpoint; `None`: we cannot dial it, but it may dial us (issue 19).
    pub remote_addr: Option<IpAddr>,
    /// Where else the peer says it may be reached (its local and public NAT-T
    /// addresses): dialled when there is no endpoint, or after it failed (issue 19).
    pub candidates: Vec<SocketAddr>,
    pub initiate: bool,
    pub local_identity: String,
    pub peer_identity: String,
    pub local_nets: Vec<IpNet>,
    pub remote_nets: Vec<IpNet>,
    pub ike_proposals: Vec<String>,
    pub esp_proposals: Vec<String>,
    /// What the grants let through (R-DP-7), as data-plane rules.
    pub rules: Vec<FlowRule>,
    /// (grant id, version): what this plan was built from.
    pub grants: Vec<(String, u64)>,
    /// Our (real, visible) prefixes where the centre mapped our subnets
    /// (R-DP-8); `local_nets` and the rules' local hosts are visible ones.
    pub local_map: Vec<(IpNet, IpNet)>,
}

/// Group the grants valid at `now` by peer device; expired ones are reported in the
/// second list. A peer without a usable endpoint still gets its connection: we
/// cannot dial it, but it is identified by its certificate, so it may dial us from
/// any address (behind a NAT, on a dynamic address).
pub fn plan(
    grants: &BTreeMap<String, ConnectionInfo>,
    now: i64,
) -> (Vec<PeerPlan>, Vec<(String, String)>) {
    let mut by_peer: BTreeMap<String, PeerPlan> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (id, info) in grants {
        if !info.is_valid_at(now) {
            skipped.push((id.clone(), "expired or not yet valid".into()));
            continue;
        }
        let addr = info.peer.endpoint.as_deref().and_then(endpoint_ip);
        let p = by_peer
            .entry(info.peer.device_id.clone())
            .or_insert_with(|| PeerPlan {
                peer_device: info.peer.device_id.clone(),
                remote_addr: addr,
                candidates: Vec::new(),
                initiate: false,
                local_identity: info.local.identity.clone(),
                peer_identity: info.peer.identity.clone(),
                local_nets: Vec::new(),
                remote_nets: Vec::new(),
                ike_proposals: info.ike_proposals.clone(),
                esp_proposals: info.esp_proposals.clone(),
                rules: Vec::new(),
                grants: Vec::new(),
                local_map: Vec::new(),
            });
        for m in &info.local.mapping() {
            if !p.local_map.contains(m) {
                p.local_map.push(*m);
            }
        }
        p.rules.extend(rules_of(info));
        p.initiate |= matches!(info.role, Role::Initiator | Role::Both);
        for n in local_selectors(info) {
            if !p.local_nets.contains(&n) {
                p.local_nets.push(n);
            }
        }
        for n in &info.traffic_selectors.remote {
            if !p.remote_nets.contains(n) {
                p.remote_nets.push(*n);
            }
        }
        for c in info
            .peer
            .candidates
            .iter()
            .filter_map(|c| c.parse::<SocketAddr>().ok())
        {
            // The endpoint is dialled first, at the IKE port; the same address on
            // the NAT-T port is no second chance.
            if !p.candidates.contains(&c) && Some(c.ip()) != p.remote_addr {
                p.candidates.push(c);
            }
        }
        p.grants.push((id.clone(), info.version));
    }
    let mut plans: Vec<PeerPlan> = by_peer.into_values().collect();
    for p in &mut plans {
        if p.rules.is_empty() {
            // Grants that name no service allow nothing; an empty rule list would
            // mean "everything within the selectors".
            p.rules.push(FlowRule::service(Side::Local, Some(255), &[]));
        }
    }
    (plans, skipped)
}

/// Our selectors of `info` as the peer sees them. The centre already sends
/// visible selectors (R-DP-8); one still inside a mapped real prefix is moved
/// into its visible prefix, so the data plane's check after translation holds.
fn local_selectors(info: &ConnectionInfo) -> Vec<IpNet> {
    dodvpn_policy::mapping::to_visible(
        &info.traffic_selectors.local,
        &info.local.subnets,
        &info.local.mapped_subnets,
    )
}

/// One grant's services as rules: the initiator (applicant) opens connections to the
/// responder's hosts; replies come back; the other way round nothing is opened.
pub fn rules_of(info: &ConnectionInfo) -> Vec<FlowRule> {
    let openers: &[Side] = match info.role {
        Role::Initiator => &[Side::Local],
        Role::Responder => &[Side::Remote],
        Role::Both => &[Side::Local, Side::Remote],
    };
    let mut out = Vec::new();
    for opener in openers {
        for svc in &info.services {
            use dodvpn_dataplane::filter::proto;
            // `icmp` is ICMP for IPv4 and ICMPv6 for IPv6 inner subnets (issue 16 point 4):
            // a grant for ping works over either family.
            let protos: &[Option<u8>] = match svc.proto {
                Proto::Any => &[None],
                Proto::Tcp => &[Some(proto::TCP)],
                Proto::Udp => &[Some(proto::UDP)],
                Proto::Icmp => &[Some(proto::ICMP), Some(proto::ICMPV6)],
            };
            let ports: Vec<(u16, u16)> = svc.ports.iter().map(|r| (r.start, r.end)).collect();
            for p in protos {
                let mut rule = FlowRule::service(*opener, *p, &ports);
                rule.local_hosts = local_selectors(info);
                rule.remote_hosts = info.traffic_selectors.remote.clone();
                out.push(rule);
            }
        }
    }
    out
}

/// The agent's running data plane and what it has installed.
pub struct Tunnels {
    store: Arc<dyn KeyStore>,
    opts: TunnelOptions,
    handle: Handle,
    revoked: Revoked,
    service_ca_pem: String,
    installed: BTreeMap<String, PeerPlan>,
    /// Grants last installed per peer, kept after removal so a session that ends
    /// because its grants went can still be reported under them.
    last_grants: BTreeMap<String, Vec<String>>,
}

/// What one reconcile did, for progress output.
#[derive(Debug, Default)]
pub struct Changes {
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    /// Peers whose reported addresses changed (their SAs stay).
    pub moved: Vec<String>,
    pub removed: Vec<String>,
    pub skipped: Vec<(String, String)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.replaced.is_empty()
            && self.moved.is_empty()
            && self.removed.is_empty()
            && self.skipped.is_empty()
    }
}

/// When the agent goes (SIGTERM drops its tasks, and with them the last
/// reference), every IKE SA is deleted and the peers told, with a bounded wait
/// (`dodvpn_tunnel::daemon::SHUTDOWN_WAIT`), so none keeps a stale SA until DPD.
impl Drop for Tunnels {
    fn drop(&mut self) {
        match self.handle.shutdown() {
            Ok(n) if n > 0 => tracing::info!(ike_sas = n, "agent stopping: IKE SAs deleted"),
            Ok(_) => {}
            Err(e) => tracing::debug!("agent stopping: {e:#}"),
        }
    }
}

impl Tunnels {
    /// Start the data plane (needs root: TUN and UDP 500/4500) with no connection yet.
    /// `observer` hears sessions come and go. Returns once the control thread runs.
    pub fn start(
        store: Arc<dyn KeyStore>,
        opts: TunnelOptions,
        observer: Option<Observer>,
    ) -> anyhow::Result<Tunnels> {
        let service_ca_pem = store
            .get_file(SERVICE_CA_FILE)?
            .map(String::from_utf8)
            .transpose()
            .context("service-ca.pem in the key store is not text")?
            .context("the key store holds no service CA yet: run the agent once with the centre reachable")?;
        let revoked: Revoked = Arc::default();
        if let Some(crl) = store.get_file(SERVICE_CRL_FILE)? {
            let crl = String::from_utf8(crl).context("service-crl.pem is not text")?;
            let serials = dodvpn_pki::crl_revoked_serials(&crl, &service_ca_pem)
                .context("the stored service CRL does not verify")?;
            *revoked.write().unwrap_or_else(|p| p.into_inner()) = serials.into_iter().collect();
        }
        let cfg = TunnelConfig {
            interface: opts.interface.clone(),
            mtu: opts.mtu,
            address: None,
            ike_port: opts.ike_port,
            natt_port: opts.natt_port,
            control: opts.control.clone(),
            offload: true,
            connections: Vec::new(),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let metrics = opts.metrics.clone();
        std::thread::Builder::new()
            .name("tunnel-control".into())
            .spawn(
                move || match Daemon::with_connections(&cfg, Vec::new(), observer) {
                    Ok(mut d) => {
                        let handle = d.handle();
                        if let Some(m) = metrics {
                            m.attach(handle.clone());
                            d.set_telemetry(m);
                        }
                        if let Err(e) = dodvpn_tunnel::control::serve(&cfg.control, handle.clone())
                        {
                            let _ = tx.send(Err(e));
                            return;
                        }
                        let _ = tx.send(Ok(handle));
                        d.run(&|| false);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                },
            )?;
        let handle = rx
            .recv()
            .context("the tunnel control thread died while starting")??;
        Ok(Tunnels {
            store,
            opts,
            handle,
            revoked,
            service_ca_pem,
            installed: BTreeMap::new(),
            last_grants: BTreeMap::new(),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub fn revoked(&self) -> &Revoked {
        &self.revoked
    }

    /// Replace the revocation list (already verified under the service CA).
    pub fn set_revoked(&self, serials: impl IntoIterator<Item = u64>) {
        *self.revoked.write().unwrap_or_else(|p| p.into_inner()) = serials.into_iter().collect();
    }

    /// The grants an installed connection to this peer device carries.
    pub fn grants_for(&self, peer_device: &str) -> Vec<String> {
        self.last_grants
            .get(peer_device)
            .cloned()
            .unwrap_or_default()
    }

    pub fn service_ca_pem(&self) -> &str {
        &self.service_ca_pem
    }

    /// Bring the installed connections in line with the grants held in `state`.
    pub fn reconcile(&mut self, state: &SyncState) -> anyhow::Result<Changes> {
        let grants: BTreeMap<String, ConnectionInfo> = if state.revoked {
            BTreeMap::new()
        } else {
            state
                .grants
                .iter()
                .map(|(k, v)| (k.clone(), v.info.clone()))
                .collect()
        };
        let (plans, skipped) = plan(&grants, unix_now());
        let mut changes = Changes {
            skipped,
            ..Changes::default()
        };
        let wanted: BTreeSet<&String> = plans.iter().map(|p| &p.peer_device).collect();
        let gone: Vec<String> = self
            .installed
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for peer in gone {
            self.handle.remove(&peer)?;
            self.installed.remove(&peer);
            changes.removed.push(peer);
        }
        for p in plans {
            if self.installed.get(&p.peer_device) == Some(&p) {
                continue;
            }
            if let Some(old) = self.installed.get_mut(&p.peer_device) {
                // Only addresses moved (the peer's, or ours: the centre re-issued the
                // grants, new versions, same content): the SAs stay up (they follow
                // the peer wherever it sends from); new setups dial the new ones.
                let moved = PeerPlan {
                    candidates: p.candidates.clone(),
                    grants: p.grants.clone(),
                    ..old.clone()
                };
                if moved == p {
                    if old.candidates != p.candidates {
                        self.handle
                            .set_candidates(&p.peer_device, p.candidates.clone())?;
                        changes.moved.push(p.peer_device.clone());
                    }
                    *old = p;
                    continue;
                }
            }
            let replacing = self.installed.contains_key(&p.peer_device);
            let spec = self.spec(&p)?;
            self.handle.upsert(spec)?;
            if replacing {
                changes.replaced.push(p.peer_device.clone());
            } else {
                changes.added.push(p.peer_device.clone());
            }
            self.last_grants.insert(
                p.peer_device.clone(),
                p.grants.iter().map(|(g, _)| g.clone()).collect(),
            );
            self.installed.insert(p.peer_device.clone(), p);
        }
        Ok(changes)
    }

    fn spec(&self, p: &PeerPlan) -> anyhow::Result<ConnSpec> {
        let ike: Vec<&str> = p.ike_proposals.iter().map(String::as_str).collect();
        let esp: Vec<&str> = p.esp_proposals.iter().map(String::as_str).collect();
        let ike = dodvpn_ike::proposal::parse_ike_proposals(&ike)
            .map_err(|e| anyhow::anyhow!("peer {}: IKE proposals: {e}", p.peer_device))?;
        let esp = dodvpn_ike::proposal::parse_esp_proposals(&esp)
            .map_err(|e| anyhow::anyhow!("peer {}: ESP proposals: {e}", p.peer_device))?;
        let cert_pem = self
            .store
            .cert(Tier::Service)?
            .context("the key store holds no service certificate")?;
        let cert_der = crate::enroll::pem_der(&cert_pem)?;
        let mut ike = dodvpn_ike::Config::new(
            ike,
            esp,
            Identification::fqdn(&p.local_identity),
            LocalAuth::Cert {
                cert_der,
                signer: Arc::new(KeyStoreSigner(self.store.clone())),
            },
            RemoteAuth::Cert(Arc::new(ServiceCertValidator {
                service_ca_pem: self.service_ca_pem.clone(),
                revoked: self.revoked.clone(),
            })),
        );
        ike.remote_id = Some(Identification::fqdn(&p.peer_identity));
        ike.local_ts = p
            .local_nets
            .iter()
            .map(|n| TsRange::from_net(*n, 0, 0..=65535))
            .collect();
        ike.remote_ts = p
            .remote_nets
            .iter()
            .map(|n| TsRange::from_net(*n, 0, 0..=65535))
            .collect();
        Ok(ConnSpec {
            name: p.peer_device.clone(),
            local_addr: match p.remote_addr {
                Some(a) => local_addr_towards(a)?,
                // Answering, or dialling candidates some of which we may not reach:
                // the address of each datagram is used.
                None => p
                    .candidates
                    .iter()
                    .find_map(|c| local_addr_towards(c.ip()).ok())
                    .unwrap_or(IpAddr::from([0u8, 0, 0, 0])),
            },
            remote_addr: p.remote_addr,
            candidates: p.candidates.clone(),
            remote_subnets: p.remote_nets.clone(),
            start: if p.initiate { Start::Trap } else { Start::None },
            idle_timeout: self.opts.idle_timeout,
            ike,
            rules: p.rules.clone(),
            local_map: p.local_map.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dodvpn_policy::{LocalEnd, PeerEnd, TrafficSelectors};

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn info(local_ts: &str, mapped: &[&str]) -> ConnectionInfo {
        ConnectionInfo {
            grant_id: "g1".into(),
            version: 1,
            issued_at: 0,
            not_after: i64::MAX,
            role: Role::Initiator,
            local: LocalEnd {
                device_id: "clinic".into(),
                identity: "clinic.dodvpn".into(),
                subnets: vec![n("10.2.0.0/24")],
                mapped_subnets: mapped.iter().map(|s| n(s)).collect(),
            },
            peer: PeerEnd {
                candidates: Vec::new(),
                device_id: "hosp".into(),
                org_id: "o".into(),
                identity: "hosp.dodvpn".into(),
                endpoint: Some("192.0.2.1".into()),
                subnets: vec![n("10.1.0.0/24")],
            },
            traffic_selectors: TrafficSelectors {
                local: vec![n(local_ts)],
                remote: vec![n("10.1.0.0/24")],
            },
            services: vec!["tcp/443".parse().unwrap()],
            ike_proposals: vec![],
            esp_proposals: vec![],
        }
    }

    #[test]
    fn a_mapped_site_negotiates_and_filters_its_visible_prefix() {
        // R-DP-8: the centre sends visible selectors; a real one (an older
        // centre, or a host range inside the real prefix) is moved too.
        for ts in ["100.64.1.0/24", "10.2.0.0/24"] {
            let grants = BTreeMap::from([("g1".to_string(), info(ts, &["100.64.1.0/24"]))]);
            let (plans, skipped) = plan(&grants, 1);
            assert!(skipped.is_empty());
            let p = &plans[0];
            assert_eq!(p.local_map, vec![(n("10.2.0.0/24"), n("100.64.1.0/24"))]);
            assert_eq!(p.local_nets, vec![n("100.64.1.0/24")]);
            assert_eq!(p.rules[0].local_hosts, vec![n("100.64.1.0/24")]);
        }
        // Unmapped: nothing to translate, real selectors.
        let grants = BTreeMap::from([("g1".to_string(), info("10.2.0.0/24", &[]))]);
        let (plans, _) = plan(&grants, 1);
        assert!(plans[0].local_map.is_empty());
        assert_eq!(plans[0].local_nets, vec![n("10.2.0.0/24")]);
    }

    #[test]
    fn ipv6_endpoints_from_the_centre_are_dialled() {
        // Issue 16 point 4: the centre's endpoints may be IPv6, bare or with a port.
        for (ep, want) in [
            ("2001:db8::7", "2001:db8::7"),
            ("[2001:db8::7]:500", "2001:db8::7"),
            ("192.0.2.1:500", "192.0.2.1"),
        ] {
            let mut i = info("10.2.0.0/24", &[]);
            i.peer.endpoint = Some(ep.into());
            let grants = BTreeMap::from([("g1".to_string(), i)]);
            let (plans, skipped) = plan(&grants, 1);
            assert!(skipped.is_empty(), "{ep}: {skipped:?}");
            assert_eq!(
                plans[0].remote_addr,
                Some(want.parse::<IpAddr>().unwrap()),
                "{ep}"
            );
        }
        let mut i = info("10.2.0.0/24", &[]);
        i.peer.endpoint = Some("[2001:db8::7".into());
        let (plans, skipped) = plan(&BTreeMap::from([("g1".to_string(), i)]), 1);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            plans[0].remote_addr, None,
            "a malformed endpoint is never dialled"
        );
    }

    #[test]
    fn a_peer_without_an_endpoint_is_answered_not_skipped() {
        // Issue 19 item 5: a clinic behind a NAT has no endpoint; its grant still
        // becomes a connection, identified by the peer's certificate identity.
        let mut i = info("10.2.0.0/24", &[]);
        i.peer.endpoint = None;
        i.role = Role::Responder;
        let (plans, skipped) = plan(&BTreeMap::from([("g1".to_string(), i.clone())]), 1);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].remote_addr, None);
        assert_eq!(plans[0].peer_identity, "hosp.dodvpn");
        assert!(!plans[0].initiate);
        // Expired grants are still skipped, with or without an endpoint.
        i.not_after = 0;
        let (plans, skipped) = plan(&BTreeMap::from([("g1".to_string(), i)]), 1);
        assert!(plans.is_empty());
        assert_eq!(skipped[0].1, "expired or not yet valid");
    }

    #[test]
    fn the_peers_candidates_are_planned_after_its_endpoint_without_repeats() {
        // Issue 19 item 1: reported candidates are dialled; the endpoint's own address
        // on the NAT-T port is no second chance, nor is a candidate two grants repeat.
        let mut a = info("10.2.0.0/24", &[]);
        a.peer.candidates = vec![
            "192.0.2.1:4500".into(),
            "198.51.100.7:4500".into(),
            "not an address".into(),
        ];
        let mut b = a.clone();
        b.grant_id = "g2".into();
        b.peer.candidates = vec!["198.51.100.7:4500".into(), "203.0.113.9:4500".into()];
        let grants = BTreeMap::from([("g1".to_string(), a.clone()), ("g2".to_string(), b)]);
        let (plans, _) = plan(&grants, 1);
        assert_eq!(plans.len(), 1);
        let want: Vec<SocketAddr> = vec![
            "198.51.100.7:4500".parse().unwrap(),
            "203.0.113.9:4500".parse().unwrap(),
        ];
        assert_eq!(plans[0].candidates, want);
        assert_eq!(plans[0].remote_addr, Some("192.0.2.1".parse().unwrap()));
        // Without an endpoint, every candidate is kept.
        a.peer.endpoint = None;
        let (plans, _) = plan(&BTreeMap::from([("g1".to_string(), a)]), 1);
        assert_eq!(plans[0].candidates.len(), 2);
    }

    #[test]
    fn an_icmp_grant_lets_ping_through_over_ipv4_and_ipv6_inner() {
        use dodvpn_dataplane::filter::{proto, Direction, PacketFilter};
        let mut i = info("fd00:2::/64", &[]);
        i.traffic_selectors.remote = vec![n("fd00:1::/64"), n("10.1.0.0/24")];
        i.traffic_selectors.local.push(n("10.2.0.0/24"));
        i.services = vec!["icmp".parse().unwrap()];
        let rules = rules_of(&i);
        let protos: Vec<Option<u8>> = rules.iter().map(|r| r.proto).collect();
        assert_eq!(protos, vec![Some(proto::ICMP), Some(proto::ICMPV6)]);
        let f = PacketFilter::new(
            i.traffic_selectors.local.clone(),
            i.traffic_selectors.remote.clone(),
            rules,
        );
        // An ICMPv6 echo request fd00:2::5 -> fd00:1::9 (IPv6 header + 8 bytes).
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, proto::ICMPV6, 64];
        v6.extend("fd00:2::5".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6.extend("fd00:1::9".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6.extend([128, 0, 0, 0, 0, 1, 0, 1]);
        assert!(f.allows(Direction::Outbound, &v6), "ICMPv6 echo refused");
        // …and TCP is not what the grant names.
        let mut tcp = v6.clone();
        tcp[6] = proto::TCP;
        tcp[5] = 20;
        tcp.truncate(40);
        tcp.extend([
            0x30, 0x39, 0, 22, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        assert!(
            !f.allows(Direction::Outbound, &tcp),
            "TCP let through an icmp grant"
        );
    }
}

//! Connection info: what the centre signs and pushes to each end of a grant
//! (R-POL-2, R-ENR-2: all IPsec parameters arrive online).

use crate::{mapping, Grant, Party, Service};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// IKE proposals offered by default (strongSwan syntax): AES-GCM 128/256 and
/// ChaCha20-Poly1305 with DH groups 19, 20, 31 (R-DP-1).
pub const DEFAULT_IKE_PROPOSALS: &[&str] = &[
    "aes128gcm16-prfsha256-ecp256",
    "aes256gcm16-prfsha384-ecp384",
    "chacha20poly1305-prfsha256-x25519",
];

/// ESP proposals offered by default (strongSwan syntax).
pub const DEFAULT_ESP_PROPOSALS: &[&str] = &["aes128gcm16", "aes256gcm16", "chacha20poly1305"];

/// Which side of the grant this connection info is for. The applicant is the
/// initiator; `Both` is for grants that allow either side to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Initiator,
    Responder,
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEnd {
    pub device_id: String,
    /// IKE identity of this device's service certificate.
    pub identity: String,
    /// This site's own subnets (real addresses).
    pub subnets: Vec<IpNet>,
    /// Where the centre mapped this site's subnets because they overlap
    /// another site's (R-DP-8): the visible prefix of each of `subnets`,
    /// pairwise, same lengths (an unmapped one is repeated as it is). Peers
    /// and the traffic selectors only know the visible prefixes; this end
    /// translates. Absent (empty) = nothing mapped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapped_subnets: Vec<IpNet>,
}

impl LocalEnd {
    /// (real, visible) pairs that differ: what the data plane translates.
    pub fn mapping(&self) -> Vec<(IpNet, IpNet)> {
        self.subnets
            .iter()
            .zip(&self.mapped_subnets)
            .filter(|(r, v)| r != v)
            .map(|(r, v)| (*r, *v))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEnd {
    pub device_id: String,
    pub org_id: String,
    /// IKE identity the peer must authenticate as.
    pub identity: String,
    pub endpoint: Option<String>,
    /// Where the peer reported it may be reached (issue 19); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// Only the peer's addresses covered by the grant; the rest of the peer's
    /// network is not disclosed. Visible addresses (R-DP-8).
    pub subnets: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// As negotiated in IKE: visible addresses on both sides (R-DP-8).
pub struct TrafficSelectors {
    pub local: Vec<IpNet>,
    pub remote: Vec<IpNet>,
}

/// Signed, pushed configuration for one end of one grant.
///
/// `services` always describe connections the initiator opens towards the
/// responder's hosts: the initiator filters outgoing packets by destination
/// port, the responder filters incoming packets (destination in its local
/// selectors) the same way and lets the replies back (R-DP-7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInfo {
    pub grant_id: String,
    /// Grows with every reissue of this grant so an agent can resynchronise.
    pub version: u64,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub not_after: i64,
    pub role: Role,
    pub local: LocalEnd,
    pub peer: PeerEnd,
    pub traffic_selectors: TrafficSelectors,
    pub services: Vec<Service>,
    pub ike_proposals: Vec<String>,
    pub esp_proposals: Vec<String>,
}

impl ConnectionInfo {
    /// Deterministic bytes to sign: compact JSON, fields in declared order.
    /// The struct holds no maps, so nothing's order depends on hashing.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Only strings, integers, enums and lists: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Still valid at `now` (unix seconds)?
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.issued_at <= now && now < self.not_after
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Connection info for both ends of a grant: first the applicant's
/// (initiator), then the target's (responder, selectors mirrored).
pub fn connection_info_pair(
    grant_id: &str,
    version: u64,
    grant: &Grant,
    applicant: &Party,
    target: &Party,
    now: i64,
) -> (ConnectionInfo, ConnectionInfo) {
    // The grant names real addresses; each end's are shown as visible (R-DP-8).
    let one = |role: Role, me: &Party, mine: &[IpNet], peer: &Party, theirs: &[IpNet]| {
        let theirs = peer.to_visible(theirs);
        ConnectionInfo {
            grant_id: grant_id.to_string(),
            version,
            issued_at: now,
            not_after: grant.not_after,
            role,
            local: LocalEnd {
                device_id: me.device_id.clone(),
                identity: me.identity.clone(),
                subnets: me.subnets.clone(),
                mapped_subnets: if me.mapped_subnets.is_empty() {
                    Vec::new()
                } else {
                    mapping::visible_subnets(&me.subnets, &me.mapped_subnets)
                },
            },
            peer: PeerEnd {
                device_id: peer.device_id.clone(),
                org_id: peer.org_id.clone(),
                identity: peer.identity.clone(),
                endpoint: peer.endpoint.clone(),
                candidates: peer.candidates.clone(),
                subnets: theirs.clone(),
            },
            traffic_selectors: TrafficSelectors {
                local: me.to_visible(mine),
                remote: theirs,
            },
            services: grant.services.clone(),
            ike_proposals: strings(DEFAULT_IKE_PROPOSALS),
            esp_proposals: strings(DEFAULT_ESP_PROPOSALS),
        }
    };
    (
        one(
            Role::Initiator,
            applicant,
            &grant.applicant_hosts,
            target,
            &grant.target_hosts,
        ),
        one(
            Role::Responder,
            target,
            &grant.target_hosts,
            applicant,
            &grant.applicant_hosts,
        ),
    )
}

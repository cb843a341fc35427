//! dodvpn-policy: provider policy ∩ both subscribers' policies → connection
//! info (R-POL-1..4, R-POL-6; TR D.3, D.4 h). Pure functions, no I/O.
//!
//! # How a connection application is decided ([`decide`])
//!
//! The checks run in this order; the first that fails is the [`DenyReason`]:
//!
//! 1. **Parties.** A device cannot apply to itself ([`DenyReason::SamePeer`]).
//!    Both parties need a service certificate (a non-empty IKE `identity`);
//!    a device without one is "group C" and reaches no one (R-POL-1).
//! 2. **Provider policy.** The parties must share at least one group that
//!    exists in [`ProviderPolicy::groups`]. A shared group with
//!    `require_checksheet` counts only if *both* parties passed the security
//!    check sheet (R-POL-6). A party with no groups reaches no one.
//! 3. **Applicant's own policy.** Some outbound rule whose `to` selects the
//!    target. All matching outbound rules contribute their services (union).
//! 4. **Target's own policy.** Some inbound rule whose `from` selects the
//!    applicant. Among matching rules, the *first in order* whose time windows
//!    contain `now` is the one used (no windows = always open); if rules match
//!    but none is open, [`DenyReason::OutsideWindow`]. If that rule has
//!    `require_approval`, an open [`Approval`] from the target's organisation
//!    for the applicant's organisation (and device, if named) is needed.
//! 5. **Services** = applicant outbound ∩ target inbound rule ∩ the provider's
//!    services for the group (a group with `services: None` does not
//!    restrict). Computed per usable group; the grant is the union over the
//!    groups that leave something, and those groups are [`Grant::groups`].
//!    A rule with an empty service list allows nothing: say `"any"` to allow
//!    everything.
//! 6. **Addresses.** Target hosts = the inbound rule's `hosts` clipped to the
//!    target's own subnets (a host outside them is dropped), or all the
//!    target's subnets if the rule names none. Applicant hosts = the
//!    applicant's subnets. Traffic selectors only ever name the two parties'
//!    own addresses, so a grant can never make a site a transit hop between
//!    two peers (R-POL-4).
//!
//! The grant is valid until the earliest of: the end of the open window, the
//! end of the approval, and `now + DEFAULT_VALIDITY_SECS` (24 h).
//!
//! Deny by default: [`SubscriberPolicy::default()`] has no rules and accepts
//! and reaches no one; a [`ProviderPolicy`] with no groups connects no one.
//!
//! # Text forms (decided here)
//!
//! Policy documents are JSON with snake_case names; unknown fields are errors
//! so an operator's typo never silently widens or narrows a policy.
//! Selectors and services are strings, the same in JSON and on the CLI:
//! - [`Selector`]: `"*"` (anyone), `"org:ID"`, `"kind:lab"`, `"device:ID"`, `"group:A"`.
//! - [`Service`]: `"tcp/443,104"`, `"udp/53"`, `"tcp/8000-8080"`, `"tcp"`, `"icmp"`, `"any"`.
//!
//! ```
//! use dodvpn_policy::SubscriberPolicy;
//! let p = SubscriberPolicy::from_json(r#"{
//!   "inbound": [{"from": "org:vendor-1", "hosts": ["10.1.0.50/32"], "services": ["tcp/22"],
//!                "windows": [{"weekdays": [5], "start_minute": 540, "end_minute": 720}],
//!                "require_approval": true}],
//!   "outbound": [{"to": "group:A", "services": ["any"]}]
//! }"#).unwrap();
//! assert_eq!(p.inbound.len(), 1);
//! ```

mod conninfo;
pub mod mapping;
mod service;
pub mod session;
mod window;

pub use conninfo::{
    connection_info_pair, ConnectionInfo, LocalEnd, PeerEnd, Role, TrafficSelectors,
    DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS,
};
pub use service::{
    allows, intersect_services, normalize_services, union_services, PortRange, Proto, Service,
};
pub use session::{session_id, SessionEvent, SessionReport};
pub use window::TimeWindow;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use service::ServiceSet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Validity of a grant when no window or approval ends it sooner.
pub const DEFAULT_VALIDITY_SECS: i64 = 24 * 3600;

/// Errors from reading policy text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid {what} {input:?}: {reason}")]
    Parse {
        what: &'static str,
        input: String,
        reason: &'static str,
    },
    #[error("invalid policy: {0}")]
    Invalid(String),
    #[error("policy document is not valid: {0}")]
    Json(String),
}

impl PolicyError {
    pub(crate) fn parse(what: &'static str, input: &str, reason: &'static str) -> Self {
        PolicyError::Parse {
            what,
            input: input.to_string(),
            reason,
        }
    }
}

/// Kind of subscriber organisation (TR Table A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    Hospital,
    Clinic,
    Pharmacy,
    Lab,
    Vendor,
    Patient,
}

impl OrgKind {
    pub const ALL: [OrgKind; 6] = [
        OrgKind::Hospital,
        OrgKind::Clinic,
        OrgKind::Pharmacy,
        OrgKind::Lab,
        OrgKind::Vendor,
        OrgKind::Patient,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            OrgKind::Hospital => "hospital",
            OrgKind::Clinic => "clinic",
            OrgKind::Pharmacy => "pharmacy",
            OrgKind::Lab => "lab",
            OrgKind::Vendor => "vendor",
            OrgKind::Patient => "patient",
        }
    }
}

impl fmt::Display for OrgKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrgKind {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        OrgKind::ALL
            .into_iter()
            .find(|k| k.as_str() == t)
            .ok_or_else(|| {
                PolicyError::parse(
                    "organisation kind",
                    s,
                    "expected hospital, clinic, pharmacy, lab, vendor or patient",
                )
            })
    }
}

/// One VPN device (site) as the centre knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub device_id: String,
    pub org_id: String,
    pub org_kind: OrgKind,
    /// Provider groups this device belongs to (membership is per device).
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// The site's own address ranges behind the device.
    #[serde(default)]
    pub subnets: Vec<IpNet>,
    /// The prefix each of `subnets` is known by to the peers (pairwise),
    /// where the centre mapped it because it overlaps another site's
    /// (R-DP-8, [`mapping`]); empty = nothing mapped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapped_subnets: Vec<IpNet>,
    /// Outer address (host or host:port) where the device is reachable, if known.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Addresses (IP:port) the device reported it may be reached at: its local
    /// addresses and the public one the centre saw (issue 19). The endpoint, when
    /// an administrator typed one, stays the fixed candidate beside these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// The provider attests that the organisation passed the security check sheet
    /// (R-POL-6); counts for groups without a [`ChecksheetGate`].
    #[serde(default)]
    pub checksheet_passed: bool,
    /// The organisation's latest check-sheet result per sheet id (R-SVC-3), only for
    /// submissions to the current version of the sheet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksheet_scores: BTreeMap<String, SheetStanding>,
    /// IKE identity of the device's service certificate; empty = no service
    /// certificate (group C).
    #[serde(default)]
    pub identity: String,
}

impl Party {
    /// `hosts` inside this site's subnets, as its peers see them (visible
    /// prefixes, R-DP-8).
    pub fn to_visible(&self, hosts: &[IpNet]) -> Vec<IpNet> {
        mapping::to_visible(hosts, &self.subnets, &self.mapped_subnets)
    }
}

/// What the provider allows inside one group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    /// Members must have passed the security check sheet (R-POL-6).
    #[serde(default)]
    pub require_checksheet: bool,
    /// Services allowed between members; `None` = the provider does not restrict.
    #[serde(default)]
    pub services: Option<Vec<Service>>,
    /// Which sheet must pass and how well; without it, the provider's attestation
    /// ([`Party::checksheet_passed`]) decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksheet_gate: Option<ChecksheetGate>,
}

/// A group's check-sheet gate (R-POL-6): a member's organisation must hold a current
/// submission of one of `sheets` scoring at least `min_percent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChecksheetGate {
    /// Sheet ids, any one of which passing is enough (an organisation answers the
    /// sheet for its kind: `large`, `small`, `provider`, `mhlw`).
    pub sheets: Vec<String>,
    /// 0–100.
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub min_percent: u8,
    /// What a sheet past its yearly expiry does: suspend the membership (its grants
    /// are withdrawn) or only warn.
    #[serde(default)]
    pub on_expiry: OnExpiry,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    #[default]
    Suspend,
    Warn,
}

/// An organisation's latest result on one sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SheetStanding {
    pub percent: u8,
    /// Older than a year: it counts only where the gate merely warns.
    pub expired: bool,
}

impl GroupPolicy {
    /// Whether `p` passes this group's check-sheet requirement.
    pub fn admits(&self, p: &Party) -> bool {
        if !self.require_checksheet {
            return true;
        }
        match &self.checksheet_gate {
            None => p.checksheet_passed,
            Some(g) => g
                .sheets
                .iter()
                .filter_map(|s| p.checksheet_scores.get(s))
                .any(|st| {
                    st.percent >= g.min_percent && (!st.expired || g.on_expiry == OnExpiry::Warn)
                }),
        }
    }
}

/// The provider's uniform policy: the groups. A group exists iff it is here.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderPolicy {
    #[serde(default)]
    pub groups: BTreeMap<String, GroupPolicy>,
}

impl ProviderPolicy {
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))
    }
}

/// Who a rule applies to. Text form (also the serde form): `"*"`,
/// `"org:ID"`, `"kind:lab"`, `"device:ID"`, `"group:A"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    Any,
    Org(String),
    Kind(OrgKind),
    Device(String),
    Group(String),
}

impl Selector {
    pub fn matches(&self, p: &Party) -> bool {
        match self {
            Selector::Any => true,
            Selector::Org(o) => *o == p.org_id,
            Selector::Kind(k) => *k == p.org_kind,
            Selector::Device(d) => *d == p.device_id,
            Selector::Group(g) => p.groups.contains(g),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Any => f.write_str("*"),
            Selector::Org(o) => write!(f, "org:{o}"),
            Selector::Kind(k) => write!(f, "kind:{k}"),
            Selector::Device(d) => write!(f, "device:{d}"),
            Selector::Group(g) => write!(f, "group:{g}"),
        }
    }
}

impl FromStr for Selector {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t == "*" || t.eq_ignore_ascii_case("any") {
            return Ok(Selector::Any);
        }
        let bad = || {
            PolicyError::parse(
                "selector",
                s,
                "expected *, org:ID, kind:KIND, device:ID or group:NAME",
            )
        };
        let (tag, value) = t.split_once(':').ok_or_else(bad)?;
        if value.is_empty() {
            return Err(bad());
        }
        match tag.to_ascii_lowercase().as_str() {
            "org" => Ok(Selector::Org(value.to_string())),
            "kind" => Ok(Selector::Kind(value.parse()?)),
            "device" => Ok(Selector::Device(value.to_string())),
            "group" => Ok(Selector::Group(value.to_string())),
            _ => Err(bad()),
        }
    }
}

service::serde_via_str!(Selector);

/// Whom a subscriber accepts, to which of its hosts and services, when, and
/// whether each session needs its approval (R-POL-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundRule {
    pub from: Selector,
    /// Own hosts reachable; empty = all own subnets.
    #[serde(default)]
    pub hosts: Vec<IpNet>,
    /// Empty = nothing.
    pub services: Vec<Service>,
    /// Empty = always open.
    #[serde(default)]
    pub windows: Vec<TimeWindow>,
    #[serde(default)]
    pub require_approval: bool,
}

/// Whom a subscriber's devices may reach, with which services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRule {
    pub to: Selector,
    /// Empty = nothing.
    pub services: Vec<Service>,
}

/// An organisation's own policy. The default (no rules) denies everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberPolicy {
    #[serde(default)]
    pub inbound: Vec<InboundRule>,
    #[serde(default)]
    pub outbound: Vec<OutboundRule>,
}

impl SubscriberPolicy {
    /// Parse a policy document; unknown fields and bad values are errors.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))
    }
}

/// A session approval the target organisation gave (remote maintenance:
/// "the hospital opened the window").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approving (target) organisation.
    pub approver_org: String,
    pub applicant_org: String,
    /// Only this device of the applicant organisation; `None` = any of its devices.
    #[serde(default)]
    pub applicant_device: Option<String>,
    /// Unix seconds, inclusive.
    pub not_before: i64,
    /// Unix seconds, exclusive.
    pub not_after: i64,
    /// The contracted hosts the window opens (within what the rule allows); empty =
    /// every host the rule allows.
    #[serde(default)]
    pub hosts: Vec<IpNet>,
    /// The contracted services (e.g. `tcp/22`), likewise narrowing the rule's.
    #[serde(default)]
    pub services: Vec<Service>,
}

impl Approval {
    fn covers(&self, req: &Request) -> bool {
        self.approver_org == req.target.org_id
            && self.applicant_org == req.applicant.org_id
            && self
                .applicant_device
                .as_ref()
                .is_none_or(|d| *d == req.applicant.device_id)
            && self.not_before <= req.now
            && req.now < self.not_after
    }
}

/// A connection application: `applicant` asks to reach `target` at `now`
/// (unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub applicant: &'a Party,
    pub target: &'a Party,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Grant(Grant),
    Deny(DenyReason),
}

impl Decision {
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            Decision::Grant(g) => Some(g),
            Decision::Deny(_) => None,
        }
    }
    pub fn deny_reason(&self) -> Option<&DenyReason> {
        match self {
            Decision::Deny(r) => Some(r),
            Decision::Grant(_) => None,
        }
    }
}

/// What was granted: the applicant may open connections to `target_hosts`
/// with `services`, from `applicant_hosts`, until `not_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub services: Vec<Service>,
    pub target_hosts: Vec<IpNet>,
    pub applicant_hosts: Vec<IpNet>,
    /// Unix seconds.
    pub not_after: i64,
    /// The common provider groups that allowed it.
    pub groups: Vec<String>,
    /// The target's rule required a session approval (and one was open).
    pub needs_approval: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    #[error("a device cannot apply for a connection to itself")]
    SamePeer,
    #[error("device {device_id} has no service certificate, so it cannot connect to anyone")]
    NoServiceCertificate { device_id: String },
    #[error("the two devices share no group in the provider's policy")]
    NoCommonGroup,
    #[error("group {group} requires both organisations to have passed the security check sheet")]
    ChecksheetRequired { group: String },
    #[error("the applicant organisation's policy does not allow connections to this peer")]
    ApplicantPolicy,
    #[error("the target organisation's policy does not accept connections from this applicant")]
    TargetPolicy,
    #[error("the target organisation accepts this applicant only within its time windows, and none is open now")]
    OutsideWindow,
    #[error(
        "the target organisation requires its approval for this session, and no approval is open"
    )]
    ApprovalRequired,
    #[error(
        "no service (protocol/port) is allowed by the provider and both organisations together"
    )]
    NoServiceOverlap,
    #[error("no addresses are left to connect: the allowed hosts are not in the sites' subnets")]
    NoAddresses,
}

impl DenyReason {
    /// Stable machine-readable code (snake_case variant name).
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::SamePeer => "same_peer",
            DenyReason::NoServiceCertificate { .. } => "no_service_certificate",
            DenyReason::NoCommonGroup => "no_common_group",
            DenyReason::ChecksheetRequired { .. } => "checksheet_required",
            DenyReason::ApplicantPolicy => "applicant_policy",
            DenyReason::TargetPolicy => "target_policy",
            DenyReason::OutsideWindow => "outside_window",
            DenyReason::ApprovalRequired => "approval_required",
            DenyReason::NoServiceOverlap => "no_service_overlap",
            DenyReason::NoAddresses => "no_addresses",
        }
    }
}

/// Decide a connection application (R-POL-2). See the crate docs for the rules.
pub fn decide(
    req: &Request,
    provider: &ProviderPolicy,
    applicant_policy: &SubscriberPolicy,
    target_policy: &SubscriberPolicy,
    approvals: &[Approval],
) -> Decision {
    match decide_inner(req, provider, applicant_policy, target_policy, approvals) {
        Ok(g) => Decision::Grant(g),
        Err(r) => Decision::Deny(r),
    }
}

fn decide_inner(
    req: &Request,
    provider: &ProviderPolicy,
    applicant_policy: &SubscriberPolicy,
    target_policy: &SubscriberPolicy,
    approvals: &[Approval],
) -> Result<Grant, DenyReason> {
    let (a, t, now) = (req.applicant, req.target, req.now);

    // 1. Parties.
    if a.device_id == t.device_id {
        return Err(DenyReason::SamePeer);
    }
    for p in [a, t] {
        if p.identity.trim().is_empty() {
            return Err(DenyReason::NoServiceCertificate {
                device_id: p.device_id.clone(),
            });
        }
    }

    // 2. Provider: shared, existing groups that pass the check-sheet gate.
    let mut usable: Vec<(&String, &GroupPolicy)> = Vec::new();
    let mut gated: Option<&String> = None;
    for name in a.groups.intersection(&t.groups) {
        let Some(gp) = provider.groups.get(name) else {
            continue;
        };
        if !(gp.admits(a) && gp.admits(t)) {
            gated.get_or_insert(name);
            continue;
        }
        usable.push((name, gp));
    }
    if usable.is_empty() {
        return Err(match gated {
            Some(g) => DenyReason::ChecksheetRequired { group: g.clone() },
            None => DenyReason::NoCommonGroup,
        });
    }

    // 3. Applicant's outbound rules.
    let mut outbound: Option<ServiceSet> = None;
    for rule in applicant_policy.outbound.iter().filter(|r| r.to.matches(t)) {
        let s = ServiceSet::from_services(&rule.services);
        outbound = Some(match outbound {
            Some(acc) => acc.union(&s),
            None => s,
        });
    }
    let outbound = outbound.ok_or(DenyReason::ApplicantPolicy)?;

    // 4. Target's inbound rules: first matching rule that is open now.
    let matching: Vec<&InboundRule> = target_policy
        .inbound
        .iter()
        .filter(|r| r.from.matches(a))
        .collect();
    if matching.is_empty() {
        return Err(DenyReason::TargetPolicy);
    }
    let (rule, window_end) = matching
        .iter()
        .find_map(|r| window::open_until(&r.windows, now).map(|end| (*r, end)))
        .ok_or(DenyReason::OutsideWindow)?;
    let mut not_after = now.saturating_add(DEFAULT_VALIDITY_SECS);
    if let Some(end) = window_end {
        not_after = not_after.min(end);
    }
    // The window that lasts longest decides, with its contracted host and port.
    let approval = if rule.require_approval {
        let ap = approvals
            .iter()
            .filter(|ap| ap.covers(req))
            .max_by_key(|ap| ap.not_after)
            .ok_or(DenyReason::ApprovalRequired)?;
        not_after = not_after.min(ap.not_after);
        Some(ap)
    } else {
        None
    };

    // 5. Services, per usable group.
    let base = outbound.intersect(&ServiceSet::from_services(&rule.services));
    let mut allowed = ServiceSet::default();
    let mut groups = Vec::new();
    for (name, gp) in usable {
        let s = match &gp.services {
            None => base.clone(),
            Some(list) => base.intersect(&ServiceSet::from_services(list)),
        };
        if !s.is_empty() {
            allowed = allowed.union(&s);
            groups.push(name.clone());
        }
    }
    if let Some(ap) = approval.filter(|ap| !ap.services.is_empty()) {
        allowed = allowed.intersect(&ServiceSet::from_services(&ap.services));
    }
    if allowed.is_empty() {
        return Err(DenyReason::NoServiceOverlap);
    }

    // 6. Addresses.
    let mut target_hosts = if rule.hosts.is_empty() {
        IpNet::aggregate(&t.subnets)
    } else {
        clip_hosts(&rule.hosts, &t.subnets)
    };
    if let Some(ap) = approval.filter(|ap| !ap.hosts.is_empty()) {
        target_hosts = clip_hosts(&ap.hosts, &target_hosts);
    }
    let applicant_hosts = IpNet::aggregate(&a.subnets);
    if target_hosts.is_empty() || applicant_hosts.is_empty() {
        return Err(DenyReason::NoAddresses);
    }

    Ok(Grant {
        services: allowed.to_services(),
        target_hosts,
        applicant_hosts,
        not_after,
        groups,
        needs_approval: rule.require_approval,
    })
}

/// The parts of `hosts` that lie inside `subnets` (a rule may never open an
/// address the site does not own).
fn clip_hosts(hosts: &[IpNet], subnets: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for h in hosts {
        for s in subnets {
            if s.contains(h) {
                out.push(*h);
            } else if h.contains(s) {
                out.push(*s);
            }
        }
    }
    IpNet::aggregate(&out)
}

#[cfg(test)]
mod tests;

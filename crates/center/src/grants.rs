//! Connection applications → grants → signed connection info (R-POL-1..5, TR D.4 h).
//!
//! The decision itself is `dodvpn_policy::decide` (pure). This module gathers its
//! inputs inside the write transaction, stores the grant, signs the two halves of the
//! connection info with the centre's signing key and queues a push to both ends. When
//! anything a decision depended on changes, `reevaluate` re-runs it for the live
//! grants concerned: withdrawn where no longer allowed, re-issued where narrowed.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use base64::Engine;
use dodvpn_policy::{
    Approval, ConnectionInfo, Decision, GroupPolicy, OrgKind, Party, ProviderPolicy, Request,
    SubscriberPolicy,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::WriteTx;
use crate::device_state::DeviceState;
use crate::error::ApiError;
use crate::{new_id, Center};

/// Connection info as it travels: the info and the centre's signature over its
/// canonical bytes (`ConnectionInfo::canonical_bytes`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignedInfo {
    #[schema(value_type = Object)]
    pub info: ConnectionInfo,
    /// Base64 DER ECDSA P-256 signature by the centre signing certificate.
    pub signature: String,
}

pub fn sign(center: &Center, info: ConnectionInfo) -> Result<SignedInfo, ApiError> {
    let sig = center
        .pki
        .sign_blob(&info.canonical_bytes())
        .map_err(|e| ApiError::internal(format!("cannot sign: {e}")))?;
    Ok(SignedInfo {
        info,
        signature: base64::engine::general_purpose::STANDARD.encode(sig),
    })
}

/// Why a device is in "group C" for now, if it is (R-POL-1).
async fn service_gate(tx: &mut WriteTx<'_>, device_id: &str) -> Result<Option<String>, ApiError> {
    let row = sqlx::query("SELECT status FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {device_id}")))?;
    let status: DeviceState = row.get::<String, _>(0).parse()?;
    match status {
        DeviceState::InService => {}
        DeviceState::Revoked => return Ok(Some(format!("device {device_id} is revoked"))),
        DeviceState::Suspended => {
            return Ok(Some(format!("service to device {device_id} is stopped")))
        }
        other => {
            return Ok(Some(format!(
                "device {device_id} is not in service yet ({other})"
            )))
        }
    }
    let certs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM certs WHERE device_id = $1 AND tier = 'service' AND revoked_ms IS NULL AND not_after > $2",
    )
    .bind(device_id)
    .bind(tx.now / 1000)
    .fetch_one(&mut *tx.tx)
    .await?;
    if certs == 0 {
        return Ok(Some(format!(
            "device {device_id} has no valid service certificate"
        )));
    }
    Ok(None)
}

pub async fn load_party(
    tx: &mut WriteTx<'_>,
    device_id: &str,
) -> Result<(Party, SubscriberPolicy), ApiError> {
    let row = sqlx::query(
        "SELECT d.id, d.owner_org, d.endpoint, d.subnets, o.kind, o.checksheet_passed, o.policy, d.mapped_subnets, d.candidates \
         FROM devices d JOIN orgs o ON o.id = d.owner_org WHERE d.id = $1",
    )
    .bind(device_id)
    .fetch_optional(&mut *tx.tx)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no device {device_id}")))?;
    let groups: Vec<String> =
        sqlx::query_scalar("SELECT group_name FROM memberships WHERE device_id = $1")
            .bind(device_id)
            .fetch_all(&mut *tx.tx)
            .await?;
    let subnets: String = row.get(3);
    let kind: String = row.get(4);
    let policy: String = row.get(6);
    let mapped: String = row.get(7);
    let party = Party {
        device_id: row.get(0),
        org_id: row.get(1),
        org_kind: kind
            .parse::<OrgKind>()
            .map_err(|_| ApiError::internal("stored organisation kind unreadable"))?,
        groups: groups.into_iter().collect::<BTreeSet<_>>(),
        subnets: serde_json::from_str(&subnets)
            .map_err(|_| ApiError::internal("stored subnets unreadable"))?,
        mapped_subnets: serde_json::from_str(&mapped)
            .map_err(|_| ApiError::internal("stored mapped subnets unreadable"))?,
        endpoint: row.get(2),
        candidates: serde_json::from_str(&row.get::<String, _>(8))
            .map_err(|_| ApiError::internal("stored candidates unreadable"))?,
        checksheet_passed: row.get::<i64, _>(5) != 0,
        checksheet_scores: BTreeMap::new(),
        identity: service_identity(device_id),
    };
    let party = Party {
        checksheet_scores: crate::checksheets::standing(tx, &party.org_id).await?,
        ..party
    };
    let policy: SubscriberPolicy = serde_json::from_str(&policy)
        .map_err(|_| ApiError::internal("stored subscriber policy unreadable"))?;
    Ok((party, policy))
}

/// The IKE identity a device's service certificate carries (SAN DNS name).
pub fn service_identity(device_id: &str) -> String {
    format!("{device_id}.dodvpn")
}

pub async fn provider_policy(tx: &mut WriteTx<'_>) -> Result<ProviderPolicy, ApiError> {
    let rows = sqlx::query("SELECT name, policy FROM groups_")
        .fetch_all(&mut *tx.tx)
        .await?;
    let mut groups = BTreeMap::new();
    for r in rows {
        let p: String = r.get(1);
        let gp: GroupPolicy = serde_json::from_str(&p)
            .map_err(|_| ApiError::internal("stored group policy unreadable"))?;
        groups.insert(r.get::<String, _>(0), gp);
    }
    Ok(ProviderPolicy { groups })
}

async fn approvals(
    tx: &mut WriteTx<'_>,
    approver: &str,
    applicant: &str,
) -> Result<Vec<Approval>, ApiError> {
    let rows = sqlx::query(
        "SELECT approver_org, applicant_org, applicant_device, not_before, not_after, hosts, services FROM approvals \
         WHERE approver_org = $1 AND applicant_org = $2 AND closed_ms IS NULL",
    )
    .bind(approver)
    .bind(applicant)
    .fetch_all(&mut *tx.tx)
    .await?;
    rows.iter()
        .map(|r| {
            let unreadable = |_| ApiError::internal("stored approval contract unreadable");
            Ok(Approval {
                approver_org: r.get(0),
                applicant_org: r.get(1),
                applicant_device: r.get(2),
                not_before: r.get(3),
                not_after: r.get(4),
                hosts: serde_json::from_str(&r.get::<String, _>(5)).map_err(unreadable)?,
                services: serde_json::from_str(&r.get::<String, _>(6)).map_err(unreadable)?,
            })
        })
        .collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    pub target_device: String,
    pub granted: bool,
    pub grant_id: Option<String>,
    /// Why it was refused (operator-readable), when it was.
    pub reason: Option<String>,
}

/// Evaluate one application and, if allowed, store and push the grant.
pub async fn apply(
    center: &Center,
    tx: &mut WriteTx<'_>,
    actor: &str,
    applicant: &str,
    target: &str,
) -> Result<Outcome, ApiError> {
    let deny = |reason: String| Outcome {
        target_device: target.to_string(),
        granted: false,
        grant_id: None,
        reason: Some(reason),
    };
    let decision = match evaluate(tx, applicant, target).await? {
        Err(refused) => {
            tx.audit(
                actor,
                "connection.denied",
                &format!("{applicant}->{target}"),
                serde_json::json!({"reason": refused.reason}),
            )
            .await?;
            note_denied(tx, applicant, target, &refused).await?;
            return Ok(deny(refused.reason));
        }
        Ok(d) => d,
    };
    forget_denied(tx, applicant, target).await?;
    let (grant, a, t) = decision;
    // One live grant per ordered pair: a repeated application refreshes it.
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT id FROM grants WHERE applicant_device = $1 AND target_device = $2 AND status = 'active'",
    )
    .bind(applicant)
    .bind(target)
    .fetch_optional(&mut *tx.tx)
    .await?;
    let id = match existing {
        Some(id) => {
            issue(center, tx, actor, &id, &grant, &a, &t, true).await?;
            id
        }
        None => {
            let id = new_id("grant");
            issue(center, tx, actor, &id, &grant, &a, &t, false).await?;
            id
        }
    };
    Ok(Outcome {
        target_device: target.to_string(),
        granted: true,
        grant_id: Some(id),
        reason: None,
    })
}

type Evaluated = (dodvpn_policy::Grant, Party, Party);

/// Why an application is refused, and whether a maintenance window would open it.
pub(crate) struct Refused {
    pub reason: String,
    pub approval_required: bool,
}

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Refused {
            reason,
            approval_required: false,
        }
    }
}

async fn forget_denied(
    tx: &mut WriteTx<'_>,
    applicant: &str,
    target: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "DELETE FROM denied_applications WHERE applicant_device = $1 AND target_device = $2",
    )
    .bind(applicant)
    .bind(target)
    .execute(&mut *tx.tx)
    .await?;
    Ok(())
}

/// Keep the newest refusal of each pair: the approver's inbox and the policy dry run
/// read it. A later grant removes it.
async fn note_denied(
    tx: &mut WriteTx<'_>,
    applicant: &str,
    target: &str,
    refused: &Refused,
) -> Result<(), ApiError> {
    let org = |d: &str| {
        sqlx::query_scalar::<_, String>("SELECT owner_org FROM devices WHERE id = $1")
            .bind(d.to_string())
    };
    let (Some(ao), Some(to)) = (
        org(applicant).fetch_optional(&mut *tx.tx).await?,
        org(target).fetch_optional(&mut *tx.tx).await?,
    ) else {
        return Ok(());
    };
    forget_denied(tx, applicant, target).await?;
    sqlx::query(
        "INSERT INTO denied_applications (applicant_device, target_device, applicant_org, target_org, reason, approval_required, first_ms, last_ms) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$7)",
    )
    .bind(applicant)
    .bind(target)
    .bind(ao)
    .bind(to)
    .bind(&refused.reason)
    .bind(refused.approval_required as i64)
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await?;
    Ok(())
}

async fn evaluate(
    tx: &mut WriteTx<'_>,
    applicant: &str,
    target: &str,
) -> Result<Result<Evaluated, Refused>, ApiError> {
    if applicant == target {
        return Ok(Err(String::from(
            "a device cannot apply to connect to itself",
        )
        .into()));
    }
    for d in [applicant, target] {
        if let Some(why) = service_gate(tx, d).await? {
            return Ok(Err(why.into()));
        }
    }
    let (a, ap) = load_party(tx, applicant).await?;
    let (t, tp) = load_party(tx, target).await?;
    let provider = provider_policy(tx).await?;
    let approvals = approvals(tx, &t.org_id, &a.org_id).await?;
    let req = Request {
        applicant: &a,
        target: &t,
        now: tx.now / 1000,
    };
    Ok(
        match dodvpn_policy::decide(&req, &provider, &ap, &tp, &approvals) {
            Decision::Grant(g) => Ok((g, a, t)),
            Decision::Deny(r) => Err(Refused {
                approval_required: r == dodvpn_policy::DenyReason::ApprovalRequired,
                reason: r.to_string(),
            }),
        },
    )
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    center: &Center,
    tx: &mut WriteTx<'_>,
    actor: &str,
    id: &str,
    grant: &dodvpn_policy::Grant,
    a: &Party,
    t: &Party,
    update: bool,
) -> Result<(), ApiError> {
    let version = tx.next_counter("grant_version").await?;
    let (ia, it) = dodvpn_policy::connection_info_pair(id, version, grant, a, t, tx.now / 1000);
    let (sa, st) = (sign(center, ia)?, sign(center, it)?);
    let (ja, jt) = (to_json(&sa)?, to_json(&st)?);
    if update {
        sqlx::query("UPDATE grants SET version = $2, info_applicant = $3, info_target = $4, not_after = $5 WHERE id = $1")
            .bind(id)
            .bind(version as i64)
            .bind(&ja)
            .bind(&jt)
            .bind(grant.not_after)
            .execute(&mut *tx.tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO grants (id, applicant_device, target_device, status, version, info_applicant, info_target, not_after, created_ms) \
             VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(&a.device_id)
        .bind(&t.device_id)
        .bind(version as i64)
        .bind(&ja)
        .bind(&jt)
        .bind(grant.not_after)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    }
    tx.audit(
        actor,
        if update { "connection.updated" } else { "connection.granted" },
        id,
        serde_json::json!({
            "applicant": a.device_id, "target": t.device_id, "version": version,
            "services": grant.services, "target_hosts": grant.target_hosts, "applicant_hosts": grant.applicant_hosts,
            "not_after": grant.not_after, "groups": grant.groups,
        }),
    )
    .await?;
    // Step l (TR D.6): the provider delivers the connection info to both ends.
    tx.event(
        &a.device_id,
        "grant",
        &serde_json::json!({"grant_id": id, "version": version, "connection_info": sa}),
    )
    .await?;
    tx.event(
        &t.device_id,
        "grant",
        &serde_json::json!({"grant_id": id, "version": version, "connection_info": st}),
    )
    .await?;
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|_| ApiError::internal("cannot encode connection info"))
}

/// End a live grant and tell both ends to drop its tunnels now (R-POL-5).
pub async fn withdraw(
    tx: &mut WriteTx<'_>,
    actor: &str,
    id: &str,
    reason: &str,
) -> Result<(), ApiError> {
    let row = sqlx::query(
        "SELECT applicant_device, target_device FROM grants WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .fetch_optional(&mut *tx.tx)
    .await?;
    let Some(row) = row else { return Ok(()) };
    let (a, t): (String, String) = (row.get(0), row.get(1));
    sqlx::query(
        "UPDATE grants SET status = 'withdrawn', ended_ms = $2, end_reason = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(tx.now)
    .bind(reason)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        actor,
        "connection.withdrawn",
        id,
        serde_json::json!({"applicant": a, "target": t, "reason": reason}),
    )
    .await?;
    let payload = serde_json::json!({"grant_id": id, "reason": reason});
    tx.event(&a, "grant_withdrawn", &payload).await?;
    tx.event(&t, "grant_withdrawn", &payload).await?;
    Ok(())
}

/// Re-run the decision for every live grant touching `devices` (None = all).
pub async fn reevaluate(
    center: &Center,
    tx: &mut WriteTx<'_>,
    actor: &str,
    devices: Option<&HashSet<String>>,
) -> Result<(), ApiError> {
    let rows = sqlx::query("SELECT id, applicant_device, target_device, info_applicant, not_after, info_target FROM grants WHERE status = 'active'")
        .fetch_all(&mut *tx.tx)
        .await?;
    for r in rows {
        let (id, a, t): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if let Some(set) = devices {
            if !set.contains(&a) && !set.contains(&t) {
                continue;
            }
        }
        match evaluate(tx, &a, &t).await? {
            Err(refused) => {
                withdraw(
                    tx,
                    actor,
                    &id,
                    &format!("no longer allowed: {}", refused.reason),
                )
                .await?
            }
            Ok((grant, pa, pt)) => {
                let stored: String = r.get(3);
                let old_not_after: i64 = r.get(4);
                let old: Option<SignedInfo> = serde_json::from_str(&stored).ok();
                let stored_t: String = r.get(5);
                let old_t: Option<SignedInfo> = serde_json::from_str(&stored_t).ok();
                // An endpoint typed by an administrator reaches the peers holding
                // grants at once (issue 19), not only with the next re-issue.
                let moved = old_t.is_none_or(|o| {
                    o.info.peer.endpoint != pa.endpoint || o.info.peer.candidates != pa.candidates
                });
                let changed = moved
                    || match old {
                        None => true,
                        Some(old) => {
                            old.info.peer.endpoint != pt.endpoint
                                || old.info.peer.candidates != pt.candidates
                            || old.info.services != grant.services
                            || old.info.traffic_selectors.remote
                                != pt.to_visible(&grant.target_hosts)
                            || old.info.traffic_selectors.local
                                != pa.to_visible(&grant.applicant_hosts)
                            // A (re)mapping changes the visible selectors (R-DP-8).
                            || grant.not_after < old_not_after
                        }
                    };
                if changed {
                    issue(center, tx, actor, &id, &grant, &pa, &pt, true).await?;
                }
            }
        }
    }
    Ok(())
}

/// Withdraw grants whose validity ended and close approval windows that ran out.
pub async fn expire(center: &Center) -> Result<(), ApiError> {
    let now_s = crate::db::now_ms() / 1000;
    let due: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM grants WHERE status = 'active' AND not_after <= $1",
    )
    .bind(now_s)
    .fetch_one(&center.db.pool)
    .await?;
    let windows: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM approvals WHERE closed_ms IS NULL AND not_after <= $1",
    )
    .bind(now_s)
    .fetch_one(&center.db.pool)
    .await?;
    let ending_sql = format!(
        "SELECT id, applicant_org, applicant_device, not_after FROM approvals WHERE closed_ms IS NULL AND warned_ms IS NULL \
         AND not_before <= $1 AND not_after > $1 \
         AND not_after - (CASE WHEN (not_after - not_before) / 2 < {w} THEN (not_after - not_before) / 2 ELSE {w} END) <= $1",
        w = crate::api::admin_approvals_warning_secs()
    );
    let ending = sqlx::query(&ending_sql)
        .bind(now_s)
        .fetch_all(&center.db.pool)
        .await?;
    if due == 0 && windows == 0 && ending.is_empty() {
        return Ok(());
    }
    let mut tx = center.db.begin_write().await?;
    // The vendor hears before its window ends (TR 9.2), once.
    for r in &ending {
        let (id, org, device, end): (String, String, Option<String>, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let n =
            sqlx::query("UPDATE approvals SET warned_ms = $2 WHERE id = $1 AND warned_ms IS NULL")
                .bind(&id)
                .bind(tx.now)
                .execute(&mut *tx.tx)
                .await?
                .rows_affected();
        if n == 0 {
            continue;
        }
        let left = (end - now_s).max(0);
        tx.audit(
            "centre",
            "approval.ending",
            &id,
            serde_json::json!({"not_after": end, "seconds_left": left}),
        )
        .await?;
        let devices = match device {
            Some(d) => vec![d],
            None => crate::api::org_devices_of(&mut tx, &org).await?,
        };
        for d in devices {
            tx.event(
                &d,
                "approval_ending",
                &serde_json::json!({"approval": id, "not_after": end, "seconds_left": left}),
            )
            .await?;
        }
    }
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM grants WHERE status = 'active' AND not_after <= $1")
            .bind(now_s)
            .fetch_all(&mut *tx.tx)
            .await?;
    for id in ids {
        withdraw(&mut tx, "centre", &id, "validity ended").await?;
    }
    let closed: Vec<String> =
        sqlx::query_scalar("SELECT id FROM approvals WHERE closed_ms IS NULL AND not_after <= $1")
            .bind(now_s)
            .fetch_all(&mut *tx.tx)
            .await?;
    for id in closed {
        sqlx::query("UPDATE approvals SET closed_ms = $2 WHERE id = $1")
            .bind(&id)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
        tx.audit("centre", "approval.expired", &id, serde_json::json!({}))
            .await?;
    }
    tx.commit().await
}

/// One grant or refused application as a policy dry run sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRunChange {
    /// The live grant, or none for an application that would now be granted.
    pub grant_id: Option<String>,
    pub applicant_device: String,
    pub target_device: String,
    /// Services before → after (empty before: not granted now; empty after: withdrawn).
    #[schema(value_type = Vec<String>)]
    pub services_before: Vec<dodvpn_policy::Service>,
    #[schema(value_type = Vec<String>)]
    pub services_after: Vec<dodvpn_policy::Service>,
    /// The target's hosts the applicant may reach, before → after.
    #[schema(value_type = Vec<String>)]
    pub hosts_before: Vec<ipnet::IpNet>,
    #[schema(value_type = Vec<String>)]
    pub hosts_after: Vec<ipnet::IpNet>,
    /// Why it would be withdrawn.
    pub reason: Option<String>,
}

/// What saving a subscriber policy would do to the grants (issue 10's policy editor).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct DryRun {
    /// Applications refused in the last 7 days that the new policy would grant.
    pub added: Vec<DryRunChange>,
    /// Live grants that would keep less (fewer services or hosts).
    pub narrowed: Vec<DryRunChange>,
    /// Live grants that would get more.
    pub widened: Vec<DryRunChange>,
    /// Live grants whose services or hosts would change both ways.
    pub changed: Vec<DryRunChange>,
    pub withdrawn: Vec<DryRunChange>,
    pub unchanged: usize,
}

fn within(small: &[ipnet::IpNet], big: &[ipnet::IpNet]) -> bool {
    small.iter().all(|s| big.iter().any(|b| b.contains(s)))
}

fn services_within(small: &[dodvpn_policy::Service], big: &[dodvpn_policy::Service]) -> bool {
    use dodvpn_policy::intersect_services as meet;
    meet(small, big) == meet(small, small)
}

/// Evaluate every live grant and recently refused application touching `org`'s
/// devices as if `policy` were its subscriber policy. Nothing is stored: the caller's
/// transaction is dropped, not committed, and no audit record or event is written.
pub async fn dry_run(
    tx: &mut WriteTx<'_>,
    org: &str,
    policy: &SubscriberPolicy,
) -> Result<DryRun, ApiError> {
    let text = serde_json::to_string(policy).map_err(|_| ApiError::internal("policy"))?;
    sqlx::query("UPDATE orgs SET policy = $2 WHERE id = $1")
        .bind(org)
        .bind(&text)
        .execute(&mut *tx.tx)
        .await?;
    let devices: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT id FROM devices WHERE owner_org = $1")
            .bind(org)
            .fetch_all(&mut *tx.tx)
            .await?
            .into_iter()
            .collect();
    let mut out = DryRun::default();
    let rows = sqlx::query(
        "SELECT id, applicant_device, target_device, info_applicant FROM grants WHERE status = 'active' ORDER BY created_ms",
    )
    .fetch_all(&mut *tx.tx)
    .await?;
    for r in rows {
        let (id, a, t, stored): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if !devices.contains(&a) && !devices.contains(&t) {
            continue;
        }
        let old: Option<SignedInfo> = serde_json::from_str(&stored).ok();
        let (services_before, hosts_before) = old
            .map(|o| (o.info.services, o.info.traffic_selectors.remote))
            .unwrap_or_default();
        let mut change = DryRunChange {
            grant_id: Some(id),
            applicant_device: a.clone(),
            target_device: t.clone(),
            services_before,
            services_after: vec![],
            hosts_before,
            hosts_after: vec![],
            reason: None,
        };
        match evaluate(tx, &a, &t).await? {
            Err(refused) => {
                change.reason = Some(refused.reason);
                out.withdrawn.push(change);
            }
            Ok((grant, _, pt)) => {
                change.services_after = grant.services.clone();
                change.hosts_after = pt.to_visible(&grant.target_hosts);
                let less = services_within(&change.services_after, &change.services_before)
                    && within(&change.hosts_after, &change.hosts_before);
                let more = services_within(&change.services_before, &change.services_after)
                    && within(&change.hosts_before, &change.hosts_after);
                match (less, more) {
                    (true, true) => out.unchanged += 1,
                    (true, false) => out.narrowed.push(change),
                    (false, true) => out.widened.push(change),
                    (false, false) => out.changed.push(change),
                }
            }
        }
    }
    let since = tx.now - 7 * 86400 * 1000;
    let denied = sqlx::query(
        "SELECT applicant_device, target_device FROM denied_applications WHERE last_ms >= $1 AND (applicant_org = $2 OR target_org = $2) ORDER BY last_ms DESC LIMIT 1000",
    )
    .bind(since)
    .bind(org)
    .fetch_all(&mut *tx.tx)
    .await?;
    for r in denied {
        let (a, t): (String, String) = (r.get(0), r.get(1));
        if let Ok((grant, _, pt)) = evaluate(tx, &a, &t).await? {
            out.added.push(DryRunChange {
                grant_id: None,
                applicant_device: a,
                target_device: t,
                services_before: vec![],
                services_after: grant.services.clone(),
                hosts_before: vec![],
                hosts_after: pt.to_visible(&grant.target_hosts),
                reason: None,
            });
        }
    }
    Ok(out)
}

//! Exposure diagnosis (R-SVC-5, issue 14): the public addresses each organisation
//! shows the Internet, and the findings of each diagnosis run against them.
//!
//! Only the provider changes an organisation's public addresses (audited): they bound
//! what `dodvpn diagnose` may probe on that organisation's behalf, so an organisation
//! cannot widen them to aim the provider's scanner at someone else. A run posted here
//! is refused unless every target lies inside those addresses, and is compared with
//! the organisation's previous run: new, fixed, unchanged.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::orgs::org_exists;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::{new_id, Center};

/// Most entries in one organisation's list.
pub const MAX_PUBLIC_ADDRESSES: usize = 256;
/// Most addresses one entry may cover (an IPv4 /22, an IPv6 /118): a diagnosis is
/// aimed at a member's few Internet-facing hosts, not at whole networks.
pub const MAX_ADDRESSES_PER_ENTRY: u128 = 1024;
/// Most targets and findings in one run, and longest evidence.
pub const MAX_TARGETS: usize = 1024;
pub const MAX_FINDINGS: usize = 2000;
pub const MAX_EVIDENCE: usize = 1024;
/// A run's body may be larger than other calls' (64 KiB): up to 1 MiB.
pub const MAX_RUN_BODY: usize = 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicAddresses {
    /// The organisation's Internet-facing addresses: IPv4/IPv6 addresses or prefixes
    /// (`192.0.2.10`, `198.51.100.0/28`), each covering at most 1024 addresses; 0–256
    /// entries. Replaces the whole list.
    #[schema(max_items = 256, min_length = 1, max_length = 64)]
    pub addresses: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PublicAddressList {
    pub org_id: String,
    /// Normalised prefixes, sorted.
    pub addresses: Vec<String>,
}

fn parse_entry(s: &str) -> Result<IpNet, ApiError> {
    let net: IpNet = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => s
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| ApiError::bad_request(format!("{s:?} is not an IP address or prefix")))?,
    };
    let host_bits = (net.max_prefix_len() - net.prefix_len()) as u32;
    if host_bits >= 128 || (1u128 << host_bits) > MAX_ADDRESSES_PER_ENTRY {
        return Err(ApiError::bad_request(format!(
            "{s} covers more than {MAX_ADDRESSES_PER_ENTRY} addresses"
        )));
    }
    let a = net.network();
    if a.is_unspecified() || a.is_multicast() {
        return Err(ApiError::bad_request(format!(
            "{s} is not a unicast address"
        )));
    }
    Ok(net.trunc())
}

pub(crate) async fn load_addresses(
    pool: &sqlx::AnyPool,
    org: &str,
) -> Result<Vec<IpNet>, ApiError> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT cidr FROM public_addresses WHERE org_id = $1 ORDER BY cidr")
            .bind(org)
            .fetch_all(pool)
            .await?;
    // Written by put_public_addresses only, so they parse; skip rather than fail if not.
    Ok(rows.iter().filter_map(|s| s.parse().ok()).collect())
}

/// Replace an organisation's public addresses (provider only, audited).
#[utoipa::path(put, path = "/api/v1/orgs/{id}/public-addresses", tag = "diagnose", params(("id" = String, Path)),
    request_body = PublicAddresses,
    responses((status = 200, body = PublicAddressList), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_public_addresses(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PublicAddresses>, JsonRejection>,
) -> Result<Json<PublicAddressList>, ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    if body.addresses.len() > MAX_PUBLIC_ADDRESSES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PUBLIC_ADDRESSES} public addresses"
        )));
    }
    let mut nets = Vec::new();
    for a in &body.addresses {
        if a.is_empty() || a.chars().count() > 64 {
            return Err(ApiError::bad_request(
                "each address must be 1–64 characters",
            ));
        }
        nets.push(parse_entry(a.trim())?);
    }
    nets.sort();
    nets.dedup();
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &id).await?;
    let before: Vec<String> =
        sqlx::query_scalar("SELECT cidr FROM public_addresses WHERE org_id = $1 ORDER BY cidr")
            .bind(&id)
            .fetch_all(&mut *tx.tx)
            .await?;
    sqlx::query("DELETE FROM public_addresses WHERE org_id = $1")
        .bind(&id)
        .execute(&mut *tx.tx)
        .await?;
    let list: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
    for n in &list {
        sqlx::query("INSERT INTO public_addresses (org_id, cidr, added_ms) VALUES ($1,$2,$3)")
            .bind(&id)
            .bind(n)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
    }
    tx.audit(
        &caller.actor(),
        "org.public_addresses_set",
        &id,
        serde_json::json!({"before": before, "after": list}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(PublicAddressList {
        org_id: id,
        addresses: list,
    }))
}

/// An organisation's public addresses (the provider, or that organisation).
#[utoipa::path(get, path = "/api/v1/orgs/{id}/public-addresses", tag = "diagnose", params(("id" = String, Path)),
    responses((status = 200, body = PublicAddressList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_public_addresses(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PublicAddressList>, ApiError> {
    caller.require_org(&id)?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs WHERE id = $1")
        .bind(&id)
        .fetch_one(&c.db.pool)
        .await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("no organisation {id}")));
    }
    let nets = load_addresses(&c.db.pool, &id).await?;
    Ok(Json(PublicAddressList {
        org_id: id,
        addresses: nets.iter().map(|n| n.to_string()).collect(),
    }))
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP findings (e.g. `icmp.timestamp`) carry port 0.
    Icmp,
}

/// One finding of a diagnosis (the `dodvpn-diagnose` crate's `Finding`).
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// The target address probed.
    #[schema(min_length = 2, max_length = 45)]
    pub target: String,
    pub proto: Proto,
    #[schema(minimum = 0, maximum = 65535)]
    pub port: u16,
    /// Stable identifier of the check, e.g. `ftp.anonymous` (1–64 characters).
    #[schema(min_length = 1, max_length = 64)]
    pub check: String,
    pub severity: Severity,
    /// What was seen, printable, truncated (0–1024 characters).
    #[schema(max_length = 1024)]
    pub evidence: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub title_en: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub title_ja: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub recommendation_en: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub recommendation_ja: String,
}

impl Finding {
    /// A way in for remote access or maintenance: the kind of connection point the
    /// MHLW notices warn institutions often do not know they have.
    pub fn is_remote_access(&self) -> bool {
        matches!(
            self.check.as_str(),
            "http.vpn_login"
                | "rdp.exposed"
                | "vnc.exposed"
                | "telnet.exposed"
                | "ssh.banner"
                | "smb.exposed"
        )
    }

    fn key(&self) -> String {
        format!(
            "{}|{:?}/{}|{}",
            self.target, self.proto, self.port, self.check
        )
    }
    fn check_limits(&self) -> Result<(), ApiError> {
        self.target
            .parse::<IpAddr>()
            .map_err(|_| ApiError::bad_request("finding target must be an IP address"))?;
        let text = |what: &str, s: &str, min: usize| {
            let n = s.chars().count();
            if n < min || n > MAX_EVIDENCE {
                Err(ApiError::bad_request(format!(
                    "{what} must be {min}–{MAX_EVIDENCE} characters"
                )))
            } else {
                Ok(())
            }
        };
        text("check", &self.check, 1)?;
        if self.check.chars().count() > 64 {
            return Err(ApiError::bad_request("check must be 1–64 characters"));
        }
        text("evidence", &self.evidence, 0)?;
        text("title_en", &self.title_en, 1)?;
        text("title_ja", &self.title_ja, 1)?;
        text("recommendation_en", &self.recommendation_en, 1)?;
        text("recommendation_ja", &self.recommendation_ja, 1)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// When the run started and finished (ms since the epoch; started ≤ finished).
    #[schema(minimum = 0)]
    pub started_ms: i64,
    #[schema(minimum = 0)]
    pub finished_ms: i64,
    /// Every address probed (1–1024), each inside the organisation's public addresses.
    #[schema(min_items = 1, max_items = 1024)]
    pub targets: Vec<String>,
    /// 0–2000 findings.
    #[schema(max_items = 2000)]
    pub findings: Vec<Finding>,
}

#[derive(Serialize, ToSchema)]
pub struct RunSummary {
    pub id: String,
    pub org_id: String,
    /// Who posted (started) the run, as the audit log names them.
    pub started_by: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub targets: Vec<String>,
    pub findings: usize,
}

#[derive(Serialize, ToSchema)]
pub struct RunComparison {
    pub run: RunSummary,
    /// The previous run compared with, if any.
    pub previous: Option<String>,
    /// Findings not in the previous run.
    pub new: Vec<Finding>,
    /// Findings of the previous run, on a target probed again, no longer seen.
    pub fixed: Vec<Finding>,
    /// Findings in both runs.
    pub unchanged: Vec<Finding>,
}

/// Record a diagnosis run and compare it with the organisation's previous one
/// (the provider, or that organisation on itself; audited).
#[utoipa::path(post, path = "/api/v1/orgs/{id}/diagnoses", tag = "diagnose", params(("id" = String, Path)),
    request_body = NewRun,
    responses((status = 201, body = RunComparison), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a target is not one of the organisation's public addresses"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn post_run(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<NewRun>, JsonRejection>,
) -> Result<(StatusCode, Json<RunComparison>), ApiError> {
    caller.require_org(&id)?;
    let Json(body) = body?;
    if body.started_ms < 0 || body.finished_ms < body.started_ms {
        return Err(ApiError::bad_request(
            "started_ms must be ≥ 0 and not after finished_ms",
        ));
    }
    if body.targets.is_empty() || body.targets.len() > MAX_TARGETS {
        return Err(ApiError::bad_request(format!(
            "a run has 1–{MAX_TARGETS} targets"
        )));
    }
    if body.findings.len() > MAX_FINDINGS {
        return Err(ApiError::bad_request(format!(
            "a run has at most {MAX_FINDINGS} findings"
        )));
    }
    let mut targets = Vec::new();
    for t in &body.targets {
        let a: IpAddr = t
            .parse()
            .map_err(|_| ApiError::bad_request(format!("target {t:?} is not an IP address")))?;
        targets.push(a);
    }
    for f in &body.findings {
        f.check_limits()?;
        let a: IpAddr = f
            .target
            .parse()
            .map_err(|_| ApiError::bad_request("bad target"))?;
        if !targets.contains(&a) {
            return Err(ApiError::bad_request(format!(
                "finding for {a}, which is not among the run's targets"
            )));
        }
    }
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &id).await?;
    let nets = load_addresses(&c.db.pool, &id).await?;
    if let Some(bad) = targets
        .iter()
        .find(|a| !nets.iter().any(|n| n.contains(*a)))
    {
        return Err(ApiError::forbidden(
            "address_not_registered",
            format!("{bad} is not registered as a public address of {id}"),
        ));
    }
    let prev = sqlx::query(
        "SELECT id, findings FROM diagnose_runs WHERE org_id = $1 ORDER BY created_ms DESC, id DESC LIMIT 1",
    )
    .bind(&id)
    .fetch_optional(&mut *tx.tx)
    .await?;
    let (prev_id, prev_findings): (Option<String>, Vec<Finding>) = match prev {
        Some(r) => {
            let text: String = r.get(1);
            (
                Some(r.get(0)),
                serde_json::from_str(&text)
                    .map_err(|_| ApiError::internal("stored diagnosis unreadable"))?,
            )
        }
        None => (None, Vec::new()),
    };
    let (new, fixed, unchanged) = compare(&prev_findings, &body.findings, &targets);
    let run_id = new_id("diag");
    let tlist: Vec<String> = targets.iter().map(|a| a.to_string()).collect();
    let findings_json =
        serde_json::to_string(&body.findings).map_err(|_| ApiError::internal("findings"))?;
    sqlx::query("INSERT INTO diagnose_runs (id, org_id, started_by, started_ms, finished_ms, targets, findings, created_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
        .bind(&run_id)
        .bind(&id)
        .bind(caller.actor())
        .bind(body.started_ms)
        .bind(body.finished_ms)
        .bind(serde_json::to_string(&tlist).unwrap_or_default())
        .bind(findings_json)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    let mut by_sev: BTreeMap<String, usize> = BTreeMap::new();
    for f in &body.findings {
        *by_sev
            .entry(format!("{:?}", f.severity).to_lowercase())
            .or_default() += 1;
    }
    tx.audit(
        &caller.actor(),
        "diagnose.run",
        &id,
        serde_json::json!({
            "run": run_id, "targets": tlist, "started_ms": body.started_ms,
            "finished_ms": body.finished_ms, "findings": body.findings.len(),
            "by_severity": by_sev, "new": new.len(), "fixed": fixed.len(),
            "unchanged": unchanged.len(), "previous": prev_id,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(RunComparison {
            run: RunSummary {
                id: run_id,
                org_id: id,
                started_by: caller.actor(),
                started_ms: body.started_ms,
                finished_ms: body.finished_ms,
                targets: tlist,
                findings: body.findings.len(),
            },
            previous: prev_id,
            new,
            fixed,
            unchanged,
        }),
    ))
}

/// New, fixed and unchanged findings. A previous finding on a target this run did
/// not probe is neither fixed nor unchanged: nobody looked.
pub fn compare(
    prev: &[Finding],
    now: &[Finding],
    probed: &[IpAddr],
) -> (Vec<Finding>, Vec<Finding>, Vec<Finding>) {
    let prev_keys: std::collections::HashSet<String> = prev.iter().map(Finding::key).collect();
    let now_keys: std::collections::HashSet<String> = now.iter().map(Finding::key).collect();
    let (unchanged, new) = now
        .iter()
        .cloned()
        .partition(|f| prev_keys.contains(&f.key()));
    let fixed = prev
        .iter()
        .filter(|f| !now_keys.contains(&f.key()))
        .filter(|f| {
            f.target
                .parse::<IpAddr>()
                .map(|a| probed.contains(&a))
                .unwrap_or(false)
        })
        .cloned()
        .collect();
    (new, fixed, unchanged)
}

/// An organisation's diagnosis runs, newest first (at most 100).
#[utoipa::path(get, path = "/api/v1/orgs/{id}/diagnoses", tag = "diagnose", params(("id" = String, Path)),
    responses((status = 200, body = [RunSummary]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_runs(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<RunSummary>>, ApiError> {
    caller.require_org(&id)?;
    let rows = sqlx::query(
        "SELECT id, org_id, started_by, started_ms, finished_ms, targets, findings FROM diagnose_runs WHERE org_id = $1 ORDER BY created_ms DESC, id DESC LIMIT 100",
    )
    .bind(&id)
    .fetch_all(&c.db.pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let targets: String = r.get(5);
        let findings: String = r.get(6);
        let n = serde_json::from_str::<Vec<serde_json::Value>>(&findings)
            .map(|v| v.len())
            .unwrap_or(0);
        out.push(RunSummary {
            id: r.get(0),
            org_id: r.get(1),
            started_by: r.get(2),
            started_ms: r.get(3),
            finished_ms: r.get(4),
            targets: serde_json::from_str(&targets).unwrap_or_default(),
            findings: n,
        });
    }
    Ok(Json(out))
}

/// One run with all its findings, compared with the run before it (new, fixed,
/// unchanged; `new` + `unchanged` are all of this run's findings). This is what the
/// organisation's ledger and check-sheet evidence read: each finding's stable key is
/// (target, proto, port, check), with severity, evidence and recommendations.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/diagnoses/{run}", tag = "diagnose",
    params(("id" = String, Path), ("run" = String, Path, description = "a run id from POST or GET …/diagnoses")),
    responses((status = 200, body = RunComparison), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path((id, run)): Path<(String, String)>,
) -> Result<Json<RunComparison>, ApiError> {
    caller.require_org(&id)?;
    run_comparison(&c, &id, Some(&run))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no diagnosis run {run} of {id}")))
}

/// A run of the organisation (its newest when `run` is None) compared with the run
/// before it; None when there is no such run.
pub(crate) async fn run_comparison(
    c: &Center,
    org: &str,
    run: Option<&str>,
) -> Result<Option<RunComparison>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, org_id, started_by, started_ms, finished_ms, targets, findings, created_ms FROM diagnose_runs WHERE org_id = $1 ORDER BY created_ms DESC, id DESC",
    )
    .bind(org)
    .fetch_all(&c.db.pool)
    .await?;
    let found = match run {
        Some(run) => rows.iter().position(|r| r.get::<String, _>(0) == run),
        None => (!rows.is_empty()).then_some(0),
    };
    let Some(i) = found else {
        return Ok(None);
    };
    let read = |r: &sqlx::any::AnyRow| -> Result<(Vec<String>, Vec<Finding>), ApiError> {
        let t: String = r.get(5);
        let f: String = r.get(6);
        Ok((
            serde_json::from_str(&t).unwrap_or_default(),
            serde_json::from_str(&f)
                .map_err(|_| ApiError::internal("stored diagnosis unreadable"))?,
        ))
    };
    let (targets, findings) = read(&rows[i])?;
    let (prev_id, prev) = match rows.get(i + 1) {
        Some(p) => (Some(p.get::<String, _>(0)), read(p)?.1),
        None => (None, Vec::new()),
    };
    let probed: Vec<IpAddr> = targets.iter().filter_map(|t| t.parse().ok()).collect();
    let (new, fixed, unchanged) = compare(&prev, &findings, &probed);
    let r = &rows[i];
    Ok(Some(RunComparison {
        run: RunSummary {
            id: r.get(0),
            org_id: r.get(1),
            started_by: r.get(2),
            started_ms: r.get(3),
            finished_ms: r.get(4),
            targets,
            findings: findings.len(),
        },
        previous: prev_id,
        new,
        fixed,
        unchanged,
    }))
}

//! Approval windows (R-POL-3): per-session approval, e.g. remote maintenance.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::orgs::org_exists;
use crate::api::set_of;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::grants::{self};
use crate::{new_id, Center};

// ---------- approval windows (R-POL-3: per-session approval, e.g. remote maintenance) ----------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApproval {
    /// The organisation that opens its door (usually the hospital).
    pub approver_org: String,
    /// The organisation allowed in (usually the equipment vendor).
    pub applicant_org: String,
    /// Only this device of the applicant, if given.
    #[serde(default)]
    pub applicant_device: Option<String>,
    /// A window from now, 1–1440 minutes long. Give this or `not_after`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1440)]
    pub minutes: Option<u32>,
    /// Start (Unix seconds); default now. At most 90 days ahead.
    #[serde(default)]
    pub not_before: Option<i64>,
    /// End (Unix seconds, exclusive); at most 24 hours after the start.
    #[serde(default)]
    pub not_after: Option<i64>,
    /// The contracted hosts (addresses or prefixes of the approver's sites); empty:
    /// whatever the approver's policy rule allows. At most 16.
    #[serde(default)]
    #[schema(value_type = Vec<String>, max_items = 16)]
    pub hosts: Vec<ipnet::IpNet>,
    /// The contracted services, e.g. `tcp/22`; empty: the rule's. At most 16.
    #[serde(default)]
    #[schema(value_type = Vec<String>, max_items = 16)]
    pub services: Vec<dodvpn_policy::Service>,
}

#[derive(Serialize, ToSchema)]
pub struct ApprovalRecord {
    pub id: String,
    pub approver_org: String,
    pub applicant_org: String,
    pub applicant_device: Option<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub closed_ms: Option<i64>,
    #[schema(value_type = Vec<String>)]
    pub hosts: Vec<ipnet::IpNet>,
    #[schema(value_type = Vec<String>)]
    pub services: Vec<dodvpn_policy::Service>,
    /// When the applicant's devices were told the window is about to end.
    pub warned_ms: Option<i64>,
    pub opened_by: Option<String>,
}

pub(crate) fn approval_from_row(r: &sqlx::any::AnyRow) -> ApprovalRecord {
    ApprovalRecord {
        id: r.get(0),
        approver_org: r.get(1),
        applicant_org: r.get(2),
        applicant_device: r.get(3),
        not_before: r.get(4),
        not_after: r.get(5),
        closed_ms: r.get(6),
        hosts: serde_json::from_str(&r.get::<String, _>(7)).unwrap_or_default(),
        services: serde_json::from_str(&r.get::<String, _>(8)).unwrap_or_default(),
        warned_ms: r.get(9),
        opened_by: r.get(10),
    }
}

pub(crate) const APPROVAL_COLS: &str =
    "id, approver_org, applicant_org, applicant_device, not_before, not_after, closed_ms, hosts, services, warned_ms, opened_by";

/// The longest window, and how far ahead one may be scheduled.
pub const MAX_WINDOW_SECS: i64 = 24 * 3600;
pub const MAX_AHEAD_SECS: i64 = 90 * 86400;
/// The applicant's devices are warned this long before a window ends (or at half a
/// shorter window).
pub const WARNING_SECS: i64 = 5 * 60;

fn window_of(body: &NewApproval, now: i64) -> Result<(i64, i64), ApiError> {
    let start = body.not_before.unwrap_or(now);
    let end = match (body.minutes, body.not_after) {
        (Some(m), None) if (1..=1440).contains(&m) => start + m as i64 * 60,
        (Some(_), None) => return Err(ApiError::bad_request("minutes must be between 1 and 1440")),
        (None, Some(end)) => end,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give minutes or not_after, not both"))
        }
        (None, None) => return Err(ApiError::bad_request("give minutes or not_after")),
    };
    if start < now - 60 || start > now + MAX_AHEAD_SECS {
        return Err(ApiError::bad_request(
            "not_before must be from now to 90 days ahead",
        ));
    }
    if end <= start.max(now) || end - start > MAX_WINDOW_SECS {
        return Err(ApiError::bad_request(
            "not_after must be after the start and now, at most 24 hours after the start",
        ));
    }
    if body.hosts.len() > 16 || body.services.len() > 16 {
        return Err(ApiError::bad_request(
            "at most 16 contracted hosts and 16 services",
        ));
    }
    Ok((start, end))
}

#[utoipa::path(post, path = "/api/v1/approvals", tag = "policy", request_body = NewApproval,
    responses((status = 201, body = ApprovalRecord), (status = 400, body = ErrorBody)))]
pub async fn open_approval(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewApproval>, JsonRejection>,
) -> Result<(StatusCode, Json<ApprovalRecord>), ApiError> {
    let Json(body) = body?;
    caller.require_org(&body.approver_org)?;
    let mut tx = c.db.begin_write().await?;
    let (start, end) = window_of(&body, tx.now / 1000)?;
    org_exists(&mut tx, &body.approver_org).await?;
    org_exists(&mut tx, &body.applicant_org).await?;
    let id = new_id("appr");
    sqlx::query(&format!(
        "INSERT INTO approvals ({APPROVAL_COLS}) VALUES ($1,$2,$3,$4,$5,$6,NULL,$7,$8,NULL,$9)"
    ))
    .bind(&id)
    .bind(&body.approver_org)
    .bind(&body.applicant_org)
    .bind(&body.applicant_device)
    .bind(start)
    .bind(end)
    .bind(list_text(&body.hosts))
    .bind(list_text(&body.services))
    .bind(caller.actor())
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "approval.opened",
        &id,
        serde_json::json!({"approver": body.approver_org, "applicant": body.applicant_org, "device": body.applicant_device,
            "not_before": start, "not_after": end, "minutes": (end - start) / 60, "hosts": body.hosts, "services": body.services}),
    )
    .await?;
    for d in super::orgs::org_devices(&mut tx, &body.applicant_org).await? {
        tx.event(
            &d,
            "approval_opened",
            &serde_json::json!({"approval": id, "approver_org": body.approver_org, "not_before": start, "not_after": end}),
        )
        .await?;
    }
    let r = sqlx::query(&format!(
        "SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1"
    ))
    .bind(&id)
    .fetch_one(&mut *tx.tx)
    .await?;
    let rec = approval_from_row(&r);
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

/// A contract list as stored (JSON); lists of addresses and services always encode.
fn list_text<T: Serialize>(v: &[T]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// An application the policy refused (for want of a window: the approver's inbox).
#[derive(Serialize, ToSchema)]
pub struct WaitingApplication {
    pub applicant_device: String,
    pub applicant_org: String,
    pub target_device: String,
    pub target_org: String,
    pub reason: String,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Applications waiting for a window of the caller's organisation (the provider: all),
/// refused in the last 7 days and not granted since.
#[utoipa::path(get, path = "/api/v1/approvals/requests", tag = "policy",
    responses((status = 200, body = [WaitingApplication]), (status = 403, body = ErrorBody)))]
pub async fn waiting_applications(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<WaitingApplication>>, ApiError> {
    let scope = caller.org_scope()?.unwrap_or("");
    refused_since(
        &c,
        "approval_required = 1 AND ($1 = '' OR target_org = $1)",
        scope,
    )
    .await
}

/// Every application refused in the last 7 days and not granted since, with its
/// reason, where the caller's organisation is either end (the provider: all).
#[utoipa::path(get, path = "/api/v1/connections/refused", tag = "policy",
    responses((status = 200, body = [WaitingApplication]), (status = 403, body = ErrorBody)))]
pub async fn refused_applications(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<WaitingApplication>>, ApiError> {
    let scope = caller.org_scope()?.unwrap_or("");
    refused_since(
        &c,
        "($1 = '' OR target_org = $1 OR applicant_org = $1)",
        scope,
    )
    .await
}

async fn refused_since(
    c: &Center,
    filter: &str,
    scope: &str,
) -> Result<Json<Vec<WaitingApplication>>, ApiError> {
    let since = crate::db::now_ms() - 7 * 86400 * 1000;
    let rows = sqlx::query(&format!(
        "SELECT applicant_device, applicant_org, target_device, target_org, reason, first_ms, last_ms FROM denied_applications \
         WHERE last_ms >= $2 AND {filter} ORDER BY last_ms DESC LIMIT 500"
    ))
    .bind(scope)
    .bind(since)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| WaitingApplication {
                applicant_device: r.get(0),
                applicant_org: r.get(1),
                target_device: r.get(2),
                target_org: r.get(3),
                reason: r.get(4),
                first_ms: r.get(5),
                last_ms: r.get(6),
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/approvals", tag = "policy", responses((status = 200, body = [ApprovalRecord])))]
pub async fn list_approvals(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<ApprovalRecord>>, ApiError> {
    let scope = caller.org_scope()?.unwrap_or("");
    let rows = sqlx::query(&format!(
        "SELECT {APPROVAL_COLS} FROM approvals WHERE ($1 = '' OR approver_org = $1 OR applicant_org = $1) ORDER BY not_before"
    ))
    .bind(scope)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Json(rows.iter().map(approval_from_row).collect()))
}

/// Close an approval window now: grants that depended on it are withdrawn at once.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/close", tag = "policy", params(("id" = String, Path)),
    responses((status = 200, body = ApprovalRecord), (status = 404, body = ErrorBody)))]
pub async fn close_approval(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApprovalRecord>, ApiError> {
    caller.require_admin()?;
    let mut tx = c.db.begin_write().await?;
    let r = sqlx::query(&format!(
        "SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1"
    ))
    .bind(&id)
    .fetch_optional(&mut *tx.tx)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no approval {id}")))?;
    let rec = approval_from_row(&r);
    caller
        .require_org(&rec.approver_org)
        .map_err(|_| ApiError::not_found(format!("no approval {id}")))?;
    if rec.closed_ms.is_none() {
        sqlx::query("UPDATE approvals SET closed_ms = $2 WHERE id = $1")
            .bind(&id)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(
            &caller.actor(),
            "approval.closed",
            &id,
            serde_json::json!({}),
        )
        .await?;
        let mut affected = super::orgs::org_devices(&mut tx, &rec.applicant_org).await?;
        affected.extend(super::orgs::org_devices(&mut tx, &rec.approver_org).await?);
        grants::reevaluate(&c, &mut tx, &caller.actor(), Some(&set_of(affected))).await?;
    }
    let r = sqlx::query(&format!(
        "SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1"
    ))
    .bind(&id)
    .fetch_one(&mut *tx.tx)
    .await?;
    let rec = approval_from_row(&r);
    tx.commit().await?;
    Ok(Json(rec))
}

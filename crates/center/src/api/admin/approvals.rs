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
    /// How long the window stays open, 1–1440 minutes.
    #[schema(minimum = 1, maximum = 1440)]
    pub minutes: u32,
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
    }
}

pub(crate) const APPROVAL_COLS: &str =
    "id, approver_org, applicant_org, applicant_device, not_before, not_after, closed_ms";

#[utoipa::path(post, path = "/api/v1/approvals", tag = "policy", request_body = NewApproval,
    responses((status = 201, body = ApprovalRecord), (status = 400, body = ErrorBody)))]
pub async fn open_approval(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewApproval>, JsonRejection>,
) -> Result<(StatusCode, Json<ApprovalRecord>), ApiError> {
    let Json(body) = body?;
    caller.require_org(&body.approver_org)?;
    if !(1..=1440).contains(&body.minutes) {
        return Err(ApiError::bad_request("minutes must be between 1 and 1440"));
    }
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &body.approver_org).await?;
    org_exists(&mut tx, &body.applicant_org).await?;
    let id = new_id("appr");
    let now = tx.now / 1000;
    sqlx::query(&format!(
        "INSERT INTO approvals ({APPROVAL_COLS}) VALUES ($1,$2,$3,$4,$5,$6,NULL)"
    ))
    .bind(&id)
    .bind(&body.approver_org)
    .bind(&body.applicant_org)
    .bind(&body.applicant_device)
    .bind(now)
    .bind(now + body.minutes as i64 * 60)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "approval.opened",
        &id,
        serde_json::json!({"approver": body.approver_org, "applicant": body.applicant_org, "device": body.applicant_device, "minutes": body.minutes}),
    )
    .await?;
    for d in super::orgs::org_devices(&mut tx, &body.applicant_org).await? {
        tx.event(
            &d,
            "approval_opened",
            &serde_json::json!({"approval": id, "approver_org": body.approver_org}),
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

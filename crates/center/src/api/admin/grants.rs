//! Connection applications (TR D.6 k) and the grants they produce.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::devices::*;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::grants::{self, Outcome};
use crate::Center;

// ---------- connection applications (step k) and grants ----------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The applying device (admin calls only; a device applies for itself).
    #[serde(default)]
    pub from_device: Option<String>,
    /// One peer device…
    #[serde(default)]
    pub to_device: Option<String>,
    /// …or every other member of a group.
    #[serde(default)]
    pub to_group: Option<String>,
    /// What the connection is for (1–200 characters), shown in both organisations' ledgers.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub purpose: Option<String>,
}

/// Most characters of an application's purpose.
pub const MAX_PURPOSE: usize = 200;

#[derive(Serialize, ToSchema)]
pub struct ApplicationResult {
    pub applicant: String,
    pub outcomes: Vec<Outcome>,
}

pub(crate) async fn run_application(
    c: &Center,
    actor: &str,
    applicant: &str,
    to_device: Option<&str>,
    to_group: Option<&str>,
    purpose: Option<&str>,
) -> Result<ApplicationResult, ApiError> {
    let purpose = purpose.map(str::trim);
    if let Some(p) = purpose {
        let n = p.chars().count();
        if n == 0 || n > MAX_PURPOSE || p.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "purpose must be 1–{MAX_PURPOSE} printable characters / 目的は {MAX_PURPOSE} 文字以内の印字可能文字にしてください"
            )));
        }
    }
    let mut tx = c.db.begin_write().await?;
    let targets: Vec<String> = match (to_device, to_group) {
        (Some(d), None) => vec![d.to_string()],
        (None, Some(g)) => {
            let members: Vec<String> = sqlx::query_scalar(
                "SELECT device_id FROM memberships WHERE group_name = $1 ORDER BY device_id",
            )
            .bind(g)
            .fetch_all(&mut *tx.tx)
            .await?;
            members.into_iter().filter(|m| m != applicant).collect()
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of to_device or to_group",
            ))
        }
    };
    tx.audit(
        actor,
        "connection.applied",
        applicant,
        serde_json::json!({"to_device": to_device, "to_group": to_group, "purpose": purpose, "step": "k"}),
    )
    .await?;
    let mut outcomes = Vec::new();
    for t in targets {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE id = $1")
            .bind(&t)
            .fetch_one(&mut *tx.tx)
            .await?;
        if exists == 0 {
            // Same answer as a refusal: an applicant learns nothing about devices it may not reach.
            outcomes.push(Outcome {
                target_device: t,
                granted: false,
                grant_id: None,
                reason: Some("not allowed".into()),
            });
            continue;
        }
        let outcome = grants::apply(c, &mut tx, actor, applicant, &t).await?;
        if let (Some(p), Some(g)) = (purpose, &outcome.grant_id) {
            // The first application's purpose stays; a repeated one does not rewrite it.
            sqlx::query("UPDATE grants SET purpose = $1 WHERE id = $2 AND purpose IS NULL")
                .bind(p)
                .bind(g)
                .execute(&mut *tx.tx)
                .await?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(ApplicationResult {
        applicant: applicant.to_string(),
        outcomes,
    })
}

/// TR D.6 k on behalf of a device: the centre grants only provider ∩ both subscribers' policies.
#[utoipa::path(post, path = "/api/v1/connections", tag = "policy", request_body = Application,
    responses((status = 200, body = ApplicationResult), (status = 400, body = ErrorBody)))]
pub async fn apply_connection(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<Application>, JsonRejection>,
) -> Result<Json<ApplicationResult>, ApiError> {
    caller.require_admin()?;
    let Json(body) = body?;
    let from = body
        .from_device
        .ok_or_else(|| ApiError::bad_request("from_device is required"))?;
    let d = device_for(&c, &caller, &from).await?;
    caller.require_org(&d.owner_org)?;
    Ok(Json(
        run_application(
            &c,
            &caller.actor(),
            &from,
            body.to_device.as_deref(),
            body.to_group.as_deref(),
            body.purpose.as_deref(),
        )
        .await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct GrantRecord {
    pub id: String,
    pub applicant_device: String,
    pub target_device: String,
    pub status: String,
    pub version: i64,
    pub not_after: i64,
    pub end_reason: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct GrantQuery {
    /// active | withdrawn
    pub status: Option<String>,
    pub device: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/grants", tag = "policy", params(GrantQuery), responses((status = 200, body = [GrantRecord])))]
pub async fn list_grants(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(q): Query<GrantQuery>,
) -> Result<Json<Vec<GrantRecord>>, ApiError> {
    let scope = caller.org_scope()?.unwrap_or("");
    let rows = sqlx::query(
        "SELECT id, applicant_device, target_device, status, version, not_after, end_reason FROM grants \
         WHERE ($1 = '' OR status = $1) AND ($2 = '' OR applicant_device = $2 OR target_device = $2) \
         AND ($3 = '' OR applicant_device IN (SELECT id FROM devices WHERE owner_org = $3) \
                      OR target_device IN (SELECT id FROM devices WHERE owner_org = $3)) ORDER BY created_ms",
    )
    .bind(q.status.as_deref().unwrap_or(""))
    .bind(q.device.as_deref().unwrap_or(""))
    .bind(scope)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| GrantRecord {
                id: r.get(0),
                applicant_device: r.get(1),
                target_device: r.get(2),
                status: r.get(3),
                version: r.get(4),
                not_after: r.get(5),
                end_reason: r.get(6),
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct GrantDetail {
    pub grant: GrantRecord,
    /// The applicant's (initiator's) connection info, as signed and pushed to it; absent
    /// when the caller's organisation does not own the applicant.
    pub applicant_connection_info: Option<grants::SignedInfo>,
    /// The target's (responder's) connection info; absent when the caller's organisation
    /// does not own the target.
    pub target_connection_info: Option<grants::SignedInfo>,
}

/// One grant with its connection info: what an operator needs to configure a device by
/// hand that does not run the agent (e.g. a standard IKEv2 router). The provider sees
/// both ends; an organisation's administrator only its own end(s).
#[utoipa::path(get, path = "/api/v1/grants/{id}", tag = "policy", params(("id" = String, Path)),
    responses((status = 200, body = GrantDetail), (status = 404, body = ErrorBody)))]
pub async fn get_grant(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<GrantDetail>, ApiError> {
    caller.require_admin()?;
    let r = sqlx::query(
        "SELECT g.id, g.applicant_device, g.target_device, g.status, g.version, g.not_after, g.end_reason, \
         g.info_applicant, g.info_target, a.owner_org, t.owner_org FROM grants g \
         JOIN devices a ON a.id = g.applicant_device JOIN devices t ON t.id = g.target_device WHERE g.id = $1",
    )
    .bind(&id)
    .fetch_optional(&c.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no grant {id}")))?;
    let (ao, to): (String, String) = (r.get(9), r.get(10));
    let (see_a, see_t) = (
        caller.require_org(&ao).is_ok(),
        caller.require_org(&to).is_ok(),
    );
    if !see_a && !see_t {
        return Err(ApiError::not_found(format!("no grant {id}")));
    }
    let info = |col: usize, visible: bool| -> Result<Option<grants::SignedInfo>, ApiError> {
        if !visible {
            return Ok(None);
        }
        let text: String = r.get(col);
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| ApiError::internal("stored connection info unreadable"))
    };
    Ok(Json(GrantDetail {
        applicant_connection_info: info(7, see_a)?,
        target_connection_info: info(8, see_t)?,
        grant: GrantRecord {
            id: r.get(0),
            applicant_device: r.get(1),
            target_device: r.get(2),
            status: r.get(3),
            version: r.get(4),
            not_after: r.get(5),
            end_reason: r.get(6),
        },
    }))
}

#[utoipa::path(post, path = "/api/v1/grants/{id}/withdraw", tag = "policy", params(("id" = String, Path)),
    request_body = Revoke, responses((status = 200), (status = 404, body = ErrorBody)))]
pub async fn withdraw_grant(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Revoke>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    let row = sqlx::query(
        "SELECT a.owner_org, t.owner_org FROM grants g JOIN devices a ON a.id = g.applicant_device \
         JOIN devices t ON t.id = g.target_device WHERE g.id = $1 AND g.status = 'active'",
    )
    .bind(&id)
    .fetch_optional(&mut *tx.tx)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no live grant {id}")))?;
    let (ao, to): (String, String) = (row.get(0), row.get(1));
    if caller.require_org(&ao).is_err() && caller.require_org(&to).is_err() {
        return Err(ApiError::not_found(format!("no live grant {id}")));
    }
    grants::withdraw(&mut tx, &caller.actor(), &id, &body.reason).await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

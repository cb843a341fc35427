//! Groups: the provider policy (R-POL-1, R-POL-6) and their members.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use dodvpn_policy::{ChecksheetGate, GroupPolicy, Service};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::devices::*;
use super::orgs::check_name;
use crate::api::set_of;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::grants::{self};
use crate::Center;

// ---------- groups: the provider policy (R-POL-1, R-POL-6) ----------

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    /// 1–200 printable characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Members must have passed the security check sheet (R-POL-6).
    #[serde(default)]
    pub require_checksheet: bool,
    /// Services the provider allows inside this group, e.g. ["tcp/443", "icmp"]; absent = no restriction.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub services: Option<Vec<Service>>,
    /// The sheet that must pass and the minimum score (with `require_checksheet`);
    /// absent = the provider's attestation (`PUT /api/v1/orgs/{id}/checksheet`) decides.
    #[serde(default)]
    pub checksheet_gate: Option<ChecksheetGate>,
}

#[derive(Serialize, ToSchema)]
pub struct Group {
    pub name: String,
    pub require_checksheet: bool,
    #[schema(value_type = Option<Vec<Object>>)]
    pub services: Option<Vec<Service>>,
    pub checksheet_gate: Option<ChecksheetGate>,
    pub members: Vec<String>,
}

/// A gate must name shipped sheets (1–8 of them) and a score of 0–100.
fn check_gate(gate: &Option<ChecksheetGate>) -> Result<Option<ChecksheetGate>, ApiError> {
    let Some(g) = gate else { return Ok(None) };
    let cats = crate::checksheets::catalogues()?;
    if g.sheets.is_empty() || g.sheets.len() > 8 || g.min_percent > 100 {
        return Err(ApiError::bad_request(
            "a check-sheet gate names 1–8 sheets and a minimum score of 0–100",
        ));
    }
    if let Some(s) = g
        .sheets
        .iter()
        .find(|s| cats.iter().all(|c| c.sheet(s).is_none()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown check sheet {s} in the gate / 不明なチェックシートです: {s}"
        )));
    }
    Ok(Some(g.clone()))
}

pub(crate) async fn load_group(c: &Center, name: &str) -> Result<Group, ApiError> {
    let p: String = sqlx::query_scalar("SELECT policy FROM groups_ WHERE name = $1")
        .bind(name)
        .fetch_optional(&c.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group {name}")))?;
    let gp: GroupPolicy =
        serde_json::from_str(&p).map_err(|_| ApiError::internal("stored group unreadable"))?;
    let members = sqlx::query_scalar(
        "SELECT device_id FROM memberships WHERE group_name = $1 ORDER BY device_id",
    )
    .bind(name)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Group {
        name: name.to_string(),
        require_checksheet: gp.require_checksheet,
        services: gp.services,
        checksheet_gate: gp.checksheet_gate,
        members,
    })
}

#[utoipa::path(post, path = "/api/v1/groups", tag = "policy", request_body = GroupBody,
    responses((status = 201, body = Group), (status = 409, body = ErrorBody)))]
pub async fn create_group(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<GroupBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    check_name("group name", &body.name)?;
    let mut tx = c.db.begin_write().await?;
    let gp = GroupPolicy {
        require_checksheet: body.require_checksheet,
        services: body.services.clone(),
        checksheet_gate: check_gate(&body.checksheet_gate)?,
    };
    sqlx::query("INSERT INTO groups_ (name, policy, created_ms) VALUES ($1,$2,$3)")
        .bind(&body.name)
        .bind(serde_json::to_string(&gp).map_err(|_| ApiError::internal("group"))?)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "group.created",
        &body.name,
        serde_json::to_value(&body).unwrap_or_default(),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(load_group(&c, &body.name).await?)))
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "policy", responses((status = 200, body = [Group])))]
pub async fn list_groups(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<Group>>, ApiError> {
    caller.require_admin()?;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM groups_ ORDER BY name")
        .fetch_all(&c.db.pool)
        .await?;
    let mut out = Vec::new();
    for n in names {
        let mut g = load_group(&c, &n).await?;
        if let Caller::OrgAdmin { org_id, .. } = &caller {
            // An organisation sees the groups, but only its own members in them.
            let own: Vec<String> =
                sqlx::query_scalar("SELECT id FROM devices WHERE owner_org = $1")
                    .bind(org_id)
                    .fetch_all(&c.db.pool)
                    .await?;
            g.members.retain(|m| own.contains(m));
        }
        out.push(g);
    }
    Ok(Json(out))
}

/// Change a group's provider policy; every member is told and live grants re-evaluated.
#[utoipa::path(put, path = "/api/v1/groups/{name}", tag = "policy", params(("name" = String, Path)),
    request_body = GroupBody, responses((status = 200, body = Group), (status = 404, body = ErrorBody)))]
pub async fn put_group(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<GroupBody>, JsonRejection>,
) -> Result<Json<Group>, ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    if body.name != name {
        return Err(ApiError::bad_request(
            "the body's name must match the path (groups are not renamed)",
        ));
    }
    let mut tx = c.db.begin_write().await?;
    let gp = GroupPolicy {
        require_checksheet: body.require_checksheet,
        services: body.services.clone(),
        checksheet_gate: check_gate(&body.checksheet_gate)?,
    };
    let n = sqlx::query("UPDATE groups_ SET policy = $2 WHERE name = $1")
        .bind(&name)
        .bind(serde_json::to_string(&gp).map_err(|_| ApiError::internal("group"))?)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::not_found(format!("no group {name}")));
    }
    tx.audit(
        &caller.actor(),
        "policy.provider_changed",
        &name,
        serde_json::to_value(&body).unwrap_or_default(),
    )
    .await?;
    let members: Vec<String> =
        sqlx::query_scalar("SELECT device_id FROM memberships WHERE group_name = $1")
            .bind(&name)
            .fetch_all(&mut *tx.tx)
            .await?;
    let payload = serde_json::json!({"scope": "provider", "group": name});
    for m in &members {
        tx.event(m, "policy_changed", &payload).await?;
    }
    grants::reevaluate(&c, &mut tx, &caller.actor(), Some(&set_of(members))).await?;
    tx.commit().await?;
    Ok(Json(load_group(&c, &name).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub device_id: String,
}

#[utoipa::path(post, path = "/api/v1/groups/{name}/members", tag = "policy", params(("name" = String, Path)),
    request_body = Member, responses((status = 200, body = Group), (status = 404, body = ErrorBody)))]
pub async fn add_member(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Member>, JsonRejection>,
) -> Result<Json<Group>, ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    load_group(&c, &name).await?;
    load_device(&c.db.pool, &body.device_id).await?;
    let mut tx = c.db.begin_write().await?;
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships WHERE group_name = $1 AND device_id = $2",
    )
    .bind(&name)
    .bind(&body.device_id)
    .fetch_one(&mut *tx.tx)
    .await?;
    if exists == 0 {
        sqlx::query("INSERT INTO memberships (group_name, device_id) VALUES ($1, $2)")
            .bind(&name)
            .bind(&body.device_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(
            &caller.actor(),
            "group.member_added",
            &name,
            serde_json::json!({"device": body.device_id}),
        )
        .await?;
        tx.event(
            &body.device_id,
            "policy_changed",
            &serde_json::json!({"scope": "provider", "group": name, "joined": true}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(load_group(&c, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}/members/{device_id}", tag = "policy",
    params(("name" = String, Path), ("device_id" = String, Path)),
    responses((status = 200, body = Group), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path((name, device_id)): Path<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    caller.require_provider()?;
    let mut tx = c.db.begin_write().await?;
    let n = sqlx::query("DELETE FROM memberships WHERE group_name = $1 AND device_id = $2")
        .bind(&name)
        .bind(&device_id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::not_found(format!(
            "device {device_id} is not in group {name}"
        )));
    }
    tx.audit(
        &caller.actor(),
        "group.member_removed",
        &name,
        serde_json::json!({"device": device_id}),
    )
    .await?;
    tx.event(
        &device_id,
        "policy_changed",
        &serde_json::json!({"scope": "provider", "group": name, "left": true}),
    )
    .await?;
    grants::reevaluate(
        &c,
        &mut tx,
        &caller.actor(),
        Some(&set_of([device_id.clone()])),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(load_group(&c, &name).await?))
}

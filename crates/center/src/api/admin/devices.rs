//! Devices (TR D.6 c, f–h, l): registration, network, the state steps and revocation.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::orgs::{check_name, check_text, org_exists};
use super::providers::{
    require_device_provider, require_device_provider_for, require_device_provider_of, serves,
};
use crate::api::set_of;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::device_state::DeviceState;
use crate::error::{ApiError, ErrorBody};
use crate::grants::{self};
use crate::{new_id, Center};
use dodvpn_policy::session::MAX_REASON_LEN;

// ---------- devices (steps c–h, l) ----------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// The manufacturer's serial number; unique across the network (1–200 printable characters).
    #[schema(min_length = 1, max_length = 200)]
    pub serial: String,
    /// 1–200 printable characters.
    #[schema(min_length = 1, max_length = 200)]
    pub model: String,
    pub owner_org: String,
    #[serde(default)]
    pub order_id: Option<String>,
    /// Outer address the device is reachable at (host:port or host), if fixed.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Inside networks behind the device (at most 64).
    #[serde(default)]
    #[schema(value_type = Vec<String>, max_items = 64)]
    pub subnets: Vec<IpNet>,
}

#[derive(Serialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub serial: String,
    pub model: String,
    pub owner_org: String,
    pub order_id: Option<String>,
    /// registered → certified → installed → delivered → service_applied → service_approved
    /// → enrolled → service_installed → in_service; or suspended / revoked.
    pub status: DeviceState,
    pub endpoint: Option<String>,
    #[schema(value_type = Vec<String>)]
    pub subnets: Vec<IpNet>,
    /// The prefix each of `subnets` is seen by at its peers, where the centre
    /// mapped it because it overlaps another site's (R-DP-8); empty = none.
    #[schema(value_type = Vec<String>)]
    pub mapped_subnets: Vec<IpNet>,
    pub groups: Vec<String>,
    pub created_ms: i64,
    /// The device provider organisation that registered it (None: the provider).
    pub registered_by: Option<String>,
    /// Whether the owner's side has confirmed it (needed before step d).
    pub confirmed: bool,
}

pub(crate) async fn load_device(
    tx_or_pool: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: &str,
) -> Result<Device, ApiError> {
    let r = sqlx::query(&format!("SELECT {DEVICE_COLS} FROM devices WHERE id = $1"))
        .bind(id)
        .fetch_optional(tx_or_pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    device_from_row(&r)
}

const DEVICE_COLS: &str = "id, serial, model, owner_org, order_id, status, endpoint, subnets, created_ms, mapped_subnets, registered_by, confirmed_ms";

fn device_from_row(r: &sqlx::any::AnyRow) -> Result<Device, ApiError> {
    let subnets: String = r.get(7);
    let mapped: String = r.get(9);
    Ok(Device {
        id: r.get(0),
        serial: r.get(1),
        model: r.get(2),
        owner_org: r.get(3),
        order_id: r.get(4),
        status: r.get::<String, _>(5).parse()?,
        endpoint: r.get(6),
        subnets: serde_json::from_str(&subnets).unwrap_or_default(),
        mapped_subnets: serde_json::from_str(&mapped).unwrap_or_default(),
        groups: vec![],
        created_ms: r.get(8),
        registered_by: r.get(10),
        confirmed: r.get::<Option<i64>, _>(11).is_some(),
    })
}

pub(crate) async fn with_groups(c: &Center, mut d: Device) -> Result<Device, ApiError> {
    d.groups = sqlx::query_scalar(
        "SELECT group_name FROM memberships WHERE device_id = $1 ORDER BY group_name",
    )
    .bind(&d.id)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(d)
}

pub(crate) fn validate_subnets(subnets: &[IpNet]) -> Result<(), ApiError> {
    if subnets.len() > 64 {
        return Err(ApiError::bad_request("at most 64 subnets per device"));
    }
    Ok(())
}

/// TR D.6 c: the device provider registers a device (serial, model, owner).
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = NewDevice,
    responses((status = 201, body = Device), (status = 409, body = ErrorBody, description = "duplicate serial")))]
pub async fn register_device(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewDevice>, JsonRejection>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    require_device_provider(&c, &caller).await?;
    let Json(body) = body?;
    let registered_by = require_device_provider_for(&c, &caller, &body.owner_org).await?;
    check_name("serial", &body.serial)?;
    check_name("model", &body.model)?;
    validate_subnets(&body.subnets)?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &body.owner_org).await?;
    let dup: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE serial = $1")
        .bind(&body.serial)
        .fetch_one(&mut *tx.tx)
        .await?;
    if dup > 0 {
        return Err(ApiError::conflict(
            "duplicate_serial",
            format!("a device with serial {} is already registered", body.serial),
        ));
    }
    let id = new_id("dev");
    sqlx::query(
        "INSERT INTO devices (id, serial, model, owner_org, order_id, status, endpoint, subnets, created_ms, updated_ms, registered_by, confirmed_ms) \
         VALUES ($1,$2,$3,$4,$5,$9,$6,$7,$8,$8,$10,$11)",
    )
    .bind(&id)
    .bind(&body.serial)
    .bind(&body.model)
    .bind(&body.owner_org)
    .bind(&body.order_id)
    .bind(&body.endpoint)
    .bind(serde_json::to_string(&body.subnets).unwrap_or_else(|_| "[]".into()))
    .bind(tx.now)
    .bind(DeviceState::Registered.as_str())
    .bind(&registered_by)
    // A device provider's registration waits for the owner's confirmation.
    .bind(if registered_by.is_none() { Some(tx.now) } else { None })
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| match ApiError::from(e) {
        e if e.status == StatusCode::CONFLICT => ApiError::conflict("duplicate_serial", "a device with that serial is already registered"),
        e => e,
    })?;
    tx.audit(
        &caller.actor(),
        "device.registered",
        &id,
        serde_json::json!({"serial": body.serial, "model": body.model, "owner": body.owner_org, "order": body.order_id, "registered_by": registered_by, "confirmed": registered_by.is_none(), "step": "c"}),
    )
    .await?;
    // R-DP-8: a range another site also uses is mapped, on both devices. Only IPv4
    // ranges are ever mapped, so a device without one cannot collide and the re-plan
    // (a pass over every device with ranges) is skipped.
    let remapped = if body.subnets.iter().any(|s| s.addr().is_ipv4()) {
        crate::mapping::remap(&mut tx, &caller.actor()).await?
    } else {
        Default::default()
    };
    if !remapped.is_empty() {
        grants::reevaluate(&c, &mut tx, &caller.actor(), Some(&remapped)).await?;
    }
    let d = load_device(&mut *tx.tx, &id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(d)))
}

#[derive(Deserialize, IntoParams)]
pub struct DeviceQuery {
    /// Only devices of this organisation.
    pub org: Option<String>,
    /// Only the device with this serial.
    pub serial: Option<String>,
    /// At most this many (1–10000, default 10000), in order of registration.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
    /// Skip this many first.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

const MAX_LIST: i64 = 10_000;

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceQuery), responses((status = 200, body = [Device])))]
pub async fn list_devices(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(q): Query<DeviceQuery>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let scope = caller.org_scope()?;
    let org = match (scope, q.org.as_deref()) {
        (Some(own), Some(o)) if own != o => {
            return Err(ApiError::forbidden(
                "other_organisation",
                "an organisation's administrator sees only its own devices",
            ))
        }
        (Some(own), _) => own.to_string(),
        (None, Some(o)) => o.to_string(),
        (None, None) => String::new(),
    };
    let limit = q.limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
    // Two queries for any number of devices: the rows, then their groups.
    let rows = sqlx::query(&format!(
        "SELECT {DEVICE_COLS} FROM devices WHERE ($1 = '' OR owner_org = $1) AND ($2 = '' OR serial = $2) ORDER BY created_ms, id LIMIT $3 OFFSET $4"
    ))
    .bind(&org)
    .bind(q.serial.as_deref().unwrap_or(""))
    .bind(limit)
    .bind(q.offset.unwrap_or(0).max(0))
    .fetch_all(&c.db.pool)
    .await?;
    let mut out = rows
        .iter()
        .map(device_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let members: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.device_id, m.group_name FROM memberships m JOIN devices d ON d.id = m.device_id \
         WHERE ($1 = '' OR d.owner_org = $1) ORDER BY m.group_name",
    )
    .bind(&org)
    .fetch_all(&c.db.pool)
    .await?;
    let mut groups: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (d, g) in members {
        groups.entry(d).or_default().push(g);
    }
    for d in &mut out {
        d.groups = groups.remove(&d.id).unwrap_or_default();
    }
    Ok(Json(out))
}

pub(crate) async fn device_for(c: &Center, caller: &Caller, id: &str) -> Result<Device, ApiError> {
    let d = load_device(&c.db.pool, id).await?;
    match caller {
        Caller::OrgAdmin { org_id, .. }
            if *org_id != d.owner_org && !serves(c, caller, &d.owner_org).await? =>
        {
            // Not revealing whether another organisation's device exists.
            Err(ApiError::not_found(format!("no device {id}")))
        }
        _ => Ok(d),
    }
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
pub async fn get_device(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    caller.require_admin()?;
    let d = device_for(&c, &caller, &id).await?;
    Ok(Json(with_groups(&c, d).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub endpoint: Option<String>,
    /// Inside networks behind the device (at most 64).
    #[schema(value_type = Vec<String>, max_items = 64)]
    pub subnets: Vec<IpNet>,
}

/// Set the device's outer endpoint and inside subnets (used in traffic selectors).
#[utoipa::path(put, path = "/api/v1/devices/{id}/network", tag = "devices", params(("id" = String, Path)),
    request_body = Network, responses((status = 200, body = Device)))]
pub async fn set_network(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Network>, JsonRejection>,
) -> Result<Json<Device>, ApiError> {
    caller.require_admin()?;
    let Json(body) = body?;
    validate_subnets(&body.subnets)?;
    let d = device_for(&c, &caller, &id).await?;
    caller.require_org(&d.owner_org)?;
    let mut tx = c.db.begin_write().await?;
    let mapped = crate::mapping::realigned(&mut tx, &id, &body.subnets).await?;
    sqlx::query("UPDATE devices SET endpoint = $2, subnets = $3, updated_ms = $4, mapped_subnets = $5 WHERE id = $1")
        .bind(&id)
        .bind(&body.endpoint)
        .bind(serde_json::to_string(&body.subnets).unwrap_or_else(|_| "[]".into()))
        .bind(tx.now)
        .bind(serde_json::to_string(&mapped).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "device.network",
        &id,
        serde_json::json!({"endpoint": body.endpoint, "subnets": body.subnets}),
    )
    .await?;
    // R-DP-8: re-plan overlaps; grants of every device whose visible prefixes moved
    // are re-issued with this one's.
    let mut touched = crate::mapping::remap(&mut tx, &caller.actor()).await?;
    touched.insert(id.clone());
    grants::reevaluate(&c, &mut tx, &caller.actor(), Some(&touched)).await?;
    let d = load_device(&mut *tx.tx, &id).await?;
    tx.commit().await?;
    Ok(Json(with_groups(&c, d).await?))
}

/// Move a device to `to` along an allowed D.6 transition ([`DeviceState::sources`]),
/// or explain why not. Returns the state it left.
pub(crate) async fn transition(
    tx: &mut WriteTx<'_>,
    id: &str,
    to: DeviceState,
    what: &str,
) -> Result<DeviceState, ApiError> {
    let status: String = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    let from: DeviceState = status.parse()?;
    if !from.may_become(to) {
        let expected: Vec<&str> = DeviceState::sources(to)
            .iter()
            .map(|s| s.as_str())
            .collect();
        return Err(ApiError::conflict(
            "wrong_state",
            format!(
                "cannot {what}: device {id} is '{from}', expected one of {}",
                expected.join(", ")
            ),
        ));
    }
    sqlx::query("UPDATE devices SET status = $2, updated_ms = $3 WHERE id = $1")
        .bind(id)
        .bind(to.as_str())
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    Ok(from)
}

macro_rules! step {
    ($name:ident, $path:literal, $doc:literal, $to:expr, $action:literal, $step:literal, $who:ident) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "devices", params(("id" = String, Path)),
            responses((status = 200, body = Device), (status = 409, body = ErrorBody)))]
        pub async fn $name(State(c): State<Arc<Center>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Device>, ApiError> {
            $who(&c, &caller, &id).await?;
            let mut tx = c.db.begin_write().await?;
            let from = transition(&mut tx, &id, $to, $action).await?;
            tx.audit(&caller.actor(), &format!("device.{}", $to), &id, serde_json::json!({"from": from, "step": $step})).await?;
            after_transition(&c, &mut tx, &caller, &id, $to).await?;
            let d = load_device(&mut *tx.tx, &id).await?;
            tx.commit().await?;
            Ok(Json(d))
        }
    };
}

pub(crate) async fn who_device_provider(
    c: &Center,
    caller: &Caller,
    id: &str,
) -> Result<(), ApiError> {
    require_device_provider_of(c, caller, id).await
}
pub(crate) async fn who_owner(c: &Center, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require_admin()?;
    let d = device_for(c, caller, id).await?;
    caller.require_org(&d.owner_org)
}
pub(crate) async fn who_provider(_c: &Center, caller: &Caller, _id: &str) -> Result<(), ApiError> {
    caller.require_provider()
}

/// Side effects of a state change that devices must hear about.
pub(crate) async fn after_transition(
    c: &Center,
    tx: &mut WriteTx<'_>,
    caller: &Caller,
    id: &str,
    to: DeviceState,
) -> Result<(), ApiError> {
    match to {
        DeviceState::InService => {
            tx.event(id, "service_started", &serde_json::json!({}))
                .await?;
        }
        DeviceState::Suspended => {
            tx.event(id, "service_stopped", &serde_json::json!({}))
                .await?;
            grants::reevaluate(c, tx, &caller.actor(), Some(&set_of([id.to_string()]))).await?;
        }
        _ => {}
    }
    Ok(())
}

step!(
    deliver,
    "/api/v1/devices/{id}/deliver",
    "TR D.6 f: the subscriber receives the certified device.",
    DeviceState::Delivered,
    "deliver",
    "f",
    who_device_provider
);
step!(
    service_apply,
    "/api/v1/devices/{id}/service/apply",
    "TR D.6 g: the subscriber applies for VPN service for this device.",
    DeviceState::ServiceApplied,
    "apply for service",
    "g",
    who_owner
);
step!(service_approve, "/api/v1/devices/{id}/service/approve",
    "TR D.6 h: the provider approves and asks the service CA to issue a service certificate at enrolment.",
    DeviceState::ServiceApproved, "approve service", "h", who_provider);
step!(
    service_start,
    "/api/v1/devices/{id}/service/start",
    "TR D.6 l: the provider starts VPN service to an enrolled device (also resumes a stopped one).",
    DeviceState::InService,
    "start service",
    "l",
    who_provider
);
step!(
    service_stop,
    "/api/v1/devices/{id}/service/stop",
    "Suspend service: the device's grants are withdrawn.",
    DeviceState::Suspended,
    "stop service",
    "l",
    who_provider
);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// Why (1–256 printable characters; kept in the audit log).
    #[schema(min_length = 1, max_length = 256)]
    pub reason: String,
}

/// Revoke a device: its device certificate and every service certificate (R-PKI-4).
/// Live grants are withdrawn and both the device and its peers are told at once.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices", params(("id" = String, Path)),
    request_body = Revoke, responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
pub async fn revoke_device(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Revoke>, JsonRejection>,
) -> Result<Json<Device>, ApiError> {
    caller.require_admin()?;
    let Json(body) = body?;
    check_text("reason", &body.reason, MAX_REASON_LEN)?;
    let d = device_for(&c, &caller, &id).await?;
    caller.require_org(&d.owner_org)?;
    let mut tx = c.db.begin_write().await?;
    revoke_device_tx(&c, &mut tx, &caller.actor(), &id, &body.reason).await?;
    let d = load_device(&mut *tx.tx, &id).await?;
    tx.commit().await?;
    Ok(Json(d))
}

pub(crate) async fn revoke_device_tx(
    c: &Center,
    tx: &mut WriteTx<'_>,
    actor: &str,
    id: &str,
    reason: &str,
) -> Result<(), ApiError> {
    let serials: Vec<i64> =
        sqlx::query_scalar("SELECT serial FROM certs WHERE device_id = $1 AND revoked_ms IS NULL")
            .bind(id)
            .fetch_all(&mut *tx.tx)
            .await?;
    sqlx::query(
        "UPDATE certs SET revoked_ms = $2, reason = $3 WHERE device_id = $1 AND revoked_ms IS NULL",
    )
    .bind(id)
    .bind(tx.now)
    .bind(reason)
    .execute(&mut *tx.tx)
    .await?;
    sqlx::query("UPDATE devices SET status = $2, updated_ms = $3 WHERE id = $1")
        .bind(id)
        .bind(DeviceState::Revoked.as_str())
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        actor,
        "device.revoked",
        id,
        serde_json::json!({"serials": serials, "reason": reason}),
    )
    .await?;
    announce_revocation(tx, id, &serials).await?;
    grants::reevaluate(c, tx, actor, Some(&set_of([id.to_string()]))).await
}

/// Tell the device and every device that held a grant with it (R-PKI-4, R-POL-5).
pub(crate) async fn announce_revocation(
    tx: &mut WriteTx<'_>,
    id: &str,
    serials: &[i64],
) -> Result<(), ApiError> {
    let payload = serde_json::json!({"device_id": id, "serials": serials});
    tx.event(id, "revoked", &payload).await?;
    let peers: Vec<String> = sqlx::query_scalar(
        "SELECT target_device FROM grants WHERE applicant_device = $1 AND status = 'active' \
         UNION SELECT applicant_device FROM grants WHERE target_device = $1 AND status = 'active'",
    )
    .bind(id)
    .fetch_all(&mut *tx.tx)
    .await?;
    for p in peers {
        tx.event(&p, "peer_revoked", &payload).await?;
    }
    Ok(())
}

//! Administrator calls: TR D.6 steps b–h and l, revocation, groups (provider policy),
//! approval windows and grants. Each call is one transaction with its audit record.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use dodvpn_policy::{GroupPolicy, Service};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::orgs::{check_name, org_exists};
use super::set_of;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::error::{ApiError, ErrorBody};
use crate::grants::{self, Outcome};
use crate::{new_id, Center};

// ---------- orders (step b) ----------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub org_id: String,
    pub model: String,
}

#[derive(Serialize, ToSchema)]
pub struct Order {
    pub id: String,
    pub org_id: String,
    pub model: String,
    pub created_ms: i64,
}

/// TR D.6 b: the subscriber orders a VPN device from the device provider.
#[utoipa::path(post, path = "/api/v1/orders", tag = "devices", request_body = NewOrder,
    responses((status = 201, body = Order), (status = 403, body = ErrorBody)))]
pub async fn create_order(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let Json(body) = body?;
    caller.require_org(&body.org_id)?;
    check_name("model", &body.model)?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &body.org_id).await?;
    let id = new_id("order");
    sqlx::query("INSERT INTO orders (id, org_id, model, created_ms) VALUES ($1,$2,$3,$4)")
        .bind(&id)
        .bind(&body.org_id)
        .bind(&body.model)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?;
    tx.audit(
        &caller.actor(),
        "device.ordered",
        &id,
        serde_json::json!({"org": body.org_id, "model": body.model, "step": "b"}),
    )
    .await?;
    let o = Order {
        id,
        org_id: body.org_id,
        model: body.model,
        created_ms: tx.now,
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(o)))
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "devices", responses((status = 200, body = [Order])))]
pub async fn list_orders(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<Order>>, ApiError> {
    let scope = caller.org_scope()?;
    let rows = sqlx::query("SELECT id, org_id, model, created_ms FROM orders WHERE ($1 = '' OR org_id = $1) ORDER BY created_ms")
        .bind(scope.unwrap_or(""))
        .fetch_all(&c.db.pool)
        .await
        .map_err(ApiError::db)?;
    Ok(Json(
        rows.iter()
            .map(|r| Order {
                id: r.get(0),
                org_id: r.get(1),
                model: r.get(2),
                created_ms: r.get(3),
            })
            .collect(),
    ))
}

// ---------- devices (steps c–h, l) ----------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// The manufacturer's serial number; unique across the network.
    pub serial: String,
    pub model: String,
    pub owner_org: String,
    #[serde(default)]
    pub order_id: Option<String>,
    /// Outer address the device is reachable at (host:port or host), if fixed.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Inside networks behind the device.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
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
    pub status: String,
    pub endpoint: Option<String>,
    #[schema(value_type = Vec<String>)]
    pub subnets: Vec<IpNet>,
    /// The prefix each of `subnets` is seen by at its peers, where the centre
    /// mapped it because it overlaps another site's (R-DP-8); empty = none.
    #[schema(value_type = Vec<String>)]
    pub mapped_subnets: Vec<IpNet>,
    pub groups: Vec<String>,
    pub created_ms: i64,
}

async fn load_device(
    tx_or_pool: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: &str,
) -> Result<Device, ApiError> {
    let r = sqlx::query(
        "SELECT id, serial, model, owner_org, order_id, status, endpoint, subnets, created_ms, mapped_subnets FROM devices WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(tx_or_pool)
    .await
    .map_err(ApiError::db)?
    .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    let subnets: String = r.get(7);
    let mapped: String = r.get(9);
    Ok(Device {
        id: r.get(0),
        serial: r.get(1),
        model: r.get(2),
        owner_org: r.get(3),
        order_id: r.get(4),
        status: r.get(5),
        endpoint: r.get(6),
        subnets: serde_json::from_str(&subnets).unwrap_or_default(),
        mapped_subnets: serde_json::from_str(&mapped).unwrap_or_default(),
        groups: vec![],
        created_ms: r.get(8),
    })
}

async fn with_groups(c: &Center, mut d: Device) -> Result<Device, ApiError> {
    d.groups = sqlx::query_scalar(
        "SELECT group_name FROM memberships WHERE device_id = $1 ORDER BY group_name",
    )
    .bind(&d.id)
    .fetch_all(&c.db.pool)
    .await
    .map_err(ApiError::db)?;
    Ok(d)
}

/// The device provider role: the provider's operator or a vendor organisation's admin.
async fn require_device_provider(c: &Center, caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Provider { .. } => Ok(()),
        Caller::OrgAdmin { org_id, .. } => {
            let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM orgs WHERE id = $1")
                .bind(org_id)
                .fetch_optional(&c.db.pool)
                .await
                .map_err(ApiError::db)?;
            if kind.as_deref() == Some("vendor") {
                Ok(())
            } else {
                Err(ApiError::forbidden(
                    "not_device_provider",
                    "only a device provider (vendor) or the provider may do this",
                ))
            }
        }
        Caller::Device(_) | Caller::Auditor { .. } => Err(ApiError::forbidden(
            "admin_only",
            "this needs an administrator credential",
        )),
    }
}

fn validate_subnets(subnets: &[IpNet]) -> Result<(), ApiError> {
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
    check_name("serial", &body.serial)?;
    check_name("model", &body.model)?;
    validate_subnets(&body.subnets)?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &body.owner_org).await?;
    let dup: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE serial = $1")
        .bind(&body.serial)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?;
    if dup > 0 {
        return Err(ApiError::conflict(
            "duplicate_serial",
            format!("a device with serial {} is already registered", body.serial),
        ));
    }
    let id = new_id("dev");
    sqlx::query(
        "INSERT INTO devices (id, serial, model, owner_org, order_id, status, endpoint, subnets, created_ms, updated_ms) \
         VALUES ($1,$2,$3,$4,$5,'registered',$6,$7,$8,$8)",
    )
    .bind(&id)
    .bind(&body.serial)
    .bind(&body.model)
    .bind(&body.owner_org)
    .bind(&body.order_id)
    .bind(&body.endpoint)
    .bind(serde_json::to_string(&body.subnets).unwrap_or_else(|_| "[]".into()))
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| match ApiError::db(e) {
        e if e.status == StatusCode::CONFLICT => ApiError::conflict("duplicate_serial", "a device with that serial is already registered"),
        e => e,
    })?;
    tx.audit(
        &caller.actor(),
        "device.registered",
        &id,
        serde_json::json!({"serial": body.serial, "model": body.model, "owner": body.owner_org, "order": body.order_id, "step": "c"}),
    )
    .await?;
    // R-DP-8: a range another site also uses is mapped, on both devices.
    let remapped = crate::mapping::remap(&mut tx, &caller.actor()).await?;
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
}

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
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE ($1 = '' OR owner_org = $1) AND ($2 = '' OR serial = $2) ORDER BY created_ms LIMIT 10000",
    )
    .bind(&org)
    .bind(q.serial.as_deref().unwrap_or(""))
    .fetch_all(&c.db.pool)
    .await
    .map_err(ApiError::db)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(with_groups(&c, load_device(&c.db.pool, &id).await?).await?);
    }
    Ok(Json(out))
}

async fn device_for(c: &Center, caller: &Caller, id: &str) -> Result<Device, ApiError> {
    let d = load_device(&c.db.pool, id).await?;
    match caller {
        Caller::OrgAdmin { org_id, .. } if *org_id != d.owner_org => {
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
    #[schema(value_type = Vec<String>)]
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
        .await
        .map_err(ApiError::db)?;
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

/// Move a device from one of `from` to `to`, or explain why not.
async fn transition(
    tx: &mut WriteTx<'_>,
    id: &str,
    from: &[&str],
    to: &str,
    what: &str,
) -> Result<String, ApiError> {
    let status: String = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    if !from.contains(&status.as_str()) {
        return Err(ApiError::conflict(
            "wrong_state",
            format!(
                "cannot {what}: device {id} is '{status}', expected one of {}",
                from.join(", ")
            ),
        ));
    }
    sqlx::query("UPDATE devices SET status = $2, updated_ms = $3 WHERE id = $1")
        .bind(id)
        .bind(to)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?;
    Ok(status)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CsrBody {
    /// PKCS#10 certificate signing request (PEM) made with the key-store key.
    pub csr: String,
}

#[derive(Serialize, ToSchema)]
pub struct CertIssued {
    pub serial: u64,
    pub certificate: String,
    pub fingerprint: String,
    pub not_after: i64,
    pub ca: super::pki::CaBundle,
}

impl CertIssued {
    /// The answer to an issuance: the certificate and the CA bundle to install with it.
    pub(crate) fn new(c: &Center, cert: dodvpn_pki::IssuedCert) -> Self {
        CertIssued {
            serial: cert.serial,
            certificate: cert.pem,
            fingerprint: cert.fingerprint_sha256_hex,
            not_after: cert.not_after_unix,
            ca: super::pki::bundle(c),
        }
    }
}

/// Default lifetime of device (tier-1) certificates.
const DEVICE_CERT_DAYS: u32 = 3650;
/// Default lifetime of service (tier-2) certificates; renewed online.
pub const SERVICE_CERT_DAYS: u32 = 365;

/// Store an issued certificate. `csr_hash` is unique, so a replayed CSR is refused.
pub(crate) async fn store_cert(
    tx: &mut WriteTx<'_>,
    tier: &str,
    device_id: &str,
    csr_pem: &str,
    cert: &dodvpn_pki::IssuedCert,
) -> Result<(), ApiError> {
    let csr_hash = crate::auth::hash_secret(csr_pem.trim());
    let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certs WHERE csr_hash = $1")
        .bind(&csr_hash)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?;
    if seen > 0 {
        return Err(ApiError::conflict(
            "replayed_request",
            "this certificate request was already used; make a new one",
        ));
    }
    sqlx::query(
        "INSERT INTO certs (serial, tier, device_id, fingerprint, csr_hash, pem, not_after, created_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
    )
    .bind(cert.serial as i64)
    .bind(tier)
    .bind(device_id)
    .bind(&cert.fingerprint_sha256_hex)
    .bind(&csr_hash)
    .bind(&cert.pem)
    .bind(cert.not_after_unix)
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await
    .map_err(ApiError::db)?;
    Ok(())
}

/// TR D.6 d: the device CA issues the tier-1 certificate for a registered device.
#[utoipa::path(post, path = "/api/v1/devices/{id}/device-cert", tag = "devices", params(("id" = String, Path)),
    request_body = CsrBody, responses((status = 201, body = CertIssued), (status = 409, body = ErrorBody)))]
pub async fn issue_device_cert(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<CsrBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CertIssued>), ApiError> {
    require_device_provider(&c, &caller).await?;
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    let d = load_device(&mut *tx.tx, &id).await?;
    transition(
        &mut tx,
        &id,
        &["registered"],
        "certified",
        "issue a device certificate",
    )
    .await?;
    let serial = tx.next_counter("cert_serial").await?;
    let cert = c.pki.issue_device_cert(
        &body.csr,
        &d.serial,
        &d.model,
        &d.owner_org,
        serial,
        DEVICE_CERT_DAYS,
    )?;
    store_cert(&mut tx, "device", &id, &body.csr, &cert).await?;
    tx.audit(
        &caller.actor(),
        "device_cert.issued",
        &id,
        serde_json::json!({"serial": serial, "fingerprint": cert.fingerprint_sha256_hex, "not_after": cert.not_after_unix, "step": "d"}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CertIssued::new(&c, cert))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Installed {
    /// SHA-256 fingerprint of the certificate now in the key store.
    pub fingerprint: String,
}

pub(crate) async fn confirm_installed(
    tx: &mut WriteTx<'_>,
    id: &str,
    tier: &str,
    fingerprint: &str,
) -> Result<u64, ApiError> {
    let serial: Option<i64> = sqlx::query_scalar(
        "SELECT serial FROM certs WHERE device_id = $1 AND tier = $2 AND fingerprint = $3 AND revoked_ms IS NULL",
    )
    .bind(id)
    .bind(tier)
    .bind(fingerprint.to_ascii_lowercase())
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(ApiError::db)?;
    let serial = serial.ok_or_else(|| {
        ApiError::conflict(
            "unknown_certificate",
            "no such valid certificate for this device",
        )
    })?;
    sqlx::query("UPDATE certs SET installed = 1 WHERE serial = $1")
        .bind(serial)
        .execute(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?;
    Ok(serial as u64)
}

/// TR D.6 e: the device provider confirms the device certificate is in the key store.
#[utoipa::path(post, path = "/api/v1/devices/{id}/device-cert/installed", tag = "devices", params(("id" = String, Path)),
    request_body = Installed, responses((status = 200, body = Device), (status = 409, body = ErrorBody)))]
pub async fn device_cert_installed(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Installed>, JsonRejection>,
) -> Result<Json<Device>, ApiError> {
    require_device_provider(&c, &caller).await?;
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    let serial = confirm_installed(&mut tx, &id, "device", &body.fingerprint).await?;
    transition(
        &mut tx,
        &id,
        &["certified"],
        "installed",
        "confirm installation",
    )
    .await?;
    tx.audit(
        &caller.actor(),
        "device_cert.installed",
        &id,
        serde_json::json!({"serial": serial, "step": "e"}),
    )
    .await?;
    let d = load_device(&mut *tx.tx, &id).await?;
    tx.commit().await?;
    Ok(Json(d))
}

macro_rules! step {
    ($name:ident, $path:literal, $doc:literal, $from:expr, $to:literal, $action:literal, $step:literal, $who:ident) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "devices", params(("id" = String, Path)),
            responses((status = 200, body = Device), (status = 409, body = ErrorBody)))]
        pub async fn $name(State(c): State<Arc<Center>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Device>, ApiError> {
            $who(&c, &caller, &id).await?;
            let mut tx = c.db.begin_write().await?;
            let from = transition(&mut tx, &id, $from, $to, $action).await?;
            tx.audit(&caller.actor(), concat!("device.", $to), &id, serde_json::json!({"from": from, "step": $step})).await?;
            after_transition(&c, &mut tx, &caller, &id, $to).await?;
            let d = load_device(&mut *tx.tx, &id).await?;
            tx.commit().await?;
            Ok(Json(d))
        }
    };
}

async fn who_device_provider(c: &Center, caller: &Caller, _id: &str) -> Result<(), ApiError> {
    require_device_provider(c, caller).await
}
async fn who_owner(c: &Center, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require_admin()?;
    let d = device_for(c, caller, id).await?;
    caller.require_org(&d.owner_org)
}
async fn who_provider(_c: &Center, caller: &Caller, _id: &str) -> Result<(), ApiError> {
    caller.require_provider()
}

/// Side effects of a state change that devices must hear about.
async fn after_transition(
    c: &Center,
    tx: &mut WriteTx<'_>,
    caller: &Caller,
    id: &str,
    to: &str,
) -> Result<(), ApiError> {
    match to {
        "in_service" => {
            tx.event(id, "service_started", &serde_json::json!({}))
                .await?;
        }
        "suspended" => {
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
    &["installed"],
    "delivered",
    "deliver",
    "f",
    who_device_provider
);
step!(
    service_apply,
    "/api/v1/devices/{id}/service/apply",
    "TR D.6 g: the subscriber applies for VPN service for this device.",
    &["delivered"],
    "service_applied",
    "apply for service",
    "g",
    who_owner
);
step!(service_approve, "/api/v1/devices/{id}/service/approve",
    "TR D.6 h: the provider approves and asks the service CA to issue a service certificate at enrolment.",
    &["service_applied"], "service_approved", "approve service", "h", who_provider);
step!(
    service_start,
    "/api/v1/devices/{id}/service/start",
    "TR D.6 l: the provider starts VPN service to an enrolled device (also resumes a stopped one).",
    &["service_installed", "suspended"],
    "in_service",
    "start service",
    "l",
    who_provider
);
step!(
    service_stop,
    "/api/v1/devices/{id}/service/stop",
    "Suspend service: the device's grants are withdrawn.",
    &["in_service"],
    "suspended",
    "stop service",
    "l",
    who_provider
);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
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
    check_name("reason", &body.reason)?;
    let d = device_for(&c, &caller, &id).await?;
    caller.require_org(&d.owner_org)?;
    let mut tx = c.db.begin_write().await?;
    revoke_device_tx(&c, &mut tx, &caller.actor(), &id, &body.reason).await?;
    let d = load_device(&mut *tx.tx, &id).await?;
    tx.commit().await?;
    Ok(Json(d))
}

async fn revoke_device_tx(
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
            .await
            .map_err(ApiError::db)?;
    sqlx::query(
        "UPDATE certs SET revoked_ms = $2, reason = $3 WHERE device_id = $1 AND revoked_ms IS NULL",
    )
    .bind(id)
    .bind(tx.now)
    .bind(reason)
    .execute(&mut *tx.tx)
    .await
    .map_err(ApiError::db)?;
    sqlx::query("UPDATE devices SET status = 'revoked', updated_ms = $2 WHERE id = $1")
        .bind(id)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?;
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
async fn announce_revocation(
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
    .await
    .map_err(ApiError::db)?;
    for p in peers {
        tx.event(&p, "peer_revoked", &payload).await?;
    }
    Ok(())
}

/// Revoke one certificate. A device certificate takes the whole device with it.
#[utoipa::path(post, path = "/api/v1/certs/{serial}/revoke", tag = "pki", params(("serial" = u64, Path)),
    request_body = Revoke, responses((status = 200, body = CertRecord), (status = 404, body = ErrorBody)))]
pub async fn revoke_cert(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(serial): Path<u64>,
    body: Result<Json<Revoke>, JsonRejection>,
) -> Result<Json<CertRecord>, ApiError> {
    caller.require_admin()?;
    let Json(body) = body?;
    check_name("reason", &body.reason)?;
    let rec = cert_record(&c.db.pool, serial).await?;
    let d = device_for(&c, &caller, &rec.device_id).await?;
    caller.require_org(&d.owner_org)?;
    if rec.revoked_ms.is_some() {
        return Err(ApiError::conflict(
            "already_revoked",
            format!("certificate {serial} is already revoked"),
        ));
    }
    let mut tx = c.db.begin_write().await?;
    if rec.tier == "device" {
        revoke_device_tx(&c, &mut tx, &caller.actor(), &rec.device_id, &body.reason).await?;
    } else {
        sqlx::query("UPDATE certs SET revoked_ms = $2, reason = $3 WHERE serial = $1")
            .bind(serial as i64)
            .bind(tx.now)
            .bind(&body.reason)
            .execute(&mut *tx.tx)
            .await
            .map_err(ApiError::db)?;
        tx.audit(
            &caller.actor(),
            "cert.revoked",
            &serial.to_string(),
            serde_json::json!({"device": rec.device_id, "reason": body.reason}),
        )
        .await?;
        announce_revocation(&mut tx, &rec.device_id, &[serial as i64]).await?;
        grants::reevaluate(
            &c,
            &mut tx,
            &caller.actor(),
            Some(&set_of([rec.device_id.clone()])),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(cert_record(&c.db.pool, serial).await?))
}

#[derive(Serialize, ToSchema)]
pub struct CertRecord {
    pub serial: u64,
    pub tier: String,
    pub device_id: String,
    pub fingerprint: String,
    pub not_after: i64,
    pub installed: bool,
    pub revoked_ms: Option<i64>,
    pub reason: Option<String>,
    /// PEM (certificates are public; a device re-fetches one it lost in a crash).
    pub certificate: String,
}

pub(crate) const CERT_COLS: &str =
    "serial, tier, device_id, fingerprint, not_after, installed, revoked_ms, reason, pem";

pub(crate) fn cert_from_row(r: &sqlx::any::AnyRow) -> CertRecord {
    CertRecord {
        serial: r.get::<i64, _>(0) as u64,
        tier: r.get(1),
        device_id: r.get(2),
        fingerprint: r.get(3),
        not_after: r.get(4),
        installed: r.get::<i64, _>(5) != 0,
        revoked_ms: r.get(6),
        reason: r.get(7),
        certificate: r.get(8),
    }
}

pub(crate) async fn cert_record(pool: &sqlx::AnyPool, serial: u64) -> Result<CertRecord, ApiError> {
    let r = sqlx::query(&format!("SELECT {CERT_COLS} FROM certs WHERE serial = $1"))
        .bind(serial as i64)
        .fetch_optional(pool)
        .await
        .map_err(ApiError::db)?
        .ok_or_else(|| ApiError::not_found(format!("no certificate {serial}")))?;
    Ok(cert_from_row(&r))
}

#[derive(Deserialize, IntoParams)]
pub struct CertQuery {
    pub device: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/certs", tag = "pki", params(CertQuery), responses((status = 200, body = [CertRecord])))]
pub async fn list_certs(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(q): Query<CertQuery>,
) -> Result<Json<Vec<CertRecord>>, ApiError> {
    let scope = caller.org_scope()?;
    let rows = sqlx::query(&format!(
        "SELECT {CERT_COLS} FROM certs WHERE ($1 = '' OR device_id = $1) AND ($2 = '' OR device_id IN (SELECT id FROM devices WHERE owner_org = $2)) ORDER BY serial"
    ))
    .bind(q.device.as_deref().unwrap_or(""))
    .bind(scope.unwrap_or(""))
    .fetch_all(&c.db.pool)
    .await
    .map_err(ApiError::db)?;
    Ok(Json(rows.iter().map(cert_from_row).collect()))
}

// ---------- groups: the provider policy (R-POL-1, R-POL-6) ----------

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    pub name: String,
    /// Members must have passed the security check sheet (R-POL-6).
    #[serde(default)]
    pub require_checksheet: bool,
    /// Services the provider allows inside this group, e.g. ["tcp/443", "icmp"]; absent = no restriction.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub services: Option<Vec<Service>>,
}

#[derive(Serialize, ToSchema)]
pub struct Group {
    pub name: String,
    pub require_checksheet: bool,
    #[schema(value_type = Option<Vec<Object>>)]
    pub services: Option<Vec<Service>>,
    pub members: Vec<String>,
}

async fn load_group(c: &Center, name: &str) -> Result<Group, ApiError> {
    let p: String = sqlx::query_scalar("SELECT policy FROM groups_ WHERE name = $1")
        .bind(name)
        .fetch_optional(&c.db.pool)
        .await
        .map_err(ApiError::db)?
        .ok_or_else(|| ApiError::not_found(format!("no group {name}")))?;
    let gp: GroupPolicy =
        serde_json::from_str(&p).map_err(|_| ApiError::internal("stored group unreadable"))?;
    let members = sqlx::query_scalar(
        "SELECT device_id FROM memberships WHERE group_name = $1 ORDER BY device_id",
    )
    .bind(name)
    .fetch_all(&c.db.pool)
    .await
    .map_err(ApiError::db)?;
    Ok(Group {
        name: name.to_string(),
        require_checksheet: gp.require_checksheet,
        services: gp.services,
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
    };
    sqlx::query("INSERT INTO groups_ (name, policy, created_ms) VALUES ($1,$2,$3)")
        .bind(&body.name)
        .bind(serde_json::to_string(&gp).map_err(|_| ApiError::internal("group"))?)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?;
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
        .await
        .map_err(ApiError::db)?;
    let mut out = Vec::new();
    for n in names {
        let mut g = load_group(&c, &n).await?;
        if let Caller::OrgAdmin { org_id, .. } = &caller {
            // An organisation sees the groups, but only its own members in them.
            let own: Vec<String> =
                sqlx::query_scalar("SELECT id FROM devices WHERE owner_org = $1")
                    .bind(org_id)
                    .fetch_all(&c.db.pool)
                    .await
                    .map_err(ApiError::db)?;
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
    };
    let n = sqlx::query("UPDATE groups_ SET policy = $2 WHERE name = $1")
        .bind(&name)
        .bind(serde_json::to_string(&gp).map_err(|_| ApiError::internal("group"))?)
        .execute(&mut *tx.tx)
        .await
        .map_err(ApiError::db)?
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
            .await
            .map_err(ApiError::db)?;
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
    .await
    .map_err(ApiError::db)?;
    if exists == 0 {
        sqlx::query("INSERT INTO memberships (group_name, device_id) VALUES ($1, $2)")
            .bind(&name)
            .bind(&body.device_id)
            .execute(&mut *tx.tx)
            .await
            .map_err(ApiError::db)?;
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
        .await
        .map_err(ApiError::db)?
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

fn approval_from_row(r: &sqlx::any::AnyRow) -> ApprovalRecord {
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

const APPROVAL_COLS: &str =
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
    .await
    .map_err(ApiError::db)?;
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
    .await
    .map_err(ApiError::db)?;
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
    .await
    .map_err(ApiError::db)?;
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
    .await
    .map_err(ApiError::db)?
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
            .await
            .map_err(ApiError::db)?;
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
    .await
    .map_err(ApiError::db)?;
    let rec = approval_from_row(&r);
    tx.commit().await?;
    Ok(Json(rec))
}

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
}

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
) -> Result<ApplicationResult, ApiError> {
    let mut tx = c.db.begin_write().await?;
    let targets: Vec<String> = match (to_device, to_group) {
        (Some(d), None) => vec![d.to_string()],
        (None, Some(g)) => {
            let members: Vec<String> = sqlx::query_scalar(
                "SELECT device_id FROM memberships WHERE group_name = $1 ORDER BY device_id",
            )
            .bind(g)
            .fetch_all(&mut *tx.tx)
            .await
            .map_err(ApiError::db)?;
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
        serde_json::json!({"to_device": to_device, "to_group": to_group, "step": "k"}),
    )
    .await?;
    let mut outcomes = Vec::new();
    for t in targets {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE id = $1")
            .bind(&t)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(ApiError::db)?;
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
        outcomes.push(grants::apply(c, &mut tx, actor, applicant, &t).await?);
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
    .await
    .map_err(ApiError::db)?;
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
    .await
    .map_err(ApiError::db)?
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
    .await
    .map_err(ApiError::db)?
    .ok_or_else(|| ApiError::not_found(format!("no live grant {id}")))?;
    let (ao, to): (String, String) = (row.get(0), row.get(1));
    if caller.require_org(&ao).is_err() && caller.require_org(&to).is_err() {
        return Err(ApiError::not_found(format!("no live grant {id}")));
    }
    grants::withdraw(&mut tx, &caller.actor(), &id, &body.reason).await?;
    tx.commit().await?;
    Ok(StatusCode::OK)
}

//! Certificates: device-certificate issuance and installation (TR D.6 d–e), listing
//! and revocation of single certificates (R-PKI-4).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::devices::*;
use super::orgs::check_text;
use super::providers::{require_confirmed, require_device_provider_of};
use crate::api::set_of;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::device_state::DeviceState;
use crate::error::{ApiError, ErrorBody};
use crate::grants::{self};
use crate::Center;

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
    pub ca: crate::api::pki::CaBundle,
}

impl CertIssued {
    /// The answer to an issuance: the certificate and the CA bundle to install with it.
    pub(crate) fn new(c: &Center, cert: dodvpn_pki::IssuedCert) -> Self {
        CertIssued {
            serial: cert.serial,
            certificate: cert.pem,
            fingerprint: cert.fingerprint_sha256_hex,
            not_after: cert.not_after_unix,
            ca: crate::api::pki::bundle(c),
        }
    }
}

/// Default lifetime of device (tier-1) certificates.
pub(crate) const DEVICE_CERT_DAYS: u32 = 3650;
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
        .await?;
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
    .await?;
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
    require_device_provider_of(&c, &caller, &id).await?;
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    let d = load_device(&mut *tx.tx, &id).await?;
    require_confirmed(&mut tx, &id).await?;
    transition(
        &mut tx,
        &id,
        DeviceState::Certified,
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
    .await?;
    let serial = serial.ok_or_else(|| {
        ApiError::conflict(
            "unknown_certificate",
            "no such valid certificate for this device",
        )
    })?;
    sqlx::query("UPDATE certs SET installed = 1 WHERE serial = $1")
        .bind(serial)
        .execute(&mut *tx.tx)
        .await?;
    Ok(serial as u64)
}

/// Whether step e was already committed for this very certificate: the device moved
/// on from 'certified' (and is not revoked) and its valid device certificate with this
/// fingerprint is marked installed.
async fn already_installed(
    tx: &mut WriteTx<'_>,
    id: &str,
    fingerprint: &str,
) -> Result<bool, ApiError> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT d.status FROM devices d JOIN certs c ON c.device_id = d.id \
         WHERE d.id = $1 AND c.tier = 'device' AND c.fingerprint = $2 \
         AND c.revoked_ms IS NULL AND c.installed = 1",
    )
    .bind(id)
    .bind(fingerprint.to_ascii_lowercase())
    .fetch_optional(&mut *tx.tx)
    .await?;
    Ok(match status {
        None => false,
        Some(s) => !matches!(
            s.parse::<DeviceState>()?,
            DeviceState::Registered | DeviceState::Certified | DeviceState::Revoked
        ),
    })
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
    require_device_provider_of(&c, &caller, &id).await?;
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    // A repeat for the certificate already confirmed (the client crashed before it
    // heard the answer) answers as the first did and changes nothing; any other
    // certificate still gets the 409 below.
    if already_installed(&mut tx, &id, &body.fingerprint).await? {
        let d = load_device(&mut *tx.tx, &id).await?;
        tx.commit().await?;
        return Ok(Json(d));
    }
    let serial = confirm_installed(&mut tx, &id, "device", &body.fingerprint).await?;
    transition(&mut tx, &id, DeviceState::Installed, "confirm installation").await?;
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

/// Revoke one certificate. A device certificate takes the whole device with it.
#[utoipa::path(post, path = "/api/v1/certs/{serial}/revoke", tag = "pki", params(("serial" = u64, Path)),
    request_body = Revoke, responses((status = 200, body = CertRecord), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "already_revoked")))]
pub async fn revoke_cert(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(serial): Path<u64>,
    body: Result<Json<Revoke>, JsonRejection>,
) -> Result<Json<CertRecord>, ApiError> {
    caller.require_admin()?;
    let Json(body) = body?;
    check_text(
        "reason",
        &body.reason,
        dodvpn_policy::session::MAX_REASON_LEN,
    )?;
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
            .await?;
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
        .await?
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
    .await?;
    Ok(Json(rows.iter().map(cert_from_row).collect()))
}

//! Public PKI endpoints: the CA bundle, CRLs and a signed certificate status (the TR's
//! VA service, R-PKI-4). No authentication: peers must be able to check revocation.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::Center;

#[derive(Serialize, ToSchema, Clone)]
pub struct CaBundle {
    pub root: String,
    pub device_ca: String,
    pub service_ca: String,
    pub signer: String,
}

pub fn bundle(c: &Center) -> CaBundle {
    CaBundle {
        root: c.pki.root_pem().to_string(),
        device_ca: c.pki.device_ca_pem().to_string(),
        service_ca: c.pki.service_ca_pem().to_string(),
        signer: c.pki.signer_cert_pem().to_string(),
    }
}

#[utoipa::path(get, path = "/pki/ca", tag = "pki", responses((status = 200, body = CaBundle)))]
pub async fn ca_bundle(State(c): State<Arc<Center>>) -> Json<CaBundle> {
    Json(bundle(&c))
}

/// How long a CRL is valid for; agents fetch a fresh one well before.
const CRL_NEXT_UPDATE_SECS: i64 = 3600;

/// CRL of one tier's CA (`device` or `service`), PEM, freshly signed.
#[utoipa::path(get, path = "/pki/crl/{tier}", tag = "pki", params(("tier" = String, Path, description = "device | service")),
    responses((status = 200, content_type = "application/x-pem-file", body = String), (status = 404, body = ErrorBody)))]
pub async fn crl(
    State(c): State<Arc<Center>>,
    Path(tier): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let t = match tier.as_str() {
        "device" => dodvpn_pki::Tier::Device,
        "service" => dodvpn_pki::Tier::Service,
        _ => return Err(ApiError::not_found("tier must be 'device' or 'service'")),
    };
    let rows = sqlx::query("SELECT serial, revoked_ms FROM certs WHERE tier = $1 AND revoked_ms IS NOT NULL ORDER BY serial")
        .bind(&tier)
        .fetch_all(&c.db.pool)
        .await?;
    let revoked: Vec<dodvpn_pki::RevokedEntry> = rows
        .iter()
        .map(|r| dodvpn_pki::RevokedEntry {
            serial: r.get::<i64, _>(0) as u64,
            revoked_at_unix: r.get::<i64, _>(1) / 1000,
        })
        .collect();
    // The CRL number only needs to grow; the newest revocation time does that
    // without a write on every fetch.
    let now = crate::db::now_ms() / 1000;
    let number = rows.iter().map(|r| r.get::<i64, _>(1)).max().unwrap_or(0) as u64;
    let pem = c
        .pki
        .crl_pem(t, &revoked, number, now, CRL_NEXT_UPDATE_SECS)?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem))
}

#[derive(Serialize, ToSchema)]
pub struct CertStatus {
    pub serial: u64,
    /// good | revoked | unknown
    pub status: String,
    pub tier: Option<String>,
    pub device_id: Option<String>,
    pub revoked_at: Option<i64>,
    pub not_after: Option<i64>,
    pub produced_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SignedStatus {
    pub status: CertStatus,
    /// Base64 signature of the centre signing certificate over the canonical JSON
    /// (sorted keys, no whitespace) of `status`.
    pub signature: String,
}

#[utoipa::path(get, path = "/pki/status/{serial}", tag = "pki", params(("serial" = u64, Path)),
    responses((status = 200, body = SignedStatus)))]
pub async fn cert_status(
    State(c): State<Arc<Center>>,
    Path(serial): Path<u64>,
) -> Result<Json<SignedStatus>, ApiError> {
    let row =
        sqlx::query("SELECT tier, device_id, revoked_ms, not_after FROM certs WHERE serial = $1")
            .bind(serial as i64)
            .fetch_optional(&c.db.pool)
            .await?;
    let produced_at = crate::db::now_ms() / 1000;
    let status = match row {
        None => CertStatus {
            serial,
            status: "unknown".into(),
            tier: None,
            device_id: None,
            revoked_at: None,
            not_after: None,
            produced_at,
        },
        Some(r) => {
            let revoked: Option<i64> = r.get(2);
            CertStatus {
                serial,
                status: if revoked.is_some() { "revoked" } else { "good" }.into(),
                tier: Some(r.get(0)),
                device_id: Some(r.get(1)),
                revoked_at: revoked.map(|ms| ms / 1000),
                not_after: Some(r.get(3)),
                produced_at,
            }
        }
    };
    // Canonical JSON (sorted keys, no spaces) so any client can re-create the bytes.
    let value = serde_json::to_value(&status).map_err(|_| ApiError::internal("status"))?;
    let bytes = dodvpn_audit::canonical_json(&value).into_bytes();
    let signature = base64::engine::general_purpose::STANDARD.encode(
        c.pki
            .sign_blob(&bytes)
            .map_err(|e| ApiError::internal(format!("cannot sign: {e}")))?,
    );
    Ok(Json(SignedStatus { status, signature }))
}

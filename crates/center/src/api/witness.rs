//! Devices as witnesses of the audit log (issue 15 step 3, R-AUD-4).
//!
//! - `GET /device/audit/consistency?old=M`: the newest checkpoint and the
//!   consistency proof from M to it, for an agent that kept checkpoint M.
//! - `POST /device/audit/cosignatures`: the agent's cosignature of a checkpoint,
//!   verified against the public key of the service certificate it presented,
//!   stored (migration 0019). A refused one is audited.
//! - `POST /device/audit/alerts`: an agent whose proof failed says so; the first
//!   report per device and kept checkpoint is audited, later ones count up.
//! - `GET /audit/alerts`: the provider reads them.
//!
//! Decided here: accepted cosignatures are *not* audit records. Each record
//! grows the tree and so causes a new checkpoint, which the devices would cosign
//! again: auditing them would keep the log growing forever. They are evidence of
//! their own (signed by the devices, in the bundle, checked by `audit check`).

use std::sync::Arc;

use crate::auth::Tier;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::Json;
use dodvpn_audit::note::SignedNote;
use dodvpn_audit::witness::{p256_point, Cosignature};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::{tlog, Center};

#[derive(Deserialize, IntoParams)]
pub struct OldSize {
    /// The size of the checkpoint this device kept (0: none yet).
    #[serde(default)]
    #[param(minimum = 0)]
    pub old: u64,
}

#[derive(Serialize, ToSchema)]
pub struct WitnessProof {
    /// Signer name on the centre's checkpoints.
    pub log_name: String,
    /// The log key (base64 of the uncompressed P-256 point); the agent pins it at first use.
    pub log_public_key: String,
    /// The newest signed checkpoint (text format in docs/audit.md).
    pub note: String,
    /// Its tree size.
    pub size: u64,
    /// RFC 9162 consistency proof from `old` to `size`, hex (empty when `old` is 0,
    /// equal to `size`, or larger: the agent then judges the sizes alone).
    pub proof: Vec<String>,
}

/// The newest checkpoint and the consistency proof from the one this device kept.
#[utoipa::path(get, path = "/api/v1/device/audit/consistency", tag = "device", params(OldSize),
    responses((status = 200, body = WitnessProof), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "no checkpoint signed yet")))]
pub async fn consistency(
    State(c): State<Arc<Center>>,
    caller: Caller,
    q: Result<Query<OldSize>, QueryRejection>,
) -> Result<Json<WitnessProof>, ApiError> {
    caller.device(Tier::Service)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut conn = c.db.pool.acquire().await?;
    let n = tlog::latest(&mut conn)
        .await?
        .ok_or_else(|| ApiError::not_found("no audit checkpoint has been signed yet"))?;
    let size = n.head.size;
    let have = tlog::size(&mut conn).await?;
    let proof = if q.old > 0 && q.old < size && size <= have {
        tlog::consistency(&mut conn, q.old, size).await?
    } else {
        vec![]
    };
    Ok(Json(WitnessProof {
        log_name: tlog::SIGNER_NAME.into(),
        log_public_key: c.tlog.public_key_b64(),
        note: n.to_text(),
        size,
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CosignatureBody {
    /// The tree size of the checkpoint cosigned.
    pub size: u64,
    /// `— <device id> base64(key id || time ms || signature)` (docs/audit.md).
    #[schema(max_length = 512)]
    pub cosignature: String,
}

#[derive(Serialize, ToSchema)]
pub struct CosignatureResult {
    pub size: u64,
    /// Distinct devices that have cosigned this checkpoint.
    pub cosignatures: u64,
    /// Whether that reaches the provider's threshold.
    pub witnessed: bool,
    pub witness_threshold: u32,
}

/// Number of distinct cosigners of the checkpoint of `size`.
pub async fn cosigners(db: &crate::db::Db, size: u64) -> Result<u64, ApiError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_cosignatures WHERE size = $1")
        .bind(size as i64)
        .fetch_one(&db.pool)
        .await?;
    Ok(n as u64)
}

/// The newest checkpoint size with at least `threshold` cosigners.
pub async fn newest_witnessed(db: &crate::db::Db, threshold: u32) -> Result<Option<u64>, ApiError> {
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(size) FROM (SELECT size FROM audit_cosignatures GROUP BY size HAVING COUNT(*) >= $1) w",
    )
    .bind(threshold as i64)
    .fetch_one(&db.pool)
    .await?;
    Ok(n.map(|n| n as u64))
}

/// A device's cosignature of a checkpoint, made with its service key.
#[utoipa::path(post, path = "/api/v1/device/audit/cosignatures", tag = "device", request_body = CosignatureBody,
    responses((status = 200, body = CosignatureResult),
        (status = 400, body = ErrorBody, description = "malformed, or bad_cosignature: it does not verify with this device's service key"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "no checkpoint of that size")))]
pub async fn cosign(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<CosignatureBody>, JsonRejection>,
) -> Result<Json<CosignatureResult>, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let Json(body) = body?;
    let size = i64::try_from(body.size).map_err(|_| ApiError::bad_request("size is too large"))?;
    let cos = Cosignature::parse_line(&body.cosignature)
        .map_err(|e| ApiError::bad_request_code("cosignature_malformed", e.to_string()))?;
    if cos.witness != dev.device_id {
        return Err(ApiError::forbidden(
            "other_device",
            "a device may cosign only under its own id / 自身の ID でのみ連署できます",
        ));
    }
    let note: String = sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE size = $1")
        .bind(size)
        .fetch_optional(&c.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no audit checkpoint of size {size}")))?;
    let note = SignedNote::parse(&note)
        .map_err(|e| ApiError::internal(format!("stored checkpoint unreadable: {e}")))?;
    // The service certificate this TLS connection presented: the device's current one.
    let row = sqlx::query(
        "SELECT pem, revoked_ms FROM certs WHERE serial = $1 AND device_id = $2 AND tier = 'service'",
    )
    .bind(dev.serial as i64)
    .bind(&dev.device_id)
    .fetch_optional(&c.db.pool)
    .await?
    .ok_or_else(|| ApiError::forbidden("unknown_certificate", "the presented service certificate is not on record"))?;
    if row.get::<Option<i64>, _>(1).is_some() {
        return Err(ApiError::forbidden(
            "certificate_revoked",
            "the presented service certificate is revoked",
        ));
    }
    let pem_text: String = row.get(0);
    let der = pem::parse(pem_text.as_bytes())
        .map_err(|_| ApiError::internal("stored service certificate is not PEM"))?;
    let spki = dodvpn_pki::inspect(der.contents())
        .map_err(|e| ApiError::internal(format!("stored service certificate: {e}")))?
        .public_key_spki_der;
    let verified = p256_point(&spki)
        .ok_or_else(|| dodvpn_audit::witness::WitnessError::BadCosignature {
            witness: dev.device_id.clone(),
        })
        .and_then(|point| cos.verify(point, &note.body));
    let mut tx = c.db.begin_write().await?;
    if let Err(e) = verified {
        tx.audit(
            &caller.actor(),
            "audit.cosignature_refused",
            &dev.device_id,
            serde_json::json!({"size": size, "serial": dev.serial, "problem": e.code()}),
        )
        .await?;
        tx.commit().await?;
        return Err(ApiError::bad_request_code(
            "bad_cosignature",
            format!("{e} / 連署を検証できません（この装置のサービス証明書の鍵と一致しません）"),
        ));
    }
    sqlx::query(
        "INSERT INTO audit_cosignatures (size, device_id, line, public_key, cert_serial, time_ms, received_ms) \
         VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (size, device_id) DO NOTHING",
    )
    .bind(size)
    .bind(&dev.device_id)
    .bind(cos.to_line())
    .bind(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &spki))
    .bind(dev.serial as i64)
    .bind(cos.time_ms)
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await?;
    tx.commit().await?;
    let n = cosigners(&c.db, body.size).await?;
    Ok(Json(CosignatureResult {
        size: body.size,
        cosignatures: n,
        witnessed: n >= c.tlog.witnesses as u64,
        witness_threshold: c.tlog.witnesses,
    }))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertBody {
    /// The checkpoint this device kept (signed by the centre when it accepted it).
    #[schema(max_length = 4096)]
    pub kept_note: String,
    /// The checkpoint the centre showed that failed.
    #[schema(max_length = 4096)]
    pub new_note: String,
    /// The problem code (`checkpoint_inconsistent`, `checkpoint_rollback`, …).
    #[schema(max_length = 64)]
    pub problem: String,
    /// What the agent found, in words.
    #[schema(max_length = 2000)]
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct AlertView {
    pub id: u64,
    pub device_id: String,
    pub kept_size: u64,
    pub kept_root: String,
    pub new_size: u64,
    pub new_root: String,
    pub problem: String,
    pub message: String,
    /// The kept checkpoint, signed by this centre's log key: the evidence.
    pub kept_note: String,
    /// How many times the device reported against this kept checkpoint.
    pub reports: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AlertReceived {
    pub id: u64,
    pub reports: u64,
}

/// A device found the centre's log inconsistent with the checkpoint it kept.
#[utoipa::path(post, path = "/api/v1/device/audit/alerts", tag = "device", request_body = AlertBody,
    responses((status = 200, body = AlertReceived), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn report_alert(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<AlertBody>, JsonRejection>,
) -> Result<Json<AlertReceived>, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let Json(b) = body?;
    if b.problem.is_empty()
        || b.problem.len() > 64
        || !b
            .problem
            .bytes()
            .all(|x| x.is_ascii_lowercase() || x == b'_')
    {
        return Err(ApiError::bad_request(
            "problem must be a code of lower-case letters and '_'",
        ));
    }
    if b.message.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "message is longer than 2000 characters",
        ));
    }
    let kept = SignedNote::parse(&b.kept_note)
        .map_err(|e| ApiError::bad_request(format!("kept_note: {e}")))?;
    let new = SignedNote::parse(&b.new_note)
        .map_err(|e| ApiError::bad_request(format!("new_note: {e}")))?;
    // Whether the kept checkpoint carries this centre's signature (the evidence holds).
    let kept_signed = kept
        .verify(tlog::SIGNER_NAME, c.tlog.key.public_point())
        .is_ok();
    let kept_root = hex::encode(kept.head.root);
    let mut tx = c.db.begin_write().await?;
    let existing = sqlx::query(
        "SELECT id, reports FROM audit_alerts WHERE device_id = $1 AND kept_size = $2 AND kept_root = $3",
    )
    .bind(&dev.device_id)
    .bind(kept.head.size as i64)
    .bind(&kept_root)
    .fetch_optional(&mut *tx.tx)
    .await?;
    let (id, reports) = match existing {
        Some(r) => {
            let (id, reports): (i64, i64) = (r.get(0), r.get(1));
            sqlx::query(
                "UPDATE audit_alerts SET reports = $2, last_ms = $3, new_size = $4, new_root = $5, problem = $6, message = $7 WHERE id = $1",
            )
            .bind(id)
            .bind(reports + 1)
            .bind(tx.now)
            .bind(new.head.size as i64)
            .bind(hex::encode(new.head.root))
            .bind(&b.problem)
            .bind(&b.message)
            .execute(&mut *tx.tx)
            .await?;
            (id as u64, reports as u64 + 1)
        }
        None => {
            let id = tx.next_counter("audit_alert_id").await?;
            sqlx::query(
                "INSERT INTO audit_alerts (id, device_id, kept_size, kept_root, new_size, new_root, problem, message, kept_note, reports, first_ms, last_ms) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,1,$10,$10)",
            )
            .bind(id as i64)
            .bind(&dev.device_id)
            .bind(kept.head.size as i64)
            .bind(&kept_root)
            .bind(new.head.size as i64)
            .bind(hex::encode(new.head.root))
            .bind(&b.problem)
            .bind(&b.message)
            .bind(&b.kept_note)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
            tx.audit(
                &caller.actor(),
                "audit.witness_alert",
                &dev.device_id,
                serde_json::json!({
                    "alert": id, "problem": b.problem, "kept_size": kept.head.size,
                    "kept_root": kept_root, "kept_signed_by_this_centre": kept_signed,
                    "new_size": new.head.size, "new_root": hex::encode(new.head.root),
                }),
            )
            .await?;
            (id, 1)
        }
    };
    tx.commit().await?;
    tracing::error!(
        device = %dev.device_id, problem = %b.problem, kept_size = kept.head.size,
        "AUDIT WITNESS ALERT: a device found the audit log inconsistent with the checkpoint it kept / 監査証人アラート: 装置が保存済みチェックポイントとログの不整合を検出"
    );
    Ok(Json(AlertReceived { id, reports }))
}

/// Failed proofs the devices reported, newest first. Provider only.
#[utoipa::path(get, path = "/api/v1/audit/alerts", tag = "audit",
    security(("admin_bearer" = [])),
    responses((status = 200, body = [AlertView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_alerts(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    caller.require_provider()?;
    let rows = sqlx::query(
        "SELECT id, device_id, kept_size, kept_root, new_size, new_root, problem, message, kept_note, reports, first_ms, last_ms \
         FROM audit_alerts ORDER BY last_ms DESC, id DESC LIMIT 10000",
    )
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| AlertView {
                id: r.get::<i64, _>(0) as u64,
                device_id: r.get(1),
                kept_size: r.get::<i64, _>(2) as u64,
                kept_root: r.get(3),
                new_size: r.get::<i64, _>(4) as u64,
                new_root: r.get(5),
                problem: r.get(6),
                message: r.get(7),
                kept_note: r.get(8),
                reports: r.get::<i64, _>(9) as u64,
                first_ms: r.get(10),
                last_ms: r.get(11),
            })
            .collect(),
    ))
}

/// Every stored cosignature, for the bundle.
pub async fn all_cosignatures(
    db: &crate::db::Db,
) -> Result<Vec<dodvpn_audit::bundle::BundleCosignature>, ApiError> {
    Ok(sqlx::query(
        "SELECT c.size, c.line, c.public_key, c.cert_serial, k.pem FROM audit_cosignatures c \
         LEFT JOIN certs k ON k.serial = c.cert_serial ORDER BY c.size, c.device_id",
    )
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| dodvpn_audit::bundle::BundleCosignature {
        size: r.get::<i64, _>(0) as u64,
        line: r.get(1),
        public_key: r.get(2),
        cert_serial: r.get::<i64, _>(3) as u64,
        cert_pem: r.get(4),
    })
    .collect())
}

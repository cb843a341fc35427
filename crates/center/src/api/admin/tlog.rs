//! The audit log's Merkle tree (R-AUD-4): signed checkpoints, inclusion and
//! consistency proofs, the log key, and the auditor's full export (bundle).
//!
//! Checkpoints and proofs are hashes only, so every audit reader (provider,
//! organisation administrators, auditors) may fetch them; the bundle holds every
//! record and is the provider's.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use dodvpn_audit::merkle::Hash;
use dodvpn_audit::note::SignedNote;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::{tlog, Center};

#[derive(Serialize, ToSchema)]
pub struct CheckpointView {
    /// Records in the tree.
    pub size: u64,
    /// Root hash, lower-case hex.
    pub root: String,
    /// When the centre signed it (Unix ms).
    pub time_ms: i64,
    /// The signed note (text format in docs/audit.md).
    pub note: String,
    /// Distinct devices that cosigned this checkpoint (issue 15 step 3).
    pub cosignatures: u64,
    /// Whether that reaches the provider's threshold (`DODVPN_AUDIT_WITNESSES`).
    pub witnessed: bool,
    pub witness_threshold: u32,
    /// The newest checkpoint size that is witnessed (only in `GET /audit/checkpoint`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_witnessed: Option<u64>,
}

async fn view(c: &Center, n: &SignedNote, text: String) -> Result<CheckpointView, ApiError> {
    let cosignatures = crate::api::witness::cosigners(&c.db, n.head.size).await?;
    Ok(CheckpointView {
        size: n.head.size,
        root: hex::encode(n.head.root),
        time_ms: n.head.time_ms,
        note: text,
        cosignatures,
        witnessed: cosignatures >= c.tlog.witnesses as u64,
        witness_threshold: c.tlog.witnesses,
        newest_witnessed: None,
    })
}

fn hexes(p: &[Hash]) -> Vec<String> {
    p.iter().map(hex::encode).collect()
}

/// The newest signed checkpoint of the audit tree.
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit",
    security(("admin_bearer" = [])),
    responses((status = 200, body = CheckpointView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "no checkpoint signed yet")))]
pub async fn latest(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<CheckpointView>, ApiError> {
    caller.audit_scope()?;
    let mut conn = c.db.pool.acquire().await?;
    let n = tlog::latest(&mut conn)
        .await?
        .ok_or_else(|| ApiError::not_found("no audit checkpoint has been signed yet"))?;
    let text = n.to_text();
    let mut v = view(&c, &n, text).await?;
    v.newest_witnessed = crate::api::witness::newest_witnessed(&c.db, c.tlog.witnesses).await?;
    Ok(Json(v))
}

#[derive(Deserialize, IntoParams)]
pub struct CheckpointPage {
    /// Checkpoints of a tree larger than this.
    #[serde(default)]
    #[param(minimum = 0)]
    pub after_size: u64,
    /// At most this many (1–10000, default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// Signed checkpoints, oldest first.
#[utoipa::path(get, path = "/api/v1/audit/checkpoints", tag = "audit", params(CheckpointPage),
    security(("admin_bearer" = [])),
    responses((status = 200, body = [CheckpointView]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(c): State<Arc<Center>>,
    caller: Caller,
    q: Result<Query<CheckpointPage>, QueryRejection>,
) -> Result<Json<Vec<CheckpointView>>, ApiError> {
    caller.audit_scope()?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1–10000"));
    }
    let after = i64::try_from(q.after_size)
        .map_err(|_| ApiError::bad_request("after_size is too large"))?;
    let rows =
        sqlx::query("SELECT note FROM audit_checkpoints WHERE size > $1 ORDER BY size LIMIT $2")
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&c.db.pool)
            .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let text: String = sqlx::Row::get(&r, 0);
        let n = SignedNote::parse(&text)
            .map_err(|e| ApiError::internal(format!("stored checkpoint unreadable: {e}")))?;
        out.push(view(&c, &n, text).await?);
    }
    Ok(Json(out))
}

#[derive(Deserialize, IntoParams)]
pub struct InclusionQuery {
    /// The record's sequence number.
    #[param(minimum = 1)]
    pub seq: u64,
    /// Tree size to prove against (default: the newest checkpoint's).
    #[param(minimum = 1)]
    pub size: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct InclusionProofView {
    pub seq: u64,
    /// 0-based leaf index (seq − 1).
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Root of that tree (hex); compare with a signed checkpoint.
    pub root: String,
    /// The record's chain hash: the leaf input.
    pub record_hash: String,
    /// RFC 9162 audit path, hex, leaf to root.
    pub proof: Vec<String>,
}

/// Inclusion proof (RFC 9162 §2.1.3) of one record in the tree.
#[utoipa::path(get, path = "/api/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    security(("admin_bearer" = [])),
    responses((status = 200, body = InclusionProofView),
        (status = 400, body = ErrorBody, description = "seq or size out of range, or no checkpoint yet"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn inclusion(
    State(c): State<Arc<Center>>,
    caller: Caller,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProofView>, ApiError> {
    caller.audit_scope()?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut conn = c.db.pool.acquire().await?;
    let have = tlog::size(&mut conn).await?;
    let size = match q.size {
        Some(s) => s,
        None => tlog::latest(&mut conn)
            .await?
            .map(|n| n.head.size)
            .ok_or_else(|| {
                ApiError::bad_request_code(
                    "out_of_range",
                    "no audit checkpoint has been signed yet: give size",
                )
            })?,
    };
    if size == 0 || size > have || q.seq == 0 || q.seq > size {
        return Err(ApiError::bad_request_code(
            "out_of_range",
            format!("need 1 <= seq <= size <= {have} (records in the tree)"),
        ));
    }
    let record_hash: String = sqlx::query_scalar("SELECT hash FROM audit WHERE seq = $1")
        .bind(q.seq as i64)
        .fetch_one(&mut *conn)
        .await?;
    let proof = tlog::inclusion(&mut conn, q.seq, size).await?;
    let root = tlog::root(&mut conn, size).await?;
    Ok(Json(InclusionProofView {
        seq: q.seq,
        leaf_index: q.seq - 1,
        tree_size: size,
        root: hex::encode(root),
        record_hash,
        proof: hexes(&proof),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    /// The older tree size.
    #[param(minimum = 0)]
    pub old: u64,
    /// The newer tree size.
    #[param(minimum = 0)]
    pub new: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConsistencyProofView {
    pub old: u64,
    pub new: u64,
    pub old_root: String,
    pub new_root: String,
    /// RFC 9162 §2.1.4 consistency proof, hex.
    pub proof: Vec<String>,
}

/// Consistency proof that the tree of `old` records is a prefix of the tree of `new`.
#[utoipa::path(get, path = "/api/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    security(("admin_bearer" = [])),
    responses((status = 200, body = ConsistencyProofView),
        (status = 400, body = ErrorBody, description = "sizes out of range"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn consistency(
    State(c): State<Arc<Center>>,
    caller: Caller,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    caller.audit_scope()?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut conn = c.db.pool.acquire().await?;
    let have = tlog::size(&mut conn).await?;
    if q.old > q.new || q.new > have {
        return Err(ApiError::bad_request_code(
            "out_of_range",
            format!("need old <= new <= {have} (records in the tree)"),
        ));
    }
    let proof = tlog::consistency(&mut conn, q.old, q.new).await?;
    Ok(Json(ConsistencyProofView {
        old: q.old,
        new: q.new,
        old_root: hex::encode(tlog::root(&mut conn, q.old).await?),
        new_root: hex::encode(tlog::root(&mut conn, q.new).await?),
        proof: hexes(&proof),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct LogKeyView {
    /// Signer name on the centre's checkpoints.
    pub signer: String,
    /// Origin line of its checkpoints.
    pub origin: String,
    /// Base64 of the uncompressed P-256 public point.
    pub public_key: String,
    /// SHA-256 of the public point (hex): pin this out of band.
    pub fingerprint: String,
}

/// The key that signs the audit checkpoints.
#[utoipa::path(get, path = "/api/v1/audit/log-key", tag = "audit",
    security(("admin_bearer" = [])),
    responses((status = 200, body = LogKeyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn log_key(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<LogKeyView>, ApiError> {
    caller.audit_scope()?;
    Ok(Json(LogKeyView {
        signer: tlog::SIGNER_NAME.into(),
        origin: c.tlog.origin.clone(),
        public_key: c.tlog.public_key_b64(),
        fingerprint: dodvpn_audit::bundle::key_fingerprint(c.tlog.key.public_point()),
    }))
}

/// Everything an auditor needs to check the log offline (`dodvpn audit check`):
/// the log key, every record and every signed checkpoint. Provider only.
#[utoipa::path(get, path = "/api/v1/audit/bundle", tag = "audit",
    security(("admin_bearer" = [])),
    responses((status = 200, body = Object, description = "dodvpn-audit-bundle/1 (docs/audit.md)"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn bundle(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<dodvpn_audit::bundle::Bundle>, ApiError> {
    caller.require_provider()?;
    // Cosignatures first (each names a checkpoint already stored), then
    // checkpoints (every record they cover is committed before them).
    let cosignatures = crate::api::witness::all_cosignatures(&c.db).await?;
    let checkpoints = tlog::all_notes(&c.db).await?;
    let timestamps = tlog::all_timestamps(&c.db).await?;
    let rows = crate::chain_guard::rows_from(&c.db, i64::MIN).await?;
    Ok(Json(dodvpn_audit::bundle::Bundle {
        format: dodvpn_audit::bundle::FORMAT.into(),
        log_name: tlog::SIGNER_NAME.into(),
        log_public_key: c.tlog.public_key_b64(),
        records: rows.iter().map(|r| r.lossy()).collect(),
        checkpoints,
        timestamps,
        cosignatures,
        witness_threshold: Some(c.tlog.witnesses),
    }))
}

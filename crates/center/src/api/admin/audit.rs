//! The audit log (R-AUD-1, R-AUD-3): read, verify the hash chain, export for auditors.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::db::audit_record;
use crate::error::{ApiError, ErrorBody};
use crate::Center;

#[derive(Deserialize, IntoParams)]
pub struct Page {
    /// Records after this sequence number.
    #[serde(default)]
    pub after: i64,
    /// At most this many (default 100, max 10000).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditRecord {
    pub seq: u64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<dodvpn_audit::Record> for AuditRecord {
    fn from(r: dodvpn_audit::Record) -> Self {
        AuditRecord {
            seq: r.seq,
            ts_ms: r.ts_ms,
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            details: r.details,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

pub(crate) const COLS: &str = "seq, ts_ms, actor, action, subject, details, prev_hash, hash";

pub(crate) async fn all_records(c: &Center) -> Result<Vec<dodvpn_audit::Record>, ApiError> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM audit ORDER BY seq"))
        .fetch_all(&c.db.pool)
        .await?;
    rows.iter().map(audit_record).collect()
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(Page), responses((status = 200, body = [AuditRecord])))]
pub async fn list(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(p): Query<Page>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    caller.require_provider()?;
    let limit = p.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(p.after)
    .bind(limit)
    .fetch_all(&c.db.pool)
    .await?;
    let recs = rows
        .iter()
        .map(audit_record)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(recs.into_iter().map(AuditRecord::from).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub records: u64,
    pub head_hash: Option<String>,
    /// What is wrong and where, when not ok.
    pub error: Option<String>,
}

/// Recompute the whole hash chain in the database.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, body = VerifyReport), (status = 403, body = ErrorBody)))]
pub async fn verify(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<VerifyReport>, ApiError> {
    caller.require_provider()?;
    let recs = all_records(&c).await?;
    Ok(Json(match dodvpn_audit::verify(recs.iter()) {
        Ok(s) => VerifyReport {
            ok: true,
            records: s.count,
            head_hash: Some(s.head_hash),
            error: None,
        },
        Err(e) => VerifyReport {
            ok: false,
            records: recs.len() as u64,
            head_hash: None,
            error: Some(e.to_string()),
        },
    }))
}

/// The whole log as JSON lines, one record per line, for auditors (R-AUD-3).
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit",
    responses((status = 200, content_type = "application/jsonl", body = String)))]
pub async fn export(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_provider()?;
    let recs = all_records(&c).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/jsonl")],
        dodvpn_audit::to_jsonl(recs.iter()),
    ))
}

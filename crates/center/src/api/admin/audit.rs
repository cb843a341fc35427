//! The audit log (R-AUD-1, R-AUD-3): read, verify the hash chain, export for auditors.
//!
//! The provider reads everything. An organisation's administrators and its
//! auditors (read-only credentials, `dodvpn-auditor.…`) read the records that name
//! the organisation or one of its devices (by id, in the actor, subject or any
//! string of the details), and verify the whole chain without seeing the rest.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{hash_secret, Caller, AUDITOR_PREFIX};
use crate::chain_guard::{rows_from, stored_record};
use crate::error::{ApiError, ErrorBody};
use crate::{new_id, Center};

#[derive(Deserialize, IntoParams)]
pub struct Page {
    /// Records after this sequence number.
    #[serde(default)]
    pub after: i64,
    /// At most this many (default 100; larger values are read as 10000).
    #[param(minimum = 1)]
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

const COLS: &str = "seq, ts_ms, actor, action, subject, details, prev_hash, hash";

/// The ids that make a record one organisation's: its own and its devices'.
struct OrgFilter {
    ids: HashSet<String>,
}

impl OrgFilter {
    async fn load(c: &Center, org_id: &str) -> Result<OrgFilter, ApiError> {
        let mut ids: HashSet<String> = sqlx::query("SELECT id FROM devices WHERE owner_org = $1")
            .bind(org_id)
            .fetch_all(&c.db.pool)
            .await?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        ids.insert(org_id.to_string());
        Ok(OrgFilter { ids })
    }

    /// Ids are `prefix-<12 hex>`, so finding one inside a longer string (e.g.
    /// "org-admin:adm-…@org-…" or "dev-a->dev-b") is unambiguous.
    fn names(&self, r: &dodvpn_audit::Record) -> bool {
        self.in_str(&r.actor) || self.in_str(&r.subject) || self.in_value(&r.details)
    }

    fn in_str(&self, s: &str) -> bool {
        self.ids.iter().any(|id| s.contains(id.as_str()))
    }

    fn in_value(&self, v: &serde_json::Value) -> bool {
        use serde_json::Value;
        match v {
            Value::String(s) => self.in_str(s),
            Value::Array(a) => a.iter().any(|v| self.in_value(v)),
            Value::Object(m) => m.iter().any(|(k, v)| self.in_str(k) || self.in_value(v)),
            _ => false,
        }
    }
}

/// Records after `after`, at most `limit`, that the caller may read.
async fn visible(
    c: &Center,
    caller: &Caller,
    after: i64,
    limit: i64,
) -> Result<Vec<dodvpn_audit::Record>, ApiError> {
    let filter = match caller.audit_scope()? {
        None => None,
        Some(org) => Some(OrgFilter::load(c, org).await?),
    };
    const BATCH: i64 = 1000;
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let want = if filter.is_some() {
            BATCH
        } else {
            limit - out.len() as i64
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(want)
        .fetch_all(&c.db.pool)
        .await?;
        let done = (rows.len() as i64) < want;
        for row in &rows {
            let stored = stored_record(row)?;
            after = stored.seq;
            // Shown even when unreadable: a damaged record must not vanish.
            let rec = stored.lossy();
            if filter.as_ref().is_none_or(|f| f.names(&rec)) {
                out.push(rec);
                if out.len() as i64 >= limit {
                    return Ok(out);
                }
            }
        }
        if done || rows.is_empty() {
            return Ok(out);
        }
    }
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(Page),
    responses((status = 200, body = [AuditRecord]), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(p): Query<Page>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let limit = p.limit.unwrap_or(100).clamp(1, 10_000);
    let recs = visible(&c, &caller, p.after, limit).await?;
    Ok(Json(recs.into_iter().map(AuditRecord::from).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct VerifyReport {
    /// The whole chain verifies.
    pub ok: bool,
    /// Records in the chain.
    pub records: u64,
    pub head_hash: Option<String>,
    /// What is wrong and where, when not ok.
    pub error: Option<String>,
    /// Stable name of the problem when not ok: edited, missing, reordered,
    /// out_of_order, bad_link, time_went_backwards, bad_genesis, unreadable.
    pub problem: Option<String>,
    /// Sequence number of the first bad record, when not ok.
    pub first_bad_seq: Option<i64>,
    /// For an organisation's caller: how many of the records are its own.
    pub own_records: Option<u64>,
}

/// Recompute the whole hash chain in the database. A broken chain is a 200 with
/// `ok: false` naming the first bad record, never a server error.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, body = VerifyReport), (status = 403, body = ErrorBody)))]
pub async fn verify(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<VerifyReport>, ApiError> {
    let scope = caller.audit_scope()?.map(str::to_string);
    let rows = rows_from(&c.db, i64::MIN).await?;
    let own_records = match &scope {
        None => None,
        Some(org) => {
            let f = OrgFilter::load(&c, org).await?;
            Some(rows.iter().filter(|r| f.names(&r.lossy())).count() as u64)
        }
    };
    Ok(Json(match dodvpn_audit::verify_stored(None, &rows) {
        Ok(s) => {
            if let Some(last) = rows.last() {
                c.chain
                    .advance(dodvpn_audit::Checkpoint {
                        seq: last.seq as u64,
                        hash: s.head_hash.clone(),
                    })
                    .await;
            }
            VerifyReport {
                ok: true,
                records: s.count,
                head_hash: Some(s.head_hash),
                error: None,
                problem: None,
                first_bad_seq: None,
                own_records,
            }
        }
        Err(e) => VerifyReport {
            ok: false,
            records: rows.len() as u64,
            head_hash: None,
            error: Some(e.to_string()),
            problem: Some(e.code().to_string()),
            first_bad_seq: Some(e.seq()),
            own_records,
        },
    }))
}

/// The log as JSON lines, one record per line, for auditors (R-AUD-3): the whole
/// chain for the provider, the organisation's own records for its callers (check
/// those with `dodvpn admin audit verify --file F --excerpt`).
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit",
    responses((status = 200, content_type = "application/jsonl", body = String), (status = 403, body = ErrorBody)))]
pub async fn export(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let recs = visible(&c, &caller, i64::MIN, i64::MAX).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/jsonl")],
        dodvpn_audit::to_jsonl(recs.iter()),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct NewAuditor {
    /// Who holds it, e.g. "external auditor, 2026 review" (1–200 printable characters).
    #[schema(min_length = 1, max_length = 200)]
    pub label: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditorCredential {
    pub id: String,
    pub org_id: String,
    /// `dodvpn-auditor.<id>.<secret>`: shown once, only its hash is stored.
    pub credential: String,
}

/// Issue a read-only auditor credential for one organisation: it may read, verify
/// and export that organisation's audit records and nothing else.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/auditors", tag = "audit", params(("id" = String, Path)),
    request_body = NewAuditor,
    responses((status = 201, body = AuditorCredential), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_auditor(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<NewAuditor>, JsonRejection>,
) -> Result<(StatusCode, Json<AuditorCredential>), ApiError> {
    caller.require_org(&id)?;
    let Json(body) = body?;
    let label = body.label.trim();
    if label.is_empty() || label.chars().count() > 200 || label.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "label must be 1–200 printable characters",
        ));
    }
    let mut tx = c.db.begin_write().await?;
    crate::api::admin::orgs::org_exists(&mut tx, &id).await?;
    let auditor_id = new_id("aud");
    let secret = crate::init::random_secret();
    sqlx::query(
        "INSERT INTO auditors (id, org_id, secret_hash, label, created_ms) VALUES ($1,$2,$3,$4,$5)",
    )
    .bind(&auditor_id)
    .bind(&id)
    .bind(hash_secret(&secret))
    .bind(label)
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "auditor.created",
        &auditor_id,
        serde_json::json!({"org": id, "label": label}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AuditorCredential {
            credential: format!("{AUDITOR_PREFIX}.{auditor_id}.{secret}"),
            id: auditor_id,
            org_id: id,
        }),
    ))
}

/// Revoke an auditor credential (at once: every call checks the database).
#[utoipa::path(post, path = "/api/v1/auditors/{id}/revoke", tag = "audit", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_auditor(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let mut tx = c.db.begin_write().await?;
    let row = sqlx::query("SELECT org_id, revoked_ms FROM auditors WHERE id = $1")
        .bind(&id)
        .fetch_optional(&mut *tx.tx)
        .await?;
    let Some(row) = row else {
        return Err(ApiError::not_found(format!("no auditor {id}")));
    };
    let org: String = row.get(0);
    // Another organisation's auditor is "not found", as its devices are.
    if caller.require_org(&org).is_err() {
        return Err(ApiError::not_found(format!("no auditor {id}")));
    }
    if row.get::<Option<i64>, _>(1).is_none() {
        sqlx::query("UPDATE auditors SET revoked_ms = $2 WHERE id = $1")
            .bind(&id)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(
            &caller.actor(),
            "auditor.revoked",
            &id,
            serde_json::json!({"org": org}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(
        serde_json::json!({"id": id, "org_id": org, "revoked": true}),
    ))
}

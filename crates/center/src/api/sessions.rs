//! Tunnel sessions (R-AUD-2, TR A.1 c three-point audit).
//!
//! Both ends of an IKE SA report it to the centre under one id, the SPI pair
//! `"{spi_i:016x}-{spi_r:016x}"` (see `dodvpn_policy::session`): up, periodic counter
//! updates, down. Each accepted report is an audit record (`session.up`,
//! `session.update`, `session.down`), so the centre's own record of the grant and the
//! two ends' accounts of the tunnel sit in one hash chain. The operator lists and
//! inspects sessions with both ends side by side and can cut one: `session.cut` is
//! audited and a `session_cut` event is pushed to both devices.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use dodvpn_policy::session::{parse_session_id, SessionEvent, SessionReport, MAX_REASON_LEN};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Tier};
use crate::error::{ApiError, ErrorBody};
use crate::Center;

/// A report may be this far ahead of the centre's clock.
const MAX_CLOCK_AHEAD_SECS: i64 = 300;
/// A report older than this is refused (an agent that was offline longer has lost it).
const MAX_REPORT_AGE_SECS: i64 = 30 * 86400;
/// A grant withdrawn less than this long ago still accepts reports (the `down` and the
/// last counters of the tunnels it carried arrive after the withdrawal).
const RECENT_GRANT_MS: i64 = 24 * 3600 * 1000;

#[derive(Serialize, ToSchema)]
pub struct SessionAck {
    pub session_id: String,
    /// False when this exact report had been recorded before (nothing was written).
    pub recorded: bool,
}

fn report_error(e: dodvpn_policy::session::ReportError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message)
}

/// A device reports one of its sessions (tier-2 service certificate). Idempotent: the
/// same report (session, reporter, event, `at`) sent again is answered 200 and not
/// recorded twice; a different report under the same key is refused.
#[utoipa::path(post, path = "/api/v1/device/sessions", tag = "device", request_body = SessionReport,
    responses((status = 201, body = SessionAck, description = "recorded and audited"),
              (status = 200, body = SessionAck, description = "already recorded"),
              (status = 400, body = ErrorBody, description = "invalid_session_id, invalid_peer, invalid_grants, invalid_counter, invalid_time, stale_report, invalid_reason"),
              (status = 403, body = ErrorBody, description = "not_party: a grant does not connect the reporter with the peer"),
              (status = 409, body = ErrorBody, description = "session_mismatch, conflicting_report"),
              (status = 422, body = ErrorBody, description = "invalid_body")))]
pub async fn report(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<SessionReport>, JsonRejection>,
) -> Result<(StatusCode, Json<SessionAck>), ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let Json(r) = body?;
    r.validate(&dev.device_id).map_err(report_error)?;
    let me = dev.device_id.as_str();
    let peer = r.peer_device_id.as_str();
    let mut tx = c.db.begin_write().await?;
    let now_s = tx.now / 1000;
    if r.at > now_s + MAX_CLOCK_AHEAD_SECS {
        return Err(ApiError::bad_request_code(
            "invalid_time",
            format!("at ({}) is ahead of the centre's clock ({now_s})", r.at),
        ));
    }
    if r.at < now_s - MAX_REPORT_AGE_SECS {
        return Err(ApiError::bad_request_code(
            "stale_report",
            "at is more than 30 days in the past",
        ));
    }
    // Every grant named must connect exactly these two devices and be live or recently
    // withdrawn. One answer for "no such grant" and "not yours": nothing is revealed.
    for g in &r.grant_ids {
        let row = sqlx::query(
            "SELECT applicant_device, target_device, status, ended_ms FROM grants WHERE id = $1",
        )
        .bind(g)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let ok = row.is_some_and(|row| {
            let (a, t, status): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            let ended: Option<i64> = row.get(3);
            let ends = (a == me && t == peer) || (a == peer && t == me);
            let alive = status == "active" || ended.is_some_and(|e| e >= tx.now - RECENT_GRANT_MS);
            ends && alive
        });
        if !ok {
            return Err(ApiError::forbidden(
                "not_party",
                format!("grant {g} does not connect this device with {peer}, or it ended more than 24 h ago"),
            ));
        }
    }
    let grants_json = serde_json::to_string(&r.grant_ids)
        .map_err(|_| ApiError::internal("cannot encode grant ids"))?;
    let event = r.event.as_str();
    let dup = sqlx::query(
        "SELECT grant_ids, bytes_in, bytes_out, packets_in, packets_out, reason FROM session_reports \
         WHERE session_id = $1 AND reporter = $2 AND event = $3 AND at = $4",
    )
    .bind(&r.session_id)
    .bind(me)
    .bind(event)
    .bind(r.at)
    .fetch_optional(&mut *tx.tx)
    .await?;
    if let Some(d) = dup {
        let same = d.get::<String, _>(0) == grants_json
            && d.get::<i64, _>(1) == r.bytes_in as i64
            && d.get::<i64, _>(2) == r.bytes_out as i64
            && d.get::<i64, _>(3) == r.packets_in as i64
            && d.get::<i64, _>(4) == r.packets_out as i64
            && d.get::<Option<String>, _>(5) == r.reason;
        if same {
            return Ok((
                StatusCode::OK,
                Json(SessionAck {
                    session_id: r.session_id,
                    recorded: false,
                }),
            ));
        }
        return Err(ApiError::conflict(
            "conflicting_report",
            format!(
                "a different '{event}' report for session {} at {} was already recorded from this device",
                r.session_id, r.at
            ),
        ));
    }
    let (lo, hi) = if me < peer { (me, peer) } else { (peer, me) };
    let existing =
        sqlx::query("SELECT device_lo, device_hi, grant_ids, status FROM sessions WHERE id = $1")
            .bind(&r.session_id)
            .fetch_optional(&mut *tx.tx)
            .await?;
    match existing {
        Some(s) => {
            let (slo, shi): (String, String) = (s.get(0), s.get(1));
            if slo != lo || shi != hi {
                return Err(ApiError::conflict(
                    "session_mismatch",
                    format!(
                        "session {} is not between this device and {peer}",
                        r.session_id
                    ),
                ));
            }
            let mut grants: BTreeSet<String> =
                serde_json::from_str(&s.get::<String, _>(2)).unwrap_or_default();
            grants.extend(r.grant_ids.iter().cloned());
            let status: String = s.get(3);
            let status = if r.event == SessionEvent::Down {
                "down".to_string()
            } else {
                status
            };
            sqlx::query(
                "UPDATE sessions SET grant_ids = $2, status = $3, last_ms = $4, relay = COALESCE($5, relay) WHERE id = $1",
            )
            .bind(&r.session_id)
            .bind(serde_json::to_string(&grants).unwrap_or_else(|_| "[]".into()))
            .bind(&status)
            .bind(tx.now)
            .bind(&r.relay)
            .execute(&mut *tx.tx)
            .await?;
        }
        None => {
            let grants: BTreeSet<&String> = r.grant_ids.iter().collect();
            sqlx::query(
                "INSERT INTO sessions (id, device_lo, device_hi, grant_ids, status, first_ms, last_ms, relay) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
            )
            .bind(&r.session_id)
            .bind(lo)
            .bind(hi)
            .bind(serde_json::to_string(&grants).unwrap_or_else(|_| "[]".into()))
            .bind(if r.event == SessionEvent::Down { "down" } else { "up" })
            .bind(tx.now)
            .bind(&r.relay)
            .execute(&mut *tx.tx)
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO session_reports (session_id, reporter, event, at, grant_ids, bytes_in, bytes_out, packets_in, packets_out, reason, received_ms, relay) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&r.session_id)
    .bind(me)
    .bind(event)
    .bind(r.at)
    .bind(&grants_json)
    .bind(r.bytes_in as i64)
    .bind(r.bytes_out as i64)
    .bind(r.packets_in as i64)
    .bind(r.packets_out as i64)
    .bind(&r.reason)
    .bind(tx.now)
    .bind(&r.relay)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        &format!("session.{event}"),
        &r.session_id,
        serde_json::json!({
            "reporter": me, "peer": peer, "grants": r.grant_ids,
            "bytes_in": r.bytes_in, "bytes_out": r.bytes_out,
            "packets_in": r.packets_in, "packets_out": r.packets_out,
            "at": r.at, "reason": r.reason, "relay": r.relay,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionAck {
            session_id: r.session_id,
            recorded: true,
        }),
    ))
}

// ---------- operator ----------

#[derive(Serialize, ToSchema)]
pub struct SessionSummary {
    /// `"{spi_i:016x}-{spi_r:016x}"`.
    pub id: String,
    /// The two ends, in lexicographic order.
    pub device_a: String,
    pub device_b: String,
    pub grant_ids: Vec<String>,
    /// `up`, or `down` once either end reported it down.
    pub status: String,
    pub first_ms: i64,
    pub last_ms: i64,
    /// When an operator cut it, by whom and why.
    pub cut_ms: Option<i64>,
    pub cut_by: Option<String>,
    pub cut_reason: Option<String>,
    /// The provider relay ("IP:port") the session runs through, if an end reported
    /// one (issue 19); absent for a direct session.
    pub relay: Option<String>,
}

/// One end's account of the session (its latest report and when it said up/down).
#[derive(Serialize, ToSchema)]
pub struct SessionEnd {
    pub device_id: String,
    /// How many reports this end sent.
    pub reports: i64,
    pub up_at: Option<i64>,
    pub down_at: Option<i64>,
    pub last_event: Option<String>,
    pub last_at: Option<i64>,
    /// Counters from this end's latest report.
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub packets_in: i64,
    pub packets_out: i64,
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReportRecord {
    pub reporter: String,
    pub event: String,
    pub at: i64,
    pub grant_ids: Vec<String>,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub packets_in: i64,
    pub packets_out: i64,
    pub reason: Option<String>,
    pub received_ms: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SessionDetail {
    pub id: String,
    pub device_a: String,
    pub device_b: String,
    pub grant_ids: Vec<String>,
    pub status: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub cut_ms: Option<i64>,
    pub cut_by: Option<String>,
    pub cut_reason: Option<String>,
    /// The provider relay the session runs through, if any.
    pub relay: Option<String>,
    /// Both ends side by side: `device_a`'s account, then `device_b`'s.
    pub ends: Vec<SessionEnd>,
    /// Every report, in the order the ends say they happened.
    pub reports: Vec<ReportRecord>,
}

const SESSION_COLS: &str =
    "id, device_lo, device_hi, grant_ids, status, first_ms, last_ms, cut_ms, cut_by, cut_reason, relay";

fn summary_from_row(r: &sqlx::any::AnyRow) -> SessionSummary {
    SessionSummary {
        id: r.get(0),
        device_a: r.get(1),
        device_b: r.get(2),
        grant_ids: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or_default(),
        status: r.get(4),
        first_ms: r.get(5),
        last_ms: r.get(6),
        cut_ms: r.get(7),
        cut_by: r.get(8),
        cut_reason: r.get(9),
        relay: r.get(10),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct SessionQuery {
    /// Include sessions that are down (default: only live ones).
    #[serde(default)]
    pub all: bool,
    /// Only sessions with this device at one end.
    pub device: Option<String>,
}

/// Sessions as reported by the devices: live ones by default, all with `all=true`.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", params(SessionQuery),
    responses((status = 200, body = [SessionSummary]), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(q): Query<SessionQuery>,
) -> Result<Json<Vec<SessionSummary>>, ApiError> {
    let scope = caller.org_scope()?.unwrap_or("");
    let rows = sqlx::query(&format!(
        "SELECT {SESSION_COLS} FROM sessions \
         WHERE ($1 = 'all' OR status = 'up') AND ($2 = '' OR device_lo = $2 OR device_hi = $2) \
         AND ($3 = '' OR device_lo IN (SELECT id FROM devices WHERE owner_org = $3) \
                      OR device_hi IN (SELECT id FROM devices WHERE owner_org = $3)) \
         ORDER BY first_ms, id LIMIT 10000"
    ))
    .bind(if q.all { "all" } else { "" })
    .bind(q.device.as_deref().unwrap_or(""))
    .bind(scope)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Json(rows.iter().map(summary_from_row).collect()))
}

/// The session, or 404 if there is none or the caller's organisation is at neither end.
async fn load_summary(
    c: &Center,
    caller: &Caller,
    exec: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: &str,
) -> Result<SessionSummary, ApiError> {
    let none = || ApiError::not_found(format!("no session {id}"));
    if parse_session_id(id).is_none() {
        return Err(none());
    }
    let s = sqlx::query(&format!(
        "SELECT {SESSION_COLS} FROM sessions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?
    .map(|r| summary_from_row(&r))
    .ok_or_else(none)?;
    if let Some(org) = caller.org_scope()? {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM devices WHERE owner_org = $1 AND (id = $2 OR id = $3)",
        )
        .bind(org)
        .bind(&s.device_a)
        .bind(&s.device_b)
        .fetch_one(&c.db.pool)
        .await?;
        if n == 0 {
            return Err(none());
        }
    }
    Ok(s)
}

async fn detail(c: &Center, s: SessionSummary) -> Result<SessionDetail, ApiError> {
    let rows = sqlx::query(
        "SELECT reporter, event, at, grant_ids, bytes_in, bytes_out, packets_in, packets_out, reason, received_ms \
         FROM session_reports WHERE session_id = $1 ORDER BY at, received_ms",
    )
    .bind(&s.id)
    .fetch_all(&c.db.pool)
    .await?;
    let reports: Vec<ReportRecord> = rows
        .iter()
        .map(|r| ReportRecord {
            reporter: r.get(0),
            event: r.get(1),
            at: r.get(2),
            grant_ids: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or_default(),
            bytes_in: r.get(4),
            bytes_out: r.get(5),
            packets_in: r.get(6),
            packets_out: r.get(7),
            reason: r.get(8),
            received_ms: r.get(9),
        })
        .collect();
    let rank = |e: &str| match e {
        "up" => 0,
        "update" => 1,
        _ => 2,
    };
    let end = |device: &str| {
        let mine: Vec<&ReportRecord> = reports.iter().filter(|r| r.reporter == device).collect();
        let latest = mine
            .iter()
            .max_by_key(|r| (r.at, rank(&r.event), r.received_ms))
            .copied();
        SessionEnd {
            device_id: device.to_string(),
            reports: mine.len() as i64,
            up_at: mine.iter().filter(|r| r.event == "up").map(|r| r.at).min(),
            down_at: mine
                .iter()
                .filter(|r| r.event == "down")
                .map(|r| r.at)
                .min(),
            last_event: latest.map(|r| r.event.clone()),
            last_at: latest.map(|r| r.at),
            bytes_in: latest.map_or(0, |r| r.bytes_in),
            bytes_out: latest.map_or(0, |r| r.bytes_out),
            packets_in: latest.map_or(0, |r| r.packets_in),
            packets_out: latest.map_or(0, |r| r.packets_out),
            reason: mine
                .iter()
                .filter(|r| r.event == "down")
                .find_map(|r| r.reason.clone()),
        }
    };
    let ends = vec![end(&s.device_a), end(&s.device_b)];
    Ok(SessionDetail {
        id: s.id,
        device_a: s.device_a,
        device_b: s.device_b,
        grant_ids: s.grant_ids,
        status: s.status,
        first_ms: s.first_ms,
        last_ms: s.last_ms,
        cut_ms: s.cut_ms,
        cut_by: s.cut_by,
        cut_reason: s.cut_reason,
        relay: s.relay,
        ends,
        reports,
    })
}

/// One session with both ends' reports side by side.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path)),
    responses((status = 200, body = SessionDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    caller.require_admin()?;
    let s = load_summary(&c, &caller, &c.db.pool, &id).await?;
    Ok(Json(detail(&c, s).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CutBody {
    /// Why (1–256 printable characters; recorded in the audit log and sent to both devices).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub reason: Option<String>,
}

/// Cut a live session: audited (`session.cut`) and a `session_cut` event
/// `{session_id, peer_device_id, grant_ids, reason}` is pushed to both devices, which
/// delete the IKE SA and report it `down`.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/cut", tag = "sessions", params(("id" = String, Path)),
    request_body = CutBody,
    responses((status = 200, body = SessionDetail), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "not_live: the session is already down")))]
pub async fn cut(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<CutBody>, JsonRejection>,
) -> Result<Json<SessionDetail>, ApiError> {
    caller.require_admin()?;
    let Json(body) = body?;
    let reason = body.reason.unwrap_or_else(|| "cut by the operator".into());
    super::admin::orgs::check_text("reason", &reason, MAX_REASON_LEN)?;
    let mut tx = c.db.begin_write().await?;
    let s = load_summary(&c, &caller, &mut *tx.tx, &id).await?;
    if s.status != "up" {
        return Err(ApiError::conflict(
            "not_live",
            format!("session {id} is already down"),
        ));
    }
    sqlx::query(
        "UPDATE sessions SET cut_ms = $2, cut_by = $3, cut_reason = $4, last_ms = $2 WHERE id = $1",
    )
    .bind(&id)
    .bind(tx.now)
    .bind(caller.actor())
    .bind(&reason)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "session.cut",
        &id,
        serde_json::json!({"devices": [s.device_a, s.device_b], "grants": s.grant_ids, "reason": reason}),
    )
    .await?;
    for (me, peer) in [(&s.device_a, &s.device_b), (&s.device_b, &s.device_a)] {
        tx.event(
            me,
            "session_cut",
            &serde_json::json!({"session_id": id, "peer_device_id": peer, "grant_ids": s.grant_ids, "reason": reason}),
        )
        .await?;
    }
    tx.commit().await?;
    let s = load_summary(&c, &caller, &c.db.pool, &id).await?;
    Ok(Json(detail(&c, s).await?))
}

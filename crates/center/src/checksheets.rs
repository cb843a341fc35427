//! The check sheets an organisation answers (R-SVC-3) and the gate they feed (R-POL-6):
//! the standing result per sheet, and the yearly expiry with its warning.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use dodvpn_checksheet::Catalogue;
use dodvpn_policy::SheetStanding;
use sqlx::Row;

use crate::db::WriteTx;
use crate::error::ApiError;
use crate::Center;

static CATALOGUES: LazyLock<Result<Vec<Catalogue>, String>> =
    LazyLock::new(|| dodvpn_checksheet::builtin().map_err(|e| e.to_string()));

/// The sheets this build ships (compiled in, so a centre knows the exact version).
pub fn catalogues() -> Result<&'static [Catalogue], ApiError> {
    CATALOGUES
        .as_deref()
        .map_err(|e| ApiError::internal(format!("the shipped check sheets are unreadable: {e}")))
}

/// How long a submission stands: a year by default; `DODVPN_CHECKSHEET_VALID_SECS`
/// shortens it (tests, or a provider with a stricter rule).
pub fn validity() -> Duration {
    std::env::var("DODVPN_CHECKSHEET_VALID_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(365 * 24 * 3600))
}

/// The warning comes this long before expiry (30 days, or a tenth of a shortened validity).
fn warning_lead() -> Duration {
    (validity() / 10).min(Duration::from_secs(30 * 24 * 3600))
}

/// The organisation's latest submission per sheet of the current catalogue versions.
pub async fn standing(
    tx: &mut WriteTx<'_>,
    org_id: &str,
) -> Result<BTreeMap<String, SheetStanding>, ApiError> {
    let cats = catalogues()?;
    let rows = sqlx::query(
        "SELECT catalogue, version, sheet, percent, expires_ms FROM checksheet_submissions \
         WHERE org_id = $1 ORDER BY submitted_ms, id",
    )
    .bind(org_id)
    .fetch_all(&mut *tx.tx)
    .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let (catalogue, version, sheet): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let current = cats
            .iter()
            .any(|c| c.catalogue == catalogue && c.version == version);
        if !current {
            // An answer to an outdated sheet no longer stands; the newer one must be answered.
            out.remove(&sheet);
            continue;
        }
        let percent = r.get::<i64, _>(3).clamp(0, 100) as u8;
        let expired = r.get::<i64, _>(4) <= tx.now;
        out.insert(sheet, SheetStanding { percent, expired });
    }
    Ok(out)
}

/// Record the 30-day warnings and the expiries that came due, once each, and
/// re-evaluate the grants of the organisations whose sheet expired.
pub async fn sweep(center: &Center) -> Result<(), ApiError> {
    let now = crate::db::now_ms();
    let lead = warning_lead().as_millis() as i64;
    let due: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM checksheet_submissions WHERE (warned_ms IS NULL AND expires_ms - $2 <= $1) \
         OR (expired_ms IS NULL AND expires_ms <= $1)",
    )
    .bind(now)
    .bind(lead)
    .fetch_one(&center.db.pool)
    .await?;
    if due == 0 {
        return Ok(());
    }
    let mut tx = center.db.begin_write().await?;
    let warn = sqlx::query(
        "SELECT id, org_id, sheet, expires_ms FROM checksheet_submissions WHERE warned_ms IS NULL AND expires_ms - $2 <= $1",
    )
    .bind(tx.now)
    .bind(lead)
    .fetch_all(&mut *tx.tx)
    .await?;
    for r in warn {
        let (id, org, sheet, expires): (String, String, String, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        sqlx::query("UPDATE checksheet_submissions SET warned_ms = $2 WHERE id = $1")
            .bind(&id)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(
            "centre",
            "checksheet.expiring",
            &org,
            serde_json::json!({"submission": id, "sheet": sheet, "expires_ms": expires,
                "message_en": format!("the {sheet} check sheet expires soon; answer it again"),
                "message_ja": format!("チェックシート {sheet} の有効期限が近づいています。再回答してください")}),
        )
        .await?;
    }
    let expired = sqlx::query(
        "SELECT id, org_id, sheet FROM checksheet_submissions WHERE expired_ms IS NULL AND expires_ms <= $1",
    )
    .bind(tx.now)
    .fetch_all(&mut *tx.tx)
    .await?;
    let mut orgs = HashSet::new();
    for r in expired {
        let (id, org, sheet): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        sqlx::query("UPDATE checksheet_submissions SET expired_ms = $2 WHERE id = $1")
            .bind(&id)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(
            "centre",
            "checksheet.expired",
            &org,
            serde_json::json!({"submission": id, "sheet": sheet}),
        )
        .await?;
        orgs.insert(org);
    }
    reevaluate_orgs(center, &mut tx, "centre", &orgs).await?;
    tx.commit().await
}

/// Re-decide every live grant touching a device of these organisations.
pub async fn reevaluate_orgs(
    center: &Center,
    tx: &mut WriteTx<'_>,
    actor: &str,
    orgs: &HashSet<String>,
) -> Result<(), ApiError> {
    if orgs.is_empty() {
        return Ok(());
    }
    let mut devices = HashSet::new();
    for org in orgs {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM devices WHERE owner_org = $1")
            .bind(org)
            .fetch_all(&mut *tx.tx)
            .await?;
        devices.extend(ids);
    }
    crate::grants::reevaluate(center, tx, actor, Some(&devices)).await
}

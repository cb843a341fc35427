//! Check sheets (R-SVC-3) and the gate they feed (R-POL-6, issue 11).
//!
//! The sheets are data compiled into the binary (`checksheets/*.toml`). An
//! organisation submits its answers; the centre scores them, keeps every submission
//! (so two can be compared), and re-decides the organisation's live grants, because a
//! group's gate may now admit or refuse it. Items the centre can answer from its own
//! records are offered pre-filled, with the evidence named.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use dodvpn_checksheet::{Answer, AnswerValue, Catalogue, Submission};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::orgs::{check_text, org_exists};
use crate::auth::Caller;
use crate::checksheets::{catalogues, reevaluate_orgs, validity};
use crate::error::{ApiError, ErrorBody};
use crate::{new_id, Center};

/// Most answers in one submission, longest evidence note, longest attachment name.
pub const MAX_ANSWERS: usize = 1000;
pub const MAX_NOTE: usize = 2000;
pub const MAX_ATTACHMENT_NAME: usize = 200;

/// The provider, the organisation's administrators and its auditors may read its sheets.

#[derive(Serialize, ToSchema)]
pub struct CatalogueList {
    /// Each shipped catalogue: its version, services, roles, sections, items and sheets.
    #[schema(value_type = Vec<Object>)]
    pub catalogues: Vec<Catalogue>,
}

#[utoipa::path(get, path = "/api/v1/checksheets", tag = "organisations",
    responses((status = 200, body = CatalogueList)))]
pub async fn list_catalogues(caller: Caller) -> Result<Json<CatalogueList>, ApiError> {
    caller.audit_scope()?;
    Ok(Json(CatalogueList {
        catalogues: catalogues()?.to_vec(),
    }))
}

/// A submission as the organisation answers it.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmissionBody {
    /// `tr11636-annex-c` or `mhlw-cyber-checklist`.
    #[schema(min_length = 1, max_length = 64)]
    pub catalogue: String,
    /// The catalogue version answered; only the current one is accepted.
    #[schema(min_length = 1, max_length = 32)]
    pub version: String,
    /// `large`, `small`, `provider` or `mhlw`.
    #[schema(min_length = 1, max_length = 32)]
    pub sheet: String,
    /// Services the organisation uses or provides; they decide the ▲ items.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub services: Vec<String>,
    #[schema(max_items = 1000)]
    pub answers: Vec<AnswerBody>,
}

#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    #[schema(min_length = 1, max_length = 32)]
    pub item: String,
    #[schema(min_length = 1, max_length = 32)]
    pub role: String,
    pub value: AnswerKind,
    /// Evidence, up to 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub note: String,
    /// Id of an evidence file uploaded with `POST /api/v1/orgs/{id}/checksheets/attachments`.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub attachment: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    Yes,
    No,
    NotApplicable,
}

impl From<AnswerKind> for AnswerValue {
    fn from(k: AnswerKind) -> Self {
        match k {
            AnswerKind::Yes => AnswerValue::Yes,
            AnswerKind::No => AnswerValue::No,
            AnswerKind::NotApplicable => AnswerValue::NotApplicable,
        }
    }
}

impl From<AnswerValue> for AnswerKind {
    fn from(v: AnswerValue) -> Self {
        match v {
            AnswerValue::Yes => AnswerKind::Yes,
            AnswerValue::No => AnswerKind::No,
            AnswerValue::NotApplicable => AnswerKind::NotApplicable,
        }
    }
}

impl SubmissionBody {
    fn check(&self) -> Result<Submission, ApiError> {
        if self.answers.len() > MAX_ANSWERS || self.services.len() > 64 {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_ANSWERS} answers and 64 services per submission"
            )));
        }
        for a in &self.answers {
            if a.note.chars().count() > MAX_NOTE {
                return Err(ApiError::bad_request(format!(
                    "the note of item {} is longer than {MAX_NOTE} characters",
                    a.item
                )));
            }
            if let Some(name) = &a.attachment {
                check_text("attachment name", name, MAX_ATTACHMENT_NAME)?;
            }
        }
        Ok(Submission {
            catalogue: self.catalogue.clone(),
            version: self.version.clone(),
            sheet: self.sheet.clone(),
            services: self.services.iter().cloned().collect(),
            answers: self
                .answers
                .iter()
                .map(|a| Answer {
                    item: a.item.clone(),
                    role: a.role.clone(),
                    value: a.value.into(),
                    note: a.note.clone(),
                    attachment: a.attachment.clone(),
                })
                .collect(),
        })
    }
}

/// A stored submission with the centre's judgement of it.
#[derive(Serialize, ToSchema)]
pub struct SubmissionView {
    pub id: String,
    pub org_id: String,
    pub catalogue: String,
    pub version: String,
    pub sheet: String,
    pub percent: u8,
    pub submitted_by: String,
    pub submitted_ms: i64,
    pub expires_ms: i64,
    /// `current`, `expiring` (within the warning period), `expired`, `superseded`
    /// (a later submission of the same sheet exists) or `outdated` (the sheet changed).
    pub state: String,
    /// Score: asked, yes, no, not_applicable, unanswered, percent, gaps[].
    #[schema(value_type = Object)]
    pub score: serde_json::Value,
    /// The answers as submitted (only when one submission is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
}

pub(crate) async fn load(
    c: &Center,
    org_id: &str,
    id: Option<&str>,
) -> Result<Vec<SubmissionView>, ApiError> {
    let cats = catalogues()?;
    let rows = sqlx::query(
        "SELECT id, org_id, catalogue, version, sheet, percent, submitted_by, submitted_ms, expires_ms, score, body \
         FROM checksheet_submissions WHERE org_id = $1 ORDER BY submitted_ms DESC, id DESC",
    )
    .bind(org_id)
    .fetch_all(&c.db.pool)
    .await?;
    let now = crate::db::now_ms();
    let lead = (validity() / 10)
        .min(std::time::Duration::from_secs(30 * 24 * 3600))
        .as_millis() as i64;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in rows {
        let sheet: String = r.get(4);
        let (catalogue, version): (String, String) = (r.get(2), r.get(3));
        let expires: i64 = r.get(8);
        let state = if !seen.insert(sheet.clone()) {
            "superseded"
        } else if !cats
            .iter()
            .any(|c| c.catalogue == catalogue && c.version == version)
        {
            "outdated"
        } else if expires <= now {
            "expired"
        } else if expires - lead <= now {
            "expiring"
        } else {
            "current"
        };
        let sid: String = r.get(0);
        if id.is_some_and(|want| want != sid) {
            continue;
        }
        let parse = |s: String| {
            serde_json::from_str(&s).map_err(|_| ApiError::internal("stored submission unreadable"))
        };
        out.push(SubmissionView {
            id: sid,
            org_id: r.get(1),
            catalogue,
            version,
            sheet,
            percent: r.get::<i64, _>(5).clamp(0, 100) as u8,
            submitted_by: r.get(6),
            submitted_ms: r.get(7),
            expires_ms: expires,
            state: state.into(),
            score: parse(r.get(9))?,
            body: if id.is_some() {
                Some(parse(r.get(10))?)
            } else {
                None
            },
        });
    }
    Ok(out)
}

/// Submit answers to a sheet: checked against the current version, scored, kept, and
/// the organisation's live grants re-decided.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/checksheets", tag = "organisations", params(("id" = String, Path)),
    request_body = SubmissionBody,
    responses((status = 201, body = SubmissionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn submit(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<SubmissionBody>, JsonRejection>,
) -> Result<(StatusCode, Json<SubmissionView>), ApiError> {
    caller.require_org(&id)?;
    let Json(body) = body?;
    let submission = body.check()?;
    let score = dodvpn_checksheet::score(catalogues()?, &submission)
        .map_err(|e| ApiError::bad_request_code("checksheet_invalid", e.to_string()))?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &id).await?;
    super::checksheet_attachments::check_answers(
        &mut tx,
        &id,
        submission
            .answers
            .iter()
            .filter_map(|a| a.attachment.as_deref()),
    )
    .await?;
    let sid = new_id("sheet");
    let expires = tx.now + validity().as_millis() as i64;
    sqlx::query(
        "INSERT INTO checksheet_submissions (id, org_id, catalogue, version, sheet, body, score, percent, submitted_by, submitted_ms, expires_ms) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
    )
    .bind(&sid)
    .bind(&id)
    .bind(&submission.catalogue)
    .bind(&submission.version)
    .bind(&submission.sheet)
    .bind(to_json(&submission)?)
    .bind(to_json(&score)?)
    .bind(score.percent as i64)
    .bind(caller.actor())
    .bind(tx.now)
    .bind(expires)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "checksheet.submitted",
        &id,
        serde_json::json!({"submission": sid, "sheet": submission.sheet, "version": submission.version,
            "percent": score.percent, "gaps": score.gaps.len()}),
    )
    .await?;
    reevaluate_orgs(&c, &mut tx, &caller.actor(), &HashSet::from([id.clone()])).await?;
    tx.commit().await?;
    let view = load(&c, &id, Some(&sid))
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("submission vanished"))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Serialising our own types cannot fail; if it ever did, say so rather than panic.
fn to_json<T: Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|_| ApiError::internal("could not store the submission"))
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/checksheets", tag = "organisations", params(("id" = String, Path)),
    responses((status = 200, body = [SubmissionView]), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<SubmissionView>>, ApiError> {
    caller.require_read(&id)?;
    org_exists_ro(&c, &id).await?;
    Ok(Json(load(&c, &id, None).await?))
}

async fn org_exists_ro(c: &Center, id: &str) -> Result<(), ApiError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs WHERE id = $1")
        .bind(id)
        .fetch_one(&c.db.pool)
        .await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("no organisation {id}")));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/checksheets/{submission}", tag = "organisations",
    params(("id" = String, Path), ("submission" = String, Path)),
    responses((status = 200, body = SubmissionView), (status = 404, body = ErrorBody)))]
pub async fn get_submission(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Json<SubmissionView>, ApiError> {
    caller.require_read(&id)?;
    load(&c, &id, Some(&sid))
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no submission {sid} of organisation {id}")))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CompareQuery {
    /// The earlier submission.
    pub from: String,
    /// The later submission.
    pub to: String,
}

#[derive(Serialize, ToSchema)]
pub struct Comparison {
    pub from: String,
    pub to: String,
    pub from_percent: u8,
    pub to_percent: u8,
    /// Each answer that changed: item, role, before, after (absent = unanswered).
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<dodvpn_checksheet::Change>,
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/checksheets/compare", tag = "organisations",
    params(("id" = String, Path), CompareQuery),
    responses((status = 200, body = Comparison), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn compare(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<CompareQuery>, QueryRejection>,
) -> Result<Json<Comparison>, ApiError> {
    caller.require_read(&id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let one = |sid: String| {
        let c = c.clone();
        let id = id.clone();
        async move {
            let v = load(&c, &id, Some(&sid)).await?.pop().ok_or_else(|| {
                ApiError::not_found(format!("no submission {sid} of organisation {id}"))
            })?;
            let s: Submission = serde_json::from_value(v.body.clone().unwrap_or_default())
                .map_err(|_| ApiError::internal("stored submission unreadable"))?;
            Ok::<_, ApiError>((v, s))
        }
    };
    let (a, sa) = one(q.from).await?;
    let (b, sb) = one(q.to).await?;
    if a.sheet != b.sheet {
        return Err(ApiError::bad_request(format!(
            "the submissions answer different sheets ({} and {}) / 異なるシートの回答は比較できません",
            a.sheet, b.sheet
        )));
    }
    Ok(Json(Comparison {
        from: a.id,
        to: b.id,
        from_percent: a.percent,
        to_percent: b.percent,
        changes: dodvpn_checksheet::compare(&sa, &sb),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PrefillQuery {
    /// Sheet id: `large`, `small`, `provider` or `mhlw`.
    pub sheet: String,
    /// Comma-separated services the organisation uses or provides.
    #[serde(default)]
    pub services: Option<String>,
}

/// A submission skeleton for the current version, with the items the centre can answer
/// from its own records filled in and their evidence in the note.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/checksheets/prefill", tag = "organisations",
    params(("id" = String, Path), PrefillQuery),
    responses((status = 200, body = SubmissionBody), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn prefill(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<PrefillQuery>, QueryRejection>,
) -> Result<Json<SubmissionBody>, ApiError> {
    caller.require_read(&id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    org_exists_ro(&c, &id).await?;
    let cats = catalogues()?;
    let (cat, sheet) = cats
        .iter()
        .find_map(|cat| cat.sheet(&q.sheet).map(|s| (cat, s)))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown check sheet {} / 不明なチェックシートです",
                q.sheet
            ))
        })?;
    let services: BTreeSet<String> = q
        .services
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if let Some(s) = services.iter().find(|s| !cat.services.contains_key(*s)) {
        return Err(ApiError::bad_request(format!(
            "unknown service {s} / 不明なサービスです"
        )));
    }
    let facts = Facts::gather(&c, &id).await?;
    let answers = cat
        .applicable(sheet, &services)
        .into_iter()
        .filter_map(|(item, role)| {
            let (value, note) = facts.answer(item.prefill.as_deref()?)?;
            Some(AnswerBody {
                item: item.id.clone(),
                role: role.into(),
                value,
                note,
                attachment: None,
            })
        })
        .collect();
    Ok(Json(SubmissionBody {
        catalogue: cat.catalogue.clone(),
        version: cat.version.clone(),
        sheet: sheet.id.clone(),
        services: services.into_iter().collect(),
        answers,
    }))
}

/// What the centre's own records say about an organisation.
struct Facts {
    active_grants: i64,
    approval_windows: i64,
    approval_rules: bool,
    peers_without_sheet: Vec<String>,
    peers: usize,
    diagnosis: Option<(i64, usize)>,
    /// Hand-kept ledger rows: (equipment, overdue), (outside connections, overdue).
    equipment: (usize, usize),
    outside: (usize, usize),
    /// Connections through dodvpn, which the ledger lists by itself.
    dodvpn_connections: usize,
    /// Remote-access services the newest diagnosis saw on addresses no ledger row names.
    unknown_points: Vec<String>,
    /// Devices whose agent did not report this centre's version (or nothing).
    behind: Vec<String>,
    devices: usize,
}

impl Facts {
    async fn gather(c: &Center, org: &str) -> Result<Facts, ApiError> {
        let pool = &c.db.pool;
        let active_grants: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM grants g JOIN devices d ON d.id = g.applicant_device OR d.id = g.target_device \
             WHERE g.status = 'active' AND d.owner_org = $1",
        )
        .bind(org)
        .fetch_one(pool)
        .await?;
        let approval_windows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM approvals WHERE approver_org = $1")
                .bind(org)
                .fetch_one(pool)
                .await?;
        let policy: String = sqlx::query_scalar("SELECT policy FROM orgs WHERE id = $1")
            .bind(org)
            .fetch_one(pool)
            .await?;
        let approval_rules = dodvpn_policy::SubscriberPolicy::from_json(&policy)
            .map(|p| p.inbound.iter().any(|r| r.require_approval))
            .unwrap_or(false);
        // Peer organisations: the other end of every active grant.
        let peers: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT p.owner_org FROM grants g \
             JOIN devices a ON a.id = g.applicant_device JOIN devices t ON t.id = g.target_device \
             JOIN devices p ON (p.id = g.target_device AND a.owner_org = $1) OR (p.id = g.applicant_device AND t.owner_org = $1) \
             WHERE g.status = 'active' AND p.owner_org <> $1",
        )
        .bind(org)
        .fetch_all(pool)
        .await?;
        let now = crate::db::now_ms();
        let mut peers_without_sheet = Vec::new();
        for p in &peers {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM checksheet_submissions WHERE org_id = $1 AND expires_ms > $2",
            )
            .bind(p)
            .bind(now)
            .fetch_one(pool)
            .await?;
            if n == 0 {
                peers_without_sheet.push(p.clone());
            }
        }
        let diagnosis = sqlx::query("SELECT created_ms, findings FROM diagnose_runs WHERE org_id = $1 ORDER BY created_ms DESC LIMIT 1")
            .bind(org)
            .fetch_optional(pool)
            .await?
            .map(|r| {
                let findings: serde_json::Value = serde_json::from_str(&r.get::<String, _>(1)).unwrap_or_default();
                let serious = findings
                    .as_array()
                    .map(|a| a.iter().filter(|f| matches!(f["severity"].as_str(), Some("high" | "critical"))).count())
                    .unwrap_or(0);
                (r.get::<i64, _>(0), serious)
            });
        let ledger = super::ledger::ledger_of(c, org).await?;
        let overdue = |v: &serde_json::Value| v["review_overdue"] == true;
        let equipment = (
            ledger.equipment.len(),
            ledger.equipment.iter().filter(|e| overdue(e)).count(),
        );
        let outside = (
            ledger.outside.len(),
            ledger.outside.iter().filter(|o| o.review_overdue).count(),
        );
        let software =
            sqlx::query("SELECT id, software FROM devices WHERE owner_org = $1 ORDER BY id")
                .bind(org)
                .fetch_all(pool)
                .await?;
        let ours = env!("CARGO_PKG_VERSION");
        let behind = software
            .iter()
            .filter(|r| {
                let v: Option<String> = r.get(1);
                let v: serde_json::Value = v
                    .and_then(|v| serde_json::from_str(&v).ok())
                    .unwrap_or_default();
                v["version"] != ours
            })
            .map(|r| r.get::<String, _>(0))
            .collect();
        let unknown_points = ledger
            .exposure
            .iter()
            .flat_map(|x| &x.unledgered)
            .filter(|f| f.finding.is_remote_access())
            .map(|f| {
                format!(
                    "{}:{} {}",
                    f.finding.target, f.finding.port, f.finding.check
                )
            })
            .collect();
        Ok(Facts {
            unknown_points,
            active_grants,
            approval_windows,
            approval_rules,
            peers_without_sheet,
            peers: peers.len(),
            diagnosis,
            equipment,
            outside,
            dodvpn_connections: ledger.dodvpn.len(),
            behind,
            devices: software.len(),
        })
    }

    /// The answer and its evidence for one prefill key, in both languages.
    fn answer(&self, key: &str) -> Option<(AnswerKind, String)> {
        let yes = |en: String, ja: String| Some((AnswerKind::Yes, format!("{en} / {ja}")));
        match key {
            "no-transit" => yes(
                "enforced by dodvpn: a site forwards only between its own subnets and a granted peer, never between two peers (R-POL-4)".into(),
                "dodvpn が強制: 拠点は自拠点のサブネットと許可された相手の間だけを転送し、相手同士の中継は行わない".into(),
            ),
            "deny-by-default" => yes(
                format!("dodvpn allows only granted peers and services, everything else is refused; {} active grants", self.active_grants),
                format!("dodvpn は許可された相手とサービスだけを通し、それ以外は拒否する。有効な許可 {} 件", self.active_grants),
            ),
            "ipsec-ike" => yes(
                "every connection through dodvpn is IKEv2 + ESP (IPsec) with certificate authentication".into(),
                "dodvpn の接続はすべて証明書認証の IKEv2 + ESP（IPsec）".into(),
            ),
            "audit-log" => yes(
                "the centre keeps a hash-chained audit log with signed checkpoints (R-AUD-1, R-AUD-4)".into(),
                "センターがハッシュチェーンと署名付きチェックポイントで監査ログを保管".into(),
            ),
            "remote-maintenance" if self.approval_rules || self.approval_windows > 0 => yes(
                format!("vendors connect only with a device certificate and inside a window this organisation opens; {} windows opened, each session logged", self.approval_windows),
                format!("保守事業者は機器証明書で認証され、当機関が開いた時間枠内だけ接続できる。開いた時間枠 {} 件、セッションはすべて記録", self.approval_windows),
            ),
            "peer-sheets" if self.peers > 0 => Some(if self.peers_without_sheet.is_empty() {
                (AnswerKind::Yes, format!("all {} peer organisations hold a current check sheet / 接続先 {} 機関すべてが有効なチェックシートを提出済み", self.peers, self.peers))
            } else {
                let list = self.peers_without_sheet.join(", ");
                (AnswerKind::No, format!("peers without a current check sheet: {list} / 有効なチェックシートのない接続先: {list}"))
            }),
            "exposure-diagnosis" => self.diagnosis.map(|(at, serious)| {
                let on = dodvpn_ledger::Date::from_unix_ms(at);
                if serious == 0 {
                    (AnswerKind::Yes, format!("the latest exposure diagnosis ({on}) found no high-severity service / 直近の外部診断（{on}）で重大な公開サービスなし"))
                } else {
                    (AnswerKind::No, format!("the latest exposure diagnosis ({on}) found {serious} high-severity findings / 直近の外部診断（{on}）で重大な指摘 {serious} 件"))
                }
            }),
            "connection-ledger" if !self.unknown_points.is_empty() => {
                let list = self.unknown_points.join(", ");
                Some((AnswerKind::No, format!("the latest exposure diagnosis found remote-access services on addresses no ledger row names: {list} / 直近の外部診断で、台帳のどの行にもないアドレスにリモート接続サービスがあります: {list}")))
            }
            "equipment-ledger" => Some(match self.equipment {
                (0, _) => (AnswerKind::No, "no equipment is recorded in the ledger / 機器台帳に登録がありません".into()),
                (n, 0) => (AnswerKind::Yes, format!("{n} servers, terminals and network devices in the ledger, all reviewed within a year / 機器台帳に {n} 件、すべて1年以内に確認済み")),
                (n, late) => (AnswerKind::No, format!("{late} of {n} equipment rows are overdue for review / 機器台帳 {n} 件中 {late} 件が確認期限切れ")),
            }),
            "connection-ledger" => Some(match self.outside {
                (n, 0) => (AnswerKind::Yes, format!("{} connections through dodvpn listed by the centre; {n} outside dodvpn recorded and reviewed within a year / dodvpn 経由 {} 件はセンターが自動で記録、DOD-VPN 外 {n} 件は1年以内に確認済み", self.dodvpn_connections, self.dodvpn_connections)),
                (n, late) => (AnswerKind::No, format!("{late} of {n} connections outside dodvpn are overdue for review / DOD-VPN 外の接続 {n} 件中 {late} 件が確認期限切れ")),
            }),
            "agent-versions" if self.devices > 0 => Some(if self.behind.is_empty() {
                (AnswerKind::Yes, format!("all {} devices run agent version {} / 全 {} 台がエージェント版 {} を使用", self.devices, env!("CARGO_PKG_VERSION"), self.devices, env!("CARGO_PKG_VERSION")))
            } else {
                let list = self.behind.join(", ");
                (AnswerKind::No, format!("devices not on agent version {}: {list} / エージェント版 {} でない機器: {list}", env!("CARGO_PKG_VERSION"), env!("CARGO_PKG_VERSION")))
            }),
            _ => None,
        }
    }
}

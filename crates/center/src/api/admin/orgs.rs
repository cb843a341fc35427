//! Organisations (subscribers, TR D.6 a), their administrators, policies and check sheets.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use dodvpn_policy::{OrgKind, SubscriberPolicy};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::auth::{hash_secret, Caller, ADMIN_PREFIX};
use crate::error::{ApiError, ErrorBody};
use crate::{grants, new_id, Center};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    /// Unique display name, e.g. "Central Hospital" (1–200 printable characters).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// hospital | clinic | pharmacy | lab | vendor | patient
    #[schema(value_type = OrgKind)]
    pub kind: String,
}

#[derive(Serialize, ToSchema)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub checksheet_passed: bool,
    pub created_ms: i64,
}

pub(crate) fn org_from_row(r: &sqlx::any::AnyRow) -> Org {
    Org {
        id: r.get(0),
        name: r.get(1),
        kind: r.get(2),
        checksheet_passed: r.get::<i64, _>(3) != 0,
        created_ms: r.get(4),
    }
}

/// Names and labels: 1–200 printable characters, not only spaces (the schemas say
/// `minLength 1, maxLength 200`; JSON Schema counts characters, so this does too).
pub(crate) fn check_name(what: &str, s: &str) -> Result<(), ApiError> {
    check_text(what, s, 200)
}

/// Free text of at most `max` characters, printable and not blank.
pub(crate) fn check_text(what: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.trim().is_empty() || s.chars().count() > max || s.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(format!(
            "{what} must be 1–{max} printable characters"
        )));
    }
    Ok(())
}

/// TR D.6 a: a subscriber joins the service.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "organisations", request_body = NewOrg,
    responses((status = 201, body = Org), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_org(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewOrg>, JsonRejection>,
) -> Result<(StatusCode, Json<Org>), ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    check_name("name", &body.name)?;
    let kind: OrgKind = body.kind.parse().map_err(|_| {
        ApiError::bad_request(
            "kind must be one of hospital, clinic, pharmacy, lab, vendor, patient",
        )
    })?;
    let mut tx = c.db.begin_write().await?;
    let id = new_id("org");
    let policy = serde_json::to_string(&SubscriberPolicy::default())
        .map_err(|_| ApiError::internal("policy"))?;
    sqlx::query("INSERT INTO orgs (id, name, kind, checksheet_passed, policy, created_ms) VALUES ($1,$2,$3,0,$4,$5)")
        .bind(&id)
        .bind(body.name.trim())
        .bind(kind.to_string())
        .bind(policy)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| match ApiError::from(e) {
            e if e.status == StatusCode::CONFLICT => ApiError::conflict("duplicate_name", "an organisation with that name exists"),
            e => e,
        })?;
    tx.audit(
        &caller.actor(),
        "org.subscribed",
        &id,
        serde_json::json!({"name": body.name.trim(), "kind": kind.to_string(), "step": "a"}),
    )
    .await?;
    let org = Org {
        id,
        name: body.name.trim().to_string(),
        kind: kind.to_string(),
        checksheet_passed: false,
        created_ms: tx.now,
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(org)))
}

#[utoipa::path(get, path = "/api/v1/orgs", tag = "organisations", responses((status = 200, body = [Org])))]
pub async fn list_orgs(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<Org>>, ApiError> {
    let scope = caller.org_scope()?;
    let rows = match scope {
        None => sqlx::query(
            "SELECT id, name, kind, checksheet_passed, created_ms FROM orgs ORDER BY created_ms",
        )
        .fetch_all(&c.db.pool)
        .await,
        Some(org) => {
            sqlx::query(
                "SELECT id, name, kind, checksheet_passed, created_ms FROM orgs WHERE id = $1",
            )
            .bind(org)
            .fetch_all(&c.db.pool)
            .await
        }
    }?;
    Ok(Json(rows.iter().map(org_from_row).collect()))
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}", tag = "organisations", params(("id" = String, Path)),
    responses((status = 200, body = Org), (status = 404, body = ErrorBody)))]
pub async fn get_org(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Org>, ApiError> {
    caller.require_org(&id)?;
    let r =
        sqlx::query("SELECT id, name, kind, checksheet_passed, created_ms FROM orgs WHERE id = $1")
            .bind(&id)
            .fetch_optional(&c.db.pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no organisation {id}")))?;
    Ok(Json(org_from_row(&r)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdmin {
    /// Who holds the credential (1–200 printable characters).
    #[schema(min_length = 1, max_length = 200)]
    pub label: String,
}

#[derive(Serialize, ToSchema)]
pub struct AdminCredential {
    pub id: String,
    pub org_id: String,
    /// Shown once; only its hash is stored.
    pub credential: String,
}

/// Issue an administrator credential scoped to one organisation.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/admins", tag = "organisations", params(("id" = String, Path)),
    request_body = NewAdmin, responses((status = 201, body = AdminCredential), (status = 404, body = ErrorBody)))]
pub async fn create_org_admin(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<NewAdmin>, JsonRejection>,
) -> Result<(StatusCode, Json<AdminCredential>), ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    check_name("label", &body.label)?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &id).await?;
    let admin_id = new_id("adm");
    let secret = crate::init::random_secret();
    sqlx::query(
        "INSERT INTO admins (id, org_id, secret_hash, label, created_ms) VALUES ($1,$2,$3,$4,$5)",
    )
    .bind(&admin_id)
    .bind(&id)
    .bind(hash_secret(&secret))
    .bind(&body.label)
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "admin.created",
        &admin_id,
        serde_json::json!({"org": id, "label": body.label}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AdminCredential {
            credential: format!("{ADMIN_PREFIX}.{admin_id}.{secret}"),
            id: admin_id,
            org_id: id,
        }),
    ))
}

pub(crate) async fn org_exists(tx: &mut crate::db::WriteTx<'_>, id: &str) -> Result<(), ApiError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx.tx)
        .await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("no organisation {id}")));
    }
    Ok(())
}

/// The subscriber's own policy document (R-POL-3), as JSON.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct PolicyDoc(pub SubscriberPolicy);

/// Replace an organisation's subscriber policy (R-POL-3). Live grants are re-evaluated.
#[utoipa::path(put, path = "/api/v1/orgs/{id}/policy", tag = "organisations", params(("id" = String, Path)),
    request_body = PolicyDoc, responses((status = 200, body = PolicyDoc), (status = 400, body = ErrorBody)))]
pub async fn put_policy(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PolicyDoc>, JsonRejection>,
) -> Result<Json<PolicyDoc>, ApiError> {
    caller.require_org(&id)?;
    let Json(PolicyDoc(policy)) = body?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &id).await?;
    let text = serde_json::to_string(&policy).map_err(|_| ApiError::internal("policy"))?;
    sqlx::query("UPDATE orgs SET policy = $2 WHERE id = $1")
        .bind(&id)
        .bind(&text)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "policy.subscriber_changed",
        &id,
        serde_json::to_value(&policy).unwrap_or_default(),
    )
    .await?;
    let devices = org_devices(&mut tx, &id).await?;
    for d in &devices {
        tx.event(
            d,
            "policy_changed",
            &serde_json::json!({"scope": "subscriber", "org": id}),
        )
        .await?;
    }
    grants::reevaluate(
        &c,
        &mut tx,
        &caller.actor(),
        Some(&crate::api::set_of(devices)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(PolicyDoc(policy)))
}

/// What saving this policy would do, without saving it: which grants would be added
/// (applications refused in the last 7 days), narrowed, widened, changed or withdrawn.
/// Nothing is stored, audited or pushed.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/policy/dry-run", tag = "organisations", params(("id" = String, Path)),
    request_body = PolicyDoc, responses((status = 200, body = grants::DryRun), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn dry_run_policy(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PolicyDoc>, JsonRejection>,
) -> Result<Json<grants::DryRun>, ApiError> {
    caller.require_org(&id)?;
    let Json(PolicyDoc(policy)) = body?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &id).await?;
    let out = grants::dry_run(&mut tx, &id, &policy).await?;
    // Dropped, not committed: the dry run leaves the database as it was.
    drop(tx);
    Ok(Json(out))
}

pub(crate) async fn org_devices(
    tx: &mut crate::db::WriteTx<'_>,
    org: &str,
) -> Result<Vec<String>, ApiError> {
    sqlx::query_scalar("SELECT id FROM devices WHERE owner_org = $1")
        .bind(org)
        .fetch_all(&mut *tx.tx)
        .await
        .map_err(ApiError::from)
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/policy", tag = "organisations", params(("id" = String, Path)),
    responses((status = 200, body = PolicyDoc), (status = 404, body = ErrorBody)))]
pub async fn get_policy(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PolicyDoc>, ApiError> {
    caller.require_org(&id)?;
    let text: String = sqlx::query_scalar("SELECT policy FROM orgs WHERE id = $1")
        .bind(&id)
        .fetch_optional(&c.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no organisation {id}")))?;
    let p =
        serde_json::from_str(&text).map_err(|_| ApiError::internal("stored policy unreadable"))?;
    Ok(Json(PolicyDoc(p)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checksheet {
    /// Whether the organisation's Annex C security check sheet passed (R-POL-6).
    pub passed: bool,
}

#[utoipa::path(put, path = "/api/v1/orgs/{id}/checksheet", tag = "organisations", params(("id" = String, Path)),
    request_body = Checksheet, responses((status = 200, body = Org)))]
pub async fn put_checksheet(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Checksheet>, JsonRejection>,
) -> Result<Json<Org>, ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &id).await?;
    sqlx::query("UPDATE orgs SET checksheet_passed = $2 WHERE id = $1")
        .bind(&id)
        .bind(body.passed as i64)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "org.checksheet",
        &id,
        serde_json::json!({"passed": body.passed}),
    )
    .await?;
    let devices = org_devices(&mut tx, &id).await?;
    grants::reevaluate(
        &c,
        &mut tx,
        &caller.actor(),
        Some(&crate::api::set_of(devices)),
    )
    .await?;
    let r =
        sqlx::query("SELECT id, name, kind, checksheet_passed, created_ms FROM orgs WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut *tx.tx)
            .await?;
    let org = org_from_row(&r);
    tx.commit().await?;
    Ok(Json(org))
}

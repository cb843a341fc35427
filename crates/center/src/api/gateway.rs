//! The gateway centre's data in the centre (issue 12, R-SVC-1): which devices are
//! gateway nodes, the provider's categories (update servers, C 3-6-1), each
//! organisation's choices (categories, user authentication C 4-8-2), applications for
//! sites and their decisions (C 4-8-1), and the nodes' request logs with their daily
//! digests. The node's own calls are the contract of `dodvpn_gateway::feed`.
//!
//! Every change that alters what a node decides bumps the policy version and pushes
//! `gateway.policy` to every node in the same transaction, so a node learns of an
//! approval within the push latency. An approval's expiry is in the document; the node
//! drops the rule at that instant itself, and the centre leaves it out from then on.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use dodvpn_gateway::feed::{
    self, Category, GatewayPolicy, LogBatch, LogDigest, OrgRules, Outcome, Rule, UserAuth,
    UserCheck,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::admin::orgs::{check_text, org_exists};
use crate::auth::{Caller, DeviceCaller, Tier};
use crate::db::WriteTx;
use crate::error::{ApiError, ErrorBody};
use crate::{new_id, Center};

/// Most records one log batch may carry (the node sends 500).
const MAX_BATCH: usize = 2000;
/// The body limit of a log batch.
pub const MAX_LOG_BODY: usize = 1024 * 1024;
/// Longest an approval may run: a year; renewal is a new application.
const MAX_EXPIRY_DAYS: u32 = 366;
const VERSION_KEY: &str = "gateway_policy_version";

fn entry_ok(entry: &str) -> Result<(), ApiError> {
    check_text("entry", entry, 300)?;
    dodvpn_gateway::Entry::parse(entry)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request_code("bad_entry", e.to_string()))
}

/// Bump the policy version and tell every node (inside the change's transaction).
async fn policy_changed(tx: &mut WriteTx<'_>) -> Result<u64, ApiError> {
    let v = tx.next_counter(VERSION_KEY).await?;
    let nodes: Vec<String> = sqlx::query_scalar("SELECT device_id FROM gateway_nodes")
        .fetch_all(&mut *tx.tx)
        .await?;
    for n in nodes {
        tx.event(&n, feed::POLICY_EVENT, &serde_json::json!({"version": v}))
            .await?;
    }
    Ok(v)
}

/// The caller as a gateway node: a service certificate of a device the provider
/// registered as one.
async fn node(c: &Center, caller: &Caller) -> Result<DeviceCaller, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateway_nodes WHERE device_id = $1")
        .bind(&dev.device_id)
        .fetch_one(&c.db.pool)
        .await?;
    if n == 0 {
        return Err(ApiError::forbidden(
            "not_a_gateway_node",
            "this device is not registered as a gateway node",
        ));
    }
    Ok(dev)
}

// ---------------------------------------------------------------- nodes (provider)

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// A registered device that will run `dodvpn gateway run`.
    #[schema(min_length = 1, max_length = 200)]
    pub device_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct NodeRecord {
    pub device_id: String,
    pub created_ms: i64,
}

/// Make a registered device a gateway node (provider only).
#[utoipa::path(post, path = "/api/v1/gateway/nodes", tag = "gateway", request_body = NewNode,
    responses((status = 201, body = NodeRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_node(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewNode>, JsonRejection>,
) -> Result<(StatusCode, Json<NodeRecord>), ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE id = $1")
        .bind(&body.device_id)
        .fetch_one(&mut *tx.tx)
        .await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("no device {}", body.device_id)));
    }
    sqlx::query("INSERT INTO gateway_nodes (device_id, created_ms) VALUES ($1, $2)")
        .bind(&body.device_id)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "gateway.node_added",
        &body.device_id,
        serde_json::json!({}),
    )
    .await?;
    let rec = NodeRecord {
        device_id: body.device_id,
        created_ms: tx.now,
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

#[utoipa::path(get, path = "/api/v1/gateway/nodes", tag = "gateway",
    responses((status = 200, body = [NodeRecord])))]
pub async fn list_nodes(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<NodeRecord>>, ApiError> {
    caller.require_admin()?;
    let rows = sqlx::query("SELECT device_id, created_ms FROM gateway_nodes ORDER BY device_id")
        .fetch_all(&c.db.pool)
        .await?;
    Ok(Json(
        rows.iter()
            .map(|r| NodeRecord {
                device_id: r.get(0),
                created_ms: r.get(1),
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------- categories (provider)

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryBody {
    #[schema(min_length = 1, max_length = 200)]
    pub title_en: String,
    #[schema(min_length = 1, max_length = 200)]
    pub title_ja: String,
    /// Allowlist entries: `host[:port]`, `*.domain[:port]`, `http://host[:port]/prefix`.
    #[schema(max_items = 10000)]
    pub entries: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryRecord {
    pub name: String,
    pub title_en: String,
    pub title_ja: String,
    pub entries: Vec<String>,
    pub updated_ms: i64,
}

fn category_name_ok(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(ApiError::bad_request(
            "a category name is 1–64 of a–z, 0–9, '-' and '_'",
        ));
    }
    Ok(())
}

/// Create or replace a provider-kept category of sites, e.g. `updates` (C 3-6-1).
#[utoipa::path(put, path = "/api/v1/gateway/categories/{name}", tag = "gateway", request_body = CategoryBody,
    params(("name" = String, Path)),
    responses((status = 200, body = CategoryRecord), (status = 400, body = ErrorBody)))]
pub async fn put_category(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<CategoryBody>, JsonRejection>,
) -> Result<Json<CategoryRecord>, ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    category_name_ok(&name)?;
    check_text("title_en", &body.title_en, 200)?;
    check_text("title_ja", &body.title_ja, 200)?;
    if body.entries.len() > 10_000 {
        return Err(ApiError::bad_request("at most 10000 entries"));
    }
    for e in &body.entries {
        entry_ok(e)?;
    }
    let mut tx = c.db.begin_write().await?;
    sqlx::query("DELETE FROM gateway_categories WHERE name = $1")
        .bind(&name)
        .execute(&mut *tx.tx)
        .await?;
    sqlx::query("INSERT INTO gateway_categories (name, title_en, title_ja, entries, updated_ms) VALUES ($1,$2,$3,$4,$5)")
        .bind(&name)
        .bind(&body.title_en)
        .bind(&body.title_ja)
        .bind(serde_json::to_string(&body.entries).unwrap_or_default())
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "gateway.category_set",
        &name,
        serde_json::json!({"entries": body.entries.len()}),
    )
    .await?;
    policy_changed(&mut tx).await?;
    let rec = CategoryRecord {
        name,
        title_en: body.title_en,
        title_ja: body.title_ja,
        entries: body.entries,
        updated_ms: tx.now,
    };
    tx.commit().await?;
    Ok(Json(rec))
}

async fn categories(c: &Center) -> Result<Vec<CategoryRecord>, ApiError> {
    let rows = sqlx::query(
        "SELECT name, title_en, title_ja, entries, updated_ms FROM gateway_categories ORDER BY name",
    )
    .fetch_all(&c.db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| CategoryRecord {
            name: r.get(0),
            title_en: r.get(1),
            title_ja: r.get(2),
            entries: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or_default(),
            updated_ms: r.get(4),
        })
        .collect())
}

#[utoipa::path(get, path = "/api/v1/gateway/categories", tag = "gateway",
    responses((status = 200, body = [CategoryRecord])))]
pub async fn list_categories(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<CategoryRecord>>, ApiError> {
    caller.require_admin()?;
    Ok(Json(categories(&c).await?))
}

// ---------------------------------------------------------------- organisation settings

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgSettings {
    /// Provider categories this organisation opts into.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub categories: Vec<String>,
    /// `device`: the tunnel's device identity is enough; `password`: Proxy-Authorization
    /// checked against the organisation's console accounts (C 4-8-2).
    #[serde(default = "device_auth")]
    #[schema(value_type = String, example = "device")]
    pub user_auth: String,
}

fn device_auth() -> String {
    "device".into()
}

fn user_auth_of(s: &str) -> Result<UserAuth, ApiError> {
    match s {
        "device" => Ok(UserAuth::Device),
        "password" => Ok(UserAuth::Password),
        _ => Err(ApiError::bad_request("user_auth is 'device' or 'password'")),
    }
}

async fn settings_of(c: &Center, org: &str) -> Result<OrgSettings, ApiError> {
    let r = sqlx::query("SELECT categories, user_auth FROM gateway_org_settings WHERE org_id = $1")
        .bind(org)
        .fetch_optional(&c.db.pool)
        .await?;
    Ok(match r {
        Some(r) => OrgSettings {
            categories: serde_json::from_str(&r.get::<String, _>(0)).unwrap_or_default(),
            user_auth: r.get(1),
        },
        None => OrgSettings {
            categories: vec![],
            user_auth: device_auth(),
        },
    })
}

/// An organisation's gateway choices: categories opted into, how users authenticate.
#[utoipa::path(put, path = "/api/v1/orgs/{id}/gateway/settings", tag = "gateway", request_body = OrgSettings,
    params(("id" = String, Path)),
    responses((status = 200, body = OrgSettings), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_settings(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(org): Path<String>,
    body: Result<Json<OrgSettings>, JsonRejection>,
) -> Result<Json<OrgSettings>, ApiError> {
    caller.require_org(&org)?;
    let Json(body) = body?;
    user_auth_of(&body.user_auth)?;
    let known: Vec<String> = categories(&c).await?.into_iter().map(|k| k.name).collect();
    if let Some(u) = body.categories.iter().find(|k| !known.contains(k)) {
        return Err(ApiError::bad_request(format!("no category {u:?}")));
    }
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &org).await?;
    sqlx::query("DELETE FROM gateway_org_settings WHERE org_id = $1")
        .bind(&org)
        .execute(&mut *tx.tx)
        .await?;
    sqlx::query("INSERT INTO gateway_org_settings (org_id, categories, user_auth, updated_ms) VALUES ($1,$2,$3,$4)")
        .bind(&org)
        .bind(serde_json::to_string(&body.categories).unwrap_or_default())
        .bind(&body.user_auth)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "gateway.settings_set",
        &org,
        serde_json::json!({"categories": body.categories, "user_auth": body.user_auth}),
    )
    .await?;
    policy_changed(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(body))
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/gateway/settings", tag = "gateway", params(("id" = String, Path)),
    responses((status = 200, body = OrgSettings), (status = 404, body = ErrorBody)))]
pub async fn get_settings(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<OrgSettings>, ApiError> {
    caller.require_org(&org)?;
    Ok(Json(settings_of(&c, &org).await?))
}

// ---------------------------------------------------------------- applications

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    /// The site: `host[:port]`, `*.domain[:port]` or `http://host[:port]/prefix`.
    #[schema(min_length = 1, max_length = 300)]
    pub entry: String,
    /// Why the work needs it (shown to whoever decides).
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Application {
    pub id: String,
    pub org_id: String,
    pub entry: String,
    pub reason: String,
    pub applicant: String,
    /// pending | approved | refused | withdrawn | expired
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    pub expires_ms: Option<i64>,
    pub created_ms: i64,
    pub decided_ms: Option<i64>,
}

const APP_COLS: &str = "id, org_id, entry, reason, applicant, status, decided_by, decision_note, expires_ms, created_ms, decided_ms";

fn app_from_row(r: &sqlx::any::AnyRow, now: i64) -> Application {
    let expires_ms: Option<i64> = r.get(8);
    let mut status: String = r.get(5);
    if status == "approved" && expires_ms.is_some_and(|t| t <= now) {
        status = "expired".into();
    }
    Application {
        id: r.get(0),
        org_id: r.get(1),
        entry: r.get(2),
        reason: r.get(3),
        applicant: r.get(4),
        status,
        decided_by: r.get(6),
        decision_note: r.get(7),
        expires_ms,
        created_ms: r.get(9),
        decided_ms: r.get(10),
    }
}

/// An organisation asks for a site, with a reason (C 4-8-1).
#[utoipa::path(post, path = "/api/v1/orgs/{id}/gateway/applications", tag = "gateway", request_body = NewApplication,
    params(("id" = String, Path)),
    responses((status = 201, body = Application), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn apply(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(org): Path<String>,
    body: Result<Json<NewApplication>, JsonRejection>,
) -> Result<(StatusCode, Json<Application>), ApiError> {
    caller.require_org(&org)?;
    let Json(body) = body?;
    entry_ok(&body.entry)?;
    check_text("reason", &body.reason, 1000)?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &org).await?;
    let id = new_id("gwa");
    sqlx::query(&format!(
        "INSERT INTO gateway_applications ({APP_COLS}) VALUES ($1,$2,$3,$4,$5,'pending',NULL,NULL,NULL,$6,NULL)"
    ))
    .bind(&id)
    .bind(&org)
    .bind(body.entry.trim())
    .bind(&body.reason)
    .bind(caller.actor())
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "gateway.applied",
        &id,
        serde_json::json!({"org": org, "entry": body.entry.trim(), "reason": body.reason}),
    )
    .await?;
    let app = get_app(&mut tx, &id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(app)))
}

async fn get_app(tx: &mut WriteTx<'_>, id: &str) -> Result<Application, ApiError> {
    let now = tx.now;
    let r = sqlx::query(&format!(
        "SELECT {APP_COLS} FROM gateway_applications WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *tx.tx)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no application {id}")))?;
    Ok(app_from_row(&r, now))
}

#[derive(Deserialize, IntoParams)]
pub struct AppQuery {
    /// Only applications with this status (pending, approved, refused, withdrawn, expired).
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}/gateway/applications", tag = "gateway",
    params(("id" = String, Path), AppQuery),
    responses((status = 200, body = [Application])))]
pub async fn list_applications(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(org): Path<String>,
    q: Result<Query<AppQuery>, QueryRejection>,
) -> Result<Json<Vec<Application>>, ApiError> {
    caller.require_org(&org)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let rows = sqlx::query(&format!(
        "SELECT {APP_COLS} FROM gateway_applications WHERE org_id = $1 ORDER BY created_ms, id"
    ))
    .bind(&org)
    .fetch_all(&c.db.pool)
    .await?;
    let now = crate::db::now_ms();
    Ok(Json(
        rows.iter()
            .map(|r| app_from_row(r, now))
            .filter(|a| q.status.as_deref().is_none_or(|s| a.status == s))
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// true: approve; false: refuse.
    pub approve: bool,
    /// An approval ends after this many days (1–366); or give `expires_ms`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 366)]
    pub expires_in_days: Option<u32>,
    /// An approval ends at this instant (ms since the epoch, in the future).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expires_ms: Option<i64>,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

/// The organisation's security officer (its administrator) or the provider approves
/// or refuses a pending application; an approval has an expiry.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/gateway/applications/{app}/decision", tag = "gateway",
    request_body = Decision, params(("id" = String, Path), ("app" = String, Path)),
    responses((status = 200, body = Application), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "not pending")))]
pub async fn decide(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path((org, app)): Path<(String, String)>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Result<Json<Application>, ApiError> {
    caller.require_org(&org)?;
    let Json(body) = body?;
    if let Some(n) = &body.note {
        check_text("note", n, 1000)?;
    }
    let mut tx = c.db.begin_write().await?;
    let cur = get_app(&mut tx, &app).await?;
    if cur.org_id != org {
        return Err(ApiError::not_found(format!("no application {app}")));
    }
    if cur.status != "pending" {
        return Err(ApiError::conflict(
            "not_pending",
            format!("application {app} is {}, not pending", cur.status),
        ));
    }
    let expires_ms = if body.approve {
        let t = match (body.expires_in_days, body.expires_ms) {
            (Some(d), None) if (1..=MAX_EXPIRY_DAYS).contains(&d) => tx.now + i64::from(d) * 86_400_000,
            (None, Some(t)) if t > tx.now && t <= tx.now + i64::from(MAX_EXPIRY_DAYS) * 86_400_000 => t,
            _ => {
                return Err(ApiError::bad_request(
                    "an approval needs one expiry: expires_in_days (1–366) or expires_ms (future, within 366 days)",
                ))
            }
        };
        Some(t)
    } else {
        None
    };
    let status = if body.approve { "approved" } else { "refused" };
    sqlx::query("UPDATE gateway_applications SET status = $2, decided_by = $3, decision_note = $4, expires_ms = $5, decided_ms = $6 WHERE id = $1")
        .bind(&app)
        .bind(status)
        .bind(caller.actor())
        .bind(&body.note)
        .bind(expires_ms)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        if body.approve { "gateway.approved" } else { "gateway.refused" },
        &app,
        serde_json::json!({"org": org, "entry": cur.entry, "expires_ms": expires_ms, "note": body.note}),
    )
    .await?;
    if body.approve {
        policy_changed(&mut tx).await?;
    }
    let out = get_app(&mut tx, &app).await?;
    tx.commit().await?;
    Ok(Json(out))
}

/// Withdraw an approved (or pending) application: the site is removed at once.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/gateway/applications/{app}/withdraw", tag = "gateway",
    params(("id" = String, Path), ("app" = String, Path)),
    responses((status = 200, body = Application), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn withdraw(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path((org, app)): Path<(String, String)>,
) -> Result<Json<Application>, ApiError> {
    caller.require_org(&org)?;
    let mut tx = c.db.begin_write().await?;
    let cur = get_app(&mut tx, &app).await?;
    if cur.org_id != org {
        return Err(ApiError::not_found(format!("no application {app}")));
    }
    if !matches!(cur.status.as_str(), "pending" | "approved") {
        return Err(ApiError::conflict(
            "not_withdrawable",
            format!("application {app} is {}", cur.status),
        ));
    }
    sqlx::query(
        "UPDATE gateway_applications SET status = 'withdrawn', decided_ms = $2 WHERE id = $1",
    )
    .bind(&app)
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "gateway.withdrawn",
        &app,
        serde_json::json!({"org": org, "entry": cur.entry}),
    )
    .await?;
    policy_changed(&mut tx).await?;
    let out = get_app(&mut tx, &app).await?;
    tx.commit().await?;
    Ok(Json(out))
}

// ---------------------------------------------------------------- the log, as an organisation reads it

#[derive(Deserialize, IntoParams)]
pub struct LogQuery {
    /// Only records at or after this instant (ms since the epoch).
    #[param(minimum = 0)]
    pub since_ms: Option<i64>,
    /// At most this many (newest last; default 1000, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct LogEntry {
    pub node_id: String,
    pub at_ms: i64,
    pub org_id: String,
    pub device_id: String,
    pub user: Option<String>,
    pub host: String,
    pub port: i64,
    pub method: String,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub duration_ms: i64,
    /// allowed | refused
    pub outcome: String,
    pub reason: String,
}

/// An organisation's own requests through the gateway, and only its own.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/gateway/log", tag = "gateway",
    params(("id" = String, Path), LogQuery),
    responses((status = 200, body = [LogEntry]), (status = 400, body = ErrorBody)))]
pub async fn org_log(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(org): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<Vec<LogEntry>>, ApiError> {
    caller.require_read(&org)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("limit is 1–10000"));
    }
    let rows = sqlx::query(
        "SELECT node_id, at_ms, org_id, device_id, user_name, host, port, method, bytes_up, bytes_down, duration_ms, outcome, reason \
         FROM gateway_log WHERE org_id = $1 AND at_ms >= $2 ORDER BY at_ms, id LIMIT $3",
    )
    .bind(&org)
    .bind(q.since_ms.unwrap_or(0))
    .bind(i64::from(limit))
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| LogEntry {
                node_id: r.get(0),
                at_ms: r.get(1),
                org_id: r.get(2),
                device_id: r.get(3),
                user: r.get(4),
                host: r.get(5),
                port: r.get(6),
                method: r.get(7),
                bytes_up: r.get(8),
                bytes_down: r.get(9),
                duration_ms: r.get(10),
                outcome: r.get(11),
                reason: r.get(12),
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------- the node's own calls

/// The policy document, as `dodvpn_gateway::feed::GatewayPolicy`.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct PolicyDoc(pub GatewayPolicy);

/// Everything a node decides with, for every organisation (gateway nodes only).
#[utoipa::path(get, path = "/api/v1/device/gateway/policy", tag = "device",
    responses((status = 200, body = PolicyDoc)))]
pub async fn node_policy(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<PolicyDoc>, ApiError> {
    node(&c, &caller).await?;
    let now = crate::db::now_ms();
    let version: u64 =
        c.db.meta_get(VERSION_KEY)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    let cats = categories(&c).await?;
    let orgs = sqlx::query("SELECT id, name FROM orgs ORDER BY id")
        .fetch_all(&c.db.pool)
        .await?;
    let rules = sqlx::query(
        "SELECT org_id, entry, id, expires_ms FROM gateway_applications \
         WHERE status = 'approved' AND (expires_ms IS NULL OR expires_ms > $1) ORDER BY created_ms, id",
    )
    .bind(now)
    .fetch_all(&c.db.pool)
    .await?;
    let mut out = Vec::new();
    for o in &orgs {
        let id: String = o.get(0);
        let s = settings_of(&c, &id).await?;
        let rules: Vec<Rule> = rules
            .iter()
            .filter(|r| r.get::<String, _>(0) == id)
            .map(|r| Rule {
                entry: r.get(1),
                application_id: Some(r.get(2)),
                expires_ms: r.get(3),
            })
            .collect();
        if rules.is_empty() && s.categories.is_empty() {
            continue; // nothing allowed: the node denies by default anyway
        }
        out.push(OrgRules {
            org_id: id,
            org_name: o.get(1),
            rules,
            categories: s.categories,
            user_auth: user_auth_of(&s.user_auth).unwrap_or_default(),
        });
    }
    let allow_ip_literal_without_sni =
        c.db.meta_get("gateway_allow_ip_literal_without_sni")
            .await?
            .is_some_and(|v| v == "1");
    Ok(Json(PolicyDoc(GatewayPolicy {
        version,
        categories: cats
            .into_iter()
            .map(|k| Category {
                name: k.name,
                title_en: k.title_en,
                title_ja: k.title_ja,
                entries: k.entries,
            })
            .collect(),
        orgs: out,
        allow_ip_literal_without_sni,
    })))
}

/// `dodvpn_gateway::feed::LogBatch`.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct LogBatchBody(pub LogBatch);

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub accepted: u64,
}

fn short(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Request records from a node, kept append-only (gateway nodes only).
#[utoipa::path(post, path = "/api/v1/device/gateway/log", tag = "device", request_body = LogBatchBody,
    responses((status = 200, body = Accepted), (status = 400, body = ErrorBody)))]
pub async fn node_log(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<LogBatchBody>, JsonRejection>,
) -> Result<Json<Accepted>, ApiError> {
    let dev = node(&c, &caller).await?;
    let Json(LogBatchBody(batch)) = body?;
    if batch.records.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BATCH} records a batch"
        )));
    }
    let mut tx = c.db.begin_write().await?;
    let mut id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM gateway_log")
        .fetch_one(&mut *tx.tx)
        .await?;
    for r in &batch.records {
        id += 1;
        sqlx::query(
            "INSERT INTO gateway_log (id, node_id, at_ms, org_id, device_id, user_name, host, port, method, bytes_up, bytes_down, duration_ms, outcome, reason, received_ms) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
        )
        .bind(id)
        .bind(&dev.device_id)
        .bind(r.at_ms)
        .bind(short(&r.org_id, 100))
        .bind(short(&r.device_id, 100))
        .bind(r.user.as_deref().map(|u| short(u, 200)))
        .bind(short(&r.host, 300))
        .bind(i64::from(r.port))
        .bind(short(&r.method, 32))
        .bind(r.bytes_up.min(i64::MAX as u64) as i64)
        .bind(r.bytes_down.min(i64::MAX as u64) as i64)
        .bind(r.duration_ms.min(i64::MAX as u64) as i64)
        .bind(match r.outcome {
            Outcome::Allowed => "allowed",
            Outcome::Refused => "refused",
        })
        .bind(short(&r.reason, 300))
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Json(Accepted {
        accepted: batch.records.len() as u64,
    }))
}

/// `dodvpn_gateway::feed::LogDigest`.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct LogDigestBody(pub LogDigest);

/// One day of a node's log, hashed, into the audit chain (gateway nodes only). The
/// centre notes how many records it holds for that node and day beside the node's count.
#[utoipa::path(post, path = "/api/v1/device/gateway/digest", tag = "device", request_body = LogDigestBody,
    responses((status = 200, body = Accepted), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn node_digest(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<LogDigestBody>, JsonRejection>,
) -> Result<Json<Accepted>, ApiError> {
    let dev = node(&c, &caller).await?;
    let Json(LogDigestBody(d)) = body?;
    let day_ok = d.day.len() == 10
        && d.day.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let hash_ok = d.sha256.len() == 64 && d.sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !day_ok || !hash_ok {
        return Err(ApiError::bad_request(
            "day is YYYY-MM-DD and sha256 64 hex digits",
        ));
    }
    let mut tx = c.db.begin_write().await?;
    let held: Option<String> =
        sqlx::query_scalar("SELECT sha256 FROM gateway_digests WHERE node_id = $1 AND day = $2")
            .bind(&dev.device_id)
            .bind(&d.day)
            .fetch_optional(&mut *tx.tx)
            .await?;
    match held {
        Some(h) if h == d.sha256 => {
            return Ok(Json(Accepted { accepted: 0 })); // a retry
        }
        Some(_) => {
            return Err(ApiError::conflict(
                "digest_differs",
                format!(
                    "a different digest of {} is already in the audit chain",
                    d.day
                ),
            ))
        }
        None => {}
    }
    sqlx::query("INSERT INTO gateway_digests (node_id, day, records, sha256, received_ms) VALUES ($1,$2,$3,$4,$5)")
        .bind(&dev.device_id)
        .bind(&d.day)
        .bind(d.records.min(i64::MAX as u64) as i64)
        .bind(&d.sha256)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "gateway.log_digest",
        &dev.device_id,
        serde_json::json!({"day": d.day, "records": d.records, "sha256": d.sha256}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Accepted { accepted: 1 }))
}

/// `dodvpn_gateway::feed::UserCheck`.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct UserCheckBody(pub UserCheck);

#[derive(Serialize, ToSchema)]
pub struct UserCheckResult {
    pub ok: bool,
}

/// A Proxy-Authorization checked against the organisation's console accounts
/// (C 4-8-2; gateway nodes only). A disabled or locked account does not pass.
#[utoipa::path(post, path = "/api/v1/device/gateway/user-check", tag = "device", request_body = UserCheckBody,
    responses((status = 200, body = UserCheckResult)))]
pub async fn user_check(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<UserCheckBody>, JsonRejection>,
) -> Result<Json<UserCheckResult>, ApiError> {
    node(&c, &caller).await?;
    let Json(UserCheckBody(q)) = body?;
    let row = sqlx::query(
        "SELECT password_hash, disabled_ms, locked_until_ms FROM console_users WHERE username = $1 AND org_id = $2",
    )
    .bind(&q.user)
    .bind(&q.org_id)
    .fetch_optional(&c.db.pool)
    .await?;
    let now = crate::db::now_ms();
    let (phc, usable) = match &row {
        Some(r) => (
            r.get::<String, _>(0),
            r.get::<Option<i64>, _>(1).is_none() && r.get::<i64, _>(2) <= now,
        ),
        None => (String::new(), false),
    };
    // Verify even for an unknown name, so timing does not tell which names exist.
    let pw = q.password.clone();
    let ok = tokio::task::spawn_blocking(move || password_matches(&pw, &phc))
        .await
        .unwrap_or(false);
    Ok(Json(UserCheckResult { ok: ok && usable }))
}

fn password_matches(pw: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        SaltString::encode_b64(b"dodvpn-dummy-salt")
            .ok()
            .and_then(|salt| {
                argon2::Argon2::default()
                    .hash_password(b"no account has this password", &salt)
                    .ok()
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    });
    if pw.len() > 1024 {
        return false;
    }
    let (target, real) = match PasswordHash::new(phc) {
        Ok(_) => (phc, true),
        Err(_) => (dummy.as_str(), false),
    };
    match PasswordHash::new(target) {
        Ok(h) => {
            argon2::Argon2::default()
                .verify_password(pw.as_bytes(), &h)
                .is_ok()
                && real
        }
        Err(_) => false,
    }
}

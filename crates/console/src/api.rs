//! The console's accounts over the JSON API (`dodvpn admin user …`): everything the
//! Organisations and users page does, for an administrator credential. The same rules
//! hold as on the page: an organisation's administrator sees and invites only in its
//! own organisation, and only the roles [`roles::may_invite`] allows.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use dodvpn_center::auth::Caller;
use dodvpn_center::error::{ApiError, ErrorBody};
use dodvpn_center::Center;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::roles::{self, Role};
use crate::store::{self, User};

/// The described routes, merged into the centre's API (`server::prepare_with`).
pub fn routes() -> OpenApiRouter<Arc<Center>> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(invite_user))
        .routes(routes!(disable_user))
}

/// A console account as an administrator sees it (never its secrets).
#[derive(Serialize, ToSchema)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    /// provider_admin, provider_operator, auditor, device_provider, org_admin, org_approver
    pub role: String,
    pub org_id: Option<String>,
    pub created_ms: i64,
    pub disabled_ms: Option<i64>,
    /// Registered WebAuthn passkeys.
    pub passkeys: i64,
}

async fn record(c: &Center, u: &User) -> Result<UserRecord, ApiError> {
    Ok(UserRecord {
        id: u.id.clone(),
        username: u.username.clone(),
        role: u.role.as_str().to_string(),
        org_id: u.org_id.clone(),
        created_ms: u.created_ms,
        disabled_ms: u.disabled_ms,
        passkeys: crate::passkey::count(c, &u.id).await?,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// The role the new account gets.
    pub role: String,
    /// Its organisation; none for provider-wide roles.
    #[serde(default)]
    pub org_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Invitation {
    /// One-time code for `/console/setup`; shown once, only its hash is kept.
    pub code: String,
    pub role: String,
    pub org_id: Option<String>,
    pub expires_ms: i64,
}

/// The role a credential acts with when it hands out accounts.
fn inviter(caller: &Caller) -> Result<(Role, Option<&str>), ApiError> {
    Ok(match caller.org_scope()? {
        None => (Role::ProviderAdmin, None),
        Some(org) => (Role::OrgAdmin, Some(org)),
    })
}

#[utoipa::path(get, path = "/api/v1/users", tag = "organisations",
    responses((status = 200, body = [UserRecord]), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<UserRecord>>, ApiError> {
    let scope = caller.org_scope()?;
    let mut out = Vec::new();
    for u in store::list_users(&c, scope).await? {
        out.push(record(&c, &u).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/api/v1/users/invitations", tag = "organisations", request_body = NewInvitation,
    responses((status = 201, body = Invitation), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn invite_user(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewInvitation>, JsonRejection>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    let Json(body) = body?;
    let (role_of_caller, own_org) = inviter(&caller)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role {:?}; one of: {}",
            body.role,
            roles::ALL.map(|r| r.as_str()).join(", ")
        ))
    })?;
    let org = body
        .org_id
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty());
    if org.is_some_and(|o| o.len() > 64) {
        return Err(ApiError::bad_request("org_id is at most 64 characters"));
    }
    if !role.scope_ok(org) {
        return Err(ApiError::bad_request(match org {
            Some(_) => "this role is provider-wide: give no org_id",
            None => "this role belongs to one organisation: give its org_id",
        }));
    }
    if !roles::may_invite(role_of_caller, own_org, role, org) {
        return Err(ApiError::forbidden(
            "role_not_grantable",
            "this credential may not hand out that role in that organisation",
        ));
    }
    if let Some(o) = org {
        let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs WHERE id = $1")
            .bind(o)
            .fetch_one(&c.db.pool)
            .await?;
        if known == 0 {
            return Err(ApiError::not_found(format!("no organisation {o}")));
        }
    }
    let expires_ms = dodvpn_center::db::now_ms() + store::INVITE_TTL_MS;
    let code = store::create_invite(&c, &caller.actor(), role, org, store::INVITE_TTL_MS).await?;
    Ok((
        StatusCode::CREATED,
        Json(Invitation {
            code,
            role: role.as_str().to_string(),
            org_id: org.map(str::to_string),
            expires_ms,
        }),
    ))
}

/// Disable an account and end its sessions. Another organisation's account is 404.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "organisations", params(("id" = String, Path)),
    responses((status = 200, body = UserRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable_user(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UserRecord>, ApiError> {
    let scope = caller.org_scope()?;
    let user = store::user_by_id(&c, &id)
        .await?
        .filter(|u| scope.is_none() || u.org_id.as_deref() == scope)
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    if user.disabled_ms.is_none() {
        store::disable_user(&c, &caller.actor(), &user).await?;
    }
    let user = store::user_by_id(&c, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    Ok(Json(record(&c, &user).await?))
}

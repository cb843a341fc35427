//! Device providers (TR D.6 c–f, issue 9): the role, its contracts, and the owner's
//! confirmation of a device a device provider registered for it.
//!
//! Being a device provider is a role the provider grants one organisation explicitly
//! (never implied by its kind), and it reaches only the devices of the owner
//! organisations the provider has recorded it serves. Deny by default: an
//! organisation's administrator without the role, or without a contract for the
//! device's owner, is refused.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::devices::{load_device, with_groups, Device};
use super::orgs::org_exists;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::device_state::DeviceState;
use crate::error::{ApiError, ErrorBody};
use crate::Center;

async fn holds_role(c: &Center, org_id: &str) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_providers WHERE org_id = $1")
        .bind(org_id)
        .fetch_one(&c.db.pool)
        .await?;
    Ok(n > 0)
}

async fn has_contract(c: &Center, provider_org: &str, owner_org: &str) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM provider_contracts WHERE provider_org = $1 AND owner_org = $2",
    )
    .bind(provider_org)
    .bind(owner_org)
    .fetch_one(&c.db.pool)
    .await?;
    Ok(n > 0)
}

/// The caller holds the device provider role: the provider's operator, or an
/// administrator of an organisation the provider made a device provider. Returns the
/// device provider organisation (None: the provider itself).
pub(crate) async fn require_device_provider(
    c: &Center,
    caller: &Caller,
) -> Result<Option<String>, ApiError> {
    match caller {
        Caller::Provider { .. } => Ok(None),
        Caller::OrgAdmin { org_id, .. } => {
            if holds_role(c, org_id).await? {
                Ok(Some(org_id.clone()))
            } else {
                Err(ApiError::forbidden(
                    "not_device_provider",
                    "only the provider or an organisation it made a device provider may do this",
                ))
            }
        }
        Caller::Device(_) => Err(ApiError::forbidden(
            "admin_only",
            "this needs an administrator credential",
        )),
        Caller::Auditor { .. } => Err(ApiError::forbidden(
            "auditor_read_only",
            "an auditor credential may only read its organisation's audit log",
        )),
    }
}

/// The caller is a device provider contracted to serve `owner_org` (registration).
pub(crate) async fn require_device_provider_for(
    c: &Center,
    caller: &Caller,
    owner_org: &str,
) -> Result<Option<String>, ApiError> {
    let dp = require_device_provider(c, caller).await?;
    if let Some(org) = &dp {
        if !has_contract(c, org, owner_org).await? {
            return Err(ApiError::forbidden(
                "no_provider_contract",
                format!("this device provider has no contract to serve organisation {owner_org}"),
            ));
        }
    }
    Ok(dp)
}

/// The caller is a device provider contracted to serve the owner of device `id`
/// (steps d–f). A device of an owner it does not serve is answered as absent, as
/// for any other organisation's device.
pub(crate) async fn require_device_provider_of(
    c: &Center,
    caller: &Caller,
    id: &str,
) -> Result<(), ApiError> {
    if let Some(org) = require_device_provider(c, caller).await? {
        let d = load_device(&c.db.pool, id).await?;
        if !has_contract(c, &org, &d.owner_org).await? {
            return Err(ApiError::not_found(format!("no device {id}")));
        }
    }
    Ok(())
}

/// Whether `caller` serves `owner_org` as a device provider with a contract, so that it
/// sees that owner's devices.
pub(crate) async fn serves(c: &Center, caller: &Caller, owner_org: &str) -> Result<bool, ApiError> {
    match caller {
        Caller::OrgAdmin { org_id, .. } => {
            Ok(holds_role(c, org_id).await? && has_contract(c, org_id, owner_org).await?)
        }
        _ => Ok(false),
    }
}

/// Step d needs the owner's confirmation of a device a device provider registered.
pub(crate) async fn require_confirmed(tx: &mut WriteTx<'_>, id: &str) -> Result<(), ApiError> {
    let confirmed: Option<Option<i64>> =
        sqlx::query_scalar("SELECT confirmed_ms FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx.tx)
            .await?;
    match confirmed {
        None => Err(ApiError::not_found(format!("no device {id}"))),
        Some(None) => Err(ApiError::conflict(
            "unconfirmed",
            format!("device {id} awaits confirmation by its owner organisation (dodvpn admin device confirm {id})"),
        )),
        Some(Some(_)) => Ok(()),
    }
}

// ---------- the role ----------

#[derive(Serialize, ToSchema)]
pub struct DeviceProviderRole {
    pub org_id: String,
    pub device_provider: bool,
}

async fn set_role(
    c: &Center,
    caller: &Caller,
    id: &str,
    grant: bool,
) -> Result<DeviceProviderRole, ApiError> {
    caller.require_provider()?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, id).await?;
    if grant {
        sqlx::query("INSERT INTO device_providers (org_id, granted_ms) VALUES ($1, $2) ON CONFLICT (org_id) DO NOTHING")
            .bind(id)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
    } else {
        sqlx::query("DELETE FROM device_providers WHERE org_id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
    }
    let action = if grant {
        "org.device_provider_granted"
    } else {
        "org.device_provider_revoked"
    };
    tx.audit(&caller.actor(), action, id, serde_json::json!({}))
        .await?;
    tx.commit().await?;
    Ok(DeviceProviderRole {
        org_id: id.to_string(),
        device_provider: grant,
    })
}

/// The provider makes an organisation a device provider (TR D.6 c–f).
#[utoipa::path(put, path = "/api/v1/orgs/{id}/device-provider", tag = "organisations", params(("id" = String, Path)),
    responses((status = 200, body = DeviceProviderRole), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn grant_role(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceProviderRole>, ApiError> {
    Ok(Json(set_role(&c, &caller, &id, true).await?))
}

/// The provider withdraws the device provider role; its contracts stop counting.
#[utoipa::path(delete, path = "/api/v1/orgs/{id}/device-provider", tag = "organisations", params(("id" = String, Path)),
    responses((status = 200, body = DeviceProviderRole), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_role(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceProviderRole>, ApiError> {
    Ok(Json(set_role(&c, &caller, &id, false).await?))
}

// ---------- contracts ----------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContract {
    /// The device provider organisation.
    pub provider_org: String,
    /// The owner organisation it serves.
    pub owner_org: String,
}

#[derive(Serialize, ToSchema)]
pub struct Contract {
    pub provider_org: String,
    pub owner_org: String,
    pub created_ms: i64,
}

/// The provider records that a device provider serves an owner organisation.
#[utoipa::path(post, path = "/api/v1/provider-contracts", tag = "organisations", request_body = NewContract,
    responses((status = 201, body = Contract), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the organisation is not a device provider")))]
pub async fn add_contract(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<NewContract>, JsonRejection>,
) -> Result<(StatusCode, Json<Contract>), ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &body.provider_org).await?;
    org_exists(&mut tx, &body.owner_org).await?;
    let role: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_providers WHERE org_id = $1")
        .bind(&body.provider_org)
        .fetch_one(&mut *tx.tx)
        .await?;
    if role == 0 {
        return Err(ApiError::conflict(
            "not_a_device_provider",
            format!(
                "organisation {} is not a device provider (dodvpn admin org device-provider grant)",
                body.provider_org
            ),
        ));
    }
    sqlx::query("INSERT INTO provider_contracts (provider_org, owner_org, created_ms) VALUES ($1,$2,$3) ON CONFLICT (provider_org, owner_org) DO NOTHING")
        .bind(&body.provider_org)
        .bind(&body.owner_org)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    let created_ms: i64 = sqlx::query_scalar(
        "SELECT created_ms FROM provider_contracts WHERE provider_org = $1 AND owner_org = $2",
    )
    .bind(&body.provider_org)
    .bind(&body.owner_org)
    .fetch_one(&mut *tx.tx)
    .await?;
    tx.audit(
        &caller.actor(),
        "provider_contract.added",
        &body.provider_org,
        serde_json::json!({"owner": body.owner_org}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Contract {
            provider_org: body.provider_org,
            owner_org: body.owner_org,
            created_ms,
        }),
    ))
}

/// Contracts: all of them for the provider, those naming its organisation for an
/// organisation's administrator.
#[utoipa::path(get, path = "/api/v1/provider-contracts", tag = "organisations", responses((status = 200, body = [Contract])))]
pub async fn list_contracts(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<Contract>>, ApiError> {
    let org = caller.org_scope()?.unwrap_or("").to_string();
    let rows = sqlx::query(
        "SELECT provider_org, owner_org, created_ms FROM provider_contracts \
         WHERE $1 = '' OR provider_org = $1 OR owner_org = $1 ORDER BY created_ms, provider_org, owner_org",
    )
    .bind(&org)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| Contract {
                provider_org: r.get(0),
                owner_org: r.get(1),
                created_ms: r.get(2),
            })
            .collect(),
    ))
}

/// The provider ends a contract; the device provider no longer reaches that owner's devices.
#[utoipa::path(delete, path = "/api/v1/provider-contracts/{provider_org}/{owner_org}", tag = "organisations",
    params(("provider_org" = String, Path), ("owner_org" = String, Path)),
    responses((status = 200, body = Contract), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_contract(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path((provider_org, owner_org)): Path<(String, String)>,
) -> Result<Json<Contract>, ApiError> {
    caller.require_provider()?;
    let mut tx = c.db.begin_write().await?;
    let created_ms: Option<i64> = sqlx::query_scalar(
        "SELECT created_ms FROM provider_contracts WHERE provider_org = $1 AND owner_org = $2",
    )
    .bind(&provider_org)
    .bind(&owner_org)
    .fetch_optional(&mut *tx.tx)
    .await?;
    let created_ms = created_ms.ok_or_else(|| {
        ApiError::not_found(format!("no contract of {provider_org} with {owner_org}"))
    })?;
    sqlx::query("DELETE FROM provider_contracts WHERE provider_org = $1 AND owner_org = $2")
        .bind(&provider_org)
        .bind(&owner_org)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "provider_contract.removed",
        &provider_org,
        serde_json::json!({"owner": owner_org}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Contract {
        provider_org,
        owner_org,
        created_ms,
    }))
}

// ---------- the owner's confirmation ----------

/// The owner organisation (or the provider) confirms a device a device provider
/// registered for it; only then can it be certified (step d). Repeatable.
#[utoipa::path(post, path = "/api/v1/devices/{id}/confirm", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = Device), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn confirm_device(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    caller.require_admin()?;
    let d = super::devices::device_for(&c, &caller, &id).await?;
    caller.require_org(&d.owner_org)?;
    if d.confirmed {
        return Ok(Json(with_groups(&c, d).await?));
    }
    if d.status != DeviceState::Registered {
        return Err(ApiError::conflict(
            "wrong_state",
            format!(
                "cannot confirm: device {id} is '{}', expected registered",
                d.status
            ),
        ));
    }
    let mut tx = c.db.begin_write().await?;
    sqlx::query("UPDATE devices SET confirmed_ms = $2, updated_ms = $2 WHERE id = $1 AND confirmed_ms IS NULL")
        .bind(&id)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &caller.actor(),
        "device.confirmed",
        &id,
        serde_json::json!({"registered_by": d.registered_by, "step": "c"}),
    )
    .await?;
    let d = load_device(&mut *tx.tx, &id).await?;
    tx.commit().await?;
    Ok(Json(with_groups(&c, d).await?))
}

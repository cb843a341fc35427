//! Who is calling: an administrator (bearer credential) or a device (mutual TLS).
//!
//! Administrator credentials are `dodvpn-admin.<id>.<secret>`; only SHA-256(secret) is
//! stored, and it is compared in constant time. Devices are recognised by the serial of
//! the certificate they presented in the TLS handshake; the database, not the
//! certificate alone, decides whether that certificate is still good (revocation is
//! immediate, R-PKI-4), and each endpoint states which tier it needs (R-PKI-1/2).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::Center;

pub const ADMIN_PREFIX: &str = "dodvpn-admin";
/// Read-only auditor credentials: `dodvpn-auditor.<id>.<secret>` (api/audit.rs).
pub const AUDITOR_PREFIX: &str = "dodvpn-auditor";

/// Filled with the authenticated caller's actor name, so the refusal audit
/// (refusals.rs) can say who was refused after the handler answered.
#[derive(Clone, Default)]
pub struct CallerSlot(Arc<std::sync::Mutex<Option<String>>>);

impl CallerSlot {
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
    fn set(&self, actor: String) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(actor);
        }
    }
}

/// The client certificate of this TLS connection, if any (set by the server loop).
#[derive(Clone, Debug)]
pub struct PeerCert {
    pub serial: u64,
    pub fingerprint: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Device,
    Service,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Device => "device",
            Tier::Service => "service",
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Tier::Device => "a device certificate (tier 1)",
            Tier::Service => "a service certificate (tier 2)",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Caller {
    /// The provider's operator: may do everything.
    Provider {
        admin_id: String,
    },
    /// An organisation's administrator: sees and changes only its own organisation.
    OrgAdmin {
        admin_id: String,
        org_id: String,
    },
    Device(DeviceCaller),
    /// A read-only auditor of one organisation: may read only that organisation's
    /// audit records (api/audit.rs).
    Auditor {
        auditor_id: String,
        org_id: String,
    },
}

fn auditor_read_only() -> ApiError {
    ApiError::forbidden(
        "auditor_read_only",
        "an auditor credential may only read its organisation's audit log",
    )
}

#[derive(Clone, Debug)]
pub struct DeviceCaller {
    pub device_id: String,
    pub org_id: String,
    pub tier: Tier,
    pub serial: u64,
}

impl Caller {
    pub fn actor(&self) -> String {
        match self {
            Caller::Provider { admin_id } => format!("admin:{admin_id}"),
            Caller::OrgAdmin { admin_id, org_id } => format!("org-admin:{admin_id}@{org_id}"),
            Caller::Device(d) => format!("device:{}({})", d.device_id, d.tier.as_str()),
            Caller::Auditor { auditor_id, org_id } => format!("auditor:{auditor_id}@{org_id}"),
        }
    }

    pub fn require_provider(&self) -> Result<(), ApiError> {
        match self {
            Caller::Provider { .. } => Ok(()),
            Caller::Auditor { .. } => Err(auditor_read_only()),
            _ => Err(ApiError::forbidden(
                "provider_only",
                "only the provider's operator may do this",
            )),
        }
    }

    /// The provider, or the administrator of `org_id`.
    pub fn require_org(&self, org_id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Provider { .. } => Ok(()),
            Caller::OrgAdmin { org_id: own, .. } if own == org_id => Ok(()),
            Caller::OrgAdmin { .. } => Err(ApiError::forbidden(
                "other_organisation",
                "an organisation's administrator may act only on its own organisation",
            )),
            Caller::Device(_) => Err(ApiError::forbidden(
                "admin_only",
                "this needs an administrator credential",
            )),
            Caller::Auditor { .. } => Err(auditor_read_only()),
        }
    }

    /// Organisation scope for listings: None = everything (provider).
    pub fn org_scope(&self) -> Result<Option<&str>, ApiError> {
        match self {
            Caller::Provider { .. } => Ok(None),
            Caller::OrgAdmin { org_id, .. } => Ok(Some(org_id)),
            Caller::Device(_) => Err(ApiError::forbidden(
                "admin_only",
                "this needs an administrator credential",
            )),
            Caller::Auditor { .. } => Err(auditor_read_only()),
        }
    }

    /// Whose audit records the caller may read: None = all (provider), or one
    /// organisation (its administrators and its auditors).
    pub fn audit_scope(&self) -> Result<Option<&str>, ApiError> {
        match self {
            Caller::Auditor { org_id, .. } => Ok(Some(org_id)),
            _ => self.org_scope(),
        }
    }

    /// The provider, or the administrators and auditors of `org_id`: who may read an
    /// organisation's ledger and check sheets.
    pub fn require_read(&self, org_id: &str) -> Result<(), ApiError> {
        match self.audit_scope()? {
            Some(own) if own != org_id => Err(ApiError::forbidden(
                "other_organisation",
                "an organisation's administrator may act only on its own organisation",
            )),
            _ => Ok(()),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.org_scope().map(|_| ())
    }

    pub fn device(&self, tier: Tier) -> Result<&DeviceCaller, ApiError> {
        match self {
            Caller::Device(d) if d.tier == tier => Ok(d),
            Caller::Device(d) => Err(ApiError::forbidden(
                "wrong_tier",
                format!(
                    "{} cannot be used here; this endpoint requires {}",
                    d.tier.describe(),
                    tier.describe()
                ),
            )),
            _ => Err(ApiError::unauthenticated(format!(
                "this endpoint requires mutual TLS with {}",
                tier.describe()
            ))),
        }
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

impl FromRequestParts<Arc<Center>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, center: &Arc<Center>) -> Result<Self, ApiError> {
        let caller = authenticate(parts, center).await?;
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            slot.set(caller.actor());
        }
        Ok(caller)
    }
}

async fn authenticate(parts: &Parts, center: &Center) -> Result<Caller, ApiError> {
    // A caller the web console (crates/console) authenticated itself (password and
    // second factor) and passes in-process, so its requests meet exactly the checks an
    // API call meets. Only code in this process can set a request extension; nothing
    // a client sends over the network becomes one.
    if let Some(c) = parts.extensions.get::<Caller>() {
        return Ok(c.clone());
    }
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let h = h
            .to_str()
            .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
        let token = h.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::unauthenticated("Authorization must be 'Bearer <credential>'")
        })?;
        let token = token.trim();
        if token.starts_with(AUDITOR_PREFIX) {
            return auditor_from_token(center, token).await;
        }
        return admin_from_token(center, token).await;
    }
    if let Some(peer) = parts.extensions.get::<PeerCert>() {
        return device_from_cert(center, peer).await;
    }
    Err(ApiError::unauthenticated(
        "no credential: send an administrator credential or use mutual TLS with a device certificate",
    ))
}

/// Check `<prefix>.<id>.<secret>` against `table` (admins or auditors); the
/// row's org_id when the secret matches.
async fn check_token(
    center: &Center,
    token: &str,
    want_prefix: &str,
    table: &str,
) -> Result<(String, Option<String>), ApiError> {
    let bad = || ApiError::unauthenticated("invalid administrator credential");
    let mut parts = token.splitn(3, '.');
    let (prefix, id, secret) = (parts.next(), parts.next(), parts.next());
    let (Some(prefix), Some(id), Some(secret)) = (prefix, id, secret) else {
        return Err(bad());
    };
    if prefix != want_prefix {
        return Err(bad());
    }
    let row = sqlx::query(&format!(
        "SELECT org_id, secret_hash FROM {table} WHERE id = $1 AND revoked_ms IS NULL"
    ))
    .bind(id)
    .fetch_optional(&center.db.pool)
    .await?;
    // Hash even when the id is unknown, so timing does not reveal which ids exist.
    let presented = hash_secret(secret);
    let Some(row) = row else {
        let _ = presented.as_bytes().ct_eq(&[0u8; 64]);
        return Err(bad());
    };
    let stored: String = row.get(1);
    if !bool::from(presented.as_bytes().ct_eq(stored.as_bytes())) {
        return Err(bad());
    }
    Ok((id.to_string(), row.get(0)))
}

async fn auditor_from_token(center: &Center, token: &str) -> Result<Caller, ApiError> {
    let (id, org) = check_token(center, token, AUDITOR_PREFIX, "auditors").await?;
    Ok(Caller::Auditor {
        auditor_id: id,
        org_id: org.unwrap_or_default(),
    })
}

async fn admin_from_token(center: &Center, token: &str) -> Result<Caller, ApiError> {
    let (id, org) = check_token(center, token, ADMIN_PREFIX, "admins").await?;
    Ok(match org {
        None => Caller::Provider { admin_id: id },
        Some(org_id) => Caller::OrgAdmin {
            admin_id: id,
            org_id,
        },
    })
}

async fn device_from_cert(center: &Center, peer: &PeerCert) -> Result<Caller, ApiError> {
    let row = sqlx::query(
        "SELECT c.tier, c.device_id, c.fingerprint, c.revoked_ms, c.not_after, d.owner_org, d.status \
         FROM certs c JOIN devices d ON d.id = c.device_id WHERE c.serial = $1",
    )
    .bind(peer.serial as i64)
    .fetch_optional(&center.db.pool)
    .await?
    .ok_or_else(|| ApiError::forbidden("unknown_certificate", "this certificate was not issued by this centre"))?;
    let fingerprint: String = row.get(2);
    if !bool::from(fingerprint.as_bytes().ct_eq(peer.fingerprint.as_bytes())) {
        return Err(ApiError::forbidden(
            "unknown_certificate",
            "this certificate was not issued by this centre",
        ));
    }
    let revoked: Option<i64> = row.get(3);
    if revoked.is_some() {
        return Err(ApiError::forbidden(
            "revoked",
            "this certificate has been revoked",
        ));
    }
    let not_after: i64 = row.get(4);
    if not_after * 1000 < crate::db::now_ms() {
        return Err(ApiError::forbidden(
            "expired",
            "this certificate has expired",
        ));
    }
    let tier = match row.get::<String, _>(0).as_str() {
        "device" => Tier::Device,
        _ => Tier::Service,
    };
    Ok(Caller::Device(DeviceCaller {
        device_id: row.get(1),
        org_id: row.get(5),
        tier,
        serial: peer.serial,
    }))
}

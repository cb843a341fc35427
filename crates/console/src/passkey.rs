//! WebAuthn passkeys for console accounts (issue 10): registration by a logged-in
//! user, and login with a passkey alone (it is possession and, with user
//! verification required, a PIN or biometric: two factors in one gesture).
//!
//! The ceremonies' state lives in the database for five minutes and is used once, so
//! replicas behind one address share it. The relying party is the host the browser
//! used, and only a DNS name the centre's TLS certificate covers is accepted: a page
//! served under any other name cannot start a ceremony.

use dodvpn_center::error::ApiError;
use dodvpn_center::Center;
use serde_json::json;
use sqlx::Row;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder,
};

use crate::store::{random_hex, sha256_hex, User};

/// A ceremony must finish within this.
pub const CEREMONY_MS: i64 = 5 * 60 * 1000;
/// Passkeys per account.
pub const MAX_PER_USER: i64 = 10;
pub const MAX_NAME: usize = 64;
/// Live ceremonies of one kind per account.
pub const LIVE_CEREMONIES: i64 = 5;

/// Why a ceremony could not go on; each maps to a catalogue key for the person.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The page was not reached under one of the centre's DNS names.
    WrongHost,
    /// No such ceremony, used already, expired, or another user's.
    NoCeremony,
    /// The authenticator's answer did not verify (wrong credential, wrong origin…).
    NotVerified,
    TooMany,
    NoPasskeys,
}

impl Refusal {
    pub fn key(&self) -> &'static str {
        match self {
            Refusal::WrongHost => "passkey.wrong_host",
            Refusal::NoCeremony => "passkey.no_ceremony",
            Refusal::NotVerified => "passkey.not_verified",
            Refusal::TooMany => "passkey.too_many",
            Refusal::NoPasskeys => "passkey.none",
        }
    }
}

pub enum Error {
    Refused(Refusal),
    Api(ApiError),
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(e)
    }
}
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Api(e.into())
    }
}

fn refused<T>(r: Refusal) -> Result<T, Error> {
    Err(Error::Refused(r))
}

/// The relying party for a request that arrived for `authority` (host[:port]).
pub fn relying_party(center: &Center, authority: &str) -> Result<Webauthn, Error> {
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let names = center
        .pki
        .tls_server_cert_chain_der()
        .first()
        .and_then(|der| dodvpn_pki::inspect(der).ok())
        .map(|i| i.dns_names)
        .unwrap_or_default();
    // WebAuthn has no IP-address relying parties; a name must be one we serve.
    if host.parse::<std::net::IpAddr>().is_ok() || !names.iter().any(|n| n == host) {
        return refused(Refusal::WrongHost);
    }
    let origin = Url::parse(&format!("https://{authority}"))
        .map_err(|_| Error::Refused(Refusal::WrongHost))?;
    WebauthnBuilder::new(host, &origin)
        .and_then(|b| b.rp_name("dodvpn").build())
        .map_err(|_| Error::Refused(Refusal::WrongHost))
}

/// The stable WebAuthn user handle of an account (not its id, which is an audit name).
fn user_handle(user: &User) -> Uuid {
    let d = ring::digest::digest(&ring::digest::SHA256, user.id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    Uuid::from_bytes(b)
}

pub async fn count(c: &Center, user_id: &str) -> Result<i64, ApiError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM console_passkeys WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&c.db.pool)
            .await?,
    )
}

/// A registered passkey as the account page lists it.
pub struct Listed {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

pub async fn list(c: &Center, user_id: &str) -> Result<Vec<Listed>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, name, created_ms, last_used_ms FROM console_passkeys WHERE user_id = $1 ORDER BY created_ms",
    )
    .bind(user_id)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Listed {
            id: r.get(0),
            name: r.get(1),
            created_ms: r.get(2),
            last_used_ms: r.get(3),
        })
        .collect())
}

async fn passkeys_of(c: &Center, user_id: &str) -> Result<Vec<(String, Passkey)>, Error> {
    let rows = sqlx::query("SELECT id, passkey FROM console_passkeys WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&c.db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            let text: String = r.get(1);
            serde_json::from_str(&text)
                .map(|p| (r.get(0), p))
                .map_err(|_| Error::Api(ApiError::internal("stored passkey unreadable")))
        })
        .collect()
}

async fn save_ceremony(
    c: &Center,
    kind: &str,
    user: &User,
    state: String,
) -> Result<String, Error> {
    let ceremony = random_hex(32);
    let mut tx = c.db.begin_write().await?;
    sqlx::query("DELETE FROM console_ceremonies WHERE expires_ms < $1")
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    // Anyone may start a login for a known name: keep only its newest few, so a flood
    // of starts neither grows the table nor holds many live challenges.
    sqlx::query(
        "DELETE FROM console_ceremonies WHERE user_id = $1 AND kind = $2 AND id_hash NOT IN \
         (SELECT id_hash FROM console_ceremonies WHERE user_id = $1 AND kind = $2 ORDER BY expires_ms DESC LIMIT $3)",
    )
    .bind(&user.id)
    .bind(kind)
    .bind(LIVE_CEREMONIES - 1)
    .execute(&mut *tx.tx)
    .await?;
    sqlx::query("INSERT INTO console_ceremonies (id_hash, kind, user_id, state, expires_ms) VALUES ($1,$2,$3,$4,$5)")
        .bind(sha256_hex(&ceremony))
        .bind(kind)
        .bind(&user.id)
        .bind(state)
        .bind(tx.now + CEREMONY_MS)
        .execute(&mut *tx.tx)
        .await?;
    tx.commit().await?;
    Ok(ceremony)
}

/// Take (and so end) a ceremony: its user and state, if it is live and of `kind`.
async fn take_ceremony(c: &Center, kind: &str, ceremony: &str) -> Result<(String, String), Error> {
    if ceremony.len() != 64 || !ceremony.bytes().all(|b| b.is_ascii_hexdigit()) {
        return refused(Refusal::NoCeremony);
    }
    let mut tx = c.db.begin_write().await?;
    let row = sqlx::query(
        "SELECT user_id, state, expires_ms FROM console_ceremonies WHERE id_hash = $1 AND kind = $2",
    )
    .bind(sha256_hex(ceremony))
    .bind(kind)
    .fetch_optional(&mut *tx.tx)
    .await?;
    sqlx::query("DELETE FROM console_ceremonies WHERE id_hash = $1")
        .bind(sha256_hex(ceremony))
        .execute(&mut *tx.tx)
        .await?;
    let now = tx.now;
    tx.commit().await?;
    match row {
        Some(r) if r.get::<i64, _>(2) >= now => Ok((r.get(0), r.get(1))),
        _ => refused(Refusal::NoCeremony),
    }
}

/// Begin registering a passkey for a logged-in `user`.
pub async fn begin_register(
    c: &Center,
    rp: &Webauthn,
    user: &User,
) -> Result<(String, CreationChallengeResponse), Error> {
    let existing = passkeys_of(c, &user.id).await?;
    if existing.len() as i64 >= MAX_PER_USER {
        return refused(Refusal::TooMany);
    }
    let exclude = existing.iter().map(|(_, p)| p.cred_id().clone()).collect();
    let (options, state) = rp
        .start_passkey_registration(
            user_handle(user),
            &user.username,
            &user.username,
            Some(exclude),
        )
        .map_err(|_| Error::Api(ApiError::internal("cannot start a passkey registration")))?;
    let state = serde_json::to_string(&state).map_err(|_| ApiError::internal("ceremony state"))?;
    Ok((save_ceremony(c, "register", user, state).await?, options))
}

/// Finish a registration: the passkey is stored and the factor change audited.
pub async fn finish_register(
    c: &Center,
    rp: &Webauthn,
    user: &User,
    ceremony: &str,
    name: &str,
    credential: &RegisterPublicKeyCredential,
) -> Result<String, Error> {
    let (owner, state) = take_ceremony(c, "register", ceremony).await?;
    if owner != user.id {
        return refused(Refusal::NoCeremony);
    }
    let state: PasskeyRegistration =
        serde_json::from_str(&state).map_err(|_| ApiError::internal("ceremony state"))?;
    let Ok(passkey) = rp.finish_passkey_registration(credential, &state) else {
        return refused(Refusal::NotVerified);
    };
    let cred_id = serde_json::to_value(passkey.cred_id())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| ApiError::internal("credential id"))?;
    let text = serde_json::to_string(&passkey).map_err(|_| ApiError::internal("passkey"))?;
    let id = dodvpn_center::new_id("pk");
    let mut tx = c.db.begin_write().await?;
    let taken: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM console_passkeys WHERE credential_id = $1")
            .bind(&cred_id)
            .fetch_one(&mut *tx.tx)
            .await?;
    if taken > 0 {
        return refused(Refusal::NotVerified);
    }
    sqlx::query("INSERT INTO console_passkeys (id, user_id, credential_id, name, passkey, created_ms) VALUES ($1,$2,$3,$4,$5,$6)")
        .bind(&id)
        .bind(&user.id)
        .bind(&cred_id)
        .bind(name)
        .bind(text)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &user.actor(),
        "console.factor.passkey_added",
        &user.id,
        json!({"username": user.username, "org_id": user.org_id, "passkey": id, "name": name}),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Remove one of the user's own passkeys (404 for anyone else's).
pub async fn remove(c: &Center, user: &User, id: &str) -> Result<bool, ApiError> {
    let mut tx = c.db.begin_write().await?;
    let n = sqlx::query("DELETE FROM console_passkeys WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(&user.id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    tx.audit(
        &user.actor(),
        "console.factor.passkey_removed",
        &user.id,
        json!({"username": user.username, "org_id": user.org_id, "passkey": id}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Begin a passkey login for the named account: a challenge for its passkeys only.
pub async fn begin_login(
    c: &Center,
    rp: &Webauthn,
    user: &User,
) -> Result<(String, RequestChallengeResponse), Error> {
    let keys: Vec<Passkey> = passkeys_of(c, &user.id)
        .await?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if keys.is_empty() {
        return refused(Refusal::NoPasskeys);
    }
    let (options, state) = rp
        .start_passkey_authentication(&keys)
        .map_err(|_| Error::Api(ApiError::internal("cannot start a passkey login")))?;
    let state = serde_json::to_string(&state).map_err(|_| ApiError::internal("ceremony state"))?;
    Ok((save_ceremony(c, "login", user, state).await?, options))
}

/// Finish a passkey login: the account whose ceremony it was, if the assertion is
/// from one of *its* passkeys and verifies. The signature counter is kept.
pub async fn finish_login(
    c: &Center,
    rp: &Webauthn,
    ceremony: &str,
    credential: &PublicKeyCredential,
) -> Result<(String, Result<(), Refusal>), Error> {
    let (user_id, state) = take_ceremony(c, "login", ceremony).await?;
    let state: PasskeyAuthentication =
        serde_json::from_str(&state).map_err(|_| ApiError::internal("ceremony state"))?;
    let Ok(result) = rp.finish_passkey_authentication(credential, &state) else {
        return Ok((user_id, Err(Refusal::NotVerified)));
    };
    for (id, mut key) in passkeys_of(c, &user_id).await? {
        if key.cred_id() == result.cred_id() {
            key.update_credential(&result);
            let text = serde_json::to_string(&key).map_err(|_| ApiError::internal("passkey"))?;
            let mut tx = c.db.begin_write().await?;
            sqlx::query(
                "UPDATE console_passkeys SET passkey = $2, last_used_ms = $3 WHERE id = $1",
            )
            .bind(&id)
            .bind(text)
            .bind(tx.now)
            .execute(&mut *tx.tx)
            .await?;
            tx.commit().await?;
            return Ok((user_id, Ok(())));
        }
    }
    Ok((user_id, Err(Refusal::NotVerified)))
}

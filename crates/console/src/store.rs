//! The console's tables (migration 0013): users, their recovery codes, one-time
//! invitations and browser sessions. Every change runs in the centre's write
//! transaction with its audit record (db.rs), so a change and its record commit together.

use dodvpn_center::db::{now_ms, WriteTx};
use dodvpn_center::error::ApiError;
use dodvpn_center::{new_id, Center};
use serde_json::json;
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::roles::Role;
use crate::totp;

/// 30 minutes without a request end a session; 12 hours end it whatever happens.
pub const IDLE_MS: i64 = 30 * 60 * 1000;
pub const MAX_MS: i64 = 12 * 3600 * 1000;
/// Between the password and the second factor: 5 minutes.
pub const PASSWORD_STAGE_MS: i64 = 5 * 60 * 1000;
pub const SETUP_INVITE_TTL_MS: i64 = 7 * 86400 * 1000;
pub const INVITE_TTL_MS: i64 = 3 * 86400 * 1000;
pub const RECOVERY_CODES: usize = 10;
/// Failures before the first lockout; each further failure doubles it, up to an hour.
pub const FREE_FAILURES: i64 = 5;
pub const FIRST_LOCK_MS: i64 = 30_000;
pub const MAX_LOCK_MS: i64 = 3_600_000;

pub fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

/// Lockout after `failures` consecutive failures: none for the first five, then
/// 30 s, 60 s, 120 s … capped at one hour.
pub fn lock_ms(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(20) as u32;
    (FIRST_LOCK_MS.saturating_mul(1i64 << doublings)).min(MAX_LOCK_MS)
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub org_id: Option<String>,
    pub password_hash: String,
    pub totp_secret: String,
    pub totp_last_step: i64,
    pub failed_logins: i64,
    pub locked_until_ms: i64,
    pub created_ms: i64,
    pub disabled_ms: Option<i64>,
}

const USER_COLS: &str = "id, username, role, org_id, password_hash, totp_secret, totp_last_step, failed_logins, locked_until_ms, created_ms, disabled_ms";

fn user_from(r: &sqlx::any::AnyRow) -> Result<User, ApiError> {
    let role: String = r.try_get(2)?;
    Ok(User {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        role: Role::parse(&role).ok_or_else(|| ApiError::internal("unknown console role"))?,
        org_id: r.try_get(3)?,
        password_hash: r.try_get(4)?,
        totp_secret: r.try_get(5)?,
        totp_last_step: r.try_get(6)?,
        failed_logins: r.try_get(7)?,
        locked_until_ms: r.try_get(8)?,
        created_ms: r.try_get(9)?,
        disabled_ms: r.try_get(10)?,
    })
}

impl User {
    /// Actor name in audit records; names the organisation so its auditors see it.
    pub fn actor(&self) -> String {
        match &self.org_id {
            Some(o) => format!("console:{}@{o}", self.id),
            None => format!("console:{}", self.id),
        }
    }
}

pub async fn user_by_name(c: &Center, username: &str) -> Result<Option<User>, ApiError> {
    sqlx::query(&format!(
        "SELECT {USER_COLS} FROM console_users WHERE username = $1 AND disabled_ms IS NULL"
    ))
    .bind(username)
    .fetch_optional(&c.db.pool)
    .await?
    .map(|r| user_from(&r))
    .transpose()
}

pub async fn user_by_id(c: &Center, id: &str) -> Result<Option<User>, ApiError> {
    sqlx::query(&format!(
        "SELECT {USER_COLS} FROM console_users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&c.db.pool)
    .await?
    .map(|r| user_from(&r))
    .transpose()
}

/// Users visible in `scope` (None: all).
pub async fn list_users(c: &Center, scope: Option<&str>) -> Result<Vec<User>, ApiError> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLS} FROM console_users WHERE ($1 = '' OR org_id = $1) ORDER BY username"
    ))
    .bind(scope.unwrap_or(""))
    .fetch_all(&c.db.pool)
    .await?;
    rows.iter().map(user_from).collect()
}

pub async fn has_provider_admin(c: &Center) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM console_users WHERE role = 'provider_admin' AND disabled_ms IS NULL",
    )
    .fetch_one(&c.db.pool)
    .await?;
    Ok(n > 0)
}

pub async fn live_provider_invite(c: &Center) -> Result<bool, ApiError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM console_invites WHERE role = 'provider_admin' AND used_ms IS NULL AND expires_ms > $1",
    )
    .bind(now_ms())
    .fetch_one(&c.db.pool)
    .await?;
    Ok(n > 0)
}

/// Create a one-time invitation and return its code (shown once; only its hash is kept).
pub async fn create_invite(
    c: &Center,
    actor: &str,
    role: Role,
    org: Option<&str>,
    ttl_ms: i64,
) -> Result<String, ApiError> {
    let code = format!("dodvpn-invite.{}", random_hex(16));
    let mut tx = c.db.begin_write().await?;
    sqlx::query("INSERT INTO console_invites (code_hash, role, org_id, created_by, created_ms, expires_ms) VALUES ($1,$2,$3,$4,$5,$6)")
        .bind(sha256_hex(&code))
        .bind(role.as_str())
        .bind(org)
        .bind(actor)
        .bind(tx.now)
        .bind(tx.now + ttl_ms)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        actor,
        "console.user.invited",
        org.unwrap_or("provider"),
        json!({"role": role.as_str(), "org_id": org, "expires_ms": tx.now + ttl_ms}),
    )
    .await?;
    tx.commit().await?;
    Ok(code)
}

/// What a new account gets once: its TOTP secret and recovery codes.
pub struct NewFactors {
    pub user: User,
    pub totp_secret_b32: String,
    pub recovery_codes: Vec<String>,
}

pub enum SetupError {
    BadInvite,
    NameTaken,
    Api(ApiError),
}

impl From<ApiError> for SetupError {
    fn from(e: ApiError) -> Self {
        SetupError::Api(e)
    }
}

/// Use invitation `code` to create `username` with `password_hash`; the invitation is
/// consumed in the same transaction.
pub async fn accept_invite(
    c: &Center,
    code: &str,
    username: &str,
    password_hash: &str,
) -> Result<NewFactors, SetupError> {
    let mut tx = c.db.begin_write().await?;
    let row = sqlx::query(
        "SELECT role, org_id, expires_ms, used_ms, code_hash FROM console_invites WHERE code_hash = $1",
    )
    .bind(sha256_hex(code))
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(ApiError::from)?;
    let Some(row) = row else {
        return Err(SetupError::BadInvite);
    };
    let stored: String = row.try_get(4).map_err(ApiError::from)?;
    // The lookup was by hash; compare again in constant time so the answer's timing
    // never depends on how much of a guessed code matched.
    if !bool::from(stored.as_bytes().ct_eq(sha256_hex(code).as_bytes())) {
        return Err(SetupError::BadInvite);
    }
    let (role, org, expires, used): (String, Option<String>, i64, Option<i64>) = (
        row.try_get(0).map_err(ApiError::from)?,
        row.try_get(1).map_err(ApiError::from)?,
        row.try_get(2).map_err(ApiError::from)?,
        row.try_get(3).map_err(ApiError::from)?,
    );
    if used.is_some() || expires < tx.now {
        return Err(SetupError::BadInvite);
    }
    let role = Role::parse(&role).ok_or(SetupError::BadInvite)?;
    let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_users WHERE username = $1")
        .bind(username)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(ApiError::from)?;
    if taken > 0 {
        return Err(SetupError::NameTaken);
    }
    let mut secret = [0u8; totp::SECRET_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let secret_b32 = totp::base32_encode(&secret);
    let id = new_id("usr");
    sqlx::query("INSERT INTO console_users (id, username, role, org_id, password_hash, totp_secret, created_ms) VALUES ($1,$2,$3,$4,$5,$6,$7)")
        .bind(&id)
        .bind(username)
        .bind(role.as_str())
        .bind(org.as_deref())
        .bind(password_hash)
        .bind(&secret_b32)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .map_err(ApiError::from)?;
    sqlx::query("UPDATE console_invites SET used_ms = $2 WHERE code_hash = $1")
        .bind(sha256_hex(code))
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .map_err(ApiError::from)?;
    let codes = new_recovery_codes(&mut tx, &id).await?;
    let user = User {
        id: id.clone(),
        username: username.to_string(),
        role,
        org_id: org.clone(),
        password_hash: password_hash.to_string(),
        totp_secret: secret_b32.clone(),
        totp_last_step: 0,
        failed_logins: 0,
        locked_until_ms: 0,
        created_ms: tx.now,
        disabled_ms: None,
    };
    tx.audit(
        &user.actor(),
        "console.user.created",
        &id,
        json!({"username": username, "role": role.as_str(), "org_id": org, "factors": ["password", "totp", "recovery_codes"]}),
    )
    .await?;
    tx.commit().await?;
    Ok(NewFactors {
        user,
        totp_secret_b32: secret_b32,
        recovery_codes: codes,
    })
}

async fn new_recovery_codes(tx: &mut WriteTx<'_>, user_id: &str) -> Result<Vec<String>, ApiError> {
    sqlx::query("DELETE FROM console_recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
    let mut out = Vec::new();
    for _ in 0..RECOVERY_CODES {
        // 10 base32 characters = 50 bits each, grouped for reading aloud.
        let mut b = [0u8; 7];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        let s = totp::base32_encode(&b)[..10].to_string();
        let code = format!("{}-{}", &s[..5], &s[5..]);
        sqlx::query("INSERT INTO console_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user_id)
            .bind(sha256_hex(&normalise_recovery(&code)))
            .execute(&mut *tx.tx)
            .await?;
        out.push(code);
    }
    Ok(out)
}

pub fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The outcome of one login step, already recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    Ok,
    Wrong,
    /// Locked until this time (ms).
    Locked(i64),
    Replayed,
}

/// Record a failed factor: count it, lock when due, audit both.
pub async fn record_failure(
    c: &Center,
    user: &User,
    factor: &str,
    why: &str,
    remote: Option<&str>,
) -> Result<Attempt, ApiError> {
    let mut tx = c.db.begin_write().await?;
    let failures: i64 = sqlx::query_scalar("SELECT failed_logins FROM console_users WHERE id = $1")
        .bind(&user.id)
        .fetch_one(&mut *tx.tx)
        .await?;
    let failures = failures + 1;
    let lock = lock_ms(failures);
    let until = if lock > 0 { tx.now + lock } else { 0 };
    sqlx::query("UPDATE console_users SET failed_logins = $2, locked_until_ms = $3 WHERE id = $1")
        .bind(&user.id)
        .bind(failures)
        .bind(until)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        &user.actor(),
        if why == "replayed" {
            "console.login.totp_replayed"
        } else {
            "console.login.failed"
        },
        &user.id,
        json!({"username": user.username, "org_id": user.org_id, "factor": factor, "why": why, "failures": failures, "remote": remote}),
    )
    .await?;
    if lock > 0 {
        tx.audit(
            &user.actor(),
            "console.login.locked",
            &user.id,
            json!({"username": user.username, "org_id": user.org_id, "until_ms": until, "lock_ms": lock, "failures": failures}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(if lock > 0 {
        Attempt::Locked(until)
    } else if why == "replayed" {
        Attempt::Replayed
    } else {
        Attempt::Wrong
    })
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id_hash: String,
    pub user_id: String,
    pub full: bool,
    pub csrf: String,
    pub created_ms: i64,
    pub last_ms: i64,
}

/// A new session: returns (cookie value, csrf token). Only SHA-256 of the cookie is stored.
pub async fn create_session(
    tx: &mut WriteTx<'_>,
    user_id: &str,
    full: bool,
) -> Result<(String, String), ApiError> {
    let sid = random_hex(32);
    let csrf = random_hex(32);
    sqlx::query("INSERT INTO console_sessions (id_hash, user_id, stage, csrf, created_ms, last_ms) VALUES ($1,$2,$3,$4,$5,$5)")
        .bind(sha256_hex(&sid))
        .bind(user_id)
        .bind(if full { "full" } else { "password" })
        .bind(&csrf)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    Ok((sid, csrf))
}

pub async fn load_session(c: &Center, sid: &str) -> Result<Option<Session>, ApiError> {
    let h = sha256_hex(sid);
    let row = sqlx::query(
        "SELECT id_hash, user_id, stage, csrf, created_ms, last_ms FROM console_sessions WHERE id_hash = $1",
    )
    .bind(&h)
    .fetch_optional(&c.db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let stored: String = r.try_get(0)?;
    if !bool::from(stored.as_bytes().ct_eq(h.as_bytes())) {
        return Ok(None);
    }
    Ok(Some(Session {
        id_hash: stored,
        user_id: r.try_get(1)?,
        full: r.try_get::<String, _>(2)? == "full",
        csrf: r.try_get(3)?,
        created_ms: r.try_get(4)?,
        last_ms: r.try_get(5)?,
    }))
}

/// Why a session is no longer good, if it is not.
pub fn expired(s: &Session, now: i64) -> Option<&'static str> {
    if !s.full && now - s.created_ms > PASSWORD_STAGE_MS {
        Some("second_factor_timeout")
    } else if now - s.last_ms > IDLE_MS {
        Some("idle")
    } else if now - s.created_ms > MAX_MS {
        Some("max_age")
    } else {
        None
    }
}

/// Refresh the idle clock, at most once a minute (a write per page view would be waste).
pub async fn touch(c: &Center, s: &Session) -> Result<(), ApiError> {
    let now = now_ms();
    if now - s.last_ms < 60_000 {
        return Ok(());
    }
    sqlx::query("UPDATE console_sessions SET last_ms = $2 WHERE id_hash = $1")
        .bind(&s.id_hash)
        .bind(now)
        .execute(&c.db.pool)
        .await?;
    Ok(())
}

/// End a session (logout, expiry, or replacement after the second factor), audited.
pub async fn end_session(
    c: &Center,
    s: &Session,
    user: Option<&User>,
    action: &str,
    why: &str,
) -> Result<(), ApiError> {
    let mut tx = c.db.begin_write().await?;
    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(&s.id_hash)
        .execute(&mut *tx.tx)
        .await?;
    if !action.is_empty() {
        let actor = user.map(User::actor).unwrap_or_else(|| "console".into());
        tx.audit(
            &actor,
            action,
            &s.user_id,
            json!({"why": why, "org_id": user.and_then(|u| u.org_id.clone())}),
        )
        .await?;
    }
    tx.commit().await
}

pub enum SecondFactor {
    Totp(u64),
    Recovery,
    /// A WebAuthn passkey with user verification: both factors at once, no password.
    Passkey,
}

/// Finish a login: the password-stage session is replaced by a new full one (a new
/// id, so a session id seen before the login is worth nothing after it).
pub async fn complete_login(
    c: &Center,
    old: Option<&Session>,
    user: &User,
    factor: SecondFactor,
    remote: Option<&str>,
) -> Result<(String, String), ApiError> {
    let mut tx = c.db.begin_write().await?;
    if let Some(old) = old {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(&old.id_hash)
            .execute(&mut *tx.tx)
            .await?;
    }
    let factors: &[&str] = match factor {
        SecondFactor::Totp(step) => {
            sqlx::query("UPDATE console_users SET totp_last_step = $2 WHERE id = $1")
                .bind(&user.id)
                .bind(step as i64)
                .execute(&mut *tx.tx)
                .await?;
            &["password", "totp"]
        }
        SecondFactor::Recovery => &["password", "recovery_code"],
        SecondFactor::Passkey => &["passkey"],
    };
    sqlx::query("UPDATE console_users SET failed_logins = 0, locked_until_ms = 0 WHERE id = $1")
        .bind(&user.id)
        .execute(&mut *tx.tx)
        .await?;
    let out = create_session(&mut tx, &user.id, true).await?;
    tx.audit(
        &user.actor(),
        "console.login",
        &user.id,
        json!({"username": user.username, "org_id": user.org_id, "factors": factors, "remote": remote}),
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// Use one recovery code: true if it was unused (it is now used, and audited).
pub async fn use_recovery_code(c: &Center, user: &User, code: &str) -> Result<bool, ApiError> {
    let h = sha256_hex(&normalise_recovery(code));
    let mut tx = c.db.begin_write().await?;
    let n = sqlx::query(
        "UPDATE console_recovery_codes SET used_ms = $3 WHERE user_id = $1 AND code_hash = $2 AND used_ms IS NULL",
    )
    .bind(&user.id)
    .bind(&h)
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM console_recovery_codes WHERE user_id = $1 AND used_ms IS NULL",
    )
    .bind(&user.id)
    .fetch_one(&mut *tx.tx)
    .await?;
    tx.audit(
        &user.actor(),
        "console.factor.recovery_code_used",
        &user.id,
        json!({"username": user.username, "org_id": user.org_id, "left": left}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// New recovery codes for `user` (the old ones stop working), audited.
pub async fn regenerate_recovery(c: &Center, user: &User) -> Result<Vec<String>, ApiError> {
    let mut tx = c.db.begin_write().await?;
    let codes = new_recovery_codes(&mut tx, &user.id).await?;
    tx.audit(
        &user.actor(),
        "console.factor.recovery_codes_replaced",
        &user.id,
        json!({"username": user.username, "org_id": user.org_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(codes)
}

/// Disable a user and end all its sessions, audited with before → after.
pub async fn disable_user(c: &Center, actor: &str, user: &User) -> Result<(), ApiError> {
    let mut tx = c.db.begin_write().await?;
    sqlx::query("UPDATE console_users SET disabled_ms = $2 WHERE id = $1 AND disabled_ms IS NULL")
        .bind(&user.id)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
        .bind(&user.id)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        actor,
        "console.user.disabled",
        &user.id,
        json!({"username": user.username, "org_id": user.org_id, "before": {"enabled": true}, "after": {"enabled": false}}),
    )
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_backs_off_and_caps() {
        assert_eq!(lock_ms(4), 0);
        assert_eq!(lock_ms(5), 30_000);
        assert_eq!(lock_ms(6), 60_000);
        assert_eq!(lock_ms(7), 120_000);
        assert_eq!(lock_ms(100), MAX_LOCK_MS);
    }

    #[test]
    fn sessions_end_idle_and_at_twelve_hours() {
        let s = Session {
            id_hash: String::new(),
            user_id: String::new(),
            full: true,
            csrf: String::new(),
            created_ms: 0,
            last_ms: 0,
        };
        assert_eq!(expired(&s, IDLE_MS - 1), None);
        assert_eq!(expired(&s, IDLE_MS + 1), Some("idle"));
        let busy = Session {
            last_ms: MAX_MS,
            ..s.clone()
        };
        assert_eq!(expired(&busy, MAX_MS + 1), Some("max_age"));
        let half = Session { full: false, ..s };
        assert_eq!(
            expired(&half, PASSWORD_STAGE_MS + 1),
            Some("second_factor_timeout")
        );
    }
}

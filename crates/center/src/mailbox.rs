//! Store-and-forward mailboxes (R-SVC-4, issue 13). The centre is a post office that
//! cannot read the post: it keeps CMS ciphertext (AuthEnvelopedData, written and opened
//! by `dodvpn-message` at the edges) and minimal metadata (sender, recipients, size,
//! time, expiry), a directory of recipients' encryption certificates, and the policy of
//! who may write to whom (deny by default).
//!
//! Ciphertext lives in files under `<data_dir>/messages/`, written to a temporary name,
//! synced and renamed before the metadata commits: a crash or a dropped upload leaves
//! no row and no half-written message (a file without a row is swept by [`expire`]).
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::Row;

use crate::db::Db;
use crate::error::ApiError;

/// Messages expire after 90 days unless the deployment says otherwise.
pub const DEFAULT_EXPIRY_MS: i64 = 90 * 24 * 3600 * 1000;
/// The default quota of one mailbox (sum of the sizes of the messages it holds).
pub const DEFAULT_QUOTA_BYTES: i64 = 4 * 1024 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct MailboxConfig {
    pub data_dir: PathBuf,
    pub expiry_ms: i64,
    pub quota_bytes: i64,
    /// How often the centre deletes expired messages.
    pub sweep_every: std::time::Duration,
}

impl MailboxConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        MailboxConfig {
            data_dir: data_dir.into(),
            expiry_ms: DEFAULT_EXPIRY_MS,
            quota_bytes: DEFAULT_QUOTA_BYTES,
            sweep_every: std::time::Duration::from_secs(60),
        }
    }

    /// The defaults, or `DODVPN_MESSAGE_EXPIRY_SECS`, `DODVPN_MESSAGE_QUOTA_BYTES` and
    /// `DODVPN_MESSAGE_SWEEP_SECS` when set (a deployment's policy; tests use short ones).
    pub fn from_env(data_dir: impl Into<PathBuf>) -> Self {
        let mut c = Self::new(data_dir);
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<i64>().ok());
        if let Some(s) = num("DODVPN_MESSAGE_EXPIRY_SECS").filter(|s| *s > 0) {
            c.expiry_ms = s.saturating_mul(1000);
        }
        if let Some(q) = num("DODVPN_MESSAGE_QUOTA_BYTES").filter(|q| *q > 0) {
            c.quota_bytes = q;
        }
        if let Some(s) = num("DODVPN_MESSAGE_SWEEP_SECS").filter(|s| *s > 0) {
            c.sweep_every = std::time::Duration::from_secs(s as u64);
        }
        c
    }
    fn dir(&self) -> PathBuf {
        self.data_dir.join("messages")
    }
    fn file(&self, id: &str) -> PathBuf {
        self.dir().join(format!("{id}.cms"))
    }
}

/// Whose key opens the mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailboxKind {
    /// An organisation's mailbox: a device or site key of the organisation.
    Org,
    /// A person's mailbox: a key on the person's PKCS#11 token.
    Person,
}

impl MailboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxKind::Org => "org",
            MailboxKind::Person => "person",
        }
    }
}

/// The mailbox name of an organisation or of a person in it.
pub fn mailbox_name(kind: MailboxKind, org: &str, person: Option<&str>) -> String {
    match (kind, person) {
        (MailboxKind::Person, Some(p)) => format!("person:{org}:{p}"),
        _ => format!("org:{org}"),
    }
}

/// Metadata of a stored message: all the centre knows of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MessageMeta {
    pub id: String,
    pub sender_device: String,
    pub sender_org: String,
    pub size: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub receipt_requested: bool,
    pub read_ms: Option<i64>,
}

fn check_name(what: &str, s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request_code(
            "invalid_name",
            format!("{what} {s:?} is not a valid name"),
        ))
    }
}

/// Publishes (or replaces, on renewal) a mailbox's encryption certificate. The old
/// certificate's key stays in the holder's key store, so old messages still open.
pub async fn publish_certificate(
    db: &Db,
    kind: MailboxKind,
    org: &str,
    person: Option<&str>,
    device_id: &str,
    cert_pem: &str,
    actor: &str,
) -> Result<String, ApiError> {
    check_name("organisation", org)?;
    if let Some(p) = person {
        check_name("person", p)?;
    }
    let (_, der) = der_pem(cert_pem)?;
    let cert = <x509_cert::Certificate as der::Decode>::from_der(&der).map_err(|e| {
        ApiError::bad_request_code("invalid_certificate", format!("not a certificate: {e}"))
    })?;
    dodvpn_message::keys::cert_kind(&cert).map_err(|e| {
        ApiError::bad_request_code(
            "invalid_certificate",
            format!("unsuitable encryption key: {e}"),
        )
    })?;
    let mailbox = mailbox_name(kind, org, person);
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM message_directory WHERE mailbox = $1")
        .bind(&mailbox)
        .execute(&mut *tx.tx)
        .await?;
    sqlx::query("INSERT INTO message_directory (mailbox, org_id, kind, device_id, cert_pem, created_ms) VALUES ($1,$2,$3,$4,$5,$6)")
        .bind(&mailbox)
        .bind(org)
        .bind(kind.as_str())
        .bind(device_id)
        .bind(cert_pem)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        actor,
        "message.directory.publish",
        &mailbox,
        serde_json::json!({ "device": device_id, "kind": kind.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(mailbox)
}

fn der_pem(pem: &str) -> Result<(String, Vec<u8>), ApiError> {
    let p = pem::parse(pem)
        .map_err(|e| ApiError::bad_request_code("invalid_certificate", format!("not PEM: {e}")))?;
    Ok((p.tag().to_string(), p.into_contents()))
}

/// Lets `from_org` write to the mailboxes of `to_org` (policy; without it: denied).
pub async fn allow(db: &Db, from_org: &str, to_org: &str, actor: &str) -> Result<(), ApiError> {
    check_name("organisation", from_org)?;
    check_name("organisation", to_org)?;
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM message_policy WHERE from_org = $1 AND to_org = $2")
        .bind(from_org)
        .bind(to_org)
        .execute(&mut *tx.tx)
        .await?;
    sqlx::query("INSERT INTO message_policy (from_org, to_org, created_ms) VALUES ($1,$2,$3)")
        .bind(from_org)
        .bind(to_org)
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await?;
    tx.audit(
        actor,
        "message.policy.allow",
        &format!("{from_org}->{to_org}"),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await
}

async fn permitted(db: &Db, from_org: &str, to_org: &str) -> Result<bool, ApiError> {
    let r = sqlx::query("SELECT 1 FROM message_policy WHERE from_org = $1 AND to_org = $2")
        .bind(from_org)
        .bind(to_org)
        .fetch_optional(&db.pool)
        .await?;
    Ok(r.is_some())
}

struct Entry {
    org: String,
    device: String,
    cert_pem: String,
}

async fn entry(db: &Db, mailbox: &str) -> Result<Option<Entry>, ApiError> {
    let r =
        sqlx::query("SELECT org_id, device_id, cert_pem FROM message_directory WHERE mailbox = $1")
            .bind(mailbox)
            .fetch_optional(&db.pool)
            .await?;
    Ok(r.map(|r| Entry {
        org: r.get(0),
        device: r.get(1),
        cert_pem: r.get(2),
    }))
}

/// The encryption certificate of `mailbox`, for a sender of `sender_org`. Denied (403)
/// unless the policy lets the sender write to it; 404 if it has none.
pub async fn lookup(db: &Db, sender_org: &str, mailbox: &str) -> Result<String, ApiError> {
    let e = entry(db, mailbox)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no mailbox {mailbox}")))?;
    if !permitted(db, sender_org, &e.org).await? {
        return Err(ApiError::forbidden(
            "message_not_permitted",
            format!("{sender_org} may not write to {mailbox}"),
        ));
    }
    Ok(e.cert_pem)
}

/// Write a file of the centre's data directory durably: mode 0600, under a temporary
/// name, synced, renamed into place and its directory synced, so a crash leaves the old
/// state or the whole new file (messages here, check-sheet evidence files too).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("part");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Stores a message for `recipients` (mailbox names). Refused, with nothing stored: data
/// that is not a CMS AuthEnvelopedData (truncated, unknown OIDs), a recipient not in the
/// directory, a recipient the sender may not write to, a mailbox over its quota.
/// Each recipient's device gets an arrival notice without content.
pub async fn deposit(
    db: &Db,
    cfg: &MailboxConfig,
    sender_device: &str,
    sender_org: &str,
    recipients: &[String],
    ciphertext: &[u8],
    receipt_requested: bool,
) -> Result<MessageMeta, ApiError> {
    if recipients.is_empty() || recipients.len() > 100 {
        return Err(ApiError::bad_request_code(
            "recipients",
            "between 1 and 100 recipients",
        ));
    }
    dodvpn_message::check_envelope(ciphertext).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_cms",
            e.to_string(),
        )
    })?;
    let size = ciphertext.len() as i64;
    let devices = check_recipients(db, sender_org, recipients).await?;
    let id = crate::new_id("msg");
    let path = cfg.file(&id);
    let dir = cfg.dir();
    let (p2, bytes) = (path.clone(), ciphertext.to_vec());
    tokio::task::spawn_blocking(move || write_file(&p2, &bytes))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            tracing::error!("message store {}: {e}", dir.display());
            ApiError::internal("the message store cannot write")
        })?;
    commit(
        db,
        cfg,
        &id,
        sender_device,
        sender_org,
        recipients,
        &devices,
        size,
        receipt_requested,
    )
    .await
}

/// The devices of `recipients`; refused unless each is in the directory (404) and the
/// sender's organisation may write to it (403).
pub async fn check_recipients(
    db: &Db,
    sender_org: &str,
    recipients: &[String],
) -> Result<Vec<String>, ApiError> {
    if recipients.is_empty() || recipients.len() > 100 {
        return Err(ApiError::bad_request_code(
            "recipients",
            "between 1 and 100 recipients",
        ));
    }
    let mut devices = Vec::new();
    for m in recipients {
        let e = entry(db, m)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("recipient {m} is not in the directory")))?;
        if !permitted(db, sender_org, &e.org).await? {
            return Err(ApiError::forbidden(
                "message_not_permitted",
                format!("{sender_org} may not write to {m}"),
            ));
        }
        devices.push(e.device);
    }
    Ok(devices)
}

fn over_quota(m: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "quota_exceeded",
        format!("mailbox {m} is over its quota"),
    )
}

/// Refused (413 `quota_exceeded`) if `size` more bytes would put a recipient over its
/// quota: checked before an upload starts (its announced length), as it arrives, and
/// again in the transaction that stores it.
pub async fn check_quota(
    db: &Db,
    cfg: &MailboxConfig,
    recipients: &[String],
    size: i64,
) -> Result<(), ApiError> {
    for m in recipients {
        let used: Option<i64> = sqlx::query(
            "SELECT CAST(SUM(m.size) AS BIGINT) FROM messages m JOIN message_recipients r ON r.message_id = m.id WHERE r.mailbox = $1",
        )
        .bind(m)
        .fetch_one(&db.pool)
        .await?
        .try_get(0)
        .ok()
        .flatten();
        if used.unwrap_or(0).saturating_add(size) > cfg.quota_bytes {
            return Err(over_quota(m));
        }
    }
    Ok(())
}

/// Where an upload is written while it arrives (0600, in the messages directory, so
/// that the rename that completes it stays on one file system).
pub fn part_file(cfg: &MailboxConfig, id: &str) -> PathBuf {
    cfg.dir().join(format!("{id}.part"))
}

/// Creates the messages directory and an empty 0600 upload file for `id`.
pub fn create_part(cfg: &MailboxConfig, id: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(cfg.dir())?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(part_file(cfg, id))
}

/// An upload that arrived whole (synced, at [`part_file`]): checked to be a well-formed
/// AuthEnvelopedData that ends exactly where the upload ended (422 otherwise), renamed
/// into place, and only then its rows, notices and audit committed. On any refusal the
/// file is removed: no row and no file.
#[allow(clippy::too_many_arguments)]
pub async fn deposit_part(
    db: &Db,
    cfg: &MailboxConfig,
    id: &str,
    sender_device: &str,
    sender_org: &str,
    recipients: &[String],
    devices: &[String],
    size: i64,
    receipt_requested: bool,
) -> Result<MessageMeta, ApiError> {
    let part = part_file(cfg, id);
    let path = cfg.file(id);
    let (p1, p2) = (part.clone(), path.clone());
    let checked =
        tokio::task::spawn_blocking(move || -> Result<Result<(), String>, std::io::Error> {
            let f = std::fs::File::open(&p1)?;
            if let Err(e) = dodvpn_message::check_envelope_stream(std::io::BufReader::new(f)) {
                return Ok(Err(e.to_string()));
            }
            std::fs::rename(&p1, &p2)?;
            std::fs::File::open(p2.parent().expect("messages dir"))?.sync_all()?;
            Ok(Ok(()))
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&part);
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_cms",
                e,
            ));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            tracing::error!("message store {}: {e}", cfg.dir().display());
            return Err(ApiError::internal("the message store cannot write"));
        }
    }
    commit(
        db,
        cfg,
        id,
        sender_device,
        sender_org,
        recipients,
        devices,
        size,
        receipt_requested,
    )
    .await
}

/// The rows of a message whose ciphertext is in place; the file is removed if this fails.
#[allow(clippy::too_many_arguments)]
async fn commit(
    db: &Db,
    cfg: &MailboxConfig,
    id: &str,
    sender_device: &str,
    sender_org: &str,
    recipients: &[String],
    devices: &[String],
    size: i64,
    receipt_requested: bool,
) -> Result<MessageMeta, ApiError> {
    let path = cfg.file(id);
    let result = async {
        let mut tx = db.begin_write().await?;
        for m in recipients {
            let used: Option<i64> = sqlx::query(
                "SELECT CAST(SUM(m.size) AS BIGINT) FROM messages m JOIN message_recipients r ON r.message_id = m.id WHERE r.mailbox = $1",
            )
            .bind(m)
            .fetch_one(&mut *tx.tx)
            .await?
            .try_get(0)
            .ok()
            .flatten();
            if used.unwrap_or(0) + size > cfg.quota_bytes {
                return Err(over_quota(m));
            }
        }
        let expires = tx.now + cfg.expiry_ms;
        sqlx::query("INSERT INTO messages (id, sender_device, sender_org, size, created_ms, expires_ms, receipt_requested) VALUES ($1,$2,$3,$4,$5,$6,$7)")
            .bind(id)
            .bind(sender_device)
            .bind(sender_org)
            .bind(size)
            .bind(tx.now)
            .bind(expires)
            .bind(receipt_requested as i64)
            .execute(&mut *tx.tx)
            .await?;
        for (m, dev) in recipients.iter().zip(devices) {
            sqlx::query("INSERT INTO message_recipients (message_id, mailbox) VALUES ($1,$2)").bind(id).bind(m).execute(&mut *tx.tx).await?;
            // The notice says that something arrived, from whom and how big: no content.
            let notice = serde_json::json!({ "id": id, "mailbox": m, "sender_org": sender_org, "size": size, "expires_ms": expires });
            tx.event(dev, "message.arrived", &notice).await?;
        }
        tx.audit(
            sender_device,
            "message.deposit",
            id,
            serde_json::json!({ "recipients": recipients, "size": size, "receipt": receipt_requested }),
        )
        .await?;
        let now = tx.now;
        tx.commit().await?;
        Ok(MessageMeta {
            id: id.to_string(),
            sender_device: sender_device.into(),
            sender_org: sender_org.into(),
            size,
            created_ms: now,
            expires_ms: expires,
            receipt_requested,
            read_ms: None,
        })
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

fn meta(r: &sqlx::any::AnyRow) -> MessageMeta {
    MessageMeta {
        id: r.get(0),
        sender_device: r.get(1),
        sender_org: r.get(2),
        size: r.get(3),
        created_ms: r.get(4),
        expires_ms: r.get(5),
        receipt_requested: r.get::<i64, _>(6) != 0,
        read_ms: r.try_get::<Option<i64>, _>(7).ok().flatten(),
    }
}

const SELECT: &str = "SELECT m.id, m.sender_device, m.sender_org, m.size, m.created_ms, m.expires_ms, m.receipt_requested, r.read_ms \
     FROM messages m JOIN message_recipients r ON r.message_id = m.id";

/// The messages in a mailbox, oldest first (metadata only).
pub async fn list(db: &Db, mailbox: &str) -> Result<Vec<MessageMeta>, ApiError> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE r.mailbox = $1 ORDER BY m.created_ms, m.id"
    ))
    .bind(mailbox)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.iter().map(meta).collect())
}

/// The ciphertext of a message in `mailbox` (404 if the mailbox is not a recipient).
pub async fn fetch(
    db: &Db,
    cfg: &MailboxConfig,
    mailbox: &str,
    id: &str,
) -> Result<Vec<u8>, ApiError> {
    check_name("message", id)?;
    let row = sqlx::query(&format!("{SELECT} WHERE r.mailbox = $1 AND m.id = $2"))
        .bind(mailbox)
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.ok_or_else(|| ApiError::not_found(format!("no message {id} in {mailbox}")))?;
    std::fs::read(cfg.file(id)).map_err(|_| ApiError::not_found(format!("message {id} is gone")))
}

/// The ciphertext file of a message in `mailbox` and its size, to stream out.
pub async fn fetch_file(
    db: &Db,
    cfg: &MailboxConfig,
    mailbox: &str,
    id: &str,
) -> Result<(tokio::fs::File, u64), ApiError> {
    check_name("message", id)?;
    let row = sqlx::query(&format!("{SELECT} WHERE r.mailbox = $1 AND m.id = $2"))
        .bind(mailbox)
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.ok_or_else(|| ApiError::not_found(format!("no message {id} in {mailbox}")))?;
    let gone = || ApiError::not_found(format!("message {id} is gone"));
    let f = tokio::fs::File::open(cfg.file(id))
        .await
        .map_err(|_| gone())?;
    let len = f.metadata().await.map_err(|_| gone())?.len();
    Ok((f, len))
}

/// The recipient opened the message: recorded, and audited if the sender asked for a
/// receipt (the sender's device is told, again without content).
pub async fn mark_read(db: &Db, mailbox: &str, id: &str, actor: &str) -> Result<(), ApiError> {
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(&format!("{SELECT} WHERE r.mailbox = $1 AND m.id = $2"))
        .bind(mailbox)
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await?;
    let m = meta(&row.ok_or_else(|| ApiError::not_found(format!("no message {id} in {mailbox}")))?);
    sqlx::query(
        "UPDATE message_recipients SET read_ms = $1 WHERE message_id = $2 AND mailbox = $3",
    )
    .bind(tx.now)
    .bind(id)
    .bind(mailbox)
    .execute(&mut *tx.tx)
    .await?;
    if m.receipt_requested && m.read_ms.is_none() {
        tx.audit(
            actor,
            "message.read_receipt",
            id,
            serde_json::json!({ "mailbox": mailbox }),
        )
        .await?;
        tx.event(
            &m.sender_device,
            "message.read",
            &serde_json::json!({ "id": id, "mailbox": mailbox }),
        )
        .await?;
    }
    tx.commit().await
}

/// Removes a message from a mailbox; the ciphertext goes when no recipient is left.
pub async fn delete(
    db: &Db,
    cfg: &MailboxConfig,
    mailbox: &str,
    id: &str,
    actor: &str,
) -> Result<(), ApiError> {
    let mut tx = db.begin_write().await?;
    let n = sqlx::query("DELETE FROM message_recipients WHERE message_id = $1 AND mailbox = $2")
        .bind(id)
        .bind(mailbox)
        .execute(&mut *tx.tx)
        .await?;
    if n.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no message {id} in {mailbox}")));
    }
    let left = sqlx::query("SELECT 1 FROM message_recipients WHERE message_id = $1")
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await?;
    if left.is_none() {
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
    }
    tx.audit(
        actor,
        "message.delete",
        id,
        serde_json::json!({ "mailbox": mailbox }),
    )
    .await?;
    tx.commit().await?;
    if left.is_none() {
        let _ = std::fs::remove_file(cfg.file(id));
    }
    Ok(())
}

/// Deletes every message whose time is up, and files that no row names (left by a crash
/// between writing and committing). Returns how many messages expired.
pub async fn expire(db: &Db, cfg: &MailboxConfig, now_ms: i64) -> Result<usize, ApiError> {
    let mut tx = db.begin_write().await?;
    let ids: Vec<String> = sqlx::query("SELECT id FROM messages WHERE expires_ms <= $1")
        .bind(now_ms)
        .fetch_all(&mut *tx.tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in &ids {
        sqlx::query("DELETE FROM message_recipients WHERE message_id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
    }
    if !ids.is_empty() {
        tx.audit(
            "centre",
            "message.expire",
            "messages",
            serde_json::json!({ "count": ids.len() }),
        )
        .await?;
    }
    let live: std::collections::HashSet<String> = sqlx::query("SELECT id FROM messages")
        .fetch_all(&mut *tx.tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit().await?;
    for id in &ids {
        let _ = std::fs::remove_file(cfg.file(id));
    }
    if let Ok(rd) = std::fs::read_dir(cfg.dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let stem = name.split('.').next().unwrap_or_default().to_string();
            // Only old orphans: a deposit in flight has its file before its row.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|d| d.as_secs() > 3600);
            if !live.contains(&stem) && old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(ids.len())
}

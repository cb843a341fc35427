//! Store-and-forward messaging over HTTP (R-SVC-4, issue 13). The device calls, over
//! mutual TLS with its service certificate (tier 2):
//!
//! - `POST /api/v1/device/mailbox`: certify a mailbox key (held in the key store or on
//!   a person's token) and publish it in the directory;
//! - `GET /api/v1/device/directory/{mailbox}`: a recipient's encryption certificate,
//!   only where the policy lets the caller's organisation write to it;
//! - `POST /api/v1/device/messages`: deposit a CMS AuthEnvelopedData;
//! - `GET /api/v1/device/messages`, `GET|DELETE /api/v1/device/messages/{id}`,
//!   `POST /api/v1/device/messages/{id}/read`: the holder of a mailbox's key lists,
//!   fetches, deletes and acknowledges its messages.
//!
//! The provider sets who may write to whom (`/api/v1/message-policies`, deny by
//! default). The centre never sees a key that opens a message: what it stores is the
//! ciphertext and the metadata in [`crate::mailbox`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, DeviceCaller, Tier};
use crate::device_state::DeviceState;
use crate::error::{ApiError, ErrorBody};
use crate::mailbox::{self, MailboxKind, MessageMeta};
use crate::Center;

/// Most bytes of ciphertext in one deposit: the JSON body carries it in base64.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// The body limit of a deposit: base64 of [`MAX_MESSAGE_BYTES`] plus the envelope.
pub const MAX_DEPOSIT_BODY: usize = MAX_MESSAGE_BYTES / 3 * 4 + 64 * 1024;
/// Mailbox certificates live as long as service certificates.
const MAILBOX_CERT_DAYS: u32 = 365;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxRequest {
    /// Base64 of the mailbox key's SubjectPublicKeyInfo (DER; EC P-256 or P-384, RSA ≥ 2048).
    #[schema(min_length = 4, max_length = 2048)]
    pub public_key: String,
    /// A person's mailbox in the caller's organisation (the key is on the person's
    /// PKCS#11 token); absent: the organisation's mailbox.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._@-]+$")]
    pub person: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MailboxIssued {
    /// `org:<org>` or `person:<org>:<name>`.
    pub mailbox: String,
    /// The encryption certificate (PEM), issued by the service CA, key usage keyAgreement.
    pub certificate: String,
    pub serial: u64,
    pub not_after: i64,
}

#[derive(Serialize, ToSchema)]
pub struct DirectoryEntry {
    pub mailbox: String,
    /// The recipient's encryption certificate (PEM).
    pub certificate: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    /// Recipient mailboxes, each in the directory and permitted to the sender.
    #[schema(min_items = 1, max_items = 100)]
    pub to: Vec<String>,
    /// Ask for an audited read receipt.
    #[serde(default)]
    pub receipt: bool,
    /// Base64 of the DER CMS ContentInfo (AuthEnvelopedData, AES-GCM), at most 32 MiB.
    #[schema(min_length = 4, max_length = 44739244)]
    pub cms: String,
}

#[derive(Deserialize, IntoParams)]
pub struct MailboxQuery {
    /// The mailbox (default: the caller's organisation's, `org:<org>`).
    pub mailbox: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagePolicy {
    /// The organisation whose members may write…
    #[schema(min_length = 1, max_length = 200)]
    pub from_org: String,
    /// …to the mailboxes of this organisation.
    #[schema(min_length = 1, max_length = 200)]
    pub to_org: String,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| ApiError::bad_request_code("invalid_base64", format!("{what} is not base64")))
}

/// A device may write only while it is in service (the same gate a connection
/// application passes, grants.rs): a stopped or revoked member sends nothing.
async fn in_service(c: &Center, dev: &DeviceCaller) -> Result<(), ApiError> {
    let st: Option<String> = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
        .bind(&dev.device_id)
        .fetch_optional(&c.db.pool)
        .await?;
    match st.as_deref().map(str::parse::<DeviceState>) {
        Some(Ok(DeviceState::InService)) => Ok(()),
        _ => Err(ApiError::forbidden(
            "not_in_service",
            format!("device {} is not in service", dev.device_id),
        )),
    }
}

/// The mailbox a call is about, which the calling device must hold the key of.
async fn held(c: &Center, dev: &DeviceCaller, q: &MailboxQuery) -> Result<String, ApiError> {
    let mailbox = q
        .mailbox
        .clone()
        .unwrap_or_else(|| mailbox::mailbox_name(MailboxKind::Org, &dev.org_id, None));
    if mailbox.is_empty() || mailbox.len() > 200 {
        return Err(ApiError::bad_request("mailbox must be 1..200 characters"));
    }
    let holder: Option<String> =
        sqlx::query_scalar("SELECT device_id FROM message_directory WHERE mailbox = $1")
            .bind(&mailbox)
            .fetch_optional(&c.db.pool)
            .await?;
    match holder {
        Some(d) if d == dev.device_id => Ok(mailbox),
        Some(_) => Err(ApiError::forbidden(
            "not_holder",
            format!("this device does not hold the key of {mailbox}"),
        )),
        None => Err(ApiError::not_found(format!("no mailbox {mailbox}"))),
    }
}

/// Certify a mailbox key and publish it in the directory. A second call for the same
/// mailbox (a renewal, a new key) replaces what senders get; the old key stays in the
/// holder's key store, so messages already written to it still open.
#[utoipa::path(post, path = "/api/v1/device/mailbox", tag = "messages", request_body = MailboxRequest,
    responses((status = 201, body = MailboxIssued), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "held_by_other_device: the mailbox belongs to another device")))]
pub async fn publish(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<MailboxRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<MailboxIssued>), ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let Json(body) = body?;
    let spki = b64(&body.public_key, "public_key")?;
    let (kind, person) = match &body.person {
        Some(p) => (MailboxKind::Person, Some(p.as_str())),
        None => (MailboxKind::Org, None),
    };
    if let Some(p) = person {
        if p.is_empty()
            || p.len() > 64
            || !p
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._@-".contains(ch))
        {
            return Err(ApiError::bad_request_code(
                "invalid_name",
                "person must be 1..64 of A-Z a-z 0-9 . _ @ -",
            ));
        }
    }
    let name = mailbox::mailbox_name(kind, &dev.org_id, person);
    // Only the device that holds a mailbox renews it: another device of the same
    // organisation cannot redirect its post to a key of its own.
    let holder: Option<String> =
        sqlx::query_scalar("SELECT device_id FROM message_directory WHERE mailbox = $1")
            .bind(&name)
            .fetch_optional(&c.db.pool)
            .await?;
    if holder.is_some_and(|h| h != dev.device_id) {
        return Err(ApiError::conflict(
            "held_by_other_device",
            format!("{name} is held by another device; its administrator must release it"),
        ));
    }
    let serial = {
        let mut tx = c.db.begin_write().await?;
        let s = tx.next_counter("cert_serial").await?;
        tx.commit().await?;
        s
    };
    let cert = c
        .pki
        .issue_mailbox_cert(&spki, &name, &dev.org_id, serial, MAILBOX_CERT_DAYS)
        .map_err(|e| ApiError::bad_request_code("invalid_public_key", e.to_string()))?;
    mailbox::publish_certificate(
        &c.db,
        kind,
        &dev.org_id,
        person,
        &dev.device_id,
        &cert.pem,
        &caller.actor(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(MailboxIssued {
            mailbox: name,
            certificate: cert.pem,
            serial,
            not_after: cert.not_after_unix,
        }),
    ))
}

/// A recipient's encryption certificate. Refused (403) unless the policy lets the
/// caller's organisation write to the mailbox's organisation; 404 if not in the directory.
#[utoipa::path(get, path = "/api/v1/device/directory/{mailbox}", tag = "messages",
    params(("mailbox" = String, Path, description = "org:<org> or person:<org>:<name>")),
    responses((status = 200, body = DirectoryEntry), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn directory(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<DirectoryEntry>, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    in_service(&c, &dev).await?;
    let certificate = mailbox::lookup(&c.db, &dev.org_id, &name).await?;
    Ok(Json(DirectoryEntry {
        mailbox: name,
        certificate,
    }))
}

/// Deposit a message. Nothing is stored unless all of it is right: a CMS
/// AuthEnvelopedData (truncated data and unknown OIDs: 422), every recipient in the
/// directory (404) and permitted (403), no mailbox over its quota (413). Each
/// recipient's device gets a `message.arrived` notice without content.
#[utoipa::path(post, path = "/api/v1/device/messages", tag = "messages", request_body = Deposit,
    responses((status = 201, body = MessageMeta), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody, description = "quota_exceeded or too_large"),
              (status = 422, body = ErrorBody, description = "invalid_cms: not an AuthEnvelopedData")))]
pub async fn deposit(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<Deposit>, JsonRejection>,
) -> Result<(StatusCode, Json<MessageMeta>), ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let Json(body) = body?;
    in_service(&c, &dev).await?;
    let cms = b64(&body.cms, "cms")?;
    if cms.len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a message may hold at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let meta = mailbox::deposit(
        &c.db,
        &c.mailbox,
        &dev.device_id,
        &dev.org_id,
        &body.to,
        &cms,
        body.receipt,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

/// Most bytes of one streamed message: a 2 GiB attachment and its CMS structure.
pub const MAX_STREAM_BYTES: u64 = (2 << 30) + (1 << 20);
/// The path of the streamed deposit (its body is not read before routing).
pub const STREAM_PATH: &str = "/api/v1/device/messages/stream";
/// How long an upload may pause before the centre gives up on it (nothing is kept).
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The body of a streamed deposit: DER bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct CmsBody(#[allow(dead_code)] Vec<u8>);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Recipient mailboxes, comma-separated, each in the directory and permitted.
    pub to: String,
    /// Ask for an audited read receipt.
    pub receipt: Option<bool>,
}

/// Refuses an upload before its body is read. A small body is read first, so that the
/// client, still sending, gets the answer rather than a reset; a large one is cut
/// (`Connection: close`).
async fn refuse_early(body: Body, e: ApiError) -> Response {
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    // At most 8 MiB, and not for a client that has gone quiet.
    while let Ok(Some(Ok(b))) = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        futures_util::StreamExt::next(&mut stream),
    )
    .await
    {
        seen += b.len();
        if seen > 8 * 1024 * 1024 {
            break;
        }
    }
    let mut resp = e.into_response();
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// Deposit a large message as a stream: the body is the DER CMS itself
/// (`application/pkcs7-mime`, up to 2 GiB of attachment), written to a 0600 file in
/// the centre's data directory as it arrives, counted against the recipients' quota as
/// it arrives, and stored — renamed into place, its row inserted — only when it is
/// complete and a well-formed AuthEnvelopedData that ends where the body ends. An
/// upload cut halfway is refused and leaves no row and no file (not resumable: send it
/// again).
#[utoipa::path(post, path = "/api/v1/device/messages/stream", tag = "messages", params(StreamQuery),
    request_body(content = CmsBody, content_type = "application/octet-stream", description = "The DER CMS ContentInfo (AuthEnvelopedData, AES-GCM); sent as application/pkcs7-mime or application/octet-stream"),
    responses((status = 201, body = MessageMeta), (status = 400, body = ErrorBody, description = "upload_cut: the body ended early"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody, description = "quota_exceeded or too_large"),
              (status = 422, body = ErrorBody, description = "invalid_cms: not an AuthEnvelopedData")))]
pub async fn deposit_stream(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(q): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    match deposit_stream_inner(&c, &caller, q, &headers, body).await {
        Ok(r) => r,
        Err((Some(body), e)) => refuse_early(body, e).await,
        Err((None, e)) => e.into_response(),
    }
}

async fn deposit_stream_inner(
    c: &Center,
    caller: &Caller,
    q: StreamQuery,
    headers: &axum::http::HeaderMap,
    body: Body,
) -> Result<Response, (Option<Body>, ApiError)> {
    let early = |e: ApiError| e;
    let dev = match caller.device(Tier::Service) {
        Ok(d) => d.clone(),
        Err(e) => return Err((Some(body), early(e))),
    };
    if let Err(e) = in_service(c, &dev).await {
        return Err((Some(body), e));
    }
    let to: Vec<String> =
        q.to.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    let devices = match mailbox::check_recipients(&c.db, &dev.org_id, &to).await {
        Ok(d) => d,
        Err(e) => return Err((Some(body), e)),
    };
    let announced: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a streamed message may hold at most {MAX_STREAM_BYTES} bytes"),
        )
    };
    if let Some(n) = announced {
        if n > MAX_STREAM_BYTES {
            return Err((Some(body), too_large()));
        }
        if let Err(e) = mailbox::check_quota(&c.db, &c.mailbox, &to, n as i64).await {
            return Err((Some(body), e));
        }
    }
    let id = crate::new_id("msg");
    let part = mailbox::part_file(&c.mailbox, &id);
    let cfg = c.mailbox.clone();
    let id2 = id.clone();
    let file = match tokio::task::spawn_blocking(move || mailbox::create_part(&cfg, &id2)).await {
        Ok(Ok(f)) => f,
        _ => {
            tracing::error!("message store: cannot create {}", part.display());
            return Err((
                Some(body),
                ApiError::internal("the message store cannot write"),
            ));
        }
    };
    let result = receive(c, &to, file, announced, body).await;
    let size = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err((None, e));
        }
    };
    let meta = mailbox::deposit_part(
        &c.db,
        &c.mailbox,
        &id,
        &dev.device_id,
        &dev.org_id,
        &to,
        &devices,
        size as i64,
        q.receipt.unwrap_or(false),
    )
    .await
    .map_err(|e| (None, e))?;
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

/// Writes the body to `file` as it arrives; its size, or why it was refused (the
/// caller removes the file then).
async fn receive(
    c: &Center,
    to: &[String],
    file: std::fs::File,
    announced: Option<u64>,
    body: Body,
) -> Result<u64, ApiError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let mut stream = body.into_data_stream();
    let mut n: u64 = 0;
    let mut next_quota_check: u64 = 64 << 20;
    let store_err = |e: std::io::Error| {
        tracing::error!("message store: {e}");
        ApiError::internal("the message store cannot write")
    };
    let cut = || {
        ApiError::bad_request_code(
            "upload_cut",
            "the upload ended before the message did; nothing was stored, send it again",
        )
    };
    loop {
        // A client that stops sending without closing is cut after UPLOAD_IDLE.
        let Ok(next) = tokio::time::timeout(UPLOAD_IDLE, stream.next()).await else {
            return Err(cut());
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request_code(
                "upload_cut",
                "the upload ended before the message did; nothing was stored, send it again",
            )
        })?;
        n += chunk.len() as u64;
        if n > MAX_STREAM_BYTES || announced.is_some_and(|a| n > a) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a streamed message may hold at most {MAX_STREAM_BYTES} bytes"),
            ));
        }
        // Without an announced length the quota is checked as the bytes arrive.
        if announced.is_none() && n >= next_quota_check {
            mailbox::check_quota(&c.db, &c.mailbox, to, n as i64).await?;
            next_quota_check = n + (64 << 20);
        }
        out.write_all(&chunk).await.map_err(store_err)?;
    }
    if announced.is_some_and(|a| n != a) {
        return Err(ApiError::bad_request_code(
            "upload_cut",
            "the upload ended before the message did; nothing was stored, send it again",
        ));
    }
    out.flush().await.map_err(store_err)?;
    out.get_mut().sync_all().await.map_err(store_err)?;
    Ok(n)
}

/// The messages in a mailbox this device holds the key of (metadata only).
#[utoipa::path(get, path = "/api/v1/device/messages", tag = "messages", params(MailboxQuery),
    responses((status = 200, body = [MessageMeta]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Query(q): Query<MailboxQuery>,
) -> Result<Json<Vec<MessageMeta>>, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let mailbox = held(&c, &dev, &q).await?;
    Ok(Json(mailbox::list(&c.db, &mailbox).await?))
}

/// The ciphertext of a message (DER CMS, `application/pkcs7-mime`).
#[utoipa::path(get, path = "/api/v1/device/messages/{id}", tag = "messages",
    params(("id" = String, Path), MailboxQuery),
    responses((status = 200, content_type = "application/pkcs7-mime", body = String, description = "The DER CMS ContentInfo"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn fetch(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<MailboxQuery>,
) -> Result<Response, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let mailbox = held(&c, &dev, &q).await?;
    // Streamed from the file, a piece at a time: a 2 GiB message is never in memory.
    let (file, len) = mailbox::fetch_file(&c.db, &c.mailbox, &mailbox, &id).await?;
    let stream = futures_util::stream::try_unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((axum::body::Bytes::from(buf), f)))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/pkcs7-mime".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The recipient opened the message; audited, and told to the sender, if the sender
/// asked for a receipt.
#[utoipa::path(post, path = "/api/v1/device/messages/{id}/read", tag = "messages",
    params(("id" = String, Path), MailboxQuery),
    responses((status = 204, description = "Recorded"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<MailboxQuery>,
) -> Result<StatusCode, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let mailbox = held(&c, &dev, &q).await?;
    mailbox::mark_read(&c.db, &mailbox, &id, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a message from the mailbox (the ciphertext goes with its last recipient).
#[utoipa::path(delete, path = "/api/v1/device/messages/{id}", tag = "messages",
    params(("id" = String, Path), MailboxQuery),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<MailboxQuery>,
) -> Result<StatusCode, ApiError> {
    let dev = caller.device(Tier::Service)?.clone();
    let mailbox = held(&c, &dev, &q).await?;
    mailbox::delete(&c.db, &c.mailbox, &mailbox, &id, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Let the members of `from_org` write to the mailboxes of `to_org` (provider only,
/// audited). Without such a row, lookups and deposits are refused.
#[utoipa::path(put, path = "/api/v1/message-policies", tag = "messages", request_body = MessagePolicy,
    responses((status = 204, description = "Allowed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn allow(
    State(c): State<Arc<Center>>,
    caller: Caller,
    body: Result<Json<MessagePolicy>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require_provider()?;
    let Json(body) = body?;
    for org in [&body.from_org, &body.to_org] {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs WHERE id = $1")
            .bind(org)
            .fetch_one(&c.db.pool)
            .await?;
        if n == 0 {
            return Err(ApiError::not_found(format!("no organisation {org}")));
        }
    }
    mailbox::allow(&c.db, &body.from_org, &body.to_org, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who may write to whom (provider and organisation administrators; an organisation
/// administrator sees the rows naming its organisation).
#[utoipa::path(get, path = "/api/v1/message-policies", tag = "messages",
    responses((status = 200, body = [MessagePolicy]), (status = 403, body = ErrorBody)))]
pub async fn list_policies(
    State(c): State<Arc<Center>>,
    caller: Caller,
) -> Result<Json<Vec<MessagePolicy>>, ApiError> {
    let scope = caller.org_scope()?;
    let rows = sqlx::query("SELECT from_org, to_org FROM message_policy ORDER BY from_org, to_org")
        .fetch_all(&c.db.pool)
        .await?;
    Ok(Json(
        rows.iter()
            .map(|r| MessagePolicy {
                from_org: r.get(0),
                to_org: r.get(1),
            })
            .filter(|p| scope.is_none_or(|o| p.from_org == o || p.to_org == o))
            .collect(),
    ))
}

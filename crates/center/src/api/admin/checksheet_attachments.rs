//! Evidence files attached to check-sheet answers (issue 11, R-SVC-3): a scanned
//! contract, a screenshot of a setting. Stored under `<data>/attachments/` (0600,
//! written to a temporary name, synced and renamed before the row commits, so a crash
//! or a cut upload leaves neither a row nor a file), scoped to one organisation, audited.
//! An answer names an attachment by its id.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::orgs::org_exists;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::{new_id, Center};

/// Largest attachment (bytes).
pub const MAX_ATTACHMENT: usize = 10 * 1024 * 1024;
const MAX_NAME: usize = 200;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AttachQuery {
    /// The file's name as the person knows it (1–200 printable characters).
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct AttachmentView {
    /// What an answer's `attachment` names.
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub media_type: String,
    pub size: i64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    pub uploaded_by: String,
    pub created_ms: i64,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

fn dir(c: &Center) -> PathBuf {
    c.mailbox.data_dir.join("attachments")
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME || name.chars().any(char::is_control) || name.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "the attachment name must be 1–{MAX_NAME} printable characters / 添付ファイル名は {MAX_NAME} 文字以内の印字可能文字にしてください"
        )));
    }
    Ok(())
}

/// Upload one evidence file (the raw body; its `Content-Type` is kept) for the
/// organisation's check-sheet answers.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/checksheets/attachments", tag = "organisations",
    params(("id" = String, Path), AttachQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file, at most 10 MiB"),
    responses((status = 201, body = AttachmentView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<AttachQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<AttachmentView>), ApiError> {
    caller.require_org(&id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_name(&q.name)?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the attachment is empty / 添付ファイルが空です",
        ));
    }
    if body.len() > MAX_ATTACHMENT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("an attachment is at most {MAX_ATTACHMENT} bytes / 添付ファイルは {MAX_ATTACHMENT} バイトまでです"),
        ));
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 100 && v.is_ascii() && !v.chars().any(|c| c.is_ascii_control()))
        .unwrap_or("application/octet-stream")
        .to_string();
    let sha256 = sha256_hex(&body);
    let att = new_id("att");
    let path = dir(&c).join(&att);
    let mut tx = c.db.begin_write().await?;
    org_exists(&mut tx, &id).await?;
    // The file first: a row never points at a file that is not whole on disk.
    let (p, b) = (path.clone(), body.clone());
    tokio::task::spawn_blocking(move || crate::mailbox::write_file(&p, &b))
        .await
        .map_err(|_| ApiError::internal("the attachment writer stopped"))?
        .map_err(|e| ApiError::internal(format!("cannot store the attachment: {e}")))?;
    let inserted = sqlx::query(
        "INSERT INTO checksheet_attachments (id, org_id, name, media_type, size, sha256, uploaded_by, created_ms) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
    )
    .bind(&att)
    .bind(&id)
    .bind(&q.name)
    .bind(&media_type)
    .bind(body.len() as i64)
    .bind(&sha256)
    .bind(caller.actor())
    .bind(tx.now)
    .execute(&mut *tx.tx)
    .await;
    let done = match inserted {
        Ok(_) => {
            tx.audit(
                &caller.actor(),
                "checksheet.attachment_added",
                &id,
                serde_json::json!({"attachment": att, "name": q.name, "size": body.len(), "sha256": sha256}),
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    let now = tx.now;
    let committed = match done {
        Ok(()) => tx.commit().await,
        Err(e) => Err(e),
    };
    if let Err(e) = committed {
        // The row did not commit: the file has no owner.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok((
        StatusCode::CREATED,
        Json(AttachmentView {
            id: att,
            org_id: id,
            name: q.name,
            media_type,
            size: body.len() as i64,
            sha256,
            uploaded_by: caller.actor(),
            created_ms: now,
        }),
    ))
}

async fn view(c: &Center, org: &str, att: &str) -> Result<AttachmentView, ApiError> {
    let r = sqlx::query(
        "SELECT id, org_id, name, media_type, size, sha256, uploaded_by, created_ms FROM checksheet_attachments \
         WHERE org_id = $1 AND id = $2",
    )
    .bind(org)
    .bind(att)
    .fetch_optional(&c.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no attachment {att} of {org}")))?;
    Ok(AttachmentView {
        id: r.get(0),
        org_id: r.get(1),
        name: r.get(2),
        media_type: r.get(3),
        size: r.get(4),
        sha256: r.get(5),
        uploaded_by: r.get(6),
        created_ms: r.get(7),
    })
}

/// The attachments of the organisation, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/checksheets/attachments", tag = "organisations",
    params(("id" = String, Path)),
    responses((status = 200, body = [AttachmentView]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<AttachmentView>>, ApiError> {
    caller.require_read(&id)?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM checksheet_attachments WHERE org_id = $1 ORDER BY created_ms DESC, id LIMIT 1000",
    )
    .bind(&id)
    .fetch_all(&c.db.pool)
    .await?;
    let mut out = Vec::new();
    for a in ids {
        out.push(view(&c, &id, &a).await?);
    }
    Ok(Json(out))
}

/// Download one attachment, checked against its stored SHA-256.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/checksheets/attachments/{attachment}", tag = "organisations",
    params(("id" = String, Path), ("attachment" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn download(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path((id, att)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require_read(&id)?;
    let v = view(&c, &id, &att).await?;
    let bytes = tokio::fs::read(dir(&c).join(&v.id))
        .await
        .map_err(|_| ApiError::internal(format!("the file of attachment {att} is missing")))?;
    if sha256_hex(&bytes) != v.sha256 {
        return Err(ApiError::internal(format!(
            "the file of attachment {att} does not match its SHA-256 / 添付ファイル {att} が記録と一致しません"
        )));
    }
    // The name travels percent-encoded (RFC 6266 filename*), so any script is safe in a header.
    let encoded =
        percent_encoding::utf8_percent_encode(&v.name, percent_encoding::NON_ALPHANUMERIC);
    Ok((
        [
            // Never the uploaded type: a stored HTML file must not render on the centre's origin.
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename*=UTF-8''{encoded}"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Every attachment an answer names must be one of the organisation's own.
pub(crate) async fn check_answers(
    tx: &mut crate::db::WriteTx<'_>,
    org: &str,
    ids: impl Iterator<Item = &str>,
) -> Result<(), ApiError> {
    for att in ids {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM checksheet_attachments WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(att)
        .fetch_one(&mut *tx.tx)
        .await?;
        if n == 0 {
            return Err(ApiError::bad_request_code(
                "checksheet_invalid",
                format!("no attachment {att} of this organisation: upload it first / 添付ファイル {att} がありません。先にアップロードしてください"),
            ));
        }
    }
    Ok(())
}

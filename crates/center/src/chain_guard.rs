//! The centre does not run on a tampered audit chain without saying so (issue 9).
//!
//! Decided here:
//! - The chain is verified when the centre starts and every minute after, each
//!   time incrementally from a checkpoint: the seq and hash of the last record
//!   verified, kept in `DATA/audit.checkpoint` (outside the database, so whoever
//!   can rewrite the database cannot also move the checkpoint). The checkpoint
//!   record must still be there and unchanged, and every record after it must
//!   continue the chain. No (or an unreadable) checkpoint file means a full check.
//!   The full `audit verify` (API) re-checks everything and moves the checkpoint.
//! - A broken chain makes the centre read-only, it does not refuse to start:
//!   the evidence stays readable (audit list, export and verify, certificate
//!   status and CRLs keep working), while every change is refused with 503
//!   `audit_chain_broken` naming the first bad record, so nothing new is chained
//!   onto a log that can no longer be trusted. The operator sees the same
//!   sentence at start. Leaving read-only means restoring an intact database.
//! - Records before the checkpoint are not re-read at start (that is what
//!   makes the start incremental); the full verify covers them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dodvpn_audit::{ChainError, Checkpoint, StoredRecord};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::Db;
use crate::error::ApiError;

pub const CHECKPOINT_FILE: &str = "audit.checkpoint";
/// How often the running centre checks the records appended since the checkpoint.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

const COLS: &str = "seq, ts_ms, actor, action, subject, details, prev_hash, hash";

pub struct ChainGuard {
    path: PathBuf,
    checkpoint: tokio::sync::Mutex<Option<Checkpoint>>,
}

/// What a check found.
pub enum Outcome {
    /// Intact: `checked` rows from `from_seq` (the checkpoint record, or 1) up to `head_seq`.
    Intact {
        from_seq: u64,
        checked: u64,
        head_seq: u64,
    },
    Broken(ChainError),
}

impl ChainGuard {
    pub fn open(data_dir: &Path) -> ChainGuard {
        let path = data_dir.join(CHECKPOINT_FILE);
        let checkpoint = match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<Checkpoint>(&text) {
                Ok(cp) => Some(cp),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable audit checkpoint; the whole chain will be verified");
                    None
                }
            },
            Err(_) => None,
        };
        ChainGuard {
            path,
            checkpoint: tokio::sync::Mutex::new(checkpoint),
        }
    }

    /// Verify what was appended since the checkpoint and move the checkpoint to
    /// the newest record. A break makes the database read-only.
    pub async fn check(&self, db: &Db) -> Result<Outcome, ApiError> {
        let mut cp = self.checkpoint.lock().await;
        let from = cp.as_ref().map_or(0, |c| c.seq);
        let rows = rows_from(db, i64::try_from(from).unwrap_or(i64::MAX)).await?;
        match dodvpn_audit::verify_stored(cp.as_ref(), &rows) {
            Ok(summary) => {
                let head_seq = rows.last().map_or(0, |r| r.seq as u64);
                let next = Checkpoint {
                    seq: head_seq,
                    hash: summary.head_hash,
                };
                if cp.as_ref() != Some(&next) {
                    self.store(&next);
                    *cp = Some(next);
                }
                Ok(Outcome::Intact {
                    from_seq: from.max(1),
                    checked: summary.count,
                    head_seq,
                })
            }
            Err(e) => {
                let _ = db.read_only.set(e.to_string());
                tracing::error!(
                    first_bad_record = e.seq(),
                    problem = e.code(),
                    "{e}; the centre is now read-only"
                );
                Ok(Outcome::Broken(e))
            }
        }
    }

    /// A full verification reached `next`: keep it if it is ahead of the checkpoint.
    pub async fn advance(&self, next: Checkpoint) {
        let mut cp = self.checkpoint.lock().await;
        if cp.as_ref().is_none_or(|c| c.seq < next.seq) {
            self.store(&next);
            *cp = Some(next);
        }
    }

    fn store(&self, cp: &Checkpoint) {
        let text = serde_json::to_string(cp).unwrap_or_default();
        if let Err(e) = crate::init::write_secret_file(&self.path, text.as_bytes()) {
            tracing::warn!(error = %e, "cannot store the audit checkpoint");
        }
    }
}

/// Every stored row with `seq >= from`, in chain order, as stored (never fails on
/// a row's content: an unreadable row is the verifier's to name).
pub async fn rows_from(db: &Db, from: i64) -> Result<Vec<StoredRecord>, ApiError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM audit WHERE seq >= $1 ORDER BY seq"
    ))
    .bind(from)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(stored_record).collect()
}

/// One row as stored. A text column that does not even decode as text (SQLite
/// stores what it is given) becomes a value that cannot verify.
pub fn stored_record(r: &AnyRow) -> Result<StoredRecord, ApiError> {
    let text = |col: &str| {
        r.try_get::<String, _>(col)
            .unwrap_or_else(|_| "\u{fffd}".to_string())
    };
    Ok(StoredRecord {
        seq: r.try_get("seq")?,
        ts_ms: r.try_get("ts_ms").unwrap_or(i64::MIN),
        actor: text("actor"),
        action: text("action"),
        subject: text("subject"),
        details: text("details"),
        prev_hash: text("prev_hash"),
        hash: text("hash"),
    })
}

/// Check the chain every [`CHECK_EVERY`] while the centre runs.
pub async fn run(guard: std::sync::Arc<ChainGuard>, db: std::sync::Arc<Db>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if db.read_only.get().is_some() {
            return;
        }
        if let Err(e) = guard.check(&db).await {
            tracing::warn!(error = %e.message, "audit chain check failed");
        }
    }
}

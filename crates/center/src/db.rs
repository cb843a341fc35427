//! Storage: SQLite (embedded default) or PostgreSQL (replicas), one schema, one code path.
//!
//! Every state change runs in a [`WriteTx`]: writers are serialised (a process mutex on
//! SQLite, a transaction-scoped advisory lock on PostgreSQL, so replicas queue too), and
//! the audit record and the push events of a change commit atomically with it (R-AUD-1,
//! R-OPS-3: a crash leaves either the whole change or none of it).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{Mutex, MutexGuard, Notify};

use crate::error::ApiError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Advisory lock key that serialises writers across PostgreSQL replicas.
const PG_WRITE_LOCK: i64 = 11636;
/// Channel on which a replica announces new push events to the others.
pub const PG_EVENT_CHANNEL: &str = "dodvpn_events";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    pub url: String,
    write_lock: Mutex<()>,
    /// Woken after each commit that added events (the local half of fan-out).
    pub events_committed: Arc<Notify>,
    /// Set when the audit chain is found broken (chain_guard.rs): why no change
    /// may be written any more.
    pub read_only: std::sync::OnceLock<String>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Db {
    pub async fn open(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL {url:?}: use sqlite://FILE or postgres://…");
        };
        let opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(30));
        let opts = if backend == Backend::Sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    // WAL: readers never block the writer. synchronous=FULL: a commit
                    // survives power loss, not only a killed process.
                    conn.execute("PRAGMA journal_mode=WAL").await?;
                    conn.execute("PRAGMA synchronous=FULL").await?;
                    conn.execute("PRAGMA busy_timeout=10000").await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", redact_url(url)))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))?;
        Ok(Db {
            pool,
            backend,
            url: url.to_string(),
            write_lock: Mutex::new(()),
            events_committed: Arc::new(Notify::new()),
            read_only: std::sync::OnceLock::new(),
        })
    }

    pub async fn begin_write(&self) -> Result<WriteTx<'_>, ApiError> {
        if let Some(why) = self.read_only.get() {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "audit_chain_broken",
                format!("the centre is read-only because its audit chain is broken: {why}"),
            ));
        }
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        };
        // IMMEDIATE takes SQLite's write lock at BEGIN, where busy_timeout waits for it.
        // A deferred transaction that read first fails at once ("database is locked")
        // if any other connection wrote in between, such as the checkpoint signer.
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_WRITE_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        Ok(WriteTx {
            tx,
            _guard: guard,
            db: self,
            events: 0,
            audits: 0,
            now: now_ms(),
        })
    }

    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, ApiError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }
}

/// Hide a password in a database URL before it reaches a log or an error.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}://{}:***{}", &url[..s], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub struct WriteTx<'a> {
    pub tx: Transaction<'static, Any>,
    _guard: Option<MutexGuard<'a, ()>>,
    db: &'a Db,
    events: usize,
    /// Audit records appended, counted in the metrics once the change commits.
    audits: u64,
    /// One timestamp for the whole change.
    pub now: i64,
}

impl WriteTx<'_> {
    /// Append one record to the hash-chained audit log (R-AUD-1) and its Merkle tree (R-AUD-4).
    pub async fn audit(
        &mut self,
        actor: &str,
        action: &str,
        subject: &str,
        details: serde_json::Value,
    ) -> Result<(), ApiError> {
        let prev = sqlx::query(
            "SELECT seq, ts_ms, actor, action, subject, details, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *self.tx)
        .await?
        .map(|r| audit_record(&r))
        .transpose()?;
        let rec = dodvpn_audit::next(prev.as_ref(), self.now, actor, action, subject, details);
        sqlx::query(
            "INSERT INTO audit (seq, ts_ms, actor, action, subject, details, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(rec.seq as i64)
        .bind(rec.ts_ms)
        .bind(&rec.actor)
        .bind(&rec.action)
        .bind(&rec.subject)
        .bind(rec.details.to_string())
        .bind(&rec.prev_hash)
        .bind(&rec.hash)
        .execute(&mut *self.tx)
        .await?;
        // The Merkle tree grows in the same transaction (R-AUD-4, tlog.rs).
        crate::tlog::append(&mut self.tx, rec.seq, &rec.hash).await?;
        self.audits += 1;
        Ok(())
    }

    /// Queue a push event for one device; it is delivered once the change commits.
    pub async fn event(
        &mut self,
        device_id: &str,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<i64, ApiError> {
        let next: Option<i64> = sqlx::query("SELECT MAX(seq) FROM events")
            .fetch_one(&mut *self.tx)
            .await?
            .try_get(0)
            .ok();
        let seq = next.unwrap_or(0) + 1;
        sqlx::query("INSERT INTO events (seq, device_id, kind, payload, created_ms) VALUES ($1,$2,$3,$4,$5)")
            .bind(seq)
            .bind(device_id)
            .bind(kind)
            .bind(payload.to_string())
            .bind(self.now)
            .execute(&mut *self.tx)
            .await?;
        self.events += 1;
        Ok(seq)
    }

    /// Next value of a named counter kept in `meta` (certificate serials, CRL numbers).
    pub async fn next_counter(&mut self, name: &str) -> Result<u64, ApiError> {
        let cur = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(|r| r.get::<String, _>(0));
        let next = match cur {
            Some(v) => u64::from_str(&v).map_err(|_| ApiError::internal("corrupt counter"))? + 1,
            None => 1,
        };
        let q = if next == 1 {
            "INSERT INTO meta (key, value) VALUES ($1, $2)"
        } else {
            "UPDATE meta SET value = $2 WHERE key = $1"
        };
        sqlx::query(q)
            .bind(name)
            .bind(next.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(next)
    }

    pub async fn commit(mut self) -> Result<(), ApiError> {
        if self.events > 0 && self.db.backend == Backend::Postgres {
            // Delivered to every replica's listener when (and only if) this commits.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(PG_EVENT_CHANNEL)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        crate::metrics::get().audit_appended(self.audits);
        if self.events > 0 {
            self.db.events_committed.notify_one();
        }
        Ok(())
    }
}

pub fn audit_record(r: &AnyRow) -> Result<dodvpn_audit::Record, ApiError> {
    let details: String = r.try_get("details")?;
    Ok(dodvpn_audit::Record {
        seq: r.try_get::<i64, _>("seq")? as u64,
        ts_ms: r.try_get("ts_ms")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        subject: r.try_get("subject")?,
        details: serde_json::from_str(&details)
            .map_err(|_| ApiError::internal("audit record with unreadable details"))?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

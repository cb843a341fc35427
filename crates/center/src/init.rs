//! First start and every start after: the data directory holds the PKI, the SQLite
//! database (embedded default) and the first administrator credential.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::auth::{hash_secret, ADMIN_PREFIX};
use crate::chain_guard::{ChainGuard, Outcome};
use crate::db::Db;
use crate::{hub, new_id, Center};

pub struct CenterConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; default: SQLite in the data directory.
    pub database_url: Option<String>,
    /// Names and addresses the centre's TLS certificate is valid for.
    pub tls_names: Vec<String>,
}

/// What was created or found, for the operator.
pub struct InitReport {
    pub created: bool,
    pub lines: Vec<(String, String)>,
    pub admin_credential_file: Option<PathBuf>,
}

impl CenterConfig {
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("center.db").display()
            )
        })
    }
}

pub async fn open(cfg: &CenterConfig) -> anyhow::Result<(Arc<Center>, InitReport)> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    set_mode(&cfg.data_dir, 0o700)?;
    let pki_dir = cfg.data_dir.join("pki");
    let mut lines = Vec::new();
    let created = !pki_dir.join("root.pem").exists();
    let pki = if created {
        let mut names = cfg.tls_names.clone();
        let mut defaults = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if !cfg.listen.ip().is_unspecified() {
            defaults.push(cfg.listen.ip().to_string());
        }
        for n in defaults {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let (pki, paths) = dodvpn_pki::Pki::create(&pki_dir, &names)
            .with_context(|| format!("cannot create the PKI in {}", pki_dir.display()))?;
        for (what, path) in [
            ("accreditation root", &paths.root_cert),
            ("device CA (tier 1)", &paths.device_ca_cert),
            ("service CA (tier 2)", &paths.service_ca_cert),
            ("centre TLS certificate", &paths.tls_cert),
            ("connection-info signer", &paths.signer_cert),
            ("private keys (0600)", &paths.dir),
        ] {
            lines.push((what.to_string(), path.display().to_string()));
        }
        pki
    } else {
        let pki = dodvpn_pki::Pki::load(&pki_dir)
            .with_context(|| format!("cannot load the PKI from {}", pki_dir.display()))?;
        lines.push(("PKI".into(), pki_dir.display().to_string()));
        pki
    };
    let url = cfg.database_url();
    let db = Arc::new(Db::open(&url).await?);
    lines.push(("database".into(), crate::db::redact_url(&url)));
    let chain = Arc::new(ChainGuard::open(&cfg.data_dir));
    lines.push(check_chain(&chain, &db).await?);
    let log_key = dodvpn_pki::LogKey::open_or_create(&pki_dir)
        .with_context(|| format!("cannot load the audit-log key from {}", pki_dir.display()))?;
    let tsa = crate::tsa_client::TsaConfig::from_env()?;
    if let Some(t) = &tsa {
        lines.push((
            "audit timestamps (RFC 3161)".into(),
            format!("{} (every {} checkpoint(s))", t.url, t.every),
        ));
    }
    let witnesses = crate::tlog::witnesses_from_env()?;
    lines.push((
        "audit witnesses".into(),
        format!("a checkpoint is witnessed with {witnesses} device cosignature(s)"),
    ));
    let tlog = Arc::new(
        crate::tlog::Signer::new(log_key)
            .with_tsa(tsa)
            .with_witnesses(witnesses),
    );
    lines.push(check_tree(&tlog, &db).await?);

    let admin_credential_file = ensure_provider_admin(&db, &cfg.data_dir).await?;
    if let Some(f) = &admin_credential_file {
        lines.push(("admin credential (0600)".into(), f.display().to_string()));
    }
    let relay = crate::relays::RelayConfig::from_env(&cfg.data_dir)?;
    if let Some(r) = &relay {
        lines.push((
            "relay (issue 19)".into(),
            format!(
                "{} (secret {})",
                r.addr,
                cfg.data_dir.join(crate::relays::SECRET_FILE).display()
            ),
        ));
    }
    let hub = Arc::new(hub::Hub::default());
    let center = Arc::new(Center {
        db: db.clone(),
        pki,
        hub: hub.clone(),
        chain: chain.clone(),
        refusals: Arc::new(crate::refusals::Refusals::from_env()),
        tlog: tlog.clone(),
        mailbox: crate::mailbox::MailboxConfig::from_env(&cfg.data_dir),
        relay,
        pacer: Default::default(),
    });
    tokio::spawn(crate::tlog::run(
        tlog,
        db.clone(),
        hub.clone(),
        crate::tlog::interval_from_env(),
    ));
    tokio::spawn(center.refusals.clone().run(db.clone()));
    tokio::spawn(crate::chain_guard::run(chain, db.clone()));
    tokio::spawn(hub.run_dispatcher(db));
    let post = center.clone();
    tokio::spawn(async move {
        // Messages whose time is up are deleted even when nobody calls the API.
        loop {
            tokio::time::sleep(post.mailbox.sweep_every).await;
            if let Err(e) =
                crate::mailbox::expire(&post.db, &post.mailbox, crate::db::now_ms()).await
            {
                tracing::warn!(error = %e.message, "message expiry sweep failed");
            }
        }
    });
    let sweeper = center.clone();
    tokio::spawn(async move {
        // Grants and approval windows end on time even when nobody calls the API.
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            if let Err(e) = crate::grants::expire(&sweeper).await {
                tracing::warn!(error = %e.message, "expiry sweep failed");
            }
            if let Err(e) = crate::checksheets::sweep(&sweeper).await {
                tracing::warn!(error = %e.message, "check-sheet expiry sweep failed");
            }
        }
    });
    Ok((
        center,
        InitReport {
            created,
            lines,
            admin_credential_file,
        },
    ))
}

/// Verify the audit chain from the checkpoint (chain_guard.rs); a break makes the
/// centre read-only and is the line the operator sees.
async fn check_chain(chain: &ChainGuard, db: &Db) -> anyhow::Result<(String, String)> {
    let outcome = chain
        .check(db)
        .await
        .map_err(|e| anyhow::anyhow!("cannot verify the audit chain: {}", e.message))?;
    Ok(match outcome {
        Outcome::Intact {
            from_seq,
            checked,
            head_seq,
        } => (
            "audit chain".into(),
            if head_seq == 0 {
                "empty".into()
            } else {
                format!("intact: records {from_seq}–{head_seq} verified ({checked} checked)")
            },
        ),
        Outcome::Broken(e) => (
            "AUDIT CHAIN BROKEN".into(),
            format!(
                "{e} (first bad record: {}); the centre is READ-ONLY: every change is refused until an intact database is restored / 監査ログのハッシュチェーンが壊れています（最初の不正レコード: {}）。読み取り専用で起動しました",
                e.seq(),
                e.seq()
            ),
        ),
    })
}

/// Build the Merkle tree of records that predate it, then hold the newest signed
/// checkpoint against it: records cut off or rewritten make the centre read-only.
async fn check_tree(tlog: &crate::tlog::Signer, db: &Db) -> anyhow::Result<(String, String)> {
    if db.read_only.get().is_some() {
        return Ok(("audit tree".into(), "not checked (read-only)".into()));
    }
    let added = crate::tlog::backfill(db)
        .await
        .map_err(|e| anyhow::anyhow!("cannot build the audit tree: {}", e.message))?;
    let why = crate::tlog::check_against_latest(db, tlog)
        .await
        .map_err(|e| anyhow::anyhow!("cannot check the audit tree: {}", e.message))?;
    Ok(match why {
        None => (
            "audit tree".into(),
            format!(
                "consistent with the newest signed checkpoint{}; log key {}",
                if added > 0 {
                    format!(" ({added} records added to the tree)")
                } else {
                    String::new()
                },
                tlog.origin
            ),
        ),
        Some(why) => {
            let _ = db.read_only.set(why.clone());
            tracing::error!("{why}; the centre is now read-only");
            (
                "AUDIT TREE INCONSISTENT".into(),
                format!("{why}; the centre is READ-ONLY / 監査ログが署名済みチェックポイントと一致しません（切り詰めまたは改ざん）。読み取り専用で起動しました"),
            )
        }
    })
}

/// Create the provider's first administrator if none exists, and write its credential
/// to `DIR/admin.token` with mode 0600 (created with that mode, never widened).
async fn ensure_provider_admin(db: &Db, dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let path = dir.join("admin.token");
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admins WHERE org_id IS NULL")
        .fetch_one(&db.pool)
        .await
        .context("cannot read administrators")?;
    if existing > 0 {
        return Ok(path.exists().then_some(path));
    }
    let id = new_id("adm");
    let secret = random_secret();
    let token = format!("{ADMIN_PREFIX}.{id}.{secret}");
    // Write the file first: a crash between the two steps leaves a file that works
    // once the insert is retried on the next start, never a credential nobody holds.
    write_secret_file(&path, token.as_bytes())?;
    let mut tx = db
        .begin_write()
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    sqlx::query("INSERT INTO admins (id, org_id, secret_hash, label, created_ms) VALUES ($1, NULL, $2, $3, $4)")
        .bind(&id)
        .bind(hash_secret(&secret))
        .bind("initial provider administrator")
        .bind(tx.now)
        .execute(&mut *tx.tx)
        .await
        .context("cannot store the administrator")?;
    tx.audit(
        "centre",
        "admin.created",
        &id,
        serde_json::json!({"scope": "provider"}),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.message))?;
    tx.commit().await.map_err(|e| anyhow::anyhow!(e.message))?;
    Ok(Some(path))
}

pub fn random_secret() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

/// Atomically write a secret: temp file created 0600, fsync, rename.
pub fn write_secret_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions on {}", p.display()))
}

//! `dodvpn center restore`: every check before anything is touched.
//!
//! Order: the manifest is read and its passphrase check tried (a wrong passphrase is
//! named as such), its HMAC checked (an altered manifest is named as such), the
//! destination checked (an existing data directory or a database with tables is left
//! alone unless `force`), then every part is opened into a staging directory beside the
//! destination and compared with the manifest's SHA-256. Only then is PostgreSQL loaded
//! (one transaction) and the restored database verified as the centre would: full audit
//! chain, the archive's checkpoint, the signed tree head, the counts. The staging
//! directory becomes the data directory by one rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sqlx::Connection;

use super::manifest::{self, Manifest, Part, FORMAT, MANIFEST, MANIFEST_MAC, MANIFEST_MAX};
use super::seal::{self, Keys};
use super::{human, Say};

pub struct RestoreOptions {
    pub from: PathBuf,
    pub data_dir: PathBuf,
    /// Where a PostgreSQL archive is loaded; must be absent for a SQLite one.
    pub database_url: Option<String>,
    /// Replace an existing data directory (kept aside as `DIR.replaced-…`) and drop
    /// the tables of a non-empty PostgreSQL database.
    pub force: bool,
}

pub struct RestoreSummary {
    pub manifest: Manifest,
    pub files: usize,
    pub schema_after: i64,
    pub audit_checked: u64,
    /// Where the data directory that was there before went (with `force`).
    pub replaced: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("wrong passphrase: the archive's key check does not match (nothing was restored)")]
    WrongPassphrase,
    #[error("the archive was altered or damaged: {0} (nothing was restored)")]
    Tampered(String),
}

pub async fn restore(
    opts: &RestoreOptions,
    passphrase: &[u8],
    say: Say<'_>,
) -> anyhow::Result<RestoreSummary> {
    let mut tar = tar::Archive::new(
        File::open(&opts.from).with_context(|| format!("cannot open {}", opts.from.display()))?,
    );
    let mut entries = tar
        .entries()
        .context("not a dodvpn backup (not a tar archive)")?;
    let json = read_small(&mut entries, MANIFEST)?;
    let mac = read_small(&mut entries, MANIFEST_MAC)?;
    let manifest: Manifest = serde_json::from_slice(&json)
        .map_err(|e| RestoreError::Tampered(format!("manifest unreadable: {e}")))?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "archive format {:?} is not {FORMAT:?}: made by another dodvpn release?",
        manifest.format
    );
    say(format!(
        "archive of {} made by dodvpn {}: {} database (schema {}), {} devices, {} parts",
        time_utc(manifest.created_ms),
        manifest.dodvpn_version,
        manifest.database.backend,
        manifest.database.schema_version,
        manifest.counts.devices,
        manifest.parts.len()
    ));
    say("deriving the archive key from the passphrase (Argon2id)".into());
    let keys = {
        let (p, k) = (passphrase.to_vec(), manifest.kdf.clone());
        tokio::task::spawn_blocking(move || Keys::derive(&p, &k))
            .await?
            .map_err(|e| RestoreError::Tampered(e.to_string()))?
    };
    if !keys.passphrase_matches(&manifest.key_check) {
        return Err(RestoreError::WrongPassphrase.into());
    }
    if !keys.mac_matches(&json, std::str::from_utf8(&mac).unwrap_or("")) {
        return Err(RestoreError::Tampered("the manifest does not match its HMAC".into()).into());
    }
    check_parts(&manifest)?;

    let postgres = manifest.database.backend == "postgres";
    match (&opts.database_url, postgres) {
        (None, true) => anyhow::bail!(
            "this archive holds a PostgreSQL dump: give --database postgres://… naming an empty database to load it into"
        ),
        (Some(u), true) if !(u.starts_with("postgres:") || u.starts_with("postgresql:")) => {
            anyhow::bail!("this archive holds a PostgreSQL dump; --database must be a postgres:// URL")
        }
        (Some(_), false) => anyhow::bail!(
            "this archive holds a SQLite database, restored as DATA/center.db: leave out --database (a restore does not move data between SQLite and PostgreSQL)"
        ),
        _ => {}
    }
    let data = &opts.data_dir;
    if occupied(data)? && !opts.force {
        anyhow::bail!(
            "{} exists and is not empty: restore into a new directory, or give --force to replace it (it is kept as {}.replaced-…)",
            data.display(),
            data.display()
        );
    }
    if let Some(url) = opts.database_url.as_deref().filter(|_| postgres) {
        let tables = pg_tables(url).await?;
        if tables > 0 && !opts.force {
            anyhow::bail!(
                "the database {} already holds {tables} tables: restore into an empty database (createdb), or give --force to drop them",
                crate::db::redact_url(url)
            );
        }
    }

    let staging = staging_dir(data)?;
    let guard = RemoveDirOnDrop(Some(staging.clone()));
    let files = unseal_all(&mut entries, &manifest, &keys, &staging, &mut *say)?;
    drop(tar);

    let url = if postgres {
        let url = opts.database_url.clone().expect("checked");
        let dump = staging.join("postgres.sql");
        say(format!(
            "loading the dump into {} (psql, one transaction)",
            crate::db::redact_url(&url)
        ));
        load_postgres(&url, &dump, opts.force).await?;
        fs::remove_file(&dump)?;
        url
    } else {
        format!("sqlite://{}?mode=rw", staging.join("center.db").display())
    };
    say("verifying the restored centre: audit chain, signed tree head, counts".into());
    let (checked, schema_after) = verify(&url, &manifest, &staging).await?;
    say(format!(
        "audit chain intact: records 1–{} verified ({checked} checked)",
        manifest.audit.head_seq
    ));

    let replaced = if data.exists() && occupied(data)? {
        let aside = PathBuf::from(format!(
            "{}.replaced-{}",
            data.display(),
            crate::db::now_ms()
        ));
        fs::rename(data, &aside)
            .with_context(|| format!("cannot move {} aside", data.display()))?;
        Some(aside)
    } else {
        if data.exists() {
            fs::remove_dir(data).with_context(|| format!("cannot replace {}", data.display()))?;
        }
        None
    };
    fs::rename(&staging, data).with_context(|| format!("cannot create {}", data.display()))?;
    std::mem::forget(guard);
    if let Some(parent) = parent_of(data) {
        File::open(parent)?.sync_all()?;
    }
    Ok(RestoreSummary {
        manifest,
        files,
        schema_after,
        audit_checked: checked,
        replaced,
    })
}

fn read_small<R: Read>(entries: &mut tar::Entries<'_, R>, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut e = entries
        .next()
        .ok_or_else(|| RestoreError::Tampered(format!("no {name}")))?
        .map_err(|e| RestoreError::Tampered(format!("unreadable tar: {e}")))?;
    let path = e.path()?.to_string_lossy().into_owned();
    if path != name {
        return Err(RestoreError::Tampered(format!("expected {name}, found {path:?}")).into());
    }
    if e.size() > MANIFEST_MAX {
        return Err(RestoreError::Tampered(format!("{name} is too large")).into());
    }
    let mut buf = Vec::new();
    e.read_to_end(&mut buf)?;
    Ok(buf)
}

/// The manifest's parts must be ones a restore can write safely.
fn check_parts(m: &Manifest) -> anyhow::Result<()> {
    let mut dbs = 0;
    for p in &m.parts {
        match p.kind.as_str() {
            "file" if manifest::safe_relative(&p.path) => {}
            "database" if p.path == "center.db" || p.path == "postgres.sql" => dbs += 1,
            _ => {
                return Err(RestoreError::Tampered(format!(
                    "part {:?} ({}) cannot be restored",
                    p.path, p.kind
                ))
                .into())
            }
        }
    }
    if dbs != 1 {
        return Err(RestoreError::Tampered("not exactly one database part".into()).into());
    }
    Ok(())
}

fn occupied(dir: &Path) -> anyhow::Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn parent_of(p: &Path) -> Option<&Path> {
    match p.parent() {
        Some(x) if x.as_os_str().is_empty() => Some(Path::new(".")),
        x => x,
    }
}

/// `.NAME.restoring-PID` beside the destination, so the last step is one rename on
/// the same file system.
fn staging_dir(data: &Path) -> anyhow::Result<PathBuf> {
    let parent = parent_of(data).context("the data directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = data
        .file_name()
        .context("the data directory needs a name")?
        .to_string_lossy();
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    Ok(staging)
}

struct RemoveDirOnDrop(Option<PathBuf>);
impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

fn unseal_all<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    m: &Manifest,
    keys: &Keys,
    staging: &Path,
    say: Say<'_>,
) -> anyhow::Result<usize> {
    let total: u64 = m.parts.iter().map(|p| p.size).sum();
    let mut done = 0u64;
    let mut shown = 0u64;
    let mut files = 0;
    for part in &m.parts {
        let name = part.entry_name();
        let mut e = entries
            .next()
            .ok_or_else(|| RestoreError::Tampered(format!("the archive ends before {name}")))?
            .map_err(|e| RestoreError::Tampered(format!("unreadable tar: {e}")))?;
        let found = e.path()?.to_string_lossy().into_owned();
        if found != name || e.size() != seal::sealed_len(part.size) {
            return Err(RestoreError::Tampered(format!(
                "expected {name} of {} bytes, found {found:?} of {}",
                seal::sealed_len(part.size),
                e.size()
            ))
            .into());
        }
        let dest = staging.join(&part.path);
        if let Some(dir) = dest.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode_for(part))
            .open(&dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        let mut w = HashingWriter::new(io::BufWriter::new(out));
        let base = done;
        seal::open_into(keys, &name, &mut e, part.size, &mut w, &mut |n| {
            let now = base + n;
            if total > 0 && now * 10 / total > shown {
                shown = now * 10 / total;
                say(format!(
                    "opened {}% ({} of {})",
                    now * 100 / total,
                    human(now),
                    human(total)
                ));
            }
        })
        .map_err(|e| match e {
            seal::SealError::Io(e) => anyhow::Error::from(e),
            other => RestoreError::Tampered(other.to_string()).into(),
        })?;
        let hash = w.hex();
        let file = w.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        if hash != part.sha256 {
            return Err(RestoreError::Tampered(format!(
                "{} does not match the manifest's SHA-256",
                part.path
            ))
            .into());
        }
        done += part.size;
        if part.kind == "file" {
            files += 1;
        }
    }
    if let Some(extra) = entries.next() {
        let what = extra
            .ok()
            .and_then(|e| e.path().ok().map(|p| p.to_string_lossy().into_owned()))
            .unwrap_or_default();
        return Err(RestoreError::Tampered(format!(
            "unexpected entry {what:?} after the last part"
        ))
        .into());
    }
    sync_tree(staging)?;
    Ok(files)
}

/// Secrets 0600 whatever the archive says; other files at most 0644.
fn mode_for(p: &Part) -> u32 {
    if p.kind == "database" || manifest::is_secret(&p.path) {
        0o600
    } else {
        p.mode_bits().unwrap_or(0o600) & 0o644
    }
}

fn sync_tree(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            sync_tree(&e.path())?;
        }
    }
    File::open(dir)?.sync_all()
}

struct HashingWriter<W> {
    inner: W,
    ctx: ring::digest::Context,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }
    fn hex(&self) -> String {
        hex::encode(self.ctx.clone().finish().as_ref())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

async fn pg_tables(url: &str) -> anyhow::Result<i64> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .with_context(|| format!("cannot open the database {}", crate::db::redact_url(url)))?;
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await.ok();
    Ok(n)
}

async fn load_postgres(url: &str, dump: &Path, force: bool) -> anyhow::Result<()> {
    let psql = super::snapshot::pg_tool("psql")?;
    let mut args: Vec<std::ffi::OsString> =
        ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
            .map(Into::into)
            .into();
    if force {
        args.push("-c".into());
        args.push("DROP SCHEMA public CASCADE; CREATE SCHEMA public;".into());
    }
    args.push("-f".into());
    args.push(dump.into());
    super::snapshot::run_pg_tool(
        &psql,
        url,
        &args,
        "psql could not load the dump (the database is unchanged)",
    )
    .await?;
    Ok(())
}

/// Open the restored database as the centre does (migrations included, so an archive
/// of an older release is upgraded here) and hold it against the manifest.
async fn verify(url: &str, m: &Manifest, staging: &Path) -> anyhow::Result<(u64, i64)> {
    let db = crate::db::Db::open(url).await?;
    let rows = crate::chain_guard::rows_from(&db, 0)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the audit log: {}", e.message))?;
    let summary = dodvpn_audit::verify_stored(None, &rows).map_err(|e| {
        anyhow::anyhow!(
            "the restored audit chain is broken at record {}: {e}",
            e.seq()
        )
    })?;
    let head_seq = rows.last().map_or(0, |r| r.seq as u64);
    if head_seq != m.audit.head_seq
        || (head_seq > 0 && summary.head_hash != m.audit.head_hash)
        || rows.len() as u64 != m.audit.records
    {
        return Err(RestoreError::Tampered(format!(
            "the database's audit head #{head_seq} is not the manifest's #{}",
            m.audit.head_seq
        ))
        .into());
    }
    // The archive's checkpoint must name a record of this chain, unchanged.
    let cp_path = staging.join(crate::chain_guard::CHECKPOINT_FILE);
    if let Ok(text) = fs::read_to_string(&cp_path) {
        let cp: dodvpn_audit::Checkpoint = serde_json::from_str(&text)
            .map_err(|e| RestoreError::Tampered(format!("audit checkpoint unreadable: {e}")))?;
        let from: Vec<_> = rows
            .iter()
            .filter(|r| r.seq as u64 >= cp.seq)
            .cloned()
            .collect();
        dodvpn_audit::verify_stored(Some(&cp), &from).map_err(|e| {
            anyhow::anyhow!("the archive's audit checkpoint does not fit its database: {e}")
        })?;
    }
    let log_key = staging.join("pki").join(dodvpn_pki::log_key::LOG_KEY_FILE);
    if log_key.is_file() {
        let key = dodvpn_pki::LogKey::open_or_create(&staging.join("pki"))
            .context("cannot load the restored audit-log key")?;
        let signer = crate::tlog::Signer::new(key);
        if let Some(why) = crate::tlog::check_against_latest(&db, &signer)
            .await
            .map_err(|e| anyhow::anyhow!("cannot check the audit tree: {}", e.message))?
        {
            anyhow::bail!("the restored audit tree does not match its signed checkpoint: {why}");
        }
    }
    let mut conn = db.pool.acquire().await?;
    let (schema_after, _, counts) = super::snapshot::facts(&mut conn).await?;
    drop(conn);
    if counts != m.counts {
        return Err(RestoreError::Tampered(format!(
            "the database holds {counts:?}, the manifest says {:?}",
            m.counts
        ))
        .into());
    }
    db.pool.close().await;
    // A fresh checkpoint at the verified head: the next start checks from here.
    if head_seq > 0 {
        let cp = dodvpn_audit::Checkpoint {
            seq: head_seq,
            hash: summary.head_hash.clone(),
        };
        crate::init::write_secret_file(&cp_path, serde_json::to_string(&cp)?.as_bytes())?;
    }
    Ok((summary.count, schema_after))
}

/// `2026-12-03T05:40:12Z`
pub fn time_utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

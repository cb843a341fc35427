//! `dodvpn center backup` and `restore` (issue 17, docs/backup.md): a consistent
//! snapshot of a serving centre, its database and its data directory (PKI, audit
//! checkpoint, credentials, message files) in one tar whose parts are sealed under a
//! passphrase, and the way back that refuses a wrong passphrase, an altered archive
//! and an occupied destination.

pub mod manifest;
pub mod restore;
pub mod seal;
pub mod snapshot;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use manifest::{Manifest, Part, FORMAT, MANIFEST, MANIFEST_MAC};
use seal::{KdfParams, Keys, SealReader};

pub use restore::{restore, RestoreOptions, RestoreSummary};

/// Progress lines for the operator (stderr in the CLI).
pub type Say<'a> = &'a mut (dyn FnMut(String) + Send);

pub struct BackupOptions {
    pub data_dir: PathBuf,
    /// The centre's `--database`; default SQLite in the data directory.
    pub database_url: Option<String>,
    pub to: PathBuf,
}

pub struct BackupSummary {
    pub manifest: Manifest,
    pub bytes: u64,
}

/// The database files of the embedded default, never copied as files.
const SQLITE_FILES: [&str; 4] = [
    "center.db",
    "center.db-wal",
    "center.db-shm",
    "center.db-journal",
];

pub async fn backup(
    opts: &BackupOptions,
    passphrase: &[u8],
    say: Say<'_>,
) -> anyhow::Result<BackupSummary> {
    let data = &opts.data_dir;
    anyhow::ensure!(
        data.join("pki").join("root.pem").is_file(),
        "{} is not a centre's data directory (no pki/root.pem)",
        data.display()
    );
    anyhow::ensure!(
        !opts.to.exists(),
        "{} exists: a backup never overwrites a file; choose a new name",
        opts.to.display()
    );
    let url = opts.database_url.clone().unwrap_or_else(|| {
        crate::CenterConfig {
            data_dir: data.clone(),
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url: None,
            tls_names: vec![],
        }
        .database_url()
    });
    let parent = match opts.to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let work = tempfile::Builder::new()
        .prefix(".dodvpn-backup-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot make a work directory in {}", parent.display()))?;

    say("deriving the archive key from the passphrase (Argon2id, 64 MiB)".into());
    let kdf = KdfParams::fresh();
    let keys = {
        let (p, k) = (passphrase.to_vec(), kdf.clone());
        tokio::task::spawn_blocking(move || Keys::derive(&p, &k)).await??
    };

    // The checkpoint first: read after the snapshot, it could name a record the
    // snapshot does not hold, and the restored centre would start read-only.
    let checkpoint = match fs::read(data.join(crate::chain_guard::CHECKPOINT_FILE)) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("cannot read the audit checkpoint"),
    };

    let postgres = !url.starts_with("sqlite:");
    let (db_file, db_name) = if postgres {
        (work.path().join("postgres.sql"), "postgres.sql")
    } else {
        (work.path().join("center.db"), "center.db")
    };
    say(format!(
        "taking a consistent snapshot of the database {} ({})",
        crate::db::redact_url(&url),
        if postgres {
            "pg_dump in an exported REPEATABLE READ snapshot"
        } else {
            "SQLite VACUUM INTO"
        }
    ));
    let snap = if postgres {
        snapshot::postgres(&url, &db_file).await?
    } else {
        snapshot::sqlite(&url, &db_file).await?
    };
    let db_size = fs::metadata(&db_file)?.len();
    say(format!(
        "database snapshot: {} (schema {}), {} organisations, {} devices, {} grants, audit records up to #{}",
        human(db_size),
        snap.database.schema_version,
        snap.counts.organisations,
        snap.counts.devices,
        snap.counts.grants,
        snap.audit.head_seq
    ));

    // Files after the snapshot: a message file is written before its row commits,
    // so every message the snapshot lists has its file by now.
    let skip: Vec<PathBuf> = [opts.to.clone(), work.path().to_path_buf()]
        .iter()
        .filter_map(|p| p.canonicalize().ok().or_else(|| Some(p.clone())))
        .collect();
    let mut files = Vec::new();
    collect(data, data, &skip, &mut files)?;
    files.sort();

    let mut parts = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    if let Some(bytes) = &checkpoint {
        parts.push(Part {
            kind: "file".into(),
            path: crate::chain_guard::CHECKPOINT_FILE.into(),
            mode: Some(manifest::mode_text(0o600)),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        });
        sources.push(Source::Bytes(bytes.clone()));
    }
    for rel in &files {
        let path = data.join(rel);
        let meta = fs::metadata(&path)?;
        let mut f = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let sha256 = hash_reader(&mut f)?;
        parts.push(Part {
            kind: "file".into(),
            path: rel.clone(),
            mode: Some(manifest::mode_text(meta.mode())),
            size: meta.len(),
            sha256,
        });
        sources.push(Source::File(path));
    }
    say(format!(
        "{} files of the data directory (PKI, credentials, messages)",
        parts.len()
    ));
    let db_sha = hash_reader(&mut File::open(&db_file)?)?;
    parts.push(Part {
        kind: "database".into(),
        path: db_name.into(),
        mode: None,
        size: db_size,
        sha256: db_sha,
    });
    sources.push(Source::File(db_file.clone()));

    let manifest = Manifest {
        format: FORMAT.into(),
        dodvpn_version: env!("CARGO_PKG_VERSION").into(),
        created_ms: crate::db::now_ms(),
        database: snap.database,
        audit: snap.audit,
        counts: snap.counts,
        key_check: keys.key_check(),
        kdf,
        parts,
    };
    let bytes = write_archive(&opts.to, &manifest, &sources, &keys, &mut *say)?;
    say(format!(
        "archive written: {} ({})",
        opts.to.display(),
        human(bytes)
    ));
    Ok(BackupSummary { manifest, bytes })
}

enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// Regular files under `dir`, as paths relative to `root`; the live SQLite files,
/// temporaries and what `skip` names stay out.
fn collect(root: &Path, dir: &Path, skip: &[PathBuf], out: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if skip
            .iter()
            .any(|s| path.canonicalize().is_ok_and(|p| &p == s))
        {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", path.display()))?
            .to_string();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(root, &path, skip, out)?;
        } else if kind.is_file() {
            let temporary = name.starts_with('.') || name.ends_with(".tmp");
            let live_db = dir == root && SQLITE_FILES.contains(&name.as_str());
            let checkpoint = dir == root && name == crate::chain_guard::CHECKPOINT_FILE;
            if !temporary && !live_db && !checkpoint {
                anyhow::ensure!(manifest::safe_relative(&rel), "unexpected path {rel:?}");
                out.push(rel);
            }
        } else {
            tracing::warn!(path = %path.display(), "not a regular file; left out of the backup");
        }
    }
    Ok(())
}

/// Write the tar to `to.partial`, then rename: a crash never leaves a file that looks
/// like a finished backup.
fn write_archive(
    to: &Path,
    manifest: &Manifest,
    sources: &[Source],
    keys: &Keys,
    say: Say<'_>,
) -> anyhow::Result<u64> {
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    let _ = fs::remove_file(&partial);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let guard = RemoveOnDrop(Some(partial.clone()));
    let mut tar = tar::Builder::new(io::BufWriter::new(file));
    let json = serde_json::to_vec_pretty(manifest)?;
    let mtime = (manifest.created_ms / 1000) as u64;
    append(&mut tar, MANIFEST, json.len() as u64, mtime, &json[..])?;
    let mac = keys.mac(&json);
    append(
        &mut tar,
        MANIFEST_MAC,
        mac.len() as u64,
        mtime,
        mac.as_bytes(),
    )?;

    let total: u64 = manifest.parts.iter().map(|p| p.size).sum();
    let mut done = 0u64;
    let mut shown = 0u64;
    for (part, src) in manifest.parts.iter().zip(sources) {
        let name = part.entry_name();
        let reader: Box<dyn Read> = match src {
            Source::Bytes(b) => Box::new(io::Cursor::new(b.clone())),
            Source::File(p) => {
                Box::new(File::open(p).with_context(|| format!("cannot read {}", p.display()))?)
            }
        };
        let mut hashing = HashingReader::new(reader);
        let base = done;
        // One line per tenth of the work, inside a part too, so a large database
        // shows it is moving.
        let mut tick = |n: u64| {
            let now = base + n;
            if total > 0 && now * 10 / total > shown {
                shown = now * 10 / total;
                say(format!(
                    "sealed {}% ({} of {})",
                    now * 100 / total,
                    human(now),
                    human(total)
                ));
            }
        };
        let counted = CountingReader {
            inner: &mut hashing,
            read: 0,
            tick: &mut tick,
        };
        let sealed = SealReader::new(keys, &name, counted, part.size);
        append(&mut tar, &name, seal::sealed_len(part.size), mtime, sealed)
            .with_context(|| format!("cannot write part {}", part.path))?;
        anyhow::ensure!(
            hashing.hex() == part.sha256,
            "{} changed while it was backed up; run the backup again",
            part.path
        );
        done += part.size;
    }
    let mut w = tar.into_inner()?;
    w.flush()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    fs::rename(&partial, to).with_context(|| format!("cannot write {}", to.display()))?;
    std::mem::forget(guard);
    if let Some(dir) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(bytes)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    tar.append_data(&mut h, name, data)
}

struct RemoveOnDrop(Option<PathBuf>);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

struct CountingReader<'a, R> {
    inner: R,
    read: u64,
    tick: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.tick)(self.read);
        Ok(n)
    }
}

pub(crate) struct HashingReader<R> {
    inner: R,
    ctx: ring::digest::Context,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.ctx.clone().finish().as_ref())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn hash_reader(r: &mut impl Read) -> io::Result<String> {
    let mut h = HashingReader::new(r);
    io::copy(&mut h, &mut io::sink())?;
    Ok(h.hex())
}

pub fn human(n: u64) -> String {
    const U: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

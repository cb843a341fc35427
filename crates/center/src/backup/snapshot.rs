//! A consistent copy of the live database while the centre serves.
//!
//! - SQLite: `VACUUM INTO` on a connection of its own. It runs in one read
//!   transaction, so the copy holds exactly the commits made before it began; under WAL
//!   a reader never blocks the centre's writer.
//! - PostgreSQL: a REPEATABLE READ transaction exports its snapshot, the manifest's
//!   facts are read in it, and `pg_dump --snapshot` dumps that same snapshot (plain
//!   SQL, no owners or grants, so it loads into a database owned by anyone).

use std::path::{Path, PathBuf};

use anyhow::Context;
use sqlx::AnyConnection;
use sqlx::{Connection, Executor, Row};

use super::manifest::{AuditHead, Counts, DatabaseInfo};

pub struct Snapshot {
    pub database: DatabaseInfo,
    pub audit: AuditHead,
    pub counts: Counts,
}

/// The file behind a `sqlite:` URL.
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .context("not a sqlite: URL")?;
    let path = rest.split('?').next().unwrap_or(rest);
    anyhow::ensure!(
        !path.is_empty() && path != ":memory:",
        "{url:?} names no database file"
    );
    Ok(PathBuf::from(path))
}

fn sqlite_url(path: &Path, mode: &str) -> String {
    format!("sqlite://{}?mode={mode}", path.display())
}

pub async fn sqlite(url: &str, dest: &Path) -> anyhow::Result<Snapshot> {
    sqlx::any::install_default_drivers();
    let src = sqlite_path(url)?;
    anyhow::ensure!(
        src.is_file(),
        "no SQLite database at {} (give the centre's --data, or its --database URL)",
        src.display()
    );
    // mode=rw: a backup never creates an empty database where it expected one.
    let mut conn = AnyConnection::connect(&sqlite_url(&src, "rw"))
        .await
        .with_context(|| format!("cannot open the database {}", src.display()))?;
    conn.execute("PRAGMA busy_timeout=10000").await?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await?;
    let target = dest.to_str().context("the snapshot path is not UTF-8")?;
    conn.execute(format!("VACUUM INTO '{}'", target.replace('\'', "''")).as_str())
        .await
        .with_context(|| format!("VACUUM INTO {} failed", dest.display()))?;
    conn.close().await.ok();
    let mut copy = AnyConnection::connect(&sqlite_url(dest, "ro"))
        .await
        .context("cannot open the snapshot")?;
    let (schema_version, audit, counts) = facts(&mut copy).await?;
    copy.close().await.ok();
    Ok(Snapshot {
        database: DatabaseInfo {
            backend: "sqlite".into(),
            schema_version,
            taken_with: format!("SQLite {version} VACUUM INTO"),
        },
        audit,
        counts,
    })
}

pub async fn postgres(url: &str, dest: &Path) -> anyhow::Result<Snapshot> {
    sqlx::any::install_default_drivers();
    let shown = crate::db::redact_url(url);
    let mut conn = AnyConnection::connect(url)
        .await
        .with_context(|| format!("cannot open the database {shown}"))?;
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await?;
    let server: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    let (schema_version, audit, counts) = facts(&mut conn).await?;
    let pg_dump = pg_tool("pg_dump")?;
    let tool_version = tool_version(&pg_dump).await;
    let mut args: Vec<std::ffi::OsString> = vec![
        format!("--snapshot={snapshot}").into(),
        "--format=plain".into(),
        "--no-owner".into(),
        "--no-privileges".into(),
        "--file".into(),
    ];
    args.push(dest.into());
    run_pg_tool(&pg_dump, url, &args, "pg_dump failed").await?;
    conn.execute("COMMIT").await?;
    conn.close().await.ok();
    Ok(Snapshot {
        database: DatabaseInfo {
            backend: "postgres".into(),
            schema_version,
            taken_with: format!("{tool_version} from server {server}"),
        },
        audit,
        counts,
    })
}

/// What the manifest records about a database, read in the snapshot itself.
pub async fn facts(conn: &mut AnyConnection) -> anyhow::Result<(i64, AuditHead, Counts)> {
    let schema: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await
            .context("this database has no dodvpn schema (no _sqlx_migrations)")?;
    let count = |table: &'static str| format!("SELECT COUNT(*) FROM {table}");
    let mut n = [0u64; 4];
    for (i, t) in ["orgs", "devices", "grants", "audit"]
        .into_iter()
        .enumerate()
    {
        let v: i64 = sqlx::query_scalar(&count(t))
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("cannot count {t}"))?;
        n[i] = v as u64;
    }
    let head = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (head_seq, head_hash) = match head {
        Some(r) => (r.try_get::<i64, _>(0)? as u64, r.try_get::<String, _>(1)?),
        None => (0, String::new()),
    };
    Ok((
        schema,
        AuditHead {
            records: n[3],
            head_seq,
            head_hash,
        },
        Counts {
            organisations: n[0],
            devices: n[1],
            grants: n[2],
        },
    ))
}

/// A PostgreSQL client program: on PATH (Debian's postgresql-client), or the newest
/// installed server's bin directory.
pub fn pg_tool(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().with_context(|| {
        format!("{name} not found: install Debian's postgresql-client (apt-get install postgresql-client)")
    })
}

/// Run a PostgreSQL client program with `args` against `url`. The password travels in
/// PGPASSWORD, never in argv (argv is world-readable in /proc); `failed` opens the error.
pub async fn run_pg_tool(
    tool: &Path,
    url: &str,
    args: &[std::ffi::OsString],
    failed: &str,
) -> anyhow::Result<()> {
    let (bare, password) = split_password(url);
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .arg(format!("--dbname={bare}"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("cannot run {}", tool.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{failed} ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

async fn tool_version(tool: &Path) -> String {
    match tokio::process::Command::new(tool)
        .arg("--version")
        .output()
        .await
    {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => tool.display().to_string(),
    }
}

/// `postgres://user:secret@host/db` → (`postgres://user@host/db`, `secret`), the
/// password percent-decoded, so it can travel in PGPASSWORD instead of argv.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Some(s) = url.find("://") else {
        return (url.to_string(), None);
    };
    let auth_end = url[s + 3..]
        .find(['/', '?'])
        .map_or(url.len(), |i| s + 3 + i);
    let Some(at) = url[s + 3..auth_end].rfind('@').map(|i| s + 3 + i) else {
        return (url.to_string(), None);
    };
    let creds = &url[s + 3..at];
    match creds.find(':') {
        Some(c) => (
            format!("{}{}{}", &url[..s + 3], &creds[..c], &url[at..]),
            Some(percent_decode(&creds[c + 1..])),
        ),
        None => (url.to_string(), None),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_leaves_the_url() {
        assert_eq!(
            split_password("postgres://u:p%40ss@h:5432/db?sslmode=disable"),
            (
                "postgres://u@h:5432/db?sslmode=disable".to_string(),
                Some("p@ss".to_string())
            )
        );
        assert_eq!(
            split_password("postgres://postgres@127.0.0.1:1/x"),
            ("postgres://postgres@127.0.0.1:1/x".to_string(), None)
        );
        assert_eq!(split_password("postgres:///x").1, None);
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///d/center.db?mode=rwc").unwrap(),
            PathBuf::from("/d/center.db")
        );
        assert!(sqlite_path("sqlite::memory:").is_err());
    }
}

//! `dodvpn center backup` / `restore` (issue 17 item 4, docs/backup.md), on real
//! processes, SQLite and a real PostgreSQL: a backup taken while an administrator keeps
//! writing holds every write acknowledged before it started; the restored centre
//! verifies its audit chain, serves the same devices, and an enrolled device still
//! authenticates with its certificates; wrong passphrases, altered archives and occupied
//! destinations are refused with a clear error and leave nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BACKUP_PASS: &str = "a long backup passphrase for tests";

fn center_cmd(args: &[&str], pass: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("center").args(args).stdin(Stdio::null());
    cmd.env_remove("DODVPN_DATA")
        .env_remove("DODVPN_DATABASE_URL");
    match pass {
        Some(p) => cmd.env("DODVPN_BACKUP_PASSPHRASE", p),
        None => cmd.env_remove("DODVPN_BACKUP_PASSPHRASE"),
    };
    cmd.output().expect("run dodvpn center")
}

fn ok(out: &Output, what: &str) -> (String, String) {
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "{what} failed:\nstdout {so}\nstderr {se}"
    );
    (so, se)
}

fn refused(out: &Output, what: &str, expect: &str) -> String {
    let se = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{what} succeeded but must be refused"
    );
    assert!(
        se.contains(expect),
        "{what}: error does not say {expect:?}: {se}"
    );
    assert!(!se.contains("panicked"), "{what} panicked: {se}");
    se
}

fn backup(c: &Centre, to: &Path) -> (String, String) {
    let mut args = vec![
        "backup".to_string(),
        "--data".into(),
        c.dir.display().to_string(),
        "--to".into(),
        to.display().to_string(),
    ];
    if let Some(db) = &c.db {
        args.extend(["--database".into(), db.clone()]);
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    ok(&center_cmd(&args, Some(BACKUP_PASS)), "backup")
}

fn restore(from: &Path, data: &Path, db: Option<&str>, pass: &str, extra: &[&str]) -> Output {
    let from = from.display().to_string();
    let data = data.display().to_string();
    let mut args = vec!["restore", "--from", &from, "--data", &data];
    if let Some(db) = db {
        args.extend(["--database", db]);
    }
    args.extend(extra);
    center_cmd(&args, Some(pass))
}

fn device_table(c: &Centre) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = c
        .admin_ok(&["device", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap_or("").to_string(),
                d["serial"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn org_names(c: &Centre) -> Vec<String> {
    c.admin_ok(&["org", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

/// The whole story on one backend.
async fn round_trip(backend: Backend) {
    let c = Centre::start(backend);
    let h = c.org("Backup Hospital", "hospital");
    let site = onboard(&c, &h, "BK-1", "10.61.0.0/24").await;
    let before_devices = device_table(&c);

    // An administrator keeps writing while the backup runs.
    let stop = AtomicBool::new(false);
    let acked: Mutex<Vec<String>> = Mutex::new(vec![]);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("centre-backup.tar");
    let (acked_before, stdout, stderr) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("writer-{i}");
                c.admin_ok(&["org", "create", &name, "--kind", "clinic"]);
                acked.lock().unwrap().push(name);
            }
        });
        let t0 = Instant::now();
        while acked.lock().unwrap().len() < 20 && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Every write acknowledged up to here must be in the snapshot.
        let acked_before = acked.lock().unwrap().clone();
        let (so, se) = backup(&c, &archive);
        // Keep writing a moment after, so the snapshot is not simply "everything".
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        (acked_before, so, se)
    });
    let acked_all = acked.into_inner().unwrap();
    eprintln!(
        "{backend:?}: {} writes acknowledged before the backup, {} by its end",
        acked_before.len(),
        acked_all.len()
    );
    assert!(
        acked_all.len() > acked_before.len(),
        "writes went on during the backup"
    );
    // Progress on stderr, the summary on stdout.
    for line in [
        "deriving the archive key",
        "taking a consistent snapshot",
        "database snapshot:",
        "sealed 100%",
        "archive written",
    ] {
        assert!(stderr.contains(line), "no progress line {line:?}: {stderr}");
    }
    assert!(stdout.contains("backup written"), "{stdout}");
    // Nothing secret in the clear: private keys, the admin credential.
    let bytes = std::fs::read(&archive).unwrap();
    let hay = String::from_utf8_lossy(&bytes);
    assert!(
        !hay.contains("PRIVATE KEY"),
        "a private key is readable in the archive"
    );
    assert!(
        !hay.contains(c.credential().trim()),
        "the admin credential is readable in the archive"
    );
    assert!(
        hay.contains("\"format\": \"dodvpn-backup/1\""),
        "the manifest is readable"
    );
    assert_eq!(mode_of(&archive), 0o600);

    // Restore next to it (and, for PostgreSQL, into an empty database).
    let target = work.path().join("restored");
    let pg = (backend == Backend::Postgres).then(fresh_pg_database);
    let out = restore(&archive, &target, pg.as_deref(), BACKUP_PASS, &[]);
    let (so, se) = ok(&out, "restore");
    assert!(se.contains("opened 100%"), "restore progress: {se}");
    assert!(so.contains("audit chain   intact"), "{so}");
    assert_eq!(mode_of(&target), 0o700);
    for key in [
        "root.key",
        "device-ca.key",
        "service-ca.key",
        "centre-tls.key",
        "centre-signing.key",
        "audit-log.key",
    ] {
        assert_eq!(mode_of(&target.join("pki").join(key)), 0o600, "{key}");
    }
    assert_eq!(mode_of(&target.join("admin.token")), 0o600);
    assert!(
        !work.path().read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("restoring")),
        "the staging directory is gone"
    );

    // The restored centre: chain intact at start, same devices, every acknowledged write.
    let mut original = c;
    original.stop();
    let r = Centre::open_at(target.clone(), pg.clone());
    let start = r.stdout_lines.join("\n");
    assert!(
        start.contains("audit chain") && start.contains("intact"),
        "{start}"
    );
    assert!(!start.contains("READ-ONLY"), "{start}");
    assert_eq!(device_table(&r), before_devices);
    let names = org_names(&r);
    for n in &acked_before {
        assert!(
            names.contains(n),
            "{n} was acknowledged before the backup but is not restored"
        );
    }
    // A snapshot, not a mix: the writer's organisations in it are writer-0..writer-k
    // without a gap (each write was acknowledged before the next began).
    let mut restored: Vec<usize> = names
        .iter()
        .filter_map(|n| n.strip_prefix("writer-")?.parse().ok())
        .collect();
    restored.sort();
    assert_eq!(
        restored,
        (0..restored.len()).collect::<Vec<_>>(),
        "a gap in the snapshot"
    );
    assert!(restored.len() >= acked_before.len() && restored.len() <= acked_all.len());
    eprintln!(
        "{backend:?}: the snapshot holds writer-0..writer-{}",
        restored.len() - 1
    );
    assert!(r.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
    // The enrolled device authenticates to the restored centre with its own certificates.
    let me: Value = site.tier2(&r).get("/api/v1/device/whoami").await.unwrap();
    assert_eq!(me["device_id"].as_str(), Some(site.id.as_str()), "{me}");
    // And the restored centre takes new writes onto the same chain.
    r.org("After Restore", "lab");
    assert!(r.admin_ok(&["audit", "verify"])["ok"].as_bool().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_backup_while_writing_restores_everything_acknowledged() {
    round_trip(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_backup_while_writing_restores_everything_acknowledged() {
    pg_tools_or_fail();
    round_trip(Backend::Postgres).await;
}

fn pg_tools_or_fail() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = Command::new(root.join("scripts/setup.sh"))
        .args(["--check", "postgresql", "pgbackup"])
        .status()
        .unwrap();
    assert!(
        st.success(),
        "pg_dump and psql are needed: run scripts/setup.sh as root"
    );
}

fn small_backup() -> (Centre, tempfile::TempDir, PathBuf) {
    let c = Centre::start(Backend::Sqlite);
    c.org("Small Hospital", "hospital");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("b.tar");
    backup(&c, &archive);
    (c, work, archive)
}

#[test]
fn wrong_passphrase_is_refused_and_nothing_is_written() {
    let (_c, work, archive) = small_backup();
    let target = work.path().join("r");
    let se = refused(
        &restore(&archive, &target, None, "not the passphrase at all", &[]),
        "restore with a wrong passphrase",
        "wrong passphrase",
    );
    assert!(!se.contains(BACKUP_PASS));
    assert!(!target.exists());
}

/// Flip one byte at `at` (an offset into the archive).
fn flip(archive: &Path, copy: &Path, at: usize) {
    let mut b = std::fs::read(archive).unwrap();
    b[at] ^= 0x01;
    std::fs::write(copy, b).unwrap();
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle")
}

#[test]
fn altered_archives_are_refused_and_nothing_is_written() {
    let (_c, work, archive) = small_backup();
    let bytes = std::fs::read(&archive).unwrap();
    let target = work.path().join("r");
    // The manifest: one digit of its device count.
    let at = find(&bytes, b"\"organisations\": ") + "\"organisations\": ".len();
    let m = work.path().join("manifest-edited.tar");
    flip(&archive, &m, at);
    refused(
        &restore(&m, &target, None, BACKUP_PASS, &[]),
        "edited manifest",
        "does not match its HMAC",
    );
    assert!(!target.exists());
    // A sealed key file: somewhere inside the root key's part.
    let at = find(&bytes, b"parts/file/pki/root.key.sealed") + 512 + 40;
    let k = work.path().join("key-edited.tar");
    flip(&archive, &k, at);
    refused(
        &restore(&k, &target, None, BACKUP_PASS, &[]),
        "edited key part",
        "altered or damaged",
    );
    assert!(!target.exists());
    // The database, near the end.
    let d = work.path().join("db-edited.tar");
    flip(&archive, &d, bytes.len() - 2048);
    refused(
        &restore(&d, &target, None, BACKUP_PASS, &[]),
        "edited database",
        "altered or damaged",
    );
    // Cut off.
    let t = work.path().join("cut.tar");
    std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    refused(
        &restore(&t, &target, None, BACKUP_PASS, &[]),
        "truncated archive",
        "altered or damaged",
    );
    // Not an archive at all.
    let junk = work.path().join("junk.tar");
    std::fs::write(&junk, b"hello").unwrap();
    let out = restore(&junk, &target, None, BACKUP_PASS, &[]);
    assert!(!out.status.success());
    assert!(!target.exists());
    assert!(
        !work.path().read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("restoring")),
        "a staging directory was left behind"
    );
}

#[test]
fn an_existing_data_directory_is_replaced_only_when_told() {
    let (c, work, archive) = small_backup();
    let target = work.path().join("r");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), b"mine").unwrap();
    refused(
        &restore(&archive, &target, None, BACKUP_PASS, &[]),
        "restore over a data directory",
        "--force",
    );
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"mine");
    // The live centre's own directory is refused the same way.
    refused(
        &restore(&archive, &c.dir, None, BACKUP_PASS, &[]),
        "restore over the live centre",
        "not empty",
    );
    let (so, _) = ok(
        &restore(&archive, &target, None, BACKUP_PASS, &["--force"]),
        "restore --force",
    );
    assert!(so.contains("previous data"), "{so}");
    assert!(target.join("pki/root.key").is_file());
    let aside: Vec<_> = work
        .path()
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("r.replaced-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(aside[0].join("keep.txt")).unwrap(), b"mine");
    // A SQLite archive does not go into PostgreSQL (and says so).
    refused(
        &restore(
            &archive,
            &work.path().join("r2"),
            Some("postgres://nobody@127.0.0.1:1/x"),
            BACKUP_PASS,
            &[],
        ),
        "SQLite archive into PostgreSQL",
        "leave out --database",
    );
}

#[test]
fn backup_refuses_weak_or_missing_passphrases_and_existing_files() {
    let c = Centre::start(Backend::Sqlite);
    let work = tempfile::tempdir().unwrap();
    let to = work.path().join("b.tar");
    let data = c.dir.display().to_string();
    let to_s = to.display().to_string();
    let args = ["backup", "--data", &data, "--to", &to_s];
    refused(
        &center_cmd(&args, Some("short")),
        "short passphrase",
        "shorter than 12",
    );
    refused(
        &center_cmd(&args, None),
        "no passphrase",
        "--passphrase-file",
    );
    // A passphrase file works (and its newline is not part of it).
    let pf = work.path().join("pass");
    std::fs::write(&pf, format!("{BACKUP_PASS}\n")).unwrap();
    let pf_s = pf.display().to_string();
    let mut with_file = args.to_vec();
    with_file.extend(["--passphrase-file", &pf_s]);
    ok(
        &center_cmd(&with_file, None),
        "backup with a passphrase file",
    );
    refused(
        &center_cmd(&with_file, None),
        "backup over an existing file",
        "exists",
    );
    let r = work.path().join("r");
    ok(
        &restore(&to, &r, None, BACKUP_PASS, &[]),
        "restore of the passphrase-file backup",
    );
    // Not a data directory.
    let not = work.path().join("empty");
    std::fs::create_dir(&not).unwrap();
    let not_s = not.display().to_string();
    let to2 = work.path().join("b2.tar").display().to_string();
    refused(
        &center_cmd(
            &["backup", "--data", &not_s, "--to", &to2],
            Some(BACKUP_PASS),
        ),
        "backup of a non-centre directory",
        "not a centre's data directory",
    );
}

#[test]
fn postgres_archive_needs_an_empty_database() {
    pg_tools_or_fail();
    let c = Centre::start(Backend::Postgres);
    c.org("PG Hospital", "hospital");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("pg.tar");
    backup(&c, &archive);
    refused(
        &restore(&archive, &work.path().join("r0"), None, BACKUP_PASS, &[]),
        "PostgreSQL archive without --database",
        "--database postgres://",
    );
    // The live centre's own database is not empty: refused without --force.
    let live = c.db.clone().unwrap();
    refused(
        &restore(
            &archive,
            &work.path().join("r1"),
            Some(&live),
            BACKUP_PASS,
            &[],
        ),
        "restore over a database with tables",
        "already holds",
    );
    assert!(!work.path().join("r1").exists());
    // --force drops and reloads (into a copy, not the live one).
    let other = fresh_pg_database();
    ok(
        &restore(
            &archive,
            &work.path().join("r2"),
            Some(&other),
            BACKUP_PASS,
            &[],
        ),
        "restore into an empty database",
    );
    ok(
        &restore(
            &archive,
            &work.path().join("r3"),
            Some(&other),
            BACKUP_PASS,
            &["--force"],
        ),
        "restore --force over a restored database",
    );
}

#[test]
fn center_without_subcommand_still_runs_and_help_names_backup() {
    let out = Command::new(BIN)
        .args(["center", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("backup") && text.contains("restore") && text.contains("--data"),
        "{text}"
    );
    let out = Command::new(BIN)
        .args(["center", "backup", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--passphrase-file") && !text.contains("--passphrase <"),
        "{text}"
    );
    // `dodvpn center --data DIR` runs the centre as before (Centre::start does exactly that).
    let c = Centre::start(Backend::Sqlite);
    assert!(c.stdout_lines.iter().any(|l| l.trim() == "ready"));
}

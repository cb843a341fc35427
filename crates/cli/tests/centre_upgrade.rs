//! Upgrades (issue 17 item 5): a centre made by an older release's migrations is opened
//! by this binary, which migrates it; the organisations, devices, the grant and the
//! audit chain survive, and the device enrolled by the old centre still authenticates.
//!
//! The fixture is real: tests/fixtures/upgrade/make.sh built commit b8302b7 (migrations
//! 0001–0009, before 0011, 0013 and 0014), ran its centre on SQLite and on PostgreSQL,
//! enrolled devices through TR D.6 and stopped it. Its keys are test keys only. The
//! enrolled device's service certificate is valid until 2027-12-03: remake the fixture
//! (tests/fixtures/upgrade/make.sh) before then.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use dodvpn_pki::{FileKeyStore, KeyStore, Tier};
use serde_json::Value;

const FIXTURE_COMMIT: &str = "b8302b7";

fn fixture(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upgrade")
        .join(FIXTURE_COMMIT)
        .join(kind)
}

/// Git keeps no file modes: copy with directories 0700 and files 0600, as the centre
/// and the key store demand of their secrets.
fn copy_private(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(src).unwrap_or_else(|e| panic!("fixture {}: {e}", src.display())) {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_private(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// The newest migration this binary carries.
fn newest_migration() -> i64 {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../center/migrations");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.split('_').next()?.parse().ok()
        })
        .max()
        .unwrap()
}

fn schema_sqlite(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn psql(db: &str, args: &[&str]) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", db])
        .args(args)
        .output()
        .expect("psql (postgresql-client)");
    assert!(
        out.status.success(),
        "psql {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The checks on the upgraded centre, whichever backend.
async fn check_upgraded(c: &Centre, facts: &Value, keystore: &Path) {
    let start = c.stdout_lines.join("\n");
    assert!(
        start.contains("audit chain") && start.contains("intact"),
        "{start}"
    );
    assert!(
        start.contains("consistent with the newest signed checkpoint"),
        "{start}"
    );
    assert!(
        !start.contains("READ-ONLY") && !start.contains("BROKEN"),
        "{start}"
    );
    // The audit chain verifies as a whole and still ends in the old centre's head record
    // (plus whatever this start appended).
    let v = c.admin_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], Value::Bool(true), "{v}");
    let head_seq = facts["audit_head_seq"].as_u64().unwrap();
    let records = c.admin_ok(&["audit", "list", "--limit", "10000"]);
    let old_head = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["seq"].as_u64() == Some(head_seq))
        .unwrap_or_else(|| panic!("record {head_seq} is gone"));
    assert_eq!(old_head["hash"], facts["audit_head_hash"]);
    // Organisations, devices and the grant made by the old release.
    let orgs: Vec<String> = c
        .admin_ok(&["org", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    for o in facts["orgs"].as_array().unwrap() {
        assert!(
            orgs.contains(&o.as_str().unwrap().to_string()),
            "organisation {o} lost"
        );
    }
    let devices = c.admin_ok(&["device", "list"]);
    for d in facts["devices"].as_array().unwrap() {
        let found = devices
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == *d)
            .unwrap_or_else(|| panic!("device {d} lost"));
        assert_eq!(found["status"], "in_service", "{found}");
    }
    let grant = facts["grant"].as_str().unwrap();
    let g = c.admin_ok(&["grant", "show", grant]);
    assert_eq!(
        g["status"].as_str().or(g["grant"]["status"].as_str()),
        Some("active"),
        "{g}"
    );
    // The device the old centre enrolled authenticates with its service certificate.
    let store: Arc<dyn KeyStore> =
        Arc::new(FileKeyStore::open(keystore, PASSPHRASE.as_bytes()).unwrap());
    let dev =
        dodvpn_agent::CenterClient::device(&c.url, &c.ca_pem(), store, Tier::Service).unwrap();
    let me: Value = dev.get("/api/v1/device/whoami").await.unwrap_or_else(|e| {
        panic!("the old centre's device does not authenticate ({e:#}); if its certificate expired, remake the fixture with tests/fixtures/upgrade/make.sh")
    });
    assert_eq!(me["device_id"], facts["enrolled"]["device"], "{me}");
    // The new tables work: a write through the new code lands on the same chain.
    c.org("Created After The Upgrade", "lab");
    assert_eq!(c.admin_ok(&["audit", "verify"])["ok"], Value::Bool(true));
}

fn facts(kind: &str) -> Value {
    let text = std::fs::read_to_string(fixture(kind).join("facts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_database_of_an_older_release_is_migrated_and_keeps_its_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_private(&fixture("sqlite").join("data"), &data);
    let ks = tmp.path().join("site-a");
    copy_private(&fixture("sqlite").join("site-a"), &ks);
    let facts = facts("sqlite");
    let before = schema_sqlite(&data.join("center.db"));
    assert!(
        before < newest_migration(),
        "the fixture is not older ({before})"
    );
    let mut c = Centre::open_at(data.clone(), None);
    assert_eq!(schema_sqlite(&data.join("center.db")), newest_migration());
    check_upgraded(&c, &facts, &ks).await;
    // A second start of the upgraded database changes nothing.
    c.restart();
    assert!(c.stdout_lines.join("\n").contains("intact"));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_database_of_an_older_release_is_migrated_and_keeps_its_chain() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = Command::new(root.join("scripts/setup.sh"))
        .args(["--check", "postgresql"])
        .status()
        .unwrap();
    assert!(st.success(), "psql is needed: run scripts/setup.sh as root");
    let db = fresh_pg_database();
    let dump = fixture("postgres").join("dump.sql");
    psql(&db, &["-f", dump.to_str().unwrap()]);
    let before: i64 = psql(
        &db,
        &[
            "-c",
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
        ],
    )
    .parse()
    .unwrap();
    assert!(
        before < newest_migration(),
        "the fixture is not older ({before})"
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_private(&fixture("postgres").join("data"), &data);
    let ks = tmp.path().join("site-a");
    copy_private(&fixture("postgres").join("site-a"), &ks);
    let c = Centre::open_at(data, Some(db.clone()));
    let after: i64 = psql(
        &db,
        &[
            "-c",
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
        ],
    )
    .parse()
    .unwrap();
    assert_eq!(after, newest_migration());
    check_upgraded(&c, &facts("postgres"), &ks).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_centre_can_be_backed_up_and_restored() {
    // The older release's database, upgraded, then through backup and restore.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_private(&fixture("sqlite").join("data"), &data);
    let ks = tmp.path().join("site-a");
    copy_private(&fixture("sqlite").join("site-a"), &ks);
    let mut c = Centre::open_at(data.clone(), None);
    c.stop();
    let archive = tmp.path().join("b.tar");
    let pass = "upgrade then back up, a long passphrase";
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("center")
            .args(args)
            .env("DODVPN_BACKUP_PASSPHRASE", pass)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "backup",
        "--data",
        data.to_str().unwrap(),
        "--to",
        archive.to_str().unwrap(),
    ]);
    let restored = tmp.path().join("restored");
    run(&[
        "restore",
        "--from",
        archive.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ]);
    let r = Centre::open_at(restored, None);
    check_upgraded(&r, &facts("sqlite"), &ks).await;
}

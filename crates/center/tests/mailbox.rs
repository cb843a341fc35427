//! Store-and-forward mailboxes on SQLite and PostgreSQL (R-SVC-4): deny by default, the
//! centre holds ciphertext only (an operator with the whole database and data directory
//! finds no plaintext byte), notices carry no content, quota, expiry, receipts.
use std::path::{Path, PathBuf};
use std::process::Command;

use dodvpn_center::mailbox::{self, MailboxConfig, MailboxKind};
use dodvpn_message::{open, sign_and_seal, Recipient, SealOptions, SoftKey, VerifyOptions};
use sqlx::Row;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (scripts/setup.sh --check openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Member keys and certificates, made outside the centre's directory (they are the edges').
struct Edge {
    dir: tempfile::TempDir,
}

impl Edge {
    fn new() -> Edge {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=ca",
                "-days",
                "5",
            ],
        );
        Edge { dir }
    }
    fn issue(&self, name: &str, serial: u32, newkey: &[&str]) -> (SoftKey, String) {
        let d = self.dir.path();
        let (k, r, c) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subj = format!("/CN={name}");
        let mut a = vec![
            "req", "-new", "-nodes", "-keyout", &k, "-out", &r, "-subj", &subj,
        ];
        a.extend_from_slice(newkey);
        openssl(d, &a);
        let s = serial.to_string();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &r,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &s,
                "-days",
                "5",
                "-out",
                &c,
            ],
        );
        let pem = std::fs::read_to_string(d.join(&c)).unwrap();
        (
            SoftKey::from_pem(&std::fs::read_to_string(d.join(&k)).unwrap(), &pem).unwrap(),
            pem,
        )
    }
    fn ca(&self) -> x509_cert::Certificate {
        let pem = std::fs::read_to_string(self.dir.path().join("ca.crt")).unwrap();
        let (_, der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
        der::Decode::from_der(&der).unwrap()
    }
}

fn fresh_pg() -> String {
    let base = std::env::var("DODVPN_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("DODVPN_TEST_PG_URL is not set: run the tests with ./scripts/test.sh")
    });
    let name = format!(
        "t_mbx_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let out = Command::new("psql")
        .arg(&base)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

struct Lab {
    center: std::sync::Arc<dodvpn_center::Center>,
    dir: PathBuf,
    pg: Option<String>,
    _tmp: tempfile::TempDir,
}

async fn lab(pg: bool) -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("centre");
    let pg = pg.then(fresh_pg);
    let cfg = dodvpn_center::CenterConfig {
        data_dir: dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: pg.clone(),
        tls_names: vec![],
    };
    let (center, _) = dodvpn_center::init::open(&cfg).await.unwrap();
    Lab {
        center,
        dir,
        pg,
        _tmp: tmp,
    }
}

/// Every file under `dir`, and (PostgreSQL) a dump of the whole database: does any hold `needle`?
fn operator_finds(lab: &Lab, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![lab.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                if b.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    if let Some(url) = &lab.pg {
        let out = Command::new("pg_dump")
            .arg(url)
            .output()
            .expect("pg_dump (postgresql-client)");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.windows(16).any(|w| w == b"message_director"),
            "the dump has our tables"
        );
        if out.stdout.windows(needle.len()).any(|w| w == needle) {
            hits.push("pg_dump".into());
        }
    }
    hits
}

async fn count(lab: &Lab, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&lab.center.db.pool)
        .await
        .unwrap()
        .get(0)
}

fn files(lab: &Lab) -> usize {
    std::fs::read_dir(lab.dir.join("messages"))
        .map(|r| r.count())
        .unwrap_or(0)
}

async fn whole_flow(pg: bool) {
    let lab = lab(pg).await;
    let db = &lab.center.db;
    let edge = Edge::new();
    let (site_key, site_pem) = edge.issue(
        "site-a",
        11,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    );
    let (sender_key, _) = edge.issue(
        "sender-b",
        12,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let org_a = mailbox::publish_certificate(
        db,
        MailboxKind::Org,
        "org-a",
        None,
        "dev-a",
        &site_pem,
        "admin",
    )
    .await
    .unwrap();
    assert_eq!(org_a, "org:org-a");

    // Deny by default: no policy row, no certificate and no deposit.
    let e = mailbox::lookup(db, "org-b", &org_a).await.unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (403, "message_not_permitted"));
    let cfg = MailboxConfig::new(&lab.dir);
    let plaintext: Vec<u8> = format!("CONFIDENTIAL-REFERRAL-{}-", dodvpn_center::new_id("x"))
        .repeat(50)
        .into_bytes();
    let site_cert: x509_cert::Certificate = {
        let (_, d) = der::pem::decode_vec(site_pem.as_bytes()).unwrap();
        der::Decode::from_der(&d).unwrap()
    };
    let msg = sign_and_seal(
        &plaintext,
        &sender_key,
        1_800_000_000,
        &[Recipient { cert: site_cert }],
        &SealOptions::default(),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let e = mailbox::deposit(
        db,
        &cfg,
        "dev-b",
        "org-b",
        std::slice::from_ref(&org_a),
        &msg,
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status.as_u16(), 403);
    assert_eq!(
        (count(&lab, "messages").await, files(&lab)),
        (0, 0),
        "nothing stored when denied"
    );

    mailbox::allow(db, "org-b", "org-a", "admin").await.unwrap();
    assert_eq!(
        mailbox::lookup(db, "org-b", &org_a).await.unwrap(),
        site_pem
    );
    assert_eq!(
        mailbox::lookup(db, "org-c", &org_a)
            .await
            .unwrap_err()
            .status
            .as_u16(),
        403,
        "still denied to others"
    );

    // Bad input: each refused, nothing stored.
    for (bad, status) in [
        (&msg[..msg.len() / 2], 422u16),
        (&b"not cms at all"[..], 422),
    ] {
        let e = mailbox::deposit(
            db,
            &cfg,
            "dev-b",
            "org-b",
            std::slice::from_ref(&org_a),
            bad,
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status.as_u16(), status, "{}", e.message);
    }
    let e = mailbox::deposit(
        db,
        &cfg,
        "dev-b",
        "org-b",
        &["org:nobody".into()],
        &msg,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status.as_u16(), 404);
    assert_eq!(
        (count(&lab, "messages").await, files(&lab)),
        (0, 0),
        "nothing stored for bad input"
    );

    let m = mailbox::deposit(
        db,
        &cfg,
        "dev-b",
        "org-b",
        std::slice::from_ref(&org_a),
        &msg,
        true,
    )
    .await
    .unwrap();
    assert_eq!(m.size, msg.len() as i64);
    assert_eq!(m.expires_ms - m.created_ms, mailbox::DEFAULT_EXPIRY_MS);

    // The notice on dev-a's event stream: metadata only.
    let row = sqlx::query(
        "SELECT kind, payload FROM events WHERE device_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind("dev-a")
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let (kind, payload): (String, String) = (row.get(0), row.get(1));
    assert_eq!(kind, "message.arrived");
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["id"], m.id.as_str());
    assert_eq!(
        v.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
        ["expires_ms", "id", "mailbox", "sender_org", "size"]
    );
    assert!(!payload.contains("CONFIDENTIAL"));

    // The operator holds everything the centre has and finds no plaintext; the same search
    // finds it where it is (a control, so the search itself is shown to work).
    let needle = &plaintext[..40];
    assert_eq!(
        operator_finds(&lab, needle),
        Vec::<String>::new(),
        "plaintext on the centre's disk"
    );
    std::fs::write(lab.dir.join("control.txt"), &plaintext).unwrap();
    assert_eq!(operator_finds(&lab, needle).len(), 1);
    std::fs::remove_file(lab.dir.join("control.txt")).unwrap();

    // The recipient lists, fetches and opens it.
    let list = mailbox::list(db, &org_a).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].sender_org, "org-b");
    let ct = mailbox::fetch(db, &cfg, &org_a, &m.id).await.unwrap();
    assert_eq!(ct, msg);
    let anchors = [edge.ca()];
    let opened = open(
        &ct,
        &[&site_key],
        &VerifyOptions {
            trust_anchors: &anchors,
            is_revoked: &|_| false,
        },
    )
    .unwrap();
    assert_eq!(&*opened.content, &plaintext[..]);
    assert_eq!(
        mailbox::fetch(db, &cfg, "org:org-b", &m.id)
            .await
            .unwrap_err()
            .status
            .as_u16(),
        404,
        "not your mailbox"
    );

    // Read receipt: audited, and the sender's device is told (without content).
    mailbox::mark_read(db, &org_a, &m.id, "dev-a")
        .await
        .unwrap();
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) FROM audit WHERE action = 'message.read_receipt' AND subject = $1",
    )
    .bind(&m.id)
    .fetch_one(&db.pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(n, 1);
    let kind: String =
        sqlx::query("SELECT kind FROM events WHERE device_id = 'dev-b' ORDER BY seq DESC LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get(0);
    assert_eq!(kind, "message.read");

    // Quota: a mailbox that is full refuses, nothing stored.
    let small = MailboxConfig {
        quota_bytes: msg.len() as i64 + 10,
        ..MailboxConfig::new(&lab.dir)
    };
    let e = mailbox::deposit(
        db,
        &small,
        "dev-b",
        "org-b",
        std::slice::from_ref(&org_a),
        &msg,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (413, "quota_exceeded"));
    assert_eq!((count(&lab, "messages").await, files(&lab)), (1, 1));

    // Expiry deletes rows and ciphertext.
    let m2 = mailbox::deposit(
        db,
        &cfg,
        "dev-b",
        "org-b",
        std::slice::from_ref(&org_a),
        &msg,
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        mailbox::expire(db, &cfg, m.created_ms + 1000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(mailbox::expire(db, &cfg, m2.expires_ms).await.unwrap(), 2);
    assert_eq!(
        (
            count(&lab, "messages").await,
            count(&lab, "message_recipients").await,
            files(&lab)
        ),
        (0, 0, 0)
    );
    assert!(mailbox::list(db, &org_a).await.unwrap().is_empty());

    // Delete: the last recipient's delete removes the ciphertext.
    let m3 = mailbox::deposit(
        db,
        &cfg,
        "dev-b",
        "org-b",
        std::slice::from_ref(&org_a),
        &msg,
        false,
    )
    .await
    .unwrap();
    mailbox::delete(db, &cfg, &org_a, &m3.id, "dev-a")
        .await
        .unwrap();
    assert_eq!((count(&lab, "messages").await, files(&lab)), (0, 0));
    assert_eq!(
        mailbox::delete(db, &cfg, &org_a, &m3.id, "dev-a")
            .await
            .unwrap_err()
            .status
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn mailbox_whole_flow_sqlite() {
    whole_flow(false).await;
}

#[tokio::test]
async fn mailbox_whole_flow_postgres() {
    whole_flow(true).await;
}

#[tokio::test]
async fn a_person_mailbox_and_a_renewed_certificate() {
    let lab = lab(false).await;
    let db = &lab.center.db;
    let edge = Edge::new();
    let (_, pem1) = edge.issue("dr-sato-2025", 21, &["-newkey", "rsa:2048"]);
    let (_, pem2) = edge.issue("dr-sato-2026", 22, &["-newkey", "rsa:2048"]);
    let mb = mailbox::publish_certificate(
        db,
        MailboxKind::Person,
        "org-a",
        Some("dr.sato"),
        "dev-a",
        &pem1,
        "admin",
    )
    .await
    .unwrap();
    assert_eq!(mb, "person:org-a:dr.sato");
    mailbox::allow(db, "org-b", "org-a", "admin").await.unwrap();
    assert_eq!(mailbox::lookup(db, "org-b", &mb).await.unwrap(), pem1);
    // Renewal replaces what senders get; the old key stays with the person.
    mailbox::publish_certificate(
        db,
        MailboxKind::Person,
        "org-a",
        Some("dr.sato"),
        "dev-a",
        &pem2,
        "admin",
    )
    .await
    .unwrap();
    assert_eq!(mailbox::lookup(db, "org-b", &mb).await.unwrap(), pem2);
    let e = mailbox::publish_certificate(
        db,
        MailboxKind::Person,
        "org-a",
        Some("dr sato; drop"),
        "dev-a",
        &pem2,
        "admin",
    )
    .await
    .unwrap_err();
    assert_eq!(e.status.as_u16(), 400);
    let e = mailbox::publish_certificate(
        db,
        MailboxKind::Org,
        "org-a",
        None,
        "dev-a",
        "garbage",
        "admin",
    )
    .await
    .unwrap_err();
    assert_eq!(e.status.as_u16(), 400);
}

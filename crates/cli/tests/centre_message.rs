//! Secure store-and-forward messaging end to end (R-SVC-4, issue 13): a real centre,
//! devices enrolled through TR D.6, the real `dodvpn message` CLI, and the operator's
//! view of the centre's disk.
mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

fn ks(site: &Site) -> String {
    site.dir.to_str().unwrap().to_string()
}

/// `dodvpn message ARGS --keystore SITE` (the key store flags come after the verb).
fn msg(site: &Site, args: &[&str]) -> anyhow::Result<String> {
    let mut v: Vec<&str> = vec!["message"];
    v.extend_from_slice(args);
    let k = ks(site);
    v.extend_from_slice(&["--keystore", &k]);
    dodvpn(&v)
}

fn msg_json(site: &Site, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = msg(site, &a).unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} gave {out}: {e}"))
}

async fn allow(c: &Centre, from: &str, to: &str) {
    c.admin_ok(&["message-policy", "allow", from, to]);
    let list = c.admin_ok(&["message-policy", "list"]);
    assert!(list
        .as_array()
        .unwrap()
        .contains(&json!({"from_org": from, "to_org": to})));
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

fn stored_messages(c: &Centre) -> usize {
    std::fs::read_dir(c.dir.join("messages"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

async fn setup(c: &Centre) -> (Site, Site, Site) {
    let hospital = c.org("Msg Hospital", "hospital");
    let clinic = c.org("Msg Clinic", "clinic");
    let other = c.org("Msg Other", "clinic");
    for o in [&hospital, &clinic, &other] {
        set_policy(c, o, &open_policy());
    }
    let a = onboard(c, &hospital, "MSG-A", "10.71.1.0/24").await;
    let b = onboard(c, &clinic, "MSG-B", "10.71.2.0/24").await;
    let x = onboard(c, &other, "MSG-X", "10.71.3.0/24").await;
    for s in [&a, &b, &x] {
        let p = msg_json(s, &["publish"]);
        assert_eq!(p["mailbox"], json!(format!("org:{}", s.org)));
    }
    // The hospital may write to the clinic; nobody else may write to anybody.
    allow(c, &hospital, &clinic).await;
    (a, b, x)
}

#[tokio::test(flavor = "multi_thread")]
async fn message_end_to_end_between_permitted_members_and_refused_otherwise() {
    end_to_end(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn message_end_to_end_on_postgres() {
    end_to_end(Backend::Postgres).await
}

async fn end_to_end(backend: Backend) {
    let c = Centre::start(backend);
    let (a, b, x) = setup(&c).await;
    let tmp = tempfile::tempdir().unwrap();
    let marker = format!("PLAINTEXT-MARKER-{}", std::process::id());
    let letter = format!("{marker}: 患者 山田太郎 の紹介状です。\n").repeat(50);
    let letter_path = tmp.path().join("letter.txt");
    std::fs::write(&letter_path, &letter).unwrap();
    let to_b = format!("org:{}", b.org);
    let mut notices = stream(&b, &c, 0).await;

    // Permitted: the hospital writes to the clinic, with a receipt.
    let sent = msg_json(
        &a,
        &[
            "send",
            "--to",
            &to_b,
            "--file",
            letter_path.to_str().unwrap(),
            "--receipt",
        ],
    );
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(sent["sender_org"], json!(a.org));

    // The notice says that something arrived, and nothing of what.
    let notice = next_kind(&mut notices, "message.arrived").await;
    let payload = notice["payload"].as_object().unwrap();
    let mut keys: Vec<&str> = payload.keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["expires_ms", "id", "mailbox", "sender_org", "size"],
        "{notice}"
    );
    assert!(!notice.to_string().contains("MARKER"), "{notice}");
    assert!(!notice.to_string().contains("山田"), "{notice}");
    // Default expiry: 90 days.
    let ttl = sent["expires_ms"].as_i64().unwrap() - sent["created_ms"].as_i64().unwrap();
    assert_eq!(ttl, 90 * 24 * 3600 * 1000);

    // Refused: an organisation without a policy row, and the reverse direction.
    let to_a = format!("org:{}", a.org);
    for (who, to) in [(&x, &to_b), (&b, &to_a)] {
        let e = msg(
            who,
            &["send", "--to", to, "--file", letter_path.to_str().unwrap()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("message_not_permitted"), "{e}");
    }
    // A recipient not in the directory.
    let e = msg(
        &a,
        &[
            "send",
            "--to",
            "org:nobody",
            "--file",
            letter_path.to_str().unwrap(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("404") || e.contains("not_found"), "{e}");

    // The operator, with the whole data directory (database, WAL, message store), cannot
    // read it: the plaintext's bytes are nowhere on the centre's disk.
    assert!(stored_messages(&c) >= 1);
    assert_eq!(
        files_containing(&c.dir, marker.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(
        files_containing(&c.dir, "山田太郎".as_bytes()),
        Vec::<String>::new()
    );
    if let Some(db) = &c.db {
        // With PostgreSQL the database is elsewhere: the operator dumps all of it.
        let dump = std::process::Command::new("pg_dump")
            .arg(db)
            .output()
            .expect("pg_dump (postgresql-client)");
        assert!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        assert!(dump.stdout.len() > 1000);
        assert!(!dump
            .stdout
            .windows(marker.len())
            .any(|w| w == marker.as_bytes()));
        assert!(!String::from_utf8_lossy(&dump.stdout).contains("山田太郎"));
    }

    // The recipient lists (metadata only) and fetches the ciphertext.
    let list = msg_json(&b, &["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], json!(id));
    let cms_path = tmp.path().join("m.cms");
    msg(&b, &["fetch", &id, "--out", cms_path.to_str().unwrap()]).unwrap();
    let cms = std::fs::read(&cms_path).unwrap();
    assert!(!cms.windows(marker.len()).any(|w| w == marker.as_bytes()));

    // A wrong recipient cannot fetch it from the centre, nor open the ciphertext.
    let e = msg(&x, &["list", "--mailbox", &to_b])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not_holder"), "{e}");
    let e = msg(&x, &["open", "--in", cms_path.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a recipient") || e.contains("受信者"), "{e}");

    // Modified ciphertext (the last byte is in the GCM tag), and a modified byte in the
    // middle (the encrypted content): refused.
    for at in [cms.len() - 1, cms.len() / 2] {
        let mut bad = cms.clone();
        bad[at] ^= 0x01;
        let p = tmp.path().join("bad.cms");
        std::fs::write(&p, &bad).unwrap();
        let e = msg(&b, &["open", "--in", p.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("modified")
                || e.contains("改ざん")
                || e.contains("unwrap")
                || e.contains("malformed"),
            "{e}"
        );
    }

    // Renewal: the clinic gets a new mailbox key; a message written before still opens
    // with the old key, one written after with the new one.
    let renewed = msg_json(&b, &["publish"]);
    // Another device of the same organisation cannot take the clinic's mailbox over.
    let b2 = onboard(&c, &b.org, "MSG-B2", "10.71.4.0/24").await;
    let e = msg(&b2, &["publish"]).unwrap_err().to_string();
    assert!(e.contains("held_by_other_device"), "{e}");
    assert_eq!(renewed["key_index"], json!(2));
    let sent2 = msg_json(
        &a,
        &[
            "send",
            "--to",
            &to_b,
            "--file",
            letter_path.to_str().unwrap(),
        ],
    );
    let id2 = sent2["id"].as_str().unwrap().to_string();
    for m in [&id, &id2] {
        let out = tmp.path().join(format!("{m}.txt"));
        let r = msg_json(&b, &["open", m, "--out", out.to_str().unwrap()]);
        assert_eq!(r["signer_status"], json!("trusted"), "{r}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), letter);
        assert_eq!(mode_of(&out), 0o600);
    }
    // The receipt the sender asked for is audited, once.
    let receipts = audit_actions(&c)
        .into_iter()
        .filter(|(a, _)| a == "message.read_receipt")
        .count();
    assert_eq!(receipts, 1);

    // A revoked sender is flagged at reading.
    c.admin_ok(&["device", "revoke", &a.id, "--reason", "stolen"]);
    let out = tmp.path().join("after-revoke.txt");
    let r = msg_json(&b, &["open", &id2, "--out", out.to_str().unwrap()]);
    assert_eq!(r["signer_status"], json!("revoked"), "{r}");

    // Delete: gone from the list and from the disk.
    let before = stored_messages(&c);
    msg(&b, &["delete", &id]).unwrap();
    let list = msg_json(&b, &["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(stored_messages(&c), before - 1);
    let e = msg(&b, &["delete", &id]).unwrap_err().to_string();
    assert!(e.contains("404") || e.contains("not_found"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn message_bad_input_is_refused_and_nothing_is_stored() {
    std::env::set_var("DODVPN_MESSAGE_QUOTA_BYTES", "300000");
    let c = Centre::start(Backend::Sqlite);
    let (a, b, _x) = setup(&c).await;
    let to_b = format!("org:{}", b.org);
    let dev = a.tier2(&c);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let post = |body: Value| {
        let dev = dev.clone();
        async move {
            let r = dev
                .request(reqwest::Method::POST, "/api/v1/device/messages")
                .json(&body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // A real message to cut and bend.
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("small.txt");
    std::fs::write(&f, b"hello").unwrap();
    msg_json(&a, &["send", "--to", &to_b, "--file", f.to_str().unwrap()]);
    let id = msg_json(&b, &["list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cms_path = tmp.path().join("m.cms");
    msg(&b, &["fetch", &id, "--out", cms_path.to_str().unwrap()]).unwrap();
    let cms = std::fs::read(&cms_path).unwrap();
    let stored = stored_messages(&c);

    // Truncated CMS: 422 invalid_cms, saying so.
    let (st, e) = post(json!({"to": [to_b], "cms": b64(&cms[..cms.len() - 7])})).await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(e["error"], json!("invalid_cms"));
    assert!(e["message"].as_str().unwrap().contains("truncated"), "{e}");
    // An unknown content type OID: named in the refusal.
    let mut other = cms.clone();
    let oid = [
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17,
    ];
    let at = other.windows(oid.len()).position(|w| w == oid).unwrap();
    other[at + oid.len() - 1] = 0x7f;
    let (st, e) = post(json!({"to": [to_b], "cms": b64(&other)})).await;
    assert_eq!(st, 422, "{e}");
    assert!(e["message"].as_str().unwrap().contains("OID"), "{e}");
    // Not base64, no recipients, a recipient not in the directory.
    let (st, _) = post(json!({"to": [to_b], "cms": "%%%%"})).await;
    assert_eq!(st, 400);
    let (st, _) = post(json!({"to": [], "cms": b64(&cms)})).await;
    assert_eq!(st, 400);
    let (st, e) = post(json!({"to": ["org:nobody"], "cms": b64(&cms)})).await;
    assert_eq!(st, 404, "{e}");
    // Not JSON at all.
    let r = dev
        .request(reqwest::Method::POST, "/api/v1/device/messages")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(stored_messages(&c), stored);

    // Quota: 300 000 bytes per mailbox. The first big message fits, the second not.
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, vec![0x5au8; 200_000]).unwrap();
    msg_json(
        &a,
        &["send", "--to", &to_b, "--file", big.to_str().unwrap()],
    );
    let stored = stored_messages(&c);
    let e = msg(
        &a,
        &["send", "--to", &to_b, "--file", big.to_str().unwrap()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("quota_exceeded"), "{e}");
    assert_eq!(stored_messages(&c), stored);

    // An upload dropped halfway: the body stream fails after half; nothing is stored
    // (the centre reads the whole body before it does anything: cleanly refused).
    let body = json!({"to": [to_b], "cms": b64(&cms)})
        .to_string()
        .into_bytes();
    let half = body[..body.len() / 2].to_vec();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "cut",
        )),
    ];
    let r = dev
        .request(reqwest::Method::POST, "/api/v1/device/messages")
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_messages(&c), stored);
    assert_eq!(msg_json(&b, &["list"]).as_array().unwrap().len(), 2);
    // No half-written file either.
    let parts: Vec<_> = std::fs::read_dir(c.dir.join("messages"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(parts.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn message_expiry_deletes() {
    std::env::set_var("DODVPN_MESSAGE_EXPIRY_SECS", "2");
    std::env::set_var("DODVPN_MESSAGE_SWEEP_SECS", "1");
    let c = Centre::start(Backend::Sqlite);
    let (a, b, _x) = setup(&c).await;
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("short.txt");
    std::fs::write(&f, b"gone soon").unwrap();
    let to_b = format!("org:{}", b.org);
    let sent = msg_json(&a, &["send", "--to", &to_b, "--file", f.to_str().unwrap()]);
    assert_eq!(
        sent["expires_ms"].as_i64().unwrap() - sent["created_ms"].as_i64().unwrap(),
        2000
    );
    assert_eq!(stored_messages(&c), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stored_messages(&c) > 0 {
        assert!(std::time::Instant::now() < deadline, "not expired in time");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(msg_json(&b, &["list"]).as_array().unwrap().is_empty());
    assert!(audit_actions(&c).iter().any(|(a, _)| a == "message.expire"));
}

/// A person's mailbox whose key is on a PKCS#11 token (SoftHSM2): generated there for
/// key agreement only, sensitive and not extractable; the message opens through
/// CKM_ECDH1_DERIVE on the token, and a renewal keeps the old key on the token.
#[tokio::test(flavor = "multi_thread")]
async fn message_to_a_persons_mailbox_on_a_pkcs11_token() {
    const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM2 is not installed ({MODULE} missing): run ./scripts/setup.sh"
    );
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "dr-sato",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .output()
        .expect("softhsm2-util (apt-get install -y softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pin = tmp.path().join("pin");
    std::fs::write(&pin, "1234").unwrap();
    let ks = tmp.path().join("ks");
    let pin_s = pin.to_str().unwrap().to_string();
    // `dodvpn ARGS` against the token (the key store flags go after the verb).
    let hsm = |args: &[&str]| -> anyhow::Result<String> {
        if args.first() == Some(&"admin") {
            return dodvpn(args);
        }
        let mut v = args.to_vec();
        if !v.contains(&"--keystore") {
            v.extend(["--keystore", ks.to_str().unwrap()]);
        }
        v.extend([
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            "dr-sato",
            "--pkcs11-pin-file",
            &pin_s,
        ]);
        dodvpn(&v)
    };

    let c = Centre::start(Backend::Sqlite);
    let hospital = c.org("Token Hospital", "hospital");
    let clinic = c.org("Token Clinic", "clinic");
    for o in [&hospital, &clinic] {
        set_policy(&c, o, &open_policy());
    }
    let a = onboard(&c, &hospital, "TOK-A", "10.72.1.0/24").await;
    let id = register(&c, &clinic, "TOK-B", "10.72.2.0/24");
    let (ca, cred) = (c.ca_path(), c.credential_path());
    let on_token = |args: &[&str]| hsm(args);
    common::enrol_with(&c, &ca, &cred, &on_token, &id, &ks);
    allow(&c, &hospital, &clinic).await;

    let p: Value = serde_json::from_str(
        &hsm(&["message", "publish", "--person", "dr-sato", "--json"]).unwrap(),
    )
    .unwrap();
    let mailbox = format!("person:{clinic}:dr-sato");
    assert_eq!(p["mailbox"], json!(mailbox));

    let f = tmp.path().join("referral.txt");
    std::fs::write(&f, "紹介状 / referral for dr Sato").unwrap();
    let sent = msg_json(
        &a,
        &["send", "--to", &mailbox, "--file", f.to_str().unwrap()],
    );
    let mid = sent["id"].as_str().unwrap().to_string();
    // Renewal on the token: a second key; the message to the first still opens.
    let p2: Value = serde_json::from_str(
        &hsm(&["message", "publish", "--person", "dr-sato", "--json"]).unwrap(),
    )
    .unwrap();
    assert_eq!(p2["key_index"], json!(2));
    let out = tmp.path().join("opened.txt");
    let r: Value = serde_json::from_str(
        &hsm(&[
            "message",
            "open",
            &mid,
            "--mailbox",
            &mailbox,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(r["signer_status"], json!("trusted"), "{r}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "紹介状 / referral for dr Sato"
    );

    // The mailbox keys are on the token, not extractable.
    let store =
        dodvpn_pki::Pkcs11KeyStore::open(Path::new(MODULE), "dr-sato", "1234", &ks).unwrap();
    use dodvpn_pki::KeyStore;
    assert_eq!(store.mailbox_keys().unwrap().len(), 2);
    assert!(!std::fs::read_dir(&ks).unwrap().flatten().any(|e| e
        .file_name()
        .to_string_lossy()
        .contains("mailbox")
        && e.file_name().to_string_lossy().ends_with(".key.enc")));
}

/// Peak resident memory of a process (VmHWM, in KiB), from /proc.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `dodvpn message ARGS --keystore SITE`, its stdout and its peak RSS (KiB), read from
/// /proc/PID/status while it runs (the peak only grows, so the last reading is it).
fn msg_measured(site: &Site, args: &[&str]) -> (String, u64) {
    use std::io::Read;
    let k = ks(site);
    let mut child = std::process::Command::new(BIN)
        .arg("message")
        .args(args)
        .args(["--keystore", &k])
        .env("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let mut peak = 0;
    let status = loop {
        if let Some(h) = vm_hwm_kib(pid) {
            peak = peak.max(h);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let stdout = reader.join().unwrap();
    assert!(status.success(), "dodvpn message {args:?}: {err}");
    (stdout, peak)
}

fn sha256_of(p: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Attachments up to 2 GiB go through in constant memory (issue 13): send streams, the
/// centre writes as it receives, fetch and open stream; the peak RSS of the sending CLI,
/// the centre and the opening CLI stays under 200 MiB, and the content arrives whole.
/// The size is DODVPN_MESSAGE_BIG_MIB (default 2048: the 2 GiB).
#[tokio::test(flavor = "multi_thread")]
async fn message_large_attachment_streams_in_bounded_memory() {
    let mib: u64 = std::env::var("DODVPN_MESSAGE_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let c = Centre::start(Backend::Sqlite);
    let (a, b, _x) = setup(&c).await;
    let to_b = format!("org:{}", b.org);
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.bin");
    let st = std::process::Command::new("head")
        .args(["-c", &(mib << 20).to_string(), "/dev/urandom"])
        .stdout(std::fs::File::create(&big).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let want = sha256_of(&big);
    let limit_kib = 200 * 1024;

    let t = std::time::Instant::now();
    let (sent, send_peak) = msg_measured(
        &a,
        &[
            "send",
            "--to",
            &to_b,
            "--attach",
            big.to_str().unwrap(),
            "--json",
        ],
    );
    let send_secs = t.elapsed().as_secs_f64();
    let sent: Value = serde_json::from_str(&sent).unwrap();
    let id = sent["id"].as_str().unwrap().to_string();
    assert!(sent["size"].as_u64().unwrap() > mib << 20, "{sent}");
    let centre_peak = vm_hwm_kib(c.pid()).unwrap();
    // Stored whole, 0600, and nothing half-written beside it.
    let stored = c.dir.join("messages").join(format!("{id}.cms"));
    assert_eq!(
        std::fs::metadata(&stored).unwrap().len(),
        sent["size"].as_u64().unwrap()
    );
    assert_eq!(mode_of(&stored), 0o600);

    let out = tmp.path().join("opened.bin");
    let t = std::time::Instant::now();
    let (opened, open_peak) =
        msg_measured(&b, &["open", &id, "--out", out.to_str().unwrap(), "--json"]);
    let open_secs = t.elapsed().as_secs_f64();
    let opened: Value = serde_json::from_str(&opened).unwrap();
    assert_eq!(opened["signer_status"], json!("trusted"), "{opened}");
    assert_eq!(opened["size"].as_u64().unwrap(), mib << 20);
    assert_eq!(mode_of(&out), 0o600);
    assert_eq!(sha256_of(&out), want, "the opened content differs");
    // The fetch to a file streams too.
    let cms = tmp.path().join("big.cms");
    msg(&b, &["fetch", &id, "--out", cms.to_str().unwrap()]).unwrap();
    assert_eq!(sha256_of(&cms), sha256_of(&stored));
    let centre_peak = centre_peak.max(vm_hwm_kib(c.pid()).unwrap());
    eprintln!(
        "{mib} MiB: send {send_secs:.1} s, peak RSS {send_peak} KiB; centre peak RSS {centre_peak} KiB; open {open_secs:.1} s, peak RSS {open_peak} KiB"
    );
    assert!(
        send_peak < limit_kib,
        "sending CLI peak RSS {send_peak} KiB"
    );
    assert!(centre_peak < limit_kib, "centre peak RSS {centre_peak} KiB");
    assert!(
        open_peak < limit_kib,
        "opening CLI peak RSS {open_peak} KiB"
    );
    // bench/messages.sh: the figures as JSON, and small messages per second through
    // the centre (each a `dodvpn message send` process: start-up included).
    if let Ok(path) = std::env::var("DODVPN_BENCH_JSON") {
        let small = tmp.path().join("small.txt");
        std::fs::write(&small, vec![b'x'; 1024]).unwrap();
        let n = 20;
        let t = std::time::Instant::now();
        for _ in 0..n {
            msg(
                &a,
                &["send", "--to", &to_b, "--file", small.to_str().unwrap()],
            )
            .unwrap();
        }
        let small_per_s = n as f64 / t.elapsed().as_secs_f64();
        let mb = (mib << 20) as f64 / 1e6;
        let v = json!({
            "size_mib": mib,
            "send_mb_s": mb / send_secs,
            "open_mb_s": mb / open_secs,
            "send_peak_rss_kib": send_peak,
            "centre_peak_rss_kib": centre_peak,
            "open_peak_rss_kib": open_peak,
            "small_1kib_sends_per_s_cli": small_per_s,
        });
        std::fs::write(path, v.to_string()).unwrap();
    }
    // No temporary file is left beside the output.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// mTLS to the centre by hand (rustls over a plain TCP socket), as a device: to cut an
/// upload exactly where a test wants.
fn raw_tls(
    c: &Centre,
    site: &Site,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(c.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let resolver =
        dodvpn_pki::client_cert_resolver(site.store.clone(), dodvpn_pki::Tier::Service).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(resolver);
    let hostport = c.url.trim_start_matches("https://").to_string();
    let host = hostport
        .rsplit_once(':')
        .unwrap()
        .0
        .trim_matches(['[', ']'])
        .to_string();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let sock = std::net::TcpStream::connect(&hostport).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

fn parts_and_messages(c: &Centre) -> (usize, usize) {
    let names: Vec<String> = std::fs::read_dir(c.dir.join("messages"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    (
        names.iter().filter(|n| n.ends_with(".part")).count(),
        names.iter().filter(|n| n.ends_with(".cms")).count(),
    )
}

/// The streamed deposit's bad input: an upload cut halfway by a raw TLS client leaves
/// no row and no file (refused cleanly, not resumable); a complete body that is not a
/// whole AuthEnvelopedData is 422; an announced length over the quota is 413 before a
/// byte is stored; a recipient not permitted is 403.
#[tokio::test(flavor = "multi_thread")]
async fn message_stream_upload_cut_or_bad_leaves_nothing() {
    use std::io::{Read, Write};
    std::env::set_var("DODVPN_MESSAGE_QUOTA_BYTES", "3000000");
    let c = Centre::start(Backend::Sqlite);
    let (a, b, x) = setup(&c).await;
    let to_b = format!("org:{}", b.org);
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("one.bin");
    std::fs::write(&f, vec![0x33u8; 1_000_000]).unwrap();
    msg_json(
        &a,
        &["send", "--to", &to_b, "--attach", f.to_str().unwrap()],
    );
    let id = msg_json(&b, &["list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cms_path = tmp.path().join("m.cms");
    msg(&b, &["fetch", &id, "--out", cms_path.to_str().unwrap()]).unwrap();
    let cms = std::fs::read(&cms_path).unwrap();
    assert_eq!(parts_and_messages(&c), (0, 1));
    let path = format!(
        "/api/v1/device/messages/stream?to={}",
        to_b.replace(':', "%3A")
    );
    let head = |len: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: centre\r\nContent-Type: application/pkcs7-mime\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
        )
    };

    // Cut halfway: the headers announce the whole message, half of it is sent, and the
    // socket is shut. The centre must drop the .part file and store no row.
    let mut s = raw_tls(&c, &a);
    s.write_all(head(cms.len()).as_bytes()).unwrap();
    s.write_all(&cms[..cms.len() / 2]).unwrap();
    s.flush().unwrap();
    // Wait until the centre has the half: a .part file exists while it waits for more.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while parts_and_messages(&c).0 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no upload in progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.sock.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while parts_and_messages(&c) != (0, 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "a cut upload left {:?}",
            parts_and_messages(&c)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(msg_json(&b, &["list"]).as_array().unwrap().len(), 1);

    // A complete body that is a truncated message: 422 invalid_cms, nothing stored.
    let answer = |body: &[u8], len: usize| {
        let mut s = raw_tls(&c, &a);
        s.write_all(head(len).as_bytes()).unwrap();
        s.write_all(body).unwrap();
        s.flush().unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        String::from_utf8_lossy(&resp).to_string()
    };
    let short = &cms[..cms.len() - 7];
    let r = answer(short, short.len());
    assert!(r.starts_with("HTTP/1.1 422"), "{r}");
    assert!(r.contains("invalid_cms"), "{r}");
    // The same bytes plus junk after the end: 422.
    let mut long = cms.clone();
    long.extend_from_slice(b"junk");
    let r = answer(&long, long.len());
    assert!(r.starts_with("HTTP/1.1 422"), "{r}");
    assert_eq!(parts_and_messages(&c), (0, 1));

    // Over the quota by its announced length: 413 quota_exceeded at once.
    let r = answer(&vec![0u8; 2_500_000], 2_500_000);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("quota_exceeded"), "{r}");
    // More than a streamed message may hold: 413 too_large.
    let r = answer(b"", 3 << 30);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("too_large"), "{r}");
    // A recipient the sender may not write to (x's organisation): 403, nothing stored.
    let to_x = format!("org:{}", x.org).replace(':', "%3A");
    let mut s = raw_tls(&c, &a);
    s.write_all(
        format!(
            "POST /api/v1/device/messages/stream?to={to_x} HTTP/1.1\r\nHost: centre\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            cms.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&cms).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let r = String::from_utf8_lossy(&resp);
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert_eq!(parts_and_messages(&c), (0, 1));

    // The CLI says the quota plainly too.
    let f2 = tmp.path().join("two.bin");
    std::fs::write(&f2, vec![0x44u8; 2_500_000]).unwrap();
    let e = msg(
        &a,
        &["send", "--to", &to_b, "--attach", f2.to_str().unwrap()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("quota_exceeded"), "{e}");
    assert_eq!(parts_and_messages(&c), (0, 1));
    assert_eq!(msg_json(&b, &["list"]).as_array().unwrap().len(), 1);
}

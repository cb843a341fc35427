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

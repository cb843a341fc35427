//! Test harness: a real `dodvpn center` process on loopback (SQLite or a real
//! PostgreSQL server started by scripts/test.sh), the real `dodvpn admin` CLI, and
//! devices driven through the agent library with real key stores.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dodvpn_agent::sse::SseParser;
use dodvpn_agent::CenterClient;
use dodvpn_pki::{FileKeyStore, KeyStore, Tier};
use futures_util::StreamExt;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_dodvpn");
pub const PASSPHRASE: &str = "test passphrase, not a secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `both_backends!(scenario)`: one test per back-end for `async fn scenario(Backend)`,
/// named `scenario::sqlite` and `scenario::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    };
}

/// A fresh PostgreSQL database on the server scripts/test.sh started. No server is a
/// failure with a clear message, never a silent skip.
pub fn fresh_pg_database() -> String {
    let base = std::env::var("DODVPN_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("DODVPN_TEST_PG_URL is not set: the PostgreSQL tests need the server that scripts/test.sh starts (run the tests with ./scripts/test.sh)")
    });
    let name = format!("t_{}_{}", std::process::id(), rand_suffix());
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
        .expect("psql must be installed (postgresql-client)");
    assert!(
        out.status.success(),
        "cannot create test database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("DODVPN_TEST_PG_URL must end in /DBNAME");
    format!("{prefix}/{name}")
}

fn rand_suffix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{n:x}")
}

pub struct Centre {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub url: String,
    pub db: Option<String>,
    pub listen: String,
    child: Option<Child>,
    pub stdout_lines: Vec<String>,
    /// More `dodvpn center` arguments (kept for restarts and replicas).
    pub extra_args: Vec<String>,
}

impl Centre {
    pub fn start(backend: Backend) -> Centre {
        Self::start_with(backend, &[])
    }

    /// Like [`Centre::start`], with more `dodvpn center` arguments.
    pub fn start_with(backend: Backend, extra_args: &[&str]) -> Centre {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("centre");
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_pg_database()),
        };
        let mut c = Centre {
            dir,
            _tmp: Some(tmp),
            url: String::new(),
            db,
            listen: "127.0.0.1:0".into(),
            child: None,
            stdout_lines: vec![],
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        c.spawn();
        c
    }

    /// Another centre process on the same data directory and database (a restart or a replica).
    pub fn replica(&self) -> Centre {
        let mut c = Centre {
            dir: self.dir.clone(),
            _tmp: None,
            url: String::new(),
            db: self.db.clone(),
            listen: "127.0.0.1:0".into(),
            child: None,
            stdout_lines: vec![],
            extra_args: self.extra_args.clone(),
        };
        c.spawn();
        c
    }

    /// A centre process on a data directory made elsewhere (restored or upgraded).
    pub fn open_at(dir: PathBuf, db: Option<String>) -> Centre {
        let mut c = Centre {
            dir,
            _tmp: None,
            url: String::new(),
            db,
            listen: "127.0.0.1:0".into(),
            child: None,
            stdout_lines: vec![],
            extra_args: vec![],
        };
        c.spawn();
        c
    }

    pub fn spawn(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.args(["center", "--data"])
            .arg(&self.dir)
            .args(["--listen", &self.listen]);
        if let Some(db) = &self.db {
            cmd.args(["--database", db]);
        }
        cmd.args(&self.extra_args);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start dodvpn center");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = vec![];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rest) = l.trim().strip_prefix("API") {
                        self.url = rest.trim().trim_end_matches('/').to_string();
                    }
                    let ready = l.trim() == "ready";
                    lines.push(l);
                    if ready {
                        break;
                    }
                }
                Err(_) => panic!("centre did not become ready; output so far: {lines:?}"),
            }
        }
        // Keep the port for restarts on the same address.
        self.listen = self.url.trim_start_matches("https://").to_string();
        self.stdout_lines = lines;
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: no chance to clean up (crash test).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("pki/root.pem")
    }
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_path()).unwrap()
    }
    pub fn credential_path(&self) -> PathBuf {
        self.dir.join("admin.token")
    }
    pub fn credential(&self) -> String {
        std::fs::read_to_string(self.credential_path()).unwrap()
    }

    /// Run `dodvpn admin --json ARGS` as the provider; Ok(json) or Err(stderr).
    pub fn admin(&self, args: &[&str]) -> Result<Value, String> {
        self.admin_as(&self.credential_path(), args)
    }

    pub fn admin_as(&self, credential: &Path, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(BIN)
            .args(["admin", "--json", "--center", &self.url])
            .arg("--ca")
            .arg(self.ca_path())
            .arg("--credential-file")
            .arg(credential)
            .args(args)
            .output()
            .expect("run dodvpn admin");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("admin {args:?} printed non-JSON ({e}): {text}")))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// A command that must fail (exit non-zero) and still print its JSON answer, as a
    /// refused connection application does.
    pub fn admin_refused(&self, args: &[&str]) -> Value {
        let out = Command::new(BIN)
            .args(["admin", "--json", "--center", &self.url])
            .arg("--ca")
            .arg(self.ca_path())
            .arg("--credential-file")
            .arg(self.credential_path())
            .args(args)
            .output()
            .expect("run dodvpn admin");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "admin {args:?} succeeded but should be refused: {text}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("refused"),
            "admin {args:?}: the refusal is not explained: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("admin {args:?} printed non-JSON ({e}): {text}"))
    }

    pub fn admin_ok(&self, args: &[&str]) -> Value {
        self.admin(args)
            .unwrap_or_else(|e| panic!("dodvpn admin {args:?} failed: {e}"))
    }

    pub fn client(&self) -> CenterClient {
        CenterClient::admin(&self.url, &self.ca_pem(), &self.credential()).unwrap()
    }

    pub fn anonymous(&self) -> CenterClient {
        CenterClient::anonymous(&self.url, &self.ca_pem()).unwrap()
    }

    /// Run SQL on the centre's own database, behind its back (tests that tamper with
    /// what the centre stored: SQLite file or PostgreSQL by psql).
    pub fn sql(&self, sql: &str) {
        match &self.db {
            None => {
                let conn = rusqlite::Connection::open(self.dir.join("center.db")).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Some(url) => {
                let out = Command::new("psql")
                    .arg(url)
                    .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    pub fn org(&self, name: &str, kind: &str) -> String {
        self.admin_ok(&["org", "create", name, "--kind", kind])["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Centre {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// A VPN device: a real file key store in a temp directory.
pub struct Site {
    pub id: String,
    pub serial: String,
    pub org: String,
    pub store: Arc<dyn KeyStore>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Site {
    pub fn tier2(&self, c: &Centre) -> CenterClient {
        CenterClient::device(&c.url, &c.ca_pem(), self.store.clone(), Tier::Service).unwrap()
    }
    pub fn tier1(&self, c: &Centre) -> CenterClient {
        CenterClient::device(&c.url, &c.ca_pem(), self.store.clone(), Tier::Device).unwrap()
    }
}

pub fn new_store() -> (tempfile::TempDir, PathBuf, Arc<dyn KeyStore>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keystore");
    let store: Arc<dyn KeyStore> =
        Arc::new(FileKeyStore::open(&dir, PASSPHRASE.as_bytes()).unwrap());
    (tmp, dir, store)
}

/// Register a device (step c) and return its id.
pub fn register(c: &Centre, org: &str, serial: &str, subnet: &str) -> String {
    c.admin_ok(&[
        "device", "register", "--serial", serial, "--model", "DV-100", "--owner", org, "--subnet",
        subnet,
    ])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// TR D.6 d–l through the real CLI, written once (shared with `dodvpn demo`).
#[path = "../../src/demo/enrol.rs"]
mod enrol;

/// `dodvpn ARGS` on this host with the test passphrase; its stdout.
pub fn dodvpn(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(BIN)
        .args(args)
        .env("DODVPN_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "dodvpn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// TR D.6 d–l for a registered device whose key store `dodvpn_device` addresses (a
/// PKCS#11 token, say); the provider's steps run on this host.
pub fn enrol_with(
    c: &Centre,
    ca: &Path,
    credential: &Path,
    dodvpn_device: &dyn Fn(&[&str]) -> anyhow::Result<String>,
    device_id: &str,
    keystore: &Path,
) {
    enrol::D6 {
        center: &c.url,
        ca,
        credential,
        provider: dodvpn_device,
        device: dodvpn_device,
    }
    .enrol(device_id, keystore)
    .unwrap_or_else(|e| panic!("D.6 enrolment of {device_id}: {e:#}"));
}

/// Every step c–l for one device (registration here, the rest through the shared D.6
/// sequence), for tests that are about something else.
pub async fn onboard(c: &Centre, org: &str, serial: &str, subnet: &str) -> Site {
    let id = register(c, org, serial, subnet);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keystore");
    let (ca, cred) = (c.ca_path(), c.credential_path());
    enrol::D6 {
        center: &c.url,
        ca: &ca,
        credential: &cred,
        provider: &dodvpn,
        device: &dodvpn,
    }
    .enrol(&id, &dir)
    .unwrap_or_else(|e| panic!("D.6 enrolment of {serial}: {e:#}"));
    let store: Arc<dyn KeyStore> =
        Arc::new(FileKeyStore::open(&dir, PASSPHRASE.as_bytes()).unwrap());
    Site {
        id,
        serial: serial.to_string(),
        org: org.to_string(),
        store,
        dir,
        _tmp: tmp,
    }
}

/// A policy in which the organisation accepts and reaches everyone in its groups.
pub fn open_policy() -> Value {
    json!({
        "inbound": [{"from": "*", "services": ["any"]}],
        "outbound": [{"to": "*", "services": ["any"]}]
    })
}

pub fn set_policy(c: &Centre, org: &str, policy: &Value) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), policy.to_string()).unwrap();
    c.admin_ok(&["policy", "set", org, "--file", f.path().to_str().unwrap()]);
}

/// Audit actions, in order.
pub fn audit_actions(c: &Centre) -> Vec<(String, Value)> {
    let v = c.admin_ok(&["audit", "list", "--limit", "10000"]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["details"].clone(),
            )
        })
        .collect()
}

pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Open a device's event stream from `since`; its per-device events arrive on the channel.
pub async fn stream(
    site: &Site,
    c: &Centre,
    since: i64,
) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let client = site.tier2(c);
    let resp = client
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/device/events?since={since}"),
        )
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "stream refused: {}",
        resp.status()
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut p = SseParser::default();
        let mut body = resp.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            for e in p.push(&chunk).unwrap() {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                // Audit checkpoints (witnessing, centre_witness.rs) carry no sequence number.
                if v["kind"] == json!("audit.checkpoint") {
                    continue;
                }
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

pub async fn next_kind(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>, kind: &str) -> Value {
    loop {
        let v = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within 10 s"))
            .expect("stream ended");
        if v["kind"] == json!(kind) {
            return v;
        }
    }
}

/// A client presenting a certificate made by hand (expired, or from a CA the centre
/// never trusted): mutual TLS against the centre.
pub fn client_with_cert(c: &Centre, cert_pem: &str, key: &rcgen::KeyPair) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(c.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain =
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}

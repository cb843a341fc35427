//! A throwaway PKI made with the real `openssl` (a CA and member certificates), shared by
//! the tests. openssl is a listed need: `scripts/setup.sh --check openssl`.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use der::Decode;
use dodvpn_message::SoftKey;
use x509_cert::Certificate;

static SERIAL: AtomicU64 = AtomicU64::new(1000);

pub fn require_openssl() {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup.sh");
    let out = Command::new("bash")
        .arg(setup)
        .args(["--check", "openssl"])
        .output()
        .expect("run setup.sh");
    assert!(
        out.status.success(),
        "a package this test needs is missing:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    out
}

pub fn ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Certificate,
}

pub struct Party {
    pub name: String,
    pub key_path: PathBuf,
    pub cert_path: PathBuf,
    pub cert: Certificate,
    pub key: SoftKey,
}

fn newkey(kind: &str) -> Vec<&'static str> {
    match kind {
        "p256" => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "p384" => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "rsa" => vec!["-newkey", "rsa:2048"],
        other => panic!("kind {other}"),
    }
}

pub fn load_cert(path: &Path) -> Certificate {
    let pem = std::fs::read_to_string(path).unwrap();
    let (_, der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
    Certificate::from_der(&der).unwrap()
}

impl Pki {
    pub fn new() -> Pki {
        require_openssl();
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "req",
            "-x509",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/O=Test Org/CN=test-ca",
            "-days",
            "30",
        ];
        args.extend(newkey("p256"));
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        ok(dir.path(), &args);
        let ca = load_cert(&dir.path().join("ca.crt"));
        Pki { dir, ca }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// A member certificate signed by the CA: `kind` is p256, p384 or rsa.
    pub fn issue(&self, name: &str, kind: &str) -> Party {
        let d = self.dir.path();
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let subj = format!("/O=Test Org/CN={name}");
        let mut args = vec![
            "req", "-new", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj,
        ];
        args.extend(newkey(kind));
        ok(d, &args);
        let ext = format!("{name}.ext");
        std::fs::write(
            d.join(&ext),
            "keyUsage=critical,digitalSignature,keyEncipherment,keyAgreement\nextendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\n",
        )
        .unwrap();
        let serial = SERIAL.fetch_add(1, Ordering::SeqCst).to_string();
        ok(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                "10",
                "-out",
                &crt,
                "-extfile",
                &ext,
            ],
        );
        let cert = load_cert(&d.join(&crt));
        let soft = SoftKey::from_pem(
            &std::fs::read_to_string(d.join(&key)).unwrap(),
            &std::fs::read_to_string(d.join(&crt)).unwrap(),
        )
        .expect("load key");
        Party {
            name: name.into(),
            key_path: d.join(key),
            cert_path: d.join(crt),
            cert,
            key: soft,
        }
    }
}

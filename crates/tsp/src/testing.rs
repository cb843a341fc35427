//! A local RFC 3161 TSA for tests: the real `openssl ts -reply` behind a tiny
//! HTTP/1.1 responder on loopback (`scripts/setup.sh --check openssl`).
//! Certificates are made with the openssl CLI too: a CA, a TSA certificate with
//! the timeStamping EKU (critical), and a certificate without it, which openssl
//! itself refuses to stamp with, so [`LocalTsa::resign_without_eku`] signs a
//! token's TSTInfo with it through `openssl cms -sign`, as a forger would.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use der::{Decode, Encode};

pub struct LocalTsa {
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT/tsa`.
    pub url: String,
    /// The TSA CA certificate (PEM file) to configure as trusted.
    pub ca_pem_path: PathBuf,
    pub ca_der: Vec<u8>,
    /// Requests answered.
    pub served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl (scripts/setup.sh --check openssl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn pem_to_der(pem_text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default()
}

const TSA_CNF: &str = "\
[ tsa ]
default_tsa = tsa1
[ tsa1 ]
dir = .
serial = ./serial
crypto_device = builtin
signer_cert = ./tsa.crt
signer_key = ./tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
";

impl LocalTsa {
    /// Make the certificates and start answering on loopback.
    pub fn start() -> Result<LocalTsa, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/CN=dodvpn test TSA CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        openssl(d, &a)?;
        std::fs::write(
            d.join("tsa.ext"),
            "extendedKeyUsage=critical,timeStamping\nbasicConstraints=CA:FALSE\n",
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            d.join("noeku.ext"),
            "extendedKeyUsage=critical,serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .map_err(|e| e.to_string())?;
        for (name, ext) in [("tsa", "tsa.ext"), ("noeku", "noeku.ext")] {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let crt = format!("{name}.crt");
            let subj = format!("/CN=dodvpn test {name}");
            let mut a = vec!["req", "-new"];
            a.extend(ec);
            a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(d, &a)?;
            openssl(
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
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "30",
                    "-extfile",
                    ext,
                ],
            )?;
        }
        std::fs::write(d.join("serial"), "01\n").map_err(|e| e.to_string())?;
        std::fs::write(d.join("tsa.cnf"), TSA_CNF).map_err(|e| e.to_string())?;
        let ca_pem_path = d.join("ca.crt");
        let ca_der = pem_to_der(&std::fs::read_to_string(&ca_pem_path).map_err(|e| e.to_string())?);

        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let url = format!(
            "http://{}/tsa",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (stop2, served2, path) = (stop.clone(), served.clone(), d.to_path_buf());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        if serve_one(&path, &mut s).is_ok() {
                            served2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(LocalTsa {
            dir,
            url,
            ca_pem_path,
            ca_der,
            served,
            stop,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `openssl ts -reply` for one DER request: the DER response.
    pub fn reply(&self, req: &[u8]) -> Result<Vec<u8>, String> {
        reply_in(self.dir.path(), req)
    }

    /// The same TSTInfo as `token`, signed by the certificate without the
    /// timeStamping EKU (through `openssl cms -sign`).
    pub fn resign_without_eku(&self, token: &[u8]) -> Result<Vec<u8>, String> {
        let ci = cms::content_info::ContentInfo::from_der(token).map_err(|e| e.to_string())?;
        let sd: cms::signed_data::SignedData = ci.content.decode_as().map_err(|e| e.to_string())?;
        let tst = sd
            .encap_content_info
            .econtent
            .ok_or("no econtent")?
            .decode_as::<der::asn1::OctetString>()
            .map_err(|e| e.to_string())?;
        let d = self.dir.path();
        let n = uniq();
        let (inp, out) = (format!("tst{n}.der"), format!("forged{n}.der"));
        std::fs::write(d.join(&inp), tst.as_bytes()).map_err(|e| e.to_string())?;
        openssl(
            d,
            &[
                "cms",
                "-sign",
                "-binary",
                "-nodetach",
                "-nosmimecap",
                "-md",
                "sha256",
                "-econtent_type",
                "1.2.840.113549.1.9.16.1.4",
                "-signer",
                "noeku.crt",
                "-inkey",
                "noeku.key",
                "-in",
                &inp,
                "-outform",
                "DER",
                "-out",
                &out,
            ],
        )?;
        let forged = std::fs::read(d.join(&out)).map_err(|e| e.to_string())?;
        // Round-trip through the CMS types to be sure it is one DER ContentInfo.
        let ci = cms::content_info::ContentInfo::from_der(&forged).map_err(|e| e.to_string())?;
        ci.to_der().map_err(|e| e.to_string())
    }
}

impl Drop for LocalTsa {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn uniq() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn reply_in(dir: &Path, req: &[u8]) -> Result<Vec<u8>, String> {
    let n = uniq();
    let (q, r) = (format!("q{n}.tsq"), format!("r{n}.tsr"));
    std::fs::write(dir.join(&q), req).map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            &q,
            "-out",
            &r,
        ],
    )?;
    std::fs::read(dir.join(&r)).map_err(|e| e.to_string())
}

fn serve_one(dir: &Path, s: &mut std::net::TcpStream) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err("header too long".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no content-length")?;
    if len > 64 * 1024 {
        return Err("body too long".into());
    }
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("short body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..head_end + len];
    let (status, ctype, out) = match reply_in(dir, body) {
        Ok(r) => ("200 OK", "application/timestamp-reply", r),
        Err(e) => ("400 Bad Request", "text/plain", e.into_bytes()),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    )
    .into_bytes();
    resp.extend_from_slice(&out);
    s.write_all(&resp).map_err(|e| e.to_string())
}

//! The device's side of store-and-forward messaging (R-SVC-4): its mailbox keys, kept in
//! the key store and never removed (a renewal adds a key, so older messages still
//! open), signing with the service key, and the calls to the centre.
//!
//! The centre sees ciphertext only: a message is signed and encrypted here, before it
//! leaves, and opened here, after it arrives ([`dodvpn_message`]).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{bail, Context};
use base64::Engine;
use dodvpn_message::der::Decode;
use dodvpn_message::spki::AlgorithmIdentifierOwned;
use dodvpn_message::x509_cert::Certificate;
use dodvpn_message::{
    HashAlg, MessageSigner, Opened, Recipient, RecipientKey, SealOptions, SignerStatus,
    VerifyOptions,
};
use dodvpn_pki::{KeyStore, Tier};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::client::CenterClient;

fn cert_file(index: u32) -> String {
    format!("mailbox-{index}.pem")
}

pub fn parse_cert(pem: &str) -> anyhow::Result<Certificate> {
    let der = crate::enroll::pem_der(pem)?;
    Certificate::from_der(&der).context("certificate unreadable")
}

fn kerr(e: dodvpn_pki::PkiError) -> dodvpn_message::Error {
    dodvpn_message::Error::KeyStore(e.to_string())
}

/// A mailbox key in the key store: ECDH happens inside the store (or on the token).
pub struct StoreRecipient {
    store: Arc<dyn KeyStore>,
    pub index: u32,
    cert: Certificate,
}

impl RecipientKey for StoreRecipient {
    fn certificate(&self) -> &Certificate {
        &self.cert
    }
    fn ecdh(&self, point: &[u8]) -> Result<Zeroizing<Vec<u8>>, dodvpn_message::Error> {
        self.store.mailbox_ecdh(self.index, point).map_err(kerr)
    }
    fn rsa_oaep_decrypt(
        &self,
        _: HashAlg,
        _: HashAlg,
        _: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, dodvpn_message::Error> {
        Err(dodvpn_message::Error::WrongKeyType)
    }
}

/// The service key signs: the key store hashes and signs (ECDSA P-256 / SHA-256).
pub struct StoreSigner {
    store: Arc<dyn KeyStore>,
    cert: Certificate,
}

impl StoreSigner {
    pub fn new(store: Arc<dyn KeyStore>) -> anyhow::Result<Self> {
        let pem = store
            .cert(Tier::Service)?
            .context("the key store holds no service certificate: enrol first (dodvpn agent enroll) / サービス証明書がありません")?;
        Ok(StoreSigner {
            store,
            cert: parse_cert(&pem)?,
        })
    }
}

impl MessageSigner for StoreSigner {
    fn certificate(&self) -> &Certificate {
        &self.cert
    }
    fn digest_alg(&self) -> HashAlg {
        HashAlg::Sha256
    }
    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: dodvpn_message::oids::ECDSA_WITH_SHA256,
            parameters: None,
        }
    }
    fn sign_digest(&self, _: &[u8]) -> Result<Vec<u8>, dodvpn_message::Error> {
        // The key store signs whole messages (it hashes for itself).
        Err(dodvpn_message::Error::Sign(
            "the key store signs messages, not digests".into(),
        ))
    }
    fn sign_message(&self, tbs: &[u8]) -> Result<Vec<u8>, dodvpn_message::Error> {
        self.store
            .sign(Tier::Service, tbs)
            .map_err(|e| dodvpn_message::Error::Sign(e.to_string()))
    }
}

/// Every mailbox key that has a certificate, oldest first.
pub fn keys(store: &Arc<dyn KeyStore>) -> anyhow::Result<Vec<StoreRecipient>> {
    let mut out = Vec::new();
    for (index, _) in store.mailbox_keys()? {
        if let Some(pem) = store.get_file(&cert_file(index))? {
            out.push(StoreRecipient {
                store: store.clone(),
                index,
                cert: parse_cert(&String::from_utf8_lossy(&pem))?,
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    pub mailbox: String,
    pub certificate: String,
    pub serial: u64,
    pub not_after: i64,
    /// Which mailbox key of the key store it certifies.
    #[serde(default)]
    pub key_index: u32,
}

/// A new mailbox key, certified by the centre and published in the directory. Run again
/// to renew: the new key is added, the old ones stay.
pub async fn publish(
    client: &CenterClient,
    store: &Arc<dyn KeyStore>,
    person: Option<&str>,
) -> anyhow::Result<Published> {
    let (index, spki) = store.mailbox_generate()?;
    let body = serde_json::json!({
        "public_key": base64::engine::general_purpose::STANDARD.encode(&spki),
        "person": person,
    });
    let mut p: Published = client.post("/api/v1/device/mailbox", &body).await?;
    store.put_file(&cert_file(index), p.certificate.as_bytes())?;
    p.key_index = index;
    Ok(p)
}

#[derive(Deserialize)]
struct CaBundle {
    root: String,
    service_ca: String,
}

/// The service CA (which issues service and mailbox certificates), checked against the
/// root this device was provisioned with.
async fn service_ca(client: &CenterClient, store: &dyn KeyStore) -> anyhow::Result<Certificate> {
    let b: CaBundle = client.get("/pki/ca").await?;
    let own_root = crate::enroll::ca_pem(store)?;
    let root = parse_cert(&own_root)?;
    if parse_cert(&b.root)? != root {
        bail!("the centre's root CA is not the one this device was provisioned with / ルート CA が一致しません");
    }
    let ca = parse_cert(&b.service_ca)?;
    if !dodvpn_message::keys::issued_by(&ca, &root) {
        bail!("the service CA is not issued by the root CA / サービス CA がルート CA の発行ではありません");
    }
    Ok(ca)
}

/// Percent-encodes one path or query part (a mailbox name holds ':').
pub fn url_part(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The query string naming a mailbox (empty: the organisation's).
pub fn mailbox_query(mailbox: Option<&str>) -> String {
    mailbox
        .map(|m| format!("?mailbox={}", url_part(m)))
        .unwrap_or_default()
}

/// Sign `content` with the service key, encrypt it to each recipient's certificate
/// from the directory (checked: issued by the service CA as a mailbox certificate),
/// and deposit it. Returns the centre's metadata of the stored message.
pub async fn send(
    client: &CenterClient,
    store: &Arc<dyn KeyStore>,
    to: &[String],
    content: &[u8],
    receipt: bool,
) -> anyhow::Result<serde_json::Value> {
    let recipients = directory_certs(client, store, to).await?;
    let signer = StoreSigner::new(store.clone())?;
    let now = unix_now();
    let cms = dodvpn_message::sign_and_seal(
        content,
        &signer,
        now,
        &recipients,
        &SealOptions::default(),
        &mut dodvpn_message::rand_core::OsRng,
    )?;
    let body = serde_json::json!({
        "to": to,
        "receipt": receipt,
        "cms": base64::engine::general_purpose::STANDARD.encode(&cms),
    });
    client.post("/api/v1/device/messages", &body).await
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Each recipient's certificate from the directory, checked: issued by the service CA.
async fn directory_certs(
    client: &CenterClient,
    store: &Arc<dyn KeyStore>,
    to: &[String],
) -> anyhow::Result<Vec<Recipient>> {
    if to.is_empty() {
        bail!("no recipients: give --to MAILBOX / 宛先がありません");
    }
    let ca = service_ca(client, store.as_ref()).await?;
    let mut recipients = Vec::new();
    for m in to {
        #[derive(Deserialize)]
        struct Entry {
            certificate: String,
        }
        let e: Entry = client
            .get(&format!("/api/v1/device/directory/{}", url_part(m)))
            .await
            .with_context(|| format!("recipient {m} / 宛先 {m}"))?;
        let cert = parse_cert(&e.certificate)?;
        if !dodvpn_message::keys::issued_by(&cert, &ca) {
            bail!("the directory's certificate for {m} is not issued by the service CA / {m} の証明書はサービス CA の発行ではありません");
        }
        recipients.push(Recipient { cert });
    }
    Ok(recipients)
}

/// Sends a file of any size (attachments up to 2 GiB) in constant memory: a first pass
/// computes the digest the service key signs, the second encrypts as it reads and
/// streams the CMS to the centre (`POST /api/v1/device/messages/stream`, with its exact
/// length). If the upload is cut, the centre keeps nothing; send again.
pub async fn send_file(
    client: &CenterClient,
    store: &Arc<dyn KeyStore>,
    to: &[String],
    path: &std::path::Path,
    receipt: bool,
) -> anyhow::Result<serde_json::Value> {
    let recipients = directory_certs(client, store, to).await?;
    let signer = StoreSigner::new(store.clone())?;
    let open = || {
        std::fs::File::open(path)
            .with_context(|| format!("cannot read {} / 読み込めません", path.display()))
    };
    let alg = signer.digest_alg();
    let f = open()?;
    let (digest, len) = tokio::task::spawn_blocking(move || {
        dodvpn_message::digest_reader(alg, std::io::BufReader::with_capacity(1 << 20, f))
    })
    .await??;
    let sealed = dodvpn_message::seal_stream(
        &digest,
        len,
        std::io::BufReader::with_capacity(1 << 20, open()?),
        &signer,
        unix_now(),
        &recipients,
        &SealOptions::default(),
        &mut dodvpn_message::rand_core::OsRng,
    )?;
    let total = sealed.total_len();
    // A blocking thread encrypts; a channel of a few pieces bounds what is in flight.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let worker = tokio::task::spawn_blocking(move || {
        for piece in sealed {
            let stop = piece.is_err();
            if tx.blocking_send(piece).is_err() || stop {
                break;
            }
        }
    });
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|p| (p, rx))
    }));
    let q: Vec<String> = to.to_vec();
    let path = format!(
        "/api/v1/device/messages/stream?to={}{}",
        url_part(&q.join(",")),
        if receipt { "&receipt=true" } else { "" }
    );
    let rb = client
        .request(reqwest::Method::POST, &path)
        .header(reqwest::header::CONTENT_TYPE, "application/pkcs7-mime")
        .header(reqwest::header::CONTENT_LENGTH, total.to_string())
        .body(body);
    let r = client.send(rb).await;
    let _ = worker.await;
    r
}

/// Saves a message's ciphertext to `out` as it arrives (0600; written under a
/// temporary name and renamed when whole). Returns its size.
pub async fn fetch_to(
    client: &CenterClient,
    mailbox: Option<&str>,
    id: &str,
    out: &std::path::Path,
) -> anyhow::Result<u64> {
    use futures_util::StreamExt;
    use std::io::Write;
    let path = format!(
        "/api/v1/device/messages/{}{}",
        url_part(id),
        mailbox_query(mailbox)
    );
    let resp = client
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .with_context(|| format!("cannot reach the centre at {}", client.base))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(crate::client::api_error(status, &text).into());
    }
    let mut tmp = private_temp(out)?;
    let mut n = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the centre's answer was cut off / 受信が途中で切れました")?;
        n += chunk.len() as u64;
        tmp.write_all(&chunk)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .with_context(|| format!("cannot write {} / 書き込めません", out.display()))?;
    Ok(n)
}

/// Fetches a message (streamed to a 0600 temporary file beside `out`) and opens it
/// into `out` with [`open_file`]; the temporary ciphertext is removed either way.
pub async fn fetch_and_open(
    client: &CenterClient,
    store: &Arc<dyn KeyStore>,
    mailbox: Option<&str>,
    id: &str,
    out: &std::path::Path,
) -> anyhow::Result<OpenReport> {
    let cms = private_temp(out)?.into_temp_path();
    fetch_to(client, mailbox, id, &cms).await?;
    open_file(client, store, &cms, out).await
}

/// A 0600 temporary file beside `out` (same file system, so the rename is atomic).
fn private_temp(out: &std::path::Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // tempfile creates files 0600.
    tempfile::Builder::new()
        .prefix(".dodvpn-msg-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {} / 書き込めません", dir.display()))
}

/// The ciphertext of a stored message, as the centre holds it.
pub async fn fetch(
    client: &CenterClient,
    mailbox: Option<&str>,
    id: &str,
) -> anyhow::Result<Vec<u8>> {
    let path = format!(
        "/api/v1/device/messages/{}{}",
        url_part(id),
        mailbox_query(mailbox)
    );
    let resp = client
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .with_context(|| format!("cannot reach the centre at {}", client.base))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .context("the centre's answer was cut off")?;
    if !status.is_success() {
        return Err(crate::client::api_error(status, &String::from_utf8_lossy(&bytes)).into());
    }
    Ok(bytes.to_vec())
}

/// Serial numbers on the centre's service CRL (revoked service certificates).
async fn revoked_serials(client: &CenterClient) -> anyhow::Result<HashSet<Vec<u8>>> {
    let pem = client.get_text("/pki/crl/service").await?;
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).context("CRL PEM unreadable")?;
    let (_, crl) = x509_parser::parse_x509_crl(&p.contents)
        .map_err(|e| anyhow::anyhow!("CRL unreadable: {e}"))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect())
}

/// What `open` tells the reader.
#[derive(Debug, Serialize)]
pub struct OpenReport {
    /// trusted | revoked | untrusted_issuer | outside_validity | unsigned
    pub signer_status: String,
    pub signer: Option<String>,
    pub signing_time: Option<u64>,
    pub size: usize,
}

/// Opens a saved ciphertext (`cms`, any size) into `out` in constant memory. The
/// content is decrypted into a 0600 temporary file beside `out` and renamed to `out`
/// only after the GCM tag and the signature have checked: a modified or truncated
/// message leaves nothing at `out`.
pub async fn open_file(
    client: &CenterClient,
    store: &Arc<dyn KeyStore>,
    cms: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<OpenReport> {
    let keys = keys(store)?;
    if keys.is_empty() {
        bail!("this key store holds no mailbox key: run dodvpn message publish first / メールボックスの鍵がありません");
    }
    let ca = service_ca(client, store.as_ref()).await?;
    let revoked = revoked_serials(client).await?;
    let input = std::fs::File::open(cms)
        .with_context(|| format!("cannot read {} / 読み込めません", cms.display()))?;
    let mut tmp = private_temp(out)?;
    let out = out.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<OpenReport> {
        let refs: Vec<&dyn RecipientKey> = keys.iter().map(|k| k as &dyn RecipientKey).collect();
        let anchors = [ca];
        let is_revoked = |c: &Certificate| is_revoked_in(&revoked, c);
        let opened = {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            let r = dodvpn_message::open_stream(
                std::io::BufReader::with_capacity(1 << 20, input),
                &refs,
                &VerifyOptions {
                    trust_anchors: &anchors,
                    is_revoked: &is_revoked,
                },
                &mut w,
            );
            std::io::Write::flush(&mut w)?;
            r
        };
        // On an error the temporary file goes away with `tmp`: nothing reaches `out`.
        let opened = opened?;
        tmp.as_file().sync_all()?;
        tmp.persist(&out)
            .with_context(|| format!("cannot write {} / 書き込めません", out.display()))?;
        Ok(report_of(
            opened.signature.as_ref(),
            opened.content_len as usize,
        ))
    })
    .await?
}

fn is_revoked_in(revoked: &HashSet<Vec<u8>>, c: &Certificate) -> bool {
    let raw = c.tbs_certificate.serial_number.as_bytes();
    // The CRL's raw serial may carry a leading zero the certificate's does not.
    revoked.iter().any(|r| {
        let r: &[u8] = r.strip_prefix(&[0u8]).unwrap_or(r);
        let s: &[u8] = raw.strip_prefix(&[0u8]).unwrap_or(raw);
        r == s
    })
}

fn report_of(sig: Option<&dodvpn_message::SignatureReport>, size: usize) -> OpenReport {
    match sig {
        None => OpenReport {
            signer_status: "unsigned".into(),
            signer: None,
            signing_time: None,
            size,
        },
        Some(s) => OpenReport {
            signer_status: match s.status {
                SignerStatus::Trusted => "trusted",
                SignerStatus::Revoked => "revoked",
                SignerStatus::UntrustedIssuer => "untrusted_issuer",
                SignerStatus::OutsideValidity => "outside_validity",
            }
            .into(),
            signer: Some(s.signer.tbs_certificate.subject.to_string()),
            signing_time: s.signing_time_unix,
            size,
        },
    }
}

/// Decrypt with any of this device's mailbox keys (old ones too) and check the
/// signature against the service CA and CRL. A revoked signer is reported, not hidden.
pub async fn open(
    client: &CenterClient,
    store: &Arc<dyn KeyStore>,
    cms: &[u8],
) -> anyhow::Result<(Opened, OpenReport)> {
    let keys = keys(store)?;
    if keys.is_empty() {
        bail!("this key store holds no mailbox key: run dodvpn message publish first / メールボックスの鍵がありません");
    }
    let ca = service_ca(client, store.as_ref()).await?;
    let revoked = revoked_serials(client).await?;
    let is_revoked = |c: &Certificate| {
        let raw = c.tbs_certificate.serial_number.as_bytes();
        // The CRL's raw serial may carry a leading zero the certificate's does not.
        revoked.iter().any(|r| {
            let r: &[u8] = r.strip_prefix(&[0u8]).unwrap_or(r);
            let s: &[u8] = raw.strip_prefix(&[0u8]).unwrap_or(raw);
            r == s
        })
    };
    let refs: Vec<&dyn RecipientKey> = keys.iter().map(|k| k as &dyn RecipientKey).collect();
    let anchors = [ca];
    let opened = dodvpn_message::open(
        cms,
        &refs,
        &VerifyOptions {
            trust_anchors: &anchors,
            is_revoked: &is_revoked,
        },
    )?;
    let report = match &opened.signature {
        None => OpenReport {
            signer_status: "unsigned".into(),
            signer: None,
            signing_time: None,
            size: opened.content.len(),
        },
        Some(s) => OpenReport {
            signer_status: match s.status {
                SignerStatus::Trusted => "trusted",
                SignerStatus::Revoked => "revoked",
                SignerStatus::UntrustedIssuer => "untrusted_issuer",
                SignerStatus::OutsideValidity => "outside_validity",
            }
            .into(),
            signer: Some(s.signer.tbs_certificate.subject.to_string()),
            signing_time: s.signing_time_unix,
            size: opened.content.len(),
        },
    };
    Ok((opened, report))
}

//! The centre's RFC 3161 client (issue 15, R-AUD-4): POST a `TimeStampReq` to the
//! configured TSA and verify the token before it is stored.
//!
//! Decided here:
//! - Plain HTTP (RFC 3161 §3.4): the token protects itself (TSA signature,
//!   imprint, our nonce), so the transport adds nothing to what is verified.
//! - Configuration: `DODVPN_AUDIT_TSA_URL` (http://host:port/path),
//!   `DODVPN_AUDIT_TSA_CA` (PEM file of the CA the TSA certificate must chain to),
//!   `DODVPN_AUDIT_TSA_EVERY` (stamp every Kth checkpoint, 1–1000, default 1).
//!   A URL without a readable CA is a start error, not a silent "no timestamps".
//! - One request at a time, 10 s timeout, answers above 64 KiB refused.

use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;

pub const URL_ENV: &str = "DODVPN_AUDIT_TSA_URL";
pub const CA_ENV: &str = "DODVPN_AUDIT_TSA_CA";
pub const EVERY_ENV: &str = "DODVPN_AUDIT_TSA_EVERY";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct TsaConfig {
    pub url: hyper::Uri,
    pub ca_der: Vec<u8>,
    /// Stamp checkpoint number 1, 1+K, 1+2K, …
    pub every: u64,
}

impl TsaConfig {
    /// `None` when no TSA is configured.
    pub fn from_env() -> anyhow::Result<Option<TsaConfig>> {
        let Ok(url) = std::env::var(URL_ENV) else {
            return Ok(None);
        };
        let ca = std::env::var(CA_ENV).with_context(|| {
            format!("{URL_ENV} is set but {CA_ENV} (the TSA's CA certificate, PEM) is not")
        })?;
        let every = match std::env::var(EVERY_ENV) {
            Ok(v) => v
                .parse::<u64>()
                .ok()
                .filter(|k| (1..=1000).contains(k))
                .with_context(|| format!("{EVERY_ENV} must be 1–1000, not {v:?}"))?,
            Err(_) => 1,
        };
        let pem_text = std::fs::read_to_string(&ca)
            .with_context(|| format!("cannot read the TSA CA certificate {ca}"))?;
        Self::new(&url, &pem_text, every).map(Some)
    }

    pub fn new(url: &str, ca_pem: &str, every: u64) -> anyhow::Result<TsaConfig> {
        let url: hyper::Uri = url
            .parse()
            .with_context(|| format!("{URL_ENV}: not a URL: {url}"))?;
        if url.scheme_str() != Some("http") || url.host().is_none() {
            bail!(
                "{URL_ENV} must be an http:// URL (RFC 3161 over HTTP; the token protects itself)"
            );
        }
        let ca_der = crate::server::pem_certs(ca_pem)
            .context("the TSA CA certificate")?
            .remove(0)
            .to_vec();
        Ok(TsaConfig {
            url,
            ca_der,
            every: every.max(1),
        })
    }
}

/// POST one request, return the DER response body.
pub async fn post(url: &hyper::Uri, req: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let host = url.host().context("no host")?.to_string();
    let port = url.port_u16().unwrap_or(80);
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("cannot reach the TSA at {host}:{port}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let path = url.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/timestamp-query")
            .body(Full::new(Bytes::from(req)))?;
        let resp = send.send_request(request).await?;
        if !resp.status().is_success() {
            bail!("the TSA answered HTTP {}", resp.status());
        }
        let body = Limited::new(resp.into_body(), dodvpn_tsp::MAX_TOKEN_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the TSA's answer: {e}"))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .context("the TSA did not answer within 10 s")?
}

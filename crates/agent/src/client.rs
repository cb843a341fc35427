//! HTTPS clients for the centre: administrators with a bearer credential, devices with
//! mutual TLS whose private key never leaves the key store (R-PKI-3).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use dodvpn_pki::{KeyStore, Tier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Clone)]
pub struct CenterClient {
    pub base: String,
    http: reqwest::Client,
    bearer: Option<String>,
}

fn roots(ca_pem: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the CA bundle is not readable PEM")?;
    if certs.is_empty() {
        bail!("the CA bundle holds no certificate");
    }
    for c in certs {
        roots.add(c).context("a CA certificate was refused")?;
    }
    Ok(roots)
}

fn builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
}

fn http(tls: rustls::ClientConfig) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTPS client")
}

fn normalise(base: &str) -> String {
    base.trim_end_matches('/').to_string()
}

impl CenterClient {
    /// An administrator client (TR D.6 steps done by people).
    pub fn admin(base: &str, ca_pem: &str, credential: &str) -> anyhow::Result<Self> {
        let tls = builder()
            .with_root_certificates(roots(ca_pem)?)
            .with_no_client_auth();
        Ok(CenterClient {
            base: normalise(base),
            http: http(tls)?,
            bearer: Some(credential.trim().to_string()),
        })
    }

    /// No credential at all (public PKI endpoints).
    pub fn anonymous(base: &str, ca_pem: &str) -> anyhow::Result<Self> {
        let tls = builder()
            .with_root_certificates(roots(ca_pem)?)
            .with_no_client_auth();
        Ok(CenterClient {
            base: normalise(base),
            http: http(tls)?,
            bearer: None,
        })
    }

    /// A device client authenticating with the key store's certificate of `tier`.
    pub fn device(
        base: &str,
        ca_pem: &str,
        store: Arc<dyn KeyStore>,
        tier: Tier,
    ) -> anyhow::Result<Self> {
        let resolver = dodvpn_pki::client_cert_resolver(store, tier)
            .context("the key store cannot present a certificate")?;
        let tls = builder()
            .with_root_certificates(roots(ca_pem)?)
            .with_client_cert_resolver(resolver);
        Ok(CenterClient {
            base: normalise(base),
            http: http(tls)?,
            bearer: None,
        })
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.bearer {
            Some(b) => rb.bearer_auth(b),
            None => rb,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let bytes = self.get_bytes(path).await?;
        String::from_utf8(bytes).context("the centre's answer is not UTF-8 text")
    }

    /// A non-JSON answer (a diagram, a PDF) as it came.
    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|e| transport(&self.base, e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .context("the centre's answer was cut off")?;
        if !status.is_success() {
            return Err(api_error(status, &String::from_utf8_lossy(&bytes)).into());
        }
        Ok(bytes.to_vec())
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// A raw body (a file), with its media type.
    pub async fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        media_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, media_type)
                .body(body),
        )
        .await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
            .await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn send<T: DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let resp = rb.send().await.map_err(|e| transport(&self.base, e))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .context("the centre's answer was cut off")?;
        if !status.is_success() {
            return Err(api_error(status, &text).into());
        }
        let text = if text.is_empty() {
            "null".to_string()
        } else {
            text
        };
        serde_json::from_str(&text)
            .with_context(|| format!("unexpected answer from the centre: {}", truncate(&text)))
    }

    /// Report one of this device's sessions to the centre (R-AUD-2; needs the service
    /// certificate). A report the centre already holds is accepted again without being
    /// recorded twice, so a report may be retried freely.
    pub async fn report_session(
        &self,
        report: &dodvpn_policy::SessionReport,
    ) -> anyhow::Result<()> {
        let _: serde_json::Value = self.post("/api/v1/device/sessions", report).await?;
        Ok(())
    }

    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }
}

/// A refusal by the centre, kept structured so callers can react to its code.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the centre refused ({} {}): {}",
            self.status, self.code, self.message
        )
    }
}

impl std::error::Error for Refused {}

/// The centre's `{"error","message"}` body as a [`Refused`].
pub fn api_error(status: reqwest::StatusCode, body: &str) -> Refused {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
        message: String,
    }
    match serde_json::from_str::<E>(body) {
        Ok(e) => Refused {
            status: status.as_u16(),
            code: e.error,
            message: e.message,
        },
        Err(_) => Refused {
            status: status.as_u16(),
            code: "http".into(),
            message: truncate(body),
        },
    }
}

/// The refusal code of an error, if it is a refusal by the centre.
pub fn refusal_code(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<Refused>().map(|r| r.code.as_str())
}

fn transport(base: &str, e: reqwest::Error) -> anyhow::Error {
    // reqwest hides the TLS reason (expired, unknown CA, …) in the source chain.
    let mut msg = format!("cannot reach the centre at {base}: {e}");
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    anyhow::anyhow!(msg)
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    if s.len() > 300 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(300).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s.to_string()
    }
}

//! Provisioning (TR D.6 d–e, done by the device provider) and enrolment (i–j, done by
//! the device itself). Both are safe to re-run after a crash at any point: a key that
//! exists is reused, and a certificate the centre issued but the device never stored
//! is fetched again and installed, because only the holder of the key can use it.

use std::sync::Arc;

use anyhow::{bail, Context};
use dodvpn_pki::{KeyStore, Tier};
use serde::{Deserialize, Serialize};

use crate::client::{refusal_code, CenterClient};

/// Files the agent keeps in its key store next to the keys (non-secret).
pub const CA_FILE: &str = "ca.pem";
pub const AGENT_FILE: &str = "agent.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaBundle {
    pub root: String,
    pub device_ca: String,
    pub service_ca: String,
    pub signer: String,
}

#[derive(Debug, Deserialize)]
pub struct CertIssued {
    pub serial: u64,
    pub certificate: String,
    pub fingerprint: String,
    pub not_after: i64,
    pub ca: CaBundle,
}

#[derive(Debug, Deserialize)]
pub struct CertRecord {
    pub serial: u64,
    pub tier: String,
    pub certificate: String,
    pub revoked_ms: Option<i64>,
}

/// What the agent remembers between runs (in the key store directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentConfig {
    pub center: String,
    pub device_id: String,
}

pub fn load_config(store: &dyn KeyStore) -> anyhow::Result<Option<AgentConfig>> {
    match store.get_file(AGENT_FILE)? {
        None => Ok(None),
        Some(b) => Ok(Some(
            serde_json::from_slice(&b).context("agent.json in the key store is unreadable")?,
        )),
    }
}

pub fn ca_pem(store: &dyn KeyStore) -> anyhow::Result<String> {
    let b = store
        .get_file(CA_FILE)?
        .context("the key store holds no CA certificate: provision the device first (dodvpn device provision)")?;
    String::from_utf8(b).context("ca.pem in the key store is not text")
}

fn ensure_key(store: &dyn KeyStore, tier: Tier) -> anyhow::Result<()> {
    if store.public_key(tier)?.is_none() {
        store.generate(tier)?;
    }
    Ok(())
}

#[derive(Debug)]
pub struct Provisioned {
    pub serial: u64,
    pub fingerprint: String,
    pub recovered: bool,
}

/// TR D.6 d–e: generate the tier-1 key inside the key store, have the device CA certify
/// it, and write the certificate into the store.
pub async fn provision(
    admin: &CenterClient,
    ca_pem: &str,
    store: &dyn KeyStore,
    device_id: &str,
) -> anyhow::Result<Provisioned> {
    let path = format!("/api/v1/devices/{device_id}/device-cert");
    let (serial, fingerprint, recovered) = if let Some(held) = store.cert(Tier::Device)? {
        // Stored before, but installation may never have been confirmed (a crash):
        // confirm it again, if the centre issued this very certificate to this device.
        let fingerprint = dodvpn_pki::inspect(&pem_der(&held)?)?.fingerprint_sha256_hex;
        let certs: Vec<CertRecord> = admin
            .get(&format!("/api/v1/certs?device={device_id}"))
            .await?;
        let Some(mine) = certs.iter().find(|c| {
            c.tier == "device"
                && c.revoked_ms.is_none()
                && pem_der(&c.certificate)
                    .ok()
                    .and_then(|d| dodvpn_pki::inspect(&d).ok())
                    .is_some_and(|i| i.fingerprint_sha256_hex == fingerprint)
        }) else {
            bail!(
                "this key store already holds a device certificate ({}), and it is not a valid device certificate of device {device_id}",
                store.describe()
            );
        };
        if store.get_file(CA_FILE)?.is_none() {
            store.put_file(CA_FILE, ca_pem.as_bytes())?;
        }
        (mine.serial, fingerprint, true)
    } else {
        provision_new(admin, ca_pem, store, device_id, &path).await?
    };
    let _: serde_json::Value = admin
        .post(
            &format!("{path}/installed"),
            &serde_json::json!({"fingerprint": fingerprint}),
        )
        .await
        .context(
            "the certificate is stored, but confirming installation failed; run provision again",
        )?;
    Ok(Provisioned {
        serial,
        fingerprint,
        recovered,
    })
}

/// D.6 d for a key store that holds no device certificate yet: certify its key, or
/// fetch the certificate issued for it by an earlier run that never stored it.
async fn provision_new(
    admin: &CenterClient,
    ca_pem: &str,
    store: &dyn KeyStore,
    device_id: &str,
    path: &str,
) -> anyhow::Result<(u64, String, bool)> {
    ensure_key(store, Tier::Device)?;
    let csr = dodvpn_pki::csr_pem(store, Tier::Device, device_id)?;
    let answer = admin
        .post::<_, CertIssued>(path, &serde_json::json!({"csr": csr}))
        .await;
    Ok(match answer {
        Ok(issued) => {
            store.put_cert(Tier::Device, &issued.certificate)?;
            store.put_file(CA_FILE, issued.ca.root.as_bytes())?;
            (issued.serial, issued.fingerprint, false)
        }
        // Issued before, but never stored here (a crash): fetch and install it.
        Err(e) if refusal_code(&e) == Some("wrong_state") => {
            let certs: Vec<CertRecord> = admin
                .get(&format!("/api/v1/certs?device={device_id}"))
                .await?;
            let (serial, pem) =
                install_matching(store, Tier::Device, &certs).with_context(|| e.to_string())?;
            store.put_file(CA_FILE, ca_pem.as_bytes())?;
            (
                serial,
                dodvpn_pki::inspect(&pem_der(&pem)?)?.fingerprint_sha256_hex,
                true,
            )
        }
        Err(e) => return Err(e),
    })
}

fn install_matching(
    store: &dyn KeyStore,
    tier: Tier,
    certs: &[CertRecord],
) -> anyhow::Result<(u64, String)> {
    let want = match tier {
        Tier::Device => "device",
        Tier::Service => "service",
    };
    for c in certs
        .iter()
        .rev()
        .filter(|c| c.tier == want && c.revoked_ms.is_none())
    {
        if store.put_cert(tier, &c.certificate).is_ok() {
            return Ok((c.serial, c.certificate.clone()));
        }
    }
    bail!("the centre holds no {want} certificate for the key in this key store")
}

pub(crate) fn pem_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    Ok(
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .context("certificate PEM unreadable")?
            .to_vec(),
    )
}

#[derive(Debug)]
pub struct Enrolled {
    pub device_id: String,
    pub serial: u64,
    pub fingerprint: String,
    pub recovered: bool,
}

/// TR D.6 i–j: authenticate with the tier-1 certificate, obtain a service certificate for
/// a separate tier-2 key, then confirm it by calling the centre with that certificate.
pub async fn enroll(center: &str, store: Arc<dyn KeyStore>) -> anyhow::Result<Enrolled> {
    let ca = ca_pem(store.as_ref())?;
    if store.cert(Tier::Device)?.is_none() {
        bail!("the key store holds no device certificate: the device provider must provision it first");
    }
    let tier1 = CenterClient::device(center, &ca, store.clone(), Tier::Device)?;
    ensure_key(store.as_ref(), Tier::Service)?;
    let csr = dodvpn_pki::csr_pem(store.as_ref(), Tier::Service, "service")?;
    let (serial, recovered) = match tier1
        .post::<_, CertIssued>("/api/v1/device/enroll", &serde_json::json!({"csr": csr}))
        .await
    {
        Ok(issued) => {
            store.put_cert(Tier::Service, &issued.certificate)?;
            (issued.serial, false)
        }
        Err(e) if refusal_code(&e) == Some("already_enrolled") => {
            let certs: Vec<CertRecord> = tier1.get("/api/v1/device/certs").await?;
            let (serial, _) = install_matching(store.as_ref(), Tier::Service, &certs)
                .with_context(|| e.to_string())?;
            (serial, true)
        }
        Err(e) => return Err(e),
    };
    let cert = store
        .cert(Tier::Service)?
        .context("service certificate vanished from the key store")?;
    let fingerprint = dodvpn_pki::inspect(&pem_der(&cert)?)?.fingerprint_sha256_hex;
    // From here on every call uses the tier-2 certificate (R-PKI-2).
    let tier2 = CenterClient::device(center, &ca, store.clone(), Tier::Service)?;
    #[derive(Deserialize)]
    struct WhoAmI {
        device_id: String,
    }
    let who: WhoAmI = tier2
        .post(
            "/api/v1/device/service-cert/installed",
            &serde_json::json!({"fingerprint": fingerprint}),
        )
        .await?;
    let cfg = AgentConfig {
        center: center.trim_end_matches('/').to_string(),
        device_id: who.device_id.clone(),
    };
    store.put_file(AGENT_FILE, &serde_json::to_vec_pretty(&cfg)?)?;
    Ok(Enrolled {
        device_id: who.device_id,
        serial,
        fingerprint,
        recovered,
    })
}

/// A PKCS#10 request made on a router (or any IKEv2 gateway) that keeps its own key.
#[derive(Debug)]
pub struct RouterCsr {
    /// PEM, as the centre takes it (converted from DER if given so).
    pub pem: String,
    /// SubjectPublicKeyInfo (DER) of the router's key.
    pub spki: Vec<u8>,
    /// DNS names the request asks for (the centre decides the names; these are checked).
    pub dns_names: Vec<String>,
}

/// Read and check a router's certificate request (PEM or DER): well formed and signed by
/// the key it carries, so a bad file is refused here with a clear message rather than
/// after a round trip to the centre.
pub fn parse_router_csr(bytes: &[u8]) -> anyhow::Result<RouterCsr> {
    use base64::Engine;
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;

    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(bytes)
            .map_err(|e| anyhow::anyhow!("the certificate request is not valid PEM: {e}"))?;
        if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
            bail!(
                "the file holds a PEM '{}', not a CERTIFICATE REQUEST (make one with `pki --req` or `openssl req -new`)",
                pem.label
            );
        }
        pem.contents
    } else {
        bytes.to_vec()
    };
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|e| {
        anyhow::anyhow!("the file is not a PKCS#10 certificate request (PEM or DER): {e}")
    })?;
    if !rest.is_empty() {
        bail!("the certificate request has trailing bytes after it");
    }
    csr.verify_signature().map_err(|e| {
        anyhow::anyhow!(
            "the certificate request's signature does not verify with the key it carries: {e}"
        )
    })?;
    let mut dns_names = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for e in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = e {
                for n in &san.general_names {
                    if let GeneralName::DNSName(d) = n {
                        dns_names.push(d.to_string());
                    }
                }
            }
        }
    }
    let spki = csr.certification_request_info.subject_pki.raw.to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    Ok(RouterCsr {
        pem,
        spki,
        dns_names,
    })
}

#[derive(Debug)]
pub struct RouterEnrolled {
    pub device_id: String,
    /// The router's IKE identity (the DNS name in its service certificate).
    pub identity: String,
    pub serial: u64,
    pub fingerprint: String,
    /// The issued service certificate (PEM).
    pub certificate: String,
    /// The service CA that issued it (PEM): what the router's peers must chain to.
    pub service_ca: String,
    /// The root CA above the service CA (PEM): IKE implementations such as strongSwan
    /// want the chain up to a self-signed root.
    pub root_ca: String,
    pub recovered: bool,
}

/// TR D.6 i–j for a device whose tier-2 key lives elsewhere, e.g. a standard IKEv2
/// router: authenticate with the tier-1 certificate in `store` (as [`enroll`] does), but
/// submit the router's own certificate request, so its key never leaves it. Step j is
/// confirmed with the tier-1 certificate, since only the router can use the new one.
/// Safe to re-run: a certificate issued for this request's key is fetched again.
pub async fn enroll_for_csr(
    center: &str,
    store: Arc<dyn KeyStore>,
    csr: &RouterCsr,
) -> anyhow::Result<RouterEnrolled> {
    let ca = ca_pem(store.as_ref())?;
    if store.cert(Tier::Device)?.is_none() {
        bail!("the key store holds no device certificate: the device provider must provision it first");
    }
    let tier1 = CenterClient::device(center, &ca, store.clone(), Tier::Device)?;
    #[derive(Deserialize)]
    struct WhoAmI {
        device_id: String,
    }
    let who: WhoAmI = tier1.get("/api/v1/device/whoami").await?;
    let identity = format!("{}.dodvpn", who.device_id);
    if let Some(wrong) = csr.dns_names.iter().find(|d| **d != identity) {
        bail!(
            "the certificate request asks for the name '{wrong}', but this device's IKE identity is '{identity}': make the request with that name (e.g. `pki --req … --san {identity}`) or with none"
        );
    }
    let (serial, certificate, recovered) = match tier1
        .post::<_, CertIssued>(
            "/api/v1/device/enroll",
            &serde_json::json!({"csr": csr.pem}),
        )
        .await
    {
        Ok(issued) => (issued.serial, issued.certificate, false),
        Err(e) if refusal_code(&e) == Some("already_enrolled") => {
            let certs: Vec<CertRecord> = tier1.get("/api/v1/device/certs").await?;
            let found = certs.iter().rev().find(|c| {
                c.tier == "service"
                    && c.revoked_ms.is_none()
                    && pem_der(&c.certificate)
                        .ok()
                        .and_then(|d| dodvpn_pki::inspect(&d).ok())
                        .is_some_and(|i| i.public_key_spki_der == csr.spki)
            });
            match found {
                Some(c) => (c.serial, c.certificate.clone(), true),
                None => bail!(
                    "{e}; the service certificate it holds is for another key, not the one in this request (revoke it first to enrol a new key)"
                ),
            }
        }
        Err(e) => return Err(e),
    };
    let info = dodvpn_pki::inspect(&pem_der(&certificate)?)?;
    if info.public_key_spki_der != csr.spki {
        bail!("the centre returned a certificate for another key than the request's");
    }
    let bundle: CaBundle = tier1.get("/pki/ca").await?;
    let _: serde_json::Value = tier1
        .post(
            "/api/v1/device/service-cert/installed",
            &serde_json::json!({"fingerprint": info.fingerprint_sha256_hex}),
        )
        .await
        .context("the certificate was issued, but confirming its installation (step j) failed; run the command again")?;
    Ok(RouterEnrolled {
        device_id: who.device_id,
        identity,
        serial,
        fingerprint: info.fingerprint_sha256_hex,
        certificate,
        service_ca: bundle.service_ca,
        root_ca: bundle.root,
        recovered,
    })
}

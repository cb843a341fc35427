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
    if store.cert(Tier::Device)?.is_some() {
        bail!(
            "this key store already holds a device certificate ({})",
            store.describe()
        );
    }
    ensure_key(store, Tier::Device)?;
    let csr = dodvpn_pki::csr_pem(store, Tier::Device, device_id)?;
    let path = format!("/api/v1/devices/{device_id}/device-cert");
    let (serial, fingerprint, recovered) = match admin
        .post::<_, CertIssued>(&path, &serde_json::json!({"csr": csr}))
        .await
    {
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

//! One configured connection → the IKE configuration of its `dodvpn_ike::Endpoint`,
//! including how the peer's certificate is checked against the configured CA.

use std::sync::Arc;

use anyhow::{bail, Context};
use dodvpn_ike::{LocalAuth, PeerValidator, RemoteAuth, RsaScheme};
use dodvpn_wire::{Identification, TsRange};
use rustls_pki_types::pem::PemObject;
pub use rustls_pki_types::UnixTime;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, TrustAnchor};

use crate::config::{Connection, RsaSignature};

/// An identity from the configuration: an IP address or an FQDN.
pub fn identity(s: &str) -> anyhow::Result<Identification> {
    if let Ok(ip) = s.parse() {
        return Ok(Identification::ip(ip));
    }
    if s.contains('=') {
        bail!("identity {s:?}: distinguished-name identities are not supported yet; use an FQDN from the certificate's SAN");
    }
    Ok(Identification::fqdn(s))
}

/// extendedKeyUsage id-kp-serverAuth (1.3.6.1.5.5.7.3.1), DER content of the OID.
pub const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// extendedKeyUsage id-kp-clientAuth (1.3.6.1.5.5.7.3.2).
pub const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// Most intermediate CA certificates taken from a peer (a chain of the peer's
/// certificate, this many intermediates and our anchor).
pub const MAX_INTERMEDIATES: usize = 4;

type RevokedCheck = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;
type ProfileCheck = Box<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

/// The one check of IKE peers' certificates, used by `dodvpn tunnel` (the CA of its
/// TOML file) and by the agent (the centre's service CA, its CRL and the tier-2
/// profile). The path (issuer, signature, validity, basic constraints, extended key
/// usage) is validated by rustls-webpki; what is ours to decide comes on top: a
/// profile check, revoked serials, and how the IKE identity binds to the certificate.
pub struct PeerCertValidator {
    anchors: Vec<TrustAnchor<'static>>,
    /// SHA-1 of each anchor's SubjectPublicKeyInfo, for CERTREQ.
    anchor_hashes: Vec<[u8; 20]>,
    /// CRLs of the anchor or of intermediates: each element of the chain whose
    /// issuer has a CRL here is checked against it.
    crls: Vec<webpki::CertRevocationList<'static>>,
    /// (OID, required): each must pass; "not required" means "if the certificate
    /// lists extended key usages at all".
    usages: Vec<(&'static [u8], bool)>,
    /// The identity must be a DNS name in the certificate (else only FQDN-like
    /// identities are checked against it).
    identity_required: bool,
    revoked: Option<RevokedCheck>,
    profile: Option<ProfileCheck>,
}

impl PeerCertValidator {
    /// Trust the CA certificates in `pem`. By default: IKE certificates may carry
    /// serverAuth, clientAuth, both or no EKU at all; FQDN-like identities must be
    /// among the certificate's DNS names.
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<PeerCertValidator> {
        let mut anchors = Vec::new();
        let mut anchor_hashes = Vec::new();
        for der in CertificateDer::pem_slice_iter(pem) {
            let der = der.context("the CA file is not readable PEM")?;
            let ta = webpki::anchor_from_trusted_cert(&der)
                .context("the CA certificate is not usable as a trust anchor")?;
            anchors.push(ta.to_owned());
            anchor_hashes.extend(dodvpn_ike::auth::spki_sha1(&der));
        }
        if anchors.is_empty() {
            bail!("the CA file holds no certificate");
        }
        Ok(PeerCertValidator {
            anchors,
            anchor_hashes,
            crls: Vec::new(),
            usages: vec![(EKU_SERVER_AUTH, false)],
            identity_required: false,
            revoked: None,
            profile: None,
        })
    }

    /// Require each of these extended key usages (instead of the default).
    pub fn requiring_usages(mut self, oids: &[&'static [u8]]) -> Self {
        self.usages = oids.iter().map(|o| (*o, true)).collect();
        self
    }

    /// Refuse identities that are not a DNS name of the certificate (IP addresses too).
    pub fn requiring_identity(mut self) -> Self {
        self.identity_required = true;
        self
    }

    /// Check each element of the chain against these CRLs (DER or PEM), each
    /// signed by the CA that issued the element; an element whose issuer has no
    /// CRL here is not checked. An expired CRL still counts (it cannot unrevoke).
    pub fn with_crls(mut self, crls: &[Vec<u8>]) -> anyhow::Result<Self> {
        for data in crls {
            let ders: Vec<Vec<u8>> = if data.starts_with(b"-----") {
                rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(data)
                    .map(|d| d.map(|d| d.to_vec()))
                    .collect::<Result<_, _>>()
                    .context("a CRL file is not readable PEM")?
            } else {
                vec![data.clone()]
            };
            for der in ders {
                let crl = webpki::OwnedCertRevocationList::from_der(&der)
                    .map_err(|e| anyhow::anyhow!("a CRL does not parse: {e}"))?;
                self.crls.push(crl.into());
            }
        }
        Ok(self)
    }

    /// Refuse certificates whose serial (big-endian, no leading zeros) is revoked.
    pub fn with_revocation(
        mut self,
        is_revoked: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.revoked = Some(Box::new(is_revoked));
        self
    }

    /// Check the certificate (DER) against a profile before anything else.
    pub fn with_profile(
        mut self,
        check: impl Fn(&[u8]) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.profile = Some(Box::new(check));
        self
    }

    /// [`PeerValidator::validate`] at a given time.
    pub fn validate_at(
        &self,
        end_entity_der: &[u8],
        peer_id: &Identification,
        now: UnixTime,
    ) -> Result<(), String> {
        self.validate_chain_at(end_entity_der, &[], peer_id, now)
    }

    /// [`PeerValidator::validate_chain`] at a given time: a path from the
    /// end-entity certificate through the peer's intermediates (at most
    /// [`MAX_INTERMEDIATES`], in any order) to one of our anchors.
    pub fn validate_chain_at(
        &self,
        end_entity_der: &[u8],
        intermediates: &[&[u8]],
        peer_id: &Identification,
        now: UnixTime,
    ) -> Result<(), String> {
        if intermediates.len() > MAX_INTERMEDIATES {
            return Err(format!(
                "certificate refused: {} intermediate CA certificates sent, at most {MAX_INTERMEDIATES} are taken",
                intermediates.len()
            ));
        }
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|d| CertificateDer::from(*d))
            .collect();
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .build()
        });
        if let Some(check) = &self.profile {
            check(end_entity_der)?;
        }
        let der = CertificateDer::from(end_entity_der);
        let ee = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| format!("certificate refused: unreadable: {e}"))?;
        for (oid, required) in &self.usages {
            let usage = if *required {
                webpki::KeyUsage::required(oid)
            } else {
                webpki::KeyUsage::required_if_present(oid)
            };
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &intermediates,
                now,
                usage,
                revocation,
                None,
            )
            .map_err(|e| format!("certificate refused: {e}"))?;
        }
        if let Some(is_revoked) = &self.revoked {
            let serial = ee.serial();
            let serial = &serial[serial.iter().take_while(|b| **b == 0).count()..];
            if is_revoked(serial) {
                return Err(format!(
                    "certificate refused: serial {} is revoked",
                    hex(serial)
                ));
            }
        }
        let name = peer_id.as_str();
        let checked =
            name.filter(|n| self.identity_required || n.contains('.') || !n.contains('@'));
        match checked {
            Some(name) => {
                let dns = rustls_pki_types::ServerName::try_from(name.to_string())
                    .map_err(|_| format!("bad identity {name:?}"))?;
                ee.verify_is_valid_for_subject_name(&dns)
                    .map_err(|_| format!("the certificate is not issued to identity {name:?}"))
            }
            None if self.identity_required => Err(format!(
                "the certificate is not issued to identity {peer_id:?}"
            )),
            None => Ok(()),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Subject and issuer of a certificate as an operator reads them (RFC 4514 order),
/// for the refusal log; "(unreadable)" when the DER does not parse.
pub fn subject_and_issuer(der: &[u8]) -> (String, String) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => (c.subject().to_string(), c.issuer().to_string()),
        Err(_) => ("(unreadable)".into(), "(unreadable)".into()),
    }
}

/// Every refusal is logged with whose certificate it was and why, so an operator can
/// tell a wrong CA from an expired or revoked certificate without a packet capture.
fn logged(
    result: Result<(), String>,
    end_entity_der: &[u8],
    peer_id: &Identification,
) -> Result<(), String> {
    if let Err(reason) = &result {
        let (subject, issuer) = subject_and_issuer(end_entity_der);
        tracing::warn!(peer_id = ?peer_id.as_str(), %subject, %issuer, %reason, "peer certificate refused");
    }
    result
}

impl PeerValidator for PeerCertValidator {
    fn validate(&self, end_entity_der: &[u8], peer_id: &Identification) -> Result<(), String> {
        logged(
            self.validate_at(end_entity_der, peer_id, UnixTime::now()),
            end_entity_der,
            peer_id,
        )
    }
    fn validate_chain(
        &self,
        end_entity_der: &[u8],
        intermediates: &[&[u8]],
        peer_id: &Identification,
    ) -> Result<(), String> {
        logged(
            self.validate_chain_at(end_entity_der, intermediates, peer_id, UnixTime::now()),
            end_entity_der,
            peer_id,
        )
    }
    fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        self.anchor_hashes.clone()
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Build the IKE configuration of one connection.
pub fn ike_config(c: &Connection, natt_port: u16) -> anyhow::Result<dodvpn_ike::Config> {
    let ike: Vec<&str> = c.ike_proposals.iter().map(String::as_str).collect();
    let esp: Vec<&str> = c.esp_proposals.iter().map(String::as_str).collect();
    let ike = dodvpn_ike::proposal::parse_ike_proposals(&ike)
        .map_err(|e| anyhow::anyhow!("connection {:?}: {e}", c.name))?;
    let esp = dodvpn_ike::proposal::parse_esp_proposals(&esp)
        .map_err(|e| anyhow::anyhow!("connection {:?}: {e}", c.name))?;
    let mut local_chain = Vec::new();
    let (local_auth, remote_auth) = if c.psk.is_some() || c.psk_file.is_some() {
        let psk = match (&c.psk, &c.psk_file) {
            (Some(p), _) => p.as_bytes().to_vec(),
            (None, Some(f)) => {
                let mut b = read(f)?;
                while b.last().is_some_and(|x| *x == b'\n' || *x == b'\r') {
                    b.pop();
                }
                b
            }
            _ => unreachable!("checked by TunnelConfig::check"),
        };
        (LocalAuth::Psk(psk.clone()), RemoteAuth::Psk(psk))
    } else {
        let (cert, key, ca) = (
            c.cert.as_ref().unwrap(),
            c.key.as_ref().unwrap(),
            c.ca.as_ref().unwrap(),
        );
        let cert_der = CertificateDer::from_pem_slice(&read(cert)?)
            .with_context(|| format!("{} holds no PEM certificate", cert.display()))?
            .to_vec();
        let key_der = PrivatePkcs8KeyDer::from_pem_slice(&read(key)?)
            .with_context(|| format!("{} holds no PKCS#8 private key", key.display()))?;
        let scheme = match c.rsa_signature {
            RsaSignature::Pkcs1 => RsaScheme::Pkcs1Sha256,
            RsaSignature::Pss => RsaScheme::PssSha256,
        };
        let signer =
            dodvpn_ike::signer_from_pkcs8(key_der.secret_pkcs8_der(), scheme).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e} (an ECDSA P-256, ECDSA P-384 or RSA key is needed)",
                    key.display()
                )
            })?;
        let mut crls = Vec::new();
        for f in &c.crls {
            crls.push(read(f)?);
        }
        let validator = PeerCertValidator::from_pem(&read(ca)?)?
            .with_crls(&crls)
            .with_context(|| format!("connection {:?}: crls", c.name))?;
        if let Some(chain) = &c.chain {
            for der in CertificateDer::pem_slice_iter(&read(chain)?) {
                let der =
                    der.with_context(|| format!("{} is not readable PEM", chain.display()))?;
                local_chain.push(der.to_vec());
            }
            if local_chain.is_empty() {
                bail!("{} holds no certificate", chain.display());
            }
        }
        (
            LocalAuth::Cert { cert_der, signer },
            RemoteAuth::Cert(Arc::new(validator)),
        )
    };
    let mut cfg =
        dodvpn_ike::Config::new(ike, esp, identity(&c.local_id)?, local_auth, remote_auth);
    cfg.remote_id = c.remote_id.as_deref().map(identity).transpose()?;
    cfg.local_ts = c
        .local_subnets
        .iter()
        .map(|n| TsRange::from_net(*n, 0, 0..=65535))
        .collect();
    cfg.remote_ts = c
        .remote_subnets
        .iter()
        .map(|n| TsRange::from_net(*n, 0, 0..=65535))
        .collect();
    cfg.force_encap = c.force_encap;
    cfg.local_chain = local_chain;
    cfg.fragmentation = c.fragmentation;
    cfg.mobike = c.mobike;
    cfg.fragment_size = c.fragment_size;
    cfg.dpd_delay = c.dpd;
    cfg.nat_t_port = natt_port;
    (cfg.rekey_time, cfg.life_time) = c.child_lifetimes();
    (cfg.ike_rekey_time, cfg.ike_life_time) = c.ike_lifetimes();
    cfg.rekey_jitter = c.rekey_jitter();
    Ok(cfg)
}

//! The CA side (centre): accreditation root, device CA (tier 1), service CA
//! (tier 2), the centre's TLS and signing certificates; issuing and CRLs.
//!
//! The root key sits beside the others in the embedded default; an operator
//! who wants an offline root (the accreditation authority of the requirements) moves `root.key` away after
//! `create` (loading needs only the root certificate then).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use zeroize::Zeroizing;

use crate::check::{check_public_key, check_signature_algorithm};
use crate::fsutil::{ensure_private_dir, read_secret, write_new};
use crate::{der, fingerprint_sha256_hex, PkiError, Profile, Tier};

const ROOT_YEARS: i64 = 20;
const CA_YEARS: i64 = 10;
const CENTRE_YEARS: i64 = 5;
const YEAR_SECS: i64 = 365 * 86_400;
/// Backdate notBefore a little so peers with slightly slow clocks accept new certs.
const CLOCK_SKEW_SECS: i64 = 300;
/// Longest leaf validity we issue; renewal is automatic (R-PKI-4).
const MAX_LEAF_DAYS: u32 = 3650;

/// A certificate we issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    pub pem: String,
    pub der: Vec<u8>,
    pub serial: u64,
    pub not_after_unix: i64,
    pub fingerprint_sha256_hex: String,
}

/// One revoked certificate, for [`Pki::crl_pem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedEntry {
    pub serial: u64,
    pub revoked_at_unix: i64,
}

/// Where [`Pki::create`] wrote each artefact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub root_cert: PathBuf,
    pub root_key: PathBuf,
    pub device_ca_cert: PathBuf,
    pub device_ca_key: PathBuf,
    pub service_ca_cert: PathBuf,
    pub service_ca_key: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub signer_cert: PathBuf,
    pub signer_key: PathBuf,
}

impl PkiPaths {
    fn in_dir(dir: &Path) -> PkiPaths {
        PkiPaths {
            dir: dir.to_owned(),
            root_cert: dir.join("root.pem"),
            root_key: dir.join("root.key"),
            device_ca_cert: dir.join("device-ca.pem"),
            device_ca_key: dir.join("device-ca.key"),
            service_ca_cert: dir.join("service-ca.pem"),
            service_ca_key: dir.join("service-ca.key"),
            tls_cert: dir.join("centre-tls.pem"),
            tls_key: dir.join("centre-tls.key"),
            signer_cert: dir.join("centre-signing.pem"),
            signer_key: dir.join("centre-signing.key"),
        }
    }

    fn all(&self) -> [&PathBuf; 10] {
        [
            &self.root_cert,
            &self.root_key,
            &self.device_ca_cert,
            &self.device_ca_key,
            &self.service_ca_cert,
            &self.service_ca_key,
            &self.tls_cert,
            &self.tls_key,
            &self.signer_cert,
            &self.signer_key,
        ]
    }
}

/// A tier CA: its certificate and an rcgen issuer holding its key.
struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// The centre's PKI: root, device CA, service CA, centre TLS, centre signing.
pub struct Pki {
    root_pem: String,
    device_ca: Authority,
    service_ca: Authority,
    tls_cert_der: Vec<u8>,
    tls_key_der: Zeroizing<Vec<u8>>,
    signer_cert_pem: String,
    signer_key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Pki {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn to_time(unix: i64) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|_| PkiError::InvalidInput(format!("time {unix} out of range")))
}

fn random_serial(rng: &SystemRandom) -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 8];
    rng.fill(&mut b)
        .map_err(|_| PkiError::Crypto("random number generator failed".into()))?;
    b[0] &= 0x7f;
    b[0] |= 0x01; // never zero, always positive
    Ok(SerialNumber::from_slice(&b))
}

fn policy_extension(profile: Profile) -> CustomExtension {
    // Non-critical so that generic verifiers (webpki in rustls) accept the
    // certificate; dodvpn's own validation enforces it.
    CustomExtension::from_oid_content(
        &[2, 5, 29, 32],
        der::certificate_policies(&profile.policy_oid()),
    )
}

fn ca_params(
    cn: &str,
    serial: SerialNumber,
    years: i64,
    path_len: Option<u8>,
) -> Result<CertificateParams, PkiError> {
    let now = now_unix();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "dodvpn");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = to_time(now - CLOCK_SKEW_SECS)?;
    p.not_after = to_time(now + years * YEAR_SECS)?;
    p.serial_number = Some(serial);
    p.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // anyPolicy, so RFC 5280 policy processing (e.g. `openssl verify
    // -explicit_policy -policy <profile OID>`) passes through the CAs.
    p.custom_extensions = vec![CustomExtension::from_oid_content(
        &[2, 5, 29, 32],
        der::certificate_policies(&[2, 5, 29, 32, 0]),
    )];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

fn leaf_params(
    dn: DistinguishedName,
    profile: Profile,
    sans: Vec<SanType>,
    serial: SerialNumber,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.not_before = to_time(not_before)?;
    p.not_after = to_time(not_after)?;
    p.serial_number = Some(serial);
    p.is_ca = IsCa::ExplicitNoCa;
    p.subject_alt_names = sans;
    p.key_usages = match profile {
        Profile::Mailbox => vec![KeyUsagePurpose::KeyAgreement],
        _ => vec![KeyUsagePurpose::DigitalSignature],
    };
    p.extended_key_usages = match profile {
        Profile::Device => vec![ExtendedKeyUsagePurpose::ClientAuth],
        // Service certs are also IKE identities: both ends of a tunnel.
        Profile::Service => vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ],
        Profile::CentreTls => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Profile::CentreSigning | Profile::Mailbox => vec![],
    };
    p.custom_extensions = vec![policy_extension(profile)];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

fn pem_cert(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn pem_to_der(pem_str: &str, path: &Path) -> Result<Vec<u8>, PkiError> {
    let p = pem::parse(pem_str).map_err(|e| PkiError::BadFile {
        path: path.to_owned(),
        reason: format!("not PEM: {e}"),
    })?;
    if p.tag() != "CERTIFICATE" {
        return Err(PkiError::BadFile {
            path: path.to_owned(),
            reason: format!("expected a CERTIFICATE, found {}", p.tag()),
        });
    }
    Ok(p.into_contents())
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), PkiError> {
    if s.is_empty() || s.chars().count() > max || s.chars().any(|c| c.is_control()) {
        return Err(PkiError::InvalidInput(format!(
            "{what} must be 1..{max} printable characters"
        )));
    }
    Ok(())
}

/// Characters allowed in an id that goes into a URN (RFC 8141 safe subset).
fn check_urn_id(what: &str, s: &str) -> Result<(), PkiError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(PkiError::InvalidInput(format!(
            "{what} must be 1..64 characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

/// A device id becomes the DNS label `<device_id>.dodvpn`.
fn check_dns_label(what: &str, s: &str) -> Result<(), PkiError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        return Err(PkiError::InvalidInput(format!(
            "{what} must be a DNS label: 1..63 of A-Z a-z 0-9 -, not starting or ending with -"
        )));
    }
    Ok(())
}

fn ia5(s: String) -> Result<rcgen::string::Ia5String, PkiError> {
    s.try_into()
        .map_err(|_| PkiError::InvalidInput("name is not ASCII".into()))
}

/// Parse a CSR, verify its proof-of-possession signature and return the
/// SubjectPublicKeyInfo DER; nothing else of the CSR is used.
fn csr_public_key(csr_pem: &str) -> Result<Vec<u8>, PkiError> {
    let p = pem::parse(csr_pem).map_err(|e| PkiError::BadCsr(format!("not PEM: {e}")))?;
    if p.tag() != "CERTIFICATE REQUEST" && p.tag() != "NEW CERTIFICATE REQUEST" {
        return Err(PkiError::BadCsr(format!(
            "expected a CERTIFICATE REQUEST, found {}",
            p.tag()
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(p.contents())
        .map_err(|e| PkiError::BadCsr(format!("unparsable: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::BadCsr("trailing bytes after the request".into()));
    }
    check_signature_algorithm(&csr.signature_algorithm)
        .map_err(|e| PkiError::BadCsr(e.to_string()))?;
    let spki = &csr.certification_request_info.subject_pki;
    check_public_key(spki).map_err(|e| PkiError::BadCsr(e.to_string()))?;
    csr.verify_signature()
        .map_err(|_| PkiError::BadCsr("its signature does not verify".into()))?;
    Ok(spki.raw.to_vec())
}

impl Pki {
    /// Create a new PKI in `dir` (made 0700 if absent). Refuses to overwrite
    /// any existing artefact. `tls_names` are the centre's DNS names or IPs.
    pub fn create(dir: &Path, tls_names: &[String]) -> Result<(Pki, PkiPaths), PkiError> {
        if tls_names.is_empty() {
            return Err(PkiError::InvalidInput(
                "the centre TLS certificate needs at least one DNS name or IP address".into(),
            ));
        }
        ensure_private_dir(dir)?;
        let paths = PkiPaths::in_dir(dir);
        for p in paths.all() {
            if p.exists() {
                return Err(PkiError::AlreadyExists(p.clone()));
            }
        }
        let rng = SystemRandom::new();
        // A short random id tells PKIs apart in names and error messages.
        let mut id = [0u8; 4];
        rng.fill(&mut id)
            .map_err(|_| PkiError::Crypto("random number generator failed".into()))?;
        let id = hex::encode(id);

        let gen = || KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(PkiError::from);
        let root_key = gen()?;
        let root_params = ca_params(
            &format!("dodvpn accreditation root {id}"),
            random_serial(&rng)?,
            ROOT_YEARS,
            Some(1),
        )?;
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, &root_key);

        let ca = |cn: String| -> Result<(KeyPair, rcgen::Certificate), PkiError> {
            let key = gen()?;
            let params = ca_params(&cn, random_serial(&rng)?, CA_YEARS, Some(0))?;
            let cert = params.signed_by(&key, &root_issuer)?;
            Ok((key, cert))
        };
        let (device_key, device_cert) = ca(format!("dodvpn device CA (tier 1) {id}"))?;
        let (service_key, service_cert) = ca(format!("dodvpn service CA (tier 2) {id}"))?;

        let now = now_unix();
        let centre_leaf = |profile: Profile,
                           cn: &str,
                           sans: Vec<SanType>|
         -> Result<(KeyPair, rcgen::Certificate), PkiError> {
            let key = gen()?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "dodvpn");
            dn.push(DnType::CommonName, cn);
            let params = leaf_params(
                dn,
                profile,
                sans,
                random_serial(&rng)?,
                now - CLOCK_SKEW_SECS,
                now + CENTRE_YEARS * YEAR_SECS,
            )?;
            let cert = params.signed_by(&key, &root_issuer)?;
            Ok((key, cert))
        };
        let tls_sans = CertificateParams::new(tls_names.to_vec())
            .map_err(|e| PkiError::InvalidInput(format!("bad centre TLS name: {e}")))?
            .subject_alt_names;
        let (tls_key, tls_cert) = centre_leaf(Profile::CentreTls, &tls_names[0], tls_sans)?;
        let (signer_key, signer_cert) = centre_leaf(
            Profile::CentreSigning,
            &format!("dodvpn centre signing {id}"),
            vec![],
        )?;

        let key_pem = |k: &KeyPair| Zeroizing::new(k.serialize_pem());
        write_new(&paths.root_cert, root_cert.pem().as_bytes(), 0o644)?;
        write_new(&paths.root_key, key_pem(&root_key).as_bytes(), 0o600)?;
        write_new(&paths.device_ca_cert, device_cert.pem().as_bytes(), 0o644)?;
        write_new(&paths.device_ca_key, key_pem(&device_key).as_bytes(), 0o600)?;
        write_new(&paths.service_ca_cert, service_cert.pem().as_bytes(), 0o644)?;
        write_new(
            &paths.service_ca_key,
            key_pem(&service_key).as_bytes(),
            0o600,
        )?;
        write_new(&paths.tls_cert, tls_cert.pem().as_bytes(), 0o644)?;
        write_new(&paths.tls_key, key_pem(&tls_key).as_bytes(), 0o600)?;
        write_new(&paths.signer_cert, signer_cert.pem().as_bytes(), 0o644)?;
        write_new(&paths.signer_key, key_pem(&signer_key).as_bytes(), 0o600)?;
        crate::fsutil::sync_dir(dir)?;

        let pki = Pki::load(dir)?;
        Ok((pki, paths))
    }

    /// Load a PKI written by [`Pki::create`]. The root key is not needed.
    pub fn load(dir: &Path) -> Result<Pki, PkiError> {
        let paths = PkiPaths::in_dir(dir);
        let rng = SystemRandom::new();
        let (root_pem, _) = load_cert(&paths.root_cert, None)?;
        let authority = |cert: &Path, key: &Path| -> Result<Authority, PkiError> {
            let key = load_key(key)?;
            let (cert_pem, der) = load_cert(cert, Some(&key))?;
            let issuer =
                Issuer::from_ca_cert_der(&der.into(), key).map_err(|e| PkiError::BadFile {
                    path: cert.to_owned(),
                    reason: e.to_string(),
                })?;
            Ok(Authority { cert_pem, issuer })
        };
        let device_ca = authority(&paths.device_ca_cert, &paths.device_ca_key)?;
        let service_ca = authority(&paths.service_ca_cert, &paths.service_ca_key)?;
        let tls_key = load_key(&paths.tls_key)?;
        let (_, tls_cert_der) = load_cert(&paths.tls_cert, Some(&tls_key))?;
        let signer = load_key(&paths.signer_key)?;
        let (signer_cert_pem, _) = load_cert(&paths.signer_cert, Some(&signer))?;
        let signer_key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            signer.serialized_der(),
            &rng,
        )
        .map_err(|e| PkiError::BadFile {
            path: paths.signer_key.clone(),
            reason: format!("not a P-256 key: {e}"),
        })?;
        Ok(Pki {
            root_pem,
            device_ca,
            service_ca,
            tls_cert_der,
            tls_key_der: Zeroizing::new(tls_key.serialize_der()),
            signer_cert_pem,
            signer_key,
            rng,
        })
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }
    pub fn device_ca_pem(&self) -> &str {
        &self.device_ca.cert_pem
    }
    pub fn service_ca_pem(&self) -> &str {
        &self.service_ca.cert_pem
    }
    /// The CA certificate (PEM) of one tier.
    pub fn ca_pem(&self, tier: Tier) -> &str {
        &self.authority(tier).cert_pem
    }
    pub fn signer_cert_pem(&self) -> &str {
        &self.signer_cert_pem
    }
    /// The centre's TLS chain, leaf first (the root is the client's trust anchor).
    pub fn tls_server_cert_chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.tls_cert_der.clone()]
    }
    /// The centre's TLS private key, PKCS#8 DER (for the rustls server config).
    pub fn tls_server_key_der(&self) -> Vec<u8> {
        self.tls_key_der.to_vec()
    }

    fn authority(&self, tier: Tier) -> &Authority {
        match tier {
            Tier::Device => &self.device_ca,
            Tier::Service => &self.service_ca,
        }
    }

    /// Issue a tier-1 device certificate (R-PKI-1). Only the public key is
    /// taken from the CSR; the subject is ours: CN = serial, serialNumber =
    /// serial, O = owner_org, title = model.
    pub fn issue_device_cert(
        &self,
        csr_pem: &str,
        serial: &str,
        model: &str,
        owner_org: &str,
        cert_serial: u64,
        valid_days: u32,
    ) -> Result<IssuedCert, PkiError> {
        check_urn_id("device serial", serial)?;
        check_text("device model", model, 64)?;
        check_text("owner organisation", owner_org, 64)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, owner_org);
        dn.push(DnType::CommonName, serial);
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), serial); // serialNumber
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 12]), model); // title
        let sans = vec![SanType::URI(ia5(format!("urn:dodvpn:device:{serial}"))?)];
        self.issue(
            Tier::Device,
            csr_pem,
            dn,
            sans,
            cert_serial,
            valid_days,
            now_unix(),
        )
    }

    /// Issue a tier-2 service certificate (R-PKI-2): CN = device_id, O = org_id.
    pub fn issue_service_cert(
        &self,
        csr_pem: &str,
        device_id: &str,
        org_id: &str,
        cert_serial: u64,
        valid_days: u32,
    ) -> Result<IssuedCert, PkiError> {
        check_dns_label("device id", device_id)?;
        check_text("organisation id", org_id, 64)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org_id);
        dn.push(DnType::CommonName, device_id);
        let sans = vec![
            SanType::URI(ia5(format!("urn:dodvpn:service:{device_id}"))?),
            SanType::DnsName(ia5(format!("{device_id}.dodvpn"))?),
        ];
        self.issue(
            Tier::Service,
            csr_pem,
            dn,
            sans,
            cert_serial,
            valid_days,
            now_unix(),
        )
    }

    /// Issue a mailbox encryption certificate (R-SVC-4) for a P-256 public key held in
    /// the device's key store (or a person's token): CN = the mailbox name, O = org_id,
    /// key usage keyAgreement only, issued by the service CA. The request comes over the
    /// device's own mutual TLS, which binds the key to the device that asked.
    pub fn issue_mailbox_cert(
        &self,
        spki_der: &[u8],
        mailbox: &str,
        org_id: &str,
        cert_serial: u64,
        valid_days: u32,
    ) -> Result<IssuedCert, PkiError> {
        check_text("mailbox", mailbox, 64)?;
        check_text("organisation id", org_id, 64)?;
        if cert_serial == 0 || valid_days == 0 || valid_days > MAX_LEAF_DAYS {
            return Err(PkiError::InvalidInput(format!(
                "serial must be positive and validity 1..{MAX_LEAF_DAYS} days"
            )));
        }
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| PkiError::InvalidInput(format!("unsupported public key: {e}")))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org_id);
        dn.push(DnType::CommonName, mailbox);
        let now = now_unix();
        let not_after = now + i64::from(valid_days) * 86_400;
        let params = leaf_params(
            dn,
            Profile::Mailbox,
            vec![SanType::URI(ia5(format!(
                "urn:dodvpn:mailbox:{}",
                mailbox.replace(':', "/")
            ))?)],
            SerialNumber::from(cert_serial),
            now - CLOCK_SKEW_SECS,
            not_after,
        )?;
        let cert = params.signed_by(&public_key, &self.authority(Tier::Service).issuer)?;
        let der = cert.der().to_vec();
        Ok(IssuedCert {
            pem: pem_cert(&der),
            fingerprint_sha256_hex: fingerprint_sha256_hex(&der),
            der,
            serial: cert_serial,
            not_after_unix: not_after,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        tier: Tier,
        csr_pem: &str,
        dn: DistinguishedName,
        sans: Vec<SanType>,
        cert_serial: u64,
        valid_days: u32,
        now: i64,
    ) -> Result<IssuedCert, PkiError> {
        if cert_serial == 0 {
            return Err(PkiError::InvalidInput(
                "certificate serial must be positive".into(),
            ));
        }
        if valid_days == 0 || valid_days > MAX_LEAF_DAYS {
            return Err(PkiError::InvalidInput(format!(
                "validity must be 1..{MAX_LEAF_DAYS} days"
            )));
        }
        let spki = csr_public_key(csr_pem)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&spki)
            .map_err(|e| PkiError::BadCsr(format!("unsupported public key: {e}")))?;
        let not_after = now + i64::from(valid_days) * 86_400;
        let params = leaf_params(
            dn,
            tier.into(),
            sans,
            SerialNumber::from(cert_serial),
            now - CLOCK_SKEW_SECS,
            not_after,
        )?;
        let cert = params.signed_by(&public_key, &self.authority(tier).issuer)?;
        let der = cert.der().to_vec();
        Ok(IssuedCert {
            pem: pem_cert(&der),
            fingerprint_sha256_hex: fingerprint_sha256_hex(&der),
            der,
            serial: cert_serial,
            not_after_unix: not_after,
        })
    }

    /// An RFC 5280 CRL for one tier, signed by that tier's CA (R-PKI-4).
    pub fn crl_pem(
        &self,
        tier: Tier,
        revoked: &[RevokedEntry],
        crl_number: u64,
        now_unix: i64,
        next_update_secs: i64,
    ) -> Result<String, PkiError> {
        if next_update_secs <= 0 {
            return Err(PkiError::InvalidInput(
                "CRL next update must be in the future".into(),
            ));
        }
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from(r.serial),
                    revocation_time: to_time(r.revoked_at_unix)?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: to_time(now_unix)?,
            next_update: to_time(now_unix.saturating_add(next_update_secs))?,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.authority(tier).issuer)?;
        Ok(crl.pem()?)
    }

    /// Sign `data` (connection info) with the centre signing key: ECDSA P-256,
    /// SHA-256, DER signature. Check with [`crate::verify_blob`].
    pub fn sign_blob(&self, data: &[u8]) -> Result<Vec<u8>, PkiError> {
        self.signer_key
            .sign(&self.rng, data)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| PkiError::Crypto("signing failed".into()))
    }
}

fn load_key(path: &Path) -> Result<KeyPair, PkiError> {
    let pem = Zeroizing::new(read_secret(path)?);
    let text = std::str::from_utf8(&pem).map_err(|_| PkiError::BadFile {
        path: path.to_owned(),
        reason: "not a PEM text file".into(),
    })?;
    KeyPair::from_pem(text).map_err(|e| PkiError::BadFile {
        path: path.to_owned(),
        reason: format!("not a usable private key: {e}"),
    })
}

/// Read a certificate and, if given, check it belongs to `key`.
fn load_cert(path: &Path, key: Option<&KeyPair>) -> Result<(String, Vec<u8>), PkiError> {
    let bytes = std::fs::read(path).map_err(|e| PkiError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| PkiError::BadFile {
        path: path.to_owned(),
        reason: "not a PEM text file".into(),
    })?;
    let der = pem_to_der(&text, path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::BadFile {
        path: path.to_owned(),
        reason: format!("not a certificate: {e}"),
    })?;
    if let Some(key) = key {
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::BadFile {
                path: path.to_owned(),
                reason: "certificate does not match its private key".into(),
            });
        }
    }
    Ok((text, der))
}

//! Relying-party side: classify ([`inspect`]), validate against a tier CA
//! ([`validate`]), read CRLs ([`crl_revoked_serials`]), check centre-signed
//! blobs ([`verify_blob`]). All of it is reached by untrusted bytes (peers'
//! certificates, downloaded CRLs): no panics, every failure is a `PkiError`.

use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::public_key::PublicKey;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::{fingerprint_sha256_hex, PkiError, Profile, Tier};

/// What [`inspect`] learns from a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// The dodvpn profile from the policy OID, if any.
    pub profile: Option<Profile>,
    /// Tier 1 or 2 for device / service certificates.
    pub tier: Option<Tier>,
    pub serial: u64,
    pub subject: String,
    pub subject_cn: Option<String>,
    /// The `urn:dodvpn:...` SAN URI, if present.
    pub san_uri: Option<String>,
    /// The id inside that URI: the device serial (tier 1) or device id (tier 2).
    pub id: Option<String>,
    pub dns_names: Vec<String>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub issuer: String,
    pub fingerprint_sha256_hex: String,
    /// SubjectPublicKeyInfo DER (e.g. to check an IKE AUTH signature).
    pub public_key_spki_der: Vec<u8>,
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
/// SHA-256+ signature algorithms (R-PKI-5); RSA-PSS hash choice is checked
/// by the verifier, which only knows SHA-256/384/512 for PSS.
const ACCEPTED_SIGNATURE_ALGS: &[&str] = &[
    "1.2.840.10045.4.3.2",   // ecdsa-with-SHA256
    "1.2.840.10045.4.3.3",   // ecdsa-with-SHA384
    "1.2.840.10045.4.3.4",   // ecdsa-with-SHA512
    "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
    "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
    "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
    "1.2.840.113549.1.1.10", // RSASSA-PSS
];
const MIN_RSA_BITS: usize = 3072;
const MAX_RSA_BITS: usize = 8192;

pub(crate) fn check_signature_algorithm(alg: &AlgorithmIdentifier) -> Result<(), PkiError> {
    let oid = alg.algorithm.to_id_string();
    if ACCEPTED_SIGNATURE_ALGS.contains(&oid.as_str()) {
        Ok(())
    } else {
        Err(PkiError::UnsupportedAlgorithm(format!(
            "signature algorithm {oid} (SHA-256 or stronger required)"
        )))
    }
}

/// P-256, P-384 or RSA 3072..8192 bits (R-PKI-5).
pub(crate) fn check_public_key(spki: &SubjectPublicKeyInfo) -> Result<(), PkiError> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) | Some(OID_P384) => Ok(()),
                other => Err(PkiError::UnsupportedAlgorithm(format!(
                    "EC curve {}",
                    other.unwrap_or("(none)")
                ))),
            }
        }
        OID_RSA => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if (MIN_RSA_BITS..=MAX_RSA_BITS).contains(&rsa.key_size()) => {
                Ok(())
            }
            Ok(PublicKey::RSA(rsa)) => Err(PkiError::UnsupportedAlgorithm(format!(
                "RSA key of {} bits (3072..8192 accepted)",
                rsa.key_size()
            ))),
            _ => Err(PkiError::Malformed("unparsable RSA public key".into())),
        },
        other => Err(PkiError::UnsupportedAlgorithm(format!(
            "public key algorithm {other}"
        ))),
    }
}

/// The certificate's key is one R-PKI-5 accepts (P-256, P-384, RSA 3072–8192): a peer
/// checks this too, not only the centre when it issues.
pub fn check_certificate_key(der: &[u8]) -> Result<(), PkiError> {
    check_public_key(parse_cert(der)?.public_key())
}

/// Serial as u64: dodvpn issues 64-bit serials, a longer one is not ours.
fn serial_u64(raw: &[u8]) -> Result<u64, PkiError> {
    let skip = raw.iter().take_while(|b| **b == 0).count();
    let bytes = &raw[skip..];
    if bytes.len() > 8 {
        return Err(PkiError::Malformed(
            "serial number longer than 64 bits".into(),
        ));
    }
    Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::Malformed(format!("certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Malformed(
            "trailing bytes after the certificate".into(),
        ));
    }
    Ok(cert)
}

/// The first CERTIFICATE block of a PEM text (a trust anchor or signer cert).
fn pem_cert_der(pem_str: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    pem::parse_many(pem_str)
        .map_err(|e| PkiError::InvalidInput(format!("{what}: not PEM: {e}")))?
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .ok_or_else(|| PkiError::InvalidInput(format!("{what}: no CERTIFICATE in PEM")))
}

fn profile_of(cert: &X509Certificate) -> Result<Option<Profile>, PkiError> {
    let mut found = None;
    for ext in cert.extensions() {
        if let ParsedExtension::CertificatePolicies(policies) = ext.parsed_extension() {
            for p in policies {
                if let Some(profile) = Profile::from_policy_oid_string(&p.policy_id.to_id_string())
                {
                    if found.is_some_and(|f| f != profile) {
                        // A certificate usable as two profiles is exactly what R-PKI-5 forbids.
                        return Err(PkiError::Malformed(
                            "certificate claims more than one dodvpn profile".into(),
                        ));
                    }
                    found = Some(profile);
                }
            }
        }
    }
    Ok(found)
}

/// Parse and classify a certificate (DER). Does not check any signature.
pub fn inspect(der: &[u8]) -> Result<CertInfo, PkiError> {
    let cert = parse_cert(der)?;
    let profile = profile_of(&cert)?;
    let serial = serial_u64(cert.raw_serial())?;
    let mut san_uri = None;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) if u.starts_with("urn:dodvpn:") && san_uri.is_none() => {
                    san_uri = Some(u.to_string())
                }
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                _ => {}
            }
        }
    }
    let id = san_uri.as_deref().and_then(|u| {
        u.strip_prefix("urn:dodvpn:device:")
            .or_else(|| u.strip_prefix("urn:dodvpn:service:"))
            .map(str::to_owned)
    });
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    Ok(CertInfo {
        profile,
        tier: profile.and_then(Profile::tier),
        serial,
        subject: cert.subject().to_string(),
        subject_cn,
        san_uri,
        id,
        dns_names,
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        issuer: cert.issuer().to_string(),
        fingerprint_sha256_hex: fingerprint_sha256_hex(der),
        public_key_spki_der: cert.public_key().raw.to_vec(),
    })
}

fn authority_key_id<'a>(cert: &'a X509Certificate) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        })
}

fn subject_key_id<'a>(cert: &'a X509Certificate) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        })
}

/// Does `ca` name itself as the issuer of `cert` (issuer DN and key id)?
fn issued_by(cert_issuer: &[u8], cert_aki: Option<&[u8]>, ca: &X509Certificate) -> bool {
    let names_match = cert_issuer == ca.subject().as_raw();
    let ids_match = match (cert_aki, subject_key_id(ca)) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    };
    names_match && ids_match
}

/// Validate a tier-1 or tier-2 certificate; see [`validate_profile`].
pub fn validate(
    cert_der: &[u8],
    expected: Tier,
    ca_pem: &str,
    now_unix: i64,
    is_revoked: &dyn Fn(u64) -> bool,
) -> Result<CertInfo, PkiError> {
    validate_profile(cert_der, expected.into(), ca_pem, now_unix, is_revoked)
}

/// Full check of a certificate of `expected` profile issued directly by the
/// CA in `ca_pem` (the device or service CA for tiers 1/2, the root for the
/// centre certificates). Checks, in order: parse (`Malformed`), profile
/// policy OID (`WrongTier`), algorithms (`UnsupportedAlgorithm`), EKU,
/// issuer (`UnknownIssuer`), signature (`BadSignature`), validity
/// (`NotYetValid` / `Expired`), revocation (`Revoked`).
pub fn validate_profile(
    cert_der: &[u8],
    expected: Profile,
    ca_pem: &str,
    now_unix: i64,
    is_revoked: &dyn Fn(u64) -> bool,
) -> Result<CertInfo, PkiError> {
    let info = inspect(cert_der)?;
    if info.profile != Some(expected) {
        return Err(PkiError::WrongTier {
            expected: expected.to_string(),
            found: info
                .profile
                .map(|p| p.to_string())
                .unwrap_or_else(|| "no dodvpn profile".into()),
        });
    }
    let cert = parse_cert(cert_der)?;
    check_signature_algorithm(&cert.signature_algorithm)?;
    check_public_key(cert.public_key())?;
    check_usage(&cert, expected)?;

    let ca_der = pem_cert_der(ca_pem, "CA certificate")?;
    let ca = parse_cert(&ca_der)?;
    if !issued_by(cert.issuer().as_raw(), authority_key_id(&cert), &ca) {
        return Err(PkiError::UnknownIssuer {
            issuer: info.issuer.clone(),
            expected: ca.subject().to_string(),
        });
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| PkiError::BadSignature)?;

    if now_unix < info.not_before_unix {
        return Err(PkiError::NotYetValid {
            not_before_unix: info.not_before_unix,
            now_unix,
        });
    }
    if now_unix > info.not_after_unix {
        return Err(PkiError::Expired {
            not_after_unix: info.not_after_unix,
            now_unix,
        });
    }
    if is_revoked(info.serial) {
        return Err(PkiError::Revoked {
            serial: info.serial,
        });
    }
    Ok(info)
}

/// End-entity only, with the EKUs of its profile.
fn check_usage(cert: &X509Certificate, profile: Profile) -> Result<(), PkiError> {
    let wrong = |why: &str| PkiError::WrongTier {
        expected: profile.to_string(),
        found: why.to_string(),
    };
    if let Ok(Some(bc)) = cert.basic_constraints() {
        if bc.value.ca {
            return Err(wrong("a CA certificate"));
        }
    }
    let eku = cert
        .extended_key_usage()
        .map_err(|e| PkiError::Malformed(format!("extended key usage: {e}")))?;
    let (client, server) = eku
        .map(|e| (e.value.client_auth, e.value.server_auth))
        .unwrap_or((false, false));
    let ok = match profile {
        Profile::Device => client,
        Profile::Service => client && server,
        Profile::CentreTls => server,
        Profile::CentreSigning => true,
        Profile::Mailbox => !client && !server,
    };
    if ok {
        Ok(())
    } else {
        Err(wrong(
            "a certificate without the extended key usage of its profile",
        ))
    }
}

/// What a verified CRL says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlInfo {
    pub revoked_serials: Vec<u64>,
    pub crl_number: Option<u64>,
    pub this_update_unix: i64,
    pub next_update_unix: Option<i64>,
}

/// Verify a CRL (PEM) against the CA that must have signed it and read it.
pub fn crl_info(crl_pem: &str, ca_pem: &str) -> Result<CrlInfo, PkiError> {
    let p = pem::parse(crl_pem).map_err(|e| PkiError::Malformed(format!("CRL: not PEM: {e}")))?;
    if p.tag() != "X509 CRL" {
        return Err(PkiError::Malformed(format!(
            "expected an X509 CRL, found {}",
            p.tag()
        )));
    }
    let (rest, crl): (_, CertificateRevocationList) = x509_parser::parse_x509_crl(p.contents())
        .map_err(|e| PkiError::Malformed(format!("CRL: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Malformed("trailing bytes after the CRL".into()));
    }
    let ca_der = pem_cert_der(ca_pem, "CA certificate")?;
    let ca = parse_cert(&ca_der)?;
    let aki = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    if !issued_by(crl.issuer().as_raw(), aki, &ca) {
        return Err(PkiError::UnknownIssuer {
            issuer: crl.issuer().to_string(),
            expected: ca.subject().to_string(),
        });
    }
    check_signature_algorithm(&crl.signature_algorithm)?;
    crl.verify_signature(ca.public_key())
        .map_err(|_| PkiError::BadSignature)?;
    let revoked_serials = crl
        .iter_revoked_certificates()
        .map(|r| serial_u64(r.raw_serial()))
        .collect::<Result<Vec<_>, _>>()?;
    let crl_number = match crl.crl_number() {
        Some(n) => Some(serial_u64(&n.to_bytes_be())?),
        None => None,
    };
    Ok(CrlInfo {
        revoked_serials,
        crl_number,
        this_update_unix: crl.last_update().timestamp(),
        next_update_unix: crl.next_update().map(|t| t.timestamp()),
    })
}

/// The revoked serials of a CRL signed by the CA in `ca_pem` (R-PKI-4).
pub fn crl_revoked_serials(crl_pem: &str, ca_pem: &str) -> Result<Vec<u64>, PkiError> {
    crl_info(crl_pem, ca_pem).map(|i| i.revoked_serials)
}

/// Check a centre signature (from [`crate::Pki::sign_blob`]) over `data`.
/// `signer_cert_pem` must be a centre-signing certificate; whether it chains
/// to the root is a separate [`validate_profile`] call with
/// [`Profile::CentreSigning`].
pub fn verify_blob(signer_cert_pem: &str, data: &[u8], sig: &[u8]) -> Result<(), PkiError> {
    let der = pem_cert_der(signer_cert_pem, "signer certificate")?;
    let cert = parse_cert(&der)?;
    let profile = profile_of(&cert)?;
    if profile != Some(Profile::CentreSigning) {
        return Err(PkiError::WrongTier {
            expected: Profile::CentreSigning.to_string(),
            found: profile
                .map(|p| p.to_string())
                .unwrap_or_else(|| "no dodvpn profile".into()),
        });
    }
    let key = cert.public_key().subject_public_key.data.as_ref();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key)
        .verify(data, sig)
        .map_err(|_| PkiError::BadSignature)
}

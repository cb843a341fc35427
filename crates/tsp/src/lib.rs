//! RFC 3161 trusted timestamps for audit checkpoints (issue 15, R-AUD-4; TR 5.1 f).
//!
//! Sans-IO: [`request`] builds the `TimeStampReq` the centre POSTs to its TSA,
//! [`token_from_response`] takes the token out of the `TimeStampResp`, and
//! [`verify`] checks a token against the imprint it must carry and the TSA CA
//! the operator (or auditor) configured.
//!
//! Decided here:
//! - The imprint is SHA-256 over the checkpoint's signed body (the note text up
//!   to the blank line): cosignatures added later do not change what was stamped.
//! - [`verify`] checks, in order: the token is CMS SignedData over a TSTInfo;
//!   the imprint (algorithm and hash) is the expected one; the nonce, if asked;
//!   exactly one signer, whose certificate is in the token (we always set
//!   `certReq`); the signed attributes' content type and message digest; the
//!   signature (ECDSA P-256/P-384 or RSA PKCS#1 v1.5, SHA-256, via ring); the
//!   signer certificate has the timeStamping EKU, critical and alone (RFC 3161
//!   §2.3); it chains (directly or through CA certificates in the token, at most
//!   [`MAX_CHAIN`] links) to the configured CA; every certificate on the way
//!   is valid at the token's genTime.
//! - Not checked: the ESS signing-certificate attribute (the signer is found by
//!   issuer and serial or key id and must chain to the pinned CA, which is what
//!   it guards), revocation (no CRL/OCSP reach here).
//! - Every parse is bounded and never panics; `fuzz/` fuzzes [`verify`] and
//!   [`token_from_response`].

#[cfg(feature = "testing")]
pub mod testing;

use cms::cert::x509::spki::AlgorithmIdentifier;
use der::asn1::{Int, OctetString};
use der::oid::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

/// Largest token or response we read.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Most certificates between the signer and the configured CA.
pub const MAX_CHAIN: usize = 4;

const ID_SHA_256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const ID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TspError {
    #[error("the timestamp is malformed: {0}")]
    Malformed(String),
    #[error("the TSA refused the request (status {0})")]
    NotGranted(String),
    #[error("the timestamp is for another checkpoint: its message imprint is not this checkpoint's hash")]
    WrongImprint,
    #[error("the timestamp does not carry the nonce we sent")]
    NonceMismatch,
    #[error("the timestamp token has no signer certificate (or more than one signer)")]
    NoSignerCert,
    #[error("the timestamp's signature does not verify: {0}")]
    BadSignature(String),
    #[error("the TSA certificate does not have the timeStamping extended key usage (critical and alone, RFC 3161 §2.3)")]
    NoTimestampingEku,
    #[error("the TSA certificate does not chain to the configured TSA CA: {0}")]
    Untrusted(String),
    #[error("a certificate of the TSA chain was not valid at the timestamp's time")]
    NotValidAtTime,
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
}

impl TspError {
    /// A stable name for reports (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            TspError::Malformed(_) => "timestamp_malformed",
            TspError::NotGranted(_) => "timestamp_refused",
            TspError::WrongImprint => "timestamp_wrong_imprint",
            TspError::NonceMismatch => "timestamp_nonce_mismatch",
            TspError::NoSignerCert => "timestamp_no_signer_cert",
            TspError::BadSignature(_) => "timestamp_bad_signature",
            TspError::NoTimestampingEku => "timestamp_no_eku",
            TspError::Untrusted(_) => "timestamp_untrusted",
            TspError::NotValidAtTime => "timestamp_cert_not_valid",
            TspError::Unsupported(_) => "timestamp_unsupported",
        }
    }
}

fn malformed(what: &str, e: impl std::fmt::Display) -> TspError {
    TspError::Malformed(format!("{what}: {e}"))
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// genTime, Unix seconds.
    pub gen_time: u64,
    /// The TSA's serial number of this token, hex.
    pub serial: String,
    /// The TSA policy OID.
    pub policy: String,
    /// Subject of the TSA certificate.
    pub tsa_subject: String,
}

/// The imprint of a checkpoint: SHA-256 of its signed body.
pub fn imprint_of(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// A positive INTEGER from 8 bytes (the nonce).
fn nonce_int(nonce: [u8; 8]) -> Result<Int, TspError> {
    let mut b = nonce.to_vec();
    b[0] = (b[0] & 0x7f).max(1); // positive, no leading zero byte
    Int::new(&b).map_err(|e| malformed("nonce", e))
}

/// The DER `TimeStampReq` for `imprint` (SHA-256), asking for the TSA's certificate.
pub fn request(imprint: &[u8; 32], nonce: [u8; 8]) -> Result<Vec<u8>, TspError> {
    let req = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifier {
                oid: ID_SHA_256,
                parameters: Some(der::asn1::Any::null()),
            },
            hashed_message: OctetString::new(imprint.to_vec())
                .map_err(|e| malformed("imprint", e))?,
        },
        req_policy: None,
        nonce: Some(nonce_int(nonce)?),
        cert_req: true,
        extensions: None,
    };
    req.to_der().map_err(|e| malformed("request", e))
}

/// Take the token (DER `ContentInfo`) out of a DER `TimeStampResp`.
pub fn token_from_response(resp: &[u8]) -> Result<Vec<u8>, TspError> {
    if resp.len() > MAX_TOKEN_BYTES {
        return Err(TspError::Malformed("the response is too large".into()));
    }
    let r = TimeStampResp::from_der(resp).map_err(|e| malformed("response", e))?;
    use cmpv2::status::PkiStatus;
    match r.status.status {
        PkiStatus::Accepted | PkiStatus::GrantedWithMods => {}
        other => return Err(TspError::NotGranted(format!("{other:?}"))),
    }
    let token = r
        .time_stamp_token
        .ok_or_else(|| TspError::Malformed("granted, but no token".into()))?;
    token.to_der().map_err(|e| malformed("token", e))
}

/// Verify `token` (DER `ContentInfo`): see the module docs. `ca_der`: the TSA
/// CA certificate the operator or auditor trusts. `nonce`: the one we sent, when known.
pub fn verify(
    token: &[u8],
    expected_imprint: &[u8; 32],
    ca_der: &[u8],
    nonce: Option<[u8; 8]>,
) -> Result<Verified, TspError> {
    use cms::cert::CertificateChoices;
    use cms::signed_data::{SignedData, SignerIdentifier};

    if token.len() > MAX_TOKEN_BYTES {
        return Err(TspError::Malformed("the token is too large".into()));
    }
    let ci = cms::content_info::ContentInfo::from_der(token).map_err(|e| malformed("token", e))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(TspError::Malformed(
            "the token is not CMS SignedData".into(),
        ));
    }
    let sd: SignedData = ci
        .content
        .decode_as()
        .map_err(|e| malformed("SignedData", e))?;
    if sd.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(TspError::Malformed(
            "the signed content is not a TSTInfo".into(),
        ));
    }
    let econtent = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| TspError::Malformed("the token has no TSTInfo".into()))?
        .decode_as::<OctetString>()
        .map_err(|e| malformed("TSTInfo wrapper", e))?;
    let tst = TstInfo::from_der(econtent.as_bytes()).map_err(|e| malformed("TSTInfo", e))?;

    // The imprint first: a valid token for another checkpoint is the likely attack.
    if tst.message_imprint.hash_algorithm.oid != ID_SHA_256
        || tst.message_imprint.hashed_message.as_bytes() != expected_imprint.as_slice()
    {
        return Err(TspError::WrongImprint);
    }
    if let Some(n) = nonce {
        if tst.nonce.as_ref() != Some(&nonce_int(n)?) {
            return Err(TspError::NonceMismatch);
        }
    }

    let signers: Vec<_> = sd.signer_infos.0.iter().collect();
    let [si] = signers.as_slice() else {
        return Err(TspError::NoSignerCert);
    };
    let certs: Vec<Vec<u8>> = sd
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(c) => c.to_der().ok(),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let parsed: Vec<X509Certificate> = certs
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect();
    let signer = match &si.sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            let issuer = ias.issuer.to_der().map_err(|e| malformed("signer id", e))?;
            let serial = ias.serial_number.as_bytes();
            parsed
                .iter()
                .find(|c| c.issuer().as_raw() == issuer.as_slice() && c.raw_serial() == serial)
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => parsed.iter().find(|c| {
            c.extensions().iter().any(|e| {
                matches!(e.parsed_extension(),
                    x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k)
                        if k.0 == ski.0.as_bytes())
            })
        }),
    }
    .ok_or(TspError::NoSignerCert)?;

    // Signed attributes: content type TSTInfo, message digest of the TSTInfo.
    if si.digest_alg.oid != ID_SHA_256 {
        return Err(TspError::Unsupported(format!(
            "digest algorithm {}",
            si.digest_alg.oid
        )));
    }
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| TspError::Malformed("the signer has no signed attributes".into()))?;
    let attr = |oid: ObjectIdentifier| -> Result<&der::asn1::Any, TspError> {
        let a = attrs
            .iter()
            .find(|a| a.oid == oid)
            .ok_or_else(|| TspError::Malformed(format!("no signed attribute {oid}")))?;
        let vals: Vec<_> = a.values.iter().collect();
        match vals.as_slice() {
            [v] => Ok(v),
            _ => Err(TspError::Malformed(format!(
                "attribute {oid} must have one value"
            ))),
        }
    };
    let ct: ObjectIdentifier = attr(ID_CONTENT_TYPE)?
        .decode_as()
        .map_err(|e| malformed("content-type attribute", e))?;
    if ct != ID_CT_TST_INFO {
        return Err(TspError::Malformed(
            "signed content-type is not TSTInfo".into(),
        ));
    }
    let md: OctetString = attr(ID_MESSAGE_DIGEST)?
        .decode_as()
        .map_err(|e| malformed("message-digest attribute", e))?;
    let digest = Sha256::digest(econtent.as_bytes());
    if md.as_bytes() != digest.as_slice() {
        return Err(TspError::BadSignature(
            "the signed digest is not the TSTInfo's".into(),
        ));
    }
    // RFC 5652 §5.4: the signature is over the DER of the attributes as a SET OF.
    let signed = attrs
        .to_der()
        .map_err(|e| malformed("signed attributes", e))?;
    check_signature(signer, &signed, si.signature.as_bytes())?;

    // The signer must be a TSA: timeStamping, critical, and nothing else.
    match signer.extended_key_usage() {
        Ok(Some(eku))
            if eku.critical
                && eku.value.time_stamping
                && !eku.value.any
                && !eku.value.server_auth
                && !eku.value.client_auth
                && !eku.value.code_signing
                && !eku.value.email_protection
                && !eku.value.ocsp_signing
                && eku.value.other.is_empty() => {}
        _ => return Err(TspError::NoTimestampingEku),
    }

    let gen_time = tst.gen_time.to_unix_duration().as_secs();
    let at = x509_parser::time::ASN1Time::from_timestamp(gen_time as i64)
        .map_err(|e| malformed("genTime", e))?;
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|e| TspError::Untrusted(format!("the configured CA is unreadable: {e}")))?;
    chain_to(signer, &ca, &parsed, &at)?;

    Ok(Verified {
        gen_time,
        serial: hex_of(tst.serial_number.as_bytes()),
        policy: tst.policy.to_string(),
        tsa_subject: signer.subject().to_string(),
    })
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn is_ca(c: &X509Certificate) -> bool {
    matches!(c.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// Walk from `leaf` to `ca` through CA certificates in the token; then every
/// certificate on the way must be valid at `at` (trust first: a token under
/// another CA is "untrusted", whatever its dates).
fn chain_to(
    leaf: &X509Certificate,
    ca: &X509Certificate,
    pool: &[X509Certificate],
    at: &x509_parser::time::ASN1Time,
) -> Result<(), TspError> {
    let mut path = vec![leaf];
    let mut cur = leaf;
    loop {
        if cur.issuer().as_raw() == ca.subject().as_raw() {
            if !is_ca(ca) {
                return Err(TspError::Untrusted(
                    "the configured TSA CA is not a CA certificate".into(),
                ));
            }
            cur.verify_signature(Some(ca.public_key()))
                .map_err(|_| TspError::Untrusted("the CA's signature does not verify".into()))?;
            break;
        }
        if path.len() > MAX_CHAIN {
            return Err(TspError::Untrusted("the chain is too long".into()));
        }
        let next = pool
            .iter()
            .find(|p| {
                p.subject().as_raw() == cur.issuer().as_raw()
                    && is_ca(p)
                    && cur.verify_signature(Some(p.public_key())).is_ok()
            })
            .ok_or_else(|| {
                TspError::Untrusted(format!("no issuer for {} leads to the CA", cur.subject()))
            })?;
        path.push(next);
        cur = next;
    }
    if path
        .iter()
        .chain([&ca])
        .any(|c| !c.validity().is_valid_at(*at))
    {
        return Err(TspError::NotValidAtTime);
    }
    Ok(())
}

fn check_signature(cert: &X509Certificate, msg: &[u8], sig: &[u8]) -> Result<(), TspError> {
    use ring::signature as rs;
    let spki = cert.public_key();
    let key = spki.subject_public_key.data.as_ref();
    let alg: &dyn rs::VerificationAlgorithm = match spki.algorithm.algorithm.to_id_string().as_str()
    {
        // The point length names the curve (uncompressed points only, as ring needs).
        ID_EC_PUBLIC_KEY if key.len() == 65 => &rs::ECDSA_P256_SHA256_ASN1,
        ID_EC_PUBLIC_KEY if key.len() == 97 => &rs::ECDSA_P384_SHA256_ASN1,
        ID_RSA_ENCRYPTION => &rs::RSA_PKCS1_2048_8192_SHA256,
        other => return Err(TspError::Unsupported(format!("TSA key algorithm {other}"))),
    };
    rs::UnparsedPublicKey::new(alg, key)
        .verify(msg, sig)
        .map_err(|_| TspError::BadSignature("the TSA's signature is wrong".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_der_with_imprint_and_cert_req() {
        let imprint = imprint_of(b"dodvpn-audit/x\n1\nAAAA\ntime 1\n");
        let der = request(&imprint, [0xff; 8]).unwrap();
        let back = TimeStampReq::from_der(&der).unwrap();
        assert_eq!(back.message_imprint.hashed_message.as_bytes(), imprint);
        assert_eq!(back.message_imprint.hash_algorithm.oid, ID_SHA_256);
        assert!(back.cert_req);
        // Positive nonce: the sign bit is cleared.
        assert_eq!(back.nonce.unwrap().as_bytes()[0], 0x7f);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let e = verify(b"\x30\x03\x02\x01\x01", &[0; 32], b"", None).unwrap_err();
        assert_eq!(e.code(), "timestamp_malformed");
        assert!(token_from_response(b"").is_err());
        assert!(token_from_response(&vec![0x30; MAX_TOKEN_BYTES + 1]).is_err());
    }
}

//! SignedData (RFC 5652 §5) from the sender's service key, and its check.
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Encode, Tag, Tagged};
use subtle::ConstantTimeEq;
use x509_cert::attr::{Attribute, AttributeValue};
use x509_cert::Certificate;

use crate::keys::{issued_by, subject_key_id, verify_signature, HashAlg, MessageSigner};
use crate::oids::*;
use crate::{der_err, Error};

fn attr(oid: der::asn1::ObjectIdentifier, value: AttributeValue) -> Result<Attribute, Error> {
    let mut values = SetOfVec::new();
    values.insert(value).map_err(der_err("attribute"))?;
    Ok(Attribute { oid, values })
}

/// The SignerInfo over a content whose digest (of `signer.digest_alg()`) is `digest`,
/// with the signed attributes content type (id-data), message digest and signing time.
/// The streaming writer computes the digest as it reads; [`sign`] from the bytes.
pub(crate) fn signer_info(
    digest: &[u8],
    signer: &dyn MessageSigner,
    signing_time_unix: u64,
) -> Result<SignerInfo, Error> {
    let cert = signer.certificate();
    let digest_alg = signer.digest_alg();
    let time = der::DateTime::from_unix_duration(std::time::Duration::from_secs(signing_time_unix))
        .map_err(der_err("signing time"))?;
    // RFC 5652 §11.3: UTCTime up to 2049, GeneralizedTime after.
    let time_any = if time.year() < 2050 {
        Any::encode_from(
            &der::asn1::UtcTime::from_date_time(time).map_err(der_err("signing time"))?,
        )
    } else {
        Any::encode_from(&der::asn1::GeneralizedTime::from_date_time(time))
    }
    .map_err(der_err("signing time"))?;
    let mut attrs = SetOfVec::new();
    attrs
        .insert(attr(
            ID_CONTENT_TYPE,
            Any::encode_from(&ID_DATA).map_err(der_err("attr"))?,
        )?)
        .map_err(der_err("attrs"))?;
    attrs
        .insert(attr(
            ID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(digest).map_err(der_err("digest"))?)
                .map_err(der_err("attr"))?,
        )?)
        .map_err(der_err("attrs"))?;
    attrs
        .insert(attr(ID_SIGNING_TIME, time_any)?)
        .map_err(der_err("attrs"))?;
    // The signature covers the DER of the attributes with the SET OF tag (RFC 5652 §5.4).
    let tbs = attrs.to_der().map_err(der_err("signed attributes"))?;
    let signature = signer.sign_message(&tbs)?;
    Ok(SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: spki::AlgorithmIdentifierOwned {
            oid: digest_alg.oid(),
            parameters: None,
        },
        signed_attrs: Some(attrs),
        signature_algorithm: signer.signature_algorithm(),
        signature: OctetString::new(signature).map_err(der_err("signature"))?,
        unsigned_attrs: None,
    })
}

/// The DER of the digestAlgorithms SET, the certificates `[0]` and the signerInfos SET.
pub(crate) type SignedDataParts = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The DER of the parts of a SignedData around its content: the digestAlgorithms SET,
/// the certificates `[0]` (the signer's) and the signerInfos SET.
pub(crate) fn signed_data_parts(
    si: SignerInfo,
    signer: &dyn MessageSigner,
) -> Result<SignedDataParts, Error> {
    let mut digests = SetOfVec::new();
    digests
        .insert(si.digest_alg.clone())
        .map_err(der_err("digests"))?;
    let mut certs = SetOfVec::new();
    certs
        .insert(CertificateChoices::Certificate(
            signer.certificate().clone(),
        ))
        .map_err(der_err("certs"))?;
    let mut certs = CertificateSet(certs).to_der().map_err(der_err("certs"))?;
    // certificates [0] IMPLICIT CertificateSet: the SET's tag becomes [0] constructed.
    certs[0] = 0xa0;
    let mut sis = SetOfVec::new();
    sis.insert(si).map_err(der_err("signer infos"))?;
    Ok((
        digests.to_der().map_err(der_err("digests"))?,
        certs,
        SignerInfos(sis).to_der().map_err(der_err("signer infos"))?,
    ))
}

/// Signs `content` (attached, as id-data); returns a DER ContentInfo (SignedData).
pub fn sign(
    content: &[u8],
    signer: &dyn MessageSigner,
    signing_time_unix: u64,
) -> Result<Vec<u8>, Error> {
    let cert = signer.certificate();
    let digest = signer.digest_alg().digest(content);
    let si = signer_info(&digest, signer, signing_time_unix)?;
    let mut digests = SetOfVec::new();
    digests
        .insert(si.digest_alg.clone())
        .map_err(der_err("digests"))?;
    let mut certs = SetOfVec::new();
    certs
        .insert(CertificateChoices::Certificate(cert.clone()))
        .map_err(der_err("certs"))?;
    let mut sis = SetOfVec::new();
    sis.insert(si).map_err(der_err("signer infos"))?;
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: digests,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: Some(
                Any::encode_from(&OctetString::new(content).map_err(der_err("content"))?)
                    .map_err(der_err("content"))?,
            ),
        },
        certificates: Some(CertificateSet(certs)),
        crls: None,
        signer_infos: SignerInfos(sis),
    };
    let ci = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&sd).map_err(der_err("signed data"))?,
    };
    ci.to_der().map_err(der_err("content info"))
}

/// How far the reader trusts a signer whose signature verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerStatus {
    /// Issued by one of the trust anchors, valid at signing time, not revoked.
    Trusted,
    /// The signer's certificate is revoked: shown to the reader as a warning.
    Revoked,
    /// Not issued by any of the trust anchors given.
    UntrustedIssuer,
    /// The signing time is outside the certificate's validity.
    OutsideValidity,
}

/// What the reader knows to judge a signer.
pub struct VerifyOptions<'a> {
    /// CA certificates the signer's certificate must be issued by (the centre's CA).
    pub trust_anchors: &'a [Certificate],
    /// Whether a certificate is revoked (the centre's CRL / revocation list).
    pub is_revoked: &'a dyn Fn(&Certificate) -> bool,
}

/// A signature that verified, and what we know about its signer.
#[derive(Clone, Debug)]
pub struct SignatureReport {
    pub signer: Certificate,
    pub signing_time_unix: Option<u64>,
    pub status: SignerStatus,
}

fn find_signer<'c>(sid: &SignerIdentifier, certs: &'c [Certificate]) -> Option<&'c Certificate> {
    certs.iter().find(|c| match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            c.tbs_certificate.issuer == ias.issuer
                && c.tbs_certificate.serial_number == ias.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            subject_key_id(c).as_deref() == Some(ski.0.as_bytes())
        }
    })
}

fn single_value(
    attrs: &SetOfVec<Attribute>,
    oid: der::asn1::ObjectIdentifier,
) -> Result<Option<&AttributeValue>, Error> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let Some(a) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() || a.values.len() != 1 {
        return Err(Error::Malformed(format!(
            "attribute {oid} must have exactly one value"
        )));
    }
    Ok(a.values.iter().next())
}

fn time_of(v: &AttributeValue) -> Option<u64> {
    let dt = match v.tag() {
        Tag::UtcTime => v.decode_as::<der::asn1::UtcTime>().ok()?.to_date_time(),
        Tag::GeneralizedTime => v
            .decode_as::<der::asn1::GeneralizedTime>()
            .ok()?
            .to_date_time(),
        _ => return None,
    };
    Some(dt.unix_duration().as_secs())
}

/// Checks a DER SignedData ContentInfo; returns the signed content and the signer.
/// A bad signature is an error; a revoked or untrusted signer is a status to show.
pub fn verify(
    der_bytes: &[u8],
    opts: &VerifyOptions<'_>,
) -> Result<(Vec<u8>, SignatureReport), Error> {
    let ci = ContentInfo::from_der(der_bytes).map_err(der_err("ContentInfo"))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(Error::UnknownOid {
            what: "content type (expected signedData)",
            oid: ci.content_type.to_string(),
        });
    }
    let sd: SignedData = ci.content.decode_as().map_err(der_err("SignedData"))?;
    verify_signed_data(&sd, opts)
}

pub(crate) fn verify_signed_data(
    sd: &SignedData,
    opts: &VerifyOptions<'_>,
) -> Result<(Vec<u8>, SignatureReport), Error> {
    let econtent = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or(Error::Unsupported("detached signature (no content)".into()))?;
    let content = econtent
        .decode_as::<OctetString>()
        .map_err(der_err("signed content"))?
        .into_bytes();
    let report = verify_signers(sd, Signed::Content(&content), opts)?;
    Ok((content, report))
}

/// What the signature is checked against: the content itself, or (streaming) the
/// digests of the content computed as it went by, one per digest algorithm.
pub(crate) enum Signed<'a> {
    Content(&'a [u8]),
    Digests(&'a [(HashAlg, Vec<u8>)]),
}

pub(crate) fn verify_signers(
    sd: &SignedData,
    content: Signed<'_>,
    opts: &VerifyOptions<'_>,
) -> Result<SignatureReport, Error> {
    let certs: Vec<Certificate> = sd
        .certificates
        .iter()
        .flat_map(|s| s.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let mut report = None;
    if sd.signer_infos.0.is_empty() {
        return Err(Error::Malformed("SignedData without a signer".into()));
    }
    // Every signer must verify; the first one is reported.
    for si in sd.signer_infos.0.iter() {
        let cert = find_signer(&si.sid, &certs).ok_or(Error::SignerUnknown)?;
        let digest = HashAlg::from_oid(&si.digest_alg.oid)?;
        let mut signing_time = None;
        let tbs = match &si.signed_attrs {
            Some(attrs) => {
                let ct = single_value(attrs, ID_CONTENT_TYPE)?
                    .ok_or(Error::Malformed("no content-type attribute".into()))?;
                let ct: der::asn1::ObjectIdentifier =
                    ct.decode_as().map_err(der_err("content-type attribute"))?;
                if ct != sd.encap_content_info.econtent_type {
                    return Err(Error::BadSignature);
                }
                let md = single_value(attrs, ID_MESSAGE_DIGEST)?
                    .ok_or(Error::Malformed("no message-digest attribute".into()))?;
                let md = md
                    .decode_as::<OctetString>()
                    .map_err(der_err("message-digest attribute"))?;
                let ours = match &content {
                    Signed::Content(c) => digest.digest(c),
                    Signed::Digests(d) => d
                        .iter()
                        .find(|(a, _)| *a == digest)
                        .map(|(_, v)| v.clone())
                        .ok_or(Error::Malformed(
                            "the signer's digest algorithm is not among digestAlgorithms".into(),
                        ))?,
                };
                if md.as_bytes().len() != ours.len() || !bool::from(md.as_bytes().ct_eq(&ours)) {
                    return Err(Error::BadSignature);
                }
                signing_time = single_value(attrs, ID_SIGNING_TIME)?.and_then(time_of);
                attrs.to_der().map_err(der_err("signed attributes"))?
            }
            None => match &content {
                Signed::Content(c) => c.to_vec(),
                Signed::Digests(_) => {
                    return Err(Error::Unsupported(
                        "a streamed message signed without signed attributes".into(),
                    ))
                }
            },
        };
        verify_signature(
            &cert.tbs_certificate.subject_public_key_info,
            &si.signature_algorithm,
            Some(digest),
            &tbs,
            si.signature.as_bytes(),
        )?;
        if report.is_none() {
            let trusted = opts.trust_anchors.iter().any(|a| issued_by(cert, a));
            let validity = &cert.tbs_certificate.validity;
            let in_validity = signing_time.is_none_or(|t| {
                t >= validity.not_before.to_unix_duration().as_secs()
                    && t <= validity.not_after.to_unix_duration().as_secs()
            });
            let status = if (opts.is_revoked)(cert) {
                SignerStatus::Revoked
            } else if !trusted {
                SignerStatus::UntrustedIssuer
            } else if !in_validity {
                SignerStatus::OutsideValidity
            } else {
                SignerStatus::Trusted
            };
            report = Some(SignatureReport {
                signer: cert.clone(),
                signing_time_unix: signing_time,
                status,
            });
        }
    }
    report.ok_or(Error::Malformed("SignedData without a signer".into()))
}

//! Reading: find our RecipientInfo, recover the content key, check and decrypt the content,
//! then check the signature inside.
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit};
use cms::content_info::ContentInfo;
use cms::enveloped_data::{
    KeyAgreeRecipientIdentifier, OriginatorIdentifierOrKey, RecipientIdentifier, RecipientInfo,
};
use cms::signed_data::SignedData;
use der::asn1::OctetString;
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::asn1::{AuthEnvelopedData, GcmParameters, RsaOaepParams};
use crate::kdf::KdfHash;
use crate::keys::{subject_key_id, HashAlg, RecipientKey};
use crate::oids::*;
use crate::seal::ecdh_kek;
use crate::sign::{verify_signed_data, SignatureReport, VerifyOptions};
use crate::{der_err, Error};

/// An opened message.
#[derive(Debug)]
pub struct Opened {
    /// The plaintext (the signed content, if the message was signed).
    pub content: Zeroizing<Vec<u8>>,
    /// The signature, if the message carried one. `None` means unsigned: show it so.
    pub signature: Option<SignatureReport>,
}

fn is_ours(
    cert: &Certificate,
    issuer: &x509_cert::name::Name,
    serial: &x509_cert::serial_number::SerialNumber,
) -> bool {
    &cert.tbs_certificate.issuer == issuer && &cert.tbs_certificate.serial_number == serial
}

fn is_our_ski(cert: &Certificate, ski: &[u8]) -> bool {
    subject_key_id(cert).is_some_and(|s| s == ski)
}

fn kdf_of(oid: &der::asn1::ObjectIdentifier) -> Result<KdfHash, Error> {
    Ok(match *oid {
        DH_SINGLE_PASS_STD_DH_SHA1KDF => KdfHash::Sha1,
        DH_SINGLE_PASS_STD_DH_SHA224KDF => KdfHash::Sha224,
        DH_SINGLE_PASS_STD_DH_SHA256KDF => KdfHash::Sha256,
        DH_SINGLE_PASS_STD_DH_SHA384KDF => KdfHash::Sha384,
        DH_SINGLE_PASS_STD_DH_SHA512KDF => KdfHash::Sha512,
        other => {
            return Err(Error::UnknownOid {
                what: "key agreement algorithm",
                oid: other.to_string(),
            })
        }
    })
}

/// The content key from one RecipientInfo, if it names `key`'s certificate.
/// `Ok(None)`: not for this key.
fn try_recipient(
    ri: &RecipientInfo,
    key: &dyn RecipientKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    let cert = key.certificate();
    match ri {
        RecipientInfo::Ktri(k) => {
            let ours = match &k.rid {
                RecipientIdentifier::IssuerAndSerialNumber(i) => {
                    is_ours(cert, &i.issuer, &i.serial_number)
                }
                RecipientIdentifier::SubjectKeyIdentifier(s) => is_our_ski(cert, s.0.as_bytes()),
            };
            if !ours {
                return Ok(None);
            }
            let (hash, mgf) = match k.key_enc_alg.oid {
                ID_RSAES_OAEP => {
                    let params: RsaOaepParams = match &k.key_enc_alg.parameters {
                        Some(p) => p.decode_as().map_err(der_err("RSAES-OAEP parameters"))?,
                        None => RsaOaepParams::default(),
                    };
                    let hash = params.hash.as_ref().map(|h| HashAlg::from_oid(&h.oid)).transpose()?.unwrap_or(HashAlg::Sha1);
                    let mgf = match &params.mask_gen {
                        None => HashAlg::Sha1,
                        Some(m) if m.oid == ID_MGF1 => {
                            let h: AlgorithmIdentifierOwned = m
                                .parameters
                                .as_ref()
                                .ok_or(Error::Malformed("MGF1 without a hash".into()))?
                                .decode_as()
                                .map_err(der_err("MGF1 parameters"))?;
                            HashAlg::from_oid(&h.oid)?
                        }
                        Some(m) => return Err(Error::UnknownOid { what: "OAEP mask generation function", oid: m.oid.to_string() }),
                    };
                    if let Some(p) = &params.p_source {
                        // Only the empty label (pSpecified with an empty OCTET STRING) is used in CMS.
                        let empty = p.oid == ID_P_SPECIFIED
                            && p.parameters.as_ref().is_none_or(|v| v.decode_as::<OctetString>().is_ok_and(|o| o.as_bytes().is_empty()));
                        if !empty {
                            return Err(Error::Unsupported("RSA-OAEP with a label".into()));
                        }
                    }
                    (hash, mgf)
                }
                // PKCS#1 v1.5 key transport is open to Bleichenbacher's attack: refused on purpose.
                RSA_ENCRYPTION => {
                    return Err(Error::Unsupported(
                        "RSA PKCS#1 v1.5 key transport (use RSA-OAEP: openssl cms -keyopt rsa_padding_mode:oaep)".into(),
                    ))
                }
                other => return Err(Error::UnknownOid { what: "key transport algorithm", oid: other.to_string() }),
            };
            Ok(Some(key.rsa_oaep_decrypt(
                hash,
                mgf,
                k.enc_key.as_bytes(),
            )?))
        }
        RecipientInfo::Kari(k) => {
            let Some(rek) = k.recipient_enc_keys.iter().find(|r| match &r.rid {
                KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(i) => {
                    is_ours(cert, &i.issuer, &i.serial_number)
                }
                KeyAgreeRecipientIdentifier::RKeyId(r) => {
                    is_our_ski(cert, r.subject_key_identifier.0.as_bytes())
                }
            }) else {
                return Ok(None);
            };
            let OriginatorIdentifierOrKey::OriginatorKey(orig) = &k.originator else {
                return Err(Error::Unsupported(
                    "key agreement with a static originator key".into(),
                ));
            };
            if orig.algorithm.oid != ID_EC_PUBLIC_KEY {
                return Err(Error::UnknownOid {
                    what: "originator key algorithm",
                    oid: orig.algorithm.oid.to_string(),
                });
            }
            let hash = kdf_of(&k.key_enc_alg.oid)?;
            let wrap: AlgorithmIdentifierOwned = k
                .key_enc_alg
                .parameters
                .as_ref()
                .ok_or(Error::Malformed(
                    "key agreement without a key wrap algorithm".into(),
                ))?
                .decode_as()
                .map_err(der_err("key wrap algorithm"))?;
            let len = crate::keywrap::kek_len(&wrap.oid)?;
            let point = orig
                .public_key
                .as_bytes()
                .ok_or(Error::Malformed("originator key bit string".into()))?;
            let z = key.ecdh(point)?;
            let kek = ecdh_kek(hash, &z, &wrap, k.ukm.as_ref(), len)?;
            Ok(Some(crate::keywrap::unwrap(
                &wrap.oid,
                &kek,
                rek.enc_key.as_bytes(),
            )?))
        }
        // Key-encryption keys and passwords are not how members address each other.
        _ => Ok(None),
    }
}

/// Decrypts an AuthEnvelopedData with one of `keys` (current and older keys of the same
/// mailbox: after a certificate renewal the old key still opens old messages).
/// Returns the inner content type and the plaintext.
pub fn decrypt(
    der_bytes: &[u8],
    keys: &[&dyn RecipientKey],
) -> Result<(der::asn1::ObjectIdentifier, Zeroizing<Vec<u8>>), Error> {
    let ci = ContentInfo::from_der(der_bytes).map_err(der_err("ContentInfo"))?;
    if ci.content_type != ID_AUTH_ENVELOPED_DATA {
        return Err(Error::UnknownOid {
            what: "content type (expected authEnvelopedData)",
            oid: ci.content_type.to_string(),
        });
    }
    let aed: AuthEnvelopedData = ci
        .content
        .decode_as()
        .map_err(der_err("AuthEnvelopedData"))?;
    let eci = &aed.auth_encrypted_content;
    let gcm: GcmParameters = eci
        .content_enc_alg
        .parameters
        .as_ref()
        .ok_or(Error::Malformed("AES-GCM without parameters".into()))?
        .decode_as()
        .map_err(der_err("GCM parameters"))?;
    let key_len = match eci.content_enc_alg.oid {
        AES256_GCM => 32,
        AES128_GCM => 16,
        other => {
            return Err(Error::UnknownOid {
                what: "content encryption algorithm",
                oid: other.to_string(),
            })
        }
    };
    if gcm.nonce.as_bytes().len() != 12 || gcm.icv_len != 16 || aed.mac.as_bytes().len() != 16 {
        return Err(Error::Unsupported(
            "AES-GCM other than a 12-byte nonce and a 16-byte tag".into(),
        ));
    }
    let cek = content_key(aed.recip_infos.0.iter(), keys)?;
    if cek.len() != key_len {
        return Err(Error::KeyDecrypt);
    }
    decrypt_content(&aed, &gcm, key_len, &cek)
}

/// The content key from the RecipientInfo of one of `keys`.
pub(crate) fn content_key<'a>(
    infos: impl Iterator<Item = &'a RecipientInfo> + Clone,
    keys: &[&dyn RecipientKey],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    // Find the key: the first error seen is kept, so that "wrong key" is not hidden by "not ours".
    let mut cek = None;
    let mut first_err = None;
    'outer: for key in keys {
        for ri in infos.clone() {
            match try_recipient(ri, *key) {
                Ok(Some(k)) => {
                    cek = Some(k);
                    break 'outer;
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match (cek, first_err) {
        (Some(k), _) => Ok(k),
        (None, Some(e)) => Err(e),
        (None, None) => Err(Error::NotARecipient),
    }
}

fn decrypt_content(
    aed: &AuthEnvelopedData,
    gcm: &GcmParameters,
    key_len: usize,
    cek: &[u8],
) -> Result<(der::asn1::ObjectIdentifier, Zeroizing<Vec<u8>>), Error> {
    let eci = &aed.auth_encrypted_content;
    // RFC 5083 §2.1: the AAD is the DER of authAttrs with the SET OF tag, or empty.
    let aad = match &aed.auth_attrs {
        Some(a) => a.to_der().map_err(der_err("authenticated attributes"))?,
        None => Vec::new(),
    };
    let mut buf = Zeroizing::new(
        eci.encrypted_content
            .as_ref()
            .map(|c| c.as_bytes().to_vec())
            .unwrap_or_default(),
    );
    let nonce = aes_gcm::Nonce::from_slice(gcm.nonce.as_bytes());
    let tag = aes_gcm::Tag::from_slice(aed.mac.as_bytes());
    let r = if key_len == 32 {
        Aes256Gcm::new_from_slice(cek)
            .map_err(|_| Error::KeyDecrypt)?
            .decrypt_in_place_detached(nonce, &aad, &mut buf, tag)
    } else {
        Aes128Gcm::new_from_slice(cek)
            .map_err(|_| Error::KeyDecrypt)?
            .decrypt_in_place_detached(nonce, &aad, &mut buf, tag)
    };
    r.map_err(|_| Error::ContentModified)?;
    Ok((eci.content_type, buf))
}

/// Decrypts, then checks the signature if the content is a SignedData.
pub fn open(
    der_bytes: &[u8],
    keys: &[&dyn RecipientKey],
    opts: &VerifyOptions<'_>,
) -> Result<Opened, Error> {
    let (ct, plain) = decrypt(der_bytes, keys)?;
    let sd = match ct {
        // Proper nesting: the SignedData itself is the encrypted content.
        ID_SIGNED_DATA => Some(SignedData::from_der(&plain).map_err(der_err("SignedData"))?),
        // Sign-then-encrypt as OpenSSL does it: the data is a SignedData ContentInfo.
        ID_DATA => match ContentInfo::from_der(&plain) {
            Ok(ci) if ci.content_type == ID_SIGNED_DATA => {
                Some(ci.content.decode_as().map_err(der_err("SignedData"))?)
            }
            _ => None,
        },
        other => {
            return Err(Error::UnknownOid {
                what: "inner content type",
                oid: other.to_string(),
            })
        }
    };
    match sd {
        Some(sd) => {
            let (content, report) = verify_signed_data(&sd, opts)?;
            Ok(Opened {
                content: Zeroizing::new(content),
                signature: Some(report),
            })
        }
        None => Ok(Opened {
            content: plain,
            signature: None,
        }),
    }
}

/// What a store may know of a message without any key: that it is a well-formed
/// AuthEnvelopedData with AES-GCM, and how many RecipientInfos it has. The centre checks
/// this before storing, so that truncated or foreign data is refused at the door.
pub fn check_envelope(der_bytes: &[u8]) -> Result<usize, Error> {
    let ci = ContentInfo::from_der(der_bytes).map_err(der_err("ContentInfo"))?;
    if ci.content_type != ID_AUTH_ENVELOPED_DATA {
        return Err(Error::UnknownOid {
            what: "content type (expected authEnvelopedData)",
            oid: ci.content_type.to_string(),
        });
    }
    let aed: AuthEnvelopedData = ci
        .content
        .decode_as()
        .map_err(der_err("AuthEnvelopedData"))?;
    match aed.auth_encrypted_content.content_enc_alg.oid {
        AES256_GCM | AES128_GCM => {}
        other => {
            return Err(Error::UnknownOid {
                what: "content encryption algorithm",
                oid: other.to_string(),
            })
        }
    }
    if aed.recip_infos.0.is_empty() {
        return Err(Error::NoRecipients);
    }
    Ok(aed.recip_infos.0.len())
}

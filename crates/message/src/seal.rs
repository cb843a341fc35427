//! Writing: AuthEnvelopedData (RFC 5083) with AES-256-GCM and one RecipientInfo per recipient.
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo,
    KeyTransRecipientInfo, OriginatorIdentifierOrKey, OriginatorPublicKey, RecipientEncryptedKey,
    RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use der::asn1::{BitString, OctetString, SetOfVec};
use der::{Any, Encode};
use rand_core::CryptoRngCore;
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::asn1::{AuthEnvelopedData, EccCmsSharedInfo, GcmParameters, RsaOaepParams};
use crate::kdf::{x963_kdf, KdfHash};
use crate::keys::{cert_kind, rsa_public, KeyKind, MessageSigner};
use crate::oids::*;
use crate::{der_err, Error};

/// A recipient: its encryption certificate (from the centre's directory).
#[derive(Clone, Debug)]
pub struct Recipient {
    pub cert: Certificate,
}

/// Choices for writing; the defaults are RFC 5753's recommendation and RFC 8017's.
#[derive(Clone, Copy, Debug)]
pub struct SealOptions {
    /// The KDF hash of the ECDH scheme. SHA-256 by default (dhSinglePass-stdDH-sha256kdf);
    /// SHA-1 only to test old readers.
    pub ecdh_kdf: KdfHash,
}

impl Default for SealOptions {
    fn default() -> Self {
        SealOptions {
            ecdh_kdf: KdfHash::Sha256,
        }
    }
}

fn alg(oid: der::asn1::ObjectIdentifier, params: Option<Any>) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: params,
    }
}

fn any_of<T: der::EncodeValue + der::Tagged>(v: &T) -> Result<Any, Error> {
    Any::encode_from(v).map_err(der_err("encoding"))
}

pub(crate) fn kdf_scheme_oid(h: KdfHash) -> der::asn1::ObjectIdentifier {
    match h {
        KdfHash::Sha1 => DH_SINGLE_PASS_STD_DH_SHA1KDF,
        KdfHash::Sha224 => DH_SINGLE_PASS_STD_DH_SHA224KDF,
        KdfHash::Sha256 => DH_SINGLE_PASS_STD_DH_SHA256KDF,
        KdfHash::Sha384 => DH_SINGLE_PASS_STD_DH_SHA384KDF,
        KdfHash::Sha512 => DH_SINGLE_PASS_STD_DH_SHA512KDF,
    }
}

/// RFC 5753 §7.2: the KEK from Z, the key-wrap algorithm and the UKM.
pub(crate) fn ecdh_kek(
    hash: KdfHash,
    z: &[u8],
    wrap_alg: &AlgorithmIdentifierOwned,
    ukm: Option<&OctetString>,
    kek_len: usize,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let info = EccCmsSharedInfo {
        key_info: wrap_alg.clone(),
        entity_u_info: ukm.cloned(),
        supp_pub_info: OctetString::new(((kek_len * 8) as u32).to_be_bytes().to_vec())
            .map_err(der_err("shared info"))?,
    };
    let info = info.to_der().map_err(der_err("shared info"))?;
    x963_kdf(hash, z, &info, kek_len)
}

fn ias(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    }
}

fn kari(
    cert: &Certificate,
    kind: KeyKind,
    cek: &[u8],
    opts: &SealOptions,
    rng: &mut impl CryptoRngCore,
) -> Result<RecipientInfo, Error> {
    let point = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let bad = |_| Error::Malformed("recipient certificate: EC point".into());
    // One fresh ephemeral key per recipient and message (RFC 5753 §3.1.1).
    let (eph_pub, z): (Vec<u8>, Zeroizing<Vec<u8>>) = match kind {
        KeyKind::EcP256 => {
            let peer = p256::PublicKey::from_sec1_bytes(point).map_err(bad)?;
            let eph = p256::ecdh::EphemeralSecret::random(rng);
            let z = eph.diffie_hellman(&peer);
            (
                eph.public_key().to_sec1_bytes().to_vec(),
                Zeroizing::new(z.raw_secret_bytes().to_vec()),
            )
        }
        KeyKind::EcP384 => {
            let peer = p384::PublicKey::from_sec1_bytes(point).map_err(bad)?;
            let eph = p384::ecdh::EphemeralSecret::random(rng);
            let z = eph.diffie_hellman(&peer);
            (
                eph.public_key().to_sec1_bytes().to_vec(),
                Zeroizing::new(z.raw_secret_bytes().to_vec()),
            )
        }
        KeyKind::Rsa => return Err(Error::WrongKeyType),
    };
    let wrap_alg = alg(AES256_WRAP, None);
    let kek = ecdh_kek(opts.ecdh_kdf, &z, &wrap_alg, None, 32)?;
    let wrapped = crate::keywrap::wrap(&AES256_WRAP, &kek, cek)?;
    Ok(RecipientInfo::Kari(KeyAgreeRecipientInfo {
        version: CmsVersion::V3,
        originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
            algorithm: alg(ID_EC_PUBLIC_KEY, None),
            public_key: BitString::from_bytes(&eph_pub).map_err(der_err("EC point"))?,
        }),
        ukm: None,
        key_enc_alg: alg(kdf_scheme_oid(opts.ecdh_kdf), Some(any_of(&wrap_alg)?)),
        recipient_enc_keys: vec![RecipientEncryptedKey {
            rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias(cert)),
            enc_key: OctetString::new(wrapped).map_err(der_err("wrapped key"))?,
        }],
    }))
}

fn ktri(
    cert: &Certificate,
    cek: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<RecipientInfo, Error> {
    let key = rsa_public(&cert.tbs_certificate.subject_public_key_info)?;
    let sha256 = alg(SHA256, None);
    let params = RsaOaepParams {
        hash: Some(sha256.clone()),
        mask_gen: Some(alg(ID_MGF1, Some(any_of(&sha256)?))),
        p_source: None,
    };
    let enc = key
        .encrypt(rng, rsa::Oaep::new::<sha2::Sha256>(), cek)
        .map_err(|e| Error::Unsupported(format!("RSA-OAEP: {e}")))?;
    Ok(RecipientInfo::Ktri(KeyTransRecipientInfo {
        version: CmsVersion::V0,
        rid: RecipientIdentifier::IssuerAndSerialNumber(ias(cert)),
        key_enc_alg: alg(ID_RSAES_OAEP, Some(any_of(&params)?)),
        enc_key: OctetString::new(enc).map_err(der_err("encrypted key"))?,
    }))
}

/// One RecipientInfo per recipient, each carrying `cek`.
pub(crate) fn recipient_infos(
    cek: &[u8],
    recipients: &[Recipient],
    opts: &SealOptions,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<RecipientInfo>, Error> {
    if recipients.is_empty() {
        return Err(Error::NoRecipients);
    }
    let mut infos = Vec::with_capacity(recipients.len());
    for r in recipients {
        let info = match cert_kind(&r.cert)? {
            k @ (KeyKind::EcP256 | KeyKind::EcP384) => kari(&r.cert, k, cek, opts, rng)?,
            KeyKind::Rsa => ktri(&r.cert, cek, rng)?,
        };
        infos.push(info);
    }
    Ok(infos)
}

pub(crate) fn gcm_alg(nonce: &[u8; 12]) -> Result<AlgorithmIdentifierOwned, Error> {
    let gcm = GcmParameters {
        nonce: OctetString::new(nonce.to_vec()).map_err(der_err("nonce"))?,
        icv_len: 16,
    };
    Ok(alg(AES256_GCM, Some(any_of(&gcm)?)))
}

/// Encrypts `content` to every recipient; returns a DER ContentInfo (AuthEnvelopedData).
pub fn seal(
    content: &[u8],
    recipients: &[Recipient],
    opts: &SealOptions,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, Error> {
    if recipients.is_empty() {
        return Err(Error::NoRecipients);
    }
    let mut cek = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(cek.as_mut());
    let infos = recipient_infos(cek.as_ref(), recipients, opts, rng)?;
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let mut buf = content.to_vec();
    let tag = Aes256Gcm::new(cek.as_ref().into())
        .encrypt_in_place_detached((&nonce).into(), &[], &mut buf)
        .map_err(|_| Error::Unsupported("content too long for AES-GCM".into()))?;
    let gcm = GcmParameters {
        nonce: OctetString::new(nonce.to_vec()).map_err(der_err("nonce"))?,
        icv_len: 16,
    };
    let aed = AuthEnvelopedData {
        version: CmsVersion::V0,
        originator_info: None,
        recip_infos: RecipientInfos(SetOfVec::try_from(infos).map_err(der_err("recipient infos"))?),
        auth_encrypted_content: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg: alg(AES256_GCM, Some(any_of(&gcm)?)),
            encrypted_content: Some(OctetString::new(buf).map_err(der_err("content"))?),
        },
        auth_attrs: None,
        mac: OctetString::new(tag.to_vec()).map_err(der_err("tag"))?,
        unauth_attrs: None,
    };
    let ci = ContentInfo {
        content_type: ID_AUTH_ENVELOPED_DATA,
        content: any_of(&aed)?,
    };
    ci.to_der().map_err(der_err("content info"))
}

/// Signs `content` with the sender's service key, then encrypts the SignedData to the recipients.
pub fn sign_and_seal(
    content: &[u8],
    signer: &dyn MessageSigner,
    signing_time_unix: u64,
    recipients: &[Recipient],
    opts: &SealOptions,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, Error> {
    let signed = crate::sign::sign(content, signer, signing_time_unix)?;
    seal(&signed, recipients, opts, rng)
}

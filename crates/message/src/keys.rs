//! Keys and certificates: what a recipient's key must do (so that it can live in a
//! PKCS#11 token as well as in a file), the software key, and signature checks.
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use signature::hazmat::{PrehashSigner, PrehashVerifier};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::oids::*;
use crate::Error;

/// The kinds of public key a message recipient or sender may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    EcP256,
    EcP384,
    Rsa,
}

/// What a hash OID in RSA-OAEP parameters or a signature names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn from_oid(oid: &ObjectIdentifier) -> Result<Self, Error> {
        Ok(match *oid {
            SHA1 => HashAlg::Sha1,
            SHA256 => HashAlg::Sha256,
            SHA384 => HashAlg::Sha384,
            SHA512 => HashAlg::Sha512,
            other => {
                return Err(Error::UnknownOid {
                    what: "digest algorithm",
                    oid: other.to_string(),
                })
            }
        })
    }
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            HashAlg::Sha1 => SHA1,
            HashAlg::Sha256 => SHA256,
            HashAlg::Sha384 => SHA384,
            HashAlg::Sha512 => SHA512,
        }
    }
    /// A running hash of this algorithm, for content that goes by in pieces.
    pub fn hasher(self) -> Box<dyn sha2::digest::DynDigest + Send> {
        match self {
            HashAlg::Sha1 => Box::new(sha1::Sha1::default()),
            HashAlg::Sha256 => Box::new(sha2::Sha256::default()),
            HashAlg::Sha384 => Box::new(sha2::Sha384::default()),
            HashAlg::Sha512 => Box::new(sha2::Sha512::default()),
        }
    }
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// The kind of key a SubjectPublicKeyInfo holds.
pub fn spki_kind(spki: &SubjectPublicKeyInfoOwned) -> Result<KeyKind, Error> {
    match spki.algorithm.oid {
        ID_EC_PUBLIC_KEY => {
            let curve: ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or(Error::Malformed(
                    "EC public key without a named curve".into(),
                ))?
                .decode_as()
                .map_err(|e| Error::Malformed(format!("EC public key parameters: {e}")))?;
            match curve {
                SECP256R1 => Ok(KeyKind::EcP256),
                SECP384R1 => Ok(KeyKind::EcP384),
                other => Err(Error::UnknownOid {
                    what: "elliptic curve",
                    oid: other.to_string(),
                }),
            }
        }
        RSA_ENCRYPTION => Ok(KeyKind::Rsa),
        other => Err(Error::UnknownOid {
            what: "public key algorithm",
            oid: other.to_string(),
        }),
    }
}

pub fn cert_kind(cert: &Certificate) -> Result<KeyKind, Error> {
    spki_kind(&cert.tbs_certificate.subject_public_key_info)
}

pub(crate) fn rsa_public(spki: &SubjectPublicKeyInfoOwned) -> Result<rsa::RsaPublicKey, Error> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    let key = rsa::RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
        .map_err(|e| Error::Malformed(format!("RSA public key: {e}")))?;
    if key.size() < 256 {
        return Err(Error::Unsupported(format!(
            "RSA key of {} bits (2048 at least)",
            key.size() * 8
        )));
    }
    Ok(key)
}

/// The certificate's subjectKeyIdentifier extension, if it has one.
pub fn subject_key_id(cert: &Certificate) -> Option<Vec<u8>> {
    const SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
    let exts = cert.tbs_certificate.extensions.as_ref()?;
    let ext = exts.iter().find(|e| e.extn_id == SKI)?;
    let inner = der::asn1::OctetString::from_der(ext.extn_value.as_bytes()).ok()?;
    Some(inner.as_bytes().to_vec())
}

/// A private key able to open messages. The software key below implements it; a
/// PKCS#11 token implements it with CKM_ECDH1_DERIVE and CKM_RSA_PKCS_OAEP, so that
/// the private key never leaves the token (see `dodvpn_message::pkcs11`).
pub trait RecipientKey {
    /// The encryption certificate this key belongs to (used to find our RecipientInfo).
    fn certificate(&self) -> &Certificate;
    /// ECDH with the originator's ephemeral point (SEC 1 encoding); returns Z, the x-coordinate.
    fn ecdh(&self, originator_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
    /// RSAES-OAEP decryption of a wrapped content-encryption key.
    fn rsa_oaep_decrypt(
        &self,
        hash: HashAlg,
        mgf_hash: HashAlg,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error>;
}

/// A key able to sign messages (the sender's service key).
pub trait MessageSigner {
    fn certificate(&self) -> &Certificate;
    /// The digest used for the messageDigest attribute and the signature.
    fn digest_alg(&self) -> HashAlg;
    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned;
    /// Signs the prehashed `digest` (of `digest_alg`); returns the CMS signature value.
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, Error>;
    /// Signs `tbs` (the DER of the signed attributes). By default hashes and calls
    /// [`sign_digest`](Self::sign_digest); a key that hashes for itself (the device key
    /// store, a token with CKM_ECDSA_SHA256) overrides this instead.
    fn sign_message(&self, tbs: &[u8]) -> Result<Vec<u8>, Error> {
        self.sign_digest(&self.digest_alg().digest(tbs))
    }
}

enum Secret {
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// A private key held in memory (a device or site key from a 0600 file), with its certificate.
pub struct SoftKey {
    cert: Certificate,
    secret: Secret,
}

impl SoftKey {
    /// From an unencrypted PKCS#8 private key (DER) and the matching certificate (DER).
    pub fn from_pkcs8_der(pkcs8: &[u8], cert_der: &[u8]) -> Result<Self, Error> {
        let cert = Certificate::from_der(cert_der)
            .map_err(|e| Error::Malformed(format!("certificate: {e}")))?;
        let kind = cert_kind(&cert)?;
        let bad = |e: &dyn std::fmt::Display| Error::Malformed(format!("private key: {e}"));
        let secret = match kind {
            KeyKind::EcP256 => {
                Secret::P256(p256::SecretKey::from_pkcs8_der(pkcs8).map_err(|e| bad(&e))?)
            }
            KeyKind::EcP384 => {
                Secret::P384(p384::SecretKey::from_pkcs8_der(pkcs8).map_err(|e| bad(&e))?)
            }
            KeyKind::Rsa => Secret::Rsa(Box::new(
                rsa::RsaPrivateKey::from_pkcs8_der(pkcs8).map_err(|e| bad(&e))?,
            )),
        };
        let key = SoftKey { cert, secret };
        // The key must be the certificate's: compare public keys.
        let ours = key.public_key_der()?;
        let theirs = key
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| bad(&e))?;
        if ours != theirs {
            return Err(Error::KeyMismatch);
        }
        Ok(key)
    }

    /// From PEM texts (`-----BEGIN PRIVATE KEY-----` and `-----BEGIN CERTIFICATE-----`).
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<Self, Error> {
        let (_, key) = der::pem::decode_vec(key_pem.as_bytes())
            .map_err(|e| Error::Malformed(format!("key PEM: {e}")))?;
        let key = Zeroizing::new(key);
        let (_, cert) = der::pem::decode_vec(cert_pem.as_bytes())
            .map_err(|e| Error::Malformed(format!("certificate PEM: {e}")))?;
        Self::from_pkcs8_der(&key, &cert)
    }

    fn public_key_der(&self) -> Result<Vec<u8>, Error> {
        use spki::EncodePublicKey;
        let doc = match &self.secret {
            Secret::P256(k) => k.public_key().to_public_key_der(),
            Secret::P384(k) => k.public_key().to_public_key_der(),
            Secret::Rsa(k) => k.to_public_key().to_public_key_der(),
        }
        .map_err(|e| Error::Malformed(format!("public key: {e}")))?;
        Ok(doc.as_bytes().to_vec())
    }
}

impl RecipientKey for SoftKey {
    fn certificate(&self) -> &Certificate {
        &self.cert
    }

    fn ecdh(&self, point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let bad = || {
            Error::Malformed("originator public key is not a point on the recipient's curve".into())
        };
        match &self.secret {
            Secret::P256(k) => {
                let peer = p256::PublicKey::from_sec1_bytes(point).map_err(|_| bad())?;
                let z = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(z.raw_secret_bytes().to_vec()))
            }
            Secret::P384(k) => {
                let peer = p384::PublicKey::from_sec1_bytes(point).map_err(|_| bad())?;
                let z = p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(z.raw_secret_bytes().to_vec()))
            }
            Secret::Rsa(_) => Err(Error::WrongKeyType),
        }
    }

    fn rsa_oaep_decrypt(
        &self,
        hash: HashAlg,
        mgf: HashAlg,
        ct: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let Secret::Rsa(k) = &self.secret else {
            return Err(Error::WrongKeyType);
        };
        let padding = oaep(hash, mgf);
        k.decrypt(padding, ct)
            .map(Zeroizing::new)
            .map_err(|_| Error::KeyDecrypt)
    }
}

pub(crate) fn oaep(hash: HashAlg, mgf: HashAlg) -> rsa::Oaep {
    use rsa::Oaep;
    use HashAlg::*;
    match (hash, mgf) {
        (Sha1, Sha1) => Oaep::new::<sha1::Sha1>(),
        (Sha256, Sha256) => Oaep::new::<sha2::Sha256>(),
        (Sha384, Sha384) => Oaep::new::<sha2::Sha384>(),
        (Sha512, Sha512) => Oaep::new::<sha2::Sha512>(),
        (Sha256, Sha1) => Oaep::new_with_mgf_hash::<sha2::Sha256, sha1::Sha1>(),
        (Sha384, Sha1) => Oaep::new_with_mgf_hash::<sha2::Sha384, sha1::Sha1>(),
        (Sha512, Sha1) => Oaep::new_with_mgf_hash::<sha2::Sha512, sha1::Sha1>(),
        (Sha1, Sha256) => Oaep::new_with_mgf_hash::<sha1::Sha1, sha2::Sha256>(),
        (h, m) => {
            // Rare mixes: fall back to the same hash for both, which will then fail to decrypt.
            let _ = m;
            oaep(h, h)
        }
    }
}

impl MessageSigner for SoftKey {
    fn certificate(&self) -> &Certificate {
        &self.cert
    }
    fn digest_alg(&self) -> HashAlg {
        match self.secret {
            Secret::P384(_) => HashAlg::Sha384,
            _ => HashAlg::Sha256,
        }
    }
    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        match self.secret {
            Secret::P256(_) => AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA256,
                parameters: None,
            },
            Secret::P384(_) => AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA384,
                parameters: None,
            },
            Secret::Rsa(_) => AlgorithmIdentifierOwned {
                oid: SHA256_WITH_RSA,
                parameters: Some(der::asn1::Null.into()),
            },
        }
    }
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, Error> {
        let fail = |e: &dyn std::fmt::Display| Error::Sign(e.to_string());
        match &self.secret {
            Secret::P256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(k)
                    .sign_prehash(digest)
                    .map_err(|e| fail(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Secret::P384(k) => {
                let sig: p384::ecdsa::Signature = p384::ecdsa::SigningKey::from(k)
                    .sign_prehash(digest)
                    .map_err(|e| fail(&e))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Secret::Rsa(k) => k
                .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest)
                .map_err(|e| fail(&e)),
        }
    }
}

/// Checks `signature` over `message` with `spki`, for the algorithm `alg` (and, where the
/// algorithm names only the key type, as OpenSSL's rsaEncryption does, the `digest` given).
pub fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    digest: Option<HashAlg>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let hash = match alg.oid {
        ECDSA_WITH_SHA256 | SHA256_WITH_RSA => HashAlg::Sha256,
        ECDSA_WITH_SHA384 | SHA384_WITH_RSA => HashAlg::Sha384,
        ID_EC_PUBLIC_KEY | RSA_ENCRYPTION => digest.ok_or(Error::Malformed(
            "signature without a digest algorithm".into(),
        ))?,
        other => {
            return Err(Error::UnknownOid {
                what: "signature algorithm",
                oid: other.to_string(),
            })
        }
    };
    let is_ec = matches!(
        alg.oid,
        ECDSA_WITH_SHA256 | ECDSA_WITH_SHA384 | ID_EC_PUBLIC_KEY
    );
    let kind = spki_kind(spki)?;
    let prehash = hash.digest(message);
    let pk = spki.subject_public_key.raw_bytes();
    let ok = match (kind, is_ec) {
        (KeyKind::EcP256, true) => {
            let vk =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(pk).map_err(|_| Error::BadSignature)?;
            let sig =
                p256::ecdsa::Signature::from_der(signature).map_err(|_| Error::BadSignature)?;
            vk.verify_prehash(&prehash, &sig).is_ok()
        }
        (KeyKind::EcP384, true) => {
            let vk =
                p384::ecdsa::VerifyingKey::from_sec1_bytes(pk).map_err(|_| Error::BadSignature)?;
            let sig =
                p384::ecdsa::Signature::from_der(signature).map_err(|_| Error::BadSignature)?;
            vk.verify_prehash(&prehash, &sig).is_ok()
        }
        (KeyKind::Rsa, false) => {
            let key = rsa_public(spki)?;
            let scheme = match hash {
                HashAlg::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
                HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            };
            key.verify(scheme, &prehash, signature).is_ok()
        }
        _ => return Err(Error::WrongKeyType),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

/// Whether `issuer` signed `cert` (the name matches and the signature verifies).
pub fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    let Some(sig) = cert.signature.as_bytes() else {
        return false;
    };
    verify_signature(
        &issuer.tbs_certificate.subject_public_key_info,
        &cert.signature_algorithm,
        None,
        &tbs,
        sig,
    )
    .is_ok()
}

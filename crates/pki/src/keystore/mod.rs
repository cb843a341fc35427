//! The device key store, the TR's "PKI chip" (R-PKI-3).
//!
//! A private key is generated inside the store and addressed only by its
//! [`Tier`]; the trait has no operation that returns private key material.
//! Two back-ends: [`file::FileKeyStore`] and [`pkcs11::Pkcs11KeyStore`].

pub mod file;
pub mod pkcs11;

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, PublicKeyData, SigningKey, PKCS_ECDSA_P256_SHA256,
};

use zeroize::Zeroizing;

use crate::fsutil::{read_optional, write_atomic};
use crate::{PkiError, Tier};

/// A key store: per-tier ECDSA P-256 keys plus the matching certificates and
/// a few small non-secret files (CA bundle, last connection info).
pub trait KeyStore: Send + Sync {
    /// Generate the key of `tier` inside the store and return its
    /// SubjectPublicKeyInfo DER. Refuses if that tier already has a key.
    fn generate(&self, tier: Tier) -> Result<Vec<u8>, PkiError>;
    /// Replace the key of `tier` by a fresh one (rotation); the old key and
    /// the tier's certificate, which no longer matches, are removed.
    fn replace(&self, tier: Tier) -> Result<Vec<u8>, PkiError>;
    /// SubjectPublicKeyInfo DER of the tier's key, if there is one.
    fn public_key(&self, tier: Tier) -> Result<Option<Vec<u8>>, PkiError>;
    /// ECDSA P-256 / SHA-256 signature over `msg`, DER-encoded.
    fn sign(&self, tier: Tier, msg: &[u8]) -> Result<Vec<u8>, PkiError>;
    /// Store the tier's certificate (PEM, leaf first; a chain may follow).
    /// Refused unless the leaf's public key is the tier's key. Atomic.
    fn put_cert(&self, tier: Tier, pem: &str) -> Result<(), PkiError>;
    fn cert(&self, tier: Tier) -> Result<Option<String>, PkiError>;
    /// Store a small non-secret blob under `name` (`[A-Za-z0-9][A-Za-z0-9._-]*`, ≤ 64). Atomic.
    fn put_file(&self, name: &str, data: &[u8]) -> Result<(), PkiError>;
    fn get_file(&self, name: &str) -> Result<Option<Vec<u8>>, PkiError>;
    /// One line for logs and `status` output; never key material.
    fn describe(&self) -> String;

    /// Generate a new mailbox key (message encryption, ECDH P-256, R-SVC-4) inside the
    /// store; returns its index and SubjectPublicKeyInfo DER. It is a key of its own, not
    /// a tier's signing key. Earlier mailbox keys are kept, never replaced: a message
    /// written to the key of an expired or renewed certificate still opens.
    fn mailbox_generate(&self) -> Result<(u32, Vec<u8>), PkiError> {
        Err(PkiError::InvalidInput(format!(
            "{} holds no mailbox keys",
            self.describe()
        )))
    }
    /// Every mailbox key (index, SPKI DER), oldest first.
    fn mailbox_keys(&self) -> Result<Vec<(u32, Vec<u8>)>, PkiError> {
        Ok(Vec::new())
    }
    /// ECDH of mailbox key `index` with the peer's point (SEC 1); returns Z (the shared
    /// x-coordinate), which only the caller's KDF sees.
    fn mailbox_ecdh(&self, index: u32, _peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        Err(PkiError::InvalidInput(format!("no mailbox key {index}")))
    }
}

/// Certificates and small files kept in a directory; shared by both back-ends.
#[derive(Debug, Clone)]
pub(crate) struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    pub(crate) fn new(dir: &Path) -> Result<CertDir, PkiError> {
        crate::fsutil::ensure_private_dir(&dir.join("files"))?;
        Ok(CertDir {
            dir: dir.to_owned(),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn cert_path(&self, tier: Tier) -> PathBuf {
        self.dir.join(format!("tier{}.crt.pem", tier.number()))
    }

    pub(crate) fn put_cert(
        &self,
        tier: Tier,
        pem_str: &str,
        spki: Option<Vec<u8>>,
    ) -> Result<(), PkiError> {
        let spki = spki.ok_or(PkiError::NoKey(tier))?;
        let leaf = pem::parse_many(pem_str)
            .map_err(|e| PkiError::InvalidInput(format!("certificate is not PEM: {e}")))?
            .into_iter()
            .find(|p| p.tag() == "CERTIFICATE")
            .ok_or_else(|| PkiError::InvalidInput("no CERTIFICATE in PEM".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.contents())
            .map_err(|e| PkiError::Malformed(format!("certificate: {e}")))?;
        if cert.public_key().raw != spki.as_slice() {
            return Err(PkiError::KeyMismatch(tier));
        }
        write_atomic(&self.cert_path(tier), pem_str.as_bytes(), 0o600)
    }

    pub(crate) fn cert(&self, tier: Tier) -> Result<Option<String>, PkiError> {
        let path = self.cert_path(tier);
        match read_optional(&path)? {
            None => Ok(None),
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| PkiError::BadFile {
                    path,
                    reason: "not a PEM text file".into(),
                }),
        }
    }

    pub(crate) fn remove_cert(&self, tier: Tier) -> Result<(), PkiError> {
        let path = self.cert_path(tier);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PkiError::io(path, e)),
            _ => Ok(()),
        }
    }

    fn file_path(&self, name: &str) -> Result<PathBuf, PkiError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(PkiError::InvalidInput(format!(
                "bad key store file name {name:?}"
            )));
        }
        Ok(self.dir.join("files").join(name))
    }

    pub(crate) fn put_file(&self, name: &str, data: &[u8]) -> Result<(), PkiError> {
        write_atomic(&self.file_path(name)?, data, 0o600)
    }

    pub(crate) fn get_file(&self, name: &str) -> Result<Option<Vec<u8>>, PkiError> {
        read_optional(&self.file_path(name)?)
    }
}

/// The EC point inside a P-256 SubjectPublicKeyInfo.
fn spki_point(spki: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, info) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            spki,
        )
        .map_err(|e| PkiError::Malformed(format!("public key: {e}")))?;
    Ok(info.subject_public_key.data.to_vec())
}

/// rcgen signing key backed by a key store tier: lets rcgen build a CSR
/// without ever seeing the private key.
struct StoreKey<'a> {
    store: &'a dyn KeyStore,
    tier: Tier,
    point: Vec<u8>,
}

impl PublicKeyData for StoreKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for StoreKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.store
            .sign(self.tier, msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A PKCS#10 CSR (PEM) for the store's `tier` key, subject CN = `common_name`.
/// The CA takes only the public key from it (the subject is its own).
pub fn csr_pem(store: &dyn KeyStore, tier: Tier, common_name: &str) -> Result<String, PkiError> {
    let spki = store.public_key(tier)?.ok_or(PkiError::NoKey(tier))?;
    let key = StoreKey {
        store,
        tier,
        point: spki_point(&spki)?,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let csr = params.serialize_request(&key)?;
    Ok(csr.pem()?)
}

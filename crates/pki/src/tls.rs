//! rustls client authentication with a key that stays in the key store
//! (R-PKI-1/3): mTLS to the centre signs the handshake through
//! [`KeyStore::sign`].

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::{KeyStore, PkiError, Tier};

struct StoreSigningKey {
    store: Arc<dyn KeyStore>,
    tier: Tier,
    spki: Vec<u8>,
}

impl std::fmt::Debug for StoreSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StoreSigningKey({}, {})",
            self.tier,
            self.store.describe()
        )
    }
}

impl SigningKey for StoreSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| {
                Box::new(StoreSigner {
                    store: self.store.clone(),
                    tier: self.tier,
                }) as Box<dyn Signer>
            })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct StoreSigner {
    store: Arc<dyn KeyStore>,
    tier: Tier,
}

impl std::fmt::Debug for StoreSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreSigner({})", self.tier)
    }
}

impl Signer for StoreSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.store
            .sign(self.tier, message)
            .map_err(|e| rustls::Error::General(format!("key store: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

struct StoreCertResolver {
    store: Arc<dyn KeyStore>,
    tier: Tier,
}

impl std::fmt::Debug for StoreCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreCertResolver({})", self.tier)
    }
}

impl StoreCertResolver {
    /// Read the certificate at each handshake, so a renewed one is used at once.
    fn certified_key(&self) -> Result<Arc<CertifiedKey>, PkiError> {
        let pem_text = self.store.cert(self.tier)?.ok_or_else(|| {
            PkiError::InvalidInput(format!("no {} certificate in the key store", self.tier))
        })?;
        let chain: Vec<CertificateDer<'static>> = pem::parse_many(&pem_text)
            .map_err(|e| PkiError::Malformed(format!("stored certificate: {e}")))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect();
        if chain.is_empty() {
            return Err(PkiError::Malformed(
                "stored certificate PEM has no CERTIFICATE".into(),
            ));
        }
        let spki = self
            .store
            .public_key(self.tier)?
            .ok_or(PkiError::NoKey(self.tier))?;
        let key = StoreSigningKey {
            store: self.store.clone(),
            tier: self.tier,
            spki,
        };
        Ok(Arc::new(CertifiedKey::new(chain, Arc::new(key))))
    }
}

impl ResolvesClientCert for StoreCertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        if !sigschemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256) {
            return None;
        }
        self.certified_key().ok()
    }

    fn has_certs(&self) -> bool {
        matches!(self.store.cert(self.tier), Ok(Some(_)))
    }
}

/// A rustls client-certificate resolver presenting `store.cert(tier)` and
/// signing with the store's `tier` key (ECDSA_NISTP256_SHA256). Fails now if
/// the store has no key or certificate for `tier`.
pub fn client_cert_resolver(
    store: Arc<dyn KeyStore>,
    tier: Tier,
) -> Result<Arc<dyn ResolvesClientCert>, PkiError> {
    let resolver = StoreCertResolver { store, tier };
    resolver.certified_key()?;
    Ok(Arc::new(resolver))
}

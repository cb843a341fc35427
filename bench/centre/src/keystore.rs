//! An in-memory key store for the benchmark's simulated devices.
//!
//! Why not `FileKeyStore`: opening a real file store runs Argon2 on the passphrase
//! (R-PKI-3, keys encrypted at rest), which costs tens of milliseconds of CPU per device
//! on purpose. With hundreds of simulated devices on the same two cores as the centre
//! the benchmark would then mostly measure that KDF, not the centre. This store keeps
//! ECDSA P-256 keys (ring) in memory and otherwise behaves like the trait asks: keys are
//! generated inside it, never exported, addressed by tier, and a certificate is accepted
//! only for the tier's own key. It is for benchmarking only, never for a real device.

use std::collections::HashMap;
use std::sync::Mutex;

use dodvpn_pki::{KeyStore, PkiError, Tier};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, BIT STRING
/// of 66 bytes); the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

struct Key {
    pair: EcdsaKeyPair,
    spki: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    keys: [Option<Key>; 2],
    certs: [Option<String>; 2],
    files: HashMap<String, Vec<u8>>,
}

pub struct MemKeyStore {
    label: String,
    rng: SystemRandom,
    inner: Mutex<Inner>,
}

fn slot(tier: Tier) -> usize {
    match tier {
        Tier::Device => 0,
        Tier::Service => 1,
    }
}

impl MemKeyStore {
    pub fn new(label: impl Into<String>) -> MemKeyStore {
        MemKeyStore { label: label.into(), rng: SystemRandom::new(), inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_key(&self) -> Result<Key, PkiError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.rng)
            .map_err(|_| PkiError::Crypto("P-256 key generation failed".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &self.rng)
            .map_err(|_| PkiError::Crypto("P-256 key unreadable".into()))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        Ok(Key { pair, spki })
    }
}

impl KeyStore for MemKeyStore {
    fn generate(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let key = self.new_key()?;
        let mut g = self.lock();
        if g.keys[slot(tier)].is_some() {
            return Err(PkiError::KeyExists(tier));
        }
        let spki = key.spki.clone();
        g.keys[slot(tier)] = Some(key);
        Ok(spki)
    }

    fn replace(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let key = self.new_key()?;
        let mut g = self.lock();
        let spki = key.spki.clone();
        g.keys[slot(tier)] = Some(key);
        g.certs[slot(tier)] = None;
        Ok(spki)
    }

    fn public_key(&self, tier: Tier) -> Result<Option<Vec<u8>>, PkiError> {
        Ok(self.lock().keys[slot(tier)].as_ref().map(|k| k.spki.clone()))
    }

    fn sign(&self, tier: Tier, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        let g = self.lock();
        let key = g.keys[slot(tier)].as_ref().ok_or(PkiError::NoKey(tier))?;
        let sig = key.pair.sign(&self.rng, msg).map_err(|_| PkiError::Crypto("ECDSA signing failed".into()))?;
        Ok(sig.as_ref().to_vec())
    }

    fn put_cert(&self, tier: Tier, pem: &str) -> Result<(), PkiError> {
        let leaf = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or_else(|| PkiError::InvalidInput("no CERTIFICATE in PEM".into()))?
            .map_err(|e| PkiError::InvalidInput(format!("certificate is not PEM: {e}")))?;
        let mut g = self.lock();
        let spki = g.keys[slot(tier)].as_ref().ok_or(PkiError::NoKey(tier))?.spki.clone();
        // The leaf's SubjectPublicKeyInfo is a contiguous DER element of the certificate:
        // finding our exact SPKI bytes in it is a sufficient match check here.
        if !leaf.as_ref().windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(PkiError::KeyMismatch(tier));
        }
        g.certs[slot(tier)] = Some(pem.to_string());
        Ok(())
    }

    fn cert(&self, tier: Tier) -> Result<Option<String>, PkiError> {
        Ok(self.lock().certs[slot(tier)].clone())
    }

    fn put_file(&self, name: &str, data: &[u8]) -> Result<(), PkiError> {
        self.lock().files.insert(name.to_string(), data.to_vec());
        Ok(())
    }

    fn get_file(&self, name: &str) -> Result<Option<Vec<u8>>, PkiError> {
        Ok(self.lock().files.get(name).cloned())
    }

    fn describe(&self) -> String {
        format!("in-memory benchmark key store {}", self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_csr_builds() {
        let s = MemKeyStore::new("t");
        assert!(s.public_key(Tier::Device).unwrap().is_none());
        let spki = s.generate(Tier::Device).unwrap();
        assert_eq!(spki.len(), 91);
        assert!(matches!(s.generate(Tier::Device), Err(PkiError::KeyExists(_))));
        let csr = dodvpn_pki::csr_pem(&s, Tier::Device, "dev-1").unwrap();
        assert!(csr.contains("CERTIFICATE REQUEST"));
        let sig = s.sign(Tier::Device, b"hello").unwrap();
        let pk = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &spki[26..]);
        pk.verify(b"hello", &sig).unwrap();
        assert!(matches!(s.sign(Tier::Service, b"x"), Err(PkiError::NoKey(_))));
    }
}

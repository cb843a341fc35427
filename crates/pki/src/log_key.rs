//! The centre's audit-log key (R-AUD-4): signs the checkpoints of the audit
//! Merkle tree. Its own key, not the connection-info signer's, so that a
//! checkpoint and a policy can never be mistaken for one another and the log key
//! can be kept (or moved to an HSM) on its own.
//!
//! A P-256 PKCS#8 key in `audit-log.key` (0600) beside the other keys. A PKI
//! made before this key existed gets it on first use. Replicas that share one
//! database must share this file too (copy the PKI directory), or their
//! checkpoints would carry different signers.

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use zeroize::Zeroizing;

use crate::fsutil::{read_secret, write_new};
use crate::PkiError;

pub const LOG_KEY_FILE: &str = "audit-log.key";

pub struct LogKey {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    pub path: PathBuf,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// Load `DIR/audit-log.key`, creating it (0600) if absent.
    pub fn open_or_create(pki_dir: &Path) -> Result<LogKey, PkiError> {
        let path = pki_dir.join(LOG_KEY_FILE);
        let rng = SystemRandom::new();
        if !path.exists() {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(|_| PkiError::Crypto("cannot generate the audit-log key".into()))?;
            let pem = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref())));
            write_new(&path, pem.as_bytes(), 0o600)?;
            crate::fsutil::sync_dir(pki_dir)?;
        }
        let bad = |reason: String| PkiError::BadFile {
            path: path.clone(),
            reason,
        };
        let text = Zeroizing::new(read_secret(&path)?);
        let parsed = pem::parse(&*text).map_err(|e| bad(format!("not PEM: {e}")))?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, parsed.contents(), &rng)
                .map_err(|e| bad(format!("not a P-256 key: {e}")))?;
        Ok(LogKey { key, rng, path })
    }

    /// The public key as an uncompressed P-256 point (65 bytes).
    pub fn public_point(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// ECDSA P-256 SHA-256, DER-encoded signature.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        self.key
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| PkiError::Crypto("audit-log signing failed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_0600_and_reloaded_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let a = LogKey::open_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(LOG_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = LogKey::open_or_create(dir.path()).unwrap();
        assert_eq!(a.public_point(), b.public_point());
        assert_eq!(a.public_point().len(), 65);
        let sig = a.sign(b"msg").unwrap();
        let pk = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            b.public_point(),
        );
        pk.verify(b"msg", &sig).unwrap();
        assert!(!format!("{a:?}").contains("key:"));
    }

    #[test]
    fn a_damaged_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_KEY_FILE), "garbage").unwrap();
        let e = LogKey::open_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("audit-log.key"), "{e}");
    }
}

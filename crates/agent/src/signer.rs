//! The key store's tier-2 (service) key signs IKE AUTH (RFC 7427). It lives here,
//! not in `dodvpn-ike`, so that the sans-IO IKE crate does not pull in the key
//! store's PKCS#11, password hashing and TLS dependencies.

use std::sync::Arc;

use dodvpn_ike::Signer;
use dodvpn_pki::{KeyStore, Tier};

/// An `Arc<dyn KeyStore>` as an IKE [`Signer`] (ecdsa-with-SHA256, the signer's
/// default algorithm identifier, is what `KeyStore::sign` produces).
pub struct KeyStoreSigner(pub Arc<dyn KeyStore>);

impl Signer for KeyStoreSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        KeyStore::sign(&*self.0, Tier::Service, msg).map_err(|e| e.to_string())
    }
}

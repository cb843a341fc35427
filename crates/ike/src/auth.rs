//! IKE_AUTH authentication (RFC 7296 §2.15): signed octets, PSK AUTH,
//! RFC 7427 Digital Signature AUTH (method 14) and RFC 4754 ECDSA (9, 10).

use std::sync::Arc;

use dodvpn_wire::{algorithm_identifier as alg, Auth, AuthMethod, Identification};
use ring::signature;

use crate::crypto::Prf;

/// Signs AUTH octets with the local private key (ECDSA P-256 / SHA-256,
/// DER signature, as `dodvpn_pki::KeyStore::sign` produces).
pub trait Signer: Send + Sync {
    /// ECDSA P-256 SHA-256 DER signature over `msg`.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String>;
}

/// The tier-2 (service) key of a key store signs IKE AUTH.
impl Signer for dyn dodvpn_pki::KeyStore {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        dodvpn_pki::KeyStore::sign(self, dodvpn_pki::Tier::Service, msg).map_err(|e| e.to_string())
    }
}

/// Adapter so an `Arc<dyn KeyStore>` can be used as `Arc<dyn Signer>`.
pub struct KeyStoreSigner(pub Arc<dyn dodvpn_pki::KeyStore>);

impl Signer for KeyStoreSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        <dyn dodvpn_pki::KeyStore as Signer>::sign(&*self.0, msg)
    }
}

/// An in-memory ECDSA P-256 key (PKCS#8), e.g. for tests.
pub struct EcdsaP256Signer {
    key: signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl EcdsaP256Signer {
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, String> {
        let rng = ring::rand::SystemRandom::new();
        let key = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8,
            &rng,
        )
        .map_err(|e| e.to_string())?;
        Ok(EcdsaP256Signer { key, rng })
    }
}

impl Signer for EcdsaP256Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        self.key
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| e.to_string())
    }
}

/// Decides whether the peer's end-entity certificate is acceptable for the
/// identity it claimed (chain, validity, revocation, ID ↔ certificate
/// binding). Plug `dodvpn_pki::validate` + CRL in here.
pub trait PeerValidator: Send + Sync {
    fn validate(&self, end_entity_der: &[u8], peer_id: &Identification) -> Result<(), String>;
}

/// How we authenticate ourselves.
#[derive(Clone)]
pub enum LocalAuth {
    Psk(Vec<u8>),
    /// Certificate (DER, sent in a CERT payload) + the key that signs.
    Cert {
        cert_der: Vec<u8>,
        signer: Arc<dyn Signer>,
    },
}

/// How we authenticate the peer.
#[derive(Clone)]
pub enum RemoteAuth {
    Psk(Vec<u8>),
    Cert(Arc<dyn PeerValidator>),
}

impl core::fmt::Debug for LocalAuth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LocalAuth::Psk(_) => f.write_str("Psk(..)"),
            LocalAuth::Cert { .. } => f.write_str("Cert{..}"),
        }
    }
}
impl core::fmt::Debug for RemoteAuth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RemoteAuth::Psk(_) => f.write_str("Psk(..)"),
            RemoteAuth::Cert(_) => f.write_str("Cert(..)"),
        }
    }
}

/// <SignedOctets> = RealMessage | NonceData (peer's) | prf(SK_p, RestOfIDPayload) (§2.15).
pub fn signed_octets(
    real_message: &[u8],
    peer_nonce: &[u8],
    prf: Prf,
    sk_p: &[u8],
    id: &Identification,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(real_message.len() + peer_nonce.len() + prf.len());
    v.extend_from_slice(real_message);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(&prf.prf(sk_p, &id.body()));
    v
}

/// AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (§2.15).
pub fn psk_auth(prf: Prf, psk: &[u8], octets: &[u8]) -> Vec<u8> {
    let k = prf.prf(psk, b"Key Pad for IKEv2");
    prf.prf(&k, octets)
}

/// Build our AUTH payload.
pub fn make_auth(local: &LocalAuth, prf: Prf, octets: &[u8]) -> Result<Auth, String> {
    match local {
        LocalAuth::Psk(k) => Ok(Auth {
            method: AuthMethod::SharedKeyMic,
            data: psk_auth(prf, k, octets),
        }),
        LocalAuth::Cert { signer, .. } => {
            let sig = signer.sign(octets)?;
            Auth::digital_signature(alg::ECDSA_WITH_SHA256, &sig).map_err(|e| e.to_string())
        }
    }
}

/// Check a PSK AUTH payload in constant time.
pub fn verify_psk(prf: Prf, psk: &[u8], octets: &[u8], auth: &Auth) -> Result<(), String> {
    if auth.method != AuthMethod::SharedKeyMic {
        return Err(format!("AUTH method {:?}, expected PSK", auth.method));
    }
    let want = psk_auth(prf, psk, octets);
    if crate::crypto::ct_eq(&want, &auth.data) {
        Ok(())
    } else {
        Err("PSK AUTH mismatch".to_string())
    }
}

/// The public key inside a SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Uncompressed SEC1 point.
    EcP256(Vec<u8>),
    EcP384(Vec<u8>),
    /// RSAPublicKey DER.
    Rsa(Vec<u8>),
}

const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// Read one DER TLV: (tag, content, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (l0 as usize, rest)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Parse a SubjectPublicKeyInfo (RFC 5280 §4.1).
pub fn parse_spki(spki: &[u8]) -> Option<PublicKey> {
    let (t, seq, _) = der(spki)?;
    if t != 0x30 {
        return None;
    }
    let (t, algid, rest) = der(seq)?;
    if t != 0x30 {
        return None;
    }
    let (t, bits, _) = der(rest)?;
    if t != 0x03 || bits.first() != Some(&0) {
        return None;
    }
    let key = bits[1..].to_vec();
    let (t, oid, params) = der(algid)?;
    if t != 0x06 {
        return None;
    }
    if oid == OID_EC {
        let (t, curve, _) = der(params)?;
        if t != 0x06 {
            return None;
        }
        if curve == OID_P256 {
            Some(PublicKey::EcP256(key))
        } else if curve == OID_P384 {
            Some(PublicKey::EcP384(key))
        } else {
            None
        }
    } else if oid == OID_RSA {
        Some(PublicKey::Rsa(key))
    } else {
        None
    }
}

/// Verify the peer's signature AUTH over `octets` with `key`.
pub fn verify_signature(key: &PublicKey, auth: &Auth, octets: &[u8]) -> Result<(), String> {
    use signature as s;
    let (algo, sig): (&'static dyn s::VerificationAlgorithm, &[u8]) = match auth.method {
        AuthMethod::DigitalSignature => {
            let (alg_id, sig) = auth.split_digital_signature().map_err(|e| e.to_string())?;
            let a: &'static dyn s::VerificationAlgorithm = match (key, alg_id) {
                (PublicKey::EcP256(_), a) if a == alg::ECDSA_WITH_SHA256 => {
                    &s::ECDSA_P256_SHA256_ASN1
                }
                (PublicKey::EcP256(_), a) if a == alg::ECDSA_WITH_SHA384 => {
                    &s::ECDSA_P256_SHA384_ASN1
                }
                (PublicKey::EcP384(_), a) if a == alg::ECDSA_WITH_SHA256 => {
                    &s::ECDSA_P384_SHA256_ASN1
                }
                (PublicKey::EcP384(_), a) if a == alg::ECDSA_WITH_SHA384 => {
                    &s::ECDSA_P384_SHA384_ASN1
                }
                (PublicKey::Rsa(_), a) if a == alg::SHA256_WITH_RSA => {
                    &s::RSA_PKCS1_2048_8192_SHA256
                }
                (PublicKey::Rsa(_), a) if a == alg::SHA384_WITH_RSA => {
                    &s::RSA_PKCS1_2048_8192_SHA384
                }
                (PublicKey::Rsa(_), a) if a == alg::SHA512_WITH_RSA => {
                    &s::RSA_PKCS1_2048_8192_SHA512
                }
                (PublicKey::Rsa(_), a) if is_pss_sha256(a) => &s::RSA_PSS_2048_8192_SHA256,
                _ => return Err("signature algorithm not supported for this key".into()),
            };
            (a, sig)
        }
        // RFC 4754: r | s, fixed length.
        AuthMethod::EcdsaSha256P256 if matches!(key, PublicKey::EcP256(_)) => {
            (&s::ECDSA_P256_SHA256_FIXED, &auth.data[..])
        }
        AuthMethod::EcdsaSha384P384 if matches!(key, PublicKey::EcP384(_)) => {
            (&s::ECDSA_P384_SHA384_FIXED, &auth.data[..])
        }
        m => return Err(format!("AUTH method {m:?} not supported")),
    };
    let pk = match key {
        PublicKey::EcP256(k) | PublicKey::EcP384(k) | PublicKey::Rsa(k) => k,
    };
    s::UnparsedPublicKey::new(algo, pk)
        .verify(octets, sig)
        .map_err(|_| "bad signature".to_string())
}

/// RSASSA-PSS AlgorithmIdentifier whose parameters name SHA-256.
fn is_pss_sha256(alg_id: &[u8]) -> bool {
    let Some((0x30, body, _)) = der(alg_id) else {
        return false;
    };
    let Some((0x06, oid, params)) = der(body) else {
        return false;
    };
    oid == OID_RSA_PSS && params.windows(OID_SHA256.len()).any(|w| w == OID_SHA256)
}

/// Compare a received ID with the configured expectation (FQDN and
/// RFC822 case-insensitively, others byte for byte).
pub fn id_matches(expected: &Identification, got: &Identification) -> bool {
    use dodvpn_wire::IdType;
    if expected.id_type != got.id_type {
        return false;
    }
    match expected.id_type {
        IdType::Fqdn | IdType::Rfc822Addr => expected.data.eq_ignore_ascii_case(&got.data),
        _ => expected.data == got.data,
    }
}

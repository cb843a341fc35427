//! IKE_AUTH authentication (RFC 7296 §2.15): signed octets, PSK AUTH,
//! RFC 7427 Digital Signature AUTH (method 14) and RFC 4754 ECDSA (9, 10).

use std::sync::Arc;

use dodvpn_wire::{algorithm_identifier as alg, Auth, AuthMethod, Identification};
use ring::signature;

use crate::crypto::Prf;

/// Signs AUTH octets with the local private key for RFC 7427 Digital
/// Signature authentication (method 14).
pub trait Signer: Send + Sync {
    /// Signature over `msg`, in the encoding [`Signer::algorithm_identifier`]
    /// names (ECDSA: DER `Ecdsa-Sig-Value`; RSA: the octet string, as long as
    /// the modulus).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String>;

    /// DER AlgorithmIdentifier sent in front of the signature (RFC 7427 §3).
    /// The default, ecdsa-with-SHA256, is what the centre's key stores produce.
    fn algorithm_identifier(&self) -> &'static [u8] {
        alg::ECDSA_WITH_SHA256
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

/// An in-memory ECDSA P-384 key (PKCS#8), signing with SHA-384.
pub struct EcdsaP384Signer {
    key: signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl EcdsaP384Signer {
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, String> {
        let rng = ring::rand::SystemRandom::new();
        let key = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            pkcs8,
            &rng,
        )
        .map_err(|e| e.to_string())?;
        Ok(EcdsaP384Signer { key, rng })
    }
}

impl Signer for EcdsaP384Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        self.key
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| e.to_string())
    }
    fn algorithm_identifier(&self) -> &'static [u8] {
        alg::ECDSA_WITH_SHA384
    }
}

/// The RSA signature scheme an [`RsaSigner`] uses (both with SHA-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (sha256WithRSAEncryption).
    Pkcs1Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt (RFC 4055, RFC 7427 A.4.3).
    PssSha256,
}

/// AlgorithmIdentifier of RSASSA-PSS with SHA-256, MGF1 with SHA-256 and a
/// 32-octet salt (RFC 4055 §3.1; the same octets as RFC 7427 Appendix A.4.3):
/// SEQUENCE { id-RSASSA-PSS, RSASSA-PSS-params {
///   [0] sha256Identifier, [1] { id-mgf1, sha256Identifier }, [2] 32 } }
pub const RSASSA_PSS_SHA256: &[u8] = &[
    0x30, 0x41, // SEQUENCE
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, // id-RSASSA-PSS
    0x30, 0x34, // RSASSA-PSS-params
    0xa0, 0x0f, // [0] hashAlgorithm
    0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa1,
    0x1c, // [1] maskGenAlgorithm
    0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, // id-mgf1
    0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2,
    0x03, 0x02, 0x01, 0x20, // [2] saltLength 32
];

/// An in-memory RSA key (PKCS#8, 2048–4096 bits) signing with SHA-256.
pub struct RsaSigner {
    key: signature::RsaKeyPair,
    scheme: RsaScheme,
    rng: ring::rand::SystemRandom,
}

impl RsaSigner {
    pub fn from_pkcs8(pkcs8: &[u8], scheme: RsaScheme) -> Result<Self, String> {
        let key = signature::RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
        Ok(RsaSigner {
            key,
            scheme,
            rng: ring::rand::SystemRandom::new(),
        })
    }

    pub fn scheme(&self) -> RsaScheme {
        self.scheme
    }

    /// Modulus length in bits.
    pub fn modulus_bits(&self) -> usize {
        self.key.public().modulus_len() * 8
    }
}

impl Signer for RsaSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let padding: &'static dyn signature::RsaEncoding = match self.scheme {
            RsaScheme::Pkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
            RsaScheme::PssSha256 => &signature::RSA_PSS_SHA256,
        };
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(padding, &self.rng, msg, &mut sig)
            .map_err(|e| e.to_string())?;
        Ok(sig)
    }
    fn algorithm_identifier(&self) -> &'static [u8] {
        match self.scheme {
            RsaScheme::Pkcs1Sha256 => alg::SHA256_WITH_RSA,
            RsaScheme::PssSha256 => RSASSA_PSS_SHA256,
        }
    }
}

/// The kind of key a PKCS#8 PrivateKeyInfo holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcP256,
    EcP384,
    Rsa,
}

/// Read the algorithm of a PKCS#8 PrivateKeyInfo (RFC 5208 §5, RFC 5958 §2):
/// SEQUENCE { version, AlgorithmIdentifier, privateKey, ... }. For EC keys the
/// curve is the AlgorithmIdentifier parameter (RFC 5915 §1).
pub fn pkcs8_key_kind(pkcs8: &[u8]) -> Result<KeyKind, String> {
    let bad = || "not a PKCS#8 PrivateKeyInfo".to_string();
    let (t, body, _) = der(pkcs8).ok_or_else(bad)?;
    if t != 0x30 {
        return Err(bad());
    }
    let (t, _version, rest) = der(body).ok_or_else(bad)?;
    if t != 0x02 {
        return Err(bad());
    }
    let (t, algid, _) = der(rest).ok_or_else(bad)?;
    if t != 0x30 {
        return Err(bad());
    }
    let (t, oid, params) = der(algid).ok_or_else(bad)?;
    if t != 0x06 {
        return Err(bad());
    }
    if oid == OID_RSA {
        return Ok(KeyKind::Rsa);
    }
    if oid == OID_EC {
        return match der(params) {
            Some((0x06, c, _)) if c == OID_P256 => Ok(KeyKind::EcP256),
            Some((0x06, c, _)) if c == OID_P384 => Ok(KeyKind::EcP384),
            _ => Err("EC key on an unsupported curve (P-256 and P-384 are supported)".into()),
        };
    }
    if oid == OID_RSA_PSS {
        return Err("RSASSA-PSS-restricted keys (id-RSASSA-PSS) are not supported; use an rsaEncryption key".into());
    }
    Err("unsupported private key algorithm (ECDSA P-256, P-384 or RSA are supported)".into())
}

/// A signer for whatever key a PKCS#8 document holds: ECDSA P-256 (SHA-256),
/// ECDSA P-384 (SHA-384) or RSA (SHA-256 with `rsa_scheme`).
pub fn signer_from_pkcs8(pkcs8: &[u8], rsa_scheme: RsaScheme) -> Result<Arc<dyn Signer>, String> {
    Ok(match pkcs8_key_kind(pkcs8)? {
        KeyKind::EcP256 => Arc::new(EcdsaP256Signer::from_pkcs8(pkcs8)?),
        KeyKind::EcP384 => Arc::new(EcdsaP384Signer::from_pkcs8(pkcs8)?),
        KeyKind::Rsa => {
            Arc::new(RsaSigner::from_pkcs8(pkcs8, rsa_scheme).map_err(|e| format!("RSA key: {e}"))?)
        }
    })
}

/// Decides whether the peer's end-entity certificate is acceptable for the
/// identity it claimed (chain, validity, revocation, ID ↔ certificate
/// binding). The agent's and the tunnel's validators check the path, profile and CRL.
pub trait PeerValidator: Send + Sync {
    fn validate(&self, end_entity_der: &[u8], peer_id: &Identification) -> Result<(), String>;

    /// Like [`PeerValidator::validate`], with the intermediate CA certificates
    /// (DER) the peer sent in its further CERT payloads (RFC 7296 §3.6), in the
    /// order received. The default ignores them: a validator that builds no
    /// chains accepts only end-entity certificates issued by its anchors.
    fn validate_chain(
        &self,
        end_entity_der: &[u8],
        intermediates: &[&[u8]],
        peer_id: &Identification,
    ) -> Result<(), String> {
        let _ = intermediates;
        self.validate(end_entity_der, peer_id)
    }

    /// SHA-1 hashes of the trusted CAs' SubjectPublicKeyInfo, sent in CERTREQ
    /// (RFC 7296 §3.7) so the peer knows which chain to send. Default: none
    /// (no CERTREQ is sent).
    fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        Vec::new()
    }
}

/// SHA-1 of a certificate's SubjectPublicKeyInfo (the CERTREQ authority hash,
/// RFC 7296 §3.7); `None` if the certificate does not parse.
pub fn spki_sha1(cert_der: &[u8]) -> Option<[u8; 20]> {
    let spki = cert_spki(cert_der)?;
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, spki);
    d.as_ref().try_into().ok()
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
            Auth::digital_signature(signer.algorithm_identifier(), &sig).map_err(|e| e.to_string())
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
// sha{256,384,512}WithRSAEncryption with the parameters absent: RFC 4055 §5
// says NULL, and that absent parameters must be accepted as well.
const SHA256_WITH_RSA_NO_PARAMS: &[u8] = &[
    0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
];
const SHA384_WITH_RSA_NO_PARAMS: &[u8] = &[
    0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c,
];
const SHA512_WITH_RSA_NO_PARAMS: &[u8] = &[
    0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d,
];

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

/// Read one DER TLV and return it whole (header included) with the rest.
fn der_whole(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tag, content, rest) = der(input)?;
    let whole = &input[..input.len() - rest.len()];
    debug_assert!(whole.ends_with(content));
    Some((tag, whole, rest))
}

/// The SubjectPublicKeyInfo (whole DER) of an X.509 certificate (RFC 5280
/// §4.1). Only the structure up to the key is read: whether the certificate
/// is acceptable is the [`PeerValidator`]'s business, so nothing here refuses
/// e.g. a 20-octet serial number.
pub fn cert_spki(cert_der: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = der(cert_der)? else {
        return None;
    };
    let (0x30, mut tbs, _) = der(cert)? else {
        return None;
    };
    // [0] EXPLICIT version, optional.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for want in [0x02, 0x30, 0x30, 0x30, 0x30] {
        let (t, _, rest) = der(tbs)?;
        if t != want {
            return None;
        }
        tbs = rest;
    }
    match der_whole(tbs)? {
        (0x30, spki, _) => Some(spki),
        _ => None,
    }
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
                (PublicKey::Rsa(_), a) if a == SHA256_WITH_RSA_NO_PARAMS => {
                    &s::RSA_PKCS1_2048_8192_SHA256
                }
                (PublicKey::Rsa(_), a) if a == SHA384_WITH_RSA_NO_PARAMS => {
                    &s::RSA_PKCS1_2048_8192_SHA384
                }
                (PublicKey::Rsa(_), a) if a == SHA512_WITH_RSA_NO_PARAMS => {
                    &s::RSA_PKCS1_2048_8192_SHA512
                }
                (PublicKey::Rsa(_), a) => match pss_params(a) {
                    Some(v) => v,
                    None => return Err("signature algorithm not supported for this key".into()),
                },
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

/// A hash AlgorithmIdentifier (NULL or absent parameters, RFC 4055 §2.1) →
/// its OID.
fn hash_oid(alg_id_body: &[u8]) -> Option<&[u8]> {
    let (t, oid, params) = der(alg_id_body)?;
    if t != 0x06 {
        return None;
    }
    match params {
        [] | [0x05, 0x00] => Some(oid),
        _ => None,
    }
}

/// RSASSA-PSS AlgorithmIdentifier (RFC 4055 §3.1) → the verification
/// algorithm, for the parameter sets `ring` verifies: SHA-256/384/512 with
/// MGF1 over the same hash and a salt as long as the hash, trailer field 1.
/// Absent parameters mean SHA-1 with a 20-octet salt, which is refused.
fn pss_params(alg_id: &[u8]) -> Option<&'static dyn signature::VerificationAlgorithm> {
    const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
    let (0x30, body, []) = der(alg_id)? else {
        return None;
    };
    let (0x06, oid, params) = der(body)? else {
        return None;
    };
    if oid != OID_RSA_PSS {
        return None;
    }
    let (0x30, mut p, []) = der(params)? else {
        return None;
    };
    // [0] hashAlgorithm (no default we accept: SHA-1).
    let (0xa0, h, rest) = der(p)? else {
        return None;
    };
    p = rest;
    let (0x30, h, []) = der(h)? else {
        return None;
    };
    let hash = hash_oid(h)?;
    let (algo, hlen): (&'static dyn signature::VerificationAlgorithm, u64) = match hash {
        h if h == OID_SHA256 => (&signature::RSA_PSS_2048_8192_SHA256, 32),
        h if h == OID_SHA384 => (&signature::RSA_PSS_2048_8192_SHA384, 48),
        h if h == OID_SHA512 => (&signature::RSA_PSS_2048_8192_SHA512, 64),
        _ => return None,
    };
    // [1] maskGenAlgorithm: MGF1 with the same hash.
    let (0xa1, m, rest) = der(p)? else {
        return None;
    };
    p = rest;
    let (0x30, m, []) = der(m)? else {
        return None;
    };
    let (0x06, mgf, mh) = der(m)? else {
        return None;
    };
    let (0x30, mh, []) = der(mh)? else {
        return None;
    };
    if mgf != OID_MGF1 || hash_oid(mh)? != hash {
        return None;
    }
    // [2] saltLength: must equal the hash length (what ring verifies).
    let (0xa2, sl, rest) = der(p)? else {
        return None;
    };
    p = rest;
    let (0x02, sl, []) = der(sl)? else {
        return None;
    };
    if sl.is_empty() || sl.len() > 2 || sl[0] & 0x80 != 0 {
        return None;
    }
    let salt = sl.iter().fold(0u64, |a, b| (a << 8) | *b as u64);
    if salt != hlen {
        return None;
    }
    // [3] trailerField: absent or 1.
    if !p.is_empty() {
        let (0xa3, tf, []) = der(p)? else {
            return None;
        };
        if tf != [0x02, 0x01, 0x01] {
            return None;
        }
    }
    Some(algo)
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

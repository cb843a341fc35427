//! Crypto primitives of the IKE SA: PRF / prf+ (RFC 7296 §2.13), Diffie-Hellman
//! groups 14/15/16 (RFC 3526), 19/20/21 (RFC 5903) and 31 (RFC 8031), and SK payload protection with
//! AES-GCM-16 / ChaCha20-Poly1305 (RFC 5282, RFC 7634) or AES-CBC + HMAC-SHA2
//! (RFC 7296 §3.14, RFC 4868).

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use dodvpn_wire::{DhGroup, EncrId, IntegId, PrfId};
use ring::{aead, agreement, hmac, rand::SecureRandom};

use crate::Error;

/// Pseudo-random function (transform type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Prf {
    pub fn from_id(id: PrfId) -> Option<Prf> {
        match id {
            PrfId::HmacSha2_256 => Some(Prf::HmacSha256),
            PrfId::HmacSha2_384 => Some(Prf::HmacSha384),
            PrfId::HmacSha2_512 => Some(Prf::HmacSha512),
            _ => None,
        }
    }
    pub fn id(self) -> PrfId {
        match self {
            Prf::HmacSha256 => PrfId::HmacSha2_256,
            Prf::HmacSha384 => PrfId::HmacSha2_384,
            Prf::HmacSha512 => PrfId::HmacSha2_512,
        }
    }
    fn alg(self) -> hmac::Algorithm {
        match self {
            Prf::HmacSha256 => hmac::HMAC_SHA256,
            Prf::HmacSha384 => hmac::HMAC_SHA384,
            Prf::HmacSha512 => hmac::HMAC_SHA512,
        }
    }
    /// Output length, which is also the preferred key length (SK_d, SK_pi, SK_pr;
    /// RFC 4868 §2.1.2).
    #[allow(clippy::len_without_is_empty)] // an output length, never zero
    pub fn len(self) -> usize {
        match self {
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// prf(K, S).
    pub fn prf(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        self.prf_parts(key, &[data])
    }

    /// prf(K, S1 | S2 | ...), without concatenating first.
    pub fn prf_parts(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let k = hmac::Key::new(self.alg(), key);
        let mut ctx = hmac::Context::with_key(&k);
        for p in parts {
            ctx.update(p);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// prf+ (RFC 7296 §2.13): T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n),
    /// output T1 | T2 | ... truncated to `len`. At most 255 blocks.
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Result<Vec<u8>, Error> {
        if len > 255 * self.len() {
            return Err(Error::Crypto("prf+ output too long"));
        }
        let k = hmac::Key::new(self.alg(), key);
        let mut out = Vec::with_capacity(len + self.len());
        let mut prev: Vec<u8> = Vec::new();
        let mut n: u8 = 1;
        while out.len() < len {
            let mut ctx = hmac::Context::with_key(&k);
            ctx.update(&prev);
            ctx.update(seed);
            ctx.update(&[n]);
            prev = ctx.sign().as_ref().to_vec();
            out.extend_from_slice(&prev);
            n = n.wrapping_add(1);
        }
        out.truncate(len);
        Ok(out)
    }
}

/// Integrity algorithm for non-AEAD SK protection (transform type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    HmacSha256_128,
    HmacSha384_192,
    HmacSha512_256,
}

impl Integ {
    pub fn from_id(id: IntegId) -> Option<Integ> {
        match id {
            IntegId::HmacSha2_256_128 => Some(Integ::HmacSha256_128),
            IntegId::HmacSha2_384_192 => Some(Integ::HmacSha384_192),
            IntegId::HmacSha2_512_256 => Some(Integ::HmacSha512_256),
            _ => None,
        }
    }
    pub fn id(self) -> IntegId {
        match self {
            Integ::HmacSha256_128 => IntegId::HmacSha2_256_128,
            Integ::HmacSha384_192 => IntegId::HmacSha2_384_192,
            Integ::HmacSha512_256 => IntegId::HmacSha2_512_256,
        }
    }
    /// Key length (RFC 4868 §2.1.1: the hash output length).
    pub fn key_len(self) -> usize {
        match self {
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }
    /// Truncated ICV length.
    pub fn icv_len(self) -> usize {
        self.key_len() / 2
    }
    fn alg(self) -> hmac::Algorithm {
        match self {
            Integ::HmacSha256_128 => hmac::HMAC_SHA256,
            Integ::HmacSha384_192 => hmac::HMAC_SHA384,
            Integ::HmacSha512_256 => hmac::HMAC_SHA512,
        }
    }
    pub fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let t = hmac::sign(&hmac::Key::new(self.alg(), key), data);
        t.as_ref()[..self.icv_len()].to_vec()
    }
}

/// Encryption of the SK payload (transform type 1, plus INTEG for CBC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeCipher {
    /// ENCR_AES_GCM_16 with a 128- or 256-bit key (RFC 5282).
    AesGcm16 { key_bits: u16 },
    /// ENCR_CHACHA20_POLY1305 (RFC 7634).
    ChaCha20Poly1305,
    /// ENCR_AES_CBC + HMAC-SHA2 integrity.
    AesCbc { key_bits: u16, integ: Integ },
}

const SALT_LEN: usize = 4;
const AEAD_IV_LEN: usize = 8;
const AEAD_TAG_LEN: usize = 16;
const CBC_BLOCK: usize = 16;

impl IkeCipher {
    pub fn encr_id(self) -> EncrId {
        match self {
            IkeCipher::AesGcm16 { .. } => EncrId::AesGcm16,
            IkeCipher::ChaCha20Poly1305 => EncrId::ChaCha20Poly1305,
            IkeCipher::AesCbc { .. } => EncrId::AesCbc,
        }
    }
    /// Key length attribute (bits), if the transform has one.
    pub fn key_length_attr(self) -> Option<u16> {
        match self {
            IkeCipher::AesGcm16 { key_bits } | IkeCipher::AesCbc { key_bits, .. } => Some(key_bits),
            IkeCipher::ChaCha20Poly1305 => None,
        }
    }
    pub fn integ(self) -> Option<Integ> {
        match self {
            IkeCipher::AesCbc { integ, .. } => Some(integ),
            _ => None,
        }
    }
    /// Length of SK_ei / SK_er: cipher key plus, for AEAD, the 4-byte salt
    /// (RFC 5282 §7.1, RFC 7634 §2).
    pub fn enc_key_len(self) -> usize {
        match self {
            IkeCipher::AesGcm16 { key_bits } => key_bits as usize / 8 + SALT_LEN,
            IkeCipher::ChaCha20Poly1305 => 32 + SALT_LEN,
            IkeCipher::AesCbc { key_bits, .. } => key_bits as usize / 8,
        }
    }
    /// Length of SK_ai / SK_ar (0 for AEAD).
    pub fn integ_key_len(self) -> usize {
        self.integ().map_or(0, Integ::key_len)
    }
    fn iv_len(self) -> usize {
        match self {
            IkeCipher::AesCbc { .. } => CBC_BLOCK,
            _ => AEAD_IV_LEN,
        }
    }
    fn icv_len(self) -> usize {
        match self {
            IkeCipher::AesCbc { integ, .. } => integ.icv_len(),
            _ => AEAD_TAG_LEN,
        }
    }

    /// Size of the SK body (IV | ciphertext incl. padding and pad length | ICV)
    /// for `plain_len` bytes of inner payloads.
    pub fn body_len(self, plain_len: usize) -> usize {
        let padded = match self {
            IkeCipher::AesCbc { .. } => (plain_len + 1).div_ceil(CBC_BLOCK) * CBC_BLOCK,
            _ => plain_len + 1,
        };
        self.iv_len() + padded + self.icv_len()
    }

    /// Fill the SK body `msg[body]` (zeroed, of [`Self::body_len`]) in place:
    /// `aad` is `msg[..body.start]` for AEAD, and for CBC the ICV covers
    /// everything before the ICV (RFC 7296 §3.14).
    pub fn seal(
        self,
        enc_key: &[u8],
        integ_key: &[u8],
        msg: &mut [u8],
        body_start: usize,
        plain: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<(), Error> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        let total = msg.len();
        if total - body_start != self.body_len(plain.len()) {
            return Err(Error::Crypto("SK body length mismatch"));
        }
        let ct_start = body_start + iv_len;
        let ct_end = total - icv_len;
        // Plaintext | padding (zeros) | pad length.
        let pad = ct_end - ct_start - plain.len() - 1;
        msg[ct_start..ct_start + plain.len()].copy_from_slice(plain);
        for b in &mut msg[ct_start + plain.len()..ct_end - 1] {
            *b = 0;
        }
        msg[ct_end - 1] = pad as u8;
        rng.fill(&mut msg[body_start..ct_start])
            .map_err(|_| Error::Crypto("rng"))?;
        match self {
            IkeCipher::AesGcm16 { .. } | IkeCipher::ChaCha20Poly1305 => {
                let key = self.aead_key(enc_key)?;
                let nonce = aead_nonce(enc_key, &msg[body_start..ct_start]);
                let (head, rest) = msg.split_at_mut(body_start);
                let aad = aead::Aad::from(&head[..]);
                let (ct, tag_out) = rest[iv_len..].split_at_mut(ct_end - ct_start);
                let tag = key
                    .seal_in_place_separate_tag(nonce, aad, ct)
                    .map_err(|_| Error::Crypto("seal"))?;
                tag_out.copy_from_slice(tag.as_ref());
            }
            IkeCipher::AesCbc { integ, .. } => {
                let mut iv = [0u8; CBC_BLOCK];
                iv.copy_from_slice(&msg[body_start..ct_start]);
                cbc_encrypt(enc_key, &iv, &mut msg[ct_start..ct_end])?;
                let icv = integ.mac(integ_key, &msg[..ct_end]);
                msg[ct_end..].copy_from_slice(&icv);
            }
        }
        Ok(())
    }

    /// Verify and decrypt the SK body in place; returns the range of the inner
    /// payload chain (padding stripped) within `msg`.
    pub fn open(
        self,
        enc_key: &[u8],
        integ_key: &[u8],
        msg: &mut [u8],
        body_start: usize,
    ) -> Result<core::ops::Range<usize>, Error> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        let total = msg.len();
        if total < body_start || total - body_start < iv_len + icv_len + 1 {
            return Err(Error::Crypto("SK body too short"));
        }
        let ct_start = body_start + iv_len;
        let ct_end = total - icv_len;
        match self {
            IkeCipher::AesGcm16 { .. } | IkeCipher::ChaCha20Poly1305 => {
                let key = self.aead_key(enc_key)?;
                let nonce = aead_nonce(enc_key, &msg[body_start..ct_start]);
                let (head, rest) = msg.split_at_mut(body_start);
                let aad = aead::Aad::from(&head[..]);
                key.open_in_place(nonce, aad, &mut rest[iv_len..])
                    .map_err(|_| Error::Integrity)?;
            }
            IkeCipher::AesCbc { integ, .. } => {
                let icv = integ.mac(integ_key, &msg[..ct_end]);
                if !ct_eq(&icv, &msg[ct_end..]) {
                    return Err(Error::Integrity);
                }
                if (ct_end - ct_start) % CBC_BLOCK != 0 {
                    return Err(Error::Crypto("CBC ciphertext not block aligned"));
                }
                let mut iv = [0u8; CBC_BLOCK];
                iv.copy_from_slice(&msg[body_start..ct_start]);
                cbc_decrypt(enc_key, &iv, &mut msg[ct_start..ct_end])?;
            }
        }
        let pad = msg[ct_end - 1] as usize;
        if pad + 1 > ct_end - ct_start {
            return Err(Error::Crypto("bad SK pad length"));
        }
        Ok(ct_start..ct_end - 1 - pad)
    }

    fn aead_key(self, enc_key: &[u8]) -> Result<aead::LessSafeKey, Error> {
        let alg = match self {
            IkeCipher::AesGcm16 { key_bits: 128 } => &aead::AES_128_GCM,
            IkeCipher::AesGcm16 { key_bits: 256 } => &aead::AES_256_GCM,
            IkeCipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            _ => return Err(Error::Crypto("unsupported AEAD")),
        };
        if enc_key.len() != alg.key_len() + SALT_LEN {
            return Err(Error::Crypto("AEAD key length"));
        }
        let k = aead::UnboundKey::new(alg, &enc_key[..alg.key_len()])
            .map_err(|_| Error::Crypto("AEAD key"))?;
        Ok(aead::LessSafeKey::new(k))
    }
}

/// Nonce = salt (last 4 bytes of the key material) | explicit 8-byte IV
/// (RFC 5282 §4, RFC 7634 §2).
fn aead_nonce(enc_key: &[u8], iv: &[u8]) -> aead::Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&enc_key[enc_key.len() - SALT_LEN..]);
    n[4..].copy_from_slice(iv);
    aead::Nonce::assume_unique_for_key(n)
}

fn cbc_encrypt(key: &[u8], iv: &[u8; 16], buf: &mut [u8]) -> Result<(), Error> {
    let len = buf.len();
    match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| Error::Crypto("CBC key"))?
            .encrypt_padded_mut::<NoPadding>(buf, len)
            .map(|_| ())
            .map_err(|_| Error::Crypto("CBC encrypt")),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| Error::Crypto("CBC key"))?
            .encrypt_padded_mut::<NoPadding>(buf, len)
            .map(|_| ())
            .map_err(|_| Error::Crypto("CBC encrypt")),
        _ => Err(Error::Crypto("CBC key length")),
    }
}

fn cbc_decrypt(key: &[u8], iv: &[u8; 16], buf: &mut [u8]) -> Result<(), Error> {
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| Error::Crypto("CBC key"))?
            .decrypt_padded_mut::<NoPadding>(buf)
            .map(|_| ())
            .map_err(|_| Error::Crypto("CBC decrypt")),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| Error::Crypto("CBC key"))?
            .decrypt_padded_mut::<NoPadding>(buf)
            .map(|_| ())
            .map_err(|_| Error::Crypto("CBC decrypt")),
        _ => Err(Error::Crypto("CBC key length")),
    }
}

/// A Diffie-Hellman group we implement.
///
/// Where the key exchange comes from: ring (the workspace's crypto library)
/// does groups 19, 20 and 31. It has neither P-521 nor finite-field DH, so
/// group 21 uses the RustCrypto `p521` crate (constant-time field
/// arithmetic) and the MODP groups 14-16 use `crypto-bigint`'s
/// constant-time Montgomery exponentiation. aws-lc-rs would give P-521 but
/// not MODP either, and would add a second C crypto library to the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// 14: 2048-bit MODP group, RFC 3526 §3.
    Modp2048,
    /// 15: 3072-bit MODP group, RFC 3526 §4.
    Modp3072,
    /// 16: 4096-bit MODP group, RFC 3526 §5.
    Modp4096,
    /// 19: 256-bit random ECP group (NIST P-256), RFC 5903.
    Ecp256,
    /// 20: 384-bit random ECP group (NIST P-384), RFC 5903.
    Ecp384,
    /// 21: 521-bit random ECP group (NIST P-521), RFC 5903.
    Ecp521,
    /// 31: Curve25519, RFC 8031.
    Curve25519,
}

impl Group {
    /// Every group, strongest-first within each family.
    pub const ALL: [Group; 7] = [
        Group::Ecp256,
        Group::Ecp384,
        Group::Ecp521,
        Group::Curve25519,
        Group::Modp2048,
        Group::Modp3072,
        Group::Modp4096,
    ];

    pub fn from_id(id: DhGroup) -> Option<Group> {
        match id {
            DhGroup::Modp2048 => Some(Group::Modp2048),
            DhGroup::Modp3072 => Some(Group::Modp3072),
            DhGroup::Modp4096 => Some(Group::Modp4096),
            DhGroup::Ecp256 => Some(Group::Ecp256),
            DhGroup::Ecp384 => Some(Group::Ecp384),
            DhGroup::Ecp521 => Some(Group::Ecp521),
            DhGroup::Curve25519 => Some(Group::Curve25519),
            _ => None,
        }
    }
    pub fn id(self) -> DhGroup {
        match self {
            Group::Modp2048 => DhGroup::Modp2048,
            Group::Modp3072 => DhGroup::Modp3072,
            Group::Modp4096 => DhGroup::Modp4096,
            Group::Ecp256 => DhGroup::Ecp256,
            Group::Ecp384 => DhGroup::Ecp384,
            Group::Ecp521 => DhGroup::Ecp521,
            Group::Curve25519 => DhGroup::Curve25519,
        }
    }
    /// strongSwan's keyword for the group (`modp2048`, `ecp256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Group::Modp2048 => "modp2048",
            Group::Modp3072 => "modp3072",
            Group::Modp4096 => "modp4096",
            Group::Ecp256 => "ecp256",
            Group::Ecp384 => "ecp384",
            Group::Ecp521 => "ecp521",
            Group::Curve25519 => "curve25519",
        }
    }
    fn ring_alg(self) -> Option<&'static agreement::Algorithm> {
        match self {
            Group::Ecp256 => Some(&agreement::ECDH_P256),
            Group::Ecp384 => Some(&agreement::ECDH_P384),
            Group::Curve25519 => Some(&agreement::X25519),
            _ => None,
        }
    }
    /// Length of the KE payload data: x | y for ECP (RFC 5903 §7), the
    /// modulus length for MODP (RFC 7296 §3.4).
    pub fn public_len(self) -> usize {
        match self {
            Group::Modp2048 => 256,
            Group::Modp3072 => 384,
            Group::Modp4096 => 512,
            Group::Ecp256 => 64,
            Group::Ecp384 => 96,
            Group::Ecp521 => 132,
            Group::Curve25519 => 32,
        }
    }
    /// Length of our secret MODP exponent in bytes: at least twice the
    /// group's security strength (RFC 3526 §8 table: 2048 -> 112-160 bits,
    /// 3072 -> 128-210, 4096 -> 150-240).
    fn modp_exponent_len(self) -> usize {
        match self {
            Group::Modp2048 => 32,
            Group::Modp3072 => 48,
            _ => 64,
        }
    }
}

/// The RFC 3526 primes (generator 2), big-endian hex as in the RFC.
const MODP2048_P: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
    9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718\
    3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";
const MODP3072_P: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
    9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718\
    3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33\
    A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7\
    ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864\
    D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2\
    08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF";
const MODP4096_P: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
    9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718\
    3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33\
    A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7\
    ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864\
    D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2\
    08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7\
    88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8\
    DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2\
    233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9\
    93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF";

/// The secret half of a key exchange.
enum Secret {
    Ring(agreement::EphemeralPrivateKey),
    P521(p521::NonZeroScalar),
    Modp(ModpExponent),
}

/// A MODP exponent, big-endian, [`Group::modp_exponent_len`] bytes.
struct ModpExponent(Vec<u8>);

impl Drop for ModpExponent {
    fn drop(&mut self) {
        // Not guaranteed against the optimiser, but leaves no plain copy in
        // freed memory in the ordinary case.
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

/// An ephemeral DH private key and its public value in KE payload format.
pub struct DhPrivate {
    group: Group,
    key: Secret,
    public: Vec<u8>,
}

impl core::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DhPrivate")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// g^x mod p for the MODP groups, constant time in `x` (its length is public).
fn modp_pow(group: Group, base: &[u8], exp: &[u8]) -> Result<Vec<u8>, Error> {
    use crypto_bigint::{U2048, U3072, U4096, U512};
    fn run<const L: usize>(p_hex: &str, base: &[u8], exp: &[u8]) -> Result<Vec<u8>, Error>
    where
        crypto_bigint::Uint<L>: crypto_bigint::Encoding,
    {
        use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
        use crypto_bigint::{Encoding, Uint};
        let p = Uint::<L>::from_be_hex(p_hex);
        if base.len() != Uint::<L>::BYTES || exp.len() > 64 {
            return Err(Error::BadKe);
        }
        let b = Uint::<L>::from_be_slice(base);
        // RFC 6989 §2.2 / RFC 7296 §2.12: the peer's value must satisfy
        // 1 < y < p - 1 (groups 14-16 are safe primes, so this suffices).
        let one = Uint::<L>::ONE;
        let p_minus_1 = p.wrapping_sub(&one);
        if b <= one || b >= p_minus_1 {
            return Err(Error::BadKe);
        }
        let mut e = [0u8; 64];
        e[64 - exp.len()..].copy_from_slice(exp);
        let x = U512::from_be_slice(&e);
        e.iter_mut().for_each(|v| *v = 0);
        let params = DynResidueParams::new(&p);
        let r = DynResidue::new(&b, params)
            .pow_bounded_exp(&x, exp.len() * 8)
            .retrieve();
        Ok(r.to_be_bytes().as_ref().to_vec())
    }
    match group {
        Group::Modp2048 => run::<{ U2048::LIMBS }>(MODP2048_P, base, exp),
        Group::Modp3072 => run::<{ U3072::LIMBS }>(MODP3072_P, base, exp),
        Group::Modp4096 => run::<{ U4096::LIMBS }>(MODP4096_P, base, exp),
        _ => Err(Error::Crypto("not a MODP group")),
    }
}

/// The generator 2 as a KE-length big-endian value.
fn modp_generator(group: Group) -> Vec<u8> {
    let mut g = vec![0u8; group.public_len()];
    *g.last_mut().expect("MODP length is non-zero") = 2;
    g
}

impl DhPrivate {
    /// Generate a key; the private key bytes are drawn from `rng` (so tests
    /// can inject RFC vectors).
    pub fn generate(group: Group, rng: &dyn SecureRandom) -> Result<DhPrivate, Error> {
        match group {
            Group::Ecp256 | Group::Ecp384 | Group::Curve25519 => {
                let alg = group.ring_alg().expect("ring group");
                let key = agreement::EphemeralPrivateKey::generate(alg, rng)
                    .map_err(|_| Error::Crypto("DH keygen"))?;
                let pk = key
                    .compute_public_key()
                    .map_err(|_| Error::Crypto("DH public key"))?;
                // RFC 5903 §7: the KE data is x | y, without the SEC1 0x04 prefix.
                let public = match group {
                    Group::Curve25519 => pk.as_ref().to_vec(),
                    _ => pk.as_ref()[1..].to_vec(),
                };
                Ok(DhPrivate {
                    group,
                    key: Secret::Ring(key),
                    public,
                })
            }
            Group::Ecp521 => {
                use p521::elliptic_curve::sec1::ToEncodedPoint;
                // 66 bytes, top 7 bits cleared; retried while not in 1..n
                // (as ring does for P-256/P-384).
                for _ in 0..100 {
                    let mut b = [0u8; 66];
                    rng.fill(&mut b).map_err(|_| Error::Crypto("rng"))?;
                    b[0] &= 0x01;
                    let sk = p521::SecretKey::from_bytes(p521::FieldBytes::from_slice(&b));
                    b.iter_mut().for_each(|v| *v = 0);
                    if let Ok(sk) = sk {
                        let public =
                            sk.public_key().to_encoded_point(false).as_bytes()[1..].to_vec();
                        return Ok(DhPrivate {
                            group,
                            key: Secret::P521(sk.to_nonzero_scalar()),
                            public,
                        });
                    }
                }
                Err(Error::Crypto("DH keygen"))
            }
            Group::Modp2048 | Group::Modp3072 | Group::Modp4096 => {
                let mut x = vec![0u8; group.modp_exponent_len()];
                for _ in 0..100 {
                    rng.fill(&mut x).map_err(|_| Error::Crypto("rng"))?;
                    if x.iter().rev().skip(1).any(|&b| b != 0) {
                        let public = modp_pow(group, &modp_generator(group), &x)?;
                        return Ok(DhPrivate {
                            group,
                            key: Secret::Modp(ModpExponent(x)),
                            public,
                        });
                    }
                }
                Err(Error::Crypto("DH keygen"))
            }
        }
    }

    pub fn group(&self) -> Group {
        self.group
    }

    /// The KE payload data.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// g^ir: for ECP the x coordinate (RFC 5903 §7), for X25519 the 32-byte
    /// output, for MODP the modulus-length big-endian value (RFC 7296 §2.14).
    /// The peer's value is checked first (RFC 6989): ECP points must be on
    /// the curve and not the identity, MODP values in 1 < y < p - 1; an
    /// all-zero X25519 result is refused (RFC 8031 §2.3).
    pub fn agree(self, peer: &[u8]) -> Result<Vec<u8>, Error> {
        if peer.len() != self.group.public_len() {
            return Err(Error::BadKe);
        }
        let group = self.group;
        let secret = match self.key {
            Secret::Ring(k) => {
                let peer_bytes = match group {
                    Group::Curve25519 => peer.to_vec(),
                    _ => {
                        let mut v = Vec::with_capacity(peer.len() + 1);
                        v.push(0x04);
                        v.extend_from_slice(peer);
                        v
                    }
                };
                let alg = group.ring_alg().ok_or(Error::BadKe)?;
                let pk = agreement::UnparsedPublicKey::new(alg, peer_bytes);
                agreement::agree_ephemeral(k, &pk, |s| s.to_vec()).map_err(|_| Error::BadKe)?
            }
            Secret::P521(sk) => {
                let mut sec1 = Vec::with_capacity(peer.len() + 1);
                sec1.push(0x04);
                sec1.extend_from_slice(peer);
                // from_sec1_bytes checks that the point is on the curve.
                let pk = p521::PublicKey::from_sec1_bytes(&sec1).map_err(|_| Error::BadKe)?;
                let shared = p521::ecdh::diffie_hellman(sk, pk.as_affine());
                shared.raw_secret_bytes().to_vec()
            }
            Secret::Modp(x) => modp_pow(group, peer, &x.0)?,
        };
        if secret.iter().all(|&b| b == 0) {
            return Err(Error::BadKe);
        }
        Ok(secret)
    }
}

/// Constant-time equality of two byte strings (lengths are public).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

//! AES-CBC (RFC 3602) with HMAC-SHA2 integrity (RFC 4868): ESP's
//! encrypt-then-MAC transforms, for peers that do not offer AES-GCM.
//!
//! * KEYMAT for one direction is encryption key || integrity key
//!   (RFC 7296 §2.17: "the encryption key is taken from the first octets").
//! * The ICV is HMAC(K_a, SPI | Seq | IV | ciphertext [| Seq high with ESN])
//!   truncated to half the hash (RFC 4868 §2.1, RFC 4303 §2.2.1 / §3.3.2.1).
//! * The 16-byte IV must be unpredictable (RFC 3602 §2.4). It is E_K(seq):
//!   the SA's cipher applied to a nonce that never repeats under the key,
//!   the method of NIST SP 800-38A Appendix C. No random draw per packet.
//!
//! AES comes from the `aes` crate (AES-NI when the CPU has it, detected at
//! run time; ring has no raw AES-CBC), HMAC from ring (SHA-NI / AVX2 asm).

use aes::cipher::{
    block_padding::NoPadding, generic_array::GenericArray, BlockDecryptMut, BlockEncrypt,
    BlockEncryptMut, InnerIvInit, KeyInit,
};
use ring::hmac;

use crate::{Aead, Error, Result};

/// AES block and CBC IV length.
pub const CBC_IV_LEN: usize = 16;

/// HMAC-SHA2 integrity transforms (IKEv2 transform type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// AUTH_HMAC_SHA2_256_128 (12): 32-byte key, 16-byte ICV.
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13): 48-byte key, 24-byte ICV.
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14): 64-byte key, 32-byte ICV.
    HmacSha512_256,
}

impl Integ {
    /// Key length: the hash output length (RFC 4868 §2.1.1).
    pub const fn key_len(self) -> usize {
        match self {
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }
    /// ICV length: half the hash output (RFC 4868 §2.1.1).
    pub const fn icv_len(self) -> usize {
        self.key_len() / 2
    }
    /// IKEv2 transform type 3 identifier.
    pub const fn ikev2_transform_id(self) -> u16 {
        match self {
            Integ::HmacSha256_128 => 12,
            Integ::HmacSha384_192 => 13,
            Integ::HmacSha512_256 => 14,
        }
    }
    /// strongSwan's keyword (`sha256`, `sha384`, `sha512`).
    pub const fn name(self) -> &'static str {
        match self {
            Integ::HmacSha256_128 => "sha256",
            Integ::HmacSha384_192 => "sha384",
            Integ::HmacSha512_256 => "sha512",
        }
    }
    fn alg(self) -> hmac::Algorithm {
        match self {
            Integ::HmacSha256_128 => hmac::HMAC_SHA256,
            Integ::HmacSha384_192 => hmac::HMAC_SHA384,
            Integ::HmacSha512_256 => hmac::HMAC_SHA512,
        }
    }
}

#[derive(Clone)]
// One per SA, held inline: boxing would add a pointer chase to every packet.
#[allow(clippy::large_enum_variant)]
enum AesKey {
    Aes128(aes::Aes128),
    Aes256(aes::Aes256),
}

/// One direction's AES-CBC + HMAC keys.
pub struct CbcHmac {
    transform: Aead,
    integ: Integ,
    aes: AesKey,
    mac: hmac::Key,
}

impl core::fmt::Debug for CbcHmac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CbcHmac")
            .field("transform", &self.transform)
            .finish_non_exhaustive()
    }
}

/// Constant-time equality (lengths are public).
#[inline]
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl CbcHmac {
    /// Build from KEYMAT = encryption key || integrity key for this direction.
    pub fn new(transform: Aead, keymat: &[u8]) -> Result<Self> {
        let bad = || Error::KeyLength {
            aead: transform,
            expected: transform.keymat_len(),
            got: keymat.len(),
        };
        let Some(integ) = transform.integ() else {
            return Err(bad());
        };
        if keymat.len() != transform.keymat_len() {
            return Err(bad());
        }
        let (ek, ak) = keymat.split_at(transform.key_len());
        let aes = match ek.len() {
            16 => AesKey::Aes128(aes::Aes128::new_from_slice(ek).map_err(|_| bad())?),
            32 => AesKey::Aes256(aes::Aes256::new_from_slice(ek).map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        Ok(Self {
            transform,
            integ,
            aes,
            mac: hmac::Key::new(integ.alg(), ak),
        })
    }

    /// The transform.
    pub fn transform(&self) -> Aead {
        self.transform
    }

    /// The IV for the packet with 64-bit sequence number `seq`: E_K(seq | 0^64)
    /// (NIST SP 800-38A App. C; `seq` never repeats under one SA).
    #[inline]
    pub fn iv_for_seq(&self, seq: u64) -> [u8; CBC_IV_LEN] {
        let mut b = [0u8; CBC_IV_LEN];
        b[..8].copy_from_slice(&seq.to_be_bytes());
        let blk = GenericArray::from_mut_slice(&mut b);
        match &self.aes {
            AesKey::Aes128(k) => k.encrypt_block(blk),
            AesKey::Aes256(k) => k.encrypt_block(blk),
        }
        b
    }

    /// CBC-encrypt `buf` (a multiple of 16 bytes) in place.
    #[inline]
    pub fn encrypt(&self, iv: &[u8; CBC_IV_LEN], buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        let r = match &self.aes {
            AesKey::Aes128(k) => cbc::Encryptor::<aes::Aes128>::inner_iv_init(k.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .map(|_| ()),
            AesKey::Aes256(k) => cbc::Encryptor::<aes::Aes256>::inner_iv_init(k.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .map(|_| ()),
        };
        r.map_err(|_| Error::BadPadding)
    }

    /// CBC-decrypt `buf` (a multiple of 16 bytes) in place.
    #[inline]
    pub fn decrypt(&self, iv: &[u8; CBC_IV_LEN], buf: &mut [u8]) -> Result<()> {
        let r = match &self.aes {
            AesKey::Aes128(k) => cbc::Decryptor::<aes::Aes128>::inner_iv_init(k.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .map(|_| ()),
            AesKey::Aes256(k) => cbc::Decryptor::<aes::Aes256>::inner_iv_init(k.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .map(|_| ()),
        };
        r.map_err(|_| Error::BadPadding)
    }

    /// The truncated ICV over `data` followed by `extra` (the ESN high half,
    /// or nothing); writes it into `out[..icv_len]`.
    #[inline]
    pub fn icv(&self, data: &[u8], extra: &[u8], out: &mut [u8]) {
        let mut ctx = hmac::Context::with_key(&self.mac);
        ctx.update(data);
        ctx.update(extra);
        let tag = ctx.sign();
        let n = self.integ.icv_len();
        out[..n].copy_from_slice(&tag.as_ref()[..n]);
    }

    /// Check a received ICV in constant time.
    #[inline]
    pub fn verify(&self, data: &[u8], extra: &[u8], icv: &[u8]) -> Result<()> {
        let mut want = [0u8; crate::MAX_TAG_LEN];
        self.icv(data, extra, &mut want);
        if ct_eq(&want[..self.integ.icv_len()], icv) {
            Ok(())
        } else {
            Err(Error::BadTag)
        }
    }
}

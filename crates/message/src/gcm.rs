//! AES-GCM (NIST SP 800-38D) in pieces, for messages too large to hold in memory.
//! The AEAD crates (`aes-gcm`, ring, aws-lc-rs) seal and open one buffer at a time;
//! this is the same construction from its RustCrypto parts (`aes`, `ctr`, `ghash`), with
//! a 96-bit nonce, no additional data (CMS without authAttrs) and a 16-byte tag:
//!
//! H = E(K, 0¹²⁸), J0 = nonce ‖ 0³¹ ‖ 1, C = CTR32 from inc32(J0),
//! tag = GHASH_H(C ‖ pad ‖ len(A)₆₄ ‖ len(C)₆₄) ⊕ E(K, J0).
//!
//! Checked against the NIST test vectors and against `aes-gcm` for many lengths and
//! cuts (tests below and `tests/stream.rs`). The opener must not use plaintext before
//! [`GcmStream::verify`] has said yes: see [`crate::stream`].
use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;
use subtle::ConstantTimeEq;

use crate::Error;

/// GCM's own limit for one nonce: 2³² − 2 blocks of plaintext (about 64 GiB).
pub const MAX_LEN: u64 = ((1u64 << 32) - 2) * 16;

enum Ctr {
    A128(Box<ctr::Ctr32BE<aes::Aes128>>),
    A256(Box<ctr::Ctr32BE<aes::Aes256>>),
}

/// One AES-GCM computation, fed in pieces of any length.
pub struct GcmStream {
    ctr: Ctr,
    ghash: GHash,
    tag_mask: [u8; 16],
    pending: [u8; 16],
    pending_len: usize,
    len: u64,
}

impl GcmStream {
    /// `key` of 16 or 32 bytes, a 12-byte nonce.
    pub fn new(key: &[u8], nonce: &[u8; 12]) -> Result<Self, Error> {
        let mut h = aes::Block::default();
        let mut j0 = [0u8; 16];
        j0[..12].copy_from_slice(nonce);
        j0[15] = 1;
        let mut mask = aes::Block::from(j0);
        let mut iv = j0;
        iv[15] = 2;
        let ctr = match key.len() {
            16 => {
                let c = aes::Aes128::new_from_slice(key).map_err(|_| Error::KeyDecrypt)?;
                c.encrypt_block(&mut h);
                c.encrypt_block(&mut mask);
                Ctr::A128(Box::new(ctr::Ctr32BE::new(key.into(), (&iv).into())))
            }
            32 => {
                let c = aes::Aes256::new_from_slice(key).map_err(|_| Error::KeyDecrypt)?;
                c.encrypt_block(&mut h);
                c.encrypt_block(&mut mask);
                Ctr::A256(Box::new(ctr::Ctr32BE::new(key.into(), (&iv).into())))
            }
            _ => return Err(Error::KeyDecrypt),
        };
        Ok(GcmStream {
            ctr,
            ghash: GHash::new(&h),
            tag_mask: mask.into(),
            pending: [0; 16],
            pending_len: 0,
            len: 0,
        })
    }

    fn keystream(&mut self, buf: &mut [u8]) {
        match &mut self.ctr {
            Ctr::A128(c) => c.apply_keystream(buf),
            Ctr::A256(c) => c.apply_keystream(buf),
        }
    }

    fn absorb(&mut self, mut data: &[u8]) -> Result<(), Error> {
        self.len += data.len() as u64;
        if self.len > MAX_LEN {
            return Err(Error::Unsupported(
                "content longer than AES-GCM allows for one nonce (64 GiB)".into(),
            ));
        }
        if self.pending_len > 0 {
            let take = (16 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 16 {
                return Ok(());
            }
            self.ghash.update_padded(&self.pending);
            self.pending_len = 0;
        }
        let full = data.len() / 16 * 16;
        self.ghash.update_padded(&data[..full]);
        let rest = &data[full..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
        Ok(())
    }

    /// Encrypts `buf` in place (the next piece of plaintext).
    pub fn encrypt(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.keystream(buf);
        self.absorb(buf)
    }

    /// Decrypts `buf` in place (the next piece of ciphertext). The plaintext is not
    /// authentic until [`verify`](Self::verify) says so.
    pub fn decrypt(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.absorb(buf)?;
        self.keystream(buf);
        Ok(())
    }

    /// The tag over everything encrypted or decrypted so far.
    pub fn tag(mut self) -> [u8; 16] {
        if self.pending_len > 0 {
            let p = self.pending;
            self.ghash.update_padded(&p[..self.pending_len]);
        }
        let mut lens = [0u8; 16];
        lens[8..].copy_from_slice(&(self.len * 8).to_be_bytes());
        self.ghash.update_padded(&lens);
        let mut t: [u8; 16] = self.ghash.finalize().into();
        for (a, b) in t.iter_mut().zip(self.tag_mask) {
            *a ^= b;
        }
        t
    }

    /// Compares the tag in constant time.
    pub fn verify(self, tag: &[u8]) -> Result<(), Error> {
        let ours = self.tag();
        if tag.len() == 16 && bool::from(ours.ct_eq(tag)) {
            Ok(())
        } else {
            Err(Error::ContentModified)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // NIST GCM specification (McGrew & Viega), test cases 13–15 (AES-256, 96-bit IV, no AAD),
    // and test case 3 (AES-128).
    #[test]
    fn nist_vectors() {
        let cases = [
            ("0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "", "530f8afbc74536b9a963b4f1c4cb738b"),
            ("0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
             "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"),
            ("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
             "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
             "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
             "b094dac5d93471bdec1a502270e3cc6c"),
            ("feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
             "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
             "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
             "4d5c2af327cd64a62cf35abd2ba6fab4"),
        ];
        for (k, n, p, c, t) in cases {
            let (k, n, p, c, t) = (unhex(k), unhex(n), unhex(p), unhex(c), unhex(t));
            let nonce: [u8; 12] = n.try_into().unwrap();
            // In pieces of every size from 1 to 17 bytes.
            for piece in 1..=17 {
                let mut g = GcmStream::new(&k, &nonce).unwrap();
                let mut buf = p.clone();
                for ch in buf.chunks_mut(piece) {
                    g.encrypt(ch).unwrap();
                }
                assert_eq!(buf, c);
                assert_eq!(g.tag().to_vec(), t);
                let mut g = GcmStream::new(&k, &nonce).unwrap();
                for ch in buf.chunks_mut(piece) {
                    g.decrypt(ch).unwrap();
                }
                assert_eq!(buf, p);
                g.verify(&t).unwrap();
            }
            let mut g = GcmStream::new(&k, &nonce).unwrap();
            let mut buf = p.clone();
            g.encrypt(&mut buf).unwrap();
            let mut bad = t.clone();
            bad[0] ^= 1;
            assert_eq!(g.verify(&bad), Err(Error::ContentModified));
        }
    }
}

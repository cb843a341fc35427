//! The backup's keys and encryption (decided here, docs/backup.md):
//! - Argon2id turns the passphrase into a 32-byte secret (64 MiB, 3 passes, salt per
//!   archive); HKDF-SHA256 expands it into an HMAC-SHA256 key, which authenticates the
//!   manifest and proves the passphrase, and one AES-256-GCM key per part, bound to
//!   the part's name.
//! - A part is sealed in 64 KiB chunks (the STREAM construction): the nonce is the
//!   chunk's number with a last-chunk flag, so any size streams in constant memory, and
//!   a chunk that is altered, dropped, moved or cut off fails to open.

use std::io::{self, Read, Write};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::{hkdf, hmac};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const KEY_CHECK_LABEL: &[u8] = b"dodvpn-backup key check v1";

/// Argon2id parameters, kept in the manifest so a restore derives the same key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub alg: String,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    /// Hex.
    pub salt: String,
}

impl KdfParams {
    pub fn fresh() -> KdfParams {
        let mut salt = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        KdfParams {
            alg: "argon2id".into(),
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
            salt: hex::encode(salt),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the archive's key derivation parameters are not acceptable: {0}")]
    BadKdf(String),
    #[error("part {part}: chunk {chunk} does not open: the archive was altered or cut off")]
    Tampered { part: String, chunk: u64 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub struct Keys {
    mac: hmac::Key,
    prk: hkdf::Prk,
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Keys {
    pub fn derive(passphrase: &[u8], kdf: &KdfParams) -> Result<Keys, SealError> {
        // Bounds, so a crafted manifest cannot make a restore allocate gigabytes.
        if kdf.alg != "argon2id"
            || !(8 * 1024..=1024 * 1024).contains(&kdf.m_kib)
            || !(1..=16).contains(&kdf.t)
            || !(1..=8).contains(&kdf.p)
        {
            return Err(SealError::BadKdf(format!("{kdf:?}")));
        }
        let salt = hex::decode(&kdf.salt).map_err(|_| SealError::BadKdf("salt".into()))?;
        if salt.len() < 16 {
            return Err(SealError::BadKdf("salt shorter than 16 bytes".into()));
        }
        let params = argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
            .map_err(|e| SealError::BadKdf(e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut secret = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, &salt, secret.as_mut())
            .map_err(|e| SealError::BadKdf(e.to_string()))?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"dodvpn-backup v1").extract(&*secret);
        let mut mac_key = Zeroizing::new([0u8; 32]);
        prk.expand(&[b"manifest mac"], Len(32))
            .and_then(|okm| okm.fill(mac_key.as_mut()))
            .map_err(|_| SealError::BadKdf("hkdf".into()))?;
        Ok(Keys {
            mac: hmac::Key::new(hmac::HMAC_SHA256, &*mac_key),
            prk,
        })
    }

    /// A value only the right passphrase reproduces (stored in the manifest).
    pub fn key_check(&self) -> String {
        hex::encode(hmac::sign(&self.mac, KEY_CHECK_LABEL).as_ref())
    }

    pub fn passphrase_matches(&self, key_check_hex: &str) -> bool {
        hex::decode(key_check_hex)
            .map(|tag| hmac::verify(&self.mac, KEY_CHECK_LABEL, &tag).is_ok())
            .unwrap_or(false)
    }

    pub fn mac(&self, data: &[u8]) -> String {
        hex::encode(hmac::sign(&self.mac, data).as_ref())
    }

    pub fn mac_matches(&self, data: &[u8], tag_hex: &str) -> bool {
        hex::decode(tag_hex.trim())
            .map(|tag| hmac::verify(&self.mac, data, &tag).is_ok())
            .unwrap_or(false)
    }

    fn part_key(&self, name: &str) -> LessSafeKey {
        let mut k = Zeroizing::new([0u8; 32]);
        self.prk
            .expand(&[b"part ", name.as_bytes()], Len(32))
            .and_then(|okm| okm.fill(k.as_mut()))
            .expect("HKDF-SHA256 yields 32 bytes");
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &*k).expect("AES-256 key is 32 bytes"))
    }
}

/// Number of chunks of a part of `plain` bytes (an empty part is one empty chunk).
fn chunks(plain: u64) -> u64 {
    plain.div_ceil(CHUNK as u64).max(1)
}

/// Bytes a part of `plain` bytes takes once sealed.
pub fn sealed_len(plain: u64) -> u64 {
    plain + chunks(plain) * TAG as u64
}

fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = last as u8;
    Nonce::assume_unique_for_key(n)
}

/// Reads `plain_len` bytes from `inner` and yields them sealed.
pub struct SealReader<R> {
    inner: R,
    key: LessSafeKey,
    left: u64,
    index: u64,
    total_chunks: u64,
    out: Vec<u8>,
    pos: usize,
}

impl<R: Read> SealReader<R> {
    pub fn new(keys: &Keys, part: &str, inner: R, plain_len: u64) -> Self {
        SealReader {
            inner,
            key: keys.part_key(part),
            left: plain_len,
            index: 0,
            total_chunks: chunks(plain_len),
            out: Vec::with_capacity(CHUNK + TAG),
            pos: 0,
        }
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.index == self.total_chunks {
            return Ok(false);
        }
        let n = self.left.min(CHUNK as u64) as usize;
        self.out.clear();
        self.out.resize(n, 0);
        self.inner.read_exact(&mut self.out).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the part changed size while it was read: {e}"),
            )
        })?;
        self.left -= n as u64;
        let last = self.index + 1 == self.total_chunks;
        self.key
            .seal_in_place_append_tag(nonce(self.index, last), Aad::empty(), &mut self.out)
            .map_err(|_| io::Error::other("AES-GCM seal failed"))?;
        self.index += 1;
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for SealReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() && !self.next_chunk()? {
            return Ok(0);
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Open a sealed part of `plain_len` bytes from `sealed` into `out`; `progress` gets
/// the plaintext bytes done so far.
pub fn open_into(
    keys: &Keys,
    part: &str,
    mut sealed: impl Read,
    plain_len: u64,
    mut out: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<(), SealError> {
    let key = keys.part_key(part);
    let total = chunks(plain_len);
    let mut left = plain_len;
    let mut buf = Vec::with_capacity(CHUNK + TAG);
    for index in 0..total {
        let n = left.min(CHUNK as u64) as usize;
        buf.clear();
        buf.resize(n + TAG, 0);
        sealed
            .read_exact(&mut buf)
            .map_err(|_| SealError::Tampered {
                part: part.to_string(),
                chunk: index,
            })?;
        let plain = key
            .open_in_place(nonce(index, index + 1 == total), Aad::empty(), &mut buf)
            .map_err(|_| SealError::Tampered {
                part: part.to_string(),
                chunk: index,
            })?;
        out.write_all(plain)?;
        left -= n as u64;
        progress(plain_len - left);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pass: &str, kdf: &KdfParams) -> Keys {
        Keys::derive(pass.as_bytes(), kdf).unwrap()
    }

    fn small_kdf() -> KdfParams {
        KdfParams {
            m_kib: 8 * 1024,
            t: 1,
            ..KdfParams::fresh()
        }
    }

    fn seal(k: &Keys, name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        SealReader::new(k, name, data, data.len() as u64)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trip_at_chunk_edges() {
        let kdf = small_kdf();
        let k = keys("correct horse", &kdf);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = seal(&k, "p", &data);
            assert_eq!(sealed.len() as u64, sealed_len(len as u64), "len {len}");
            let mut back = Vec::new();
            open_into(&k, "p", &sealed[..], len as u64, &mut back, &mut |_| {}).unwrap();
            assert_eq!(back, data, "len {len}");
        }
    }

    #[test]
    fn altered_moved_cut_or_renamed_parts_do_not_open() {
        let kdf = small_kdf();
        let k = keys("correct horse", &kdf);
        let data = vec![42u8; 2 * CHUNK + 5];
        let sealed = seal(&k, "p", &data);
        let len = data.len() as u64;
        let fails = |bytes: &[u8], name: &str, plain: u64| {
            open_into(&k, name, bytes, plain, io::sink(), &mut |_| {}).is_err()
        };
        let mut flipped = sealed.clone();
        flipped[CHUNK + 20] ^= 1;
        assert!(fails(&flipped, "p", len), "a flipped bit");
        assert!(fails(&sealed, "q", len), "another part's name");
        assert!(fails(&sealed[..sealed.len() - 1], "p", len), "cut short");
        // The first two chunks alone, claimed to be the whole part: the last flag differs.
        assert!(
            fails(&sealed[..2 * (CHUNK + TAG)], "p", 2 * CHUNK as u64),
            "truncated at a chunk edge"
        );
        let mut swapped = sealed.clone();
        let (a, b) = swapped.split_at_mut(CHUNK + TAG);
        a.swap_with_slice(&mut b[..CHUNK + TAG]);
        assert!(fails(&swapped, "p", len), "chunks reordered");
        let other = keys("wrong horse", &kdf);
        assert!(open_into(&other, "p", &sealed[..], len, io::sink(), &mut |_| {}).is_err());
    }

    #[test]
    fn key_check_tells_the_passphrase() {
        let kdf = small_kdf();
        let k = keys("one", &kdf);
        assert!(k.passphrase_matches(&k.key_check()));
        assert!(!keys("two", &kdf).passphrase_matches(&k.key_check()));
        let m = k.mac(b"manifest");
        assert!(k.mac_matches(b"manifest", &m));
        assert!(!k.mac_matches(b"manifesT", &m));
    }

    #[test]
    fn crafted_kdf_parameters_are_refused() {
        let mut kdf = small_kdf();
        kdf.m_kib = 16 * 1024 * 1024;
        assert!(Keys::derive(b"x", &kdf).is_err());
        let mut kdf = small_kdf();
        kdf.salt = "00".into();
        assert!(Keys::derive(b"x", &kdf).is_err());
    }
}

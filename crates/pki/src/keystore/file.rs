//! File key store (R-PKI-3, embedded default). Each tier's PKCS#8 key is
//! sealed with AES-256-GCM under a key derived from the passphrase with
//! Argon2id (salt per store); files are 0600 in a 0700 directory.
//!
//! Layout of `dir`: `store.meta` (KDF parameters, salt, passphrase check),
//! `tier1.key.enc`, `tier2.key.enc`, `tier{1,2}.crt.pem`, `files/<name>`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use p256::elliptic_curve::sec1::ToEncodedPoint;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use zeroize::Zeroizing;

use super::{CertDir, KeyStore};
use crate::fsutil::{ensure_private_dir, read_optional, read_secret, write_atomic, write_new};
use crate::{der, PkiError, Tier};

const META_MAGIC: &[u8; 8] = b"DVKS0001";
const KEY_MAGIC: &[u8; 8] = b"DVKEY001";
/// Known plaintext sealed in `store.meta`: a wrong passphrase fails to open it.
const CHECK_PLAINTEXT: &[u8; 16] = b"dodvpn key store";
const SALT_LEN: usize = 16;
// Argon2id, OWASP's minimum recommendation: 19 MiB, 2 passes, 1 lane.
const ARGON2_M_KIB: u32 = 19 * 1024;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;

/// Key store in a directory, keys encrypted at rest under a passphrase.
pub struct FileKeyStore {
    dir: PathBuf,
    aead: LessSafeKey,
    rng: SystemRandom,
    certs: CertDir,
    /// Decrypted keys, kept so each IKE/TLS signature does not re-read the disk.
    keys: Mutex<HashMap<Tier, Arc<EcdsaKeyPair>>>,
    /// Serialises generate/replace so two callers cannot both create a key.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for FileKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<LessSafeKey, PkiError> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| PkiError::Crypto(format!("Argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| PkiError::Crypto(format!("Argon2: {e}")))?;
    let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref())
        .map_err(|_| PkiError::Crypto("AES key".into()))?;
    Ok(LessSafeKey::new(unbound))
}

fn tier_aad(tier: Tier) -> [u8; 9] {
    // Binds a sealed key to its tier: swapping the two key files fails to open.
    let mut aad = [0u8; 9];
    aad[..8].copy_from_slice(KEY_MAGIC);
    aad[8] = tier.number();
    aad
}

impl FileKeyStore {
    /// Open (or initialise, if `dir` has no store yet) a file key store.
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<FileKeyStore, PkiError> {
        ensure_private_dir(dir)?;
        let rng = SystemRandom::new();
        let meta_path = dir.join("store.meta");
        let aead = match read_optional(&meta_path)? {
            Some(meta) => {
                // Others who can write the directory could swap key or cert files.
                let mode = std::fs::metadata(dir)
                    .map_err(|e| PkiError::io(dir, e))?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o022 != 0 {
                    return Err(PkiError::InsecurePermissions {
                        path: dir.to_owned(),
                        mode,
                    });
                }
                Self::unlock(&meta_path, &meta, passphrase)?
            }
            None => {
                // A new store: the directory is ours, make it 0700 (created so if absent).
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| PkiError::io(dir, e))?;
                Self::initialise(&meta_path, passphrase, &rng)?
            }
        };
        Ok(FileKeyStore {
            dir: dir.to_owned(),
            aead,
            rng,
            certs: CertDir::new(dir)?,
            keys: Mutex::new(HashMap::new()),
            write_lock: Mutex::new(()),
        })
    }

    fn initialise(
        meta_path: &Path,
        passphrase: &[u8],
        rng: &SystemRandom,
    ) -> Result<LessSafeKey, PkiError> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill(&mut salt)
            .map_err(|_| PkiError::Crypto("random number generator failed".into()))?;
        let aead = derive_key(passphrase, &salt, ARGON2_M_KIB, ARGON2_T, ARGON2_P)?;
        let mut meta = META_MAGIC.to_vec();
        for v in [ARGON2_M_KIB, ARGON2_T, ARGON2_P] {
            meta.extend_from_slice(&v.to_be_bytes());
        }
        meta.extend_from_slice(&salt);
        meta.extend_from_slice(&seal(&aead, rng, META_MAGIC, CHECK_PLAINTEXT)?);
        write_new(meta_path, &meta, 0o600)?;
        Ok(aead)
    }

    fn unlock(meta_path: &Path, meta: &[u8], passphrase: &[u8]) -> Result<LessSafeKey, PkiError> {
        let bad = |reason: &str| PkiError::BadFile {
            path: meta_path.to_owned(),
            reason: reason.into(),
        };
        let header = 8 + 12 + SALT_LEN;
        if meta.len() < header || &meta[..8] != META_MAGIC {
            return Err(bad("not a dodvpn key store"));
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([meta[i], meta[i + 1], meta[i + 2], meta[i + 3]]);
        let (m, t, p) = (u32_at(8), u32_at(12), u32_at(16));
        // Refuse absurd parameters from a tampered file instead of allocating gigabytes.
        if !(8..=1024 * 1024).contains(&m) || !(1..=16).contains(&t) || !(1..=16).contains(&p) {
            return Err(bad("implausible key-derivation parameters"));
        }
        let aead = derive_key(passphrase, &meta[20..header], m, t, p)?;
        match open_sealed(&aead, META_MAGIC, &meta[header..]) {
            Some(pt) if pt.as_slice() == CHECK_PLAINTEXT => Ok(aead),
            _ => Err(PkiError::WrongPassphrase(
                meta_path.parent().unwrap_or(meta_path).to_owned(),
            )),
        }
    }

    fn key_path(&self, tier: Tier) -> PathBuf {
        self.dir.join(format!("tier{}.key.enc", tier.number()))
    }

    fn load_key(&self, tier: Tier) -> Result<Option<Arc<EcdsaKeyPair>>, PkiError> {
        if let Some(k) = self.lock_keys().get(&tier) {
            return Ok(Some(k.clone()));
        }
        let path = self.key_path(tier);
        if !path.exists() {
            return Ok(None);
        }
        let sealed = read_secret(&path)?;
        let bad = |reason: &str| PkiError::BadFile {
            path: path.clone(),
            reason: reason.into(),
        };
        if sealed.len() < 8 || &sealed[..8] != KEY_MAGIC {
            return Err(bad("not a dodvpn sealed key"));
        }
        let pkcs8 = open_sealed(&self.aead, &tier_aad(tier), &sealed[8..])
            .ok_or_else(|| bad("cannot decrypt (tampered, or a key of another tier or store)"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &self.rng)
            .map_err(|_| bad("decrypted data is not a P-256 key"))?;
        let key = Arc::new(key);
        self.lock_keys().insert(tier, key.clone());
        Ok(Some(key))
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<Tier, Arc<EcdsaKeyPair>>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn create_key(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.rng)
            .map_err(|_| PkiError::Crypto("key generation failed".into()))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &self.rng)
            .map_err(|_| PkiError::Crypto("key generation failed".into()))?;
        let mut file = KEY_MAGIC.to_vec();
        file.extend_from_slice(&seal(&self.aead, &self.rng, &tier_aad(tier), &pkcs8)?);
        write_atomic(&self.key_path(tier), &file, 0o600)?;
        let spki = der::p256_spki(key.public_key().as_ref());
        self.lock_keys().insert(tier, Arc::new(key));
        Ok(spki)
    }
}

const MAILBOX_MAGIC: &[u8; 8] = b"DVMBX001";

fn mailbox_aad(index: u32) -> Vec<u8> {
    format!("mailbox-{index}").into_bytes()
}

impl FileKeyStore {
    fn mailbox_path(&self, index: u32) -> PathBuf {
        self.dir.join(format!("mailbox-{index}.key.enc"))
    }

    fn mailbox_indices(&self) -> Result<Vec<u32>, PkiError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| PkiError::io(&self.dir, e))?;
        let mut v: Vec<u32> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.strip_prefix("mailbox-")?
                    .strip_suffix(".key.enc")?
                    .parse()
                    .ok()
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    fn load_mailbox(&self, index: u32) -> Result<p256::SecretKey, PkiError> {
        let path = self.mailbox_path(index);
        if !path.exists() {
            return Err(PkiError::InvalidInput(format!("no mailbox key {index}")));
        }
        let sealed = read_secret(&path)?;
        let bad = |reason: &str| PkiError::BadFile {
            path: path.clone(),
            reason: reason.into(),
        };
        if sealed.len() < 8 || &sealed[..8] != MAILBOX_MAGIC {
            return Err(bad("not a dodvpn sealed mailbox key"));
        }
        let raw = open_sealed(&self.aead, &mailbox_aad(index), &sealed[8..])
            .ok_or_else(|| bad("cannot decrypt (tampered, or a key of another store)"))?;
        p256::SecretKey::from_slice(&raw).map_err(|_| bad("decrypted data is not a P-256 key"))
    }
}

/// nonce || ciphertext || tag
fn seal(
    aead: &LessSafeKey,
    rng: &SystemRandom,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, PkiError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)
        .map_err(|_| PkiError::Crypto("random number generator failed".into()))?;
    let mut buf = plaintext.to_vec();
    aead.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| PkiError::Crypto("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

fn open_sealed(aead: &LessSafeKey, aad: &[u8], data: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if data.len() < NONCE_LEN {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&data[..NONCE_LEN]).ok()?;
    let mut buf = Zeroizing::new(data[NONCE_LEN..].to_vec());
    let len = aead
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

impl KeyStore for FileKeyStore {
    fn generate(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.key_path(tier).exists() {
            return Err(PkiError::KeyExists(tier));
        }
        self.create_key(tier)
    }

    fn replace(&self, tier: Tier) -> Result<Vec<u8>, PkiError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.certs.remove_cert(tier)?;
        self.lock_keys().remove(&tier);
        self.create_key(tier)
    }

    fn public_key(&self, tier: Tier) -> Result<Option<Vec<u8>>, PkiError> {
        Ok(self
            .load_key(tier)?
            .map(|k| der::p256_spki(k.public_key().as_ref())))
    }

    fn sign(&self, tier: Tier, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        let key = self.load_key(tier)?.ok_or(PkiError::NoKey(tier))?;
        key.sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| PkiError::Crypto("signing failed".into()))
    }

    fn put_cert(&self, tier: Tier, pem: &str) -> Result<(), PkiError> {
        self.certs.put_cert(tier, pem, self.public_key(tier)?)
    }

    fn cert(&self, tier: Tier) -> Result<Option<String>, PkiError> {
        self.certs.cert(tier)
    }

    fn put_file(&self, name: &str, data: &[u8]) -> Result<(), PkiError> {
        self.certs.put_file(name, data)
    }

    fn get_file(&self, name: &str) -> Result<Option<Vec<u8>>, PkiError> {
        self.certs.get_file(name)
    }

    fn mailbox_generate(&self) -> Result<(u32, Vec<u8>), PkiError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.mailbox_indices()?.last().copied().unwrap_or(0) + 1;
        // A uniformly random scalar: retry the (about 2^-32) values outside [1, n-1].
        let secret = loop {
            let mut raw = Zeroizing::new([0u8; 32]);
            self.rng
                .fill(raw.as_mut())
                .map_err(|_| PkiError::Crypto("random number generator failed".into()))?;
            if let Ok(k) = p256::SecretKey::from_slice(raw.as_ref()) {
                break k;
            }
        };
        let raw = Zeroizing::new(secret.to_bytes().to_vec());
        let mut file = MAILBOX_MAGIC.to_vec();
        file.extend_from_slice(&seal(&self.aead, &self.rng, &mailbox_aad(index), &raw)?);
        write_new(&self.mailbox_path(index), &file, 0o600)?;
        let point = secret.public_key().to_encoded_point(false);
        Ok((index, der::p256_spki(point.as_bytes())))
    }

    fn mailbox_keys(&self) -> Result<Vec<(u32, Vec<u8>)>, PkiError> {
        let mut out = Vec::new();
        for i in self.mailbox_indices()? {
            let k = self.load_mailbox(i)?;
            let point = k.public_key().to_encoded_point(false);
            out.push((i, der::p256_spki(point.as_bytes())));
        }
        Ok(out)
    }

    fn mailbox_ecdh(&self, index: u32, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        let k = self.load_mailbox(index)?;
        let peer = p256::PublicKey::from_sec1_bytes(peer)
            .map_err(|_| PkiError::InvalidInput("the peer's point is not on P-256".into()))?;
        let z = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
        Ok(Zeroizing::new(z.raw_secret_bytes().to_vec()))
    }

    fn describe(&self) -> String {
        format!(
            "file key store at {} (AES-256-GCM, Argon2id)",
            self.dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mailbox keys: ECDH agrees with the peer's side, a second key is added and the
    /// first kept (renewal), the file is sealed (0600, no plaintext scalar), a key
    /// file of another index or store does not open, a bad point is refused.
    #[test]
    fn mailbox_keys_are_kept_sealed_and_agree() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::open(dir.path(), b"pass").unwrap();
        assert!(store.mailbox_keys().unwrap().is_empty());
        let (i1, spki1) = store.mailbox_generate().unwrap();
        let (i2, spki2) = store.mailbox_generate().unwrap();
        assert_eq!((i1, i2), (1, 2));
        assert_ne!(spki1, spki2);
        assert_eq!(
            store.mailbox_keys().unwrap(),
            vec![(1, spki1.clone()), (2, spki2)]
        );
        // The peer's side of ECDH with key 1.
        let eph = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let ours = p256::PublicKey::from_sec1_bytes(&spki1[spki1.len() - 65..]).unwrap();
        let z_peer = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), ours.as_affine());
        let point = eph.public_key().to_encoded_point(false);
        let z = store.mailbox_ecdh(1, point.as_bytes()).unwrap();
        assert_eq!(z.as_slice(), z_peer.raw_secret_bytes().as_slice());
        assert_ne!(store.mailbox_ecdh(2, point.as_bytes()).unwrap(), z);
        assert!(store.mailbox_ecdh(1, &[4u8; 65]).is_err());
        assert!(store.mailbox_ecdh(9, point.as_bytes()).is_err());
        // Sealed at rest, 0600; reopened with the passphrase it still agrees.
        let f = store.mailbox_path(1);
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let scalar = store.load_mailbox(1).unwrap().to_bytes();
        let raw = std::fs::read(&f).unwrap();
        assert!(!raw.windows(8).any(|w| scalar.windows(8).any(|s| s == w)));
        drop(store);
        let again = FileKeyStore::open(dir.path(), b"pass").unwrap();
        assert_eq!(again.mailbox_ecdh(1, point.as_bytes()).unwrap(), z);
        // Key 1's file under key 2's name does not open (the index is authenticated).
        std::fs::copy(&f, again.mailbox_path(2)).unwrap();
        assert!(again.mailbox_ecdh(2, point.as_bytes()).is_err());
    }

    #[test]
    fn key_file_holds_no_window_of_the_pkcs8_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::open(dir.path(), b"pass").unwrap();
        store.generate(Tier::Device).unwrap();
        let raw = std::fs::read(store.key_path(Tier::Device)).unwrap();
        let pkcs8 = open_sealed(&store.aead, &tier_aad(Tier::Device), &raw[8..]).unwrap();
        assert!(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &store.rng).is_ok()
        );
        // No 8-byte run of the plaintext key appears in the file.
        for w in pkcs8.windows(8) {
            assert!(
                !raw.windows(8).any(|r| r == w),
                "plaintext key bytes found in the key file"
            );
        }
    }

    #[test]
    fn swapped_tier_files_do_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::open(dir.path(), b"pass").unwrap();
        store.generate(Tier::Device).unwrap();
        std::fs::copy(store.key_path(Tier::Device), store.key_path(Tier::Service)).unwrap();
        let fresh = FileKeyStore::open(dir.path(), b"pass").unwrap();
        assert!(matches!(
            fresh.public_key(Tier::Service),
            Err(PkiError::BadFile { .. })
        ));
    }
}

//! ANSI X9.63 KDF (SEC 1 §3.6.1), the KDF of RFC 5753's dhSinglePass schemes.
use sha2::Digest;
use zeroize::Zeroizing;

use crate::Error;

/// The hash a dhSinglePass-stdDH-*kdf scheme names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdfHash {
    /// What `openssl cms -encrypt` uses unless given `-keyopt ecdh_kdf_md:…`.
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// K = H(Z || counter || SharedInfo) for counter = 1, 2, … until `out_len` bytes.
pub fn x963_kdf(
    hash: KdfHash,
    z: &[u8],
    shared_info: &[u8],
    out_len: usize,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    fn run<D: Digest>(z: &[u8], info: &[u8], out_len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
        let hlen = <D as Digest>::output_size();
        // SEC 1: keydatalen < hashlen * (2^32 - 1); we never ask for more than 64 bytes anyway.
        if out_len > 1024 || out_len == 0 {
            return Err(Error::Unsupported(format!("KDF output length {out_len}")));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(out_len + hlen));
        let mut counter: u32 = 1;
        while out.len() < out_len {
            let mut h = D::new();
            h.update(z);
            h.update(counter.to_be_bytes());
            h.update(info);
            out.extend_from_slice(&h.finalize());
            counter += 1;
        }
        out.truncate(out_len);
        Ok(out)
    }
    match hash {
        KdfHash::Sha1 => run::<sha1::Sha1>(z, shared_info, out_len),
        KdfHash::Sha224 => run::<sha2::Sha224>(z, shared_info, out_len),
        KdfHash::Sha256 => run::<sha2::Sha256>(z, shared_info, out_len),
        KdfHash::Sha384 => run::<sha2::Sha384>(z, shared_info, out_len),
        KdfHash::Sha512 => run::<sha2::Sha512>(z, shared_info, out_len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // NIST CAVS 12.0 "ansx963_2001.rsp" vectors (also cross-checked with `openssl kdf X963KDF`).
    #[test]
    fn x963_sha1_cavs_count0() {
        let z = hex::decode("1c7d7b5f0597b03d06a018466ed1a93e30ed4b04dc64ccdd").unwrap();
        let k = x963_kdf(KdfHash::Sha1, &z, &[], 16).unwrap();
        assert_eq!(hex::encode(&*k), "bf71dffd8f4d99223936beb46fee8ccc");
    }

    #[test]
    fn x963_sha256_cavs_no_shared_info() {
        let z = hex::decode("96c05619d56c328ab95fe84b18264b08725b85e33fd34f08").unwrap();
        let k = x963_kdf(KdfHash::Sha256, &z, &[], 16).unwrap();
        assert_eq!(hex::encode(&*k), "443024c3dae66b95e6f5670601558f71");
    }

    #[test]
    fn x963_sha256_cavs_with_shared_info_1024_bits() {
        let z = hex::decode("22518b10e70f2a3f243810ae3254139efbee04aa57c7af7d").unwrap();
        let info = hex::decode("75eef81aa3041e33b80971203d2c0c52").unwrap();
        let k = x963_kdf(KdfHash::Sha256, &z, &info, 128).unwrap();
        assert_eq!(
            hex::encode(&*k),
            "c498af77161cc59f2962b9a713e2b215152d139766ce34a776df11866a69bf2e\
             52a13d9c7c6fc878c50c5ea0bc7b00e0da2447cfd874f6cf92f30d0097111485\
             500c90c3af8b487872d04685d14c8d1dc8d7fa08beb0ce0ababc11f0bd496269\
             142d43525a78e5bc79a17f59676a5706dc54d54d4d1f0bd7e386128ec26afc21"
        );
    }

    #[test]
    fn x963_refuses_zero_and_huge_lengths() {
        assert!(x963_kdf(KdfHash::Sha256, b"z", &[], 0).is_err());
        assert!(x963_kdf(KdfHash::Sha256, b"z", &[], 4096).is_err());
    }
}

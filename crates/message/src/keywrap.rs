//! AES key wrap (RFC 3394) as CMS names it (RFC 3565): the `aes-kw` crate does the
//! work; this module maps the algorithm identifiers and keeps the errors ours.
use der::asn1::ObjectIdentifier;
use zeroize::Zeroizing;

use crate::oids::*;
use crate::Error;

/// The KEK length a wrap algorithm wants.
pub fn kek_len(wrap: &ObjectIdentifier) -> Result<usize, Error> {
    Ok(match *wrap {
        AES256_WRAP => 32,
        AES192_WRAP => 24,
        AES128_WRAP => 16,
        other => {
            return Err(Error::UnknownOid {
                what: "key wrap algorithm",
                oid: other.to_string(),
            })
        }
    })
}

pub fn wrap(wrap: &ObjectIdentifier, kek: &[u8], key: &[u8]) -> Result<Vec<u8>, Error> {
    let bad = |_| Error::Unsupported("key wrap input".into());
    match *wrap {
        AES256_WRAP => aes_kw::KekAes256::try_from(kek)
            .map_err(bad)?
            .wrap_vec(key)
            .map_err(bad),
        AES192_WRAP => aes_kw::KekAes192::try_from(kek)
            .map_err(bad)?
            .wrap_vec(key)
            .map_err(bad),
        AES128_WRAP => aes_kw::KekAes128::try_from(kek)
            .map_err(bad)?
            .wrap_vec(key)
            .map_err(bad),
        other => Err(Error::UnknownOid {
            what: "key wrap algorithm",
            oid: other.to_string(),
        }),
    }
}

/// Unwraps and checks the RFC 3394 integrity value (a wrong KEK or a modified key fails).
pub fn unwrap(
    wrap: &ObjectIdentifier,
    kek: &[u8],
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let out = match *wrap {
        AES256_WRAP => aes_kw::KekAes256::try_from(kek)
            .map_err(|_| Error::KeyDecrypt)?
            .unwrap_vec(wrapped),
        AES192_WRAP => aes_kw::KekAes192::try_from(kek)
            .map_err(|_| Error::KeyDecrypt)?
            .unwrap_vec(wrapped),
        AES128_WRAP => aes_kw::KekAes128::try_from(kek)
            .map_err(|_| Error::KeyDecrypt)?
            .unwrap_vec(wrapped),
        other => {
            return Err(Error::UnknownOid {
                what: "key wrap algorithm",
                oid: other.to_string(),
            })
        }
    };
    out.map(Zeroizing::new).map_err(|_| Error::KeyDecrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    // RFC 3394 §4.1, §4.3, §4.6.
    #[test]
    fn rfc3394_4_1_128_key_with_128_kek() {
        let kek = h("000102030405060708090A0B0C0D0E0F");
        let key = h("00112233445566778899AABBCCDDEEFF");
        let want = h("1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5");
        assert_eq!(wrap(&AES128_WRAP, &kek, &key).unwrap(), want);
        assert_eq!(*unwrap(&AES128_WRAP, &kek, &want).unwrap(), key);
    }

    #[test]
    fn rfc3394_4_3_128_key_with_256_kek() {
        let kek = h("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let key = h("00112233445566778899AABBCCDDEEFF");
        let want = h("64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7");
        assert_eq!(wrap(&AES256_WRAP, &kek, &key).unwrap(), want);
        assert_eq!(*unwrap(&AES256_WRAP, &kek, &want).unwrap(), key);
    }

    #[test]
    fn rfc3394_4_6_256_key_with_256_kek() {
        let kek = h("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let key = h("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
        let want = h(
            "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21",
        );
        assert_eq!(wrap(&AES256_WRAP, &kek, &key).unwrap(), want);
        assert_eq!(*unwrap(&AES256_WRAP, &kek, &want).unwrap(), key);
    }

    #[test]
    fn unwrap_refuses_a_modified_key_or_a_wrong_kek() {
        let kek = h("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let mut w = h(
            "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21",
        );
        let mut other = kek.clone();
        other[0] ^= 1;
        assert_eq!(unwrap(&AES256_WRAP, &other, &w), Err(Error::KeyDecrypt));
        w[10] ^= 0x40;
        assert_eq!(unwrap(&AES256_WRAP, &kek, &w), Err(Error::KeyDecrypt));
        assert_eq!(unwrap(&AES256_WRAP, &kek, &w[..7]), Err(Error::KeyDecrypt));
    }
}

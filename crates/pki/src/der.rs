//! Tiny DER helpers for the few structures rcgen / x509-parser do not build
//! for us: the certificatePolicies extension, ECDSA signature values and the
//! P-256 SubjectPublicKeyInfo of a key that lives in a token.

/// Append a DER length.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Tag-length-value.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// DER OBJECT IDENTIFIER (with tag) from its arcs.
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    if arcs.len() >= 2 {
        encode_base128(&mut content, arcs[0] * 40 + arcs[1]);
        for arc in &arcs[2..] {
            encode_base128(&mut content, *arc);
        }
    }
    tlv(0x06, &content)
}

fn encode_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    let last = tmp.len() - 1;
    for (j, b) in tmp.iter().enumerate().skip(i) {
        out.push(if j == last { *b } else { *b | 0x80 });
    }
}

/// Content of a certificatePolicies extension holding one policy OID
/// (`SEQUENCE OF PolicyInformation`, no qualifiers).
pub(crate) fn certificate_policies(policy: &[u64]) -> Vec<u8> {
    tlv(0x30, &tlv(0x30, &oid(policy)))
}

/// Unsigned big-endian integer as DER INTEGER.
fn uint(bytes: &[u8]) -> Vec<u8> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut v = bytes[skip..].to_vec();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

/// Convert a PKCS#11 ECDSA signature (r || s, fixed width) into the
/// `Ecdsa-Sig-Value` DER that X.509, TLS and IKE (RFC 7427) expect.
pub(crate) fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 == 1 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut seq = uint(r);
    seq.extend_from_slice(&uint(s));
    Some(tlv(0x30, &seq))
}

/// DER `ECParameters` naming prime256v1, as PKCS#11 CKA_EC_PARAMS wants it.
pub(crate) const P256_EC_PARAMS: &[u8] =
    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// SubjectPublicKeyInfo for an uncompressed P-256 point (65 bytes).
pub(crate) fn p256_spki(point: &[u8]) -> Vec<u8> {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }
    let mut alg = oid(&[1, 2, 840, 10045, 2, 1]);
    alg.extend_from_slice(P256_EC_PARAMS);
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    let mut body = tlv(0x30, &alg);
    body.extend_from_slice(&tlv(0x03, &bits));
    tlv(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_encoding_matches_known_value() {
        // 1.2.840.10045.2.1 = 06 07 2a 86 48 ce 3d 02 01
        assert_eq!(
            oid(&[1, 2, 840, 10045, 2, 1]),
            [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]
        );
    }

    #[test]
    fn ecdsa_der_pads_high_bit_and_strips_zeros() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a 0x00 pad
        raw[32] = 0x00;
        raw[33] = 0x01; // s has a leading zero to strip
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..4], &[0x30, 35 + 33, 0x02, 33]);
        assert_eq!(der[4], 0x00);
        assert_eq!(der[5], 0x80);
        assert_eq!(&der[4 + 33..4 + 33 + 2], &[0x02, 31]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }
}

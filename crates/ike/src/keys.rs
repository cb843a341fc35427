//! Key schedule: SKEYSEED and the seven IKE SA keys (RFC 7296 §2.14), child
//! SA KEYMAT (§2.17) and the SKEYSEED of a rekeyed IKE SA (§2.18).

use crate::crypto::{IkeCipher, Prf};
use crate::Error;

/// The keys of one IKE SA. `*_i` protect/authenticate what the original
/// initiator sends.
#[derive(Clone, PartialEq, Eq)]
pub struct IkeKeys {
    pub sk_d: Vec<u8>,
    pub sk_ai: Vec<u8>,
    pub sk_ar: Vec<u8>,
    pub sk_ei: Vec<u8>,
    pub sk_er: Vec<u8>,
    pub sk_pi: Vec<u8>,
    pub sk_pr: Vec<u8>,
}

impl core::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IkeKeys { .. }")
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir) (§2.14).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(ni.len() + nr.len());
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    prf.prf(&key, g_ir)
}

/// SKEYSEED of a new IKE SA from a rekey: prf(SK_d (old), g^ir (new) | Ni | Nr)
/// (§2.18), with the old SA's PRF.
pub fn rekey_skeyseed(old_prf: Prf, old_sk_d: &[u8], g_ir: &[u8], ni: &[u8], nr: &[u8]) -> Vec<u8> {
    old_prf.prf_parts(old_sk_d, &[g_ir, ni, nr])
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
///   = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr) (§2.14).
pub fn derive_ike_keys(
    prf: Prf,
    cipher: IkeCipher,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> Result<IkeKeys, Error> {
    let mut seed = Vec::with_capacity(ni.len() + nr.len() + 16);
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    seed.extend_from_slice(&spi_i.to_be_bytes());
    seed.extend_from_slice(&spi_r.to_be_bytes());
    let (d, a, e, p) = (
        prf.len(),
        cipher.integ_key_len(),
        cipher.enc_key_len(),
        prf.len(),
    );
    let km = prf.prf_plus(skeyseed, &seed, d + 2 * a + 2 * e + 2 * p)?;
    let mut off = 0;
    let mut take = |n: usize| {
        let v = km[off..off + n].to_vec();
        off += n;
        v
    };
    Ok(IkeKeys {
        sk_d: take(d),
        sk_ai: take(a),
        sk_ar: take(a),
        sk_ei: take(e),
        sk_er: take(e),
        sk_pi: take(p),
        sk_pr: take(p),
    })
}

/// Child SA KEYMAT (§2.17): prf+(SK_d, [g^ir (new) |] Ni | Nr). Returns
/// (initiator→responder, responder→initiator) key material of `len` bytes
/// each, where "initiator" is the initiator of the exchange that created
/// the child SA.
pub fn child_keymat(
    prf: Prf,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    len: usize,
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let mut seed = Vec::new();
    if let Some(g) = g_ir {
        seed.extend_from_slice(g);
    }
    seed.extend_from_slice(ni);
    seed.extend_from_slice(nr);
    let km = prf.prf_plus(sk_d, &seed, 2 * len)?;
    Ok((km[..len].to_vec(), km[len..].to_vec()))
}

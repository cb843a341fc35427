//! Large messages (attachments up to 2 GiB and more) in constant memory: the same CMS as
//! [`crate::sign_and_seal`] writes — SignedData (id-data, attached) inside an
//! AuthEnvelopedData with AES-256-GCM, all DER with definite lengths, so that
//! `openssl cms -decrypt` and `-verify` open it — written and read in pieces of
//! [`CHUNK`] bytes.
//!
//! Writing takes two passes over the content: the first computes the message digest
//! (the signature is in the signerInfos, after the content, but its length decides the
//! lengths before it), the second encrypts as it reads. With every length known up front
//! the whole output size is known before the first byte goes out (a `Content-Length`).
//! If the content changes between the passes, the second digest differs and the writer
//! fails before it writes the tag: the receiver gets a message that does not
//! authenticate, never a wrong one.
//!
//! Reading parses the DER as it arrives, decrypts the ciphertext piece by piece, parses
//! the SignedData inside it as it is decrypted and writes only the signed content to the
//! caller's writer, hashing it on the way. The plaintext is **not authentic** until
//! [`open_stream`] returns `Ok`: the caller writes it to a temporary file and renames it
//! only then (the CLI does), and removes it on an error.
//!
//! Only definite lengths are read (what DER, our writer and `openssl cms` without
//! `-stream` write); BER indefinite lengths and authenticated attributes (the GCM
//! additional data, which CMS puts after the ciphertext) are refused by name.
use std::io::{self, Read, Write};

use cms::content_info::CmsVersion;
use cms::enveloped_data::RecipientInfos;
use cms::signed_data::SignedData;
use der::asn1::{ObjectIdentifier, SetOfVec};
use der::{Decode, Encode};
use rand_core::CryptoRngCore;
use spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use crate::asn1::GcmParameters;
use crate::gcm::GcmStream;
use crate::keys::{HashAlg, MessageSigner, RecipientKey};
use crate::oids::*;
use crate::seal::{gcm_alg, recipient_infos, Recipient, SealOptions};
use crate::sign::VerifyOptions;
use crate::sign::{signed_data_parts, signer_info, verify_signers, SignatureReport, Signed};
use crate::{der_err, Error};

/// The piece size of reading, encrypting and writing.
pub const CHUNK: usize = 64 * 1024;
/// The most bytes of structure (recipient infos, certificates, signer infos) held in
/// memory while a message streams by; the content itself has no limit but GCM's.
pub const MAX_HEADER: u64 = 1024 * 1024;

fn io_err(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::Malformed("the message ends early (truncated)".into())
    } else {
        Error::Malformed(format!("reading the message: {e}"))
    }
}

/// A DER tag and definite length.
pub(crate) fn header(tag: u8, len: u64) -> Vec<u8> {
    let mut v = vec![tag];
    if len < 0x80 {
        v.push(len as u8);
    } else {
        let b = len.to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        v.push(0x80 | (8 - skip) as u8);
        v.extend_from_slice(&b[skip..]);
    }
    v
}

fn tlv_len(tag: u8, len: u64) -> u64 {
    header(tag, len).len() as u64 + len
}

/// The digest a signer needs of a content read from `r`, and the content's length.
pub fn digest_reader(alg: HashAlg, mut r: impl Read) -> io::Result<(Vec<u8>, u64)> {
    let mut h = alg.hasher();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().to_vec(), n))
}

enum Phase {
    Head,
    InnerHead,
    Content,
    InnerTail,
    Mac,
    Done,
}

/// A message being written: yields the DER bytes in pieces ([`Iterator`]) or as a
/// [`Read`]. [`total_len`](Self::total_len) is exact before the first byte.
pub struct SealStream<R: Read> {
    content: R,
    content_len: u64,
    read: u64,
    hasher: Box<dyn sha2::digest::DynDigest + Send>,
    digest: Vec<u8>,
    gcm: Option<GcmStream>,
    head: Vec<u8>,
    inner_head: Vec<u8>,
    inner_tail: Vec<u8>,
    phase: Phase,
    total_len: u64,
    buf: Vec<u8>,
    pos: usize,
}

#[allow(clippy::too_many_arguments)]
/// Signs and encrypts a content of `content_len` bytes whose digest (of
/// `signer.digest_alg()`, from [`digest_reader`]) is `digest`; `content` reads it again.
pub fn seal_stream<R: Read>(
    digest: &[u8],
    content_len: u64,
    content: R,
    signer: &dyn MessageSigner,
    signing_time_unix: u64,
    recipients: &[Recipient],
    opts: &SealOptions,
    rng: &mut impl CryptoRngCore,
) -> Result<SealStream<R>, Error> {
    let si = signer_info(digest, signer, signing_time_unix)?;
    let (digests, certs, signer_infos) = signed_data_parts(si, signer)?;
    let oid_data = ID_DATA.to_der().map_err(der_err("oid"))?;
    let oid_sd = ID_SIGNED_DATA.to_der().map_err(der_err("oid"))?;
    let oid_aed = ID_AUTH_ENVELOPED_DATA.to_der().map_err(der_err("oid"))?;
    let version1 = [0x02, 0x01, 0x01];
    let version0 = [0x02, 0x01, 0x00];

    // The SignedData ContentInfo, lengths from the inside out.
    let os = tlv_len(0x04, content_len);
    let e0 = tlv_len(0xa0, os);
    let eci_inner = oid_data.len() as u64 + e0;
    let sd_inner = version1.len() as u64
        + digests.len() as u64
        + tlv_len(0x30, eci_inner)
        + certs.len() as u64
        + signer_infos.len() as u64;
    let sd = tlv_len(0x30, sd_inner);
    let ci_inner = oid_sd.len() as u64 + tlv_len(0xa0, sd);
    let mut inner_head = header(0x30, ci_inner);
    inner_head.extend_from_slice(&oid_sd);
    inner_head.extend(header(0xa0, sd));
    inner_head.extend(header(0x30, sd_inner));
    inner_head.extend_from_slice(&version1);
    inner_head.extend_from_slice(&digests);
    inner_head.extend(header(0x30, eci_inner));
    inner_head.extend_from_slice(&oid_data);
    inner_head.extend(header(0xa0, os));
    inner_head.extend(header(0x04, content_len));
    let mut inner_tail = certs;
    inner_tail.extend_from_slice(&signer_infos);
    let plain_len = tlv_len(0x30, ci_inner);
    if plain_len > crate::gcm::MAX_LEN {
        return Err(Error::Unsupported(
            "content longer than AES-GCM allows for one nonce (64 GiB)".into(),
        ));
    }

    // The AuthEnvelopedData around it.
    let mut cek = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(cek.as_mut());
    let infos = recipient_infos(cek.as_ref(), recipients, opts, rng)?;
    let infos = RecipientInfos(SetOfVec::try_from(infos).map_err(der_err("recipient infos"))?)
        .to_der()
        .map_err(der_err("recipient infos"))?;
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let alg = gcm_alg(&nonce)?.to_der().map_err(der_err("algorithm"))?;
    let enc_inner = oid_data.len() as u64 + alg.len() as u64 + tlv_len(0x80, plain_len);
    let mac = 18u64;
    let aed_inner = version0.len() as u64 + infos.len() as u64 + tlv_len(0x30, enc_inner) + mac;
    let aed = tlv_len(0x30, aed_inner);
    let outer_inner = oid_aed.len() as u64 + tlv_len(0xa0, aed);
    let mut head = header(0x30, outer_inner);
    head.extend_from_slice(&oid_aed);
    head.extend(header(0xa0, aed));
    head.extend(header(0x30, aed_inner));
    head.extend_from_slice(&version0);
    head.extend_from_slice(&infos);
    head.extend(header(0x30, enc_inner));
    head.extend_from_slice(&oid_data);
    head.extend_from_slice(&alg);
    head.extend(header(0x80, plain_len));
    let total_len = tlv_len(0x30, outer_inner);
    // The version constants above are CmsVersion's encodings; keep them honest.
    debug_assert_eq!(CmsVersion::V1.to_der().ok().as_deref(), Some(&version1[..]));

    Ok(SealStream {
        content,
        content_len,
        read: 0,
        hasher: signer.digest_alg().hasher(),
        digest: digest.to_vec(),
        gcm: Some(GcmStream::new(cek.as_ref(), &nonce)?),
        head,
        inner_head,
        inner_tail,
        phase: Phase::Head,
        total_len,
        buf: Vec::new(),
        pos: 0,
    })
}

impl<R: Read> SealStream<R> {
    /// The exact number of bytes the message will have.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    fn gcm(&mut self) -> io::Result<&mut GcmStream> {
        self.gcm
            .as_mut()
            .ok_or_else(|| io::Error::other("the message is already finished"))
    }

    fn encrypt(&mut self, mut v: Vec<u8>) -> io::Result<Vec<u8>> {
        self.gcm()?
            .encrypt(&mut v)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(v)
    }

    /// The next piece of the message, `None` at the end.
    pub fn next_piece(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            match self.phase {
                Phase::Head => {
                    self.phase = Phase::InnerHead;
                    return Ok(Some(std::mem::take(&mut self.head)));
                }
                Phase::InnerHead => {
                    self.phase = Phase::Content;
                    let h = std::mem::take(&mut self.inner_head);
                    return self.encrypt(h).map(Some);
                }
                Phase::Content => {
                    let want = (self.content_len - self.read).min(CHUNK as u64) as usize;
                    if want == 0 {
                        // The content must end where it ended in the first pass.
                        let mut one = [0u8; 1];
                        if self.content.read(&mut one)? != 0 {
                            return Err(io::Error::other(
                                "the file grew while it was being sent / 送信中にファイルが変更されました",
                            ));
                        }
                        let d = self.hasher.finalize_reset().to_vec();
                        if d != self.digest {
                            return Err(io::Error::other(
                                "the file changed while it was being sent / 送信中にファイルが変更されました",
                            ));
                        }
                        self.phase = Phase::InnerTail;
                        continue;
                    }
                    let mut v = vec![0u8; want];
                    let mut got = 0;
                    while got < want {
                        let k = self.content.read(&mut v[got..])?;
                        if k == 0 {
                            return Err(io::Error::other(
                                "the file shrank while it was being sent / 送信中にファイルが変更されました",
                            ));
                        }
                        got += k;
                    }
                    self.hasher.update(&v);
                    self.read += want as u64;
                    return self.encrypt(v).map(Some);
                }
                Phase::InnerTail => {
                    self.phase = Phase::Mac;
                    let t = std::mem::take(&mut self.inner_tail);
                    return self.encrypt(t).map(Some);
                }
                Phase::Mac => {
                    self.phase = Phase::Done;
                    let tag = self
                        .gcm
                        .take()
                        .ok_or_else(|| io::Error::other("no cipher"))?
                        .tag();
                    let mut v = vec![0x04, 0x10];
                    v.extend_from_slice(&tag);
                    return Ok(Some(v));
                }
                Phase::Done => return Ok(None),
            }
        }
    }
}

impl<R: Read> Iterator for SealStream<R> {
    type Item = io::Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_piece().transpose()
    }
}

impl<R: Read> Read for SealStream<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.next_piece()? {
                Some(p) => {
                    self.buf = p;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = (self.buf.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A DER reader over a stream that counts what it consumed.
struct Der<R> {
    r: R,
    pos: u64,
}

impl<R: Read> Der<R> {
    fn byte(&mut self) -> Result<u8, Error> {
        let mut b = [0u8; 1];
        self.r.read_exact(&mut b).map_err(io_err)?;
        self.pos += 1;
        Ok(b[0])
    }

    /// A tag and its definite length; the header's bytes too.
    fn header(&mut self) -> Result<(u8, u64, Vec<u8>), Error> {
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            return Err(Error::Malformed(
                "high tag numbers are not used in CMS".into(),
            ));
        }
        let first = self.byte()?;
        let mut raw = vec![tag, first];
        let len = if first < 0x80 {
            first as u64
        } else if first == 0x80 {
            return Err(Error::Unsupported(
                "BER indefinite lengths in a streamed message (openssl cms -stream); write it without -stream".into(),
            ));
        } else {
            let n = (first & 0x7f) as usize;
            if n > 8 {
                return Err(Error::Malformed("length of more than 8 bytes".into()));
            }
            let mut l = 0u64;
            for _ in 0..n {
                let b = self.byte()?;
                raw.push(b);
                l = (l << 8) | b as u64;
            }
            l
        };
        Ok((tag, len, raw))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<u64, Error> {
        let (t, len, _) = self.header()?;
        if t != tag {
            return Err(Error::Malformed(format!(
                "{what}: expected tag {tag:#04x}, found {t:#04x}"
            )));
        }
        Ok(len)
    }

    fn value(&mut self, len: u64) -> Result<Vec<u8>, Error> {
        if len > MAX_HEADER {
            return Err(Error::Malformed(format!(
                "a structure of {len} bytes where at most {MAX_HEADER} are allowed"
            )));
        }
        let mut v = vec![0u8; len as usize];
        self.r.read_exact(&mut v).map_err(io_err)?;
        self.pos += len;
        Ok(v)
    }

    /// A whole small TLV (header and value), as DER for `der` to decode.
    fn tlv(&mut self) -> Result<(u8, Vec<u8>), Error> {
        let (tag, len, mut raw) = self.header()?;
        raw.extend(self.value(len)?);
        Ok((tag, raw))
    }

    fn oid(&mut self, what: &str) -> Result<ObjectIdentifier, Error> {
        let (tag, raw) = self.tlv()?;
        if tag != 0x06 {
            return Err(Error::Malformed(format!("{what}: not an OID")));
        }
        ObjectIdentifier::from_der(&raw).map_err(der_err("OID"))
    }
}

/// Decrypts `len` bytes of ciphertext from the outer reader as they are read.
struct Decrypting<'a, R> {
    outer: &'a mut Der<R>,
    left: u64,
    gcm: &'a mut GcmStream,
}

impl<R: Read> Read for Decrypting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.outer.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.outer.pos += n as u64;
        self.left -= n as u64;
        self.gcm
            .decrypt(&mut buf[..n])
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(n)
    }
}

/// What [`open_stream`] found: the signature (`None`: unsigned) and the content's size.
#[derive(Debug)]
pub struct StreamOpened {
    pub signature: Option<SignatureReport>,
    pub content_len: u64,
}

fn copy_exact(
    r: &mut impl Read,
    mut n: u64,
    out: &mut dyn Write,
    hashers: &mut [(HashAlg, Box<dyn sha2::digest::DynDigest + Send>)],
) -> Result<(), Error> {
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    while n > 0 {
        let want = n.min(CHUNK as u64) as usize;
        r.read_exact(&mut buf[..want]).map_err(io_err)?;
        for (_, h) in hashers.iter_mut() {
            h.update(&buf[..want]);
        }
        out.write_all(&buf[..want])
            .map_err(|e| Error::Malformed(format!("writing the content: {e}")))?;
        n -= want as u64;
    }
    Ok(())
}

/// The SignedData inside the envelope, parsed as it is decrypted: the content goes to
/// `out` (hashed on the way), the rest is kept to check the signature.
type Digests = Vec<(HashAlg, Vec<u8>)>;

fn inner_signed<R: Read>(
    p: &mut Der<R>,
    plain_len: u64,
    out: &mut dyn Write,
) -> Result<(SignedData, Digests, u64), Error> {
    let ci_len = p.expect(0x30, "ContentInfo")?;
    let ci_end = p.pos + ci_len;
    if ci_end != plain_len {
        return Err(Error::Malformed("the signed content's length".into()));
    }
    let ct = p.oid("content type")?;
    if ct != ID_SIGNED_DATA {
        return Err(Error::UnknownOid {
            what: "inner content type",
            oid: ct.to_string(),
        });
    }
    p.expect(0xa0, "SignedData [0]")?;
    let sd_len = p.expect(0x30, "SignedData")?;
    let sd_end = p.pos + sd_len;
    let (_, version) = p.tlv()?;
    let (_, digests) = p.tlv()?;
    let eci_len = p.expect(0x30, "EncapsulatedContentInfo")?;
    let eci_end = p.pos + eci_len;
    let econtent_type = p.oid("encapsulated content type")?;
    let mut eci = econtent_type.to_der().map_err(der_err("oid"))?;
    let mut content_len = 0;
    let mut digest_values = Vec::new();
    if p.pos < eci_end {
        p.expect(0xa0, "eContent [0]")?;
        let (tag, len, _) = p.header()?;
        if tag != 0x04 {
            return Err(Error::Unsupported(
                "a signed content in pieces (constructed OCTET STRING)".into(),
            ));
        }
        let algs: SetOfVec<AlgorithmIdentifierOwned> =
            SetOfVec::from_der(&digests).map_err(der_err("digestAlgorithms"))?;
        let mut hashers = Vec::new();
        for a in algs.iter() {
            let h = HashAlg::from_oid(&a.oid)?;
            hashers.push((h, h.hasher()));
        }
        copy_exact(&mut p.r, len, out, &mut hashers)?;
        p.pos += len;
        content_len = len;
        digest_values = hashers
            .into_iter()
            .map(|(a, h)| (a, h.finalize().to_vec()))
            .collect();
    }
    if p.pos != eci_end {
        return Err(Error::Malformed("EncapsulatedContentInfo length".into()));
    }
    // The SignedData again, without its content, for `der` to decode and check.
    let mut rest = Vec::new();
    while p.pos < sd_end {
        let (_, t) = p.tlv()?;
        rest.extend(t);
    }
    if p.pos != sd_end {
        return Err(Error::Malformed("SignedData length".into()));
    }
    let mut body = version;
    body.extend(digests);
    let mut e = header(0x30, eci.len() as u64);
    e.append(&mut eci);
    body.extend(e);
    body.extend(rest);
    let mut der_sd = header(0x30, body.len() as u64);
    der_sd.extend(body);
    let sd = SignedData::from_der(&der_sd).map_err(der_err("SignedData"))?;
    Ok((sd, digest_values, content_len))
}

/// Opens a message from `input` with one of `keys`, writing the signed content to `out`
/// as it is decrypted. **Until this returns `Ok`, what was written to `out` is not
/// authentic**: write to a temporary file and keep it only on `Ok`.
///
/// Reads what our writer and `openssl cms -sign -nodetach | openssl cms -encrypt`
/// (without `-stream`) write: SignedData as id-data or properly nested, or unsigned
/// data. Memory stays at a few [`CHUNK`]s plus the structure (at most [`MAX_HEADER`]).
pub fn open_stream(
    input: impl Read,
    keys: &[&dyn RecipientKey],
    opts: &VerifyOptions<'_>,
    out: &mut dyn Write,
) -> Result<StreamOpened, Error> {
    let mut d = Der { r: input, pos: 0 };
    let outer_len = d.expect(0x30, "ContentInfo")?;
    let outer_end = d.pos + outer_len;
    let ct = d.oid("content type")?;
    if ct != ID_AUTH_ENVELOPED_DATA {
        return Err(Error::UnknownOid {
            what: "content type (expected authEnvelopedData)",
            oid: ct.to_string(),
        });
    }
    d.expect(0xa0, "content [0]")?;
    let aed_len = d.expect(0x30, "AuthEnvelopedData")?;
    let aed_end = d.pos + aed_len;
    let (_, version) = d.tlv()?;
    let (mut tag, mut rinfos) = d.tlv()?;
    if tag == 0xa0 {
        // originatorInfo: certificates we do not need.
        (tag, rinfos) = d.tlv()?;
    }
    if tag != 0x31 {
        return Err(Error::Malformed("recipientInfos".into()));
    }
    let _ = version;
    let rinfos = RecipientInfos::from_der(&rinfos).map_err(der_err("recipientInfos"))?;
    d.expect(0x30, "EncryptedContentInfo")?;
    let inner_type = d.oid("encrypted content type")?;
    let (_, alg) = d.tlv()?;
    let alg = AlgorithmIdentifierOwned::from_der(&alg).map_err(der_err("algorithm"))?;
    let key_len = match alg.oid {
        AES256_GCM => 32,
        AES128_GCM => 16,
        other => {
            return Err(Error::UnknownOid {
                what: "content encryption algorithm",
                oid: other.to_string(),
            })
        }
    };
    let gcm_p: GcmParameters = alg
        .parameters
        .as_ref()
        .ok_or(Error::Malformed("AES-GCM without parameters".into()))?
        .decode_as()
        .map_err(der_err("GCM parameters"))?;
    let nonce: [u8; 12] = gcm_p.nonce.as_bytes().try_into().map_err(|_| {
        Error::Unsupported("AES-GCM other than a 12-byte nonce and a 16-byte tag".into())
    })?;
    if gcm_p.icv_len != 16 {
        return Err(Error::Unsupported(
            "AES-GCM other than a 12-byte nonce and a 16-byte tag".into(),
        ));
    }
    let cek = crate::open::content_key(rinfos.0.iter(), keys)?;
    if cek.len() != key_len {
        return Err(Error::KeyDecrypt);
    }
    let mut gcm = GcmStream::new(&cek, &nonce)?;
    let (etag, plain_len, _) = d.header()?;
    if etag != 0x80 {
        return Err(Error::Unsupported(
            "encrypted content in pieces (constructed OCTET STRING)".into(),
        ));
    }
    let after_ct = d.pos + plain_len;
    // The plaintext: a SignedData ContentInfo (id-data, as OpenSSL nests), a SignedData
    // (id-signedData), or data.
    let (signed, content_len) = {
        let mut dec = Der {
            r: Decrypting {
                outer: &mut d,
                left: plain_len,
                gcm: &mut gcm,
            },
            pos: 0,
        };
        match inner_type {
            ID_SIGNED_DATA | ID_DATA => {
                // Look at the first bytes: a SignedData ContentInfo, or plain data?
                let look = plain_len.min(32) as usize;
                let mut first = vec![0u8; look];
                dec.r.read_exact(&mut first).map_err(io_err)?;
                const SD_OID: [u8; 11] = [
                    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
                ];
                let off = match first.get(1) {
                    Some(b) if *b < 0x80 => 2,
                    Some(b) => 2 + (*b & 0x7f) as usize,
                    None => 0,
                };
                let is_signed = inner_type == ID_DATA
                    && first.first() == Some(&0x30)
                    && first.get(off..off + 11) == Some(&SD_OID[..]);
                let nested = inner_type == ID_SIGNED_DATA;
                if is_signed {
                    let mut p = Der {
                        r: io::Cursor::new(first).chain(&mut dec.r),
                        pos: 0,
                    };
                    let (sd, digests, n) = inner_signed(&mut p, plain_len, out)?;
                    (Some((sd, digests)), n)
                } else if nested {
                    // The SignedData itself: wrap it as a ContentInfo for the parser.
                    let mut prefix = header(
                        0x30,
                        ID_SIGNED_DATA.to_der().map_err(der_err("oid"))?.len() as u64
                            + tlv_len(0xa0, plain_len),
                    );
                    prefix.extend(ID_SIGNED_DATA.to_der().map_err(der_err("oid"))?);
                    prefix.extend(header(0xa0, plain_len));
                    let total = prefix.len() as u64 + plain_len;
                    prefix.extend(first);
                    let mut p = Der {
                        r: io::Cursor::new(prefix).chain(&mut dec.r),
                        pos: 0,
                    };
                    let (sd, digests, n) = inner_signed(&mut p, total, out)?;
                    (Some((sd, digests)), n)
                } else {
                    out.write_all(&first)
                        .map_err(|e| Error::Malformed(format!("writing the content: {e}")))?;
                    let rest = plain_len - look as u64;
                    copy_exact(&mut dec.r, rest, out, &mut [])?;
                    (None, plain_len)
                }
            }
            other => {
                return Err(Error::UnknownOid {
                    what: "inner content type",
                    oid: other.to_string(),
                })
            }
        }
    };
    if d.pos != after_ct {
        return Err(Error::Malformed("the encrypted content's length".into()));
    }
    // After the ciphertext: [1] authAttrs (refused), the tag, [2] unauthAttrs.
    let (mut tag, mut v) = d.tlv()?;
    if tag == 0xa1 {
        return Err(Error::Unsupported(
            "authenticated attributes in a streamed message".into(),
        ));
    }
    if tag != 0x04 {
        return Err(Error::Malformed("mac".into()));
    }
    let mac = der::asn1::OctetString::from_der(&v).map_err(der_err("mac"))?;
    if d.pos < aed_end {
        (tag, v) = d.tlv()?;
        let _ = (tag, v);
    }
    if d.pos != aed_end || d.pos != outer_end {
        return Err(Error::Malformed("AuthEnvelopedData length".into()));
    }
    let mut extra = [0u8; 1];
    if d.r.read(&mut extra).map_err(io_err)? != 0 {
        return Err(Error::Malformed("data after the message".into()));
    }
    // The tag first: nothing of the plaintext counts before it checks.
    gcm.verify(mac.as_bytes())?;
    let signature = match signed {
        Some((sd, digests)) => Some(verify_signers(&sd, Signed::Digests(&digests), opts)?),
        None => None,
    };
    Ok(StreamOpened {
        signature,
        content_len,
    })
}

/// What a store may know of a large message without any key (see
/// [`crate::check_envelope`]): a well-formed AuthEnvelopedData with AES-GCM whose
/// lengths add up exactly to the end of `r`. Reads the structure and skips the
/// ciphertext. Returns the number of RecipientInfos.
pub fn check_envelope_stream<R: Read + io::Seek>(r: R) -> Result<usize, Error> {
    let mut d = Der { r, pos: 0 };
    let outer_len = d.expect(0x30, "ContentInfo")?;
    let outer_end = d.pos + outer_len;
    let ct = d.oid("content type")?;
    if ct != ID_AUTH_ENVELOPED_DATA {
        return Err(Error::UnknownOid {
            what: "content type (expected authEnvelopedData)",
            oid: ct.to_string(),
        });
    }
    d.expect(0xa0, "content [0]")?;
    let aed_len = d.expect(0x30, "AuthEnvelopedData")?;
    let aed_end = d.pos + aed_len;
    let (vtag, _) = d.tlv()?;
    if vtag != 0x02 {
        return Err(Error::Malformed("AuthEnvelopedData version".into()));
    }
    let (mut tag, mut rinfos) = d.tlv()?;
    if tag == 0xa0 {
        (tag, rinfos) = d.tlv()?;
    }
    if tag != 0x31 {
        return Err(Error::Malformed("recipientInfos".into()));
    }
    let rinfos = RecipientInfos::from_der(&rinfos).map_err(der_err("recipientInfos"))?;
    if rinfos.0.is_empty() {
        return Err(Error::NoRecipients);
    }
    d.expect(0x30, "EncryptedContentInfo")?;
    d.oid("encrypted content type")?;
    let (_, alg) = d.tlv()?;
    let alg = AlgorithmIdentifierOwned::from_der(&alg).map_err(der_err("algorithm"))?;
    match alg.oid {
        AES256_GCM | AES128_GCM => {}
        other => {
            return Err(Error::UnknownOid {
                what: "content encryption algorithm",
                oid: other.to_string(),
            })
        }
    }
    let (etag, len, _) = d.header()?;
    if etag != 0x80 {
        return Err(Error::Unsupported(
            "encrypted content in pieces (constructed OCTET STRING)".into(),
        ));
    }
    let skip = i64::try_from(len).map_err(|_| Error::Malformed("length".into()))?;
    let at = d.r.seek(io::SeekFrom::Current(skip)).map_err(io_err)?;
    d.pos += len;
    if at != d.pos {
        return Err(Error::Malformed("position".into()));
    }
    let (mut tag, _) = d.tlv()?;
    if tag == 0xa1 {
        (tag, _) = d.tlv()?;
    }
    if tag != 0x04 {
        return Err(Error::Malformed("mac".into()));
    }
    if d.pos < aed_end {
        d.tlv()?;
    }
    if d.pos != aed_end || d.pos != outer_end {
        return Err(Error::Malformed("AuthEnvelopedData length".into()));
    }
    let mut extra = [0u8; 1];
    if d.r.read(&mut extra).map_err(io_err)? != 0 {
        return Err(Error::Malformed("data after the message".into()));
    }
    Ok(rinfos.0.len())
}

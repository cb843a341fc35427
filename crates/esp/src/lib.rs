//! dodvpn-esp: the ESP (RFC 4303) security-association data path.
//!
//! * [`OutboundSa::seal`] turns an inner IP packet into an ESP packet **in
//!   place**: the caller reads the inner packet into a buffer at offset
//!   [`HEADROOM`] with at least [`tailroom()`] bytes free behind it; `seal`
//!   writes the ESP header and IV in front, the trailer and ICV behind, and
//!   encrypts in between. No allocation per packet.
//! * [`InboundSa::open`] does the reverse in place and returns the range of
//!   the inner packet within the buffer.
//! * [`ReplayWindow`]: RFC 4303 §3.4.3 anti-replay over 64-bit sequence
//!   numbers, with Extended Sequence Number inference (RFC 4303 App. A).
//!
//! Transforms: AES-GCM with a 16-octet ICV (RFC 4106) with 128- and 256-bit
//! keys and ChaCha20-Poly1305 (RFC 7634), all through `ring`; and, for
//! peers without AEAD, AES-CBC-128/256 (RFC 3602) with HMAC-SHA-256-128,
//! -384-192 or -512-256 (RFC 4868), see [`cbc_hmac`]. A CBC packet has a
//! 16-byte IV: `seal` moves the inner packet 8 bytes back to make room, so
//! callers keep one [`HEADROOM`] for every transform.
//!
//! ESP packet layout (tunnel mode, combined-mode AEAD):
//!
//! ```text
//! 0        4        8               16                  16+n
//! | SPI    | SeqLow | IV (8)        | inner IP packet... | pad | padlen | nh | ICV (16) |
//!                   |<------------- encrypted (after IV) ------------------->|
//! |<-AAD->|  (SPI || SeqLow, or SPI || SeqHigh || SeqLow with ESN)
//! ```
//!
//! The bytes themselves (ESP header, trailer, the inner IP header's TOS /
//! Traffic Class) are read and written by `dodvpn-wire`; the UDP
//! encapsulation of RFC 3948 (non-ESP marker, keepalives) is the I/O
//! layer's business, with `dodvpn_wire::classify_udp4500`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::ops::Range;

use dodvpn_wire::esp as wire;
use dodvpn_wire::{check_esp_trailer, esp_pad_len, write_esp_trailer, EspHeader};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

pub mod cbc_hmac;
mod replay;
mod tos;

pub use cbc_hmac::{CbcHmac, Integ, CBC_IV_LEN};

pub use replay::{ReplayWindow, DEFAULT_WINDOW, MAX_WINDOW, MIN_WINDOW};
pub use tos::{decap_ecn, outer_tos, EcnDecap};

/// Length of the ESP header: SPI (4) + sequence number (4).
pub const ESP_HEADER_LEN: usize = wire::ESP_HEADER_LEN;
/// Length of the explicit IV carried in each AEAD packet (RFC 4106 §3.1,
/// RFC 7634 §2). AES-CBC carries [`CBC_IV_LEN`].
pub const IV_LEN: usize = 8;
/// Bytes the caller must leave free in front of the inner packet.
pub const HEADROOM: usize = ESP_HEADER_LEN + IV_LEN;
/// Length of the ICV of the AEAD transforms (16 octets).
pub const TAG_LEN: usize = 16;
/// Longest ICV of any transform (HMAC-SHA-512-256).
pub const MAX_TAG_LEN: usize = 32;
/// How far `seal` moves a CBC packet's payload back (16-byte IV instead of 8).
const CBC_SHIFT: usize = CBC_IV_LEN - IV_LEN;
/// Length of the salt appended to the key in the KEYMAT (RFC 4106 §8.1,
/// RFC 7634 §2).
pub const SALT_LEN: usize = 4;
/// Largest padding ESP can express (the Pad Length field is one octet).
pub const MAX_PAD: usize = 255;
/// Pad Length + Next Header.
pub const TRAILER_LEN: usize = wire::ESP_TRAILER_LEN;
/// Bytes the caller must leave free behind the inner packet so that any
/// padding choice and transform fits: [`MAX_PAD`] + [`TRAILER_LEN`] +
/// [`MAX_TAG_LEN`] + the 8 bytes a CBC payload moves back.
pub const TAILROOM: usize = MAX_PAD + TRAILER_LEN + MAX_TAG_LEN + CBC_SHIFT;
/// The smallest ESP packet [`InboundSa::open`] will look at for an AEAD:
/// header, IV, an (empty payload's) trailer and the ICV (each transform's
/// own minimum: [`Aead::min_packet_len`]).
pub const MIN_PACKET_LEN: usize = HEADROOM + TRAILER_LEN + TAG_LEN;
/// Padding aligns the encrypted part (payload + trailer) to this many octets
/// (RFC 4303 §2.4: 4-byte alignment; GCM and ChaCha20 are stream modes).
pub const PAD_ALIGN: usize = 4;

/// Next Header value for an IPv4 inner packet (tunnel mode).
pub const NH_IPV4: u8 = wire::NEXT_HEADER_IPV4;
/// Next Header value for an IPv6 inner packet (tunnel mode).
pub const NH_IPV6: u8 = wire::NEXT_HEADER_IPV6;
/// Next Header value for a dummy packet (RFC 4303 §2.6, "no next header").
pub const NH_NONE: u8 = wire::NEXT_HEADER_NONE;

/// Bytes the caller must leave free behind the inner packet (see
/// [`TAILROOM`]).
pub const fn tailroom() -> usize {
    TAILROOM
}

/// Minimal padding for an inner packet of `inner_len` bytes.
pub const fn min_padding(inner_len: usize) -> usize {
    esp_pad_len(inner_len, PAD_ALIGN)
}

/// The length of the ESP packet that [`OutboundSa::seal`] produces for an
/// inner packet of `inner_len` bytes with minimal padding, for an AEAD
/// transform (any transform: [`Aead::sealed_len`]).
pub const fn sealed_len(inner_len: usize) -> usize {
    HEADROOM + inner_len + min_padding(inner_len) + TRAILER_LEN + TAG_LEN
}

/// Errors from sealing and opening; the opening ones double as drop reasons
/// and each has its own counter in [`SaCounters`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key material of the wrong length for the transform.
    #[error("key material for {aead:?} must be {expected} bytes (key || 4-byte salt), got {got}")]
    KeyLength {
        /// Transform.
        aead: Aead,
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// Replay window size out of range.
    #[error("replay window size {0} out of range {MIN_WINDOW}..={MAX_WINDOW}")]
    WindowSize(usize),
    /// The outbound sequence number space is exhausted (2^32 - 1 packets
    /// without ESN, 2^64 - 1 with): the SA must be rekeyed. The counter
    /// never wraps.
    #[error("sequence number space exhausted: rekey required")]
    RekeyRequired,
    /// The buffer given to `seal` cannot hold the ESP packet.
    #[error("buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// Extra padding must be a multiple of 4 and keep the total within 255.
    #[error("invalid extra padding {0}")]
    InvalidPadding(usize),
    /// The packet is shorter than an ESP packet can be.
    #[error("truncated ESP packet ({len} bytes)")]
    Truncated {
        /// Length received.
        len: usize,
    },
    /// The packet's SPI is not this SA's.
    #[error("wrong SPI {got:#010x} (expected {expected:#010x})")]
    WrongSpi {
        /// This SA's SPI.
        expected: u32,
        /// The packet's SPI.
        got: u32,
    },
    /// Sequence number already received (or 0, which is never sent).
    #[error("replayed sequence number {seq}")]
    Replay {
        /// The (inferred) 64-bit sequence number.
        seq: u64,
    },
    /// Sequence number left of the replay window.
    #[error("sequence number {seq} is older than the replay window")]
    TooOld {
        /// The (inferred) 64-bit sequence number.
        seq: u64,
    },
    /// ICV verification failed (forged, corrupted, or wrong ESN guess).
    #[error("ICV verification failed")]
    BadTag,
    /// Authenticated, but the padding is not 1, 2, 3, … or does not fit.
    #[error("bad ESP padding")]
    BadPadding,
    /// Authenticated, but the next header is neither IPv4 (4), IPv6 (41)
    /// nor a dummy packet (59).
    #[error("unexpected next header {0}")]
    BadNextHeader(u8),
    /// Authenticated dummy packet (next header 59, RFC 4303 §2.6): not an
    /// attack, to be dropped silently. The replay window has been updated.
    #[error("dummy packet (next header 59)")]
    DummyPacket,
}

/// Result alias for this crate.
pub type Result<T> = core::result::Result<T, Error>;

/// The ESP transforms supported: the AEADs, and AES-CBC with a separate
/// HMAC-SHA2 integrity transform (still called `Aead` because seal/open
/// treat the pair as one authenticated cipher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aead {
    /// AES-GCM, 128-bit key, 16-octet ICV (RFC 4106; IKEv2 ENCR_AES_GCM_16 = 20, key length 128).
    AesGcm128,
    /// AES-GCM, 256-bit key, 16-octet ICV (RFC 4106; IKEv2 ENCR_AES_GCM_16 = 20, key length 256).
    AesGcm256,
    /// ChaCha20-Poly1305 (RFC 7634; IKEv2 ENCR_CHACHA20_POLY1305 = 28).
    ChaCha20Poly1305,
    /// AES-CBC with a 128-bit key (RFC 3602; ENCR_AES_CBC = 12, key length
    /// 128) and an HMAC-SHA2 integrity transform (RFC 4868).
    AesCbc128(Integ),
    /// AES-CBC with a 256-bit key (RFC 3602; ENCR_AES_CBC = 12, key length
    /// 256) and an HMAC-SHA2 integrity transform (RFC 4868).
    AesCbc256(Integ),
}

impl Aead {
    /// The AEAD transforms.
    pub const ALL: [Aead; 3] = [Aead::AesGcm128, Aead::AesGcm256, Aead::ChaCha20Poly1305];

    /// The AES-CBC + HMAC-SHA2 transforms.
    pub const CBC_HMAC: [Aead; 6] = [
        Aead::AesCbc128(Integ::HmacSha256_128),
        Aead::AesCbc128(Integ::HmacSha384_192),
        Aead::AesCbc128(Integ::HmacSha512_256),
        Aead::AesCbc256(Integ::HmacSha256_128),
        Aead::AesCbc256(Integ::HmacSha384_192),
        Aead::AesCbc256(Integ::HmacSha512_256),
    ];

    /// Every transform, AEAD first.
    pub const EVERY: [Aead; 9] = [
        Aead::AesGcm128,
        Aead::AesGcm256,
        Aead::ChaCha20Poly1305,
        Aead::AesCbc128(Integ::HmacSha256_128),
        Aead::AesCbc128(Integ::HmacSha384_192),
        Aead::AesCbc128(Integ::HmacSha512_256),
        Aead::AesCbc256(Integ::HmacSha256_128),
        Aead::AesCbc256(Integ::HmacSha384_192),
        Aead::AesCbc256(Integ::HmacSha512_256),
    ];

    /// The integrity transform, for AES-CBC.
    pub const fn integ(self) -> Option<Integ> {
        match self {
            Aead::AesCbc128(i) | Aead::AesCbc256(i) => Some(i),
            _ => None,
        }
    }

    /// Whether this is a combined-mode (AEAD) transform.
    pub const fn is_aead(self) -> bool {
        self.integ().is_none()
    }

    /// Length of the cipher key proper.
    pub const fn key_len(self) -> usize {
        match self {
            Aead::AesGcm128 | Aead::AesCbc128(_) => 16,
            Aead::AesGcm256 | Aead::AesCbc256(_) => 32,
            Aead::ChaCha20Poly1305 => 32,
        }
    }

    /// Length of the KEYMAT to take from IKE per direction: key || salt
    /// (RFC 4106 §8.1: 20 / 36 octets; RFC 7634 §2: 36 octets), or for
    /// CBC encryption key || integrity key (RFC 7296 §2.17).
    pub const fn keymat_len(self) -> usize {
        match self.integ() {
            Some(i) => self.key_len() + i.key_len(),
            None => self.key_len() + SALT_LEN,
        }
    }

    /// Length of the ICV.
    pub const fn tag_len(self) -> usize {
        match self.integ() {
            Some(i) => i.icv_len(),
            None => TAG_LEN,
        }
    }

    /// Length of the IV in each packet.
    pub const fn iv_len(self) -> usize {
        if self.is_aead() {
            IV_LEN
        } else {
            CBC_IV_LEN
        }
    }

    /// Offset of the inner packet in an ESP packet (header + IV).
    pub const fn payload_offset(self) -> usize {
        ESP_HEADER_LEN + self.iv_len()
    }

    /// Alignment of payload + trailer: 4 for the stream-like AEADs, the AES
    /// block for CBC (RFC 3602 §2.4).
    pub const fn pad_align(self) -> usize {
        if self.is_aead() {
            PAD_ALIGN
        } else {
            CBC_IV_LEN
        }
    }

    /// The smallest well-formed ESP packet of this transform.
    pub const fn min_packet_len(self) -> usize {
        if self.is_aead() {
            MIN_PACKET_LEN
        } else {
            ESP_HEADER_LEN + CBC_IV_LEN + CBC_IV_LEN + self.tag_len()
        }
    }

    /// The ESP packet length for an inner packet of `inner_len` bytes with
    /// minimal padding.
    pub const fn sealed_len(self, inner_len: usize) -> usize {
        self.payload_offset()
            + inner_len
            + esp_pad_len(inner_len, self.pad_align())
            + TRAILER_LEN
            + self.tag_len()
    }

    /// IKEv2 transform type 1 (ENCR) identifier.
    pub const fn ikev2_transform_id(self) -> u16 {
        match self {
            Aead::AesGcm128 | Aead::AesGcm256 => 20,
            Aead::ChaCha20Poly1305 => 28,
            Aead::AesCbc128(_) | Aead::AesCbc256(_) => 12,
        }
    }

    /// IKEv2 Key Length attribute in bits, where the transform has one.
    pub const fn ikev2_key_length_attr(self) -> Option<u16> {
        match self {
            Aead::AesGcm128 | Aead::AesCbc128(_) => Some(128),
            Aead::AesGcm256 | Aead::AesCbc256(_) => Some(256),
            Aead::ChaCha20Poly1305 => None,
        }
    }

    /// IKEv2 transform type 3 (INTEG) identifier, for CBC.
    pub const fn ikev2_integ_id(self) -> Option<u16> {
        match self.integ() {
            Some(i) => Some(i.ikev2_transform_id()),
            None => None,
        }
    }

    /// The ESP proposal keyword as strongSwan writes it: `aes128gcm16`,
    /// `aes256gcm16`, `chacha20poly1305`, `aes128-sha256`, `aes256-sha512`...
    pub fn name(self) -> String {
        match self {
            Aead::AesGcm128 => "aes128gcm16".into(),
            Aead::AesGcm256 => "aes256gcm16".into(),
            Aead::ChaCha20Poly1305 => "chacha20poly1305".into(),
            Aead::AesCbc128(i) => format!("aes128-{}", i.name()),
            Aead::AesCbc256(i) => format!("aes256-{}", i.name()),
        }
    }

    fn ring_alg(self) -> Option<&'static aead::Algorithm> {
        match self {
            Aead::AesGcm128 => Some(&aead::AES_128_GCM),
            Aead::AesGcm256 => Some(&aead::AES_256_GCM),
            Aead::ChaCha20Poly1305 => Some(&aead::CHACHA20_POLY1305),
            _ => None,
        }
    }
}

impl core::fmt::Display for Aead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.name())
    }
}

/// One direction's AEAD key: the cipher key and the 4-byte salt.
///
/// The nonce is `salt (4) || IV (8)` for all three transforms (RFC 4106
/// §4, RFC 7634 §2). This is the layer the known-answer tests exercise
/// directly; the SAs build on it.
pub struct SaCipher {
    aead: Aead,
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl core::fmt::Debug for SaCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SaCipher")
            .field("aead", &self.aead)
            .finish_non_exhaustive()
    }
}

impl SaCipher {
    /// Build from KEYMAT = key || salt as delivered by IKEv2 for this
    /// direction (`aead.keymat_len()` bytes). AEAD transforms only (CBC:
    /// [`CbcHmac::new`]).
    pub fn new(aead: Aead, keymat: &[u8]) -> Result<Self> {
        if keymat.len() != aead.keymat_len() {
            return Err(Error::KeyLength {
                aead,
                expected: aead.keymat_len(),
                got: keymat.len(),
            });
        }
        let (key, salt) = keymat.split_at(aead.key_len());
        let alg = aead.ring_alg().ok_or(Error::KeyLength {
            aead,
            expected: aead.keymat_len(),
            got: keymat.len(),
        })?;
        let unbound = UnboundKey::new(alg, key).map_err(|_| Error::KeyLength {
            aead,
            expected: aead.keymat_len(),
            got: keymat.len(),
        })?;
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(salt);
        Ok(Self {
            aead,
            key: LessSafeKey::new(unbound),
            salt: s,
        })
    }

    /// The transform.
    pub fn aead(&self) -> Aead {
        self.aead
    }

    #[inline]
    fn nonce(&self, iv: &[u8; IV_LEN]) -> Nonce {
        let mut n = [0u8; 12];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypt `in_out` in place and return the ICV.
    #[inline]
    pub fn seal_in_place(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), Aad::from(aad), in_out)
            // ring fails only for inputs beyond the algorithm's maximum
            // (2^36 bytes for GCM, 2^38 for ChaCha20), far beyond any packet.
            .expect("AEAD input within limits");
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag.as_ref());
        t
    }

    /// Verify and decrypt `ciphertext || tag` in place; returns the length
    /// of the plaintext (at the start of `in_out`).
    #[inline]
    pub fn open_in_place(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<usize> {
        self.key
            .open_in_place(self.nonce(iv), Aad::from(aad), in_out)
            .map(|pt| pt.len())
            .map_err(|_| Error::BadTag)
    }
}

/// Per-SA counters, for `tunnel status`. Bytes are inner-packet bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaCounters {
    /// Packets sealed.
    pub packets_sealed: u64,
    /// Inner-packet bytes sealed.
    pub bytes_sealed: u64,
    /// Packets opened and delivered.
    pub packets_opened: u64,
    /// Inner-packet bytes opened and delivered.
    pub bytes_opened: u64,
    /// Dropped: shorter than [`MIN_PACKET_LEN`].
    pub drop_truncated: u64,
    /// Dropped: wrong SPI.
    pub drop_wrong_spi: u64,
    /// Dropped: replayed sequence number.
    pub drop_replay: u64,
    /// Dropped: sequence number older than the window.
    pub drop_too_old: u64,
    /// Dropped: ICV failure.
    pub drop_bad_tag: u64,
    /// Dropped: bad padding after authentication.
    pub drop_bad_padding: u64,
    /// Dropped: unexpected next header after authentication.
    pub drop_bad_next_header: u64,
    /// Dropped: authenticated dummy packets (next header 59).
    pub drop_dummy: u64,
}

impl SaCounters {
    /// All drops except dummy packets.
    pub fn drops_total(&self) -> u64 {
        self.drop_truncated
            + self.drop_wrong_spi
            + self.drop_replay
            + self.drop_too_old
            + self.drop_bad_tag
            + self.drop_bad_padding
            + self.drop_bad_next_header
    }

    fn count_drop(&mut self, e: &Error) {
        match e {
            Error::Truncated { .. } => self.drop_truncated += 1,
            Error::WrongSpi { .. } => self.drop_wrong_spi += 1,
            Error::Replay { .. } => self.drop_replay += 1,
            Error::TooOld { .. } => self.drop_too_old += 1,
            Error::BadTag => self.drop_bad_tag += 1,
            Error::BadPadding => self.drop_bad_padding += 1,
            Error::BadNextHeader(_) => self.drop_bad_next_header += 1,
            Error::DummyPacket => self.drop_dummy += 1,
            _ => {}
        }
    }
}

#[inline]
fn aad_for(spi: u32, seq: u64, esn: bool) -> ([u8; 12], usize) {
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        // RFC 4303 §2.2.1 / RFC 4106 §5: SPI || Seq high || Seq low.
        aad[4..12].copy_from_slice(&seq.to_be_bytes());
        (aad, 12)
    } else {
        aad[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        (aad, 8)
    }
}

/// The keys of one direction, by transform family.
// One per SA, held inline: boxing would add a pointer chase to every packet.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    Aead(SaCipher),
    Cbc(CbcHmac),
}

impl Cipher {
    fn new(aead: Aead, keymat: &[u8]) -> Result<Cipher> {
        if aead.is_aead() {
            SaCipher::new(aead, keymat).map(Cipher::Aead)
        } else {
            CbcHmac::new(aead, keymat).map(Cipher::Cbc)
        }
    }
    fn aead(&self) -> Aead {
        match self {
            Cipher::Aead(c) => c.aead,
            Cipher::Cbc(c) => c.transform(),
        }
    }
}

/// Outbound SA: seals inner packets into ESP packets.
pub struct OutboundSa {
    spi: u32,
    cipher: Cipher,
    /// Last sequence number sent (0 = none yet).
    seq: u64,
    esn: bool,
    counters: SaCounters,
}

impl core::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("aead", &self.cipher.aead())
            .field("seq", &self.seq)
            .field("esn", &self.esn)
            .field("counters", &self.counters)
            .finish()
    }
}

impl OutboundSa {
    /// A new outbound SA. `spi` is the peer's (inbound at the peer) SPI;
    /// `keymat` is key || salt for this direction.
    pub fn new(spi: u32, aead: Aead, keymat: &[u8], esn: bool) -> Result<Self> {
        Ok(Self {
            spi,
            cipher: Cipher::new(aead, keymat)?,
            seq: 0,
            esn,
            counters: SaCounters::default(),
        })
    }

    /// SPI written into each packet.
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// Transform.
    pub fn aead(&self) -> Aead {
        self.cipher.aead()
    }
    /// Extended Sequence Numbers in use.
    pub fn esn(&self) -> bool {
        self.esn
    }
    /// Last sequence number sent (0 before the first packet).
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Counters.
    pub fn counters(&self) -> &SaCounters {
        &self.counters
    }
    /// Packets that can still be sent before [`Error::RekeyRequired`].
    pub fn remaining(&self) -> u64 {
        let max = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        max.saturating_sub(self.seq)
    }

    /// Move the sequence counter forward so the next packet carries
    /// `last_sent + 1`. Never moves it backwards (that would reuse nonces):
    /// returns false and does nothing if `last_sent` is below the current
    /// value. For tests (ESN boundary, sequence exhaustion) and diagnostics.
    pub fn advance_seq_to(&mut self, last_sent: u64) -> bool {
        if last_sent < self.seq {
            return false;
        }
        self.seq = last_sent;
        true
    }

    /// Seal in place with minimal padding. See [`seal_padded`](Self::seal_padded).
    #[inline]
    pub fn seal(
        &mut self,
        inner_packet_len: usize,
        buf: &mut [u8],
        next_header: u8,
    ) -> Result<usize> {
        self.seal_padded(inner_packet_len, buf, next_header, 0)
    }

    /// Seal in place. The inner packet is at `buf[HEADROOM..HEADROOM +
    /// inner_packet_len]`; `buf` must extend at least
    /// `inner_packet_len + min_padding + extra_pad + 2 + 16` bytes past
    /// `HEADROOM` (leaving [`TAILROOM`] always suffices). Writes the ESP
    /// header and IV into `buf[..HEADROOM]`, padding `1, 2, 3, …`, Pad
    /// Length, Next Header and the ICV behind the packet, and returns the
    /// length of the ESP packet `buf[..len]`.
    ///
    /// `extra_pad` (a multiple of 4; total padding ≤ 255) adds padding
    /// beyond the minimum to blur packet lengths (TFC-style); 0 normally.
    ///
    /// The IV is the 64-bit sequence number, big-endian. RFC 4106 §3.1 and
    /// RFC 7634 §2 require only that the IV never repeats under one key and
    /// recommend a counter; the ESP sequence number is exactly such a
    /// counter, unique per packet because it never wraps (2^32 - 1 / 2^64 - 1
    /// then [`Error::RekeyRequired`]). RFC 8750 builds its implicit IV from
    /// the same value (zero-padded SN, or the ESN); we still send the 8 IV
    /// bytes so that any RFC 4106 / 7634 peer can read them.
    pub fn seal_padded(
        &mut self,
        inner_packet_len: usize,
        buf: &mut [u8],
        next_header: u8,
        extra_pad: usize,
    ) -> Result<usize> {
        let seq = self.next_seq()?;
        let len = self.seal_at(
            seq,
            seq.to_be_bytes(),
            inner_packet_len,
            buf,
            next_header,
            extra_pad,
        )?;
        self.seq = seq;
        Ok(len)
    }

    /// Like [`seal`](Self::seal) but with a caller-chosen IV. Exists only so
    /// the known-answer test can reproduce RFC 7634 Appendix A, whose IV is
    /// not the sequence number; a caller that repeats an IV destroys the
    /// SA's confidentiality and integrity.
    #[doc(hidden)]
    pub fn seal_with_explicit_iv_for_kat(
        &mut self,
        iv: [u8; IV_LEN],
        inner_packet_len: usize,
        buf: &mut [u8],
        next_header: u8,
    ) -> Result<usize> {
        let seq = self.next_seq()?;
        let len = self.seal_at(seq, iv, inner_packet_len, buf, next_header, 0)?;
        self.seq = seq;
        Ok(len)
    }

    /// The CBC twin of [`seal_with_explicit_iv_for_kat`](Self::seal_with_explicit_iv_for_kat):
    /// a caller-chosen 16-byte IV, for RFC 3602 §5's ESP test cases. Never
    /// for traffic.
    #[doc(hidden)]
    pub fn seal_cbc_with_explicit_iv_for_kat(
        &mut self,
        iv: [u8; CBC_IV_LEN],
        inner_packet_len: usize,
        buf: &mut [u8],
        next_header: u8,
    ) -> Result<usize> {
        let seq = self.next_seq()?;
        let Cipher::Cbc(c) = &self.cipher else {
            return Err(Error::InvalidPadding(0));
        };
        let len = seal_cbc(
            c,
            self.spi,
            self.esn,
            seq,
            Some(iv),
            inner_packet_len,
            buf,
            next_header,
            0,
        )?;
        self.counters.packets_sealed += 1;
        self.counters.bytes_sealed += inner_packet_len as u64;
        self.seq = seq;
        Ok(len)
    }

    #[inline]
    fn next_seq(&self) -> Result<u64> {
        let max = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if self.seq >= max {
            return Err(Error::RekeyRequired);
        }
        Ok(self.seq + 1)
    }

    #[inline]
    fn seal_at(
        &mut self,
        seq: u64,
        iv: [u8; IV_LEN],
        inner_len: usize,
        buf: &mut [u8],
        next_header: u8,
        extra_pad: usize,
    ) -> Result<usize> {
        let cipher = match &self.cipher {
            Cipher::Aead(c) => c,
            Cipher::Cbc(c) => {
                let total = seal_cbc(
                    c,
                    self.spi,
                    self.esn,
                    seq,
                    None,
                    inner_len,
                    buf,
                    next_header,
                    extra_pad,
                )?;
                self.counters.packets_sealed += 1;
                self.counters.bytes_sealed += inner_len as u64;
                return Ok(total);
            }
        };
        let min_pad = min_padding(inner_len);
        #[allow(clippy::manual_is_multiple_of)]
        // usize::is_multiple_of needs Rust 1.87; MSRV is 1.85
        if extra_pad % PAD_ALIGN != 0 || min_pad + extra_pad > MAX_PAD {
            return Err(Error::InvalidPadding(extra_pad));
        }
        let pad = min_pad + extra_pad;
        let ct_end = HEADROOM
            .checked_add(inner_len)
            .and_then(|n| n.checked_add(pad + TRAILER_LEN))
            .ok_or(Error::BufferTooSmall {
                needed: usize::MAX,
                have: buf.len(),
            })?;
        let total = ct_end + TAG_LEN;
        if buf.len() < total {
            return Err(Error::BufferTooSmall {
                needed: total,
                have: buf.len(),
            });
        }
        let header = EspHeader {
            spi: self.spi,
            seq: seq as u32,
        };
        buf[..ESP_HEADER_LEN].copy_from_slice(&header.to_bytes());
        buf[ESP_HEADER_LEN..HEADROOM].copy_from_slice(&iv);
        // pad <= MAX_PAD was checked above, so the trailer always fits.
        write_esp_trailer(&mut buf[HEADROOM + inner_len..ct_end], next_header)
            .map_err(|_| Error::InvalidPadding(extra_pad))?;
        let (aad, aad_len) = aad_for(self.spi, seq, self.esn);
        let tag = cipher.seal_in_place(&iv, &aad[..aad_len], &mut buf[HEADROOM..ct_end]);
        buf[ct_end..total].copy_from_slice(&tag);
        self.counters.packets_sealed += 1;
        self.counters.bytes_sealed += inner_len as u64;
        Ok(total)
    }
}

/// Seal one packet with AES-CBC + HMAC. The inner packet is at
/// `buf[HEADROOM..]`; it moves 8 bytes back to leave room for the 16-byte IV.
#[allow(clippy::too_many_arguments)]
#[inline]
fn seal_cbc(
    c: &CbcHmac,
    spi: u32,
    esn: bool,
    seq: u64,
    iv: Option<[u8; CBC_IV_LEN]>,
    inner_len: usize,
    buf: &mut [u8],
    next_header: u8,
    extra_pad: usize,
) -> Result<usize> {
    let t = c.transform();
    let min_pad = esp_pad_len(inner_len, CBC_IV_LEN);
    #[allow(clippy::manual_is_multiple_of)] // MSRV 1.85
    if extra_pad % CBC_IV_LEN != 0 || min_pad + extra_pad > MAX_PAD {
        return Err(Error::InvalidPadding(extra_pad));
    }
    let pad = min_pad + extra_pad;
    let start = t.payload_offset();
    let ct_end = start
        .checked_add(inner_len)
        .and_then(|n| n.checked_add(pad + TRAILER_LEN))
        .ok_or(Error::BufferTooSmall {
            needed: usize::MAX,
            have: buf.len(),
        })?;
    let total = ct_end + t.tag_len();
    if buf.len() < total {
        return Err(Error::BufferTooSmall {
            needed: total,
            have: buf.len(),
        });
    }
    buf.copy_within(HEADROOM..HEADROOM + inner_len, start);
    let header = EspHeader {
        spi,
        seq: seq as u32,
    };
    buf[..ESP_HEADER_LEN].copy_from_slice(&header.to_bytes());
    let iv = iv.unwrap_or_else(|| c.iv_for_seq(seq));
    buf[ESP_HEADER_LEN..start].copy_from_slice(&iv);
    write_esp_trailer(&mut buf[start + inner_len..ct_end], next_header)
        .map_err(|_| Error::InvalidPadding(extra_pad))?;
    c.encrypt(&iv, &mut buf[start..ct_end])?;
    let hi = ((seq >> 32) as u32).to_be_bytes();
    let (data, icv) = buf.split_at_mut(ct_end);
    c.icv(data, if esn { &hi } else { &[] }, icv);
    Ok(total)
}

/// Inbound SA: opens ESP packets, enforces anti-replay.
pub struct InboundSa {
    spi: u32,
    cipher: Cipher,
    esn: bool,
    window: ReplayWindow,
    counters: SaCounters,
}

impl core::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("aead", &self.cipher.aead())
            .field("esn", &self.esn)
            .field("window", &self.window)
            .field("counters", &self.counters)
            .finish()
    }
}

impl InboundSa {
    /// A new inbound SA with a replay window of [`DEFAULT_WINDOW`].
    pub fn new(spi: u32, aead: Aead, keymat: &[u8], esn: bool) -> Result<Self> {
        Self::with_window(spi, aead, keymat, esn, ReplayWindow::default())
    }

    /// A new inbound SA with the given replay window.
    pub fn with_window(
        spi: u32,
        aead: Aead,
        keymat: &[u8],
        esn: bool,
        window: ReplayWindow,
    ) -> Result<Self> {
        Ok(Self {
            spi,
            cipher: Cipher::new(aead, keymat)?,
            esn,
            window,
            counters: SaCounters::default(),
        })
    }

    /// Our SPI.
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// Transform.
    pub fn aead(&self) -> Aead {
        self.cipher.aead()
    }
    /// Extended Sequence Numbers in use.
    pub fn esn(&self) -> bool {
        self.esn
    }
    /// The replay window.
    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }
    /// Counters.
    pub fn counters(&self) -> &SaCounters {
        &self.counters
    }

    /// Open an ESP packet in place. On success returns the range of the
    /// inner packet within `esp_packet` and its next header (4 or 41).
    ///
    /// Order of checks: length, SPI, replay window (cheap reject, before
    /// any cryptography), ICV, then the window is updated (so forgeries
    /// never move it), then padding and next header. Each failure is a
    /// distinct [`Error`] and counter; [`Error::DummyPacket`] is an
    /// authenticated dummy packet to drop silently.
    pub fn open(&mut self, esp_packet: &mut [u8]) -> Result<(Range<usize>, u8)> {
        match self.open_inner(esp_packet) {
            Ok(r) => {
                self.counters.packets_opened += 1;
                self.counters.bytes_opened += r.0.len() as u64;
                Ok(r)
            }
            Err(e) => {
                self.counters.count_drop(&e);
                Err(e)
            }
        }
    }

    #[inline]
    fn open_inner(&mut self, pkt: &mut [u8]) -> Result<(Range<usize>, u8)> {
        if pkt.len() < self.cipher.aead().min_packet_len() {
            return Err(Error::Truncated { len: pkt.len() });
        }
        let (spi, seq_low) = match EspHeader::parse(pkt) {
            Ok(h) if h.spi == self.spi => (h.spi, h.seq),
            // Long enough (checked above): only the reserved SPI 0 fails.
            other => {
                return Err(Error::WrongSpi {
                    expected: self.spi,
                    got: other.map_or(0, |h| h.spi),
                })
            }
        };
        let seq = if self.esn {
            self.window.infer_esn(seq_low)
        } else {
            u64::from(seq_low)
        };
        self.window.check(seq)?;

        let cipher = match &self.cipher {
            Cipher::Aead(c) => c,
            Cipher::Cbc(_) => return self.open_cbc_after_replay_check(pkt, seq),
        };
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&pkt[ESP_HEADER_LEN..HEADROOM]);
        let (aad, aad_len) = aad_for(spi, seq, self.esn);
        let pt_len = cipher.open_in_place(&iv, &aad[..aad_len], &mut pkt[HEADROOM..])?;
        // Authentic: only now does the packet move the window.
        self.window.update(seq)?;

        // pt_len >= TRAILER_LEN is guaranteed by MIN_PACKET_LEN.
        let trailer =
            check_esp_trailer(&pkt[HEADROOM..HEADROOM + pt_len]).map_err(|_| Error::BadPadding)?;
        match trailer.next_header {
            next_header @ (NH_IPV4 | NH_IPV6) => {
                Ok((HEADROOM..HEADROOM + trailer.payload_len, next_header))
            }
            NH_NONE => Err(Error::DummyPacket),
            other => Err(Error::BadNextHeader(other)),
        }
    }
}

impl InboundSa {
    /// The CBC half of [`open`](Self::open), after the length, SPI and
    /// replay checks: ICV first (constant time), then the window, then
    /// decryption, padding and next header.
    #[inline]
    fn open_cbc_after_replay_check(
        &mut self,
        pkt: &mut [u8],
        seq: u64,
    ) -> Result<(Range<usize>, u8)> {
        let Cipher::Cbc(c) = &self.cipher else {
            return Err(Error::BadTag);
        };
        let t = c.transform();
        let start = t.payload_offset();
        let ct_end = pkt.len() - t.tag_len();
        let hi = ((seq >> 32) as u32).to_be_bytes();
        {
            let (data, icv) = pkt.split_at(ct_end);
            c.verify(data, if self.esn { &hi } else { &[] }, icv)?;
        }
        // Authentic: only now does the packet move the window.
        self.window.update(seq)?;
        #[allow(clippy::manual_is_multiple_of)] // MSRV 1.85
        if (ct_end - start) % CBC_IV_LEN != 0 {
            // Authentic but not whole blocks: the sender's padding is wrong.
            return Err(Error::BadPadding);
        }
        let mut iv = [0u8; CBC_IV_LEN];
        iv.copy_from_slice(&pkt[ESP_HEADER_LEN..start]);
        c.decrypt(&iv, &mut pkt[start..ct_end])?;
        let trailer = check_esp_trailer(&pkt[start..ct_end]).map_err(|_| Error::BadPadding)?;
        match trailer.next_header {
            next_header @ (NH_IPV4 | NH_IPV6) => {
                Ok((start..start + trailer.payload_len, next_header))
            }
            NH_NONE => Err(Error::DummyPacket),
            other => Err(Error::BadNextHeader(other)),
        }
    }
}

//! ESP framing (RFC 4303 §2) and UDP encapsulation demux (RFC 3948).
//!
//! Unlike the IKE side (owned `Vec`s, allocation is fine there), everything
//! here borrows from the caller's buffer and never allocates, because it
//! runs per packet.

use crate::codec::Reader;
use crate::error::{Error, Result};

/// Length of the ESP header (SPI + sequence number).
pub const ESP_HEADER_LEN: usize = 8;
/// IKE port.
pub const IKE_PORT: u16 = 500;
/// NAT-T port (IKE with non-ESP marker, and UDP-encapsulated ESP).
pub const NAT_T_PORT: u16 = 4500;
/// Non-ESP marker prefixed to IKE messages on port 4500 (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// NAT-keepalive packet (RFC 3948 §2.3).
pub const NAT_KEEPALIVE: [u8; 1] = [0xff];
/// Next Header value for an inner IPv4 packet (tunnel mode).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next Header value for an inner IPv6 packet (tunnel mode).
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next Header 59: a TFC dummy packet, to be dropped after decryption
/// (RFC 4303 §2.6).
pub const NEXT_HEADER_NONE: u8 = 59;

/// ESP header: SPI and (low 32 bits of the) sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspHeader {
    pub spi: u32,
    pub seq: u32,
}

impl EspHeader {
    /// Parse the first 8 bytes of an ESP packet. SPI 0 is reserved
    /// (RFC 4303 §2.1) and rejected.
    pub fn parse(buf: &[u8]) -> Result<EspHeader> {
        let mut r = Reader::new(buf);
        let spi = r.u32("ESP header")?;
        let seq = r.u32("ESP header")?;
        if spi == 0 {
            return Err(Error::Invalid {
                offset: 0,
                what: "ESP SPI 0",
            });
        }
        Ok(EspHeader { spi, seq })
    }

    pub fn to_bytes(&self) -> [u8; ESP_HEADER_LEN] {
        let mut b = [0u8; ESP_HEADER_LEN];
        b[..4].copy_from_slice(&self.spi.to_be_bytes());
        b[4..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

const fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Padding length so that payload ‖ padding ‖ pad length ‖ next header is a
/// multiple of the cipher's `block` size and of 4 (RFC 4303 §2.4). Use
/// `block` = 1 for AES-GCM / ChaCha20-Poly1305, 16 for AES-CBC. Extra
/// (TFC) padding is the caller's business.
#[inline]
pub const fn esp_pad_len(payload_len: usize, block: usize) -> usize {
    // u128 arithmetic: no overflow for any usize inputs. With a constant
    // `block` (the data path's case) this folds to a mask.
    let b = if block == 0 { 1 } else { block as u128 };
    let align = b / gcd(b, 4) * 4;
    ((align - (payload_len as u128 + 2) % align) % align) as usize
}

/// Length of the fields behind the padding: Pad Length and Next Header.
pub const ESP_TRAILER_LEN: usize = 2;

/// Write RFC 4303 default padding (1, 2, 3, …), the pad length and the
/// next header into `trailer`, in place: its length is the padding's + 2.
/// Errors if that is below 2 or the padding above 255.
#[inline]
pub fn write_esp_trailer(trailer: &mut [u8], next_header: u8) -> Result<()> {
    let pad_len = trailer
        .len()
        .checked_sub(ESP_TRAILER_LEN)
        .and_then(|p| u8::try_from(p).ok())
        .ok_or(Error::Unencodable {
            what: "ESP pad length",
        })?;
    let (pad, fields) = trailer.split_at_mut(usize::from(pad_len));
    for (i, b) in pad.iter_mut().enumerate() {
        *b = (i + 1) as u8;
    }
    fields[0] = pad_len;
    fields[1] = next_header;
    Ok(())
}

/// What [`check_esp_trailer`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspTrailer {
    /// Length of the inner packet (the bytes before the padding).
    pub payload_len: usize,
    pub pad_len: u8,
    pub next_header: u8,
}

/// Verify the trailer of a decrypted ESP payload (`plaintext` = inner
/// packet ‖ padding ‖ pad length ‖ next header): the pad length must fit and
/// the padding bytes must be 1, 2, 3, … (RFC 4303 §2.4 default padding,
/// checked on open). Offsets are relative to `plaintext`.
#[inline]
pub fn check_esp_trailer(plaintext: &[u8]) -> Result<EspTrailer> {
    let n = plaintext.len();
    if n < 2 {
        return Err(Error::Truncated {
            offset: 0,
            what: "ESP trailer",
            needed: 2 - n,
        });
    }
    let pad_len = plaintext[n - 2];
    let next_header = plaintext[n - 1];
    let p = pad_len as usize;
    if p + 2 > n {
        return Err(Error::BadLength {
            offset: n - 2,
            what: "ESP pad length",
            value: p,
        });
    }
    let payload_len = n - 2 - p;
    for (i, &b) in plaintext[payload_len..n - 2].iter().enumerate() {
        if b as usize != i + 1 {
            return Err(Error::Invalid {
                offset: payload_len + i,
                what: "ESP padding byte",
            });
        }
    }
    Ok(EspTrailer {
        payload_len,
        pad_len,
        next_header,
    })
}

/// Classification of a UDP payload received on port 4500 (RFC 3948 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Udp4500<'a> {
    /// NAT-keepalive: a single 0xFF byte. Drop.
    Keepalive,
    /// IKE: the bytes after the non-ESP marker (parse with
    /// [`crate::Message::parse`]).
    Ike(&'a [u8]),
    /// ESP: the whole datagram is the ESP packet; here is its header.
    Esp(EspHeader),
    /// Anything else (too short, etc.). Drop.
    Invalid,
}

/// Demultiplex a UDP payload received on port 4500.
pub fn classify_udp4500(payload: &[u8]) -> Udp4500<'_> {
    if payload == NAT_KEEPALIVE {
        return Udp4500::Keepalive;
    }
    if payload.len() < 4 {
        return Udp4500::Invalid;
    }
    if payload[..4] == NON_ESP_MARKER {
        return Udp4500::Ike(&payload[4..]);
    }
    match EspHeader::parse(payload) {
        Ok(h) => Udp4500::Esp(h),
        Err(_) => Udp4500::Invalid,
    }
}

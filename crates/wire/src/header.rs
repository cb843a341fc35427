//! The fixed 28-byte IKE header (RFC 7296 §3.1).

use crate::codec::{put_u32, Reader};
use crate::codepoints::{ExchangeType, PayloadType};
use crate::error::{Error, Result};

/// Length of the IKE header in bytes.
pub const IKE_HEADER_LEN: usize = 28;

/// Header flags byte. Unknown bits are kept (RFC 7296: ignored on receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// I: set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// V: "can speak a higher major version" (always clear for us).
    pub const VERSION: u8 = 0x10;
    /// R: this message is a response.
    pub const RESPONSE: u8 = 0x20;

    pub fn new(initiator: bool, response: bool) -> Self {
        let mut f = 0;
        if initiator {
            f |= Self::INITIATOR;
        }
        if response {
            f |= Self::RESPONSE;
        }
        Flags(f)
    }
    pub fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }
    pub fn version(self) -> bool {
        self.0 & Self::VERSION != 0
    }
    pub fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }
}

/// The IKE header.
///
/// `next_payload` and `length` reflect the wire after parsing; when a
/// [`crate::Message`] is emitted they are recomputed and the stored values are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IkeHeader {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: PayloadType,
    /// Always 2 after a successful [`IkeHeader::parse`].
    pub major_version: u8,
    pub minor_version: u8,
    pub exchange_type: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
    pub length: u32,
}

impl IkeHeader {
    /// A version 2.0 header; `next_payload`/`length` are filled on emit.
    pub fn new(
        spi_i: u64,
        spi_r: u64,
        exchange_type: ExchangeType,
        flags: Flags,
        message_id: u32,
    ) -> Self {
        IkeHeader {
            spi_i,
            spi_r,
            next_payload: PayloadType::NoNextPayload,
            major_version: 2,
            minor_version: 0,
            exchange_type,
            flags,
            message_id,
            length: IKE_HEADER_LEN as u32,
        }
    }

    /// Parse the header at the start of `buf`, rejecting a major version other
    /// than 2 and a length field smaller than the header itself. It does not
    /// compare `length` with `buf.len()` ([`crate::Message::parse`] does), so
    /// it can be used to route a message (by SPI) before parsing the rest.
    pub fn parse(buf: &[u8]) -> Result<IkeHeader> {
        let h = Self::parse_any_version(buf)?;
        if h.major_version != 2 {
            return Err(Error::UnsupportedVersion {
                offset: 17,
                major: h.major_version,
            });
        }
        Ok(h)
    }

    /// Like [`IkeHeader::parse`] but accepts any version, so a responder can
    /// still answer INVALID_MAJOR_VERSION to the right SPIs.
    pub fn parse_any_version(buf: &[u8]) -> Result<IkeHeader> {
        let mut r = Reader::new(buf);
        let spi_i = r.u64("IKE header")?;
        let spi_r = r.u64("IKE header")?;
        let next_payload = PayloadType::from(r.u8("IKE header")?);
        let v = r.u8("IKE header")?;
        let exchange_type = ExchangeType::from(r.u8("IKE header")?);
        let flags = Flags(r.u8("IKE header")?);
        let message_id = r.u32("IKE header")?;
        let length = r.u32("IKE header")?;
        if (length as usize) < IKE_HEADER_LEN {
            return Err(Error::BadLength {
                offset: 24,
                what: "IKE message length",
                value: length as usize,
            });
        }
        Ok(IkeHeader {
            spi_i,
            spi_r,
            next_payload,
            major_version: v >> 4,
            minor_version: v & 0x0f,
            exchange_type,
            flags,
            message_id,
            length,
        })
    }

    /// Append the 28 header bytes exactly as stored (including `length` and
    /// `next_payload`). Versions are masked to 4 bits each.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload.to_wire());
        out.push((self.major_version & 0x0f) << 4 | (self.minor_version & 0x0f));
        out.push(self.exchange_type.to_wire());
        out.push(self.flags.0);
        put_u32(out, self.message_id);
        put_u32(out, self.length);
    }
}

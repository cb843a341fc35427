//! Whole IKE messages and payload chains (RFC 7296 §3.1–3.2).

use core::ops::Range;

use crate::codec::{patch_len16, put_u16, Reader};
use crate::codepoints::{NotifyType, PayloadType};
use crate::error::{Error, Result};
use crate::header::{IkeHeader, IKE_HEADER_LEN};
use crate::payload::{Encrypted, EncryptedFragment, Notify, Payload};

/// Length of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;

/// An IKE message: header + payloads in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub header: IkeHeader,
    pub payloads: Vec<Payload>,
}

impl Message {
    pub fn new(header: IkeHeader, payloads: Vec<Payload>) -> Self {
        Message { header, payloads }
    }

    /// Parse a complete IKE message (the UDP payload on port 500, or what
    /// follows the non-ESP marker on port 4500). The header's length field
    /// must equal `buf.len()` exactly, and the payload chain must end
    /// exactly at the end of the buffer.
    ///
    /// An unknown payload type with the critical bit set yields
    /// [`Error::UnsupportedCriticalPayload`]; use [`IkeHeader::parse`] to
    /// get the SPIs / message ID for the error response.
    pub fn parse(buf: &[u8]) -> Result<Message> {
        let header = IkeHeader::parse(buf)?;
        if header.length as usize != buf.len() {
            return Err(Error::BadLength {
                offset: 24,
                what: "IKE message length",
                value: header.length as usize,
            });
        }
        let mut r = Reader::with_base(&buf[IKE_HEADER_LEN..], IKE_HEADER_LEN);
        let payloads = parse_chain(header.next_payload, &mut r)?;
        Ok(Message { header, payloads })
    }

    /// Serialize, appending to `out`. The header's `next_payload` and
    /// `length` are computed (the stored values are ignored), every payload's
    /// generic header gets its next-payload and length filled in. On error
    /// nothing is appended.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let refs: Vec<&Payload> = self.payloads.iter().collect();
        emit_message(&self.header, &refs, out)
    }

    /// [`Message::emit`] into a fresh vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.emit(&mut v)?;
        Ok(v)
    }

    /// All Notify payloads, in order.
    pub fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.payloads.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// The first Notify of the given type.
    pub fn find_notify(&self, t: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.notify_type == t)
    }

    /// The SK payload, if any.
    pub fn encrypted(&self) -> Option<&Encrypted> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Encrypted(e) => Some(e),
            _ => None,
        })
    }

    /// The SKF payload, if any.
    pub fn encrypted_fragment(&self) -> Option<&EncryptedFragment> {
        self.payloads.iter().find_map(|p| match p {
            Payload::EncryptedFragment(e) => Some(e),
            _ => None,
        })
    }
}

/// Parse a chain of payloads starting with type `first`, e.g. the
/// decrypted contents of an SK payload (`first` = [`Encrypted::inner_next`]).
/// Offsets in errors are relative to `bytes`. The chain must end exactly at
/// the end of `bytes`.
pub fn parse_payload_chain(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>> {
    parse_chain(first, &mut Reader::new(bytes))
}

/// Emit a payload chain without IKE header (the plaintext of an SK
/// payload, before padding). Returns the type of the first payload, which
/// goes into the SK generic header ([`Encrypted::inner_next`]).
pub fn emit_payload_chain(payloads: &[Payload], out: &mut Vec<u8>) -> Result<PayloadType> {
    let start = out.len();
    let refs: Vec<&Payload> = payloads.iter().collect();
    match emit_chain(&refs, out) {
        Ok(t) => Ok(t),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn parse_chain(first: PayloadType, r: &mut Reader<'_>) -> Result<Vec<Payload>> {
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NoNextPayload {
        let off = r.offset();
        let np = PayloadType::from(r.u8("generic payload header")?);
        let critical = r.u8("generic payload header")? & 0x80 != 0;
        let len = r.u16("generic payload header")? as usize;
        if len < GENERIC_HEADER_LEN || len - GENERIC_HEADER_LEN > r.remaining() {
            return Err(Error::BadLength {
                offset: off + 2,
                what: "payload length",
                value: len,
            });
        }
        let mut body = r.sub(len - GENERIC_HEADER_LEN, "payload body")?;
        match next {
            PayloadType::Encrypted | PayloadType::EncryptedFragment => {
                let p = if next == PayloadType::Encrypted {
                    Payload::Encrypted(Encrypted {
                        inner_next: np,
                        body: body.rest().to_vec(),
                    })
                } else {
                    let fragment_number = body.u16("SKF header")?;
                    let total_fragments = body.u16("SKF header")?;
                    Payload::EncryptedFragment(EncryptedFragment {
                        inner_next: np,
                        fragment_number,
                        total_fragments,
                        body: body.rest().to_vec(),
                    })
                };
                out.push(p);
                if !r.is_empty() {
                    return Err(Error::Invalid {
                        offset: r.offset(),
                        what: "data after encrypted payload",
                    });
                }
                return Ok(out);
            }
            PayloadType::Unknown(t) => {
                if critical {
                    return Err(Error::UnsupportedCriticalPayload {
                        offset: off,
                        payload_type: t,
                    });
                }
                out.push(Payload::Unknown {
                    payload_type: t,
                    body: body.rest().to_vec(),
                });
            }
            known => {
                let p = Payload::parse_body(known, body)?;
                out.push(p);
            }
        }
        next = np;
    }
    if !r.is_empty() {
        return Err(Error::BadLength {
            offset: r.offset(),
            what: "data after last payload",
            value: r.remaining(),
        });
    }
    Ok(out)
}

fn emit_chain(payloads: &[&Payload], out: &mut Vec<u8>) -> Result<PayloadType> {
    let n = payloads.len();
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Encrypted(e) => {
                if i + 1 != n {
                    return Err(Error::Unencodable {
                        what: "SK payload that is not last",
                    });
                }
                e.inner_next
            }
            Payload::EncryptedFragment(e) => {
                if i + 1 != n {
                    return Err(Error::Unencodable {
                        what: "SKF payload that is not last",
                    });
                }
                e.inner_next
            }
            _ => payloads
                .get(i + 1)
                .map_or(PayloadType::NoNextPayload, |q| q.payload_type()),
        };
        if let Payload::Unknown {
            payload_type: 0, ..
        } = p
        {
            return Err(Error::Unencodable {
                what: "unknown payload of type 0",
            });
        }
        let start = out.len();
        out.push(next.to_wire());
        out.push(0);
        put_u16(out, 0);
        p.emit_body(out)?;
        patch_len16(out, start + 2, start, "payload length")?;
    }
    Ok(payloads
        .first()
        .map_or(PayloadType::NoNextPayload, |p| p.payload_type()))
}

fn emit_message(header: &IkeHeader, payloads: &[&Payload], out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    let r = (|| {
        header.emit(out);
        let first = emit_chain(payloads, out)?;
        out[start + 16] = first.to_wire();
        let len = u32::try_from(out.len() - start).map_err(|_| Error::Unencodable {
            what: "message length",
        })?;
        out[start + 24..start + 28].copy_from_slice(&len.to_be_bytes());
        Ok(())
    })();
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Where the SK/SKF payload of a serialized message sits.
///
/// All ranges index the buffer they were computed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedLocation {
    /// Associated data for AEAD (RFC 5282 §5.1, RFC 7383 §2.5.3): the IKE
    /// header through the end of the SK generic header (for SKF, through the
    /// Total Fragments field), i.e. every message byte before the IV.
    /// For non-AEAD integrity the ICV covers `aad.start..body.end - icv_len`.
    pub aad: Range<usize>,
    /// IV ‖ ciphertext ‖ ICV: runs to the end of the message.
    pub body: Range<usize>,
    /// Offset of the SK/SKF generic payload header.
    pub payload_offset: usize,
    /// First inner payload type.
    pub inner_next: PayloadType,
    /// `(fragment_number, total_fragments)` for SKF.
    pub fragment: Option<(u16, u16)>,
}

/// Locate the SK or SKF payload in a complete message without copying, so
/// the `ike` crate can verify/decrypt in place. Errors if the message is
/// malformed or has no encrypted payload.
pub fn locate_encrypted(msg: &[u8]) -> Result<EncryptedLocation> {
    let header = IkeHeader::parse(msg)?;
    if header.length as usize != msg.len() {
        return Err(Error::BadLength {
            offset: 24,
            what: "IKE message length",
            value: header.length as usize,
        });
    }
    let mut r = Reader::with_base(&msg[IKE_HEADER_LEN..], IKE_HEADER_LEN);
    let mut next = header.next_payload;
    while next != PayloadType::NoNextPayload {
        let off = r.offset();
        let np = PayloadType::from(r.u8("generic payload header")?);
        r.u8("generic payload header")?;
        let len = r.u16("generic payload header")? as usize;
        if len < GENERIC_HEADER_LEN || len - GENERIC_HEADER_LEN > r.remaining() {
            return Err(Error::BadLength {
                offset: off + 2,
                what: "payload length",
                value: len,
            });
        }
        let mut body = r.sub(len - GENERIC_HEADER_LEN, "payload body")?;
        if next == PayloadType::Encrypted || next == PayloadType::EncryptedFragment {
            let fragment = if next == PayloadType::EncryptedFragment {
                Some((body.u16("SKF header")?, body.u16("SKF header")?))
            } else {
                None
            };
            if !r.is_empty() {
                return Err(Error::Invalid {
                    offset: r.offset(),
                    what: "data after encrypted payload",
                });
            }
            let b = body.offset();
            return Ok(EncryptedLocation {
                aad: 0..b,
                body: b..msg.len(),
                payload_offset: off,
                inner_next: np,
                fragment,
            });
        }
        next = np;
    }
    Err(Error::Invalid {
        offset: r.offset(),
        what: "message without encrypted payload",
    })
}

/// Emit a message whose last payload is SK with a zero-filled body of
/// `body_len` bytes (IV + ciphertext incl. padding + ICV), preceded by the
/// unencrypted `before` payloads (normally none). All lengths are final, so
/// the caller can then take `out[loc.aad]` as AAD and encrypt/fill
/// `out[loc.body]` in place. Ranges are absolute indices into `out`.
pub fn emit_encrypted(
    header: &IkeHeader,
    before: &[Payload],
    inner_next: PayloadType,
    body_len: usize,
    out: &mut Vec<u8>,
) -> Result<EncryptedLocation> {
    let sk = Payload::Encrypted(Encrypted {
        inner_next,
        body: vec![0; body_len],
    });
    let start = out.len();
    let mut refs: Vec<&Payload> = before.iter().collect();
    refs.push(&sk);
    emit_message(header, &refs, out)?;
    let b = out.len() - body_len;
    Ok(EncryptedLocation {
        aad: start..b,
        body: b..out.len(),
        payload_offset: b - GENERIC_HEADER_LEN,
        inner_next,
        fragment: None,
    })
}

/// Emit a message consisting of one SKF payload (RFC 7383) with a
/// zero-filled body, like [`emit_encrypted`]. `inner_next` must be the
/// first inner payload type for fragment 1 and `NoNextPayload` otherwise.
pub fn emit_encrypted_fragment(
    header: &IkeHeader,
    inner_next: PayloadType,
    fragment_number: u16,
    total_fragments: u16,
    body_len: usize,
    out: &mut Vec<u8>,
) -> Result<EncryptedLocation> {
    let skf = Payload::EncryptedFragment(EncryptedFragment {
        inner_next,
        fragment_number,
        total_fragments,
        body: vec![0; body_len],
    });
    let start = out.len();
    emit_message(header, &[&skf], out)?;
    let b = out.len() - body_len;
    Ok(EncryptedLocation {
        aad: start..b,
        body: b..out.len(),
        payload_offset: b - GENERIC_HEADER_LEN - 4,
        inner_next,
        fragment: Some((fragment_number, total_fragments)),
    })
}

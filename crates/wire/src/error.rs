//! The one error type of this crate.
//!
//! Every variant carries the absolute byte offset (into the buffer handed to
//! the top-level parser) where the problem was found, so logs and audit
//! records can point at the offending byte.

use crate::codepoints::NotifyType;

/// A parse or emit failure. Small, `Copy`, comparable in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ended before a fixed-size field or a declared length.
    #[error("truncated {what} at offset {offset}: {needed} more byte(s) needed")]
    Truncated {
        offset: usize,
        what: &'static str,
        needed: usize,
    },
    /// A length field disagrees with the surrounding structure (too small for
    /// its own header, runs past its container, or leaves bytes over).
    #[error("bad length {value} for {what} at offset {offset}")]
    BadLength {
        offset: usize,
        what: &'static str,
        value: usize,
    },
    /// A declared count (proposals' transforms, TS count, Delete SPI count …)
    /// does not match what was found, or a "last substructure" marker lied.
    #[error("{what} at offset {offset}: declared {declared}, found {found}")]
    CountMismatch {
        offset: usize,
        what: &'static str,
        declared: usize,
        found: usize,
    },
    /// IKE major version other than 2 (answer: INVALID_MAJOR_VERSION).
    #[error("unsupported IKE major version {major} at offset {offset}")]
    UnsupportedVersion { offset: usize, major: u8 },
    /// A payload of a type this crate does not know had its critical bit set
    /// (RFC 7296 §2.5: reject the message and answer
    /// UNSUPPORTED_CRITICAL_PAYLOAD carrying `payload_type`).
    #[error("unsupported critical payload type {payload_type} at offset {offset}")]
    UnsupportedCriticalPayload { offset: usize, payload_type: u8 },
    /// A field holds a value its structure does not allow.
    #[error("invalid {what} at offset {offset}")]
    Invalid { offset: usize, what: &'static str },
    /// Emit only: a structure cannot be encoded (too long for its length
    /// field, inconsistent sizes, encrypted payload not last …).
    #[error("cannot encode {what}")]
    Unencodable { what: &'static str },
}

impl Error {
    /// Byte offset of the problem (0 for emit errors).
    pub fn offset(&self) -> usize {
        match *self {
            Error::Truncated { offset, .. }
            | Error::BadLength { offset, .. }
            | Error::CountMismatch { offset, .. }
            | Error::UnsupportedVersion { offset, .. }
            | Error::UnsupportedCriticalPayload { offset, .. }
            | Error::Invalid { offset, .. } => offset,
            Error::Unencodable { .. } => 0,
        }
    }

    /// The Notify an IKE responder should answer a request that failed to
    /// parse with, and its notification data (RFC 7296 §2.5, §2.21, §3.10.1).
    /// Whether to answer at all is the IKE layer's call (e.g. RFC 7296 §1.5:
    /// only answer INVALID_MAJOR_VERSION for a *higher* major version, never
    /// answer a response, rate-limit unauthenticated errors).
    pub fn notify(&self) -> (NotifyType, Vec<u8>) {
        match *self {
            Error::UnsupportedCriticalPayload { payload_type, .. } => {
                (NotifyType::UnsupportedCriticalPayload, vec![payload_type])
            }
            // RFC 7296 §3.10.1: the data is the highest version supported.
            Error::UnsupportedVersion { .. } => (NotifyType::InvalidMajorVersion, vec![0x20]),
            _ => (NotifyType::InvalidSyntax, Vec::new()),
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

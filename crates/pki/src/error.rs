//! The one error type of the crate. Messages are written for an operator:
//! they name the file, the tier or the check that failed, never key material.

use std::path::PathBuf;

use crate::Tier;

/// Everything that can go wrong in the PKI crate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("missing file {0}")]
    MissingFile(PathBuf),
    #[error("bad file {path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("refusing to overwrite existing file {0}")]
    AlreadyExists(PathBuf),
    #[error("{path} has mode {mode:o}: too open (private keys must be 0600, key store directories not writable by others)")]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("certificate signing request refused: {0}")]
    BadCsr(String),
    #[error("malformed certificate or CRL: {0}")]
    Malformed(String),
    #[error("wrong certificate profile: expected {expected}, found {found}")]
    WrongTier { expected: String, found: String },
    #[error("certificate expired (notAfter {not_after_unix}, now {now_unix})")]
    Expired { not_after_unix: i64, now_unix: i64 },
    #[error("certificate not yet valid (notBefore {not_before_unix}, now {now_unix})")]
    NotYetValid { not_before_unix: i64, now_unix: i64 },
    #[error("certificate serial {serial} is revoked")]
    Revoked { serial: u64 },
    #[error("issued by an unknown CA ({issuer}); expected {expected}")]
    UnknownIssuer { issuer: String, expected: String },
    #[error("signature does not verify")]
    BadSignature,
    #[error("algorithm not accepted (R-PKI-5): {0}")]
    UnsupportedAlgorithm(String),
    #[error("wrong passphrase for key store {0}")]
    WrongPassphrase(PathBuf),
    #[error("a {0} key already exists in the key store; use replace() to rotate it")]
    KeyExists(Tier),
    #[error("no {0} key in the key store; generate one first")]
    NoKey(Tier),
    #[error("the certificate's public key does not match the {0} key in the key store")]
    KeyMismatch(Tier),
    #[error("PKCS#11 error: {0}")]
    Pkcs11(String),
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}

impl PkiError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            PkiError::MissingFile(path)
        } else if source.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::AlreadyExists(path)
        } else {
            PkiError::Io { path, source }
        }
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Crypto(format!("certificate generation: {e}"))
    }
}

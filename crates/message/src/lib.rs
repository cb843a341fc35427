//! Secure store-and-forward messages (R-SVC-4) as standard CMS, so that OpenSSL or any
//! S/MIME tool can open them too:
//!
//! * SignedData (RFC 5652 §5) from the sender's service key, then
//! * AuthEnvelopedData (RFC 5083) with AES-256-GCM (RFC 5084) around it,
//! * one RecipientInfo per recipient: ECDH P-256/P-384 key agreement (RFC 5753,
//!   dhSinglePass-stdDH-sha256kdf, AES-256 key wrap RFC 3394/3565) or RSA-OAEP key
//!   transport (RFC 3560/8017).
//!
//! The signed message is carried as id-data inside the envelope (as `openssl cms -sign |
//! openssl cms -encrypt` does), so that `openssl cms -decrypt` gives the SignedData
//! that `openssl cms -verify` checks. We also read proper nesting (content type
//! id-signedData inside).
//!
//! Why these libraries: the RustCrypto `cms` crate gives the ASN.1 of RFC 5652 (and its
//! builder encrypts only, no decryption, no AuthEnvelopedData, no key agreement), so the
//! few missing types are in [`asn1`] with `der`'s derive. For the primitives we use
//! RustCrypto too (`p256`/`p384` ECDH and ECDSA, `rsa` OAEP, `aes-gcm`, `aes-kw`, `sha1`/
//! `sha2`): `ring`, already in the workspace, cannot do ECDH with a static (stored)
//! private key nor RSA-OAEP, both of which a recipient needs to open a message, and
//! aws-lc-rs would add a C build for no gain here. RustCrypto shares the `der`/`spki`
//! types with `cms`, so keys and certificates go between them without re-encoding.
//!
//! The crate is sans-IO: bytes in, bytes out; the time and the random source are given
//! by the caller.
#![forbid(unsafe_code)]

pub mod asn1;
pub mod gcm;
pub mod kdf;
pub mod keys;
pub mod keywrap;
pub mod oids;
mod open;
mod seal;
mod sign;
pub mod stream;

/// The ASN.1 crates our types come from, so callers use the very same versions.
pub use {der, rand_core, spki, x509_cert};

pub use keys::{HashAlg, KeyKind, MessageSigner, RecipientKey, SoftKey};
pub use open::{check_envelope, decrypt, open, Opened};
pub use seal::{seal, sign_and_seal, Recipient, SealOptions};
pub use sign::{sign, verify, SignatureReport, SignerStatus, VerifyOptions};
pub use stream::{
    check_envelope_stream, digest_reader, open_stream, seal_stream, SealStream, StreamOpened,
};

/// What can go wrong; each one says what to look at.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the CMS data is truncated (it ends after {at} of the bytes it announces) / CMS データが途中で切れています")]
    Truncated { at: usize },
    #[error("the CMS data is malformed: {0} / CMS データの形式が不正です")]
    Malformed(String),
    #[error("unknown or unsupported {what} (OID {oid}) / 未対応の{what}です (OID {oid})")]
    UnknownOid { what: &'static str, oid: String },
    #[error("unsupported: {0} / 未対応です")]
    Unsupported(String),
    #[error("none of the given keys is a recipient of this message / このメッセージの受信者の鍵がありません")]
    NotARecipient,
    #[error("the key-encryption key does not unwrap the content key (wrong key or modified message) / 鍵を復号できません")]
    KeyDecrypt,
    #[error("the content does not authenticate: the message was modified / メッセージが改ざんされています")]
    ContentModified,
    #[error("the signature does not verify: the message or signature was modified / 署名が検証できません")]
    BadSignature,
    #[error("the signer's certificate is not in the message / 署名者の証明書がありません")]
    SignerUnknown,
    #[error("the key does not fit this algorithm / 鍵の種類が合いません")]
    WrongKeyType,
    #[error("the private key does not belong to the certificate / 秘密鍵と証明書が一致しません")]
    KeyMismatch,
    #[error("no recipients / 受信者がありません")]
    NoRecipients,
    #[error("signing failed: {0} / 署名に失敗しました")]
    Sign(String),
    #[error("the key store failed: {0} / 鍵ストアのエラーです")]
    KeyStore(String),
}

/// Maps `der` errors to ours: truncation is said as such, all else is "malformed".
pub(crate) fn der_err(what: &str) -> impl Fn(der::Error) -> Error + '_ {
    move |e: der::Error| match e.kind() {
        der::ErrorKind::Incomplete { actual_len, .. } => Error::Truncated {
            at: u32::from(actual_len) as usize,
        },
        _ => Error::Malformed(format!("{what}: {e}")),
    }
}

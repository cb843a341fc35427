//! dodvpn-pki: the two-tier PKI of ISO/TR 11636 D.5/D.8 (R-PKI-1 to R-PKI-5).
//!
//! * R-PKI-1 tier 1, *device certificates*: issued by the device CA to a key
//!   generated inside the device's key store ([`KeyStore`]).
//! * R-PKI-2 tier 2, *service certificates*: issued by the service CA to an
//!   independent key; used for IKE and connection applications.
//! * R-PKI-3 key stores: [`FileKeyStore`] (encrypted at rest, 0600) and
//!   [`Pkcs11KeyStore`] (keys generated on a token, never extractable). A key
//!   is addressed only by its [`Tier`]; no API exports a private key.
//! * R-PKI-4 revocation: [`Pki::crl_pem`], [`crl_revoked_serials`] and the
//!   `is_revoked` hook of [`validate`].
//! * R-PKI-5 algorithms and profiles (decided here): ECDSA P-256 / SHA-256 for
//!   everything we issue; P-384 and RSA-3072+ keys with SHA-256/384/512 are
//!   accepted on validation; SHA-1 and smaller RSA keys are refused.
//!
//! # Certificate profiles
//!
//! Every certificate we issue carries exactly one certificate policy OID under
//! a private arc, so a certificate of one profile can never be accepted as
//! another (validation checks the OID before anything else). The arc
//! `1.3.6.1.4.1.59999` is a placeholder until the project registers its own
//! IANA Private Enterprise Number.
//!
//! | profile | policy OID | issued by | EKU | SAN |
//! |---|---|---|---|---|
//! | device (tier 1) | `1.3.6.1.4.1.59999.11636.1.1` | device CA | clientAuth | URI `urn:dodvpn:device:<serial>` |
//! | service (tier 2) | `1.3.6.1.4.1.59999.11636.1.2` | service CA | clientAuth, serverAuth | URI `urn:dodvpn:service:<device_id>`, DNS `<device_id>.dodvpn` |
//! | centre TLS | `1.3.6.1.4.1.59999.11636.1.3` | root | serverAuth | the centre's DNS names / IPs |
//! | centre signing | `1.3.6.1.4.1.59999.11636.1.4` | root | (none) | (none) |
//!
//! The root and both tier CAs carry `anyPolicy` (2.5.29.32.0), so standard
//! RFC 5280 policy processing accepts the chain; the tier CAs have
//! `pathLenConstraint = 0`, so they can only issue end-entity certificates.

mod ca;
mod check;
mod der;
mod error;
mod fsutil;
mod keystore;
pub mod log_key;
mod tls;

pub use ca::{IssuedCert, Pki, PkiPaths, RevokedEntry};
pub use check::{
    check_certificate_key, crl_info, crl_revoked_serials, inspect, validate, validate_profile,
    verify_blob, CertInfo, CrlInfo,
};
pub use error::PkiError;
pub use keystore::file::FileKeyStore;
pub use keystore::pkcs11::Pkcs11KeyStore;
pub use keystore::{csr_pem, KeyStore};
pub use log_key::LogKey;
pub use tls::client_cert_resolver;

use serde::{Deserialize, Serialize};

/// The two certificate tiers of R-PKI-1/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// Tier 1: device certificate ("which device").
    Device,
    /// Tier 2: service certificate ("right to use the service").
    Service,
}

impl Tier {
    /// 1 or 2, as in the TR.
    pub fn number(self) -> u8 {
        match self {
            Tier::Device => 1,
            Tier::Service => 2,
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tier::Device => f.write_str("tier-1 (device)"),
            Tier::Service => f.write_str("tier-2 (service)"),
        }
    }
}

/// The end-entity certificate profiles, told apart by their policy OID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Profile {
    Device,
    Service,
    CentreTls,
    CentreSigning,
    /// A mailbox's encryption certificate (R-SVC-4): key agreement only, no TLS or IKE
    /// use, so a stolen mailbox key never authenticates a device.
    Mailbox,
}

/// Private arc of the dodvpn certificate policies (see the module docs).
pub const POLICY_ARC: &[u64] = &[1, 3, 6, 1, 4, 1, 59999, 11636, 1];

impl Profile {
    /// Last arc under [`POLICY_ARC`].
    fn arc(self) -> u64 {
        match self {
            Profile::Device => 1,
            Profile::Service => 2,
            Profile::CentreTls => 3,
            Profile::CentreSigning => 4,
            Profile::Mailbox => 5,
        }
    }

    /// The policy OID arcs of this profile.
    pub fn policy_oid(self) -> Vec<u64> {
        let mut v = POLICY_ARC.to_vec();
        v.push(self.arc());
        v
    }

    /// The policy OID in dotted form, e.g. `1.3.6.1.4.1.59999.11636.1.1`.
    pub fn policy_oid_string(self) -> String {
        self.policy_oid()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(".")
    }

    pub(crate) fn from_policy_oid_string(s: &str) -> Option<Profile> {
        [
            Profile::Device,
            Profile::Service,
            Profile::CentreTls,
            Profile::CentreSigning,
            Profile::Mailbox,
        ]
        .into_iter()
        .find(|p| p.policy_oid_string() == s)
    }

    /// The tier of a device or service profile.
    pub fn tier(self) -> Option<Tier> {
        match self {
            Profile::Device => Some(Tier::Device),
            Profile::Service => Some(Tier::Service),
            _ => None,
        }
    }
}

impl From<Tier> for Profile {
    fn from(t: Tier) -> Profile {
        match t {
            Tier::Device => Profile::Device,
            Tier::Service => Profile::Service,
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Profile::Device => "device (tier 1)",
            Profile::Service => "service (tier 2)",
            Profile::CentreTls => "centre TLS",
            Profile::CentreSigning => "centre signing",
            Profile::Mailbox => "mailbox encryption",
        };
        f.write_str(name)
    }
}

/// SHA-256 fingerprint of a DER blob, lowercase hex.
pub fn fingerprint_sha256_hex(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

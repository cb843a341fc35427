//! The DOD-VPN service provider's control plane ("centre", ISO/TR 11636 D.3–D.6).
//!
//! It owns the two-tier PKI (R-PKI), runs enrolment steps a–l (R-ENR), keeps groups
//! and policies and turns connection applications into signed connection info
//! (R-POL), pushes changes to devices (R-POL-5) and keeps the hash-chained audit log
//! (R-AUD-1). HTTPS with rustls; devices authenticate with mutual TLS.

pub mod api;
pub mod auth;
pub mod backup;
pub mod chain_guard;
pub mod checksheets;
pub mod db;
pub mod device_state;
pub mod error;
pub mod grants;
pub mod hub;
pub mod init;
pub mod mailbox;
pub mod mapping;
pub mod metrics;
pub mod refusals;
pub mod relays;
pub mod server;
pub mod tlog;
pub mod tsa_client;

use std::sync::Arc;

pub use init::{CenterConfig, InitReport};

pub struct Center {
    pub db: Arc<db::Db>,
    pub pki: dodvpn_pki::Pki,
    pub hub: Arc<hub::Hub>,
    /// Verifies the audit chain at start and while running (chain_guard.rs).
    pub chain: Arc<chain_guard::ChainGuard>,
    /// Aggregated audit of refused calls and handshakes (refusals.rs).
    pub refusals: Arc<refusals::Refusals>,
    /// Signs checkpoints of the audit Merkle tree (tlog.rs, R-AUD-4).
    pub tlog: Arc<tlog::Signer>,
    /// Where messages' ciphertext lives, their expiry and the quota (mailbox.rs, R-SVC-4).
    pub mailbox: mailbox::MailboxConfig,
    /// The provider relay, if one is configured (relays.rs, issue 19).
    pub relay: Option<relays::RelayConfig>,
    /// Bounds introductions and relay allocations per pair of devices (relays.rs).
    pub pacer: relays::Pacer,
}

/// A short random identifier with a readable prefix, e.g. `org-3f9a0c1d2e4b`.
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!("{prefix}-{}", hex::encode(b))
}

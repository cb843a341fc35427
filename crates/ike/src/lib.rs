//! # dodvpn-ike
//!
//! Sans-IO IKEv2 (RFC 7296) in the quinn-proto style: an [`Endpoint`] owns
//! IKE SAs and is driven with [`Endpoint::handle`] (a received datagram),
//! [`Endpoint::handle_timeout`] (time passed), and drained with
//! [`Endpoint::poll_transmit`], [`Endpoint::poll_event`] and
//! [`Endpoint::poll_timeout`]. No sockets, no clock: time is passed in.
//!
//! * [`crypto`]: PRF / prf+, DH groups 19, 20, 31, SK payload protection.
//! * [`keys`]: SKEYSEED, SK_*, child KEYMAT, IKE rekey SKEYSEED.
//! * [`proposal`]: strongSwan-style proposal strings, selection.
//! * [`auth`]: PSK and RFC 7427 signature AUTH, [`Signer`], [`PeerValidator`].
//! * [`nat`]: NAT detection hashes.
//! * [`child`]: child SA records, traffic selector narrowing.
//! * [`sa`]: the IKE SA state machine, [`endpoint`]: routing, cookies.
//!
//! NAT-T: a [`Transmit`] with `nat_t = true` must be sent with the 4-byte
//! non-ESP marker prepended (the I/O layer adds it); received datagrams on
//! the NAT-T port are handed to [`Endpoint::handle`] with the marker already
//! stripped.

#![forbid(unsafe_code)]

pub mod auth;
pub mod child;
pub mod crypto;
pub mod endpoint;
pub mod fragment;
pub mod keys;
pub mod nat;
pub mod proposal;
mod rng;
pub mod sa;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use auth::{
    signer_from_pkcs8, EcdsaP256Signer, EcdsaP384Signer, LocalAuth, PeerValidator, RemoteAuth,
    RsaScheme, RsaSigner, Signer,
};
pub use child::{ChildSa, RekeyState};
pub use crypto::{Group, IkeCipher, Integ, Prf};
pub use dodvpn_esp::Aead;
pub use endpoint::Endpoint;
pub use proposal::{EspSuite, IkeSuite};
pub use sa::{IkeSa, State};

use dodvpn_wire::{Identification, TsRange};

/// Errors of this crate (internal; the state machine turns them into
/// dropped datagrams, notifies or events).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("crypto: {0}")]
    Crypto(&'static str),
    #[error("integrity check failed")]
    Integrity,
    #[error("invalid KE payload")]
    BadKe,
    #[error("wire: {0}")]
    Wire(#[from] dodvpn_wire::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Handle of an IKE SA: our own IKE SPI.
pub type SaId = u64;

/// Configuration of an endpoint (one peer profile; see the crate docs).
#[derive(Debug, Clone)]
pub struct Config {
    pub ike_proposals: Vec<IkeSuite>,
    pub esp_proposals: Vec<EspSuite>,
    pub local_id: Identification,
    /// Expected peer identity; `None` accepts any (the validator decides).
    pub remote_id: Option<Identification>,
    pub local_auth: LocalAuth,
    pub remote_auth: RemoteAuth,
    /// Our side of the tunnel (TSi when initiating).
    pub local_ts: Vec<TsRange>,
    /// The peer's side.
    pub remote_ts: Vec<TsRange>,
    /// Always move to UDP encapsulation (fakes the NAT_DETECTION_SOURCE_IP hash).
    pub force_encap: bool,
    /// First retransmission timeout; doubles on each try.
    pub retransmit_base: Duration,
    /// Transmissions of a request before the peer is declared dead.
    pub retransmit_tries: u32,
    /// Idle time after which a liveness check (DPD) is sent.
    pub dpd_delay: Duration,
    /// NAT keepalive interval when we are behind a NAT (RFC 3948 §4).
    pub keepalive_interval: Duration,
    /// Half-open SA count above which the responder demands a COOKIE.
    pub cookie_threshold: usize,
    /// A half-open responder SA is dropped after this.
    pub half_open_timeout: Duration,
    /// The NAT-T port (datagrams to this port carry the non-ESP marker).
    pub nat_t_port: u16,
    /// Rekey a child SA this long after it was created (RFC 7296 §2.8); `None` = never.
    pub rekey_time: Option<Duration>,
    /// Hard lifetime of a child SA: one not rekeyed by then is deleted; `None` = none.
    pub life_time: Option<Duration>,
    /// Rekey the IKE SA this long after it was created; `None` = never.
    pub ike_rekey_time: Option<Duration>,
    /// Hard lifetime of an IKE SA: one not rekeyed by then is deleted; `None` = none.
    pub ike_life_time: Option<Duration>,
    /// Rekey up to this much earlier than `rekey_time` / `ike_rekey_time`, at random
    /// per SA (at most half the rekey time), so that two peers with the same policy
    /// rarely rekey at the same moment (§2.8.1).
    pub rekey_jitter: Duration,
    /// Intermediate CA certificates (DER) sent after our own certificate, the one
    /// our certificate's issuer first (RFC 7296 §3.6). Empty: only our certificate.
    pub local_chain: Vec<Vec<u8>>,
    /// Offer and accept IKE fragmentation (RFC 7383).
    pub fragmentation: bool,
    /// Offer and accept MOBIKE (RFC 4555): the original initiator moves the SA
    /// to a new address of its own with UPDATE_SA_ADDRESSES instead of a new
    /// IKE SA. Off: an address change means a new IKE SA (what a peer without
    /// MOBIKE needs).
    pub mobike: bool,
    /// Largest IP datagram an encrypted IKE message may take before it is cut into
    /// fragments (IP and UDP headers included); at least
    /// [`fragment::MIN_FRAGMENT_SIZE`].
    pub fragment_size: usize,
    /// Limits on reassembling the peer's fragments.
    pub fragment_limits: fragment::Limits,
    /// A responder that answered IKE_SA_INIT before it knew who the peer is (an
    /// address no connection names) picks the peer's own configuration here, by
    /// the identity in IKE_AUTH, before it checks AUTH. `None`: this configuration.
    pub select_by_identity: Option<PeerSelector>,
}

/// Maps a peer's IDi to the configuration its IKE SA continues with; `None`
/// refuses the peer (AUTHENTICATION_FAILED).
#[derive(Clone)]
pub struct PeerSelector(pub Arc<SelectFn>);

/// The function inside a [`PeerSelector`].
pub type SelectFn = dyn Fn(&Identification) -> Option<Arc<Config>> + Send + Sync;

impl core::fmt::Debug for PeerSelector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PeerSelector(..)")
    }
}

impl Config {
    /// Defaults: 0.5 s × 2 retransmits, 5 tries, DPD 30 s, keepalive 20 s,
    /// cookies above 16 half-open SAs, NAT-T port 4500; child SAs rekeyed after
    /// 1 h (deleted after 1 h 6 min), IKE SAs after 4 h (deleted after 4 h 24 min),
    /// no jitter; IKE fragmentation offered, fragments of at most 1280 bytes;
    /// MOBIKE offered.
    pub fn new(
        ike_proposals: Vec<IkeSuite>,
        esp_proposals: Vec<EspSuite>,
        local_id: Identification,
        local_auth: LocalAuth,
        remote_auth: RemoteAuth,
    ) -> Config {
        Config {
            ike_proposals,
            esp_proposals,
            local_id,
            remote_id: None,
            local_auth,
            remote_auth,
            local_ts: vec![TsRange::any(false)],
            remote_ts: vec![TsRange::any(false)],
            force_encap: false,
            retransmit_base: Duration::from_millis(500),
            retransmit_tries: 5,
            dpd_delay: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(20),
            cookie_threshold: 16,
            half_open_timeout: Duration::from_secs(30),
            nat_t_port: 4500,
            rekey_time: Some(Duration::from_secs(3600)),
            life_time: Some(Duration::from_secs(3960)),
            ike_rekey_time: Some(Duration::from_secs(4 * 3600)),
            ike_life_time: Some(Duration::from_secs(4 * 3960)),
            rekey_jitter: Duration::ZERO,
            local_chain: Vec::new(),
            fragmentation: true,
            mobike: true,
            fragment_size: fragment::DEFAULT_FRAGMENT_SIZE,
            fragment_limits: fragment::Limits::default(),
            select_by_identity: None,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
    /// Prepend the non-ESP marker (IKE over the NAT-T port). False for
    /// plain port-500 IKE and for NAT keepalives (a single 0xFF byte).
    pub nat_t: bool,
}

/// Why an IKE SA went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We deleted it.
    LocalDelete,
    /// The peer sent DELETE.
    PeerDeleted,
    /// No answer after the retransmission schedule (DPD or any request).
    DeadPeer,
    /// Negotiation failed (error notify or bad answer).
    Failed(String),
    /// Replaced by a rekeyed IKE SA.
    Rekeyed,
    /// Half-open SA timed out.
    HalfOpenTimeout,
}

/// Everything the I/O layer needs to install one child SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaInfo {
    pub ike_sa: SaId,
    /// Our inbound SPI.
    pub local_spi: u32,
    /// Our outbound SPI (the peer's inbound).
    pub remote_spi: u32,
    pub aead: Aead,
    pub esn: bool,
    /// key || salt for `dodvpn_esp::InboundSa::new`.
    pub keymat_in: Vec<u8>,
    /// key || salt for `dodvpn_esp::OutboundSa::new`.
    pub keymat_out: Vec<u8>,
    pub local_ts: Vec<TsRange>,
    pub remote_ts: Vec<TsRange>,
    pub local_addr: SocketAddr,
    pub remote_addr: SocketAddr,
    /// ESP in UDP (RFC 3948) on the NAT-T port.
    pub udp_encap: bool,
    /// Our inbound SPI of the child SA this one replaces (rekey).
    pub rekey_of: Option<u32>,
    /// Send with this SA at once. False when the peer started the rekey: it installs
    /// its inbound SA only when our answer arrives, so we keep sending on the old SA
    /// until it is deleted (make-before-break, RFC 7296 §2.8).
    pub switch_outbound: bool,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    IkeSaUp {
        sa: SaId,
        local: SocketAddr,
        remote: SocketAddr,
        peer_id: Identification,
        nat_t: bool,
    },
    IkeSaDown {
        sa: SaId,
        reason: DownReason,
    },
    /// The SA's addresses moved (RFC 4555 UPDATE_SA_ADDRESSES, either side, or
    /// a NAT's new mapping seen on an authentic request, RFC 7296 §2.23): ESP
    /// of its child SAs goes to `remote` from now on.
    AddressesChanged {
        sa: SaId,
        local: SocketAddr,
        remote: SocketAddr,
        nat_t: bool,
    },
    /// The IKE SA `old` was rekeyed into `new` (child SAs moved over).
    IkeSaRekeyed {
        old: SaId,
        new: SaId,
    },
    AuthFailed {
        sa: SaId,
        reason: String,
    },
    ChildSaUp(ChildSaInfo),
    /// Creating a child SA failed (error notify or no acceptable proposal).
    ChildSaFailed {
        sa: SaId,
        reason: String,
    },
    ChildSaDeleted {
        sa: SaId,
        local_spi: u32,
        remote_spi: u32,
    },
}

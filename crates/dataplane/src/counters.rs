//! Drop counters by reason and per-SA traffic statistics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Outbound: no SPD entry (no SA, no trap) for the inner destination.
    NoSaOutbound,
    /// Outbound: the SPD says discard.
    PolicyDiscard,
    /// Inbound: ESP datagram whose SPI is not in the SAD.
    NoSaInbound,
    /// Inbound: sequence number already seen.
    Replay,
    /// Inbound: sequence number left of the replay window.
    TooOld,
    /// Inbound: ICV verification failed.
    BadTag,
    /// Inbound: shorter than an ESP packet.
    Truncated,
    /// Inbound: bad ESP padding.
    BadPadding,
    /// Inbound: next header not IPv4/IPv6.
    BadNextHeader,
    /// Inbound: authenticated dummy packet (next header 59).
    Dummy,
    /// Inbound: RFC 6040 outer CE over inner Not-ECT.
    EcnCe,
    /// UDP 4500 payload that is neither ESP, IKE nor keepalive.
    InvalidUdp,
    /// NAT keepalive received (not an error; counted here for visibility).
    Keepalive,
    /// IKE datagram dropped because the IKE channel was full or gone.
    IkeQueueFull,
    /// TUN packet that is not IPv4/IPv6.
    NotIp,
    /// Trap queue full: packet dropped while waiting for an SA.
    TrapOverflow,
    /// Trap queue entry older than the queue's lifetime.
    TrapExpired,
    /// Sealing failed (sequence space exhausted, buffer).
    SealError,
    /// Writing to the TUN device failed.
    TunWrite,
    /// Sending on the UDP socket failed.
    UdpSend,
    /// Inbound: decrypted packet with an address outside the SA's traffic
    /// selectors (transit between peers, spoofed source), or whose IP header
    /// cannot be read.
    InboundSelector,
    /// Inbound: decrypted packet inside the selectors but not an allowed
    /// service (protocol, port, host, or a connection opened by the wrong side).
    InboundFiltered,
    /// Outbound: packet routed to an SA whose selectors do not cover its
    /// source or destination (or whose IP header cannot be read).
    OutboundSelector,
    /// Outbound: packet inside the selectors but not an allowed service.
    OutboundFiltered,
}

impl DropReason {
    /// All reasons, in counter order.
    pub const ALL: [DropReason; 24] = [
        DropReason::NoSaOutbound,
        DropReason::PolicyDiscard,
        DropReason::NoSaInbound,
        DropReason::Replay,
        DropReason::TooOld,
        DropReason::BadTag,
        DropReason::Truncated,
        DropReason::BadPadding,
        DropReason::BadNextHeader,
        DropReason::Dummy,
        DropReason::EcnCe,
        DropReason::InvalidUdp,
        DropReason::Keepalive,
        DropReason::IkeQueueFull,
        DropReason::NotIp,
        DropReason::TrapOverflow,
        DropReason::TrapExpired,
        DropReason::SealError,
        DropReason::TunWrite,
        DropReason::UdpSend,
        DropReason::InboundSelector,
        DropReason::InboundFiltered,
        DropReason::OutboundSelector,
        DropReason::OutboundFiltered,
    ];

    /// Stable snake_case name (used in stats output).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NoSaOutbound => "no_sa_outbound",
            DropReason::PolicyDiscard => "policy_discard",
            DropReason::NoSaInbound => "no_sa_inbound",
            DropReason::Replay => "replay",
            DropReason::TooOld => "too_old",
            DropReason::BadTag => "bad_tag",
            DropReason::Truncated => "truncated",
            DropReason::BadPadding => "bad_padding",
            DropReason::BadNextHeader => "bad_next_header",
            DropReason::Dummy => "dummy",
            DropReason::EcnCe => "ecn_ce",
            DropReason::InvalidUdp => "invalid_udp",
            DropReason::Keepalive => "keepalive",
            DropReason::IkeQueueFull => "ike_queue_full",
            DropReason::NotIp => "not_ip",
            DropReason::TrapOverflow => "trap_overflow",
            DropReason::TrapExpired => "trap_expired",
            DropReason::SealError => "seal_error",
            DropReason::TunWrite => "tun_write",
            DropReason::UdpSend => "udp_send",
            DropReason::InboundSelector => "inbound_selector",
            DropReason::InboundFiltered => "inbound_filtered",
            DropReason::OutboundSelector => "outbound_selector",
            DropReason::OutboundFiltered => "outbound_filtered",
        }
    }

    /// The drop reason for a refused [`Verdict`](crate::filter::Verdict) in
    /// `dir` (`None` for [`Verdict::Allow`](crate::filter::Verdict::Allow)).
    pub fn from_verdict(
        dir: crate::filter::Direction,
        v: crate::filter::Verdict,
    ) -> Option<DropReason> {
        use crate::filter::{Direction as D, Verdict as V};
        match (dir, v) {
            (_, V::Allow) => None,
            (D::Inbound, V::OutsideSelectors | V::NotIp) => Some(DropReason::InboundSelector),
            (D::Inbound, V::NoRule) => Some(DropReason::InboundFiltered),
            (D::Outbound, V::OutsideSelectors | V::NotIp) => Some(DropReason::OutboundSelector),
            (D::Outbound, V::NoRule) => Some(DropReason::OutboundFiltered),
        }
    }

    /// The drop reason for an ESP open/seal error.
    pub fn from_esp(e: &dodvpn_esp::Error) -> DropReason {
        use dodvpn_esp::Error as E;
        match e {
            E::Replay { .. } => DropReason::Replay,
            E::TooOld { .. } => DropReason::TooOld,
            E::BadTag => DropReason::BadTag,
            E::Truncated { .. } => DropReason::Truncated,
            E::BadPadding => DropReason::BadPadding,
            E::BadNextHeader(_) => DropReason::BadNextHeader,
            E::DummyPacket => DropReason::Dummy,
            E::WrongSpi { .. } => DropReason::NoSaInbound,
            _ => DropReason::SealError,
        }
    }
}

/// Lock-free drop counters, one per [`DropReason`].
#[derive(Debug, Default)]
pub struct DropCounters {
    counts: [AtomicU64; DropReason::ALL.len()],
}

impl DropCounters {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }
    /// Count one drop.
    #[inline]
    pub fn inc(&self, reason: DropReason) {
        self.add(reason, 1);
    }
    /// Count `n` drops.
    #[inline]
    pub fn add(&self, reason: DropReason, n: u64) {
        if n != 0 {
            self.counts[reason as usize].fetch_add(n, Relaxed);
        }
    }
    /// Current value for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize].load(Relaxed)
    }
    /// All reasons with their current values.
    pub fn snapshot(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().map(|&r| (r, self.get(r))).collect()
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Monotonic nanoseconds since the process-wide epoch (never 0).
#[inline]
pub(crate) fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64 + 1
}

/// Per-SA packet/byte counters and last-activity time (for idle timeout).
#[derive(Debug, Default)]
pub struct SaStats {
    packets: AtomicU64,
    bytes: AtomicU64,
    last_ns: AtomicU64,
}

impl SaStats {
    /// Record `packets` packets of `bytes` inner bytes, now.
    #[inline]
    pub fn record(&self, packets: u64, bytes: u64) {
        self.record_at(packets, bytes, now_ns());
    }
    #[inline]
    pub(crate) fn record_at(&self, packets: u64, bytes: u64, now_ns: u64) {
        self.packets.fetch_add(packets, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        self.last_ns.store(now_ns, Relaxed);
    }
    /// Packets counted.
    pub fn packets(&self) -> u64 {
        self.packets.load(Relaxed)
    }
    /// Inner bytes counted.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
    /// When the last packet went through, if any.
    pub fn last_activity(&self) -> Option<Instant> {
        match self.last_ns.load(Relaxed) {
            0 => None,
            ns => Some(epoch() + Duration::from_nanos(ns - 1)),
        }
    }
    /// Time since the last packet (or since `created` if none).
    pub fn idle_for(&self, created: Instant) -> Duration {
        self.last_activity().unwrap_or(created).elapsed()
    }
}

//! Security Association Database (inbound, by SPI) and Security Policy
//! Database (outbound, longest-prefix match on the inner destination),
//! published as one immutable snapshot through `arc-swap`: the data path
//! loads a snapshot per batch without locks; writers (the IKE layer, rare)
//! copy, modify and swap.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, Guard};
use dodvpn_esp::{InboundSa, OutboundSa};
use ipnet::IpNet;

use crate::counters::SaStats;
use crate::filter::PacketFilter;
use crate::spd::PrefixTable;
use crate::trap::{TrapConfig, TrapQueue};

/// An installed outbound SA with its peer.
#[derive(Debug)]
pub struct OutboundEntry {
    /// The SA (the mutex is held only for one seal).
    pub sa: Mutex<OutboundSa>,
    /// Outer destination (the peer's UDP 4500 address). It moves when the peer's
    /// address does (MOBIKE, RFC 4555; a NAT's new mapping), under live traffic.
    peer: ArcSwap<SocketAddr>,
    /// Packets/bytes sealed, last activity.
    pub stats: SaStats,
    /// When it was installed.
    pub created: Instant,
    spi: u32,
    filter: Option<Arc<PacketFilter>>,
}

impl OutboundEntry {
    /// A new entry (no filter: everything the SPD sends here is sealed).
    pub fn new(sa: OutboundSa, peer: SocketAddr) -> Self {
        Self::with_filter(sa, peer, None)
    }
    /// A new entry whose packets are checked against `filter`
    /// ([`Direction::Outbound`](crate::filter::Direction::Outbound)) before sealing.
    pub fn with_filter(
        sa: OutboundSa,
        peer: SocketAddr,
        filter: Option<Arc<PacketFilter>>,
    ) -> Self {
        let spi = sa.spi();
        Self {
            sa: Mutex::new(sa),
            peer: ArcSwap::from_pointee(peer),
            stats: SaStats::default(),
            created: Instant::now(),
            spi,
            filter,
        }
    }
    /// SPI (the peer's inbound SPI).
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// Where its ESP goes now.
    #[inline]
    pub fn peer(&self) -> SocketAddr {
        **self.peer.load()
    }
    /// Send its ESP to `peer` from the next packet on (the SA and its sequence
    /// numbers stay).
    pub fn set_peer(&self, peer: SocketAddr) {
        self.peer.store(Arc::new(peer));
    }
    /// The filter checked before sealing, if any.
    #[inline]
    pub fn filter(&self) -> Option<&Arc<PacketFilter>> {
        self.filter.as_ref()
    }
}

/// An installed inbound SA.
#[derive(Debug)]
pub struct InboundEntry {
    /// The SA (the mutex is held only for one open).
    pub sa: Mutex<InboundSa>,
    /// Packets/bytes opened, last activity.
    pub stats: SaStats,
    /// When it was installed.
    pub created: Instant,
    spi: u32,
    filter: Option<Arc<PacketFilter>>,
}

impl InboundEntry {
    /// A new entry (no filter: every authentic packet goes to the TUN).
    pub fn new(sa: InboundSa) -> Self {
        Self::with_filter(sa, None)
    }
    /// A new entry whose decrypted packets are checked against `filter`
    /// ([`Direction::Inbound`](crate::filter::Direction::Inbound)) before
    /// they reach the TUN.
    pub fn with_filter(sa: InboundSa, filter: Option<Arc<PacketFilter>>) -> Self {
        let spi = sa.spi();
        Self {
            sa: Mutex::new(sa),
            stats: SaStats::default(),
            created: Instant::now(),
            spi,
            filter,
        }
    }
    /// Our SPI.
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// The filter checked after opening, if any.
    #[inline]
    pub fn filter(&self) -> Option<&Arc<PacketFilter>> {
        self.filter.as_ref()
    }
}

/// A trap selector: no SA yet, packets wait in the queue.
#[derive(Debug)]
pub struct Trap {
    /// The selector (destination prefix) this trap covers.
    pub selector: IpNet,
    /// Waiting packets.
    pub queue: Mutex<TrapQueue>,
}

impl Trap {
    /// A new trap for `selector`.
    pub fn new(selector: IpNet, cfg: TrapConfig) -> Self {
        Self {
            selector,
            queue: Mutex::new(TrapQueue::new(cfg)),
        }
    }
}

/// What the SPD says to do with an outbound packet.
#[derive(Debug, Clone)]
pub enum SpdAction {
    /// Seal with this SA and send to its peer.
    Protect(Arc<OutboundEntry>),
    /// Queue and raise an Acquire.
    Trap(Arc<Trap>),
    /// Drop (counted as policy discard).
    Discard,
}

/// The outbound SPD: destination prefix → action.
pub type Spd = PrefixTable<SpdAction>;

/// The inbound SAD: SPI → SA.
pub type Sad = HashMap<u32, Arc<InboundEntry>>;

/// One consistent snapshot of SPD + SAD.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Outbound policies.
    pub spd: Spd,
    /// Inbound SAs.
    pub sad: Sad,
}

impl Tables {
    /// SPD lookup for an inner destination.
    #[inline]
    pub fn outbound(&self, dst: IpAddr) -> Option<&SpdAction> {
        self.spd.lookup(dst)
    }
    /// SAD lookup by SPI.
    #[inline]
    pub fn inbound(&self, spi: u32) -> Option<&Arc<InboundEntry>> {
        self.sad.get(&spi)
    }
}

/// Outbound SAs with their selectors.
pub type OutboundList = Vec<(IpNet, Arc<OutboundEntry>)>;

/// SPD + SAD shared between the data path and the control plane;
/// updatable at run time without stopping the data path.
#[derive(Debug, Default)]
pub struct SaTables {
    current: ArcSwap<Tables>,
    writer: Mutex<()>,
}

impl SaTables {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot (cheap; hold it for one batch).
    #[inline]
    pub fn load(&self) -> Guard<Arc<Tables>> {
        self.current.load()
    }

    /// Copy-modify-swap under the writer lock; returns what `f` returns.
    pub fn update<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Tables::clone(&self.current.load());
        let r = f(&mut next);
        self.current.store(Arc::new(next));
        r
    }

    /// Install (or replace) an inbound SA.
    pub fn install_inbound(&self, sa: InboundSa) -> Arc<InboundEntry> {
        self.install_inbound_filtered(sa, None)
    }

    /// Install (or replace) an inbound SA whose decrypted packets must pass
    /// `filter` (none: no check).
    pub fn install_inbound_filtered(
        &self,
        sa: InboundSa,
        filter: Option<Arc<PacketFilter>>,
    ) -> Arc<InboundEntry> {
        let e = Arc::new(InboundEntry::with_filter(sa, filter));
        let e2 = e.clone();
        self.update(move |t| t.sad.insert(e2.spi(), e2));
        e
    }

    /// Remove an inbound SA.
    pub fn remove_inbound(&self, spi: u32) -> Option<Arc<InboundEntry>> {
        self.update(|t| t.sad.remove(&spi))
    }

    /// Set the SPD action for `selector`; returns the previous action.
    pub fn set_policy(&self, selector: IpNet, action: SpdAction) -> Option<SpdAction> {
        self.update(|t| t.spd.insert(selector, action))
    }

    /// Remove the SPD entry for `selector`.
    pub fn remove_policy(&self, selector: &IpNet) -> Option<SpdAction> {
        self.update(|t| t.spd.remove(selector))
    }

    /// Add a trap selector (replacing whatever was there).
    pub fn add_trap(&self, selector: IpNet, cfg: TrapConfig) -> Arc<Trap> {
        let trap = Arc::new(Trap::new(selector, cfg));
        self.set_policy(selector, SpdAction::Trap(trap.clone()));
        trap
    }

    /// All inbound and outbound entries (for stats / idle checks).
    pub fn entries(&self) -> (Vec<Arc<InboundEntry>>, OutboundList) {
        let t = self.load();
        let inb = t.sad.values().cloned().collect();
        let outb = t
            .spd
            .iter()
            .filter_map(|(n, a)| match a {
                SpdAction::Protect(e) => Some((n, e.clone())),
                _ => None,
            })
            .collect();
        (inb, outb)
    }

    /// All trap selectors.
    pub fn traps(&self) -> Vec<Arc<Trap>> {
        self.load()
            .spd
            .iter()
            .filter_map(|(_, a)| match a {
                SpdAction::Trap(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }
}

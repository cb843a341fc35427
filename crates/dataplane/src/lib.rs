//! dodvpn data plane: moves packets TUN ⇄ ESP ⇄ UDP in userspace.
//!
//! * [`Tun`]: TUN device with virtio-net headers and TSO/USO offloads
//!   (TCP super-packets up to 64 KiB in, split into MTU-sized packets before
//!   sealing; decrypted TCP segments coalesced before writing back), one
//!   queue per worker (IFF_MULTI_QUEUE). Falls back to plain TUN.
//! * [`Udp`]: sockets on 500 and 4500 (IPv4/IPv6), batched with
//!   `sendmmsg` + UDP GSO and `recvmmsg` + UDP GRO, per-datagram outer
//!   TOS copied from the inner header (TR D.7 b). RFC 3948 framing on 4500.
//! * [`SaTables`]: SPD (longest-prefix match on the inner destination →
//!   SA + peer, or trap) and SAD (SPI → SA), swapped atomically at run time.
//! * [`PacketFilter`]: per-SA check of inner packets against the child SA's
//!   traffic selectors and the allowed services (R-DP-7, no transit), before
//!   sealing and after opening; refusals are counted as
//!   [`DropReason::InboundSelector`], [`DropReason::InboundFiltered`],
//!   [`DropReason::OutboundSelector`], [`DropReason::OutboundFiltered`].
//! * [`NetMap`]: stateless 1:1 prefix translation (R-DP-8, overlapping site
//!   ranges) carried by an SA's filter: outbound sources real → visible
//!   before the filter, inbound destinations visible → real after it.
//! * [`TrapQueue`]: packets waiting for an SA; an [`Event::Acquire`] asks the
//!   IKE layer for one; [`Dataplane::install_outbound`] flushes them in order.
//! * [`Dataplane`]: the worker threads (one TX worker per TUN queue:
//!   read batch → seal in place → send batch; one RX worker per NAT-T
//!   socket: receive batch → open in place → write batch), no allocation
//!   per packet.

#![warn(missing_docs)]

pub mod counters;
pub mod demux;
pub mod filter;
pub mod netmap;
pub mod sad;
pub mod spd;
pub mod trap;
pub mod tun;
pub mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dodvpn_esp::{
    decap_ecn, EcnDecap, InboundSa, OutboundSa, HEADROOM, NH_IPV4, NH_IPV6, TAILROOM,
};
use ipnet::IpNet;

pub use counters::{DropCounters, DropReason, SaStats};
pub use demux::{demux_udp4500, Demux, Event, IkeDatagram};
pub use filter::{Direction, FlowRule, PacketFilter, Side, Verdict};
pub use netmap::{NetMap, NetMapError};
pub use sad::{InboundEntry, OutboundEntry, SaTables, Sad, Spd, SpdAction, Tables, Trap};
pub use spd::{packet_dst, PrefixTable};
pub use trap::{Pushed, TrapConfig, TrapQueue};
pub use tun::{Tun, TunConfig};
pub use udp::{RxBatch, RxMeta, TxBatch, Udp, UdpConfig, UdpSock};

/// Largest packet the TUN hands us with offloads (virtio header + 64 KiB).
const TUN_READ_LEN: usize = tun_rs::VIRTIO_NET_HDR_LEN + 65_535;
/// Decrypted packets collected before one TUN write batch.
const RX_OUT_BATCH: usize = 256;
/// UDP messages per recvmmsg.
const RX_MSGS: usize = 32;

/// Data plane configuration.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// TUN device.
    pub tun: TunConfig,
    /// UDP sockets.
    pub udp: UdpConfig,
    /// Trap queue limits.
    pub trap: TrapConfig,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            tun: TunConfig {
                queues: cores,
                ..TunConfig::default()
            },
            udp: UdpConfig::default(),
            trap: TrapConfig::default(),
        }
    }
}

struct Shared {
    tun: Tun,
    udp: Udp,
    tables: SaTables,
    drops: DropCounters,
    events: Option<Box<dyn EventSink>>,
    trap_cfg: TrapConfig,
    stop: AtomicBool,
}

impl Shared {
    fn emit(&self, ev: Event) {
        if let Some(sink) = &self.events {
            if !sink.deliver(ev) {
                self.drops.inc(DropReason::IkeQueueFull)
            }
        }
    }

    fn trap(&self, t: &Trap, pkt: &[u8], dst: IpAddr, now: Instant) {
        let p = t
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pkt, now);
        self.drops.add(DropReason::TrapExpired, p.expired as u64);
        if !p.queued {
            self.drops.inc(DropReason::TrapOverflow);
        }
        if p.acquire {
            self.emit(Event::Acquire {
                selector: t.selector,
                first_packet_dst: dst,
            });
        }
    }
}

/// Where the data plane reports trap hits and IKE datagrams. `deliver` must not
/// block (it runs on a packet worker); it returns false when the event was dropped.
pub trait EventSink: Send + Sync + 'static {
    /// Hand over one event; false when it was dropped.
    fn deliver(&self, ev: Event) -> bool;
}

impl EventSink for SyncSender<Event> {
    fn deliver(&self, ev: Event) -> bool {
        self.try_send(ev).is_ok()
    }
}

/// The running data plane.
pub struct Dataplane {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("tun", &self.shared.tun.name())
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Dataplane {
    /// Create the TUN device and the sockets and start the workers.
    /// Events (Acquire, IKE datagrams) go to `events` (never blocks the data
    /// path: when full, they are dropped and counted).
    pub fn start<S: EventSink>(cfg: DataplaneConfig, events: Option<S>) -> io::Result<Dataplane> {
        let tun = Tun::create(&cfg.tun)?;
        let udp = Udp::bind(&cfg.udp)?;
        for q in 0..tun.queues() {
            tun.queue(q).set_nonblocking(true)?;
        }
        let shared = Arc::new(Shared {
            tun,
            udp,
            tables: SaTables::new(),
            drops: DropCounters::new(),
            events: events.map(|s| Box::new(s) as Box<dyn EventSink>),
            trap_cfg: cfg.trap,
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f)
        };
        for q in 0..shared.tun.queues() {
            let s = shared.clone();
            threads.push(spawn(
                format!("dp-tx{q}"),
                Box::new(move || tx_worker(&s, q)),
            )?);
        }
        for v6 in [false, true] {
            let has = if v6 {
                shared.udp.natt_v6.is_some()
            } else {
                shared.udp.natt_v4.is_some()
            };
            if has {
                let s = shared.clone();
                threads.push(spawn(
                    format!("dp-rx{}", if v6 { 6 } else { 4 }),
                    Box::new(move || rx_worker(&s, v6)),
                )?);
            }
            let has_ike = if v6 {
                shared.udp.ike_v6.is_some()
            } else {
                shared.udp.ike_v4.is_some()
            };
            if has_ike {
                let s = shared.clone();
                threads.push(spawn(
                    format!("dp-ike{}", if v6 { 6 } else { 4 }),
                    Box::new(move || ike_worker(&s, v6)),
                )?);
            }
        }
        let s = shared.clone();
        threads.push(spawn(
            "dp-housekeeping".into(),
            Box::new(move || housekeeping(&s)),
        )?);
        Ok(Dataplane { shared, threads })
    }

    /// The TUN device.
    pub fn tun(&self) -> &Tun {
        &self.shared.tun
    }
    /// The UDP sockets (for the IKE layer to send on).
    pub fn udp(&self) -> &Udp {
        &self.shared.udp
    }
    /// SPD + SAD.
    pub fn tables(&self) -> &SaTables {
        &self.shared.tables
    }
    /// Drop counters.
    pub fn drops(&self) -> &DropCounters {
        &self.shared.drops
    }

    /// Install an inbound SA (replacing one with the same SPI).
    pub fn install_inbound(&self, sa: InboundSa) -> Arc<InboundEntry> {
        self.shared.tables.install_inbound(sa)
    }

    /// Install an inbound SA whose decrypted packets must pass `filter`
    /// (in [`Direction::Inbound`]) before they are written to the TUN.
    pub fn install_inbound_filtered(
        &self,
        sa: InboundSa,
        filter: Arc<PacketFilter>,
    ) -> Arc<InboundEntry> {
        self.shared
            .tables
            .install_inbound_filtered(sa, Some(filter))
    }

    /// Remove an inbound SA.
    pub fn remove_inbound(&self, spi: u32) -> Option<Arc<InboundEntry>> {
        self.shared.tables.remove_inbound(spi)
    }

    /// Add a trap selector: packets to `selector` without an SA are queued
    /// and raise [`Event::Acquire`].
    pub fn add_trap(&self, selector: IpNet) -> Arc<Trap> {
        self.shared.tables.add_trap(selector, self.shared.trap_cfg)
    }

    /// Install an outbound SA for `selector` towards `peer` (the peer's
    /// NAT-T address). If `selector` was a trap, its queued packets are
    /// sealed with the new SA and sent, in arrival order: first the queue
    /// is drained, then the SPD is switched, then any packets that raced in
    /// meanwhile are drained too.
    pub fn install_outbound(
        &self,
        selector: IpNet,
        sa: OutboundSa,
        peer: SocketAddr,
    ) -> Arc<OutboundEntry> {
        self.install_outbound_entry(selector, OutboundEntry::new(sa, peer))
    }

    /// [`install_outbound`](Self::install_outbound) with a filter: packets
    /// must pass `filter` (in [`Direction::Outbound`]) before sealing, queued
    /// trap packets included. To share the SA with more selectors, use [`Self::protect`].
    pub fn install_outbound_filtered(
        &self,
        selector: IpNet,
        sa: OutboundSa,
        peer: SocketAddr,
        filter: Arc<PacketFilter>,
    ) -> Arc<OutboundEntry> {
        self.install_outbound_entry(selector, OutboundEntry::with_filter(sa, peer, Some(filter)))
    }

    fn install_outbound_entry(&self, selector: IpNet, entry: OutboundEntry) -> Arc<OutboundEntry> {
        let entry = Arc::new(entry);
        self.protect(selector, &entry);
        entry
    }

    /// Protect one more selector with an installed outbound SA; packets waiting in a
    /// trap on that selector are sent with it, as for the first one.
    pub fn protect(&self, selector: IpNet, entry: &Arc<OutboundEntry>) {
        let trap = match self.shared.tables.load().spd.get(&selector) {
            Some(SpdAction::Trap(t)) => Some(t.clone()),
            _ => None,
        };
        if let Some(t) = &trap {
            self.flush_trap(t, entry);
        }
        self.shared
            .tables
            .set_policy(selector, SpdAction::Protect(entry.clone()));
        if let Some(t) = &trap {
            self.flush_trap(t, entry);
        }
    }

    /// Remove the SPD entry for `selector` (SA or trap).
    pub fn remove_outbound(&self, selector: &IpNet) -> Option<SpdAction> {
        self.shared.tables.remove_policy(selector)
    }

    fn flush_trap(&self, t: &Trap, entry: &OutboundEntry) {
        let s = &self.shared;
        let Some(sock) = s.udp.natt_for(&entry.peer()) else {
            return;
        };
        let mut buf = vec![0u8; HEADROOM + 65_536 + TAILROOM];
        let mut q = t.queue.lock().unwrap_or_else(|e| e.into_inner());
        let (_, expired) = q.drain(Instant::now(), |pkt| {
            let len = pkt.len();
            if len > 65_536 {
                return;
            }
            if let Some(f) = entry.filter() {
                f.netmap().outbound(pkt);
                let v = f.verdict(Direction::Outbound, pkt);
                if let Some(r) = DropReason::from_verdict(Direction::Outbound, v) {
                    s.drops.inc(r);
                    return;
                }
            }
            let Ok(ip) = dodvpn_wire::peek_ip(pkt) else {
                s.drops.inc(DropReason::NotIp);
                return;
            };
            let nh = if ip.is_ipv6() { NH_IPV6 } else { NH_IPV4 };
            let tos = ip.tos();
            buf[HEADROOM..HEADROOM + len].copy_from_slice(pkt);
            let sealed = entry
                .sa
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .seal(len, &mut buf, nh);
            match sealed {
                Ok(n) => {
                    entry.stats.record(1, len as u64);
                    let mut tx = TxBatch::new(1);
                    if tx.send(sock, [(&buf[..n], entry.peer(), tos)]) == 0 {
                        s.drops.inc(DropReason::UdpSend);
                    }
                }
                Err(_) => s.drops.inc(DropReason::SealError),
            }
        });
        s.drops.add(DropReason::TrapExpired, expired as u64);
    }

    /// A text report: one `key value` line per counter, then one line per SA.
    pub fn stats_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (r, n) in self.shared.drops.snapshot() {
            let _ = writeln!(out, "drop.{} {n}", r.name());
        }
        let (inb, outb) = self.shared.tables.entries();
        for e in inb {
            let _ = writeln!(
                out,
                "sa.in.{:08x} packets={} bytes={} idle_ms={}",
                e.spi(),
                e.stats.packets(),
                e.stats.bytes(),
                e.stats.idle_for(e.created).as_millis()
            );
        }
        for (net, e) in outb {
            let _ = writeln!(
                out,
                "sa.out.{:08x} selector={net} peer={} packets={} bytes={} idle_ms={}",
                e.spi(),
                e.peer(),
                e.stats.packets(),
                e.stats.bytes(),
                e.stats.idle_for(e.created).as_millis()
            );
        }
        for t in self.shared.tables.traps() {
            let q = t.queue.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(
                out,
                "trap.{} queued={} expired={}",
                t.selector,
                q.len(),
                q.expired_total()
            );
        }
        out
    }

    /// Stop the workers and wait for them (they notice within ~250 ms).
    pub fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn poll_in(fd: libc::c_int, timeout_ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe {
        libc::poll(&mut p, 1, timeout_ms);
    }
}

/// TUN queue `q` → SPD → seal in place → UDP batch.
fn tx_worker(s: &Shared, q: usize) {
    let dev = s.tun.queue(q);
    let offload = s.tun.offload();
    let seg_len = HEADROOM + usize::from(s.tun.mtu()).max(1280) + TAILROOM;
    let (nbufs, buf_len) = if offload {
        (tun_rs::IDEAL_BATCH_SIZE, seg_len)
    } else {
        (1, HEADROOM + 65_535 + TAILROOM)
    };
    let mut original = vec![0u8; TUN_READ_LEN];
    let mut bufs: Vec<Vec<u8>> = (0..nbufs).map(|_| vec![0u8; buf_len]).collect();
    let mut sizes = vec![0usize; nbufs];
    // (buffer index, sealed length, peer, tos)
    let mut out: Vec<(usize, usize, SocketAddr, u8)> = Vec::with_capacity(nbufs);
    let mut tx = TxBatch::new(nbufs);
    let fd = dev.as_raw_fd();
    while !s.stop.load(Ordering::Relaxed) {
        let n = match dev.recv_multiple(&mut original, &mut bufs, &mut sizes, HEADROOM) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                poll_in(fd, 250);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!("TUN read: {e}");
                s.drops.inc(DropReason::NotIp);
                continue;
            }
        };
        let tables = s.tables.load();
        let now_ns = counters::now_ns();
        let mut now: Option<Instant> = None;
        out.clear();
        for i in 0..n {
            let len = sizes[i];
            let buf = &mut bufs[i];
            let Ok(ip) = dodvpn_wire::peek_ip(&buf[HEADROOM..HEADROOM + len]) else {
                s.drops.inc(DropReason::NotIp);
                continue;
            };
            // One read of the header: the mapping below rewrites the source
            // address only, so the TOS octet (and the family) stay valid.
            let (dst, tos) = (ip.dst(), ip.tos());
            match tables.outbound(dst) {
                Some(SpdAction::Protect(e)) => {
                    if let Some(f) = e.filter() {
                        // R-DP-8: our real source becomes the visible one first.
                        f.netmap().outbound(&mut buf[HEADROOM..HEADROOM + len]);
                    }
                    let pkt = &buf[HEADROOM..HEADROOM + len];
                    if let Some(f) = e.filter() {
                        let v = f.verdict(Direction::Outbound, pkt);
                        if let Some(r) = DropReason::from_verdict(Direction::Outbound, v) {
                            s.drops.inc(r);
                            continue;
                        }
                    }
                    let nh = if dst.is_ipv4() { NH_IPV4 } else { NH_IPV6 };
                    let r =
                        e.sa.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .seal(len, buf, nh);
                    match r {
                        Ok(sl) => {
                            e.stats.record_at(1, len as u64, now_ns);
                            out.push((i, sl, e.peer(), tos));
                        }
                        Err(err) => {
                            tracing::debug!("seal: {err}");
                            s.drops.inc(DropReason::SealError);
                        }
                    }
                }
                Some(SpdAction::Trap(t)) => {
                    let now = *now.get_or_insert_with(Instant::now);
                    s.trap(t, &buf[HEADROOM..HEADROOM + len], dst, now);
                }
                Some(SpdAction::Discard) => s.drops.inc(DropReason::PolicyDiscard),
                None => s.drops.inc(DropReason::NoSaOutbound),
            }
        }
        drop(tables);
        if out.is_empty() {
            continue;
        }
        for v6 in [false, true] {
            let sock = if v6 {
                s.udp.natt_v6.as_ref()
            } else {
                s.udp.natt_v4.as_ref()
            };
            let pkts = out
                .iter()
                .filter(|o| o.2.is_ipv6() == v6)
                .map(|&(i, sl, peer, tos)| (&bufs[i][..sl], peer, tos));
            match sock {
                Some(sock) => {
                    let failed = tx.failed;
                    tx.send(sock, pkts);
                    s.drops.add(DropReason::UdpSend, tx.failed - failed);
                }
                None => s.drops.add(DropReason::UdpSend, pkts.count() as u64),
            }
        }
    }
}

/// NAT-T socket → demux → open in place → TUN write batch (GRO).
fn rx_worker(s: &Shared, v6: bool) {
    let sock = if v6 {
        s.udp.natt_v6.as_ref()
    } else {
        s.udp.natt_v4.as_ref()
    }
    .expect("socket");
    let local = sock.local_addr();
    let dev = s.tun.queue(0);
    let mut rx = RxBatch::new(RX_MSGS);
    let mut outs: Vec<Vec<u8>> = (0..RX_OUT_BATCH)
        .map(|_| Vec::with_capacity(4096))
        .collect();
    let mut gro = tun_rs::GROTable::default();
    let mut n_out = 0usize;
    let flush = |outs: &mut Vec<Vec<u8>>, n: &mut usize, gro: &mut tun_rs::GROTable| {
        if *n > 0 {
            if let Err(e) = dev.send_multiple(gro, &mut outs[..*n], HEADROOM) {
                tracing::debug!("TUN write: {e}");
                s.drops.inc(DropReason::TunWrite);
            }
            *n = 0;
        }
    };
    while !s.stop.load(Ordering::Relaxed) {
        let n = match rx.recv(sock) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::debug!("UDP recv: {e}");
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let tables = s.tables.load();
        let now_ns = counters::now_ns();
        for i in 0..n {
            let (meta, data) = rx.message_mut(i);
            for seg in data.chunks_mut(meta.seg) {
                match demux_udp4500(seg) {
                    Demux::Esp(spi) => {
                        let Some(e) = tables.inbound(spi) else {
                            s.drops.inc(DropReason::NoSaInbound);
                            continue;
                        };
                        let r = e.sa.lock().unwrap_or_else(|p| p.into_inner()).open(seg);
                        match r {
                            Ok((range, _nh)) => {
                                let inner = &mut seg[range];
                                if decap_ecn(meta.tos, inner) == EcnDecap::Drop {
                                    s.drops.inc(DropReason::EcnCe);
                                    continue;
                                }
                                if let Some(f) = e.filter() {
                                    let v = f.verdict(Direction::Inbound, inner);
                                    if let Some(r) = DropReason::from_verdict(Direction::Inbound, v)
                                    {
                                        s.drops.inc(r);
                                        continue;
                                    }
                                    // R-DP-8: the visible destination back to our real one.
                                    f.netmap().inbound(inner);
                                }
                                e.stats.record_at(1, inner.len() as u64, now_ns);
                                let o = &mut outs[n_out];
                                o.clear();
                                o.resize(HEADROOM, 0);
                                o.extend_from_slice(inner);
                                n_out += 1;
                                if n_out == RX_OUT_BATCH {
                                    flush(&mut outs, &mut n_out, &mut gro);
                                }
                            }
                            Err(err) => s.drops.inc(DropReason::from_esp(&err)),
                        }
                    }
                    Demux::Ike(off) => s.emit(Event::Ike(IkeDatagram {
                        local,
                        remote: meta.src,
                        data: seg[off..].to_vec(),
                    })),
                    Demux::Keepalive => s.drops.inc(DropReason::Keepalive),
                    Demux::Invalid => s.drops.inc(DropReason::InvalidUdp),
                }
            }
        }
        drop(tables);
        flush(&mut outs, &mut n_out, &mut gro);
    }
}

/// IKE port (500) → Event::Ike.
fn ike_worker(s: &Shared, v6: bool) {
    let sock = if v6 {
        s.udp.ike_v6.as_ref()
    } else {
        s.udp.ike_v4.as_ref()
    }
    .expect("socket");
    let local = sock.local_addr();
    let mut buf = vec![0u8; 65_536];
    while !s.stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, remote)) => s.emit(Event::Ike(IkeDatagram {
                local,
                remote,
                data: buf[..n].to_vec(),
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                tracing::debug!("IKE recv: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Expire trap queues.
fn housekeeping(s: &Shared) {
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let now = Instant::now();
        for t in s.tables.traps() {
            let n = t
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .expire(now);
            s.drops.add(DropReason::TrapExpired, n as u64);
        }
    }
}

/// Whether this process runs as root (the namespace tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

//! Trap queues: packets that match a "trap" selector while no SA exists
//! yet wait here (bounded, with a lifetime) until the IKE layer installs
//! the SA; then they are flushed in arrival order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Limits of one trap queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrapConfig {
    /// Packets held at most (newer packets are dropped when full).
    pub capacity: usize,
    /// How long a packet may wait; older ones are dropped and counted.
    pub lifetime: Duration,
    /// An `Acquire` is raised again if packets keep arriving this long
    /// after the previous one without an SA (IKE failed or was lost).
    pub acquire_retry: Duration,
}

impl Default for TrapConfig {
    fn default() -> Self {
        Self {
            capacity: 64,
            lifetime: Duration::from_secs(2),
            acquire_retry: Duration::from_secs(2),
        }
    }
}

/// Result of [`TrapQueue::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The packet was queued (false: queue full, packet dropped).
    pub queued: bool,
    /// The caller must raise an `Acquire` event now.
    pub acquire: bool,
    /// Entries dropped as expired while making room.
    pub expired: usize,
}

/// A bounded FIFO of packets waiting for an SA. Buffers are recycled
/// (a small free list), so steady trapping does not allocate.
#[derive(Debug)]
pub struct TrapQueue {
    cfg: TrapConfig,
    queue: VecDeque<(Instant, Vec<u8>)>,
    free: Vec<Vec<u8>>,
    last_acquire: Option<Instant>,
    expired_total: u64,
    overflow_total: u64,
}

impl TrapQueue {
    /// An empty queue.
    pub fn new(cfg: TrapConfig) -> Self {
        Self {
            cfg,
            queue: VecDeque::with_capacity(cfg.capacity),
            free: Vec::new(),
            last_acquire: None,
            expired_total: 0,
            overflow_total: 0,
        }
    }

    /// Limits.
    pub fn config(&self) -> TrapConfig {
        self.cfg
    }

    /// Queue a copy of `pkt` (received at `now`).
    pub fn push(&mut self, pkt: &[u8], now: Instant) -> Pushed {
        let expired = self.expire(now);
        let acquire = match self.last_acquire {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= self.cfg.acquire_retry,
        };
        if acquire {
            self.last_acquire = Some(now);
        }
        if self.queue.len() >= self.cfg.capacity {
            self.overflow_total += 1;
            return Pushed {
                queued: false,
                acquire,
                expired,
            };
        }
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(pkt);
        self.queue.push_back((now, buf));
        Pushed {
            queued: true,
            acquire,
            expired,
        }
    }

    /// Drop entries older than the lifetime; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((t, _)) = self.queue.front() {
            if now.saturating_duration_since(*t) < self.cfg.lifetime {
                break;
            }
            let (_, buf) = self.queue.pop_front().expect("non-empty");
            self.recycle(buf);
            n += 1;
        }
        self.expired_total += n as u64;
        n
    }

    /// Hand every live packet to `f` in arrival order, emptying the queue.
    /// Returns (flushed, expired).
    pub fn drain(&mut self, now: Instant, mut f: impl FnMut(&mut Vec<u8>)) -> (usize, usize) {
        let expired = self.expire(now);
        let mut flushed = 0;
        while let Some((_, mut buf)) = self.queue.pop_front() {
            f(&mut buf);
            self.recycle(buf);
            flushed += 1;
        }
        self.last_acquire = None;
        (flushed, expired)
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.free.len() < self.cfg.capacity {
            self.free.push(buf);
        }
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }
    /// No packets waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
    /// Entries dropped as expired since creation.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }
    /// Packets refused because the queue was full, since creation.
    pub fn overflow_total(&self) -> u64 {
        self.overflow_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cap: usize) -> TrapConfig {
        TrapConfig {
            capacity: cap,
            lifetime: Duration::from_secs(2),
            acquire_retry: Duration::from_secs(1),
        }
    }

    #[test]
    fn bounded_and_acquire_once() {
        let t0 = Instant::now();
        let mut q = TrapQueue::new(cfg(3));
        let p = q.push(b"a", t0);
        assert!(p.queued && p.acquire);
        for (i, pkt) in [b"b", b"c"].iter().enumerate() {
            let p = q.push(*pkt, t0 + Duration::from_millis(i as u64 + 1));
            assert!(p.queued && !p.acquire);
        }
        let p = q.push(b"d", t0 + Duration::from_millis(10));
        assert!(!p.queued, "fourth packet must be refused");
        assert!(!p.acquire);
        assert_eq!(q.len(), 3);
        assert_eq!(q.overflow_total(), 1);
        // Still no SA after acquire_retry: acquire again.
        let p = q.push(b"e", t0 + Duration::from_millis(1500));
        assert!(p.acquire);
    }

    #[test]
    fn flush_is_in_order() {
        let t0 = Instant::now();
        let mut q = TrapQueue::new(cfg(64));
        for i in 0..10u8 {
            q.push(&[i; 3], t0);
        }
        let mut seen = Vec::new();
        let (flushed, expired) = q.drain(t0 + Duration::from_millis(100), |b| seen.push(b[0]));
        assert_eq!((flushed, expired), (10, 0));
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert!(q.is_empty());
        // After a drain the next trap raises a fresh acquire.
        assert!(q.push(b"x", t0 + Duration::from_millis(200)).acquire);
    }

    #[test]
    fn expired_entries_dropped_and_counted() {
        let t0 = Instant::now();
        let mut q = TrapQueue::new(cfg(64));
        q.push(b"old1", t0);
        q.push(b"old2", t0 + Duration::from_millis(500));
        q.push(b"new", t0 + Duration::from_millis(1900));
        // At t0+2.1s the first expires; at 2.6s the second too.
        assert_eq!(q.expire(t0 + Duration::from_millis(2100)), 1);
        let mut seen = Vec::new();
        let (flushed, expired) =
            q.drain(t0 + Duration::from_millis(2600), |b| seen.push(b.clone()));
        assert_eq!((flushed, expired), (1, 1));
        assert_eq!(seen, vec![b"new".to_vec()]);
        assert_eq!(q.expired_total(), 2);
    }

    #[test]
    fn push_expires_to_make_room() {
        let t0 = Instant::now();
        let mut q = TrapQueue::new(cfg(2));
        q.push(b"1", t0);
        q.push(b"2", t0);
        let p = q.push(b"3", t0 + Duration::from_secs(3));
        assert!(p.queued);
        assert_eq!(p.expired, 2);
        assert_eq!(q.len(), 1);
    }
}

//! Time: retransmission (§2.1), half-open expiry, DPD (§2.4), NAT keepalives
//! (RFC 3948 §2.3), rekey timers with jitter and hard lifetimes (§2.8).

use std::time::{Duration, Instant};

use super::exchange::{CreateKind, Ctx, Request};
use super::{IkeSa, State};
use crate::child::RekeyState;
use crate::{DownReason, Transmit};

impl IkeSa {
    /// When the IKE SA's rekey timer and hard lifetime fire.
    pub fn ike_timers(&self) -> (Option<Instant>, Option<Instant>) {
        (self.ike_rekey_at, self.ike_expire_at)
    }

    /// `base` less a random share of the configured jitter (at most half of `base`).
    pub(super) fn jittered(&self, base: Duration) -> Duration {
        let j = self.cfg.rekey_jitter.min(base / 2);
        let ms = j.as_millis() as u64;
        if ms == 0 {
            return base;
        }
        base - Duration::from_millis(self.rng.u64_nonzero() % (ms + 1))
    }

    pub(super) fn start_ike_timers(&mut self, now: Instant) {
        self.ike_rekey_at = self.cfg.ike_rekey_time.map(|t| now + self.jittered(t));
        self.ike_expire_at = self.cfg.ike_life_time.map(|t| now + t);
    }

    /// Retry delay after a failed rekey.
    pub(super) fn rekey_retry(&self, base: Option<Duration>) -> Duration {
        (base.unwrap_or(Duration::from_secs(60)) / 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut add = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(p) = &self.pending {
            add(p.deadline);
        }
        match self.state {
            State::InitDone => add(self.created + self.cfg.half_open_timeout),
            State::Established => {
                if self.pending.is_none() {
                    add(self.last_recv + self.cfg.dpd_delay);
                }
                if self.nat_t && self.local_behind_nat {
                    add(self.last_sent + self.cfg.keepalive_interval);
                }
                for x in [self.ike_rekey_at, self.ike_expire_at]
                    .into_iter()
                    .flatten()
                {
                    add(x);
                }
                for c in &self.children {
                    for x in [c.rekey_at, c.expire_at].into_iter().flatten() {
                        add(x);
                    }
                }
            }
            _ => {}
        }
        t
    }

    /// Rekey timers and hard lifetimes of the IKE SA and its children (§2.8).
    fn lifetimes(&mut self, now: Instant) {
        if self.ike_expire_at.is_some_and(|t| now >= t) {
            tracing::info!("IKE SA {:016x}: hard lifetime reached, deleting", self.id());
            self.ike_expire_at = None;
            self.ike_rekey_at = None;
            self.queue.push_front(Request::DeleteIke);
            self.pump(now);
            return;
        }
        let mut deletes = Vec::new();
        let mut rekeys = Vec::new();
        for c in &mut self.children {
            if c.expire_at.is_some_and(|t| now >= t) {
                c.expire_at = None;
                c.rekey_at = None;
                deletes.push(c.local_spi);
                continue;
            }
            if c.rekey_at.is_some_and(|t| now >= t) {
                c.rekey_at = None;
                if c.rekey == RekeyState::Idle {
                    c.rekey = RekeyState::Requested;
                    rekeys.push(c.local_spi);
                }
            }
        }
        for spi in deletes {
            tracing::info!("child SA {spi:08x}: hard lifetime reached, deleting");
            self.queue.retain(|r| !matches!(r, Request::Create { kind: CreateKind::RekeyChild(x), .. } if *x == spi));
            self.enqueue(now, Request::DeleteChild(spi));
        }
        for spi in rekeys {
            tracing::info!("child SA {spi:08x}: rekey time reached, rekeying");
            self.enqueue(
                now,
                Request::Create {
                    kind: CreateKind::RekeyChild(spi),
                    group: None,
                },
            );
        }
        if self.ike_rekey_at.is_some_and(|t| now >= t) {
            self.ike_rekey_at = None;
            tracing::info!("IKE SA {:016x}: rekey time reached, rekeying", self.id());
            self.rekey(now);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.state == State::InitDone && now >= self.created + self.cfg.half_open_timeout {
            self.close(DownReason::HalfOpenTimeout);
            return;
        }
        if let Some(p) = &mut self.pending {
            if now >= p.deadline {
                if p.tries >= self.cfg.retransmit_tries {
                    let reason = match p.ctx {
                        Ctx::DeleteIke => DownReason::LocalDelete,
                        _ => DownReason::DeadPeer,
                    };
                    self.close(reason);
                    return;
                }
                // §2.1: exponential backoff.
                let wait = self.cfg.retransmit_base * 2u32.saturating_pow(p.tries);
                p.tries += 1;
                p.deadline = now + wait;
                let bytes = p.bytes.clone();
                self.send_all(now, &bytes);
            }
        }
        if self.state == State::Established {
            self.lifetimes(now);
        }
        if self.state == State::Established {
            if self.pending.is_none()
                && self.queue.is_empty()
                && now >= self.last_recv + self.cfg.dpd_delay
            {
                self.enqueue(now, Request::Liveness);
            }
            if self.nat_t
                && self.local_behind_nat
                && now >= self.last_sent + self.cfg.keepalive_interval
            {
                // RFC 3948 §2.3: a single 0xFF octet, no marker.
                self.last_sent = now;
                self.transmits.push_back(Transmit {
                    to: self.remote,
                    from: self.local,
                    bytes: vec![0xff],
                    nat_t: false,
                });
            }
        }
    }
}

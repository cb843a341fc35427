//! The politeness limit: at most `rate` probes per second to one target, as a
//! sans-IO schedule (the caller sleeps until the slot it is given).

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// `rate` probes per second (at least 1, at most 10,000).
    pub fn new(rate: u32) -> Pacer {
        let rate = rate.clamp(1, 10_000);
        Pacer {
            interval: Duration::from_secs(1) / rate,
            next: None,
        }
    }

    /// When the next probe may start, given the time now; reserves that slot.
    pub fn slot(&mut self, now: Instant) -> Instant {
        let at = match self.next {
            Some(n) if n > now => n,
            _ => now,
        };
        self.next = Some(at + self.interval);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_spread_at_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100);
        let slots: Vec<_> = (0..201).map(|_| p.slot(t0)).collect();
        // 201 probes asked at once: the last may start only 2 s later.
        assert_eq!(slots[200] - t0, Duration::from_secs(2));
        for w in slots.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_millis(10));
        }
    }

    #[test]
    fn idle_time_is_not_banked() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10);
        p.slot(t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(p.slot(later), later);
        assert_eq!(p.slot(later), later + Duration::from_millis(100));
    }
}

//! IKE fragmentation (RFC 7383), the parts that need no keys: how large a
//! fragment may be, how a message is cut, and reassembly of the decrypted
//! fragments of one message with limits on count, size and time.
//!
//! Each fragment is its own SKF message, encrypted and integrity-protected
//! on its own (§2.5); the IKE SA checks every fragment before it is handed
//! to a [`Reassembler`], so a forged fragment never displaces a real one
//! (§2.6.1, §5).

use std::time::{Duration, Instant};

use dodvpn_wire::PayloadType;

/// The smallest fragment size we accept in the configuration: the IPv4
/// minimum datagram every host must take (RFC 791, RFC 7383 §2.5.1).
pub const MIN_FRAGMENT_SIZE: usize = 576;

/// The default fragment size, IPv4 and IPv6 alike: the IPv6 minimum MTU
/// (RFC 8200 §5), which RFC 7383 §2.5.1 recommends for IPv6. For IPv4 it is
/// also what strongSwan uses by default; IPv4 paths narrower than 1280 bytes
/// (below PPPoE's 1492 or a tunnel's 1400) are rare, and an operator who has
/// one can set any size down to [`MIN_FRAGMENT_SIZE`].
pub const DEFAULT_FRAGMENT_SIZE: usize = 1280;

/// IKE header (28) + SKF generic header and fragment numbers (8).
const SKF_OVERHEAD: usize = 28 + 8;

/// The largest IKE message (UDP payload after any non-ESP marker) that fits
/// in one IP datagram of `fragment_size` bytes.
pub fn max_message_len(fragment_size: usize, ipv6: bool, nat_t: bool) -> usize {
    let ip = if ipv6 { 40 } else { 20 };
    let marker = if nat_t { 4 } else { 0 };
    fragment_size.saturating_sub(ip + 8 + marker)
}

/// The largest plaintext chunk per fragment for a message budget of
/// `max_msg` bytes, given the SK body length for a plaintext length
/// (IV, padding, pad length byte, ICV). `None` if not even one byte fits.
pub fn chunk_len(max_msg: usize, body_len: impl Fn(usize) -> usize) -> Option<usize> {
    let room = max_msg.checked_sub(SKF_OVERHEAD)?;
    // body_len grows by at most a block per byte; walk down from the room.
    (1..=room).rev().find(|&n| body_len(n) <= room)
}

/// Limits on reassembly; a message that exceeds one is dropped whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most fragments one message may have.
    pub max_fragments: u16,
    /// Most plaintext bytes one reassembled message may have.
    pub max_bytes: usize,
    /// A message not complete this long after its first fragment is dropped.
    pub timeout: Duration,
}

impl Default for Limits {
    /// 64 fragments, 64 KiB, 30 s: a chain of four RSA-4096 certificates cut at
    /// 576 bytes needs about 20 fragments and 8 KiB.
    fn default() -> Limits {
        Limits {
            max_fragments: 64,
            max_bytes: 64 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One checked fragment, as the IKE SA hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub message_id: u32,
    pub number: u16,
    pub total: u16,
    /// First inner payload type: set in fragment 1 only (§2.5).
    pub inner_next: PayloadType,
    pub plain: Vec<u8>,
}

/// What adding a fragment gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Stored (or a duplicate); more are needed.
    Incomplete,
    /// The message is whole: its first inner payload type and plaintext.
    Complete(PayloadType, Vec<u8>),
    /// The fragment was refused (and with a limit, the partial message too).
    Refused(&'static str),
}

struct Partial {
    message_id: u32,
    total: u16,
    inner_next: PayloadType,
    parts: Vec<Option<Vec<u8>>>,
    have: u16,
    bytes: usize,
    started: Instant,
}

/// Reassembles one message at a time (one per direction: an IKE SA keeps a
/// reassembler for requests and one for responses, as the window is one).
pub struct Reassembler {
    limits: Limits,
    partial: Option<Partial>,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler {
            limits,
            partial: None,
        }
    }

    /// Whether a message is being reassembled.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Drop a partial message older than the time limit.
    pub fn expire(&mut self, now: Instant) {
        if self
            .partial
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.started) > self.limits.timeout)
        {
            self.partial = None;
        }
    }

    pub fn add(&mut self, now: Instant, f: Fragment) -> Added {
        self.expire(now);
        if f.number == 0 || f.total == 0 || f.number > f.total {
            return Added::Refused("fragment number out of range");
        }
        if f.total > self.limits.max_fragments {
            return Added::Refused("too many fragments");
        }
        if (f.number == 1) == (f.inner_next == PayloadType::NoNextPayload) {
            return Added::Refused("next payload set in a fragment other than the first");
        }
        if f.plain.len() > self.limits.max_bytes {
            return Added::Refused("fragment too large");
        }
        match &self.partial {
            // §2.6.1: a larger Total Fragments means the sender cut the message
            // anew (smaller fragments): start again. A smaller one is stale.
            Some(p) if p.message_id == f.message_id && f.total < p.total => {
                return Added::Refused("stale fragment (smaller total)");
            }
            Some(p) if p.message_id == f.message_id && f.total == p.total => {}
            _ => {
                self.partial = Some(Partial {
                    message_id: f.message_id,
                    total: f.total,
                    inner_next: PayloadType::NoNextPayload,
                    parts: vec![None; f.total as usize],
                    have: 0,
                    bytes: 0,
                    started: now,
                });
            }
        }
        let Some(p) = self.partial.as_mut() else {
            return Added::Refused("no reassembly");
        };
        let slot = &mut p.parts[f.number as usize - 1];
        if slot.is_some() {
            return Added::Incomplete;
        }
        if p.bytes + f.plain.len() > self.limits.max_bytes {
            self.partial = None;
            return Added::Refused("reassembled message too large");
        }
        p.bytes += f.plain.len();
        if f.number == 1 {
            p.inner_next = f.inner_next;
        }
        *slot = Some(f.plain);
        p.have += 1;
        if p.have < p.total {
            return Added::Incomplete;
        }
        let Some(p) = self.partial.take() else {
            return Added::Refused("no reassembly");
        };
        let mut out = Vec::with_capacity(p.bytes);
        for part in p.parts.into_iter().flatten() {
            out.extend_from_slice(&part);
        }
        Added::Complete(p.inner_next, out)
    }

    /// Forget the partial message (e.g. once the exchange it belongs to is over).
    pub fn clear(&mut self) {
        self.partial = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(id: u32, n: u16, t: u16, data: &[u8]) -> Fragment {
        Fragment {
            message_id: id,
            number: n,
            total: t,
            inner_next: if n == 1 {
                PayloadType::IdInitiator
            } else {
                PayloadType::NoNextPayload
            },
            plain: data.to_vec(),
        }
    }

    #[test]
    fn reassembles_out_of_order_and_ignores_duplicates() {
        let now = Instant::now();
        let mut r = Reassembler::new(Limits::default());
        assert_eq!(r.add(now, frag(1, 3, 3, b"c")), Added::Incomplete);
        assert_eq!(r.add(now, frag(1, 1, 3, b"a")), Added::Incomplete);
        assert_eq!(r.add(now, frag(1, 1, 3, b"X")), Added::Incomplete);
        assert_eq!(
            r.add(now, frag(1, 2, 3, b"b")),
            Added::Complete(PayloadType::IdInitiator, b"abc".to_vec())
        );
        assert!(!r.in_progress());
    }

    #[test]
    fn larger_total_restarts_smaller_is_stale() {
        let now = Instant::now();
        let mut r = Reassembler::new(Limits::default());
        assert_eq!(r.add(now, frag(1, 1, 2, b"a")), Added::Incomplete);
        assert_eq!(r.add(now, frag(1, 2, 4, b"b")), Added::Incomplete);
        assert!(matches!(r.add(now, frag(1, 2, 2, b"b")), Added::Refused(_)));
        assert_eq!(r.add(now, frag(1, 1, 4, b"a")), Added::Incomplete);
        assert_eq!(r.add(now, frag(1, 3, 4, b"c")), Added::Incomplete);
        assert_eq!(
            r.add(now, frag(1, 4, 4, b"d")),
            Added::Complete(PayloadType::IdInitiator, b"abcd".to_vec())
        );
    }

    #[test]
    fn limits_refuse() {
        let now = Instant::now();
        let limits = Limits {
            max_fragments: 4,
            max_bytes: 10,
            timeout: Duration::from_secs(5),
        };
        let mut r = Reassembler::new(limits);
        assert!(matches!(r.add(now, frag(1, 1, 5, b"a")), Added::Refused(_)));
        assert!(matches!(r.add(now, frag(1, 0, 2, b"a")), Added::Refused(_)));
        assert!(matches!(r.add(now, frag(1, 3, 2, b"a")), Added::Refused(_)));
        let mut bad = frag(1, 2, 2, b"a");
        bad.inner_next = PayloadType::Nonce;
        assert!(matches!(r.add(now, bad), Added::Refused(_)));
        assert_eq!(r.add(now, frag(1, 1, 3, b"123456")), Added::Incomplete);
        assert!(matches!(
            r.add(now, frag(1, 2, 3, b"123456")),
            Added::Refused(_)
        ));
        assert!(!r.in_progress(), "an oversized message is dropped whole");
        // Time limit: the partial message is forgotten.
        assert_eq!(r.add(now, frag(2, 1, 2, b"a")), Added::Incomplete);
        assert_eq!(
            r.add(now + Duration::from_secs(6), frag(2, 2, 2, b"b")),
            Added::Incomplete
        );
        assert_eq!(
            r.add(now + Duration::from_secs(6), frag(2, 1, 2, b"a")),
            Added::Complete(PayloadType::IdInitiator, b"ab".to_vec())
        );
    }

    #[test]
    fn chunk_len_fits_budget() {
        // AES-GCM-16: 8-byte IV, 16-byte ICV, one pad-length byte.
        let gcm = |n: usize| 8 + n + 1 + 16;
        let c = chunk_len(1280 - 28, gcm).unwrap();
        assert_eq!(SKF_OVERHEAD + gcm(c), 1280 - 28);
        // AES-CBC with a 16-byte IV and HMAC-SHA-256-128.
        let cbc = |n: usize| 16 + (n + 1).div_ceil(16) * 16 + 16;
        let c = chunk_len(548, cbc).unwrap();
        assert!(SKF_OVERHEAD + cbc(c) <= 548);
        assert!(SKF_OVERHEAD + cbc(c + 1) > 548 || cbc(c + 1) == cbc(c));
        assert_eq!(chunk_len(40, gcm), None);
        assert_eq!(max_message_len(1280, true, true), 1280 - 52);
        assert_eq!(max_message_len(576, false, false), 548);
    }
}

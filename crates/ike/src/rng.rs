//! Randomness for nonces, SPIs, cookie secrets and rekey jitter: the OS
//! generator, or a seeded deterministic stream so that tests and fuzzers can
//! replay a run (and choose which end of a rekey collision has the lower nonce).
//! Diffie-Hellman private keys and SK payload IVs always come from the OS.

use std::sync::atomic::{AtomicU64, Ordering};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

pub(crate) struct Rng {
    system: SystemRandom,
    seeded: Option<Seeded>,
}

/// HMAC-SHA256(seed, counter) blocks: deterministic, and as unpredictable as the seed.
struct Seeded {
    key: hmac::Key,
    counter: AtomicU64,
}

impl Rng {
    pub(crate) fn system() -> Rng {
        Rng {
            system: SystemRandom::new(),
            seeded: None,
        }
    }

    pub(crate) fn seeded(seed: &[u8]) -> Rng {
        Rng {
            system: SystemRandom::new(),
            seeded: Some(Seeded {
                key: hmac::Key::new(hmac::HMAC_SHA256, seed),
                counter: AtomicU64::new(0),
            }),
        }
    }

    /// A generator of its own for a new SA: seeded from this stream when this is seeded.
    pub(crate) fn fork(&self) -> Rng {
        match self.seeded {
            None => Rng::system(),
            Some(_) => Rng::seeded(&self.bytes(32)),
        }
    }

    pub(crate) fn fill(&self, out: &mut [u8]) {
        match &self.seeded {
            None => self.system.fill(out).expect("system RNG"),
            Some(s) => {
                for chunk in out.chunks_mut(32) {
                    let n = s.counter.fetch_add(1, Ordering::Relaxed);
                    let block = hmac::sign(&s.key, &n.to_be_bytes());
                    chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
                }
            }
        }
    }

    /// For private keys and IVs: always the OS generator.
    pub(crate) fn secure(&self) -> &dyn SecureRandom {
        &self.system
    }

    pub(crate) fn bytes(&self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }

    /// A non-zero 64-bit value (IKE SPI).
    pub(crate) fn u64_nonzero(&self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.fill(&mut b);
            let v = u64::from_be_bytes(b);
            if v != 0 {
                return v;
            }
        }
    }

    /// An ESP SPI: 0–255 are reserved (RFC 4303 §2.1).
    pub(crate) fn spi(&self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.fill(&mut b);
            let v = u32::from_be_bytes(b);
            if v > 255 {
                return v;
            }
        }
    }
}

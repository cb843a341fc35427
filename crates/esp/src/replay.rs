//! Anti-replay window (RFC 4303 §3.4.3) over the 64-bit sequence space.
//!
//! The window is a ring of `u64` words (the layout of RFC 6479): bit
//! `seq % 64` of word `(seq / 64) % words` records whether `seq` was seen.
//! One word more than the configured window is kept, so that sliding the
//! window forward only ever clears whole words: a packet costs one bit test
//! and, when it moves the top of the window, clearing at most `words` words
//! (one word in the common in-order case).
//!
//! The window is *checked* before the ICV is verified (cheap reject) and
//! *updated* only after the ICV has verified, so a forged packet never
//! moves it (RFC 4303 §3.4.3, last paragraphs).

use crate::Error;

/// Default window size in sequence numbers.
pub const DEFAULT_WINDOW: usize = 1024;
/// Smallest window accepted by [`ReplayWindow::new`].
pub const MIN_WINDOW: usize = 1024;
/// Largest window accepted by [`ReplayWindow::new`] (1 Mi sequence numbers,
/// 128 KiB of bitmap).
pub const MAX_WINDOW: usize = 1 << 20;

const WORD_BITS: u64 = 64;

/// Anti-replay window over 64-bit sequence numbers.
///
/// Sequence number 0 is never valid (the first packet of an SA carries 1).
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest sequence number accepted so far (0: none yet).
    top: u64,
    /// Window size in sequence numbers (multiple of 64).
    size: u64,
    /// `size / 64 + 1` words; see the module documentation.
    bitmap: Box<[u64]>,
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW).expect("default window size is valid")
    }
}

impl ReplayWindow {
    /// A window covering `size` sequence numbers: `size` is rounded up to a
    /// multiple of 64 and must lie in [`MIN_WINDOW`]`..=`[`MAX_WINDOW`].
    pub fn new(size: usize) -> Result<Self, Error> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&size) {
            return Err(Error::WindowSize(size));
        }
        let size = size.div_ceil(WORD_BITS as usize) * WORD_BITS as usize;
        let words = size / WORD_BITS as usize + 1;
        Ok(Self {
            top: 0,
            size: size as u64,
            bitmap: vec![0u64; words].into_boxed_slice(),
        })
    }

    /// Window size in sequence numbers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Highest sequence number accepted so far (0 when none).
    pub fn top(&self) -> u64 {
        self.top
    }

    #[inline]
    fn slot(&self, seq: u64) -> (usize, u64) {
        let word = ((seq / WORD_BITS) % self.bitmap.len() as u64) as usize;
        (word, 1u64 << (seq % WORD_BITS))
    }

    /// Would `seq` be accepted? Does not change the window.
    ///
    /// `Err(Error::Replay)` for a number already seen (and for 0),
    /// `Err(Error::TooOld)` for one left of the window.
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), Error> {
        if seq == 0 {
            return Err(Error::Replay { seq });
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(Error::TooOld { seq });
        }
        let (w, bit) = self.slot(seq);
        if self.bitmap[w] & bit != 0 {
            return Err(Error::Replay { seq });
        }
        Ok(())
    }

    /// Record `seq` as received. Call only after the packet authenticated
    /// and [`check`](Self::check) passed; a number that does not pass
    /// `check` is ignored (returns the same error) so the window can never
    /// be moved backwards or a bit set twice.
    #[inline]
    pub fn update(&mut self, seq: u64) -> Result<(), Error> {
        self.check(seq)?;
        if seq > self.top {
            let words = self.bitmap.len() as u64;
            let old_word = self.top / WORD_BITS;
            let new_word = seq / WORD_BITS;
            // Clear the words that the window slides into; at most all of them.
            let advance = (new_word - old_word).min(words);
            for i in 1..=advance {
                let w = ((old_word + i) % words) as usize;
                self.bitmap[w] = 0;
            }
            self.top = seq;
        }
        let (w, bit) = self.slot(seq);
        self.bitmap[w] |= bit;
        Ok(())
    }

    /// Check and update in one step (for callers that authenticate first,
    /// or for tests of the window alone).
    pub fn accept(&mut self, seq: u64) -> Result<(), Error> {
        self.update(seq)
    }

    /// Infer the full 64-bit sequence number of a packet carrying the low
    /// 32 bits `seq_low`, when Extended Sequence Numbers are in use
    /// (RFC 4303 §2.2.1 and Appendix A2.2).
    ///
    /// The high half is chosen so that the result lies in the window or to
    /// its right; the guess is confirmed (or refuted) by the ICV, since the
    /// high half is part of the AAD.
    pub fn infer_esn(&self, seq_low: u32) -> u64 {
        let w = self.size;
        let top = self.top;
        let th = (top >> 32) as u32;
        let tl = top as u32;
        // Bl: low half of the bottom of the window, T - W + 1.
        let bl = top.wrapping_sub(w).wrapping_add(1) as u32;
        let seq_high = if u64::from(tl) >= w - 1 {
            // Case A: the window lies within one 2^32 sub-space.
            if seq_low >= bl {
                th
            } else {
                // Right of the window, in the next sub-space. At the very
                // end of the 64-bit space there is no next sub-space: keep
                // Th, the window check then refuses the packet.
                th.checked_add(1).unwrap_or(th)
            }
        } else {
            // Case B: the window spans a sub-space boundary.
            if seq_low >= bl {
                // In the window's part below the boundary. Before any
                // sub-space has been completed (Th = 0) there is no
                // "previous" sub-space; the packet is then read as a jump
                // forward within sub-space 0.
                th.checked_sub(1).unwrap_or(th)
            } else {
                th
            }
        };
        (u64::from(seq_high) << 32) | u64::from(seq_low)
    }
}

//! Property tests: `open` never panics on arbitrary input, and the replay
//! window is checked against a reference model.

use std::collections::HashSet;

use dodvpn_esp::*;
use proptest::prelude::*;

const SPI: u32 = 0x0102_0304;

fn sa(aead: Aead, esn: bool) -> (OutboundSa, InboundSa) {
    let km: Vec<u8> = (0..aead.keymat_len() as u8).collect();
    (
        OutboundSa::new(SPI, aead, &km, esn).unwrap(),
        InboundSa::new(SPI, aead, &km, esn).unwrap(),
    )
}

/// Every transform: the AEADs and the six AES-CBC + HMAC-SHA2 pairs.
fn aead_strategy() -> impl Strategy<Value = Aead> {
    prop::sample::select(Aead::EVERY.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, .. ProptestConfig::default() })]

    /// Arbitrary bytes, and arbitrary bytes behind our own SPI (so they get
    /// past the SPI check into the window and the AEAD): never a panic,
    /// never success, and a refused packet never moves the window.
    #[test]
    fn open_never_panics(aead in aead_strategy(), esn: bool, mut data in proptest::collection::vec(any::<u8>(), 0..200), own_spi: bool) {
        let (_, mut inb) = sa(aead, esn);
        if own_spi && data.len() >= 4 {
            data[..4].copy_from_slice(&SPI.to_be_bytes());
        }
        let r = inb.open(&mut data);
        prop_assert!(r.is_err());
        prop_assert_eq!(inb.window().top(), 0);
        prop_assert_eq!(inb.counters().drops_total(), 1);
    }

    /// Mutations of a genuine packet (overwrite a byte range, truncate or
    /// extend) are refused without a panic, unless they left it unchanged.
    #[test]
    fn mutated_genuine_packets_refused(
        aead in aead_strategy(), esn: bool,
        inner_len in 0usize..300, at in any::<prop::sample::Index>(), junk in proptest::collection::vec(any::<u8>(), 1..8),
        cut in any::<prop::sample::Index>(), extend in 0usize..20,
    ) {
        let (mut out, mut inb) = sa(aead, esn);
        let mut buf = vec![0x45u8; HEADROOM + inner_len + TAILROOM];
        let n = out.seal(inner_len, &mut buf, NH_IPV4).unwrap();
        let good = buf[..n].to_vec();

        let mut m = good.clone();
        let i = at.index(m.len());
        for (k, b) in junk.iter().enumerate() {
            if let Some(x) = m.get_mut(i + k) { *x ^= b | 1; }
        }
        prop_assert!(inb.open(&mut m).is_err());

        let mut t = good[..cut.index(good.len())].to_vec();
        prop_assert!(inb.open(&mut t).is_err());

        let mut e = good.clone();
        e.extend(std::iter::repeat_n(0u8, extend + 1));
        prop_assert!(inb.open(&mut e).is_err());

        prop_assert_eq!(inb.window().top(), 0);
        let mut g = good.clone();
        let (r, nh) = inb.open(&mut g).unwrap();
        prop_assert_eq!((r.len(), nh), (inner_len, NH_IPV4));
    }

    /// The window accepts each sequence number at most once, and exactly
    /// those the RFC 4303 §3.4.3 model accepts: new (not seen) and either
    /// right of the highest seen or less than `size` behind it.
    #[test]
    fn replay_window_matches_model(
        size_words in 16usize..40,
        base in prop_oneof![Just(0u64), Just((1u64 << 32) - 3000), any::<u64>().prop_map(|x| x >> 2)],
        steps in proptest::collection::vec(
            prop_oneof![
                8 => 0u64..4000,            // dense, reordered, duplicates
                1 => 0u64..200_000,         // jumps
            ], 1..600),
    ) {
        let size = size_words * 64;
        let mut w = ReplayWindow::new(size).unwrap();
        let mut seen = HashSet::new();
        let mut max = 0u64;
        for s in steps {
            let seq = base.saturating_add(s);
            let model_ok = seq != 0 && !seen.contains(&seq) && (seq > max || max - seq < size as u64);
            let got = w.accept(seq);
            prop_assert_eq!(got.is_ok(), model_ok, "seq {} max {} got {:?}", seq, max, got);
            if model_ok {
                seen.insert(seq);
                max = max.max(seq);
            } else if seq != 0 && seq <= max && max - seq >= size as u64 {
                prop_assert_eq!(got, Err(Error::TooOld { seq }));
            } else {
                prop_assert_eq!(got, Err(Error::Replay { seq }));
            }
            prop_assert_eq!(w.top(), max);
        }
    }

    /// ESN round trip from an arbitrary starting point (up to 2^36), with
    /// reordering inside the window: the receiver infers every high half.
    #[test]
    fn esn_reordered_round_trip(aead in aead_strategy(),
                                start in prop_oneof![0u64..(1 << 36), Just((1u64 << 32) - 30), Just((3u64 << 32) - 1)],
                                perm in Just((0usize..64).collect::<Vec<_>>()).prop_shuffle()) {
        let (mut out, mut inb) = sa(aead, true);
        let one = |out: &mut OutboundSa, inb: &mut InboundSa| -> Result<()> {
            let mut b = vec![0x60u8; HEADROOM + 40 + TAILROOM];
            let m = out.seal(40, &mut b, NH_IPV6)?;
            inb.open(&mut b[..m]).map(|_| ())
        };
        // A long-lived SA's receiver has seen traffic all along; walk it up
        // to `start` in steps of 2^31 (each step is inferable).
        for k in 1..=(start >> 31) {
            out.advance_seq_to((k << 31) - 1);
            prop_assert!(one(&mut out, &mut inb).is_ok());
        }
        out.advance_seq_to(start);
        prop_assert!(one(&mut out, &mut inb).is_ok());
        let pkts: Vec<Vec<u8>> = (0..64).map(|_| {
            let mut b = vec![0x60u8; HEADROOM + 40 + TAILROOM];
            let m = out.seal(40, &mut b, NH_IPV6).unwrap();
            b.truncate(m);
            b
        }).collect();
        for &i in &perm {
            let mut p = pkts[i].clone();
            prop_assert!(inb.open(&mut p).is_ok(), "start {} i {}", start, i);
        }
        prop_assert_eq!(inb.window().top(), start + 65);
        for p in &pkts {
            let replayed = matches!(inb.open(&mut p.clone()), Err(Error::Replay { .. }));
            prop_assert!(replayed);
        }
    }
}

//! Behaviour of the SA data path: round trips, anti-replay, forged and
//! malformed input, ESN, sequence exhaustion, counters, DSCP/ECN.

use dodvpn_esp::*;
use dodvpn_wire::EspHeader;

const SPI: u32 = 0xc0ff_ee01;

fn keymat(aead: Aead, seed: u8) -> Vec<u8> {
    (0..aead.keymat_len())
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn pair(aead: Aead, esn: bool) -> (OutboundSa, InboundSa) {
    let km = keymat(aead, 1);
    (
        OutboundSa::new(SPI, aead, &km, esn).unwrap(),
        InboundSa::new(SPI, aead, &km, esn).unwrap(),
    )
}

fn ipv4(len: usize, tos: u8, fill: u8) -> Vec<u8> {
    assert!(len >= 20);
    let mut p = vec![fill; len];
    p[0] = 0x45;
    p[1] = tos;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

fn ipv6(len: usize, tclass: u8, fill: u8) -> Vec<u8> {
    assert!(len >= 40);
    let mut p = vec![fill; len];
    p[0] = 0x60 | (tclass >> 4);
    p[1] = (tclass << 4) | 0x0a;
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p
}

/// Seal `inner` with `out`, returning the ESP packet.
fn seal(out: &mut OutboundSa, inner: &[u8], nh: u8) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + inner.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + inner.len()].copy_from_slice(inner);
    let n = out.seal(inner.len(), &mut buf, nh).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn round_trip_all_aeads_v4_v6_esn() {
    for aead in Aead::ALL {
        for esn in [false, true] {
            let (mut out, mut inb) = pair(aead, esn);
            let mut expect_seq = 0u64;
            for len in (20..=1500)
                .step_by(37)
                .chain([20, 21, 22, 23, 24, 1499, 1500])
            {
                for (inner, nh) in [
                    (ipv4(len, 0xb8, len as u8), NH_IPV4),
                    (ipv6(len.max(40), 0x2e, 3), NH_IPV6),
                ] {
                    let esp = seal(&mut out, &inner, nh);
                    expect_seq += 1;
                    assert_eq!(esp.len(), sealed_len(inner.len()));
                    assert_eq!((esp.len() - HEADROOM - TAG_LEN) % 4, 0, "4-byte alignment");
                    assert_eq!(EspHeader::parse(&esp).map(|h| h.spi), Ok(SPI));
                    assert_eq!(&esp[4..8], &(expect_seq as u32).to_be_bytes());
                    assert_eq!(
                        &esp[8..16],
                        &expect_seq.to_be_bytes(),
                        "IV is the 64-bit sequence number"
                    );
                    // The payload is encrypted.
                    assert_ne!(&esp[HEADROOM..HEADROOM + inner.len()], &inner[..]);
                    let mut pkt = esp.clone();
                    let (r, got_nh) = inb
                        .open(&mut pkt)
                        .unwrap_or_else(|e| panic!("{aead:?} esn={esn} len={len}: {e}"));
                    assert_eq!(got_nh, nh);
                    assert_eq!(&pkt[r], &inner[..]);
                }
            }
            let c = inb.counters();
            assert_eq!(c.packets_opened, out.counters().packets_sealed);
            assert_eq!(c.bytes_opened, out.counters().bytes_sealed);
            assert_eq!(c.drops_total(), 0);
        }
    }
}

#[test]
fn padding_layout_is_1_2_3() {
    let aead = Aead::AesGcm128;
    let km = keymat(aead, 1);
    let cipher = SaCipher::new(aead, &km).unwrap();
    let mut out = OutboundSa::new(SPI, aead, &km, false).unwrap();
    for len in 20..28 {
        for extra in [0usize, 4, 8, 252 - 4] {
            let inner = ipv4(len, 0, 0xaa);
            let mut buf = vec![0u8; HEADROOM + len + TAILROOM];
            buf[HEADROOM..HEADROOM + len].copy_from_slice(&inner);
            let n = out.seal_padded(len, &mut buf, NH_IPV4, extra).unwrap();
            let pad = min_padding(len) + extra;
            assert_eq!(n, HEADROOM + len + pad + 2 + TAG_LEN);
            // Decrypt with the bare cipher and inspect the trailer.
            let iv: [u8; 8] = buf[8..16].try_into().unwrap();
            let mut aad = SPI.to_be_bytes().to_vec();
            aad.extend_from_slice(&buf[4..8]);
            let pt_len = cipher
                .open_in_place(&iv, &aad, &mut buf[HEADROOM..n])
                .unwrap();
            let pt = &buf[HEADROOM..HEADROOM + pt_len];
            assert_eq!(&pt[..len], &inner[..]);
            let expect_pad: Vec<u8> = (1..=pad as u8).collect();
            assert_eq!(&pt[len..len + pad], &expect_pad[..]);
            assert_eq!(pt[pt_len - 2] as usize, pad);
            assert_eq!(pt[pt_len - 1], NH_IPV4);
        }
    }
    // Extra padding must keep alignment and fit the one-octet field.
    let mut buf = vec![0u8; HEADROOM + 20 + TAILROOM];
    assert_eq!(
        out.seal_padded(20, &mut buf, NH_IPV4, 3),
        Err(Error::InvalidPadding(3))
    );
    assert_eq!(
        out.seal_padded(20, &mut buf, NH_IPV4, 256),
        Err(Error::InvalidPadding(256))
    );
    assert!(out.seal_padded(20, &mut buf, NH_IPV4, 252).is_ok()); // 20+2 -> min pad 2, +252 = 254
}

#[test]
fn seal_buffer_too_small_does_not_consume_sequence() {
    let (mut out, _) = pair(Aead::ChaCha20Poly1305, false);
    let need = sealed_len(100);
    let mut buf = vec![0u8; need - 1];
    assert_eq!(
        out.seal(100, &mut buf, NH_IPV4),
        Err(Error::BufferTooSmall {
            needed: need,
            have: need - 1
        })
    );
    assert_eq!(out.seq(), 0);
    let mut buf = vec![0u8; need];
    assert_eq!(out.seal(100, &mut buf, NH_IPV4), Ok(need));
    assert_eq!(out.seq(), 1);
    // An absurd length must not overflow or panic.
    assert!(matches!(
        out.seal(usize::MAX - 3, &mut buf, NH_IPV4),
        Err(Error::BufferTooSmall { .. })
    ));
}

#[test]
fn replay_refused_and_counted() {
    let (mut out, mut inb) = pair(Aead::AesGcm256, false);
    let pkts: Vec<Vec<u8>> = (0..5)
        .map(|_| seal(&mut out, &ipv4(60, 0, 1), NH_IPV4))
        .collect();
    for p in &pkts {
        inb.open(&mut p.clone()).unwrap();
    }
    for (i, p) in pkts.iter().enumerate() {
        assert_eq!(
            inb.open(&mut p.clone()),
            Err(Error::Replay { seq: i as u64 + 1 })
        );
    }
    assert_eq!(inb.counters().drop_replay, 5);
    assert_eq!(inb.counters().packets_opened, 5);
}

#[test]
fn out_of_order_within_window_ok_older_than_window_refused() {
    let (mut out, mut inb) = pair(Aead::AesGcm128, false);
    let w = inb.window().size() as usize;
    let pkts: Vec<Vec<u8>> = (0..w + 10)
        .map(|_| seal(&mut out, &ipv4(40, 0, 2), NH_IPV4))
        .collect();
    // Deliver seq 2..=w+10 (skipping 1), in reverse for the last 100.
    for p in pkts[1..w - 90].iter() {
        inb.open(&mut p.clone()).unwrap();
    }
    for p in pkts[w - 90..].iter().rev() {
        inb.open(&mut p.clone()).unwrap();
    }
    assert_eq!(inb.window().top(), (w + 10) as u64);
    // Seq 1 is now w+9 behind the top: outside the window.
    assert_eq!(
        inb.open(&mut pkts[0].clone()),
        Err(Error::TooOld { seq: 1 })
    );
    assert_eq!(inb.counters().drop_too_old, 1);
    // Seq 11 is exactly w-1 behind: inside, but already seen.
    assert_eq!(
        inb.open(&mut pkts[10].clone()),
        Err(Error::Replay { seq: 11 })
    );
}

#[test]
fn every_single_bit_flip_is_refused_and_does_not_move_the_window() {
    for aead in Aead::ALL {
        for esn in [false, true] {
            let (mut out, mut inb) = pair(aead, esn);
            for _ in 0..4 {
                let p = seal(&mut out, &ipv4(48, 0, 9), NH_IPV4);
                inb.open(&mut p.clone()).unwrap();
            }
            let good = seal(&mut out, &ipv4(48, 0, 9), NH_IPV4); // seq 5
            let top_before = inb.window().top();
            let before = *inb.counters();
            let mut tags = 0;
            for bit in 0..good.len() * 8 {
                let mut bad = good.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                let r = inb.open(&mut bad);
                if bit < 32 {
                    assert!(matches!(r, Err(Error::WrongSpi { .. })), "bit {bit}: {r:?}");
                } else {
                    // Sequence-number flips that land on 1..=4 are replays
                    // (refused before decryption); everything else fails the ICV.
                    assert!(
                        matches!(r, Err(Error::BadTag) | Err(Error::Replay { .. })),
                        "bit {bit}: {r:?}"
                    );
                }
                if r == Err(Error::BadTag) {
                    tags += 1;
                }
                assert_eq!(
                    inb.window().top(),
                    top_before,
                    "window moved by forged bit {bit}"
                );
            }
            // All flips after the SPI that did not hit an already-seen seq fail the ICV.
            let after = *inb.counters();
            assert_eq!(after.drop_wrong_spi - before.drop_wrong_spi, 32);
            assert_eq!(after.drop_bad_tag - before.drop_bad_tag, tags);
            // Only the seq flips that land on 1..=4 (seen) are replays; everything else is BadTag.
            let replays = after.drop_replay - before.drop_replay;
            assert_eq!(
                tags + replays + 32,
                (good.len() * 8) as u64,
                "{aead:?} esn={esn}"
            );
            assert!(replays <= 3);
            assert_eq!(after.packets_opened, before.packets_opened);
            // The genuine packet still opens afterwards.
            inb.open(&mut good.clone()).unwrap();
            assert_eq!(inb.window().top(), 5);
        }
    }
}

#[test]
fn forged_high_sequence_does_not_advance_window() {
    let (mut out, mut inb) = pair(Aead::ChaCha20Poly1305, false);
    let p1 = seal(&mut out, &ipv4(40, 0, 0), NH_IPV4);
    let mut forged = p1.clone();
    forged[4] = 0x7f; // seq 0x7f000001: far right of the window
    assert_eq!(inb.open(&mut forged), Err(Error::BadTag));
    assert_eq!(inb.window().top(), 0);
    inb.open(&mut p1.clone()).unwrap();
}

#[test]
fn wrong_spi_and_wrong_key() {
    let aead = Aead::AesGcm128;
    let mut out = OutboundSa::new(SPI, aead, &keymat(aead, 1), false).unwrap();
    let mut other_spi = InboundSa::new(SPI + 1, aead, &keymat(aead, 1), false).unwrap();
    let mut other_key = InboundSa::new(SPI, aead, &keymat(aead, 2), false).unwrap();
    let p = seal(&mut out, &ipv4(40, 0, 0), NH_IPV4);
    assert_eq!(
        other_spi.open(&mut p.clone()),
        Err(Error::WrongSpi {
            expected: SPI + 1,
            got: SPI
        })
    );
    assert_eq!(other_key.open(&mut p.clone()), Err(Error::BadTag));
    assert_eq!(other_spi.counters().drop_wrong_spi, 1);
    assert_eq!(other_key.counters().drop_bad_tag, 1);
    // A different AEAD with the same SPI cannot open it either.
    let mut other_alg =
        InboundSa::new(SPI, Aead::AesGcm256, &keymat(Aead::AesGcm256, 1), false).unwrap();
    assert_eq!(other_alg.open(&mut p.clone()), Err(Error::BadTag));
}

#[test]
fn truncated_packets_of_every_length() {
    for aead in Aead::ALL {
        let (mut out, mut inb) = pair(aead, true);
        let good = seal(&mut out, &ipv4(64, 0, 5), NH_IPV4);
        for len in 0..MIN_PACKET_LEN {
            let mut p = good[..len].to_vec();
            assert_eq!(inb.open(&mut p), Err(Error::Truncated { len }));
        }
        assert_eq!(inb.counters().drop_truncated, MIN_PACKET_LEN as u64);
        // Longer-but-cut packets fail authentication, without panicking.
        for len in MIN_PACKET_LEN..good.len() {
            let mut p = good[..len].to_vec();
            assert_eq!(inb.open(&mut p), Err(Error::BadTag), "len {len}");
        }
        inb.open(&mut good.clone()).unwrap();
    }
}

/// Build an authentic ESP packet with an arbitrary (possibly malformed)
/// plaintext payload, using the bare cipher.
fn craft(aead: Aead, seq: u32, plaintext: &[u8]) -> Vec<u8> {
    let cipher = SaCipher::new(aead, &keymat(aead, 1)).unwrap();
    let iv = u64::from(seq).to_be_bytes();
    let mut p = Vec::new();
    p.extend_from_slice(&SPI.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&iv);
    p.extend_from_slice(plaintext);
    let aad = p[..8].to_vec();
    let tag = cipher.seal_in_place(&iv, &aad, &mut p[HEADROOM..]);
    p.extend_from_slice(&tag);
    p
}

#[test]
fn bad_padding_refused_after_authentication() {
    let aead = Aead::AesGcm256;
    let (_, mut inb) = pair(aead, false);
    let inner = ipv4(21, 0, 0x11); // 21 + 2 -> 1 byte of padding
    let mut good = inner.clone();
    good.extend_from_slice(&[1, 1, NH_IPV4]);
    // Sanity: the well-formed crafted packet opens.
    let (r, _) = inb.open(&mut craft(aead, 1, &good)).unwrap();
    assert_eq!(r.len(), 21);

    let cases: Vec<Vec<u8>> = vec![
        // padding byte 2 instead of 1
        [&inner[..], &[2, 1, NH_IPV4]].concat(),
        // padding 1,3 instead of 1,2
        [&inner[..20], &[1, 3, 2, NH_IPV4]].concat(),
        // pad length longer than the plaintext
        [&inner[..2], &[200, NH_IPV4]].concat(),
        // pad length = whole payload + 1
        vec![1, 2, NH_IPV4],
    ];
    for (i, pt) in cases.iter().enumerate() {
        let seq = 2 + i as u32;
        assert_eq!(
            inb.open(&mut craft(aead, seq, pt)),
            Err(Error::BadPadding),
            "case {i}"
        );
        // Authenticated, so the window did move: the same packet is now a replay.
        assert_eq!(inb.window().top(), u64::from(seq));
        assert_eq!(
            inb.open(&mut craft(aead, seq, pt)),
            Err(Error::Replay {
                seq: u64::from(seq)
            })
        );
    }
    assert_eq!(inb.counters().drop_bad_padding, cases.len() as u64);
    assert_eq!(inb.counters().drop_bad_tag, 0);
    // Empty payload with zero padding is fine framing-wise (nh 4, zero-length inner).
    let (r, nh) = inb.open(&mut craft(aead, 100, &[0, NH_IPV4])).unwrap();
    assert_eq!((r.len(), nh), (0, NH_IPV4));
}

#[test]
fn next_header_checks_and_dummy_packets() {
    let (mut out, mut inb) = pair(Aead::ChaCha20Poly1305, false);
    let inner = ipv4(40, 0, 0);
    assert_eq!(
        inb.open(&mut seal(&mut out, &inner, 17)),
        Err(Error::BadNextHeader(17))
    );
    assert_eq!(
        inb.open(&mut seal(&mut out, &inner, 0)),
        Err(Error::BadNextHeader(0))
    );
    assert_eq!(
        inb.open(&mut seal(&mut out, &inner, NH_NONE)),
        Err(Error::DummyPacket)
    );
    let (_, nh) = inb
        .open(&mut seal(&mut out, &ipv6(80, 0, 0), NH_IPV6))
        .unwrap();
    assert_eq!(nh, NH_IPV6);
    let c = inb.counters();
    assert_eq!(
        (c.drop_bad_next_header, c.drop_dummy, c.packets_opened),
        (2, 1, 1)
    );
    assert_eq!(
        c.drops_total(),
        2,
        "dummy packets are not counted as errors"
    );
    assert_eq!(inb.window().top(), 4);
}

#[test]
fn sequence_exhaustion_requires_rekey_never_wraps() {
    // Without ESN: last sequence number is 2^32 - 1.
    let (mut out, mut inb) = pair(Aead::AesGcm128, false);
    assert!(out.advance_seq_to(u64::from(u32::MAX) - 2));
    let mut last = Vec::new();
    for _ in 0..2 {
        last = seal(&mut out, &ipv4(40, 0, 0), NH_IPV4);
    }
    assert_eq!(out.seq(), u64::from(u32::MAX));
    assert_eq!(out.remaining(), 0);
    assert_eq!(&last[4..8], &[0xff; 4]);
    inb.open(&mut last.clone()).unwrap();
    let mut buf = vec![0u8; 1000];
    assert_eq!(out.seal(40, &mut buf, NH_IPV4), Err(Error::RekeyRequired));
    assert_eq!(out.seal(40, &mut buf, NH_IPV4), Err(Error::RekeyRequired));
    assert_eq!(out.seq(), u64::from(u32::MAX));
    // The counter cannot be moved backwards.
    assert!(!out.advance_seq_to(5));

    // With ESN: last sequence number is 2^64 - 1.
    let (mut out, _) = pair(Aead::AesGcm128, true);
    assert!(out.advance_seq_to(u64::MAX - 1));
    assert!(out.seal(40, &mut buf, NH_IPV4).is_ok());
    assert_eq!(out.seal(40, &mut buf, NH_IPV4), Err(Error::RekeyRequired));
}

#[test]
fn esn_crossing_2_pow_32() {
    for aead in Aead::ALL {
        let (mut out, mut inb) = pair(aead, true);
        let start = (1u64 << 32) - 8;
        assert!(out.advance_seq_to(start));
        let pkts: Vec<(u64, Vec<u8>)> = (1..=16)
            .map(|i| (start + i, seal(&mut out, &ipv4(40, 0, i as u8), NH_IPV4)))
            .collect();
        // Only the low 32 bits are on the wire.
        assert_eq!(&pkts[7].1[4..8], &[0, 0, 0, 0]); // seq 2^32
        assert_eq!(&pkts[8].1[4..8], &[0, 0, 0, 1]);
        assert_eq!(&pkts[6].1[4..8], &[0xff; 4]);
        // Order: 1..4 (before the boundary), 12..16 (after), then the
        // straddling rest 5..11, in reverse.
        let order: Vec<usize> = (0..4).chain(11..16).chain((4..11).rev()).collect();
        for &i in &order {
            let (seq, p) = &pkts[i];
            let mut q = p.clone();
            let (r, _) = inb
                .open(&mut q)
                .unwrap_or_else(|e| panic!("{aead:?} seq {seq:#x}: {e}"));
            assert_eq!(q[r][40 - 1], (i + 1) as u8);
        }
        assert_eq!(inb.window().top(), start + 16);
        // Every one is now a replay, on either side of the boundary.
        for (seq, p) in &pkts {
            assert_eq!(inb.open(&mut p.clone()), Err(Error::Replay { seq: *seq }));
        }
        // Further traffic in the new sub-space keeps working.
        for _ in 0..3 {
            inb.open(&mut seal(&mut out, &ipv4(40, 0, 0), NH_IPV4))
                .unwrap();
        }
    }
}

#[test]
fn esn_receiver_refuses_same_low_bits_from_previous_subspace() {
    // A packet sealed with seq 5 (high half 0) is not accepted by a receiver
    // whose window is at 2^32 + 2000: its low half is read as belonging to a
    // later sub-space (2^33 + 5), and the ICV (computed over high half 0)
    // refutes that.
    let (mut out, mut inb) = pair(Aead::AesGcm128, true);
    let old: Vec<Vec<u8>> = (0..5)
        .map(|_| seal(&mut out, &ipv4(40, 0, 0), NH_IPV4))
        .collect();
    // The receiver follows the sender across the boundary (it cannot infer a
    // jump of more than 2^32 at once; RFC 4303 A.3 resynchronisation is not
    // implemented).
    assert!(out.advance_seq_to((1 << 32) - 100));
    inb.open(&mut seal(&mut out, &ipv4(40, 0, 0), NH_IPV4))
        .unwrap();
    assert!(out.advance_seq_to((1 << 32) + 1999));
    inb.open(&mut seal(&mut out, &ipv4(40, 0, 0), NH_IPV4))
        .unwrap();
    assert_eq!(inb.window().top(), (1 << 32) + 2000);
    assert_eq!(inb.open(&mut old[4].clone()), Err(Error::BadTag));
}

#[test]
fn esn_and_non_esn_do_not_interoperate() {
    let aead = Aead::ChaCha20Poly1305;
    let km = keymat(aead, 1);
    let mut out = OutboundSa::new(SPI, aead, &km, true).unwrap();
    let mut inb = InboundSa::new(SPI, aead, &km, false).unwrap();
    assert_eq!(
        inb.open(&mut seal(&mut out, &ipv4(40, 0, 0), NH_IPV4)),
        Err(Error::BadTag)
    );
}

#[test]
fn replay_window_sizes() {
    assert!(matches!(
        ReplayWindow::new(1023),
        Err(Error::WindowSize(1023))
    ));
    assert!(matches!(
        ReplayWindow::new(MAX_WINDOW + 1),
        Err(Error::WindowSize(_))
    ));
    assert_eq!(ReplayWindow::default().size(), 1024);
    assert_eq!(ReplayWindow::new(1025).unwrap().size(), 1088);
    let mut w = ReplayWindow::new(4096).unwrap();
    w.accept(10_000).unwrap();
    assert_eq!(w.check(10_000 - 4095), Ok(()));
    assert_eq!(
        w.check(10_000 - 4096),
        Err(Error::TooOld { seq: 10_000 - 4096 })
    );
    assert_eq!(w.check(0), Err(Error::Replay { seq: 0 }));
    // An inbound SA with a large window.
    let aead = Aead::AesGcm128;
    let inb = InboundSa::with_window(
        SPI,
        aead,
        &keymat(aead, 1),
        false,
        ReplayWindow::new(8192).unwrap(),
    )
    .unwrap();
    assert_eq!(inb.window().size(), 8192);
}

#[test]
fn esn_inference_cases() {
    let mut w = ReplayWindow::new(1024).unwrap();
    // Fresh window: low numbers are in sub-space 0.
    assert_eq!(w.infer_esn(1), 1);
    assert_eq!(w.infer_esn(0xffff_fff0), 0xffff_fff0);
    // Case A: window entirely inside sub-space 0.
    w.accept(0xffff_ff00).unwrap();
    assert_eq!(w.infer_esn(0xffff_fe00), 0xffff_fe00); // in window
    assert_eq!(w.infer_esn(0xffff_ffff), 0xffff_ffff); // right of it
    assert_eq!(w.infer_esn(3), (1 << 32) + 3); // wrapped: next sub-space
                                               // Case B: window spans the boundary.
    w.accept((1 << 32) + 5).unwrap();
    assert_eq!(w.infer_esn(0xffff_fff0), 0xffff_fff0); // previous sub-space
    assert_eq!(w.infer_esn(2), (1 << 32) + 2);
    assert_eq!(w.infer_esn(1000), (1 << 32) + 1000);
}

#[test]
fn dscp_and_ecn() {
    assert_eq!(outer_tos(&ipv4(20, 0xb8, 0)), 0xb8); // EF
    assert_eq!(outer_tos(&ipv4(20, 0x2b, 0)), 0x2b); // AF11 + CE... copied whole
    assert_eq!(outer_tos(&ipv6(40, 0x2e, 0)), 0x2e);
    assert_eq!(outer_tos(&ipv6(40, 0xfd, 0)), 0xfd);
    assert_eq!(outer_tos(&[]), 0);
    assert_eq!(outer_tos(&[0x45]), 0);
    assert_eq!(outer_tos(&[0x00, 0xff]), 0);
    // Not a packet: a header shorter than its fixed part, or IHL below 5.
    assert_eq!(outer_tos(&[0x45, 0xb8]), 0);
    assert_eq!(outer_tos(&ipv6(40, 0x2e, 0)[..39]), 0);
    let mut bad_ihl = ipv4(20, 0xb9, 0);
    bad_ihl[0] = 0x44;
    assert_eq!(outer_tos(&bad_ihl), 0);
    assert_eq!(decap_ecn(0b11, &mut bad_ihl), EcnDecap::Unchanged);
    assert_eq!(bad_ihl[1], 0xb9);

    fn v4_checksum_ok(p: &[u8]) -> bool {
        let mut s = 0u32;
        for c in p[..20].chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s == 0xffff
    }
    fn with_checksum(mut p: Vec<u8>) -> Vec<u8> {
        p[10] = 0;
        p[11] = 0;
        let mut s = 0u32;
        for c in p[..20].chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        p[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
        p
    }
    // RFC 6040 Figure 4, IPv4 (checksum maintained) and IPv6.
    let table = [
        // (inner ECN, outer ECN, expected)
        (0b00, 0b00, Some(0b00)),
        (0b00, 0b10, Some(0b00)),
        (0b00, 0b01, Some(0b00)),
        (0b00, 0b11, None),
        (0b10, 0b00, Some(0b10)),
        (0b10, 0b10, Some(0b10)),
        (0b10, 0b01, Some(0b01)),
        (0b10, 0b11, Some(0b11)),
        (0b01, 0b00, Some(0b01)),
        (0b01, 0b10, Some(0b01)),
        (0b01, 0b01, Some(0b01)),
        (0b01, 0b11, Some(0b11)),
        (0b11, 0b00, Some(0b11)),
        (0b11, 0b11, Some(0b11)),
    ];
    for (inner, outer, expect) in table {
        let mut p4 = with_checksum(ipv4(40, 0xb8 | inner, 0x5a));
        let mut p6 = ipv6(60, 0xb8 | inner, 0x5a);
        let r4 = decap_ecn(0x28 | outer, &mut p4);
        let r6 = decap_ecn(0x28 | outer, &mut p6);
        match expect {
            None => {
                assert_eq!(r4, EcnDecap::Drop);
                assert_eq!(r6, EcnDecap::Drop);
            }
            Some(e) => {
                assert_eq!(r4 == EcnDecap::Rewritten, e != inner);
                assert_eq!(r6 == EcnDecap::Rewritten, e != inner);
                assert_eq!(
                    outer_tos(&p4),
                    0xb8 | e,
                    "v4 inner {inner:02b} outer {outer:02b}"
                );
                assert_eq!(
                    outer_tos(&p6),
                    0xb8 | e,
                    "v6 inner {inner:02b} outer {outer:02b}"
                );
                assert!(v4_checksum_ok(&p4));
                assert_eq!(p6[1] & 0x0f, 0x0a, "flow label bits untouched");
            }
        }
    }
}

#[test]
fn debug_output_has_no_key_material() {
    let aead = Aead::AesGcm128;
    let km = vec![0xabu8; aead.keymat_len()];
    let out = OutboundSa::new(SPI, aead, &km, false).unwrap();
    let inb = InboundSa::new(SPI, aead, &km, false).unwrap();
    let s = format!("{out:?} {inb:?} {:?}", SaCipher::new(aead, &km).unwrap());
    assert!(
        !s.to_lowercase().contains("ab, ab") && !s.contains("171"),
        "{s}"
    );
    assert!(s.contains("0xc0ffee01"));
}

#[test]
fn aad_layout_matches_rfc4106_section5() {
    // Seal through the SA, open with the bare cipher and a hand-built AAD:
    // SPI || seq (8 bytes) without ESN, SPI || seq-high || seq-low with ESN.
    for aead in Aead::ALL {
        let km = keymat(aead, 1);
        let cipher = SaCipher::new(aead, &km).unwrap();
        for esn in [false, true] {
            let mut out = OutboundSa::new(SPI, aead, &km, esn).unwrap();
            let seq: u64 = if esn { 0x0000_0001_0000_0005 } else { 5 };
            out.advance_seq_to(seq - 1);
            let mut esp = seal(&mut out, &ipv4(40, 0, 0x33), NH_IPV4);
            let mut aad = SPI.to_be_bytes().to_vec();
            if esn {
                aad.extend_from_slice(&[0, 0, 0, 1]);
            }
            aad.extend_from_slice(&[0, 0, 0, 5]);
            assert_eq!(&esp[4..8], &[0, 0, 0, 5]);
            let iv: [u8; 8] = esp[8..16].try_into().unwrap();
            assert_eq!(iv, seq.to_be_bytes());
            let n = cipher
                .open_in_place(&iv, &aad, &mut esp[HEADROOM..])
                .unwrap();
            assert_eq!(&esp[HEADROOM..HEADROOM + 40], &ipv4(40, 0, 0x33)[..]);
            assert_eq!(n, 40 + 2 + 2);
        }
    }
}

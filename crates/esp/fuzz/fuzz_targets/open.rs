//! `InboundSa::open` on arbitrary bytes: a sequence of packets fed to one
//! SA (so the replay window state is exercised too). Byte 0 picks the
//! transform, ESN, and whether packets get the SA's own SPI (to reach the
//! window and the AEAD); then repeated `len, bytes[len]` records.
#![no_main]

use dodvpn_esp::{Aead, Error, InboundSa};
use libfuzzer_sys::fuzz_target;

const SPI: u32 = 0x0102_0304;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let aead = Aead::EVERY[(cfg as usize) % Aead::EVERY.len()];
    let esn = cfg & 0x10 != 0;
    let own_spi = cfg & 0x20 != 0;
    let km: Vec<u8> = (0..aead.keymat_len() as u8).collect();
    let mut sa = InboundSa::new(SPI, aead, &km, esn).unwrap();
    let mut pkt = Vec::with_capacity(256);
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        pkt.clear();
        pkt.extend_from_slice(&tail[..n]);
        rest = &tail[n..];
        if own_spi && pkt.len() >= 4 {
            pkt[..4].copy_from_slice(&SPI.to_be_bytes());
        }
        let top = sa.window().top();
        match sa.open(&mut pkt) {
            Ok((r, _)) => assert!(r.end <= pkt.len()),
            // Nothing unauthenticated may move the window.
            Err(
                Error::Truncated { .. }
                | Error::WrongSpi { .. }
                | Error::Replay { .. }
                | Error::TooOld { .. }
                | Error::BadTag,
            ) => {
                assert_eq!(sa.window().top(), top)
            }
            Err(_) => {}
        }
    }
    let c = sa.counters();
    assert_eq!(
        c.packets_opened, 0,
        "forging an AEAD tag is not expected from a fuzzer"
    );
});

//! `ReplayWindow` against a reference model (set of seen numbers + max).
#![no_main]

use std::collections::HashSet;

use dodvpn_esp::ReplayWindow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let size = 1024 + 64 * (cfg as usize % 8);
    let mut w = ReplayWindow::new(size).unwrap();
    let size = w.size();
    let mut seen = HashSet::new();
    let mut max = 0u64;
    let mut base = 0u64;
    for c in rest.chunks(3) {
        let v = c.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
        // High bit of the first byte: jump the base far ahead.
        if c[0] & 0x80 != 0 {
            base = base.wrapping_add(v << 20);
            continue;
        }
        let seq = base.wrapping_add(v);
        let ok = seq != 0 && !seen.contains(&seq) && (seq > max || max - seq < size);
        assert_eq!(w.accept(seq).is_ok(), ok, "seq {seq} max {max}");
        if ok {
            seen.insert(seq);
            max = max.max(seq);
        }
        assert_eq!(w.top(), max);
    }
});

#![no_main]
//! The centre's event stream parser on arbitrary bytes, split at an arbitrary point:
//! it must never panic, and splitting must not change what comes out.
use dodvpn_agent::sse::SseParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let cut = data[0] as usize % data.len();
    let body = &data[1..];
    let cut = cut.min(body.len());
    let mut whole = SseParser::default();
    let a = whole.push(body);
    let mut split = SseParser::default();
    let b1 = split.push(&body[..cut]);
    let b2 = split.push(&body[cut..]);
    if let (Ok(a), Ok(mut b1), Ok(b2)) = (a, b1, b2) {
        b1.extend(b2);
        assert_eq!(a, b1);
    }
});

//! What a browser (possibly hostile) sends the console and the console parses itself:
//! TOTP and recovery codes, base32 secrets, Accept-Language, passwords. None may panic.
#![no_main]

use dodvpn_console::{i18n::Lang, password, store, totp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = totp::base32_decode(&text);
    let t = data.iter().fold(0u64, |a, &b| a.wrapping_mul(31).wrapping_add(b as u64)) >> 2;
    let _ = totp::matching_step(data, &text, t);
    let _ = Lang::from_accept_language(&text);
    let _ = store::normalise_recovery(&text);
    let _ = password::check_strength(&text);
    assert_eq!(totp::base32_decode(&totp::base32_encode(data)).as_deref(), Some(data));
});

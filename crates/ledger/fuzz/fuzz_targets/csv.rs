//! Any bytes offered as a ledger CSV: rows or a line/column error, never a panic; and
//! whatever is accepted exports and reads back to the same rows.
#![no_main]

use dodvpn_ledger::{from_csv, to_csv, Equipment, External};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = from_csv::<External>(data) {
        assert_eq!(from_csv::<External>(&to_csv(&rows)).ok(), Some(rows));
    }
    if let Ok(rows) = from_csv::<Equipment>(data) {
        assert_eq!(from_csv::<Equipment>(&to_csv(&rows)).ok(), Some(rows));
    }
});

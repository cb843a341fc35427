//! Any bytes as a catalogue file, and any JSON as a submission to the shipped sheets:
//! an error or a consistent score, never a panic.
#![no_main]

use dodvpn_checksheet::{builtin, score, Catalogue, Submission};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Catalogue::parse(text);
    let cats = builtin().expect("the shipped sheets are valid");
    if let Ok(s) = serde_json::from_str::<Submission>(text) {
        if let Ok(sc) = score(&cats, &s) {
            assert_eq!(sc.yes + sc.no + sc.not_applicable + sc.unanswered, sc.asked);
        }
    }
});

//! A finding: the JSON shape the centre stores (`POST /api/v1/orgs/{id}/diagnoses`).

use serde::{Deserialize, Serialize};

use crate::catalog;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP findings carry port 0.
    Icmp,
}

/// Longest evidence kept (characters); the centre accepts up to 1024.
pub const EVIDENCE_MAX: usize = 512;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub target: String,
    pub proto: Proto,
    pub port: u16,
    /// Stable check identifier, e.g. `ftp.anonymous` (see [`catalog`]).
    pub check: String,
    pub severity: Severity,
    pub evidence: String,
    pub title_en: String,
    pub title_ja: String,
    pub recommendation_en: String,
    pub recommendation_ja: String,
}

impl Finding {
    /// A finding of a catalogued check, with `evidence` made printable and truncated.
    pub fn new(
        target: std::net::IpAddr,
        proto: Proto,
        port: u16,
        check: &str,
        evidence: &[u8],
    ) -> Finding {
        let e = catalog::entry(check);
        Finding {
            target: target.to_string(),
            proto,
            port,
            check: check.to_string(),
            severity: e.severity,
            evidence: printable(evidence, EVIDENCE_MAX),
            title_en: e.title_en.to_string(),
            title_ja: e.title_ja.to_string(),
            recommendation_en: e.rec_en.to_string(),
            recommendation_ja: e.rec_ja.to_string(),
        }
    }
}

/// Bytes as text a person and a JSON column can hold: printable ASCII and valid UTF-8
/// kept, CR/LF as `\r` `\n`, anything else `\xNN`, cut at `max` characters with `…`.
pub fn printable(b: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(b);
    let mut out = String::new();
    let mut n = 0;
    for c in text.chars() {
        let piece = match c {
            '\r' => "\\r".to_string(),
            '\n' => "\\n".to_string(),
            '\t' => "\\t".to_string(),
            '\u{fffd}' => "\\x??".to_string(),
            c if c.is_control() => format!("\\x{:02x}", c as u32 & 0xff),
            c => c.to_string(),
        };
        let len = piece.chars().count();
        if n + len > max.saturating_sub(1) {
            out.push('…');
            return out;
        }
        n += len;
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evidence_is_escaped_and_cut() {
        assert_eq!(printable(b"220 hi\r\n", 100), "220 hi\\r\\n");
        assert_eq!(printable(b"\x00\x01", 100), "\\x00\\x01");
        let long = printable(&[b'a'; 2000], 10);
        assert_eq!(long.chars().count(), 10);
        assert!(long.ends_with('…'));
    }

    proptest! {
        #[test]
        fn printable_is_bounded_and_has_no_controls(b in proptest::collection::vec(any::<u8>(), 0..3000), max in 1usize..600) {
            let s = printable(&b, max);
            prop_assert!(s.chars().count() <= max);
            prop_assert!(!s.chars().any(|c| c.is_control()));
        }
    }
}

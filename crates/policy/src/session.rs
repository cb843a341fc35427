//! Session reports (R-AUD-2, TR A.1 c "three-point audit"): each end of a tunnel tells
//! the centre when it came up, how many bytes and packets it carried and when it went
//! down, so the centre's record and both ends' records can be laid side by side.
//!
//! # Session id
//!
//! A session is one IKE SA. Both ends know its two SPIs (the initiator's and the
//! responder's, fixed once IKE_SA_INIT completes), so both compute the same id without
//! talking to each other or to the centre:
//!
//! ```text
//! session_id = format!("{spi_i:016x}-{spi_r:016x}")   // e.g. "0123456789abcdef-fedcba9876543210"
//! ```
//!
//! lower-case hex, initiator's SPI first, neither SPI zero ([`session_id`]). One IKE SA
//! may carry the child SAs of several grants between the same two devices, so a report
//! names the session and lists the grant ids it serves (`grant_ids`). A rekeyed IKE SA
//! has new SPIs and therefore is a new session.
//!
//! This type is shared by the centre (which validates and stores it) and the agent
//! (which sends it), without the agent depending on the centre.

use serde::{Deserialize, Serialize};

/// At most this many grants per report.
pub const MAX_GRANTS: usize = 64;
/// Longest device or grant id accepted.
pub const MAX_ID_LEN: usize = 64;
/// Longest `reason` accepted, in characters (as JSON Schema's maxLength counts).
pub const MAX_REASON_LEN: usize = 256;

/// What happened to the session at the reporting end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SessionEvent {
    /// The IKE SA (and its first child SA) is established.
    Up,
    /// Periodic counters while the session is up.
    Update,
    /// The IKE SA is gone (deleted, expired, cut, peer dead); final counters.
    Down,
}

impl SessionEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEvent::Up => "up",
            SessionEvent::Update => "update",
            SessionEvent::Down => "down",
        }
    }
}

impl std::str::FromStr for SessionEvent {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "up" => Ok(SessionEvent::Up),
            "update" => Ok(SessionEvent::Update),
            "down" => Ok(SessionEvent::Down),
            _ => Err(()),
        }
    }
}

/// One end's report about one session (`POST /api/v1/device/sessions`). Counters are
/// cumulative since the session came up, as seen by the reporting end (`bytes_in` is
/// what it received from the peer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionReport {
    /// `"{spi_i:016x}-{spi_r:016x}"`, see [`session_id`].
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{16}-[0-9a-f]{16}$"))]
    pub session_id: String,
    pub event: SessionEvent,
    /// The device at the other end.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub peer_device_id: String,
    /// The grants whose child SAs this IKE SA carries (1–64).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 64))]
    pub grant_ids: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// When it happened at the reporting end (Unix seconds).
    pub at: i64,
    /// Why the session went down (only with `event = "down"`; at most 256 printable characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub reason: Option<String>,
    /// The relay the session runs through ("IP:port"), if it does (issue 19; only
    /// with `event = "up"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub relay: Option<String>,
}

/// The session id of the IKE SA with these SPIs (both ends compute the same).
pub fn session_id(spi_i: u64, spi_r: u64) -> String {
    format!("{spi_i:016x}-{spi_r:016x}")
}

/// The SPIs in a session id, if it is well formed (lower-case hex, neither SPI zero).
pub fn parse_session_id(id: &str) -> Option<(u64, u64)> {
    let (i, r) = id.split_once('-')?;
    let hex16 = |s: &str| {
        (s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
        .filter(|v| *v != 0)
    };
    Some((hex16(i)?, hex16(r)?))
}

/// Why a report is malformed: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReportError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> ReportError {
    ReportError {
        code,
        message: message.into(),
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SessionReport {
    /// Shape checks that need no database: id format, sizes, counters that fit a
    /// signed 64-bit column, `reason` only on `down`. `reporter` is the authenticated
    /// device; it cannot report a session with itself.
    pub fn validate(&self, reporter: &str) -> Result<(), ReportError> {
        if parse_session_id(&self.session_id).is_none() {
            return Err(err(
                "invalid_session_id",
                "session_id must be the IKE SA's SPI pair as \"{spi_i:016x}-{spi_r:016x}\" (lower-case hex, neither zero)",
            ));
        }
        if !valid_id(&self.peer_device_id) {
            return Err(err(
                "invalid_peer",
                "peer_device_id must be a device id (1-64 characters of [A-Za-z0-9._-])",
            ));
        }
        if self.peer_device_id == reporter {
            return Err(err(
                "invalid_peer",
                "a device cannot report a session with itself",
            ));
        }
        if self.grant_ids.is_empty() || self.grant_ids.len() > MAX_GRANTS {
            return Err(err(
                "invalid_grants",
                format!("grant_ids must list 1 to {MAX_GRANTS} grants"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for g in &self.grant_ids {
            if !valid_id(g) {
                return Err(err(
                    "invalid_grants",
                    "each grant id must be 1-64 characters of [A-Za-z0-9._-]",
                ));
            }
            if !seen.insert(g) {
                return Err(err("invalid_grants", format!("grant {g} is listed twice")));
            }
        }
        for (name, v) in [
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("packets_in", self.packets_in),
            ("packets_out", self.packets_out),
        ] {
            if v > i64::MAX as u64 {
                return Err(err(
                    "invalid_counter",
                    format!("{name} is larger than 2^63-1"),
                ));
            }
        }
        if self.at <= 0 {
            return Err(err("invalid_time", "at must be a Unix time in seconds"));
        }
        match (&self.reason, self.event) {
            (Some(_), SessionEvent::Up | SessionEvent::Update) => {
                return Err(err(
                    "invalid_reason",
                    "reason is given only with event \"down\"",
                ))
            }
            (Some(r), SessionEvent::Down)
                if r.chars().count() > MAX_REASON_LEN || r.chars().any(char::is_control) =>
            {
                return Err(err(
                    "invalid_reason",
                    format!("reason must be at most {MAX_REASON_LEN} printable characters"),
                ))
            }
            _ => {}
        }
        if let Some(r) = &self.relay {
            if self.event != SessionEvent::Up || r.parse::<std::net::SocketAddr>().is_err() {
                return Err(err(
                    "invalid_relay",
                    "relay is an \"IP:port\", given only with event \"up\"",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SessionReport {
        SessionReport {
            session_id: session_id(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            event: SessionEvent::Up,
            peer_device_id: "dev-b".into(),
            grant_ids: vec!["grant-1".into()],
            bytes_in: 0,
            bytes_out: 0,
            packets_in: 0,
            packets_out: 0,
            at: 1_700_000_000,
            reason: None,
            relay: None,
        }
    }

    #[test]
    fn a_relay_is_an_address_reported_with_up() {
        let mut r = report();
        r.relay = Some("192.0.2.1:4600".into());
        assert!(r.validate("dev-a").is_ok());
        r.relay = Some("relay.example".into());
        assert_eq!(r.validate("dev-a").unwrap_err().code, "invalid_relay");
        r.relay = Some("192.0.2.1:4600".into());
        r.event = SessionEvent::Down;
        r.reason = Some("gone".into());
        assert_eq!(r.validate("dev-a").unwrap_err().code, "invalid_relay");
    }

    #[test]
    fn session_id_round_trips() {
        let id = session_id(1, u64::MAX);
        assert_eq!(id, "0000000000000001-ffffffffffffffff");
        assert_eq!(parse_session_id(&id), Some((1, u64::MAX)));
        for bad in [
            "",
            "0000000000000001",
            "0000000000000000-0000000000000001",
            "0000000000000001-0000000000000000",
            "0000000000000001-FFFFFFFFFFFFFFFF",
            "000000000000001-ffffffffffffffff",
            "0000000000000001_ffffffffffffffff",
            "+000000000000001-ffffffffffffffff",
        ] {
            assert_eq!(parse_session_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn validation() {
        assert!(report().validate("dev-a").is_ok());
        assert_eq!(report().validate("dev-b").unwrap_err().code, "invalid_peer");
        let mut r = report();
        r.grant_ids.clear();
        assert_eq!(r.validate("dev-a").unwrap_err().code, "invalid_grants");
        let mut r = report();
        r.grant_ids.push("grant-1".into());
        assert_eq!(r.validate("dev-a").unwrap_err().code, "invalid_grants");
        let mut r = report();
        r.bytes_in = u64::MAX;
        assert_eq!(r.validate("dev-a").unwrap_err().code, "invalid_counter");
        let mut r = report();
        r.reason = Some("x".into());
        assert_eq!(r.validate("dev-a").unwrap_err().code, "invalid_reason");
        r.event = SessionEvent::Down;
        assert!(r.validate("dev-a").is_ok());
        r.reason = Some("a\nb".into());
        assert_eq!(r.validate("dev-a").unwrap_err().code, "invalid_reason");
    }

    #[test]
    fn unknown_fields_and_events_are_refused() {
        let mut v = serde_json::to_value(report()).unwrap();
        assert!(serde_json::from_value::<SessionReport>(v.clone()).is_ok());
        v["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<SessionReport>(v).is_err());
        let mut v = serde_json::to_value(report()).unwrap();
        v["event"] = serde_json::json!("sideways");
        assert!(serde_json::from_value::<SessionReport>(v).is_err());
    }
}

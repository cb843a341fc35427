//! Weekly time windows for inbound rules (R-POL-3: "only when the hospital
//! opened the window").

use crate::PolicyError;
use serde::{Deserialize, Serialize};

const DAY_SECS: i64 = 86_400;
const MINUTES_PER_DAY: u16 = 1440;

/// A recurring window in UTC.
///
/// - `weekdays`: 0 = Monday … 6 = Sunday; empty = every day. A window that
///   wraps midnight belongs to the day it *starts* on.
/// - `start_minute` / `end_minute`: minutes of the UTC day, end exclusive;
///   `end_minute` may be 1440 (midnight). `start > end` wraps past midnight
///   (22:00–06:00); `start == end` is a full 24 hours from `start`.
///
/// Deserialisation rejects weekdays above 6 and minutes out of range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTimeWindow")]
pub struct TimeWindow {
    pub weekdays: Vec<u8>,
    pub start_minute: u16,
    pub end_minute: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeWindow {
    #[serde(default)]
    weekdays: Vec<u8>,
    start_minute: u16,
    end_minute: u16,
}

impl TryFrom<RawTimeWindow> for TimeWindow {
    type Error = PolicyError;
    fn try_from(r: RawTimeWindow) -> Result<Self, Self::Error> {
        let w = TimeWindow {
            weekdays: r.weekdays,
            start_minute: r.start_minute,
            end_minute: r.end_minute,
        };
        w.validate()?;
        Ok(w)
    }
}

impl TimeWindow {
    /// Every day between two UTC minutes of the day.
    pub fn daily(start_minute: u16, end_minute: u16) -> Self {
        TimeWindow {
            weekdays: Vec::new(),
            start_minute,
            end_minute,
        }
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        if let Some(d) = self.weekdays.iter().find(|d| **d > 6) {
            return Err(PolicyError::Invalid(format!(
                "time window weekday {d} is not 0 (Monday) to 6 (Sunday)"
            )));
        }
        if self.start_minute >= MINUTES_PER_DAY || self.end_minute > MINUTES_PER_DAY {
            return Err(PolicyError::Invalid(format!(
                "time window {}-{} is outside a day (start 0-1439, end 0-1440 minutes)",
                self.start_minute, self.end_minute
            )));
        }
        Ok(())
    }

    fn on_day(&self, weekday: i64) -> bool {
        self.weekdays.is_empty() || self.weekdays.iter().any(|d| i64::from(*d) == weekday)
    }

    /// If `now` (unix seconds) is inside this window, the unix second at
    /// which the current occurrence of the window ends.
    pub fn end_if_open(&self, now: i64) -> Option<i64> {
        let day = now.div_euclid(DAY_SECS);
        let minute = now.rem_euclid(DAY_SECS) / 60;
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        let weekday = |d: i64| (d + 3).rem_euclid(7);
        let at = |d: i64, m: u16| d.saturating_mul(DAY_SECS).saturating_add(i64::from(m) * 60);
        let (start, end) = (i64::from(self.start_minute), i64::from(self.end_minute));
        if start < end {
            (self.on_day(weekday(day)) && start <= minute && minute < end)
                .then(|| at(day, self.end_minute))
        } else if minute >= start && self.on_day(weekday(day)) {
            // Wrapping (or full-day) window that started today.
            Some(at(day.saturating_add(1), self.end_minute))
        } else if minute < end && self.on_day(weekday(day - 1)) {
            // Wrapping window that started yesterday.
            Some(at(day, self.end_minute))
        } else {
            None
        }
    }

    pub fn contains(&self, now: i64) -> bool {
        self.end_if_open(now).is_some()
    }
}

/// With no windows a rule is always open (`Some(None)`); otherwise the
/// latest end among the windows open at `now`, or `None` when all are shut.
pub(crate) fn open_until(windows: &[TimeWindow], now: i64) -> Option<Option<i64>> {
    if windows.is_empty() {
        return Some(None);
    }
    windows
        .iter()
        .filter_map(|w| w.end_if_open(now))
        .max()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-01-01 00:00 UTC was a Monday.
    const MON: i64 = 1_704_067_200;
    const H: i64 = 3600;

    #[test]
    fn monday_epoch_is_weekday_zero() {
        let w = TimeWindow {
            weekdays: vec![0],
            start_minute: 0,
            end_minute: 1440,
        };
        assert!(w.contains(MON));
        assert!(w.contains(MON + 24 * H - 1));
        assert!(!w.contains(MON + 24 * H));
        assert!(!w.contains(MON - 1));
    }

    #[test]
    fn plain_window() {
        let w = TimeWindow::daily(9 * 60, 17 * 60);
        assert_eq!(w.end_if_open(MON + 9 * H), Some(MON + 17 * H));
        assert!(!w.contains(MON + 17 * H), "end is exclusive");
        assert!(!w.contains(MON + 8 * H));
    }

    #[test]
    fn wrapping_window_belongs_to_its_start_day() {
        // Friday 22:00 to Saturday 06:00.
        let w = TimeWindow {
            weekdays: vec![4],
            start_minute: 22 * 60,
            end_minute: 6 * 60,
        };
        let fri = MON + 4 * 24 * H;
        assert_eq!(w.end_if_open(fri + 23 * H), Some(fri + 30 * H));
        assert_eq!(w.end_if_open(fri + 24 * H + 5 * H), Some(fri + 30 * H));
        assert!(
            !w.contains(fri + 5 * H),
            "Friday early morning belongs to Thursday's window"
        );
        assert!(!w.contains(fri + 30 * H));
    }

    #[test]
    fn equal_start_and_end_is_a_full_day() {
        let w = TimeWindow {
            weekdays: vec![0],
            start_minute: 480,
            end_minute: 480,
        };
        assert!(w.contains(MON + 8 * H));
        assert!(w.contains(MON + 24 * H + 7 * H));
        assert!(!w.contains(MON + 24 * H + 8 * H));
        assert!(!w.contains(MON + 7 * H));
    }

    #[test]
    fn deserialisation_validates() {
        let ok: TimeWindow =
            serde_json::from_str(r#"{"weekdays":[0,6],"start_minute":0,"end_minute":1440}"#)
                .unwrap();
        assert_eq!(ok.weekdays, vec![0, 6]);
        assert!(serde_json::from_str::<TimeWindow>(
            r#"{"weekdays":[7],"start_minute":0,"end_minute":60}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<TimeWindow>(r#"{"start_minute":1440,"end_minute":60}"#).is_err()
        );
        assert!(serde_json::from_str::<TimeWindow>(
            r#"{"start_minute":0,"end_minute":60,"end":1}"#
        )
        .is_err());
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let w = TimeWindow::daily(1000, 10);
        let _ = w.end_if_open(i64::MAX);
        let _ = w.end_if_open(i64::MIN);
        let w = TimeWindow::daily(10, 1000);
        let _ = w.end_if_open(i64::MAX);
        let _ = w.end_if_open(i64::MIN);
    }
}

//! Business hours: a weekly schedule in a time zone, holidays, and which destination
//! classes may still be called when the office is closed.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;

use crate::number::{ClassSet, DestinationClass};

/// Minutes since local midnight, `start..end` (end exclusive, at most 1440).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSpan {
    pub start_minute: u16,
    pub end_minute: u16,
}

/// A named weekly schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub name: String,
    pub time_zone: Tz,
    /// Index 0 is Monday.
    pub weekly: [Vec<OpenSpan>; 7],
    /// Days the office is closed all day (local dates), sorted.
    pub holidays: Vec<NaiveDate>,
    /// Classes that may be called outside business hours (emergency always may).
    pub outside_hours_classes: ClassSet,
}

/// Whether the schedule is open at an instant, and why, for messages and `explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenState {
    pub open: bool,
    /// Local time and reason, e.g. "Sat 2026-11-28 10:00 Europe/Paris: closed on Saturdays".
    pub detail: String,
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl Schedule {
    /// Whether the office is open at `at`, without building the explanation of
    /// [`Schedule::open_at`] (the call-pattern monitor asks this on every attempt).
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.time_zone);
        if self.holidays.binary_search(&local.date_naive()).is_ok() {
            return false;
        }
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = (local.hour() * 60 + local.minute()) as u16;
        self.weekly[day]
            .iter()
            .any(|s| s.start_minute <= minute && minute < s.end_minute)
    }

    /// Whether the office is open at `at`.
    pub fn open_at(&self, at: DateTime<Utc>) -> OpenState {
        let local = at.with_timezone(&self.time_zone);
        let date = local.date_naive();
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let stamp = format!(
            "{} {} {:02}:{:02} {}",
            WEEKDAYS[day],
            date,
            local.hour(),
            local.minute(),
            self.time_zone.name()
        );
        if self.holidays.binary_search(&date).is_ok() {
            return OpenState {
                open: false,
                detail: format!("{stamp}: holiday"),
            };
        }
        let spans = &self.weekly[day];
        if spans.is_empty() {
            return OpenState {
                open: false,
                detail: format!("{stamp}: closed all day on {}", WEEKDAYS[day]),
            };
        }
        let open = spans
            .iter()
            .any(|s| s.start_minute <= minute && minute < s.end_minute);
        let hours: Vec<String> = spans
            .iter()
            .map(|s| {
                format!(
                    "{:02}:{:02}-{:02}:{:02}",
                    s.start_minute / 60,
                    s.start_minute % 60,
                    s.end_minute / 60,
                    s.end_minute % 60
                )
            })
            .collect();
        OpenState {
            open,
            detail: format!(
                "{stamp}: {} (open {})",
                if open { "open" } else { "closed" },
                hours.join(", ")
            ),
        }
    }

    /// Whether `class` may be called while closed.
    pub fn allows_when_closed(&self, class: DestinationClass) -> bool {
        class == DestinationClass::Emergency || self.outside_hours_classes.contains(class)
    }
}

/// Parses "08:00-18:00" into a span.
pub fn parse_span(text: &str) -> Result<OpenSpan, String> {
    let bad =
        || format!("{text:?} is not a time span (expected HH:MM-HH:MM, e.g. \"08:30-18:00\")");
    let (start, end) = text.trim().split_once('-').ok_or_else(bad)?;
    let minute = |t: &str| -> Result<u16, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (start_minute, end_minute) = (minute(start)?, minute(end)?);
    if start_minute >= end_minute {
        return Err(format!(
            "{text:?}: the span must end after it starts (split spans across midnight in two days)"
        ));
    }
    Ok(OpenSpan {
        start_minute,
        end_minute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Schedule {
        let day = vec![
            parse_span("08:00-12:00").unwrap(),
            parse_span("13:00-18:00").unwrap(),
        ];
        Schedule {
            name: "office".into(),
            time_zone: "Europe/Paris".parse().unwrap(),
            weekly: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                vec![],
                vec![],
            ],
            holidays: vec![NaiveDate::from_ymd_opt(2026, 12, 25).unwrap()],
            outside_hours_classes: [DestinationClass::Internal].into_iter().collect(),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn open_and_closed_in_local_time() {
        let s = office();
        // Thursday 2026-11-26 09:00 Paris is 08:00 UTC.
        assert!(s.open_at(at("2026-11-26T08:00:00Z")).open);
        // 12:30 Paris: lunch break.
        assert!(!s.open_at(at("2026-11-26T11:30:00Z")).open);
        // 17:59 open, 18:00 closed.
        assert!(s.open_at(at("2026-11-26T16:59:00Z")).open);
        let closed = s.open_at(at("2026-11-26T17:00:00Z"));
        assert!(!closed.open);
        assert!(
            closed.detail.contains("Thu 2026-11-26 18:00 Europe/Paris"),
            "{}",
            closed.detail
        );
        // Saturday, and a holiday on a Friday.
        assert!(!s.open_at(at("2026-11-28T10:00:00Z")).open);
        assert!(s
            .open_at(at("2026-12-25T10:00:00Z"))
            .detail
            .contains("holiday"));
        // Summer time: 2026-07-02 07:30 UTC is 09:30 in Paris.
        assert!(s.open_at(at("2026-07-02T07:30:00Z")).open);
        assert!(!s.open_at(at("2026-07-02T05:30:00Z")).open);
    }

    #[test]
    fn closed_office_allows_listed_classes_and_emergency() {
        let s = office();
        assert!(s.allows_when_closed(DestinationClass::Internal));
        assert!(s.allows_when_closed(DestinationClass::Emergency));
        assert!(!s.allows_when_closed(DestinationClass::International));
    }

    #[test]
    fn spans_are_validated() {
        assert_eq!(parse_span("00:00-24:00").unwrap().end_minute, 1440);
        for bad in [
            "8-18",
            "18:00-08:00",
            "08:60-09:00",
            "25:00-26:00",
            "x",
            "08:00-08:00",
        ] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}

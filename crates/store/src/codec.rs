//! The stored forms of core values: serde mirrors of `ActiveCall` (with its levels and
//! rate) kept as JSON, and the text forms of times, subjects, origins and periods.
//!
//! The core types are not `Deserialize` on purpose (serializable types live at the edge),
//! so the store owns these mirrors and converts both ways. Times are RFC 3339 UTC with
//! nanoseconds, money is integer micros, classes and increments use the core's own text
//! forms and parsers. The round trip is exact (tested below and in the shared suite).
//!
//! INVARIANT: [`format_time`] gives fixed-width text for years 0000 to 9999, so the text
//! sorts as the instants do (the store orders settled calls by it).

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tollgate_core::ledger::{
    ActiveCall, CallLevel, MonthKey, SettleReason, SpendPeriod, Subject, SubjectKind,
};
use tollgate_core::number::DestinationClass;
use tollgate_core::policy::Origin;
use tollgate_core::rating::Rate;
use tollgate_core::Money;

use crate::StoreError;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallDoc {
    call_id: String,
    extension: String,
    levels: Vec<LevelDoc>,
    destination: String,
    class: String,
    rate: Option<RateDoc>,
    granted_s: u64,
    cap_s: u64,
    reserved: i64,
    authorized_at: String,
    answered_at: Option<String>,
    expires_at: String,
    /// Absent in calls stored before the kill switch (and when the PBX gave none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pbx_ref: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelDoc {
    kind: String,
    id: String,
    /// "2026-11-26"
    day: String,
    /// "2026-11"
    month: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateDoc {
    prefix: String,
    description: String,
    price_per_minute: i64,
    connection_fee: i64,
    /// "60/60"
    increments: String,
    blocked: bool,
}

/// The JSON text of a call.
pub(crate) fn encode_call(call: &ActiveCall) -> Result<String, StoreError> {
    let doc = CallDoc {
        call_id: call.call_id.clone(),
        extension: call.extension.clone(),
        levels: call
            .levels
            .iter()
            .map(|level| LevelDoc {
                kind: subject_kind_str(level.subject.kind).to_string(),
                id: level.subject.id.clone(),
                day: level.day.to_string(),
                month: level.month.to_string(),
            })
            .collect(),
        destination: call.destination.clone(),
        class: call.class.as_str().to_string(),
        rate: call.rate.as_ref().map(|rate| RateDoc {
            prefix: rate.prefix.clone(),
            description: rate.description.clone(),
            price_per_minute: rate.price_per_minute.micros(),
            connection_fee: rate.connection_fee.micros(),
            increments: rate.increments.to_string(),
            blocked: rate.blocked,
        }),
        granted_s: call.granted_s,
        cap_s: call.cap_s,
        reserved: call.reserved.micros(),
        authorized_at: format_time(call.authorized_at),
        answered_at: call.answered_at.map(format_time),
        expires_at: format_time(call.expires_at),
        pbx_ref: call.pbx_ref.clone(),
    };
    serde_json::to_string(&doc).map_err(|e| StoreError::Invalid {
        what: format!("call {:?}", call.call_id),
        detail: e.to_string(),
    })
}

/// The call stored as `text` under `call_id`.
pub(crate) fn decode_call(call_id: &str, text: &str) -> Result<ActiveCall, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!("call {call_id:?}"),
        detail,
    };
    let doc: CallDoc = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let mut levels = Vec::with_capacity(doc.levels.len());
    for level in doc.levels {
        levels.push(CallLevel {
            subject: Subject {
                kind: parse_subject_kind(&level.kind).map_err(corrupt)?,
                id: level.id,
            },
            day: parse_day(&level.day).map_err(corrupt)?,
            month: parse_month(&level.month).map_err(corrupt)?,
        });
    }
    let rate = match doc.rate {
        None => None,
        Some(rate) => Some(Rate {
            prefix: rate.prefix,
            description: rate.description,
            price_per_minute: Money::from_micros(rate.price_per_minute),
            connection_fee: Money::from_micros(rate.connection_fee),
            increments: rate.increments.parse().map_err(corrupt)?,
            blocked: rate.blocked,
        }),
    };
    Ok(ActiveCall {
        call_id: doc.call_id,
        extension: doc.extension,
        levels,
        destination: doc.destination,
        class: doc.class.parse::<DestinationClass>().map_err(corrupt)?,
        rate,
        granted_s: doc.granted_s,
        cap_s: doc.cap_s,
        reserved: Money::from_micros(doc.reserved),
        authorized_at: parse_time(&doc.authorized_at).map_err(corrupt)?,
        answered_at: doc
            .answered_at
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(corrupt)?,
        expires_at: parse_time(&doc.expires_at).map_err(corrupt)?,
        pbx_ref: doc.pbx_ref,
    })
}

/// RFC 3339 in UTC with all nine fraction digits: exact, and sortable as text.
pub(crate) fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| format!("bad time {text:?}: {e}"))
}

fn parse_day(text: &str) -> Result<NaiveDate, String> {
    text.parse().map_err(|e| format!("bad day {text:?}: {e}"))
}

fn parse_month(text: &str) -> Result<MonthKey, String> {
    // The core's period parser validates "YYYY-MM"; reuse it rather than repeat it.
    match format!("m:{text}").parse::<SpendPeriod>()? {
        SpendPeriod::Month(month) => Ok(month),
        _ => Err(format!("bad month {text:?}")),
    }
}

pub(crate) fn subject_kind_str(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Extension => "extension",
        SubjectKind::Account => "account",
    }
}

pub(crate) fn parse_subject_kind(text: &str) -> Result<SubjectKind, String> {
    match text {
        "extension" => Ok(SubjectKind::Extension),
        "account" => Ok(SubjectKind::Account),
        _ => Err(format!("unknown subject kind {text:?}")),
    }
}

pub(crate) fn origin_str(origin: Origin) -> &'static str {
    match origin {
        Origin::Policy => "policy",
        Origin::Api => "api",
    }
}

pub(crate) fn parse_origin(text: &str) -> Result<Origin, String> {
    match text {
        "policy" => Ok(Origin::Policy),
        "api" => Ok(Origin::Api),
        _ => Err(format!("unknown origin {text:?}")),
    }
}

pub(crate) fn reason_str(reason: SettleReason) -> &'static str {
    match reason {
        SettleReason::Ended => "ended",
        SettleReason::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn call(rate: Option<Rate>, answered: bool) -> ActiveCall {
        let day = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let authorized_at = Utc.with_ymd_and_hms(2026, 11, 26, 23, 59, 58).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        ActiveCall {
            call_id: "a\"b\\c-é".into(),
            extension: "1001".into(),
            levels: vec![
                CallLevel {
                    subject: Subject::extension("1001"),
                    day,
                    month: MonthKey::of(day),
                },
                CallLevel {
                    subject: Subject::account("acme"),
                    day: day.succ_opt().unwrap(),
                    month: MonthKey::of(day.succ_opt().unwrap()),
                },
            ],
            destination: "447911123456".into(),
            class: DestinationClass::HighRisk,
            rate,
            granted_s: 3_600,
            cap_s: 7_200,
            reserved: Money::from_micros(1_234_567),
            authorized_at,
            answered_at: answered.then(|| authorized_at + chrono::Duration::nanoseconds(1)),
            expires_at: authorized_at + chrono::Duration::seconds(3_780),
            pbx_ref: Some("1234:5678".into()),
        }
    }

    #[test]
    fn calls_round_trip_exactly() {
        let rate = Rate {
            prefix: "4479".into(),
            description: "UK mobile".into(),
            price_per_minute: Money::from_micros(12_345),
            connection_fee: Money::from_micros(1),
            increments: "30/6".parse().unwrap(),
            blocked: true,
        };
        for original in [call(Some(rate), true), call(None, false)] {
            let text = encode_call(&original).unwrap();
            assert_eq!(decode_call(&original.call_id, &text).unwrap(), original);
        }
    }

    #[test]
    fn every_class_round_trips() {
        for class in DestinationClass::ALL {
            let mut original = call(None, false);
            original.class = class;
            let text = encode_call(&original).unwrap();
            assert_eq!(decode_call("x", &text).unwrap().class, class);
        }
    }

    #[test]
    fn times_sort_as_text() {
        let early = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let later = early + chrono::Duration::nanoseconds(1);
        assert!(format_time(early) < format_time(later));
        assert_eq!(format_time(early), "2026-01-01T00:00:00.000000000Z");
        assert_eq!(parse_time(&format_time(later)).unwrap(), later);
    }

    #[test]
    fn undecodable_calls_are_corrupt_not_panics() {
        let good = encode_call(&call(None, false)).unwrap();
        let bad_class = good.replace("high_risk", "expensive");
        let bad_time = good.replace("2026-11-26T23", "2026-11-26X23");
        let extra_field = good.replacen('{', "{\"extra\":1,", 1);
        for text in ["", "{}", "null", &bad_class, &bad_time, &extra_field] {
            let error = decode_call("x", text).unwrap_err();
            assert!(
                matches!(error, StoreError::Corrupt { .. }),
                "{text}: {error}"
            );
        }
    }
}

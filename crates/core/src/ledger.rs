//! Credit control state: what each level of the hierarchy has spent per period, what its
//! calls in progress hold in reserve, and those calls.
//!
//! INVARIANT: at every level and for every limit, `spent + reserved <= limit`. Reservations
//! are only made within the headroom ([`Ledger::headroom`]) and a settlement never charges
//! more than the call reserved, so no interleaving of concurrent calls can overspend.
//!
//! Every change is also returned as a [`LedgerEvent`] for the store to make durable; the
//! ledger can be rebuilt from the store's spend rows and open calls ([`Ledger::restore`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::money::Money;
use crate::number::DestinationClass;
use crate::policy::{Limit, Limits};
use crate::rating::Rate;

/// Which kind of entity a level is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Extension,
    Account,
}

/// One level of the hierarchy that money is counted at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Subject {
    pub kind: SubjectKind,
    pub id: String,
}

impl Subject {
    pub fn extension(id: &str) -> Subject {
        Subject {
            kind: SubjectKind::Extension,
            id: id.to_string(),
        }
    }

    pub fn account(id: &str) -> Subject {
        Subject {
            kind: SubjectKind::Account,
            id: id.to_string(),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SubjectKind::Extension => write!(f, "extension {}", self.id),
            SubjectKind::Account => write!(f, "account {}", self.id),
        }
    }
}

/// A calendar month, `year * 12 + month0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonthKey(pub i32);

impl MonthKey {
    pub fn of(date: NaiveDate) -> MonthKey {
        MonthKey(date.year() * 12 + date.month0() as i32)
    }
}

impl fmt::Display for MonthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}",
            self.0.div_euclid(12),
            self.0.rem_euclid(12) + 1
        )
    }
}

/// The local day and month of an instant in a time zone: the periods a charge counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periods {
    pub day: NaiveDate,
    pub month: MonthKey,
}

impl Periods {
    pub fn at(at: DateTime<Utc>, tz: Tz) -> Periods {
        let day = at.with_timezone(&tz).date_naive();
        Periods {
            day,
            month: MonthKey::of(day),
        }
    }
}

/// Money counted at one level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LevelState {
    #[serde(skip)]
    pub day: Option<NaiveDate>,
    pub spent_today: Money,
    #[serde(skip)]
    pub month: Option<MonthKey>,
    pub spent_this_month: Money,
    pub spent_total: Money,
    pub reserved: Money,
    pub active_calls: u32,
}

impl Default for LevelState {
    fn default() -> Self {
        LevelState {
            day: None,
            spent_today: Money::ZERO,
            month: None,
            spent_this_month: Money::ZERO,
            spent_total: Money::ZERO,
            reserved: Money::ZERO,
            active_calls: 0,
        }
    }
}

impl LevelState {
    /// Spend of the day `periods.day` (zero if the state is of another day).
    pub fn spent_on(&self, periods: Periods) -> (Money, Money) {
        let day = if self.day == Some(periods.day) {
            self.spent_today
        } else {
            Money::ZERO
        };
        let month = if self.month == Some(periods.month) {
            self.spent_this_month
        } else {
            Money::ZERO
        };
        (day, month)
    }

    /// Moves the state forward to `periods`, forgetting older days and months.
    fn roll_to(&mut self, periods: Periods) {
        if self.day.is_none_or(|d| d < periods.day) {
            self.day = Some(periods.day);
            self.spent_today = Money::ZERO;
        }
        if self.month.is_none_or(|m| m < periods.month) {
            self.month = Some(periods.month);
            self.spent_this_month = Money::ZERO;
        }
    }
}

/// Which limit binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Daily,
    Monthly,
    Balance,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Daily => "daily limit",
            LimitKind::Monthly => "monthly limit",
            LimitKind::Balance => "prepaid balance",
        })
    }
}

/// The headroom of one level: how much more it may reserve, and which limit binds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Headroom {
    pub subject: Subject,
    /// `None`: no limit at this level.
    pub available: Option<Money>,
    pub binding: Option<LimitUse>,
}

/// How much of one limit is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LimitUse {
    pub kind: LimitKind,
    pub limit: Money,
    pub spent: Money,
    pub reserved: Money,
}

impl LimitUse {
    pub fn available(&self) -> Money {
        self.limit
            .minus_floor_zero(self.spent.saturating_add(self.reserved))
    }
}

/// One level a call counts at, with the periods its charge belongs to (the local day and
/// month in that level's time zone when the call was authorized).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CallLevel {
    pub subject: Subject,
    #[serde(serialize_with = "serialize_date")]
    pub day: NaiveDate,
    #[serde(serialize_with = "serialize_month")]
    pub month: MonthKey,
}

fn serialize_date<S: serde::Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

fn serialize_month<S: serde::Serializer>(m: &MonthKey, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(m)
}

/// A call holding a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveCall {
    pub call_id: String,
    pub extension: String,
    pub levels: Vec<CallLevel>,
    /// E.164 (or dialed digits for internal and emergency calls).
    pub destination: String,
    pub class: DestinationClass,
    /// `None` for free calls (internal, emergency).
    pub rate: Option<Rate>,
    /// Longest duration from answer the call may last (grows with `extend`).
    pub granted_s: u64,
    /// Most the call may ever last, from the extension's cap.
    pub cap_s: u64,
    /// Money held at every level: the cost of `granted_s`.
    pub reserved: Money,
    pub authorized_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    /// When a call without an `end` is settled at its reserved amount.
    pub expires_at: DateTime<Utc>,
    /// The PBX's handle for ending the call (see `AuthorizeRequest::pbx_ref`).
    pub pbx_ref: Option<String>,
}

/// Why a call was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleReason {
    Ended,
    Expired,
}

/// A finished call and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub call: ActiveCall,
    pub reason: SettleReason,
    pub ended_at: DateTime<Utc>,
    /// Seconds from answer to end (0 if never answered).
    pub duration_s: u64,
    /// Billed seconds by the rate's increments.
    pub billed_s: u64,
    /// Counted against the limits: never more than the reservation.
    pub charged: Money,
    /// What the rate says the reported duration costs; above `charged` only when the PBX
    /// let the call run past its grant (`overrun_s`).
    pub rated: Money,
    pub overrun_s: u64,
}

/// A change for the store to make durable, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerEvent {
    Opened(ActiveCall),
    Updated(ActiveCall),
    Settled(Settlement),
}

/// A persisted spend total, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendRow {
    pub subject: Subject,
    pub period: SpendPeriod,
    pub amount: Money,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpendPeriod {
    Day(NaiveDate),
    Month(MonthKey),
    Total,
}

impl fmt::Display for SpendPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpendPeriod::Day(d) => write!(f, "d:{d}"),
            SpendPeriod::Month(m) => write!(f, "m:{m}"),
            SpendPeriod::Total => f.write_str("total"),
        }
    }
}

impl std::str::FromStr for SpendPeriod {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "total" {
            return Ok(SpendPeriod::Total);
        }
        if let Some(day) = text.strip_prefix("d:") {
            return day
                .parse()
                .map(SpendPeriod::Day)
                .map_err(|_| format!("bad day period {text:?}"));
        }
        if let Some(month) = text.strip_prefix("m:") {
            let (y, m) = month
                .split_once('-')
                .ok_or_else(|| format!("bad month period {text:?}"))?;
            let y: i32 = y
                .parse()
                .map_err(|_| format!("bad month period {text:?}"))?;
            let m: i32 = m
                .parse()
                .map_err(|_| format!("bad month period {text:?}"))?;
            if !(1..=12).contains(&m) {
                return Err(format!("bad month period {text:?}"));
            }
            return Ok(SpendPeriod::Month(MonthKey(y * 12 + m - 1)));
        }
        Err(format!("bad spend period {text:?}"))
    }
}

/// The spend rows a settlement adds at each of its levels.
pub fn settlement_spend_rows(settlement: &Settlement) -> Vec<SpendRow> {
    if settlement.charged.is_zero() {
        return Vec::new();
    }
    let mut rows = Vec::with_capacity(settlement.call.levels.len() * 3);
    for level in &settlement.call.levels {
        for period in [
            SpendPeriod::Day(level.day),
            SpendPeriod::Month(level.month),
            SpendPeriod::Total,
        ] {
            rows.push(SpendRow {
                subject: level.subject.clone(),
                period,
                amount: settlement.charged,
            });
        }
    }
    rows
}

/// Spend per level and calls in progress.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    extensions: HashMap<String, LevelState>,
    accounts: HashMap<String, LevelState>,
    calls: HashMap<String, ActiveCall>,
    expiry: BTreeSet<(DateTime<Utc>, String)>,
}

/// A ledger operation on a call that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("call {0:?} is already in progress")]
    DuplicateCall(String),
    #[error("call {0:?} is not in progress (unknown, already ended or expired)")]
    UnknownCall(String),
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn map(&self, kind: SubjectKind) -> &HashMap<String, LevelState> {
        match kind {
            SubjectKind::Extension => &self.extensions,
            SubjectKind::Account => &self.accounts,
        }
    }

    fn map_mut(&mut self, kind: SubjectKind) -> &mut HashMap<String, LevelState> {
        match kind {
            SubjectKind::Extension => &mut self.extensions,
            SubjectKind::Account => &mut self.accounts,
        }
    }

    fn state_mut(&mut self, subject: &Subject) -> &mut LevelState {
        self.map_mut(subject.kind)
            .entry(subject.id.clone())
            .or_default()
    }

    /// The state of a level (default if it never had a call).
    pub fn level(&self, kind: SubjectKind, id: &str) -> LevelState {
        self.map(kind).get(id).copied().unwrap_or_default()
    }

    /// How much more `subject` may reserve under `limits` in `periods`.
    pub fn headroom(&self, subject: &Subject, limits: &Limits, periods: Periods) -> Headroom {
        let state = self.level(subject.kind, &subject.id);
        let (spent_day, spent_month) = state.spent_on(periods);
        let mut uses = Vec::with_capacity(3);
        if let Limit::Amount(limit) = limits.daily {
            uses.push(LimitUse {
                kind: LimitKind::Daily,
                limit,
                spent: spent_day,
                reserved: state.reserved,
            });
        }
        if let Limit::Amount(limit) = limits.monthly {
            uses.push(LimitUse {
                kind: LimitKind::Monthly,
                limit,
                spent: spent_month,
                reserved: state.reserved,
            });
        }
        if let Some(limit) = limits.balance {
            uses.push(LimitUse {
                kind: LimitKind::Balance,
                limit,
                spent: state.spent_total,
                reserved: state.reserved,
            });
        }
        let binding = uses.into_iter().min_by_key(LimitUse::available);
        Headroom {
            subject: subject.clone(),
            available: binding.map(|u| u.available()),
            binding,
        }
    }

    pub fn call(&self, call_id: &str) -> Option<&ActiveCall> {
        self.calls.get(call_id)
    }

    pub fn calls(&self) -> impl Iterator<Item = &ActiveCall> {
        self.calls.values()
    }

    pub fn active_call_count(&self) -> usize {
        self.calls.len()
    }

    /// Opens a call and reserves its amount at each of its levels. The caller has checked
    /// the headroom (see the module invariant).
    pub fn open(
        &mut self,
        call: ActiveCall,
        now: DateTime<Utc>,
        tz_of: impl Fn(&Subject) -> Tz,
    ) -> Result<LedgerEvent, LedgerError> {
        if self.calls.contains_key(&call.call_id) {
            return Err(LedgerError::DuplicateCall(call.call_id));
        }
        for level in &call.levels {
            let periods = Periods::at(now, tz_of(&level.subject));
            let state = self.state_mut(&level.subject);
            state.roll_to(periods);
            state.reserved = state.reserved.saturating_add(call.reserved);
            state.active_calls += 1;
        }
        self.expiry.insert((call.expires_at, call.call_id.clone()));
        self.calls.insert(call.call_id.clone(), call.clone());
        Ok(LedgerEvent::Opened(call))
    }

    /// Changes a call in progress: its grant, reservation or times. `extra_reserved` is
    /// added at every level (the caller has checked the headroom).
    pub fn update(
        &mut self,
        call_id: &str,
        change: impl FnOnce(&mut ActiveCall),
        extra_reserved: Money,
    ) -> Result<LedgerEvent, LedgerError> {
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| LedgerError::UnknownCall(call_id.to_string()))?;
        let old_expiry = call.expires_at;
        change(call);
        call.reserved = call.reserved.saturating_add(extra_reserved);
        let call = call.clone();
        if old_expiry != call.expires_at {
            self.expiry.remove(&(old_expiry, call.call_id.clone()));
            self.expiry.insert((call.expires_at, call.call_id.clone()));
        }
        if !extra_reserved.is_zero() {
            for level in &call.levels {
                let state = self.state_mut(&level.subject);
                state.reserved = state.reserved.saturating_add(extra_reserved);
            }
        }
        Ok(LedgerEvent::Updated(call))
    }

    /// Ends a call: releases its reservation and charges `charged` (at most the
    /// reservation) in the periods the call started in.
    pub fn settle(
        &mut self,
        call_id: &str,
        reason: SettleReason,
        ended_at: DateTime<Utc>,
        duration_s: u64,
    ) -> Result<LedgerEvent, LedgerError> {
        let call = self
            .calls
            .remove(call_id)
            .ok_or_else(|| LedgerError::UnknownCall(call_id.to_string()))?;
        self.expiry.remove(&(call.expires_at, call.call_id.clone()));
        let (billed_s, rated) = match &call.rate {
            Some(rate) => (
                rate.increments.billed_seconds(duration_s),
                rate.cost(duration_s),
            ),
            None => (duration_s, Money::ZERO),
        };
        let charged = match reason {
            SettleReason::Expired => call.reserved,
            SettleReason::Ended => rated.min(call.reserved),
        };
        let overrun_s = duration_s.saturating_sub(call.granted_s);
        for level in &call.levels {
            let state = self.state_mut(&level.subject);
            state.reserved = state.reserved.saturating_sub(call.reserved);
            state.active_calls = state.active_calls.saturating_sub(1);
            state.spent_total = state.spent_total.saturating_add(charged);
            // The charge belongs to the periods the call started in; the in-memory totals
            // only hold the current day and month, so an older period is only persisted.
            if state.day.is_none_or(|d| d <= level.day) {
                if state.day != Some(level.day) {
                    state.day = Some(level.day);
                    state.spent_today = Money::ZERO;
                }
                state.spent_today = state.spent_today.saturating_add(charged);
            }
            if state.month.is_none_or(|m| m <= level.month) {
                if state.month != Some(level.month) {
                    state.month = Some(level.month);
                    state.spent_this_month = Money::ZERO;
                }
                state.spent_this_month = state.spent_this_month.saturating_add(charged);
            }
        }
        Ok(LedgerEvent::Settled(Settlement {
            call,
            reason,
            ended_at,
            duration_s,
            billed_s,
            charged,
            rated,
            overrun_s,
        }))
    }

    /// Call ids whose expiry is at or before `now`, earliest first.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<String> {
        self.expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The earliest expiry of a call in progress.
    pub fn next_expiry(&self) -> Option<DateTime<Utc>> {
        self.expiry.iter().next().map(|(at, _)| *at)
    }

    /// Rebuilds the ledger from persisted spend rows and the calls still open. Rows of
    /// periods other than the current ones at `now` only count in the total.
    pub fn restore(
        spend: impl IntoIterator<Item = SpendRow>,
        open_calls: impl IntoIterator<Item = ActiveCall>,
        now: DateTime<Utc>,
        tz_of: impl Fn(&Subject) -> Tz,
    ) -> Ledger {
        let mut ledger = Ledger::new();
        for row in spend {
            let periods = Periods::at(now, tz_of(&row.subject));
            let state = ledger.state_mut(&row.subject);
            state.roll_to(periods);
            match row.period {
                SpendPeriod::Total => {
                    state.spent_total = state.spent_total.saturating_add(row.amount)
                }
                SpendPeriod::Day(d) if d == periods.day => {
                    state.spent_today = state.spent_today.saturating_add(row.amount)
                }
                SpendPeriod::Month(m) if m == periods.month => {
                    state.spent_this_month = state.spent_this_month.saturating_add(row.amount)
                }
                _ => {}
            }
        }
        for call in open_calls {
            // INVARIANT: the store holds each open call once, so this cannot collide.
            let _ = ledger.open(call, now, &tz_of);
        }
        ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_periods_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        for period in [
            SpendPeriod::Day(day),
            SpendPeriod::Month(MonthKey::of(day)),
            SpendPeriod::Total,
        ] {
            assert_eq!(period.to_string().parse::<SpendPeriod>().unwrap(), period);
        }
        assert_eq!(
            SpendPeriod::Month(MonthKey::of(day)).to_string(),
            "m:2026-01"
        );
        for bad in ["", "d:2026-13-01", "m:2026-13", "m:x", "week"] {
            assert!(bad.parse::<SpendPeriod>().is_err(), "{bad}");
        }
    }
}

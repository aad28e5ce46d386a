//! Property test: no interleaving of authorize, answer, extend, end and expiry over many
//! concurrent calls ever overspends a limit, at any level of the hierarchy.
//!
//! A policy is built in code (a parent account and two child accounts in different time
//! zones, several extensions each, small daily, monthly and prepaid limits so that they bind
//! often) and random sequences of operations run against one [`Engine`] while time moves
//! forward by random steps, across local midnights, month ends and DST changes. After every
//! step every level and every limit is checked against the ledger's own figures and against
//! a model of the spend rows that the settlements produce.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use tollgate_core::engine::ExtendOutcome;
use tollgate_core::ledger::{
    settlement_spend_rows, ActiveCall, Ledger, LimitKind, Periods, SettleReason, Settlement,
    SpendPeriod, SpendRow,
};
use tollgate_core::money::{Currency, Money};
use tollgate_core::number::{ClassSet, DestinationClass, DialPlan};
use tollgate_core::policy::{
    Account, DestinationRules, Extension, ExtensionDefaults, Limit, Limits, Origin, Policy,
};
use tollgate_core::rating::{ChargingPlan, Rate};
use tollgate_core::{AuthorizeRequest, Decision, DenyCode, Engine, LedgerEvent, Subject};

fn money(text: &str) -> Money {
    text.parse().unwrap()
}

fn limits(daily: Option<&str>, monthly: Option<&str>, balance: Option<&str>) -> Limits {
    Limits {
        daily: daily.map_or(Limit::Unlimited, |d| Limit::Amount(money(d))),
        monthly: monthly.map_or(Limit::Unlimited, |m| Limit::Amount(money(m))),
        balance: balance.map(money),
    }
}

fn rate(prefix: &str, price: &str, fee: &str, increments: &str) -> Rate {
    Rate {
        prefix: prefix.into(),
        description: format!("+{prefix}"),
        price_per_minute: money(price),
        connection_fee: money(fee),
        increments: increments.parse().unwrap(),
        blocked: false,
    }
}

fn account(id: &str, parent: Option<&str>, tz: &str, country: &str, limits: Limits) -> Account {
    Account {
        id: id.into(),
        name: id.into(),
        parent: parent.map(Into::into),
        currency: Currency::EUR,
        time_zone: tz.parse().unwrap(),
        dial_plan: DialPlan::for_region(country).unwrap(),
        plan: parent.is_none().then(|| "std".to_string()),
        limits,
        rules: DestinationRules {
            // Every class, so that calls reach the credit check whatever they dial.
            allowed_classes: Some(DestinationClass::ALL.into_iter().collect::<ClassSet>()),
            ..DestinationRules::default()
        },
        schedule: None,
        suspended: false,
        shadow: false,
        extension_defaults: ExtensionDefaults::default(),
        origin: Origin::Policy,
    }
}

fn extension(
    id: &str,
    account: &str,
    limits: Limits,
    max_call_s: u32,
    max_concurrent: Option<u32>,
) -> Extension {
    Extension {
        id: id.into(),
        account: account.into(),
        allowed_cidrs: vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        limits,
        rules: DestinationRules::default(),
        schedule: None,
        max_call_duration_s: max_call_s,
        max_concurrent_calls: max_concurrent,
        suspended: false,
        origin: Origin::Policy,
    }
}

/// Extensions of the test policy, by index in the operations.
const EXTENSIONS: [&str; 6] = ["p1", "p2", "p3", "n1", "n2", "n3"];

/// Numbers dialed: fixed, mobile, abroad, expensive, national formats of either dial plan,
/// internal and emergency (free) numbers.
const NUMBERS: [&str; 10] = [
    "+33142685300",   // France fixed: 0.01/min, 60/60
    "+33612345678",   // France mobile: 0.05/min + 0.02, 30/6
    "+442079460000",  // UK: 0.02/min, 1/1
    "+4915112345678", // Germany: 0.30/min + 0.10, 60/60
    "+12125550123",   // North America: 0.015/min, 6/6
    "+5371234567",    // Cuba: 1.20/min, 60/60
    "0142685300",     // national format (France for p*, +1 0142685300 for n*)
    "2125550123",     // subscriber number (+33 2125550123 for p*, NYC for n*)
    "1001",           // internal: free
    "112",            // emergency: free
];

fn test_policy() -> Policy {
    let mut policy = Policy::empty();
    let mut plan = ChargingPlan::new("std", Currency::EUR);
    for r in [
        rate("33", "0.01", "0", "60/60"),
        rate("336", "0.05", "0.02", "30/6"),
        rate("44", "0.02", "0", "1/1"),
        rate("49", "0.30", "0.10", "60/60"),
        rate("1", "0.015", "0", "6/6"),
        rate("53", "1.20", "0", "60/60"),
    ] {
        let prefix = r.prefix.clone();
        plan.rates.insert(&prefix, r).unwrap();
    }
    policy.plans.insert("std".into(), plan);
    policy
        .upsert_account(account(
            "parent",
            None,
            "Asia/Tokyo",
            "FR",
            limits(Some("9.00"), Some("25.00"), None),
        ))
        .unwrap();
    policy
        .upsert_account(account(
            "paris",
            Some("parent"),
            "Europe/Paris",
            "FR",
            limits(Some("5.00"), Some("14.00"), None),
        ))
        .unwrap();
    policy
        .upsert_account(account(
            "ny",
            Some("parent"),
            "America/New_York",
            "US",
            limits(Some("4.00"), Some("12.00"), Some("7.50")),
        ))
        .unwrap();
    for ext in [
        extension(
            "p1",
            "paris",
            limits(Some("1.00"), Some("6.00"), None),
            3600,
            None,
        ),
        extension(
            "p2",
            "paris",
            limits(Some("2.50"), Some("8.00"), None),
            1800,
            Some(3),
        ),
        extension(
            "p3",
            "paris",
            limits(None, Some("5.00"), Some("3.00")),
            600,
            None,
        ),
        extension(
            "n1",
            "ny",
            limits(Some("1.50"), Some("5.00"), None),
            3600,
            Some(2),
        ),
        extension("n2", "ny", limits(Some("3.00"), None, None), 900, None),
        extension(
            "n3",
            "ny",
            limits(Some("5.00"), Some("9.00"), Some("2.00")),
            7200,
            None,
        ),
    ] {
        policy.upsert_extension(ext).unwrap();
    }
    policy
}

/// Every level of the test policy.
fn levels() -> Vec<Subject> {
    let mut out: Vec<Subject> = EXTENSIONS.iter().map(|e| Subject::extension(e)).collect();
    out.extend(["parent", "paris", "ny"].map(Subject::account));
    out
}

#[derive(Clone, Debug)]
enum Action {
    Authorize {
        call: usize,
        ext: usize,
        number: usize,
        host: u8,
    },
    Answer {
        call: usize,
    },
    Extend {
        call: usize,
        seconds: Option<u64>,
    },
    /// `duration` may exceed the grant: the PBX let the call run on.
    End {
        call: usize,
        duration: Option<u64>,
    },
    Expire,
}

#[derive(Clone, Debug)]
struct Op {
    /// Seconds the clock moves before the action.
    advance_s: i64,
    action: Action,
}

const CALL_IDS: usize = 14;

fn action() -> impl Strategy<Value = Action> {
    let call = 0..CALL_IDS;
    prop_oneof![
        5 => (call.clone(), 0..EXTENSIONS.len(), 0..NUMBERS.len(), 1u8..255)
            .prop_map(|(call, ext, number, host)| Action::Authorize { call, ext, number, host }),
        3 => call.clone().prop_map(|call| Action::Answer { call }),
        2 => (call.clone(), prop::option::of(prop_oneof![1u64..120, 60u64..4000]))
            .prop_map(|(call, seconds)| Action::Extend { call, seconds }),
        4 => (call, prop::option::of(prop_oneof![0u64..400, 0u64..9000]))
            .prop_map(|(call, duration)| Action::End { call, duration }),
        1 => Just(Action::Expire),
    ]
}

fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0i64..120,
        3 => 60i64..3600,
        1 => 3600i64..(3 * 86_400),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    (advance(), action()).prop_map(|(advance_s, action)| Op { advance_s, action })
}

/// Starting instants a few hours before local midnights that matter: month ends, the
/// European and American DST changes, the end of a year.
fn start() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just("2026-01-31T18:00:00Z"),
        Just("2026-02-28T20:30:00Z"),
        Just("2026-03-07T22:00:00Z"),
        Just("2026-03-28T19:00:00Z"),
        Just("2026-04-30T12:00:00Z"),
        Just("2026-10-24T21:00:00Z"),
        Just("2026-12-31T10:00:00Z"),
    ]
    .prop_map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc))
}

/// What the settlements put in the store: spend per level and period.
#[derive(Default)]
struct SpendModel {
    rows: HashMap<(Subject, SpendPeriod), Money>,
}

/// Runs `ops` and checks the invariants after every step; returns a description of the
/// first violation.
struct Run {
    engine: Engine,
    now: DateTime<Utc>,
    model: SpendModel,
    /// Per level: its limits and time zone (constant: the policy does not change).
    levels: Vec<(Subject, Limits, Tz)>,
    log: Vec<String>,
}

impl Run {
    fn new(start: DateTime<Utc>) -> Run {
        let engine = Engine::new(test_policy());
        let levels = levels()
            .into_iter()
            .map(|s| {
                let l = *Engine::limits_of(&engine.policy, &s).unwrap();
                let tz = Engine::time_zone_of(&engine.policy, &s);
                (s, l, tz)
            })
            .collect();
        Run {
            engine,
            now: start,
            model: SpendModel::default(),
            levels,
            log: Vec::new(),
        }
    }

    fn fail(&self, what: String) -> Result<(), TestCaseError> {
        let tail: Vec<&String> = self
            .log
            .iter()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(TestCaseError::fail(format!(
            "{what}\nat {} after {} steps; last steps:\n  {}",
            self.now,
            self.log.len(),
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        )))
    }

    fn limits_of(&self, subject: &Subject) -> Limits {
        self.levels
            .iter()
            .find(|(s, _, _)| s == subject)
            .map(|(_, l, _)| *l)
            .unwrap()
    }

    /// A settlement never charges more than the call held; an expired call is charged
    /// exactly its reservation; an ended call is charged its rated cost up to that. The
    /// spend rows it adds never take a period past its limit.
    fn check_settlement(&mut self, s: &Settlement) -> Result<(), TestCaseError> {
        if s.charged > s.call.reserved {
            return self.fail(format!(
                "call {} charged {} above its reservation {}",
                s.call.call_id, s.charged, s.call.reserved
            ));
        }
        let rated = s
            .call
            .rate
            .as_ref()
            .map_or(Money::ZERO, |r| r.cost(s.duration_s));
        let expected = match s.reason {
            SettleReason::Expired => s.call.reserved,
            SettleReason::Ended => rated.min(s.call.reserved),
        };
        if s.charged != expected || s.rated != rated {
            return self.fail(format!(
                "call {} ({:?}, {} s, reserved {}) charged {} rated {}; expected charged {expected} rated {rated}",
                s.call.call_id, s.reason, s.duration_s, s.call.reserved, s.charged, s.rated
            ));
        }
        if s.overrun_s != s.duration_s.saturating_sub(s.call.granted_s) {
            return self.fail(format!(
                "call {}: overrun {} for {} s of {} granted",
                s.call.call_id, s.overrun_s, s.duration_s, s.call.granted_s
            ));
        }
        for row in settlement_spend_rows(s) {
            let limits = self.limits_of(&row.subject);
            let total = self
                .model
                .rows
                .entry((row.subject.clone(), row.period))
                .or_default();
            *total = total.saturating_add(row.amount);
            let total = *total;
            let limit = match row.period {
                SpendPeriod::Day(_) => limits.daily,
                SpendPeriod::Month(_) => limits.monthly,
                SpendPeriod::Total => limits.balance.map_or(Limit::Unlimited, Limit::Amount),
            };
            if let Limit::Amount(limit) = limit {
                if total > limit {
                    return self.fail(format!(
                        "overspend: {} spent {total} in period {} of limit {limit} (call {} charged {}, authorized {}, levels {:?})",
                        row.subject, row.period, s.call.call_id, s.charged, s.call.authorized_at, s.call.levels
                    ));
                }
            }
        }
        Ok(())
    }

    /// The invariants of every level and limit at `now`.
    fn check_levels(&self) -> Result<(), TestCaseError> {
        let open: Vec<&ActiveCall> = self.engine.ledger.calls().collect();
        for (subject, limits, tz) in &self.levels {
            let periods = Periods::at(self.now, *tz);
            let state = self.engine.ledger.level(subject.kind, &subject.id);
            let mine: Vec<&&ActiveCall> = open
                .iter()
                .filter(|c| c.levels.iter().any(|l| &l.subject == subject))
                .collect();
            let held = mine
                .iter()
                .fold(Money::ZERO, |sum, c| sum.saturating_add(c.reserved));
            if held != state.reserved || mine.len() as u32 != state.active_calls {
                return self.fail(format!(
                    "{subject}: ledger holds {} for {} calls, open calls hold {held} for {}",
                    state.reserved,
                    state.active_calls,
                    mine.len()
                ));
            }
            // The in-memory spend of the current periods is what the spend rows say.
            let modelled = |period: SpendPeriod| {
                self.model
                    .rows
                    .get(&(subject.clone(), period))
                    .copied()
                    .unwrap_or_default()
            };
            let (kinds, full) = (
                [
                    (
                        LimitKind::Daily,
                        Limits {
                            monthly: Limit::Unlimited,
                            balance: None,
                            ..*limits
                        },
                        modelled(SpendPeriod::Day(periods.day)),
                    ),
                    (
                        LimitKind::Monthly,
                        Limits {
                            daily: Limit::Unlimited,
                            balance: None,
                            ..*limits
                        },
                        modelled(SpendPeriod::Month(periods.month)),
                    ),
                    (
                        LimitKind::Balance,
                        Limits {
                            daily: Limit::Unlimited,
                            monthly: Limit::Unlimited,
                            ..*limits
                        },
                        modelled(SpendPeriod::Total),
                    ),
                ],
                self.engine.ledger.headroom(subject, limits, periods),
            );
            let mut least: Option<Money> = None;
            for (kind, only, spent_rows) in kinds {
                let headroom = self.engine.ledger.headroom(subject, &only, periods);
                let Some(used) = headroom.binding else {
                    if headroom.available.is_some() {
                        return self.fail(format!("{subject}: available without a binding limit"));
                    }
                    continue;
                };
                let available = headroom.available.unwrap();
                least = Some(least.map_or(available, |l| l.min(available)));
                if used.kind != kind || used.reserved != state.reserved {
                    return self.fail(format!("{subject}: {kind:?} headroom reports {used:?}"));
                }
                if used.spent != spent_rows {
                    return self.fail(format!("{subject}: {kind:?} spent {} in the ledger, {spent_rows} in the spend rows", used.spent));
                }
                let committed = used.spent.saturating_add(used.reserved);
                if committed > used.limit {
                    return self.fail(format!(
                        "overspend: {subject} {kind:?}: {} spent + {} reserved > {}",
                        used.spent, used.reserved, used.limit
                    ));
                }
                if committed.saturating_add(available) != used.limit {
                    return self.fail(format!(
                        "{subject} {kind:?}: {} spent + {} reserved + {available} available != {}",
                        used.spent, used.reserved, used.limit
                    ));
                }
            }
            if full.available != least {
                return self.fail(format!(
                    "{subject}: headroom {:?} is not the least of its limits {least:?}",
                    full.available
                ));
            }
        }
        // The ledger the store would rebuild after a restart (from the spend rows and the
        // open calls) gives every level the same headroom.
        let rows = self
            .model
            .rows
            .iter()
            .map(|((subject, period), amount)| SpendRow {
                subject: subject.clone(),
                period: *period,
                amount: *amount,
            });
        let policy = &self.engine.policy;
        let restored = Ledger::restore(rows, open.iter().map(|c| (*c).clone()), self.now, |s| {
            Engine::time_zone_of(policy, s)
        });
        for (subject, limits, tz) in &self.levels {
            let periods = Periods::at(self.now, *tz);
            let live = self.engine.ledger.headroom(subject, limits, periods);
            let again = restored.headroom(subject, limits, periods);
            let (a, b) = (
                self.engine.ledger.level(subject.kind, &subject.id),
                restored.level(subject.kind, &subject.id),
            );
            if live != again || a.reserved != b.reserved || a.active_calls != b.active_calls {
                return self.fail(format!(
                    "{subject}: live headroom {live:?}, restored {again:?}"
                ));
            }
        }
        // Each extension's credit view agrees with the ledger.
        for ext in EXTENSIONS {
            let credit = self.engine.credit_of(ext, self.now).unwrap();
            let account = &self.engine.policy.extensions[ext].account;
            let expected = [
                Subject::extension(ext),
                Subject::account(account),
                Subject::account("parent"),
            ];
            let got: Vec<&Subject> = credit.iter().map(|h| &h.subject).collect();
            if got != expected.iter().collect::<Vec<_>>() {
                return self.fail(format!("credit_of({ext}) lists {got:?}"));
            }
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.now += Duration::seconds(op.advance_s);
        let now = self.now;
        let id = |call: usize| format!("c{call}");
        match &op.action {
            Action::Authorize {
                call,
                ext,
                number,
                host,
            } => {
                let call_id = id(*call);
                let extension = EXTENSIONS[*ext];
                let in_progress = self.engine.ledger.call(&call_id).is_some();
                let credit = self.engine.credit_of(extension, now).unwrap();
                let least = credit.iter().filter_map(|h| h.available).min();
                let request = AuthorizeRequest {
                    call_id: &call_id,
                    extension,
                    source_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, *host)),
                    number: NUMBERS[*number],
                    pbx_ref: None,
                };
                let result = self.engine.authorize(&request, now);
                self.log.push(format!(
                    "{now} authorize {call_id} {extension} {} -> {result:?}",
                    NUMBERS[*number]
                ));
                match (in_progress, result) {
                    (true, Err(_)) => {}
                    (true, Ok(_)) => return self.fail(format!("{call_id} authorized twice")),
                    (false, Err(e)) => return self.fail(format!("authorize {call_id}: {e}")),
                    (false, Ok((Decision::Allow(grant), Some(LedgerEvent::Opened(call))))) => {
                        let cap =
                            u64::from(self.engine.policy.extensions[extension].max_call_duration_s);
                        let expected_reserved = call
                            .rate
                            .as_ref()
                            .map_or(Money::ZERO, |r| r.cost(grant.max_duration_s));
                        if grant.max_duration_s == 0
                            || grant.max_duration_s > cap
                            || grant.reserved != expected_reserved
                            || call.reserved != grant.reserved
                        {
                            return self.fail(format!("grant {grant:?} for cap {cap}, expected reservation {expected_reserved}"));
                        }
                        if let (Some(rate), Some(least)) = (&call.rate, least) {
                            // The longest call the tightest level pays for, no more, no less.
                            if grant.reserved > least
                                || grant.max_duration_s != rate.max_duration_within(least, cap)
                            {
                                return self.fail(format!(
                                    "grant {} s reserving {} with {least} available",
                                    grant.max_duration_s, grant.reserved
                                ));
                            }
                        }
                    }
                    (false, Ok((Decision::Allow(_), event))) => {
                        return self.fail(format!("allow without an Opened event: {event:?}"))
                    }
                    (false, Ok((Decision::Deny(deny), event))) => {
                        if event.is_some() {
                            return self.fail("a denial changed the ledger".into());
                        }
                        let allowed = [
                            DenyCode::InsufficientCredit,
                            DenyCode::TooManyConcurrentCalls,
                        ];
                        if !allowed.contains(&deny.code) {
                            return self.fail(format!("unexpected denial {deny:?}"));
                        }
                        if deny.code == DenyCode::InsufficientCredit && least.is_none() {
                            return self
                                .fail(format!("insufficient credit without a limit: {deny:?}"));
                        }
                    }
                }
            }
            Action::Answer { call } => {
                let call_id = id(*call);
                let known = self.engine.ledger.call(&call_id).is_some();
                let result = self.engine.answer(&call_id, now);
                self.log
                    .push(format!("{now} answer {call_id} -> {}", result.is_ok()));
                if known != result.is_ok() {
                    return self.fail(format!("answer {call_id}: {result:?}"));
                }
            }
            Action::Extend { call, seconds } => {
                let call_id = id(*call);
                let before = self.engine.ledger.call(&call_id).cloned();
                let result = self.engine.extend(&call_id, *seconds, now);
                self.log
                    .push(format!("{now} extend {call_id} {seconds:?} -> {result:?}"));
                match (before, result) {
                    (None, Err(_)) => {}
                    (None, Ok(_)) | (Some(_), Err(_)) => {
                        return self.fail(format!(
                            "extend {call_id} of a call in progress: {}",
                            self.engine.ledger.call(&call_id).is_some()
                        ))
                    }
                    (
                        Some(before),
                        Ok((
                            ExtendOutcome {
                                granted_s,
                                added_s,
                                reserved,
                                ..
                            },
                            _,
                        )),
                    ) => {
                        let after = self.engine.ledger.call(&call_id).unwrap();
                        let expected = before
                            .rate
                            .as_ref()
                            .map_or(before.reserved, |r| r.cost(granted_s).max(before.reserved));
                        if granted_s != before.granted_s + added_s
                            || granted_s > before.cap_s
                            || after.granted_s != granted_s
                            || after.reserved != reserved
                            || reserved != expected
                        {
                            return self.fail(format!("extend of {before:?} gave {granted_s} s (+{added_s}) reserving {reserved}; call now {after:?}"));
                        }
                    }
                }
            }
            Action::End { call, duration } => {
                let call_id = id(*call);
                let known = self.engine.ledger.call(&call_id).is_some();
                let result = self.engine.end(&call_id, *duration, now);
                self.log.push(format!(
                    "{now} end {call_id} {duration:?} -> {:?}",
                    result.as_ref().map(|(s, _)| (s.duration_s, s.charged))
                ));
                match result {
                    Ok((settlement, _)) if known => {
                        if settlement.reason != SettleReason::Ended {
                            return self.fail(format!("end settled as {:?}", settlement.reason));
                        }
                        self.check_settlement(&settlement)?;
                    }
                    Err(_) if !known => {}
                    other => {
                        return self
                            .fail(format!("end {call_id} (in progress: {known}): {other:?}"))
                    }
                }
            }
            Action::Expire => {
                let due: Vec<String> = self
                    .engine
                    .ledger
                    .calls()
                    .filter(|c| c.expires_at <= now)
                    .map(|c| c.call_id.clone())
                    .collect();
                let events = self.engine.expire_due(now);
                self.log
                    .push(format!("{now} expire -> {} calls", events.len()));
                if events.len() != due.len() {
                    return self.fail(format!("{} calls due, {} expired", due.len(), events.len()));
                }
                for event in events {
                    let LedgerEvent::Settled(settlement) = event else {
                        return self.fail(format!("expiry gave {event:?}"));
                    };
                    if settlement.reason != SettleReason::Expired
                        || settlement.charged != settlement.call.reserved
                    {
                        return self.fail(format!(
                            "expired call charged {} of {} ({:?})",
                            settlement.charged, settlement.call.reserved, settlement.reason
                        ));
                    }
                    self.check_settlement(&settlement)?;
                }
            }
        }
        self.check_levels()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_overspend_ever(start in start(), ops in prop::collection::vec(op(), 1..200)) {
        let mut run = Run::new(start);
        run.check_levels()?;
        for op in &ops {
            run.step(op)?;
        }
        // Everything settles in the end: expire whatever is left a day later.
        run.step(&Op { advance_s: 2 * 86_400 + 7200, action: Action::Expire })?;
        prop_assert_eq!(run.engine.ledger.active_call_count(), 0);
    }
}

/// Hand-checked figures the property relies on: the grant of a fresh extension is the
/// longest call its tightest limit pays for.
#[test]
fn first_grant_is_bounded_by_the_tightest_level() {
    let mut engine = Engine::new(test_policy());
    let now = Utc.with_ymd_and_hms(2026, 5, 5, 10, 0, 0).unwrap();
    let request = AuthorizeRequest {
        call_id: "x",
        extension: "p1",
        source_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        number: "+4915112345678",
        pbx_ref: None,
    };
    // p1's daily 1.00 binds: 0.10 + 0.30 per minute → 3 minutes cost 1.00 exactly.
    let (decision, _) = engine.authorize(&request, now).unwrap();
    let Decision::Allow(grant) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!((grant.max_duration_s, grant.reserved), (180, money("1.00")));
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn allow(
    engine: &mut Engine,
    call_id: &str,
    extension: &str,
    number: &str,
    now: DateTime<Utc>,
) -> u64 {
    let request = AuthorizeRequest {
        call_id,
        extension,
        source_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        number,
        pbx_ref: None,
    };
    match engine.authorize(&request, now).unwrap().0 {
        Decision::Allow(grant) => grant.max_duration_s,
        Decision::Deny(deny) => panic!("{call_id} denied: {deny:?}"),
    }
}

/// Regression (found by `no_overspend_ever`): `extend` checked only today's headroom, but a
/// call is charged in the day it started in. A call authorized before local midnight and
/// extended after it took the new day's credit and overspent the old day.
#[test]
fn extend_after_local_midnight_cannot_overspend_the_day_the_call_started() {
    let mut engine = Engine::new(test_policy());
    // p1 (Europe/Paris, daily 1.00): 2 minutes to Germany cost 0.10 + 2 × 0.30 = 0.70.
    allow(
        &mut engine,
        "a",
        "p1",
        "+4915112345678",
        at("2026-05-05T20:00:00+02:00"),
    );
    let (settled, _) = engine
        .end("a", Some(120), at("2026-05-05T20:02:00+02:00"))
        .unwrap();
    assert_eq!(settled.charged, money("0.70"));
    // 0.30 left at 0.01 per minute: 30 minutes, under the 1 h cap.
    let granted = allow(
        &mut engine,
        "b",
        "p1",
        "+33142685300",
        at("2026-05-05T23:40:00+02:00"),
    );
    assert_eq!(granted, 1800);
    engine.answer("b", at("2026-05-05T23:40:05+02:00")).unwrap();
    // After midnight the new day has 0.70 of headroom, but b is charged to May 5, full.
    let (outcome, event) = engine
        .extend("b", None, at("2026-05-06T00:10:00+02:00"))
        .unwrap();
    assert!(event.is_none());
    assert_eq!(
        (outcome.added_s, outcome.granted_s, outcome.reserved),
        (0, 1800, money("0.30"))
    );
    let deny = outcome.limited_by.unwrap();
    assert_eq!(deny.code, DenyCode::InsufficientCredit);
    assert_eq!(
        deny.message,
        "extension p1: 1.00 of 1.00 EUR daily limit spent or reserved"
    );
    let (settled, _) = engine
        .end("b", Some(1800), at("2026-05-06T00:10:05+02:00"))
        .unwrap();
    assert_eq!(settled.charged, money("0.30"));
}

/// Same bug, once the ledger has moved on to the new day (another call opened after
/// midnight) and no longer holds the old day's spend: the call gets no more time.
#[test]
fn extend_after_the_ledger_moved_to_a_new_day_is_refused() {
    let mut engine = Engine::new(test_policy());
    allow(
        &mut engine,
        "a",
        "p1",
        "+4915112345678",
        at("2026-05-05T20:00:00+02:00"),
    );
    engine
        .end("a", Some(120), at("2026-05-05T20:02:00+02:00"))
        .unwrap();
    // 0.30 left of May 5: 30 minutes.
    let granted = allow(
        &mut engine,
        "b",
        "p1",
        "+33142685300",
        at("2026-05-05T23:55:00+02:00"),
    );
    assert_eq!(granted, 1800);
    // May 6 has 1.00 - 0.30 held by b: c gets its full hour for 0.60.
    let granted = allow(
        &mut engine,
        "c",
        "p1",
        "+33142685300",
        at("2026-05-06T00:05:00+02:00"),
    );
    assert_eq!(granted, 3600);
    let (outcome, event) = engine
        .extend("b", Some(600), at("2026-05-06T00:06:00+02:00"))
        .unwrap();
    assert!(event.is_none());
    assert_eq!(outcome.added_s, 0);
    let deny = outcome.limited_by.unwrap();
    assert_eq!(
        (deny.code, deny.rule.as_str()),
        (DenyCode::InsufficientCredit, "extension p1 daily limit")
    );
    assert_eq!(
        deny.message,
        "extension p1: call b counts in the daily limit of day 2026-05-05, which has ended: it gets no more time"
    );
}

//! The behaviours every [`Store`] must have, as functions that [`crate::store_test_suite!`]
//! turns into `#[test]`s for a given implementation (one suite, every backend).
//!
//! Public only for the macro; not an API. Test values are built by hand so that each test
//! states the figures it checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test suite: a failed expectation is a failed test"
)]

use chrono::{DateTime, NaiveDate, Utc};
use tollgate_core::ledger::{
    ActiveCall, CallLevel, LedgerEvent, MonthKey, SettleReason, Settlement, SpendPeriod, SpendRow,
    Subject,
};
use tollgate_core::number::DestinationClass;
use tollgate_core::policy::Origin;
use tollgate_core::rating::Rate;
use tollgate_core::Money;

use crate::{Change, EntityKind, Store, StoreError, StoredEntity};

pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
}

pub fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid test time")
        .with_timezone(&Utc)
}

/// 0.60 per minute plus 0.10 per call, billed 60/60.
pub fn uk_rate() -> Rate {
    Rate {
        prefix: "44".into(),
        description: "United Kingdom".into(),
        price_per_minute: Money::from_cents(60),
        connection_fee: Money::from_cents(10),
        increments: "60/60".parse().expect("valid increments"),
        blocked: false,
    }
}

pub fn level(subject: Subject, on: NaiveDate) -> CallLevel {
    CallLevel {
        subject,
        day: on,
        month: MonthKey::of(on),
    }
}

/// A rated, unanswered call of `extension` in account "acme" under reseller "resell",
/// authorized at noon UTC on `on`, reserving 5.00.
pub fn call(call_id: &str, extension: &str, on: NaiveDate) -> ActiveCall {
    let authorized_at = on
        .and_hms_nano_opt(12, 0, 0, 123_456_789)
        .expect("valid test time")
        .and_utc();
    ActiveCall {
        call_id: call_id.into(),
        extension: extension.into(),
        levels: vec![
            level(Subject::extension(extension), on),
            level(Subject::account("acme"), on),
            level(Subject::account("resell"), on),
        ],
        destination: "442071234567".into(),
        class: DestinationClass::International,
        rate: Some(uk_rate()),
        granted_s: 480,
        cap_s: 3_600,
        reserved: Money::from_cents(500),
        authorized_at,
        answered_at: None,
        expires_at: authorized_at + chrono::Duration::seconds(660),
        pbx_ref: None,
    }
}

/// The settlement the ledger would make: billed and rated by the call's rate, charged at
/// most the reservation (all of it when expired).
pub fn settle(mut call: ActiveCall, reason: SettleReason, duration_s: u64) -> Settlement {
    if duration_s > 0 && call.answered_at.is_none() {
        call.answered_at = Some(call.authorized_at + chrono::Duration::seconds(7));
    }
    let ended_at = call.answered_at.unwrap_or(call.authorized_at)
        + chrono::Duration::seconds(i64::try_from(duration_s).unwrap());
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
    Settlement {
        overrun_s: duration_s.saturating_sub(call.granted_s),
        call,
        reason,
        ended_at,
        duration_s,
        billed_s,
        charged,
        rated,
    }
}

pub fn opened(call: &ActiveCall) -> Change {
    Change::Ledger(LedgerEvent::Opened(call.clone()))
}

pub fn updated(call: &ActiveCall) -> Change {
    Change::Ledger(LedgerEvent::Updated(call.clone()))
}

pub fn settled(settlement: &Settlement) -> Change {
    Change::Ledger(LedgerEvent::Settled(settlement.clone()))
}

pub fn entity(kind: EntityKind, id: &str, body: &str) -> StoredEntity {
    StoredEntity {
        kind,
        id: id.into(),
        origin: Origin::Api,
        body: body.into(),
        suspended: false,
    }
}

fn sorted_open_calls(store: &impl Store) -> Vec<ActiveCall> {
    let mut calls = store.load_open_calls().unwrap();
    calls.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    calls
}

fn sorted_spend(store: &impl Store, since: NaiveDate) -> Vec<(Subject, String, i64)> {
    let mut rows: Vec<_> = store
        .load_spend(since)
        .unwrap()
        .into_iter()
        .map(|row: SpendRow| (row.subject, row.period.to_string(), row.amount.micros()))
        .collect();
    rows.sort();
    rows
}

fn periods(on: NaiveDate) -> [SpendPeriod; 3] {
    [
        SpendPeriod::Day(on),
        SpendPeriod::Month(MonthKey::of(on)),
        SpendPeriod::Total,
    ]
}

pub fn opened_call_round_trips(mut store: impl Store) {
    let mut original = call("c1", "1001", day(2026, 11, 26));
    original.answered_at = Some(original.authorized_at + chrono::Duration::nanoseconds(1));
    original.reserved = Money::from_micros(4_999_999);
    store.apply(&[opened(&original)]).unwrap();
    assert_eq!(store.load_open_calls().unwrap(), vec![original]);
}

pub fn free_call_round_trips(mut store: impl Store) {
    let mut free = call("internal-1", "1001", day(2026, 2, 28));
    free.levels.truncate(1);
    free.destination = "1002".into();
    free.class = DestinationClass::Internal;
    free.rate = None;
    free.reserved = Money::ZERO;
    store.apply(&[opened(&free)]).unwrap();
    assert_eq!(store.load_open_calls().unwrap(), vec![free]);
}

pub fn updated_replaces_the_stored_call(mut store: impl Store) {
    let first = call("c1", "1001", day(2026, 11, 26));
    let other = call("c2", "1001", day(2026, 11, 26));
    let mut second = first.clone();
    second.answered_at = Some(first.authorized_at + chrono::Duration::seconds(3));
    second.granted_s = 960;
    second.reserved = Money::from_cents(1_000);
    second.expires_at = first.expires_at + chrono::Duration::seconds(480);
    store.apply(&[opened(&first), opened(&other)]).unwrap();
    store.apply(&[updated(&second)]).unwrap();
    assert_eq!(sorted_open_calls(&store), vec![second, other]);
}

pub fn settle_closes_the_call_and_adds_spend_everywhere(mut store: impl Store) {
    let on = day(2026, 11, 26);
    let open = call("c1", "1001", on);
    store.apply(&[opened(&open)]).unwrap();
    // 61 s billed as 120 s: 0.10 + 2 × 0.60.
    let done = settle(open, SettleReason::Ended, 61);
    assert_eq!(done.charged, Money::from_cents(130));
    // The ledger journals the answer (an Updated) before the end.
    store.apply(&[updated(&done.call), settled(&done)]).unwrap();

    assert!(store.load_open_calls().unwrap().is_empty());
    for level in &done.call.levels {
        for period in periods(on) {
            assert_eq!(
                store.spend(&level.subject, period).unwrap(),
                Money::from_cents(130),
                "{} {period}",
                level.subject
            );
        }
    }
    assert_eq!(
        store
            .spend(
                &Subject::extension("1001"),
                SpendPeriod::Day(day(2026, 11, 27))
            )
            .unwrap(),
        Money::ZERO
    );
    assert_eq!(
        store
            .spend(&Subject::extension("nobody"), SpendPeriod::Total)
            .unwrap(),
        Money::ZERO
    );
    assert_eq!(sorted_spend(&store, on).len(), 9);

    let history = store.settled_calls("1001", 10).unwrap();
    assert_eq!(history.len(), 1);
    let settled = &history[0];
    assert_eq!(settled.call_id, "c1");
    assert_eq!(settled.extension, "1001");
    assert_eq!(settled.destination, "442071234567");
    assert_eq!(settled.class, "international");
    assert_eq!(
        (settled.duration_s, settled.billed_s, settled.overrun_s),
        (61, 120, 0)
    );
    assert_eq!(settled.charged, Money::from_cents(130));
    assert_eq!(settled.rated, Money::from_cents(130));
    assert_eq!(settled.reason, "ended");
    assert_eq!(settled.authorized_at, done.call.authorized_at);
    assert_eq!(settled.answered_at, done.call.answered_at);
    assert_eq!(settled.ended_at, done.ended_at);
}

pub fn settle_of_a_call_never_opened_is_recorded(mut store: impl Store) {
    let on = day(2026, 11, 26);
    let done = settle(call("ghost", "1001", on), SettleReason::Expired, 0);
    store.apply(&[settled(&done)]).unwrap();
    assert!(store.load_open_calls().unwrap().is_empty());
    let history = store.settled_calls("1001", 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].reason, "expired");
    assert_eq!(history[0].charged, Money::from_cents(500));
    assert_eq!(
        store
            .spend(&Subject::account("acme"), SpendPeriod::Total)
            .unwrap(),
        Money::from_cents(500)
    );
}

pub fn zero_charge_adds_no_spend(mut store: impl Store) {
    let on = day(2026, 11, 26);
    let open = call("unanswered", "1001", on);
    store.apply(&[opened(&open)]).unwrap();
    let done = settle(open, SettleReason::Ended, 0);
    assert_eq!(done.charged, Money::ZERO);
    store.apply(&[settled(&done)]).unwrap();
    assert!(store.load_open_calls().unwrap().is_empty());
    assert!(store.load_spend(on).unwrap().is_empty());
    assert_eq!(store.settled_calls("1001", 10).unwrap().len(), 1);
}

pub fn spend_sums_across_settlements(mut store: impl Store) {
    let nov_26 = day(2026, 11, 26);
    let nov_3 = day(2026, 11, 3);
    let dec_1 = day(2026, 12, 1);
    let mut changes = Vec::new();
    // 1.30 + 0.70 on the 26th, 0.70 on the 3rd (same month), expired 5.00 on Dec 1st.
    for (id, on, reason, seconds) in [
        ("a", nov_26, SettleReason::Ended, 61),
        ("b", nov_26, SettleReason::Ended, 30),
        ("c", nov_3, SettleReason::Ended, 60),
        ("d", dec_1, SettleReason::Expired, 0),
    ] {
        let open = call(id, "1001", on);
        changes.push(opened(&open));
        changes.push(settled(&settle(open, reason, seconds)));
    }
    store.apply(&changes).unwrap();
    let ext = Subject::extension("1001");
    let reseller = Subject::account("resell");
    for subject in [&ext, &reseller] {
        let spend = |period| store.spend(subject, period).unwrap();
        assert_eq!(spend(SpendPeriod::Day(nov_26)), Money::from_cents(200));
        assert_eq!(spend(SpendPeriod::Day(nov_3)), Money::from_cents(70));
        assert_eq!(
            spend(SpendPeriod::Month(MonthKey::of(nov_26))),
            Money::from_cents(270)
        );
        assert_eq!(
            spend(SpendPeriod::Month(MonthKey::of(dec_1))),
            Money::from_cents(500)
        );
        assert_eq!(spend(SpendPeriod::Total), Money::from_cents(770));
    }
    // Another extension of the same account adds to the account, not to 1001.
    let open = call("e", "1002", nov_26);
    store
        .apply(&[settled(&settle(open, SettleReason::Ended, 1))])
        .unwrap();
    assert_eq!(
        store.spend(&ext, SpendPeriod::Total).unwrap(),
        Money::from_cents(770)
    );
    assert_eq!(
        store
            .spend(&Subject::account("acme"), SpendPeriod::Total)
            .unwrap(),
        Money::from_cents(840)
    );
}

pub fn load_spend_filters_by_since(mut store: impl Store) {
    let mut changes = Vec::new();
    for (id, on) in [
        ("old-month", day(2026, 10, 31)),
        ("old-day", day(2026, 11, 1)),
        ("today", day(2026, 11, 26)),
    ] {
        let mut open = call(id, "1001", on);
        open.levels.truncate(1);
        changes.push(settled(&settle(open, SettleReason::Ended, 60)));
    }
    store.apply(&changes).unwrap();
    let ext = Subject::extension("1001");
    let row = |period: &str, cents: i64| (ext.clone(), period.to_string(), cents * 10_000);

    assert_eq!(
        sorted_spend(&store, day(2026, 11, 26)),
        vec![
            row("d:2026-11-26", 70),
            row("m:2026-11", 140),
            row("total", 210),
        ]
    );
    assert_eq!(
        sorted_spend(&store, day(2026, 11, 1)),
        vec![
            row("d:2026-11-01", 70),
            row("d:2026-11-26", 70),
            row("m:2026-11", 140),
            row("total", 210),
        ]
    );
    assert_eq!(
        sorted_spend(&store, day(2026, 10, 31)),
        vec![
            row("d:2026-10-31", 70),
            row("d:2026-11-01", 70),
            row("d:2026-11-26", 70),
            row("m:2026-10", 70),
            row("m:2026-11", 140),
            row("total", 210),
        ]
    );
    // Totals always come back, however old.
    assert_eq!(
        sorted_spend(&store, day(2027, 1, 1)),
        vec![row("total", 210)]
    );
}

pub fn entities_upsert_delete_and_suspend(mut store: impl Store) {
    let acme = entity(EntityKind::Account, "acme", r#"{"name":"Acme"}"#);
    let mut other = entity(EntityKind::Account, "beta", "{}");
    other.origin = Origin::Policy;
    let phone = entity(EntityKind::Extension, "1001", r#"{"account":"acme"}"#);
    store
        .apply(&[
            Change::UpsertEntity(phone.clone()),
            Change::UpsertEntity(other.clone()),
            Change::UpsertEntity(acme.clone()),
        ])
        .unwrap();
    assert_eq!(
        store.load_entities().unwrap(),
        vec![acme.clone(), other.clone(), phone.clone()]
    );
    assert_eq!(
        store.entity(EntityKind::Extension, "1001").unwrap(),
        Some(phone.clone())
    );
    assert_eq!(store.entity(EntityKind::Account, "1001").unwrap(), None);

    store
        .apply(&[
            Change::DeleteEntity {
                kind: EntityKind::Extension,
                id: "1001".into(),
            },
            // Same id, other kind: untouched by the delete above.
            Change::DeleteEntity {
                kind: EntityKind::Extension,
                id: "acme".into(),
            },
            Change::SetSuspended {
                kind: EntityKind::Account,
                id: "acme".into(),
                suspended: true,
            },
            // Suspending what is not stored changes nothing and fails nothing.
            Change::SetSuspended {
                kind: EntityKind::Extension,
                id: "9999".into(),
                suspended: true,
            },
        ])
        .unwrap();
    let suspended_acme = StoredEntity {
        suspended: true,
        ..acme.clone()
    };
    assert_eq!(
        store.load_entities().unwrap(),
        vec![suspended_acme.clone(), other.clone()]
    );
    assert_eq!(
        store.entity(EntityKind::Account, "acme").unwrap(),
        Some(suspended_acme)
    );
    assert_eq!(store.entity(EntityKind::Extension, "1001").unwrap(), None);

    store
        .apply(&[Change::SetSuspended {
            kind: EntityKind::Account,
            id: "acme".into(),
            suspended: false,
        }])
        .unwrap();
    assert_eq!(store.load_entities().unwrap(), vec![acme, other]);
}

pub fn upsert_keeps_suspended(mut store: impl Store) {
    let created_suspended = StoredEntity {
        suspended: true,
        ..entity(EntityKind::Extension, "1002", "{}")
    };
    let acme = entity(EntityKind::Account, "acme", r#"{"v":1}"#);
    store
        .apply(&[
            Change::UpsertEntity(acme.clone()),
            Change::UpsertEntity(created_suspended.clone()),
            Change::SetSuspended {
                kind: EntityKind::Account,
                id: "acme".into(),
                suspended: true,
            },
        ])
        .unwrap();
    // A new body (and origin) from a re-seed or an API edit keeps the suspension.
    let mut edited = entity(EntityKind::Account, "acme", r#"{"v":2}"#);
    edited.origin = Origin::Policy;
    let mut edited_phone = created_suspended.clone();
    edited_phone.suspended = false;
    edited_phone.body = r#"{"v":2}"#.into();
    store
        .apply(&[
            Change::UpsertEntity(edited.clone()),
            Change::UpsertEntity(edited_phone.clone()),
        ])
        .unwrap();
    assert_eq!(
        store.load_entities().unwrap(),
        vec![
            StoredEntity {
                suspended: true,
                ..edited
            },
            StoredEntity {
                suspended: true,
                ..edited_phone
            },
        ]
    );
}

pub fn settled_calls_are_newest_first_and_limited(mut store: impl Store) {
    let on = day(2026, 11, 26);
    let mut changes = Vec::new();
    // Ended out of submission order: c3 last, c0 first.
    for (id, seconds) in [("c2", 120), ("c0", 1), ("c4", 240), ("c1", 60), ("c3", 180)] {
        changes.push(settled(&settle(
            call(id, "1001", on),
            SettleReason::Ended,
            seconds,
        )));
    }
    changes.push(settled(&settle(
        call("x", "1002", on),
        SettleReason::Ended,
        999,
    )));
    changes.push(opened(&call("still-open", "1001", on)));
    store.apply(&changes).unwrap();

    let ids = |limit| -> Vec<String> {
        store
            .settled_calls("1001", limit)
            .unwrap()
            .into_iter()
            .map(|c| c.call_id)
            .collect()
    };
    assert_eq!(ids(3), ["c4", "c3", "c2"]);
    assert_eq!(ids(100), ["c4", "c3", "c2", "c1", "c0"]);
    assert!(ids(0).is_empty());
    assert_eq!(store.settled_calls("1002", 10).unwrap().len(), 1);
    assert!(store.settled_calls("nobody", 10).unwrap().is_empty());
}

/// 1,000 changes of every kind: 300 calls opened, 100 of them updated, 300 settled (200 of
/// the opened and 100 never opened), 300 entity changes.
fn thousand_changes(on: NaiveDate) -> Vec<Change> {
    let mut changes = Vec::with_capacity(1_000);
    for i in 0..300 {
        changes.push(opened(&call(
            &format!("call-{i:03}"),
            &format!("{}", 2000 + i % 10),
            on,
        )));
    }
    for i in 0..100 {
        let mut open = call(&format!("call-{i:03}"), &format!("{}", 2000 + i % 10), on);
        open.granted_s += 60;
        changes.push(updated(&open));
    }
    for i in 100..400 {
        let open = call(&format!("call-{i:03}"), &format!("{}", 2000 + i % 10), on);
        changes.push(settled(&settle(open, SettleReason::Ended, 60)));
    }
    for i in 0..150 {
        changes.push(Change::UpsertEntity(entity(
            EntityKind::Extension,
            &format!("{}", 2000 + i),
            &format!(r#"{{"n":{i}}}"#),
        )));
    }
    for i in 0..150 {
        changes.push(Change::SetSuspended {
            kind: EntityKind::Extension,
            id: format!("{}", 2000 + i),
            suspended: i % 2 == 0,
        });
    }
    assert_eq!(changes.len(), 1_000);
    changes
}

pub fn batch_of_a_thousand_changes_in_one_apply(mut store: impl Store) {
    let on = day(2026, 11, 26);
    store.apply(&thousand_changes(on)).unwrap();
    let open = sorted_open_calls(&store);
    assert_eq!(open.len(), 100);
    assert!(
        open.iter().all(|c| c.granted_s == 540),
        "every open call was updated"
    );
    let entities = store.load_entities().unwrap();
    assert_eq!(entities.len(), 150);
    assert_eq!(entities.iter().filter(|e| e.suspended).count(), 75);
    // 300 settlements of 0.70 each reach the account.
    assert_eq!(
        store
            .spend(&Subject::account("acme"), SpendPeriod::Day(on))
            .unwrap(),
        Money::from_cents(300 * 70)
    );
    assert_eq!(store.settled_calls("2000", 1_000).unwrap().len(), 30);
}

pub fn failed_apply_leaves_nothing_behind(mut store: impl Store) {
    let on = day(2026, 11, 26);
    let before = settle(call("before", "2000", on), SettleReason::Ended, 60);
    store
        .apply(&[
            settled(&before),
            Change::UpsertEntity(entity(EntityKind::Account, "acme", "{}")),
        ])
        .unwrap();
    let snapshot = |store: &dyn Store| {
        (
            store.load_open_calls().unwrap(),
            store.load_spend(day(2000, 1, 1)).unwrap(),
            store.load_entities().unwrap(),
            store.settled_calls("2000", 1_000).unwrap(),
        )
    };
    let expected = snapshot(&store);

    // A full batch of good changes whose last one is refused: a body that is not JSON.
    let mut changes = thousand_changes(on);
    changes.push(Change::UpsertEntity(entity(
        EntityKind::Account,
        "acme",
        "{not json",
    )));
    let error = store.apply(&changes).unwrap_err();
    assert!(matches!(error, StoreError::Invalid { .. }), "{error}");
    assert_eq!(snapshot(&store), expected);

    // The store is still usable after the rollback.
    store.apply(&thousand_changes(on)).unwrap();
    assert_eq!(store.load_open_calls().unwrap().len(), 100);
}

pub fn empty_apply_is_fine(mut store: impl Store) {
    store.apply(&[]).unwrap();
    assert!(store.load_open_calls().unwrap().is_empty());
    assert!(store.load_entities().unwrap().is_empty());
    assert!(store.load_spend(day(1970, 1, 1)).unwrap().is_empty());
}

/// A call id settled and then opened again (the ledger allows it) is open again: the
/// store follows the ledger. The first settlement's spend stays counted.
pub fn reopened_call_id_is_open_again(mut store: impl Store) {
    let on = day(2026, 11, 26);
    let first = call("reused", "1001", on);
    let again = call("reused", "1001", day(2026, 11, 27));
    store
        .apply(&[
            opened(&first),
            settled(&settle(first, SettleReason::Ended, 60)),
            opened(&again),
        ])
        .unwrap();
    assert_eq!(store.load_open_calls().unwrap(), vec![again]);
    assert!(store.settled_calls("1001", 10).unwrap().is_empty());
    assert_eq!(
        store
            .spend(&Subject::extension("1001"), SpendPeriod::Total)
            .unwrap(),
        Money::from_cents(70)
    );
}

fn ban_at(
    target: &str,
    rule: &str,
    at: chrono::DateTime<chrono::Utc>,
    seconds: Option<i64>,
    offense: u32,
) -> tollgate_core::guard::Ban {
    tollgate_core::guard::Ban {
        target: target.parse().unwrap(),
        rule: rule.into(),
        reason: format!("{rule} reason"),
        events: vec![format!("event for {target}"), "second event".into()],
        banned_at: at,
        expires_at: seconds.map(|s| at + chrono::Duration::seconds(s)),
        offense,
    }
}

pub fn bans_record_lift_and_history(mut store: impl Store) {
    use chrono::{Duration, TimeZone, Utc};
    let t0 = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
    let old = ban_at(
        "203.0.113.1/32",
        "jail sip-auth",
        t0 - Duration::days(30),
        Some(3600),
        1,
    );
    let first = ban_at("203.0.113.7/32", "jail sip-auth", t0, Some(3600), 1);
    let subnet = ban_at(
        "198.51.100.0/24",
        "pike",
        t0 + Duration::seconds(1),
        None,
        1,
    );
    store
        .apply(&[
            Change::RecordBan(old.clone()),
            Change::LiftBan {
                target: old.target,
                at: t0 - Duration::days(29),
                reason: "expired".into(),
            },
            Change::RecordBan(first.clone()),
            Change::RecordBan(subnet.clone()),
        ])
        .unwrap();
    let loaded = store.load_bans(t0 - Duration::days(7)).unwrap();
    assert_eq!(
        loaded.iter().map(|b| b.ban.clone()).collect::<Vec<_>>(),
        vec![first.clone(), subnet.clone()]
    );
    assert!(loaded.iter().all(|b| b.lifted_at.is_none()));
    // Older history is there when asked for.
    let all = store.load_bans(t0 - Duration::days(60)).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].lift_reason.as_deref(), Some("expired"));

    // A second ban of the same target replaces the first; lifting closes it.
    let second = ban_at(
        "203.0.113.7/32",
        "manual",
        t0 + Duration::seconds(5),
        None,
        2,
    );
    store
        .apply(&[
            Change::RecordBan(second.clone()),
            Change::LiftBan {
                target: subnet.target,
                at: t0 + Duration::seconds(9),
                reason: "lifted by hand".into(),
            },
        ])
        .unwrap();
    let loaded = store.load_bans(t0 - Duration::days(7)).unwrap();
    assert_eq!(loaded.len(), 3);
    let in_force: Vec<_> = loaded
        .iter()
        .filter(|b| b.lifted_at.is_none())
        .map(|b| b.ban.clone())
        .collect();
    assert_eq!(in_force, vec![second]);
    let replaced = loaded.iter().find(|b| b.ban == first).unwrap();
    assert_eq!(replaced.lift_reason.as_deref(), Some("replaced"));
}

pub fn cursors_round_trip(mut store: impl Store) {
    assert_eq!(
        store.cursor("tail:/var/log/asterisk/security").unwrap(),
        None
    );
    store
        .apply(&[Change::SetCursor {
            key: "tail:/var/log/asterisk/security".into(),
            value: r#"{"offset":10}"#.into(),
        }])
        .unwrap();
    store
        .apply(&[Change::SetCursor {
            key: "tail:/var/log/asterisk/security".into(),
            value: r#"{"offset":42}"#.into(),
        }])
        .unwrap();
    assert_eq!(
        store
            .cursor("tail:/var/log/asterisk/security")
            .unwrap()
            .as_deref(),
        Some(r#"{"offset":42}"#)
    );
}

fn alert(id: u64, open: bool, at: &str) -> tollgate_core::monitor::Alert {
    use tollgate_core::monitor::{Alert, AlertKind, Metric, MonitorSubject, Severity};
    Alert {
        id,
        rule: "monitor.rules.satellite_burst".into(),
        kind: AlertKind::Threshold,
        metric: Metric::Attempts,
        subject: MonitorSubject::Extension("1001".into()),
        profile: "satellite".into(),
        severity: Severity::Warning,
        open,
        opened_at: time(at),
        updated_at: time(at),
        closed_at: (!open).then(|| time(at)),
        value: 3,
        peak: 3,
        warning_at: Some(3),
        critical_at: Some(5),
        window_s: 600,
        expected: None,
        summary: "extension 1001: 3 attempts (satellite) in 10m, warning at 3".into(),
        actions: vec![],
        acknowledged_at: None,
        acknowledged_by: None,
    }
}

pub fn alerts_upsert_list_and_page(mut store: impl Store) {
    use crate::AlertQuery;
    use tollgate_core::monitor::Severity;
    assert_eq!(store.next_alert_id().unwrap(), 1);
    store
        .apply(&[
            Change::UpsertAlert(alert(1, false, "2026-11-26T10:00:00Z")),
            Change::UpsertAlert(alert(2, true, "2026-11-26T11:00:00Z")),
            Change::UpsertAlert(alert(3, true, "2026-11-26T12:00:00Z")),
        ])
        .unwrap();
    let mut escalated = alert(2, true, "2026-11-26T11:00:00Z");
    escalated.severity = Severity::Critical;
    escalated.peak = 7;
    store
        .apply(&[Change::UpsertAlert(escalated.clone())])
        .unwrap();
    assert_eq!(store.next_alert_id().unwrap(), 4);
    assert_eq!(store.alert(2).unwrap(), Some(escalated));
    assert_eq!(store.alert(9).unwrap(), None);
    let all = store
        .alerts(&AlertQuery {
            open_only: false,
            before_id: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), vec![3, 2, 1]);
    let open = store
        .alerts(&AlertQuery {
            open_only: true,
            before_id: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(open.iter().map(|a| a.id).collect::<Vec<_>>(), vec![3, 2]);
    let page = store
        .alerts(&AlertQuery {
            open_only: false,
            before_id: Some(3),
            limit: 1,
        })
        .unwrap();
    assert_eq!(page.iter().map(|a| a.id).collect::<Vec<_>>(), vec![2]);
}

pub fn suspensions_record_and_lift(mut store: impl Store) {
    use tollgate_core::monitor::{MonitorSubject, Suspension};
    let suspension = |subject: MonitorSubject, at: &str| Suspension {
        subject,
        since: time(at),
        until: None,
        rule: "monitor.rules.satellite_burst".into(),
        alert_id: Some(1),
        reason: "burst".into(),
    };
    let ext = MonitorSubject::Extension("1001".into());
    let acc = MonitorSubject::Account("acme".into());
    store
        .apply(&[
            Change::Suspend(suspension(ext.clone(), "2026-11-26T10:00:00Z")),
            Change::Suspend(suspension(acc.clone(), "2026-11-26T10:01:00Z")),
            // A second suspension of the same subject replaces the first.
            Change::Suspend(suspension(ext.clone(), "2026-11-26T10:02:00Z")),
        ])
        .unwrap();
    let active = store.active_suspensions().unwrap();
    assert_eq!(active.len(), 2);
    assert!(active.contains(&suspension(ext.clone(), "2026-11-26T10:02:00Z")));
    store
        .apply(&[Change::LiftSuspension {
            subject: ext,
            at: time("2026-11-26T11:00:00Z"),
            by: "admin".into(),
        }])
        .unwrap();
    assert_eq!(
        store.active_suspensions().unwrap(),
        vec![suspension(acc, "2026-11-26T10:01:00Z")]
    );
}

pub fn registrations_and_last_calls(mut store: impl Store) {
    use crate::RegistrationSeen;
    let seen = |ext: &str, at: &str, ua: &str| RegistrationSeen {
        extension: ext.into(),
        at: time(at),
        ip: Some("192.0.2.10".parse().unwrap()),
        user_agent: Some(ua.into()),
    };
    store
        .apply(&[
            Change::SeenRegistration(seen(
                "1001",
                "2026-11-26T10:00:00Z",
                "Yealink SIP-T46S 66.86.0.15",
            )),
            Change::SeenRegistration(seen("1002", "2026-11-26T10:00:00Z", "snom760/10.1.54.13")),
            Change::SeenRegistration(seen(
                "1001",
                "2026-11-26T11:00:00Z",
                "Yealink SIP-T46S 66.86.0.160",
            )),
            // Older than what is stored: ignored.
            Change::SeenRegistration(seen("1002", "2026-11-25T10:00:00Z", "old")),
        ])
        .unwrap();
    assert_eq!(
        store.registrations().unwrap(),
        vec![
            seen(
                "1001",
                "2026-11-26T11:00:00Z",
                "Yealink SIP-T46S 66.86.0.160"
            ),
            seen("1002", "2026-11-26T10:00:00Z", "snom760/10.1.54.13"),
        ]
    );
    let on = day(2026, 11, 26);
    let first = call("c1", "1001", on);
    let second = call("c2", "1001", on);
    store
        .apply(&[
            opened(&first),
            opened(&second),
            settled(&settle(first, SettleReason::Ended, 60)),
            settled(&settle(second, SettleReason::Ended, 120)),
        ])
        .unwrap();
    let last = store.last_calls().unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].0, "1001");
}

pub fn baselines_round_trip(mut store: impl Store) {
    use tollgate_core::monitor::MonitorSubject;
    let ext = MonitorSubject::Extension("1001".into());
    let acc = MonitorSubject::Account("acme".into());
    store
        .apply(&[
            Change::SaveBaseline {
                rule: "monitor.baselines.a".into(),
                subject: ext.clone(),
                data: vec![1, 2, 3],
            },
            Change::SaveBaseline {
                rule: "monitor.baselines.a".into(),
                subject: acc.clone(),
                data: vec![4],
            },
            Change::SaveBaseline {
                rule: "monitor.baselines.a".into(),
                subject: ext.clone(),
                data: vec![5, 6],
            },
        ])
        .unwrap();
    assert_eq!(
        store.load_baselines().unwrap(),
        vec![
            ("monitor.baselines.a".to_string(), acc, vec![4]),
            ("monitor.baselines.a".to_string(), ext, vec![5, 6]),
        ]
    );
}

pub fn shadow_decisions_record_and_settle(mut store: impl Store) {
    use crate::ShadowDecision;
    let decision = |id: &str, at: &str| ShadowDecision {
        call_id: id.into(),
        extension: "1001".into(),
        number: "+88216123456".into(),
        code: "class_not_allowed".into(),
        rule: "account acme rules".into(),
        message: "satellite destinations are not allowed".into(),
        at: time(at),
        duration_s: None,
        cost: None,
    };
    store
        .apply(&[
            Change::RecordShadow(decision("s1", "2026-11-26T10:00:00Z")),
            Change::RecordShadow(decision("s2", "2026-11-26T12:00:00Z")),
            Change::SettleShadow {
                call_id: "s1".into(),
                duration_s: 125,
                cost: Money::from_cents(450),
            },
        ])
        .unwrap();
    let all = store
        .shadow_decisions(time("2026-11-26T00:00:00Z"))
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].duration_s, Some(125));
    assert_eq!(all[0].cost, Some(Money::from_cents(450)));
    assert_eq!(all[1].cost, None);
    assert_eq!(
        store
            .shadow_decisions(time("2026-11-26T11:00:00Z"))
            .unwrap()
            .len(),
        1
    );
}

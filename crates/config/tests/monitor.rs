//! Call-pattern monitoring, one scenario per detector, driven through the real engine with
//! policies in the TOML format: a satellite burst, an after-hours burst, a slow ramp only
//! the learned baseline catches, a rush of new extensions, and a normal busy fortnight that
//! must raise nothing (false positives matter as much as misses). Time is simulated.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use tollgate_core::engine::{AuthorizeRequest, Decision, DenyCode};
use tollgate_core::monitor::{
    AlertEvent, DirectoryChange, MonitorEffect, MonitorSubject, Severity,
};
use tollgate_core::Engine;

const POLICY: &str = r#"
[plans.std]
currency = "EUR"
rates = [
  { prefix = "+33",  description = "France", price_per_minute = "0.01", increments = "60/60" },
  { prefix = "+44",  description = "United Kingdom", price_per_minute = "0.02", increments = "60/60" },
  { prefix = "+882", description = "International networks", price_per_minute = "2.00", increments = "60/60" },
]

[schedules.office]
time_zone = "Europe/Paris"
monday = ["08:00-18:00"]
tuesday = ["08:00-18:00"]
wednesday = ["08:00-18:00"]
thursday = ["08:00-18:00"]
friday = ["08:00-18:00"]
outside_hours_classes = ["national", "mobile", "international", "satellite", "high_risk", "internal"]

[accounts.acme]
country = "FR"
time_zone = "Europe/Paris"
plan = "std"
schedule = "office"
limits = { daily = "5000.00", monthly = "50000.00" }
rules = { allowed_classes = ["emergency", "internal", "national", "mobile", "toll_free", "international", "satellite", "high_risk"] }
extension_defaults = { limits = { daily = "1000.00", monthly = "10000.00" } }

[extensions.1001]
account = "acme"
allowed_cidrs = ["192.0.2.0/24"]
"#;

fn engine(monitor: &str, extra: &str) -> Engine {
    let text = format!("{POLICY}\n{extra}\n{monitor}");
    let loaded = tollgate_config::load_str(&text, Path::new("monitor-test.toml"), Path::new("."))
        .unwrap_or_else(|e| panic!("policy: {e}"));
    Engine::new(loaded.policy)
}

/// Monday 2026-11-02 00:00 Europe/Paris (UTC+1).
fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 23, 0, 0).unwrap()
}

struct Driver {
    engine: Engine,
    next_call: u64,
    effects: Vec<MonitorEffect>,
}

impl Driver {
    fn new(engine: Engine) -> Driver {
        Driver {
            engine,
            next_call: 0,
            effects: Vec::new(),
        }
    }

    fn collect(&mut self) {
        self.effects.extend(self.engine.monitor.drain_effects());
    }

    /// A call that is answered and lasts `seconds` (if allowed); returns the decision.
    fn call(&mut self, extension: &str, number: &str, at: DateTime<Utc>, seconds: u64) -> Decision {
        self.next_call += 1;
        let id = format!("c{}", self.next_call);
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let (decision, _) = self
            .engine
            .authorize(
                &AuthorizeRequest {
                    call_id: &id,
                    extension,
                    source_ip: ip,
                    number,
                    pbx_ref: None,
                },
                at,
            )
            .unwrap();
        if matches!(decision, Decision::Allow(_)) {
            self.engine.answer(&id, at + Duration::seconds(2)).unwrap();
            self.engine
                .end(
                    &id,
                    Some(seconds),
                    at + Duration::seconds(2 + seconds as i64),
                )
                .unwrap();
        }
        self.collect();
        decision
    }

    fn tick(&mut self, at: DateTime<Utc>) {
        self.engine.tick(at);
        self.collect();
    }

    fn opened(&self) -> Vec<(String, String, Severity)> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                MonitorEffect::Alert {
                    alert,
                    event: AlertEvent::Opened | AlertEvent::Escalated,
                } => Some((
                    alert.rule.clone(),
                    alert.subject.to_string(),
                    alert.severity,
                )),
                _ => None,
            })
            .collect()
    }
}

fn deny_code(decision: &Decision) -> Option<DenyCode> {
    match decision {
        Decision::Deny(d) => Some(d.code),
        Decision::Allow(_) => None,
    }
}

/// A normal working week for extension `ext`: 3 national calls an hour, 09:00-17:00
/// Paris time, Monday to Friday, of 2-4 minutes each.
fn normal_week(driver: &mut Driver, ext: &str, week_start: DateTime<Utc>) {
    for day in 0..5 {
        for hour in 9..17 {
            for k in 0..3 {
                let at = week_start
                    + Duration::days(day)
                    + Duration::hours(hour)
                    + Duration::minutes(5 + 17 * k);
                let number = format!("+3314268{:04}", (day * 100 + hour * 3 + k) % 10_000);
                let d = driver.call(ext, &number, at, 120 + 30 * k as u64);
                assert!(deny_code(&d).is_none(), "normal call denied: {d:?}");
            }
            driver.tick(week_start + Duration::days(day) + Duration::hours(hour + 1));
        }
    }
    driver.tick(week_start + Duration::days(7));
}

const SATELLITE_RULE: &str = r#"
[monitor.rules.satellite_burst]
metric = "attempts"
destinations = { classes = ["satellite", "high_risk"] }
window = "10m"
warning = 3
critical = 5
on_critical = ["suspend_extension"]
"#;

#[test]
fn satellite_burst_turns_critical_and_suspends_within_the_window() {
    let mut d = Driver::new(engine(SATELLITE_RULE, ""));
    normal_week(&mut d, "1001", monday());
    assert!(
        d.opened().is_empty(),
        "a normal week raised {:?}",
        d.opened()
    );

    // Tuesday of the next week, 02:00: a burst to a satellite range, one call a minute.
    let start = monday() + Duration::days(8) + Duration::hours(2);
    let mut allowed = 0;
    let mut first_refusal = None;
    for i in 0..10 {
        let decision = d.call("1001", "+88216123456", start + Duration::minutes(i), 50);
        match deny_code(&decision) {
            None => allowed += 1,
            Some(code) => {
                first_refusal.get_or_insert((i, code, decision.clone()));
            }
        }
    }
    let opened = d.opened();
    assert_eq!(
        opened,
        vec![
            (
                "monitor.rules.satellite_burst".into(),
                "extension 1001".into(),
                Severity::Warning
            ),
            (
                "monitor.rules.satellite_burst".into(),
                "extension 1001".into(),
                Severity::Critical
            ),
        ]
    );
    // The 5th attempt is critical and suspends: the 6th is refused, 5 minutes into the window.
    assert_eq!(allowed, 5);
    let (index, code, decision) = first_refusal.unwrap();
    assert_eq!((index, code), (5, DenyCode::ExtensionSuspended));
    let Decision::Deny(deny) = decision else {
        unreachable!()
    };
    assert_eq!(deny.rule, "monitor.rules.satellite_burst");
    assert!(
        deny.message
            .contains("suspended by monitor.rules.satellite_burst"),
        "{}",
        deny.message
    );
    assert!(d.effects.iter().any(|e| matches!(e, MonitorEffect::Suspended(s) if s.subject == MonitorSubject::Extension("1001".into()) && s.until.is_none())));

    // National calls are refused too (the extension is suspended), until a person lifts it.
    let later = start + Duration::hours(5);
    d.tick(later);
    assert_eq!(
        deny_code(&d.call("1001", "+33142685300", later, 60)),
        Some(DenyCode::ExtensionSuspended)
    );
    // The burst is over: the alert closes when its window has slid past it.
    assert!(d.effects.iter().any(|e| matches!(
        e,
        MonitorEffect::Alert {
            event: AlertEvent::Closed,
            ..
        }
    )));
    assert!(d
        .engine
        .monitor
        .lift(&MonitorSubject::Extension("1001".into()))
        .is_some());
    assert!(deny_code(&d.call("1001", "+33142685300", later + Duration::minutes(1), 60)).is_none());
}

#[test]
fn after_hours_burst_alerts_at_the_stricter_off_hours_levels() {
    let rule = r#"
[monitor.rules.international_calls]
metric = "attempts"
destinations = { classes = ["international"] }
window = "1h"
warning = 20
critical = 40
off_hours = { warning = 4, critical = 8 }
on_critical = ["deny_profile"]
"#;
    let mut d = Driver::new(engine(rule, ""));
    // Monday 10:00-10:50: 10 calls to the UK in office hours: below 20, nothing.
    let office = monday() + Duration::hours(10);
    for i in 0..10 {
        assert!(deny_code(&d.call(
            "1001",
            "+442071234567",
            office + Duration::minutes(5 * i),
            60
        ))
        .is_none());
    }
    assert!(d.opened().is_empty(), "{:?}", d.opened());

    // Saturday 03:00: the same kind of calls; the 4th warns, the 8th is critical and the
    // profile is denied; a national call still goes through.
    let night = monday() + Duration::days(5) + Duration::hours(3);
    let mut decisions = Vec::new();
    for i in 0..10 {
        decisions.push(deny_code(&d.call(
            "1001",
            "+442071234567",
            night + Duration::minutes(i),
            60,
        )));
    }
    let severities: Vec<Severity> = d.opened().into_iter().map(|(_, _, s)| s).collect();
    assert_eq!(severities, vec![Severity::Warning, Severity::Critical]);
    assert_eq!(decisions.iter().filter(|c| c.is_none()).count(), 8);
    assert_eq!(decisions[8], Some(DenyCode::BlockedByMonitor));
    let alert = d.engine.monitor.open_alerts().pop().unwrap();
    assert!(alert.summary.contains("(off hours)"), "{}", alert.summary);
    assert_eq!(alert.critical_at, Some(8));
    assert!(
        deny_code(&d.call("1001", "+33142685300", night + Duration::minutes(11), 60)).is_none()
    );
    // An hour later the window has emptied: the alert closes and the deny with it.
    d.tick(night + Duration::minutes(75));
    assert!(d.engine.monitor.open_alerts().is_empty());
    assert!(
        deny_code(&d.call("1001", "+442071234567", night + Duration::minutes(76), 60)).is_none()
    );
}

#[test]
fn a_slow_ramp_only_the_learned_baseline_catches() {
    let rules = r#"
[monitor.rules.attempts_per_hour]
metric = "attempts"
window = "1h"
critical = 40

[monitor.baselines.usual_attempts]
metric = "attempts"
factor = 3
deviations = 4
floor = 8
warmup = "7d"
"#;
    let mut d = Driver::new(engine(rules, ""));
    for week in 0..2 {
        normal_week(&mut d, "1001", monday() + Duration::weeks(week));
    }
    assert!(
        d.opened().is_empty(),
        "two normal weeks raised {:?}",
        d.opened()
    );

    // Wednesday night of week 3: 4, 6, 9, 12 calls in successive hours, abroad.
    let night = monday() + Duration::weeks(2) + Duration::days(2) + Duration::hours(1);
    let mut fired_at = None;
    for (h, calls) in [4i64, 6, 9, 12].into_iter().enumerate() {
        for k in 0..calls {
            let at = night + Duration::hours(h as i64) + Duration::minutes(k * 60 / calls);
            d.call("1001", &format!("+4420712{:05}", k), at, 30);
            if fired_at.is_none() && !d.opened().is_empty() {
                fired_at = Some((h, k + 1));
            }
        }
        d.tick(night + Duration::hours(h as i64 + 1));
    }
    let opened = d.opened();
    assert!(
        opened
            .iter()
            .all(|(rule, _, _)| rule == "monitor.baselines.usual_attempts"),
        "the fixed threshold must stay quiet: {opened:?}"
    );
    // Night hours have a learned mean of 0, so the floor decides: the 9th call in an hour.
    assert_eq!(fired_at, Some((2, 9)));
    let alert = d
        .effects
        .iter()
        .find_map(|e| match e {
            MonitorEffect::Alert {
                alert,
                event: AlertEvent::Opened,
            } => Some(alert.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(alert.warning_at, Some(9));
    assert!(
        alert.expected.as_deref().unwrap().starts_with("0 ± 0"),
        "{alert:?}"
    );

    // The same 9 calls at Monday 10:00, where 3 an hour are normal, stay below mean×3+: quiet.
    let mut d2 = Driver::new(engine(rules, ""));
    for week in 0..2 {
        normal_week(&mut d2, "1001", monday() + Duration::weeks(week));
    }
    let monday10 = monday() + Duration::weeks(2) + Duration::hours(10);
    for k in 0..9 {
        d2.call(
            "1001",
            "+33142685300",
            monday10 + Duration::minutes(k * 6),
            60,
        );
    }
    assert!(d2.opened().is_empty(), "{:?}", d2.opened());
}

#[test]
fn a_rush_of_new_extensions_suspends_the_account() {
    let rule = r#"
[monitor.rules.new_extensions]
metric = "extensions_created"
scope = "account"
window = "1h"
warning = 3
critical = 6
on_critical = ["suspend_account"]
action_for = "12h"
"#;
    let mut d = Driver::new(engine(rule, ""));
    let t = monday() + Duration::hours(14);
    for i in 0..6 {
        d.engine.observe_directory(
            DirectoryChange::ExtensionCreated,
            Some(&format!("20{i:02}")),
            "acme",
            t + Duration::minutes(i),
        );
        d.collect();
    }
    assert_eq!(
        d.opened(),
        vec![
            (
                "monitor.rules.new_extensions".into(),
                "account acme".into(),
                Severity::Warning
            ),
            (
                "monitor.rules.new_extensions".into(),
                "account acme".into(),
                Severity::Critical
            ),
        ]
    );
    let decision = d.call("1001", "+33142685300", t + Duration::minutes(10), 60);
    assert_eq!(deny_code(&decision), Some(DenyCode::AccountSuspended));
    // The suspension was for 12 hours: lifted by the tick after that.
    d.tick(t + Duration::hours(13));
    assert!(d.effects.iter().any(|e| matches!(e, MonitorEffect::Lifted(s) if s.subject == MonitorSubject::Account("acme".into()))));
    assert!(deny_code(&d.call("1001", "+33142685300", t + Duration::hours(13), 60)).is_none());
}

#[test]
fn a_normal_busy_fortnight_raises_nothing() {
    // Every detector, at levels an operator would use, over 20 busy extensions.
    let mut extra = String::new();
    for i in 0..20 {
        extra.push_str(&format!(
            "[extensions.{}]\naccount = \"acme\"\nallowed_cidrs = [\"192.0.2.0/24\"]\n",
            1100 + i
        ));
    }
    let rules = r#"
[monitor.rules.satellite_burst]
metric = "attempts"
destinations = { classes = ["satellite", "high_risk", "premium"] }
window = "10m"
warning = 3
critical = 5
[monitor.rules.attempts_per_hour]
metric = "attempts"
window = "1h"
warning = 30
critical = 60
off_hours = { warning = 5, critical = 10 }
[monitor.rules.concurrent]
metric = "concurrent"
warning = 4
critical = 8
[monitor.rules.minutes]
metric = "minutes"
window = "1h"
warning = 50
[monitor.rules.spend]
metric = "spend"
scope = "account"
window = "1d"
warning = "100.00"
[monitor.rules.distinct]
metric = "distinct_destinations"
window = "1h"
warning = 25
[monitor.rules.repeated]
metric = "repeated_calls"
window = "10m"
warning = 5
[monitor.rules.short_calls]
metric = "short_call_ratio"
window = "1h"
warning = 80
min_calls = 10
[monitor.rules.after_hours]
metric = "after_hours"
window = "1h"
warning = 5
[monitor.rules.denied]
metric = "denied"
window = "10m"
warning = 5
[monitor.baselines.usual_attempts]
metric = "attempts"
floor = 10
[monitor.baselines.usual_spend]
metric = "spend"
scope = "account"
floor = "20.00"
"#;
    let mut d = Driver::new(engine(rules, &extra));
    let mut calls = 0;
    for week in 0..2 {
        for day in 0..5 {
            for hour in 8..18 {
                let base =
                    monday() + Duration::weeks(week) + Duration::days(day) + Duration::hours(hour);
                for e in 0..20 {
                    // 3 to 6 calls an hour each, national and mobile, some short ones.
                    let n = 3 + (e + hour + day) % 4;
                    for k in 0..n {
                        let at = base + Duration::minutes(k * 60 / n + e % 7);
                        let number = if k % 3 == 0 {
                            format!("+336{:08}", e * 1000 + k + hour * 10)
                        } else {
                            format!("+3314268{:04}", e * 100 + k + day)
                        };
                        let secs = if k % 4 == 0 { 5 } else { 60 + 30 * k as u64 };
                        let decision = d.call(&format!("{}", 1100 + e), &number, at, secs);
                        assert!(deny_code(&decision).is_none(), "{decision:?}");
                        calls += 1;
                    }
                }
                d.tick(base + Duration::hours(1));
            }
        }
    }
    assert!(calls >= 8500, "{calls} calls");
    assert!(d.opened().is_empty(), "false positives: {:?}", d.opened());
    assert!(d.engine.monitor.open_alerts().is_empty());
}

#[test]
fn bad_monitor_rules_are_reported_by_key() {
    let text = format!(
        "{POLICY}\n{}",
        r#"
[monitor.rules.bad]
metric = "attempts_per_fortnight"
[monitor.rules.levels]
metric = "attempts"
window = "1h"
warning = 10
critical = 5
on_critical = ["suspend_everyone"]
[monitor.rules.nowindow]
metric = "spend"
warning = 1.5
[monitor.baselines.b]
metric = "concurrent"
"#
    );
    let err = tollgate_config::load_str(&text, Path::new("p.toml"), Path::new(".")).unwrap_err();
    let text = err.to_string();
    for expected in [
        "monitor.rules.bad.metric: unknown metric \"attempts_per_fortnight\"",
        "monitor.rules.levels.warning: the warning level is above the critical level",
        "monitor.rules.levels.on_critical: unknown action \"suspend_everyone\"",
        "monitor.rules.nowindow.window: a window is needed",
        "monitor.rules.nowindow.warning: write money as a quoted decimal",
        "monitor.baselines.b.metric: a baseline learns attempts or spend, not concurrent",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn learned_baselines_survive_a_snapshot_and_restore() {
    let rules = r#"
[monitor.baselines.usual_attempts]
metric = "attempts"
factor = 3
deviations = 4
floor = 8
warmup = "7d"
"#;
    let mut d = Driver::new(engine(rules, ""));
    for week in 0..2 {
        normal_week(&mut d, "1001", monday() + Duration::weeks(week));
    }
    let snapshots = d.engine.monitor.take_baseline_snapshots();
    assert_eq!(snapshots.len(), 1);
    assert!(
        d.engine.monitor.take_baseline_snapshots().is_empty(),
        "nothing new since"
    );
    // A new engine (a restart) with the stored snapshot: the night ramp fires at once,
    // with no new warm-up; without it the rule would still be warming up and stay quiet.
    for (restored, expect_alert) in [(true, true), (false, false)] {
        let mut fresh = Driver::new(engine(rules, ""));
        if restored {
            assert_eq!(fresh.engine.monitor.restore_baselines(snapshots.clone()), 0);
        }
        let night = monday() + Duration::weeks(2) + Duration::days(2) + Duration::hours(1);
        for k in 0..12 {
            fresh.call(
                "1001",
                "+442071234567",
                night + Duration::minutes(k * 4),
                30,
            );
        }
        assert_eq!(
            !fresh.opened().is_empty(),
            expect_alert,
            "restored: {restored}"
        );
    }
    // Snapshots of a rule that is gone are skipped, and hostile bytes refused.
    let mut other = Driver::new(engine("", ""));
    assert_eq!(other.engine.monitor.restore_baselines(snapshots.clone()), 1);
    let mut broken = snapshots;
    broken[0].2.truncate(10);
    let mut fresh = Driver::new(engine(rules, ""));
    assert_eq!(fresh.engine.monitor.restore_baselines(broken), 1);
}

#[test]
fn a_shadowed_rule_raises_its_alert_but_only_records_its_actions() {
    let rule = SATELLITE_RULE.replace(
        "on_critical = [\"suspend_extension\"]",
        "on_critical = [\"suspend_extension\", \"deny_profile\"]\nshadow = true",
    );
    let mut d = Driver::new(engine(&rule, ""));
    let start = monday() + Duration::days(1) + Duration::hours(2);
    for i in 0..8 {
        let decision = d.call("1001", "+88216123456", start + Duration::minutes(i), 30);
        assert!(
            deny_code(&decision).is_none(),
            "call {i} refused: {decision:?}"
        );
    }
    let alert = d.engine.monitor.open_alerts().pop().unwrap();
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(
        alert.actions,
        vec![
            "shadow mode: would suspend extension",
            "shadow mode: would deny profile"
        ]
    );
    assert!(d.engine.monitor.suspensions().is_empty());
    assert!(!d
        .effects
        .iter()
        .any(|e| matches!(e, MonitorEffect::Suspended(_))));
}

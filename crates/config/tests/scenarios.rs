//! Scenario tests: every `tests/scenarios/*.toml` file is a policy and a timed sequence of
//! call events with the decisions expected, run through one helper ([`run_scenario`]).
//!
//! The format (see `tests/scenarios/README.md` for the whole of it):
//!
//! ```toml
//! description = "what the scenario shows"
//! policy = """ ...a policy in the tollgate TOML format... """   # or policy_file = "path"
//!
//! [[step]]
//! at = "2026-11-26T10:00:00+01:00"      # or after = "2m" (from the previous step)
//! authorize = { call = "c1", extension = "1001", ip = "192.0.2.10", number = "0142685300" }
//! expect = { decision = "allow", max_duration_s = 3600, reserved = "0.60" }
//!
//! [[step]]
//! after = "125s"
//! end = { call = "c1" }
//! expect = { charged = "0.03" }
//! credit = [ { level = "extension 1001", limit = "daily", spent = "0.03", reserved = "0.00", available = "19.97" } ]
//! ```
//!
//! Every failure names the file, the step (its number and note) and what differed; all
//! files run and all failures are reported at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use tollgate_config::raw::RawDuration;
use tollgate_config::validate::parse_duration;
use tollgate_core::ledger::{Headroom, LimitKind, Periods, SettleReason};
use tollgate_core::money::Money;
use tollgate_core::policy::{Limit, Limits};
use tollgate_core::{AuthorizeRequest, Decision, Engine, LedgerEvent, Subject};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    /// A whole policy in the tollgate TOML format.
    policy: Option<String>,
    /// Or a policy file, relative to the scenario file.
    policy_file: Option<String>,
    #[serde(default, rename = "step")]
    steps: Vec<Step>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// RFC 3339 instant of the step (the first step must have one).
    at: Option<String>,
    /// Or a duration after the previous step ("90s", "2m", "1h30m", "1d", or seconds).
    after: Option<RawDuration>,
    /// Shown in failures.
    note: Option<String>,
    authorize: Option<AuthorizeStep>,
    answer: Option<CallRef>,
    extend: Option<ExtendStep>,
    end: Option<EndStep>,
    /// `expire = true`: settle every call whose expiry has passed.
    expire: Option<bool>,
    /// Runtime state, not file configuration: `suspend = { extension = "1001" }`.
    suspend: Option<Target>,
    resume: Option<Target>,
    expect: Option<Expect>,
    /// Credit of levels after the step.
    #[serde(default)]
    credit: Vec<CreditExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeStep {
    call: String,
    extension: String,
    ip: String,
    number: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRef {
    call: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendStep {
    call: String,
    /// More seconds asked for; without it, up to the extension's cap.
    seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndStep {
    call: String,
    /// Reported duration; without it, from answer to the step's time.
    duration_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    extension: Option<String>,
    account: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// Any action: it fails with a request error containing this text.
    error: Option<String>,
    /// authorize: "allow" or "deny".
    decision: Option<String>,
    /// authorize: the deny code.
    code: Option<String>,
    /// authorize (deny) and extend (limited_by): the rule, exactly.
    rule: Option<String>,
    /// authorize (deny) and extend (limited_by): the message, exactly.
    message: Option<String>,
    /// authorize (deny) and extend (limited_by): texts the message contains.
    message_contains: Option<OneOrMany>,
    /// authorize (allow).
    max_duration_s: Option<u64>,
    /// authorize (allow) and extend: money held for the call.
    reserved: Option<String>,
    /// authorize: destination class, E.164 form and rate prefix ("none" for free calls).
    class: Option<String>,
    e164: Option<String>,
    rate: Option<String>,
    /// extend: seconds added and total granted; `limited_by` is a deny code or "none".
    added_s: Option<u64>,
    granted_s: Option<u64>,
    limited_by: Option<String>,
    /// end: what the settlement says.
    charged: Option<String>,
    rated: Option<String>,
    duration_s: Option<u64>,
    billed_s: Option<u64>,
    overrun_s: Option<u64>,
    /// expire: exactly the calls settled, with their charges.
    expired: Option<Vec<ExpiredCall>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpiredCall {
    call: String,
    charged: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditExpect {
    /// "extension 1001" or "account acme".
    level: String,
    /// "daily", "monthly" or "balance"; without it, the limit that binds.
    limit: Option<String>,
    /// The limit that binds (only without `limit`); "none" when the level has no limit.
    binding: Option<String>,
    spent: Option<String>,
    reserved: Option<String>,
    /// An amount, or "unlimited".
    available: Option<String>,
    active_calls: Option<u32>,
}

fn money(text: &str) -> Result<Money, String> {
    text.parse::<Money>()
        .map_err(|e| format!("bad amount in scenario: {e}"))
}

/// Compares one expected field and records a difference.
fn check<T: PartialEq + std::fmt::Debug>(
    diffs: &mut Vec<String>,
    name: &str,
    expected: Option<T>,
    got: T,
) {
    if let Some(expected) = expected {
        if expected != got {
            diffs.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
}

fn check_money(
    diffs: &mut Vec<String>,
    name: &str,
    expected: &Option<String>,
    got: Money,
) -> Result<(), String> {
    if let Some(text) = expected {
        let want = money(text)?;
        if want != got {
            diffs.push(format!("{name}: expected {want}, got {got}"));
        }
    }
    Ok(())
}

fn check_message(diffs: &mut Vec<String>, expect: &Expect, rule: &str, message: &str) {
    check(diffs, "rule", expect.rule.as_deref(), rule);
    check(diffs, "message", expect.message.as_deref(), message);
    if let Some(parts) = &expect.message_contains {
        for part in parts.items() {
            if !message.contains(part) {
                diffs.push(format!("message {message:?} does not contain {part:?}"));
            }
        }
    }
}

fn subject_of(level: &str) -> Result<Subject, String> {
    match level.split_once(' ') {
        Some(("extension", id)) => Ok(Subject::extension(id)),
        Some(("account", id)) => Ok(Subject::account(id)),
        _ => Err(format!(
            "level {level:?} must be \"extension ID\" or \"account ID\""
        )),
    }
}

fn limit_kind_name(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Daily => "daily",
        LimitKind::Monthly => "monthly",
        LimitKind::Balance => "balance",
    }
}

/// The headroom of a level for one of its limits (or the binding one).
fn headroom_of(
    engine: &Engine,
    expect: &CreditExpect,
    now: DateTime<Utc>,
) -> Result<Headroom, String> {
    let subject = subject_of(&expect.level)?;
    let limits = *Engine::limits_of(&engine.policy, &subject)
        .ok_or_else(|| format!("no {}", expect.level))?;
    let only = match expect.limit.as_deref() {
        None => limits,
        Some("daily") => Limits {
            monthly: Limit::Unlimited,
            balance: None,
            ..limits
        },
        Some("monthly") => Limits {
            daily: Limit::Unlimited,
            balance: None,
            ..limits
        },
        Some("balance") => Limits {
            daily: Limit::Unlimited,
            monthly: Limit::Unlimited,
            ..limits
        },
        Some(other) => return Err(format!("limit {other:?} must be daily, monthly or balance")),
    };
    let tz = Engine::time_zone_of(&engine.policy, &subject);
    Ok(engine
        .ledger
        .headroom(&subject, &only, Periods::at(now, tz)))
}

fn check_credit(
    engine: &Engine,
    expect: &CreditExpect,
    now: DateTime<Utc>,
) -> Result<Vec<String>, String> {
    let headroom = headroom_of(engine, expect, now)?;
    let mut diffs = Vec::new();
    let label = format!(
        "credit of {}{}",
        expect.level,
        expect
            .limit
            .as_ref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default()
    );
    if let Some(binding) = &expect.binding {
        if expect.limit.is_some() {
            return Err("give either `limit` or `binding`".into());
        }
        let got = headroom.binding.map_or("none", |b| limit_kind_name(b.kind));
        check(
            &mut diffs,
            &format!("{label}: binding"),
            Some(binding.as_str()),
            got,
        );
    }
    if let Some(kind) = &expect.limit {
        if headroom.binding.is_none() {
            diffs.push(format!("{label}: the level has no {kind} limit"));
        }
    }
    let (spent, reserved) = match headroom.binding {
        Some(used) => (used.spent, used.reserved),
        None => {
            let subject = subject_of(&expect.level)?;
            (
                Money::ZERO,
                engine.ledger.level(subject.kind, &subject.id).reserved,
            )
        }
    };
    check_money(&mut diffs, &format!("{label}: spent"), &expect.spent, spent)?;
    check_money(
        &mut diffs,
        &format!("{label}: reserved"),
        &expect.reserved,
        reserved,
    )?;
    if let Some(available) = &expect.available {
        let want = if available == "unlimited" {
            None
        } else {
            Some(money(available)?)
        };
        if want != headroom.available {
            diffs.push(format!(
                "{label}: available: expected {available}, got {}",
                headroom
                    .available
                    .map_or("unlimited".to_string(), |a| a.to_string())
            ));
        }
    }
    if let Some(active) = expect.active_calls {
        let subject = subject_of(&expect.level)?;
        check(
            &mut diffs,
            &format!("{label}: active_calls"),
            Some(active),
            engine.ledger.level(subject.kind, &subject.id).active_calls,
        );
    }
    Ok(diffs)
}

/// What a step does, for failure messages.
fn describe(step: &Step) -> String {
    let action = if let Some(a) = &step.authorize {
        format!(
            "authorize {} from {} ({}) to {}",
            a.call, a.extension, a.ip, a.number
        )
    } else if let Some(a) = &step.answer {
        format!("answer {}", a.call)
    } else if let Some(e) = &step.extend {
        format!("extend {} by {:?}", e.call, e.seconds)
    } else if let Some(e) = &step.end {
        format!("end {} after {:?} s", e.call, e.duration_s)
    } else if step.expire == Some(true) {
        "expire".to_string()
    } else if let Some(t) = &step.suspend {
        format!("suspend {t:?}")
    } else if let Some(t) = &step.resume {
        format!("resume {t:?}")
    } else {
        "check".to_string()
    };
    match &step.note {
        Some(note) => format!("{action} [{note}]"),
        None => action,
    }
}

fn set_suspended(engine: &mut Engine, target: &Target, value: bool) -> Result<(), String> {
    match (&target.extension, &target.account) {
        (Some(id), None) => {
            engine
                .policy
                .extensions
                .get_mut(id)
                .ok_or_else(|| format!("no extension {id}"))?
                .suspended = value;
        }
        (None, Some(id)) => {
            engine
                .policy
                .accounts
                .get_mut(id)
                .ok_or_else(|| format!("no account {id}"))?
                .suspended = value;
        }
        _ => return Err("give exactly one of extension or account".into()),
    }
    Ok(())
}

/// Runs one step; returns the differences from what was expected (empty: as expected), or
/// an error when the step itself is malformed.
fn run_step(engine: &mut Engine, step: &Step, now: DateTime<Utc>) -> Result<Vec<String>, String> {
    let empty = Expect::default();
    let expect = step.expect.as_ref().unwrap_or(&empty);
    let mut diffs = Vec::new();
    let actions = [
        step.authorize.is_some(),
        step.answer.is_some(),
        step.extend.is_some(),
        step.end.is_some(),
        step.expire.is_some(),
        step.suspend.is_some(),
        step.resume.is_some(),
    ]
    .into_iter()
    .filter(|a| *a)
    .count();
    if actions > 1 {
        return Err("a step does at most one thing".into());
    }
    // Every outcome must be stated, so that every step can fail.
    let required = if step.authorize.is_some() {
        Some((
            expect.decision.is_some(),
            "an authorize step needs expect.decision",
        ))
    } else if step.extend.is_some() {
        Some((
            expect.added_s.is_some(),
            "an extend step needs expect.added_s",
        ))
    } else if step.end.is_some() {
        Some((expect.charged.is_some(), "an end step needs expect.charged"))
    } else if step.expire.is_some() {
        Some((
            expect.expired.is_some(),
            "an expire step needs expect.expired (a list, maybe empty)",
        ))
    } else {
        None
    };
    if let Some((false, what)) = required {
        if expect.error.is_none() {
            return Err(what.into());
        }
    }
    // A request error, when one is expected, is the whole outcome.
    let error = |diffs: &mut Vec<String>, got: Result<(), String>| match (&expect.error, got) {
        (Some(want), Err(got)) if !got.contains(want.as_str()) => {
            diffs.push(format!("error {got:?} does not contain {want:?}"))
        }
        (Some(_), Err(_)) => {}
        (Some(want), Ok(())) => diffs.push(format!(
            "expected an error containing {want:?}, the request succeeded"
        )),
        (None, Err(got)) => diffs.push(format!("unexpected error: {got}")),
        (None, Ok(())) => {}
    };

    if let Some(a) = &step.authorize {
        let ip: IpAddr = a.ip.parse().map_err(|_| format!("bad ip {:?}", a.ip))?;
        let request = AuthorizeRequest {
            call_id: &a.call,
            extension: &a.extension,
            source_ip: ip,
            number: &a.number,
            pbx_ref: None,
        };
        match engine.authorize(&request, now) {
            Err(e) => error(&mut diffs, Err(e.to_string())),
            Ok((decision, _)) => {
                error(&mut diffs, Ok(()));
                match decision {
                    Decision::Allow(grant) => {
                        check(&mut diffs, "decision", expect.decision.as_deref(), "allow");
                        if expect.decision.as_deref() == Some("allow")
                            && expect.max_duration_s.is_none()
                        {
                            return Err("an allowed call needs expect.max_duration_s".into());
                        }
                        check(
                            &mut diffs,
                            "max_duration_s",
                            expect.max_duration_s,
                            grant.max_duration_s,
                        );
                        check_money(&mut diffs, "reserved", &expect.reserved, grant.reserved)?;
                        check(
                            &mut diffs,
                            "class",
                            expect.class.as_deref(),
                            grant.destination.class.as_str(),
                        );
                        check(
                            &mut diffs,
                            "e164",
                            expect.e164.as_deref(),
                            grant.destination.e164.as_deref().unwrap_or("none"),
                        );
                        check(
                            &mut diffs,
                            "rate",
                            expect.rate.as_deref(),
                            grant.rate.as_ref().map_or("none", |r| r.prefix.as_str()),
                        );
                        if expect.code.is_some()
                            || expect.message.is_some()
                            || expect.message_contains.is_some()
                        {
                            diffs.push(format!(
                                "allowed ({} s) where a denial was described",
                                grant.max_duration_s
                            ));
                        }
                    }
                    Decision::Deny(deny) => {
                        check(&mut diffs, "decision", expect.decision.as_deref(), "deny");
                        if expect.decision.as_deref() == Some("deny") && expect.code.is_none() {
                            return Err("a denied call needs expect.code".into());
                        }
                        check(
                            &mut diffs,
                            "code",
                            expect.code.as_deref(),
                            deny.code.as_str(),
                        );
                        check_message(&mut diffs, expect, &deny.rule, &deny.message);
                        if !diffs.is_empty() {
                            diffs.push(format!(
                                "the denial was {}: {} ({})",
                                deny.code.as_str(),
                                deny.message,
                                deny.rule
                            ));
                        }
                    }
                }
            }
        }
    } else if let Some(a) = &step.answer {
        error(
            &mut diffs,
            engine
                .answer(&a.call, now)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    } else if let Some(e) = &step.extend {
        match engine.extend(&e.call, e.seconds, now) {
            Err(err) => error(&mut diffs, Err(err.to_string())),
            Ok((outcome, _)) => {
                error(&mut diffs, Ok(()));
                check(&mut diffs, "added_s", expect.added_s, outcome.added_s);
                check(&mut diffs, "granted_s", expect.granted_s, outcome.granted_s);
                check_money(&mut diffs, "reserved", &expect.reserved, outcome.reserved)?;
                check(
                    &mut diffs,
                    "limited_by",
                    expect.limited_by.as_deref(),
                    outcome
                        .limited_by
                        .as_ref()
                        .map_or("none", |d| d.code.as_str()),
                );
                match &outcome.limited_by {
                    Some(deny) => check_message(&mut diffs, expect, &deny.rule, &deny.message),
                    None if expect.rule.is_some()
                        || expect.message.is_some()
                        || expect.message_contains.is_some() =>
                    {
                        diffs.push("no limit applied where one was described".into())
                    }
                    None => {}
                }
                if !diffs.is_empty() {
                    diffs.push(format!("the outcome was {outcome:?}"));
                }
            }
        }
    } else if let Some(e) = &step.end {
        match engine.end(&e.call, e.duration_s, now) {
            Err(err) => error(&mut diffs, Err(err.to_string())),
            Ok((s, _)) => {
                error(&mut diffs, Ok(()));
                check_money(&mut diffs, "charged", &expect.charged, s.charged)?;
                check_money(&mut diffs, "rated", &expect.rated, s.rated)?;
                check(&mut diffs, "duration_s", expect.duration_s, s.duration_s);
                check(&mut diffs, "billed_s", expect.billed_s, s.billed_s);
                check(&mut diffs, "overrun_s", expect.overrun_s, s.overrun_s);
            }
        }
    } else if step.expire == Some(true) {
        let events = engine.expire_due(now);
        let mut got: Vec<(String, Money)> = Vec::new();
        for event in events {
            match event {
                LedgerEvent::Settled(s) if s.reason == SettleReason::Expired => {
                    got.push((s.call.call_id.clone(), s.charged))
                }
                other => diffs.push(format!("expiry gave {other:?}")),
            }
        }
        got.sort();
        let mut want = Vec::new();
        for e in expect.expired.iter().flatten() {
            want.push((e.call.clone(), money(&e.charged)?));
        }
        want.sort();
        if want != got {
            let show = |v: &[(String, Money)]| {
                v.iter()
                    .map(|(c, m)| format!("{c}: {m}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            diffs.push(format!(
                "expired: expected [{}], got [{}]",
                show(&want),
                show(&got)
            ));
        }
    } else if let Some(t) = &step.suspend {
        set_suspended(engine, t, true)?;
    } else if let Some(t) = &step.resume {
        set_suspended(engine, t, false)?;
    }

    for credit in &step.credit {
        diffs.extend(check_credit(engine, credit, now)?);
    }
    Ok(diffs)
}

/// Loads and runs one scenario; returns every failure, each naming the step.
fn run_scenario(text: &str, file: &Path) -> Vec<String> {
    let scenario: Scenario = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => return vec![format!("cannot read the scenario: {e}")],
    };
    if scenario.description.trim().is_empty() {
        return vec!["the scenario needs a description".into()];
    }
    let dir = file.parent().unwrap_or(Path::new(""));
    let (policy_text, policy_path) = match (&scenario.policy, &scenario.policy_file) {
        (Some(text), None) => (text.clone(), file.to_path_buf()),
        (None, Some(path)) => {
            let path = dir.join(path);
            match std::fs::read_to_string(&path) {
                Ok(text) => (text, path),
                Err(e) => return vec![format!("cannot read {}: {e}", path.display())],
            }
        }
        _ => return vec!["give exactly one of policy or policy_file".into()],
    };
    let base = policy_path.parent().unwrap_or(Path::new("")).to_path_buf();
    let loaded = match tollgate_config::load_str(&policy_text, &policy_path, &base) {
        Ok(loaded) => loaded,
        Err(e) => return vec![format!("the policy is invalid:\n{e}")],
    };
    if scenario.steps.is_empty() {
        return vec!["the scenario has no steps".into()];
    }
    let mut engine = Engine::new(loaded.policy);
    let mut now: Option<DateTime<Utc>> = None;
    let mut failures = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let name = format!("step {} ({})", i + 1, describe(step));
        let when = match (&step.at, &step.after, now) {
            (Some(at), None, _) => DateTime::parse_from_rfc3339(at)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("bad time {at:?}: {e}")),
            (None, Some(after), Some(prev)) => {
                parse_duration(after).map(|s| prev + Duration::seconds(s as i64))
            }
            (None, None, Some(prev)) => Ok(prev),
            (Some(_), Some(_), _) => Err("give at or after, not both".into()),
            (None, _, None) => Err("the first step needs `at`".into()),
        };
        let when = match when {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                break;
            }
        };
        if now.is_some_and(|prev| when < prev) {
            failures.push(format!("{name}: time goes backwards to {when}"));
            break;
        }
        now = Some(when);
        match run_step(&mut engine, step, when) {
            Ok(diffs) => {
                failures.extend(diffs.into_iter().map(|d| format!("{name} at {when}: {d}")))
            }
            Err(e) => {
                failures.push(format!("{name}: malformed step: {e}"));
                break;
            }
        }
    }
    failures
}

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios")
}

/// Runs every scenario file (or those whose name contains `$SCENARIO`).
#[test]
fn scenarios() {
    let filter = std::env::var("SCENARIO").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| {
            filter
                .as_ref()
                .is_none_or(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    files.sort();
    if filter.is_none() {
        assert!(
            files.len() >= 15,
            "only {} scenario files in {}",
            files.len(),
            scenario_dir().display()
        );
    }
    let mut report = String::new();
    let mut failed = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(scenario_dir()).map_or_else(
            |_| file.display().to_string(),
            |p| format!("tests/scenarios/{}", p.display()),
        );
        let failures = run_scenario(&text, file);
        if !failures.is_empty() {
            failed += 1;
            for f in failures {
                writeln!(report, "{shown}: {f}").unwrap();
            }
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} scenarios failed:\n{report}",
        files.len()
    );
}

/// The runner itself must be able to fail: a wrong figure, a wrong code and a missing
/// expectation are each reported with the step that has them.
#[test]
fn the_runner_reports_wrong_expectations() {
    let scenario = r#"
description = "runner self-check"
policy = """
[plans.std]
currency = "EUR"
rates = [ { prefix = "+33", price_per_minute = "0.01", increments = "60/60" } ]
[accounts.acme]
country = "FR"
time_zone = "Europe/Paris"
plan = "std"
limits = { daily = "10.00", monthly = "100.00" }
[extensions.1001]
account = "acme"
allowed_cidrs = ["192.0.2.0/24"]
limits = { daily = "1.00", monthly = "5.00" }
"""

[[step]]
at = "2026-11-26T10:00:00+01:00"
note = "wrong grant"
authorize = { call = "c1", extension = "1001", ip = "192.0.2.10", number = "0142685300" }
expect = { decision = "allow", max_duration_s = 1800 }

[[step]]
note = "wrong code"
authorize = { call = "c2", extension = "1001", ip = "198.51.100.1", number = "0142685300" }
expect = { decision = "deny", code = "insufficient_credit" }

[[step]]
after = "1m"
end = { call = "c1", duration_s = 61 }
expect = { charged = "0.01" }
credit = [ { level = "extension 1001", limit = "daily", spent = "0.02", reserved = "0.00", available = "0.99" } ]

[[step]]
end = { call = "c1" }
"#;
    let failures = run_scenario(scenario, Path::new("self.toml"));
    let all = failures.join("\n");
    // 1.00 at 0.01 per minute is 100 minutes, capped at the default hour.
    assert!(all.contains("step 1 (authorize c1 from 1001 (192.0.2.10) to 0142685300 [wrong grant]) at 2026-11-26 09:00:00 UTC: max_duration_s: expected 1800, got 3600"), "{all}");
    assert!(
        all.contains("step 2 (authorize c2")
            && all.contains("code: expected \"insufficient_credit\", got \"ip_not_allowed\""),
        "{all}"
    );
    // 61 s billed as 2 minutes.
    assert!(all.contains("step 3 (end c1 after Some(61) s) at 2026-11-26 09:01:00 UTC: charged: expected 0.01, got 0.02"), "{all}");
    assert!(all.contains("available: expected 0.99, got 0.98"), "{all}");
    assert!(
        all.contains(
            "step 4 (end c1 after None s): malformed step: an end step needs expect.charged"
        ),
        "{all}"
    );
    assert_eq!(failures.len(), 6, "{all}");
}

//! The `[monitor]` section: threshold rules and learned baselines, checked and turned into
//! the core's [`MonitorSettings`]. Every problem names its key
//! (`monitor.rules.NAME.warning`), like the rest of the policy.

use std::collections::HashMap;

use tollgate_core::money::Money;
use tollgate_core::monitor::{
    Action, BaselineRule, Levels, Metric, MonitorSettings, Profile, Reaction, Scope, ThresholdRule,
    MAX_RULES,
};
use tollgate_core::schedule::Schedule;

use crate::raw::{RawAmount, RawMonitor, RawNumber, RawProfile};
use crate::validate::{parse_amount, parse_duration, Problem};

fn key(base: &[&str], rest: &[&str]) -> Vec<String> {
    base.iter().chain(rest).map(|s| s.to_string()).collect()
}

fn problem(base: &[&str], rest: &[&str], message: impl Into<String>) -> Problem {
    Problem {
        key: key(base, rest),
        message: message.into(),
        file: None,
    }
}

/// A level as written, in the metric's unit, to the core's value (seconds, micros, %).
fn level_value(metric: Metric, raw: &RawAmount) -> Result<u64, String> {
    match metric {
        Metric::Spend => {
            let amount = parse_amount(raw)?;
            if amount <= Money::ZERO {
                return Err("a spend level must be above zero".into());
            }
            Ok(amount.micros() as u64)
        }
        _ => {
            let number = match raw {
                RawAmount::Integer(i) if *i > 0 => *i as u64,
                RawAmount::Text(t)
                    if metric == Metric::ShortCallRatio && t.trim().ends_with('%') =>
                {
                    t.trim()
                        .trim_end_matches('%')
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| format!("{t:?} is not a percentage such as \"60%\""))?
                }
                _ => {
                    return Err(format!(
                        "a {} level is a whole number above zero{}",
                        metric,
                        match metric {
                            Metric::Minutes => " of minutes",
                            Metric::ShortCallRatio => " (percent)",
                            _ => "",
                        }
                    ))
                }
            };
            match metric {
                Metric::Minutes => Ok(number.saturating_mul(60)),
                Metric::ShortCallRatio if number > 100 => {
                    Err("a ratio level is a percentage, at most 100".into())
                }
                _ => Ok(number),
            }
        }
    }
}

fn levels(
    metric: Metric,
    warning: Option<&RawAmount>,
    critical: Option<&RawAmount>,
    base: &[&str],
    problems: &mut Vec<Problem>,
) -> Levels {
    let mut parse = |raw: Option<&RawAmount>, name: &str| {
        raw.and_then(|r| match level_value(metric, r) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(problem(base, &[name], e));
                None
            }
        })
    };
    let out = Levels {
        warning: parse(warning, "warning"),
        critical: parse(critical, "critical"),
    };
    if warning.is_none() && critical.is_none() {
        problems.push(problem(
            base,
            &[],
            "needs a warning level, a critical level, or both",
        ));
    }
    if let (Some(w), Some(c)) = (out.warning, out.critical) {
        if w > c {
            problems.push(problem(
                base,
                &["warning"],
                "the warning level is above the critical level",
            ));
        }
    }
    out
}

fn profile(raw: Option<&RawProfile>, base: &[&str], problems: &mut Vec<Problem>) -> Profile {
    let Some(raw) = raw else {
        return Profile::default();
    };
    let mut out = Profile::default();
    for class in &raw.classes {
        match class.parse() {
            Ok(c) => out.classes.insert(c),
            Err(e) => problems.push(problem(base, &["destinations", "classes"], e)),
        }
    }
    for country in &raw.countries {
        let upper = country.trim().to_ascii_uppercase();
        if upper == "001" || (upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase())) {
            out.countries.push(upper);
        } else {
            problems.push(problem(
                base,
                &["destinations", "countries"],
                format!("{country:?} is not an ISO 3166 country code (e.g. \"CU\") or \"001\""),
            ));
        }
    }
    for prefix in &raw.prefixes {
        let digits = prefix.trim().trim_start_matches('+');
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(problem(
                base,
                &["destinations", "prefixes"],
                format!("{prefix:?} is not an E.164 prefix (e.g. \"+88216\")"),
            ));
        } else {
            out.prefixes.push(digits.to_string());
        }
    }
    out
}

fn actions(
    raw: Option<&Vec<String>>,
    base: &[&str],
    name: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Action> {
    let Some(list) = raw else {
        return vec![Action::Alert];
    };
    let mut out = vec![Action::Alert];
    for text in list {
        match text.parse::<Action>() {
            Ok(a) if !out.contains(&a) => out.push(a),
            Ok(_) => {}
            Err(e) => problems.push(problem(base, &[name], e)),
        }
    }
    out
}

fn reaction(
    shadow: Option<bool>,
    on_warning: Option<&Vec<String>>,
    on_critical: Option<&Vec<String>>,
    action_for: Option<&crate::raw::RawDuration>,
    base: &[&str],
    problems: &mut Vec<Problem>,
) -> Reaction {
    let action_for_s = action_for.and_then(|d| match parse_duration(d) {
        Ok(0) => {
            problems.push(problem(
                base,
                &["action_for"],
                "must be above zero (omit it for \"until lifted\")",
            ));
            None
        }
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(problem(base, &["action_for"], e));
            None
        }
    });
    Reaction {
        on_warning: actions(on_warning, base, "on_warning", problems),
        on_critical: actions(on_critical, base, "on_critical", problems),
        action_for_s,
        shadow: shadow.unwrap_or(false),
    }
}

fn scope(
    raw: Option<&String>,
    metric: Metric,
    base: &[&str],
    problems: &mut Vec<Problem>,
) -> Scope {
    let default = if metric.is_call_metric() {
        Scope::Extension
    } else {
        Scope::Account
    };
    let scope = match raw.map(|s| s.parse::<Scope>()) {
        None => default,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            problems.push(problem(base, &["scope"], e));
            default
        }
    };
    if metric == Metric::ExtensionsCreated && scope == Scope::Extension {
        problems.push(problem(
            base,
            &["scope"],
            "extensions_created counts per account or globally",
        ));
    }
    scope
}

fn positive(
    raw: Option<RawNumber>,
    default: f64,
    min: f64,
    max: f64,
    base: &[&str],
    name: &str,
    problems: &mut Vec<Problem>,
) -> f64 {
    let value = raw.map(RawNumber::value).unwrap_or(default);
    if !(min..=max).contains(&value) || value.is_nan() {
        problems.push(problem(
            base,
            &[name],
            format!("must be between {min} and {max}"),
        ));
        return default;
    }
    value
}

/// Checks `[monitor]`; problems go to `problems`, questionable choices to `warnings`.
pub fn monitor_from_raw(
    raw: &RawMonitor,
    schedules: &HashMap<String, Schedule>,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> MonitorSettings {
    let mut settings = MonitorSettings::default();
    if let Some(d) = &raw.short_call {
        match parse_duration(d) {
            Ok(s) => settings.short_call_s = s,
            Err(e) => problems.push(problem(&["monitor"], &["short_call"], e)),
        }
    }
    for (name, rule) in &raw.rules {
        let base = ["monitor", "rules", name.as_str()];
        let metric = match rule.metric.parse::<Metric>() {
            Ok(m) => m,
            Err(e) => {
                problems.push(problem(&base, &["metric"], e));
                continue;
            }
        };
        let scope = scope(rule.scope.as_ref(), metric, &base, problems);
        let window_s = match (&rule.window, metric) {
            (_, Metric::Concurrent) => 0,
            (None, _) => {
                problems.push(problem(
                    &base,
                    &["window"],
                    "a window is needed (e.g. \"10m\", \"1h\", \"1d\")",
                ));
                3600
            }
            (Some(w), _) => match parse_duration(w) {
                Ok(s) if (12..=7 * 86_400).contains(&s) => s,
                Ok(_) => {
                    problems.push(problem(&base, &["window"], "must be between 12s and 7d"));
                    3600
                }
                Err(e) => {
                    problems.push(problem(&base, &["window"], e));
                    3600
                }
            },
        };
        if !metric.is_call_metric() && rule.destinations.is_some() {
            problems.push(problem(
                &base,
                &["destinations"],
                format!("{metric} has no destination to filter on"),
            ));
        }
        let on_hours = levels(
            metric,
            rule.warning.as_ref(),
            rule.critical.as_ref(),
            &base,
            problems,
        );
        let off_hours = rule.off_hours.as_ref().map(|o| {
            let off_base = ["monitor", "rules", name.as_str(), "off_hours"];
            levels(
                metric,
                o.warning.as_ref(),
                o.critical.as_ref(),
                &off_base,
                problems,
            )
        });
        if let Some(schedule) = &rule.schedule {
            if !schedules.contains_key(schedule) {
                problems.push(problem(
                    &base,
                    &["schedule"],
                    format!("schedule {schedule:?} is not defined under [schedules]"),
                ));
            }
        }
        let reaction = reaction(
            rule.shadow,
            rule.on_warning.as_ref(),
            rule.on_critical.as_ref(),
            rule.action_for.as_ref(),
            &base,
            problems,
        );
        if !metric.is_call_metric()
            && reaction
                .on_warning
                .iter()
                .chain(&reaction.on_critical)
                .any(|a| *a == Action::BanIp)
        {
            warnings.push(problem(
                &base,
                &[],
                "ban_ip does nothing for a directory metric: there is no source address",
            ));
        }
        if metric != Metric::ShortCallRatio && rule.min_calls.is_some() {
            problems.push(problem(
                &base,
                &["min_calls"],
                "only short_call_ratio rules take min_calls",
            ));
        }
        settings.rules.push(ThresholdRule {
            name: name.clone(),
            metric,
            scope,
            window_s,
            profile: profile(rule.destinations.as_ref(), &base, problems),
            levels: on_hours,
            off_hours,
            schedule: rule.schedule.clone(),
            min_calls: rule.min_calls.unwrap_or(10),
            reaction,
        });
    }
    for (name, rule) in &raw.baselines {
        let base = ["monitor", "baselines", name.as_str()];
        let metric = match rule.metric.parse::<Metric>() {
            Ok(m @ (Metric::Attempts | Metric::Spend)) => m,
            Ok(other) => {
                problems.push(problem(
                    &base,
                    &["metric"],
                    format!("a baseline learns attempts or spend, not {other}"),
                ));
                continue;
            }
            Err(e) => {
                problems.push(problem(&base, &["metric"], e));
                continue;
            }
        };
        let scope = scope(rule.scope.as_ref(), metric, &base, problems);
        if scope == Scope::Global {
            problems.push(problem(
                &base,
                &["scope"],
                "a baseline learns per extension or per account",
            ));
        }
        let floor = match &rule.floor {
            None => match metric {
                Metric::Spend => 1_000_000,
                _ => 10,
            },
            Some(raw) => level_value(metric, raw).unwrap_or_else(|e| {
                problems.push(problem(&base, &["floor"], e));
                10
            }),
        };
        let warmup_hours = match &rule.warmup {
            None => 168,
            Some(d) => match parse_duration(d) {
                Ok(s) => (s / 3600).min(u64::from(u32::MAX)) as u32,
                Err(e) => {
                    problems.push(problem(&base, &["warmup"], e));
                    168
                }
            },
        };
        settings.baselines.push(BaselineRule {
            name: name.clone(),
            metric,
            scope,
            profile: profile(rule.destinations.as_ref(), &base, problems),
            factor: positive(rule.factor, 3.0, 1.0, 1000.0, &base, "factor", problems),
            deviations: positive(
                rule.deviations,
                4.0,
                0.0,
                100.0,
                &base,
                "deviations",
                problems,
            ),
            floor,
            critical_factor: positive(
                rule.critical_factor,
                2.0,
                1.0,
                1000.0,
                &base,
                "critical_factor",
                problems,
            ),
            learning_rate: positive(
                rule.learning_rate,
                0.2,
                0.001,
                1.0,
                &base,
                "learning_rate",
                problems,
            ),
            warmup_hours,
            reaction: reaction(
                rule.shadow,
                rule.on_warning.as_ref(),
                rule.on_critical.as_ref(),
                rule.action_for.as_ref(),
                &base,
                problems,
            ),
        });
    }
    if settings.rules.len() + settings.baselines.len() > MAX_RULES {
        problems.push(problem(
            &["monitor"],
            &[],
            format!("at most {MAX_RULES} rules and baselines together"),
        ));
        settings.rules.truncate(MAX_RULES);
        settings
            .baselines
            .truncate(MAX_RULES - settings.rules.len());
    }
    settings
}

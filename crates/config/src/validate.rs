//! Raw policy to typed policy: every field checked, every problem collected with the key
//! path it belongs to (the caller turns paths into file lines).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use chrono_tz::Tz;
use ipnet::IpNet;
use tollgate_core::money::{Currency, Money};
use tollgate_core::number::{ClassSet, DestinationClass, DialPlan, HighRiskList};
use tollgate_core::policy::{
    Account, CreditSettings, DestinationRules, Extension, ExtensionDefaults, Limit, Limits, Origin,
    Policy,
};
use tollgate_core::rating::{ChargingPlan, Increments, Rate};
use tollgate_core::schedule::{parse_span, OpenSpan, Schedule};

use crate::raw::{
    RawAccount, RawAmount, RawDuration, RawExtension, RawLimits, RawPlan, RawPolicy, RawRate,
    RawRules, RawSchedule,
};

/// A problem with one key of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. ["accounts", "acme", "limits", "daily"].
    pub key: Vec<String>,
    pub message: String,
    /// Set when the problem is in another file (a rates CSV) at a known line.
    pub file: Option<(PathBuf, usize)>,
}

impl Problem {
    pub fn new(key: &[&str], message: impl Into<String>) -> Problem {
        Problem {
            key: key.iter().map(|k| k.to_string()).collect(),
            message: message.into(),
            file: None,
        }
    }

    fn at(base: &[String], rest: &[&str], message: impl Into<String>) -> Problem {
        let mut key = base.to_vec();
        key.extend(rest.iter().map(|k| k.to_string()));
        Problem {
            key,
            message: message.into(),
            file: None,
        }
    }

    pub fn key_text(&self) -> String {
        self.key.join(".")
    }
}

/// How durable each acknowledged write is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Survives a crash of the process (kill -9): SQLite WAL, synchronous=NORMAL.
    Normal,
    /// Also survives power loss: synchronous=FULL.
    Full,
}

/// What the HTTP service listens on and stores into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub database: PathBuf,
    pub durability: Durability,
    pub max_body_bytes: usize,
}

/// API token scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Call control: authorize, answer, extend, end (the PBX).
    Calls,
    /// Read-only access to everything.
    Read,
    /// Everything, including directory changes.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Calls => "calls",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// Where a token's secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Sha256([u8; 32]),
    /// Read at start; created with a random token (mode 0600) when missing.
    File(PathBuf),
    Env(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub source: TokenSource,
}

pub(crate) fn parse_amount(raw: &RawAmount) -> Result<Money, String> {
    match raw {
        RawAmount::Integer(i) => Ok(Money::from_micros(i.saturating_mul(1_000_000))),
        RawAmount::Text(t) => t.parse::<Money>().map_err(|e| e.to_string()),
        RawAmount::Float(f) => Err(format!(
            "write money as a quoted decimal, e.g. \"{f}\": floats are not exact"
        )),
    }
}

fn parse_limit(raw: &RawAmount) -> Result<Limit, String> {
    if let RawAmount::Text(t) = raw {
        if t.trim() == "unlimited" {
            return Ok(Limit::Unlimited);
        }
    }
    let amount = parse_amount(raw)?;
    if amount < Money::ZERO {
        return Err("a limit cannot be negative".into());
    }
    Ok(Limit::Amount(amount))
}

/// Parses "90", "90s", "2m", "1h30m", "1d", "1w" into seconds.
pub fn parse_duration(raw: &RawDuration) -> Result<u64, String> {
    let text = match raw {
        RawDuration::Seconds(s) if *s >= 0 => return Ok(*s as u64),
        RawDuration::Seconds(s) => return Err(format!("duration {s} is negative")),
        RawDuration::Text(t) => t.trim(),
    };
    let bad = || {
        format!(
            "{text:?} is not a duration (expected e.g. \"90s\", \"2m\", \"1h30m\", \"1d\", \"1w\")"
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let value: u64 = number.parse().map_err(|_| bad())?;
        total = total
            .checked_add(value.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        total = total
            .checked_add(number.parse::<u64>().map_err(|_| bad())?)
            .ok_or_else(bad)?;
    }
    Ok(total)
}

fn parse_prefix(text: &str) -> Result<String, String> {
    let digits = text.trim().trim_start_matches('+');
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not an E.164 prefix (expected \"+\" and up to 15 digits, e.g. \"+4420\")"
        ));
    }
    Ok(digits.to_string())
}

fn parse_classes(list: &[String]) -> Result<ClassSet, String> {
    list.iter()
        .map(|c| c.parse::<DestinationClass>())
        .collect::<Result<ClassSet, String>>()
}

fn parse_country(text: &str) -> Result<String, String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper == "001" {
        return Ok(upper);
    }
    DialPlan::for_region(&upper).map(|_| upper)
}

fn parse_time_zone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>().map_err(|_| {
        format!("unknown time zone {text:?} (expected an IANA name such as \"Europe/Paris\")")
    })
}

fn rules_from_raw(
    raw: &RawRules,
    base: &[String],
    problems: &mut Vec<Problem>,
) -> DestinationRules {
    let mut rules = DestinationRules::default();
    if let Some(classes) = &raw.allowed_classes {
        match parse_classes(classes) {
            Ok(set) => rules.allowed_classes = Some(set),
            Err(e) => problems.push(Problem::at(base, &["allowed_classes"], e)),
        }
    }
    let mut countries = |list: &[String], field: &str| -> Vec<String> {
        list.iter()
            .filter_map(|c| match parse_country(c) {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.push(Problem::at(base, &[field], e));
                    None
                }
            })
            .collect()
    };
    rules.allow_countries = countries(&raw.allow_countries, "allow_countries");
    rules.deny_countries = countries(&raw.deny_countries, "deny_countries");
    let mut prefixes = |list: &[String], field: &str| -> Vec<String> {
        list.iter()
            .filter_map(|p| match parse_prefix(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.push(Problem::at(base, &[field], e));
                    None
                }
            })
            .collect()
    };
    rules.allow_prefixes = prefixes(&raw.allow_prefixes, "allow_prefixes");
    rules.deny_prefixes = prefixes(&raw.deny_prefixes, "deny_prefixes");
    rules
}

/// Limits with per-field fallback to `defaults`; daily and monthly are mandatory.
fn limits_from_raw(
    own: Option<&RawLimits>,
    defaults: Option<&Limits>,
    base: &[String],
    subject: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Limits {
    let mut limits = Limits::UNLIMITED;
    let mut field = |raw: Option<&RawAmount>, fallback: Option<Limit>, name: &str| -> Limit {
        match (raw, fallback) {
            (Some(raw), _) => match parse_limit(raw) {
                Ok(limit) => {
                    if limit == Limit::Unlimited {
                        warnings.push(Problem::at(
                            base,
                            &["limits", name],
                            format!("{subject} has no {name} money limit: set one even where nobody is billed"),
                        ));
                    }
                    limit
                }
                Err(e) => {
                    problems.push(Problem::at(base, &["limits", name], e));
                    Limit::Unlimited
                }
            },
            (None, Some(fallback)) => fallback,
            (None, None) => {
                problems.push(Problem::at(
                    base,
                    &["limits", name],
                    format!("{subject} needs a {name} money limit: set an amount such as \"20.00\", or \"unlimited\""),
                ));
                Limit::Unlimited
            }
        }
    };
    limits.daily = field(
        own.and_then(|l| l.daily.as_ref()),
        defaults.map(|d| d.daily),
        "daily",
    );
    limits.monthly = field(
        own.and_then(|l| l.monthly.as_ref()),
        defaults.map(|d| d.monthly),
        "monthly",
    );
    limits.balance = match own.and_then(|l| l.balance.as_ref()) {
        Some(raw) => match parse_amount(raw) {
            Ok(m) if m >= Money::ZERO => Some(m),
            Ok(_) => {
                problems.push(Problem::at(
                    base,
                    &["limits", "balance"],
                    "a balance cannot be negative",
                ));
                None
            }
            Err(e) => {
                problems.push(Problem::at(base, &["limits", "balance"], e));
                None
            }
        },
        None => defaults.and_then(|d| d.balance),
    };
    limits
}

fn duration_field(
    raw: Option<&RawDuration>,
    default: u64,
    base: &[String],
    name: &str,
    problems: &mut Vec<Problem>,
) -> u64 {
    match raw.map(parse_duration) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            problems.push(Problem::at(base, &[name], e));
            default
        }
    }
}

/// Builds an account from its raw form, checked against `policy` (plans, schedules,
/// parent). Problems carry keys under `base`.
pub fn account_from_raw(
    id: &str,
    raw: &RawAccount,
    policy: &Policy,
    origin: Origin,
    base: &[String],
    warnings: &mut Vec<Problem>,
) -> Result<Account, Vec<Problem>> {
    let mut problems = Vec::new();
    if !valid_id(id) {
        problems.push(Problem::at(
            base,
            &[],
            format!("account id {id:?} must be 1 to 64 letters, digits, '.', '_', '-' or '@'"),
        ));
    }
    let country = match &raw.country {
        Some(c) => c.trim().to_ascii_uppercase(),
        None => {
            problems.push(Problem::at(
                base,
                &["country"],
                "country is required (ISO 3166 code such as \"FR\"): it sets the dial plan",
            ));
            "US".to_string()
        }
    };
    let mut dial_plan = match DialPlan::for_region(&country) {
        Ok(plan) => plan,
        Err(e) => {
            problems.push(Problem::at(base, &["country"], e));
            DialPlan::for_region("US").unwrap_or(DialPlan {
                country: "US".into(),
                country_code: 1,
                international_prefix: "011".into(),
                national_prefix: Some("1".into()),
                internal_min_digits: 2,
                internal_max_digits: 6,
            })
        }
    };
    if let Some(p) = &raw.international_prefix {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(Problem::at(
                base,
                &["international_prefix"],
                format!("{p:?} must be digits, e.g. \"00\""),
            ));
        } else {
            dial_plan.international_prefix = p.clone();
        }
    }
    if let Some(p) = &raw.national_prefix {
        if p.is_empty() {
            dial_plan.national_prefix = None;
        } else if !p.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(Problem::at(
                base,
                &["national_prefix"],
                format!("{p:?} must be digits, e.g. \"0\""),
            ));
        } else {
            dial_plan.national_prefix = Some(p.clone());
        }
    }
    if let Some(range) = &raw.internal_digits {
        match range.split_once('-').and_then(|(a, b)| {
            Some((
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ))
        }) {
            Some((min, max)) if min >= 1 && min <= max && max <= 15 => {
                dial_plan.internal_min_digits = min;
                dial_plan.internal_max_digits = max;
            }
            _ => problems.push(Problem::at(
                base,
                &["internal_digits"],
                format!("{range:?} must be \"MIN-MAX\" digits, e.g. \"3-4\""),
            )),
        }
    }
    let plan_currency = raw
        .plan
        .as_deref()
        .and_then(|p| policy.plans.get(p))
        .map(|p| p.currency);
    let parent_currency = raw
        .parent
        .as_deref()
        .and_then(|p| policy.accounts.get(p))
        .map(|p| p.currency);
    let currency = match &raw.currency {
        Some(c) => c.parse::<Currency>().unwrap_or_else(|e| {
            problems.push(Problem::at(base, &["currency"], e));
            Currency::EUR
        }),
        None => plan_currency.or(parent_currency).unwrap_or(Currency::EUR),
    };
    let time_zone = match &raw.time_zone {
        Some(tz) => parse_time_zone(tz).unwrap_or_else(|e| {
            problems.push(Problem::at(base, &["time_zone"], e));
            Tz::UTC
        }),
        None => Tz::UTC,
    };
    if let Some(plan) = &raw.plan {
        if !policy.plans.contains_key(plan) {
            problems.push(Problem::at(
                base,
                &["plan"],
                format!("charging plan {plan:?} is not defined under [plans]"),
            ));
        }
    }
    if let Some(schedule) = &raw.schedule {
        if !policy.schedules.contains_key(schedule) {
            problems.push(Problem::at(
                base,
                &["schedule"],
                format!("schedule {schedule:?} is not defined under [schedules]"),
            ));
        }
    }
    if let Some(parent) = &raw.parent {
        if !policy.accounts.contains_key(parent) {
            problems.push(Problem::at(
                base,
                &["parent"],
                format!("parent account {parent:?} is not defined (or forms a cycle)"),
            ));
        }
    }
    let subject = format!("account {id}");
    let limits = limits_from_raw(
        raw.limits.as_ref(),
        None,
        base,
        &subject,
        &mut problems,
        warnings,
    );
    let mut rules_base = base.to_vec();
    rules_base.push("rules".into());
    let rules = raw
        .rules
        .as_ref()
        .map(|r| rules_from_raw(r, &rules_base, &mut problems))
        .unwrap_or_default();
    let mut defaults = ExtensionDefaults::default();
    if let Some(raw_defaults) = &raw.extension_defaults {
        let mut defaults_base = base.to_vec();
        defaults_base.push("extension_defaults".into());
        if let Some(raw_limits) = &raw_defaults.limits {
            // Defaults may leave a field out: extensions then must set it themselves.
            let mut local = Vec::new();
            let mut parsed = Limits::UNLIMITED;
            let mut missing = false;
            for (name, field, slot) in [
                ("daily", &raw_limits.daily, &mut parsed.daily),
                ("monthly", &raw_limits.monthly, &mut parsed.monthly),
            ] {
                match field {
                    Some(raw) => match parse_limit(raw) {
                        Ok(l) => *slot = l,
                        Err(e) => local.push(Problem::at(&defaults_base, &["limits", name], e)),
                    },
                    None => missing = true,
                }
            }
            if let Some(raw) = &raw_limits.balance {
                match parse_amount(raw) {
                    Ok(m) => parsed.balance = Some(m),
                    Err(e) => local.push(Problem::at(&defaults_base, &["limits", "balance"], e)),
                }
            }
            if missing {
                local.push(Problem::at(
                    &defaults_base,
                    &["limits"],
                    "extension_defaults.limits needs both daily and monthly",
                ));
            }
            problems.extend(local);
            defaults.limits = Some(parsed);
        }
        defaults.max_call_duration_s = duration_field(
            raw_defaults.max_call_duration.as_ref(),
            3600,
            &defaults_base,
            "max_call_duration",
            &mut problems,
        )
        .min(u64::from(u32::MAX)) as u32;
        defaults.max_concurrent_calls = raw_defaults.max_concurrent_calls;
    }
    if problems.is_empty() {
        Ok(Account {
            id: id.to_string(),
            name: raw.name.clone().unwrap_or_else(|| id.to_string()),
            parent: raw.parent.clone(),
            currency,
            time_zone,
            dial_plan,
            plan: raw.plan.clone(),
            limits,
            rules,
            schedule: raw.schedule.clone(),
            suspended: false,
            shadow: raw.shadow.unwrap_or(false),
            extension_defaults: defaults,
            origin,
        })
    } else {
        Err(problems)
    }
}

/// Whether `id` is a valid account or extension id: 1 to 64 of letters, digits, `.` `_` `-` `@`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Builds an extension from its raw form, checked against `policy` (account, schedule).
pub fn extension_from_raw(
    id: &str,
    raw: &RawExtension,
    policy: &Policy,
    origin: Origin,
    base: &[String],
    warnings: &mut Vec<Problem>,
) -> Result<Extension, Vec<Problem>> {
    let mut problems = Vec::new();
    if !valid_id(id) {
        problems.push(Problem::at(
            base,
            &[],
            format!("extension id {id:?} must be 1 to 64 letters, digits, '.', '_', '-' or '@'"),
        ));
    }
    let account = policy.accounts.get(&raw.account);
    if account.is_none() {
        problems.push(Problem::at(
            base,
            &["account"],
            format!("account {:?} is not defined", raw.account),
        ));
    }
    let defaults = account
        .map(|a| a.extension_defaults.clone())
        .unwrap_or_default();
    let mut allowed_cidrs = Vec::new();
    for cidr in &raw.allowed_cidrs {
        let parsed = cidr
            .parse::<IpNet>()
            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => allowed_cidrs.push(net.trunc()),
            Err(_) => problems.push(Problem::at(base, &["allowed_cidrs"], format!("{cidr:?} is not an IP address or CIDR (e.g. \"192.0.2.0/24\", \"2001:db8::/32\")"))),
        }
    }
    if raw.allowed_cidrs.is_empty() {
        warnings.push(Problem::at(
            base,
            &["allowed_cidrs"],
            format!("extension {id} may call from any address: restrict it to its sites"),
        ));
    }
    let subject = format!("extension {id}");
    let limits = limits_from_raw(
        raw.limits.as_ref(),
        defaults.limits.as_ref(),
        base,
        &subject,
        &mut problems,
        warnings,
    );
    let mut rules_base = base.to_vec();
    rules_base.push("rules".into());
    let rules = raw
        .rules
        .as_ref()
        .map(|r| rules_from_raw(r, &rules_base, &mut problems))
        .unwrap_or_default();
    if let Some(schedule) = &raw.schedule {
        if !policy.schedules.contains_key(schedule) {
            problems.push(Problem::at(
                base,
                &["schedule"],
                format!("schedule {schedule:?} is not defined under [schedules]"),
            ));
        }
    }
    let max_call = duration_field(
        raw.max_call_duration.as_ref(),
        u64::from(defaults.max_call_duration_s),
        base,
        "max_call_duration",
        &mut problems,
    );
    if max_call == 0 || max_call > 86_400 {
        problems.push(Problem::at(
            base,
            &["max_call_duration"],
            "must be between 1 second and 1 day",
        ));
    }
    if problems.is_empty() {
        Ok(Extension {
            id: id.to_string(),
            account: raw.account.clone(),
            allowed_cidrs,
            limits,
            rules,
            schedule: raw.schedule.clone(),
            max_call_duration_s: max_call as u32,
            max_concurrent_calls: raw.max_concurrent_calls.or(defaults.max_concurrent_calls),
            suspended: false,
            origin,
        })
    } else {
        Err(problems)
    }
}

/// Validates one rate line (keys relative to the rate).
pub(crate) fn rate_from_raw_public(raw: &RawRate, problems: &mut Vec<Problem>) -> Option<Rate> {
    rate_from_raw(raw, &[], problems)
}

fn rate_from_raw(raw: &RawRate, base: &[String], problems: &mut Vec<Problem>) -> Option<Rate> {
    let before = problems.len();
    let prefix = parse_prefix(&raw.prefix)
        .map_err(|e| problems.push(Problem::at(base, &["prefix"], e)))
        .ok();
    let mut amount = |field: &Option<RawAmount>, name: &str, required: bool| -> Money {
        match field {
            Some(raw) => match parse_amount(raw) {
                Ok(m) if m >= Money::ZERO => m,
                Ok(_) => {
                    problems.push(Problem::at(base, &[name], "cannot be negative"));
                    Money::ZERO
                }
                Err(e) => {
                    problems.push(Problem::at(base, &[name], e));
                    Money::ZERO
                }
            },
            None if required => {
                problems.push(Problem::at(
                    base,
                    &[name],
                    format!("{name} is required unless the rate is blocked"),
                ));
                Money::ZERO
            }
            None => Money::ZERO,
        }
    };
    let price = amount(&raw.price_per_minute, "price_per_minute", !raw.blocked);
    let fee = amount(&raw.connection_fee, "connection_fee", false);
    let increments = match &raw.increments {
        Some(text) => text.parse::<Increments>().unwrap_or_else(|e| {
            problems.push(Problem::at(base, &["increments"], e));
            Increments::PER_MINUTE
        }),
        None => Increments::PER_MINUTE,
    };
    if problems.len() > before {
        return None;
    }
    Some(Rate {
        prefix: prefix?,
        description: raw.description.clone(),
        price_per_minute: price,
        connection_fee: fee,
        increments,
        blocked: raw.blocked,
    })
}

fn plan_from_raw(
    name: &str,
    raw: &RawPlan,
    base_dir: &Path,
    problems: &mut Vec<Problem>,
) -> ChargingPlan {
    let base = vec!["plans".to_string(), name.to_string()];
    let currency = raw.currency.parse::<Currency>().unwrap_or_else(|e| {
        problems.push(Problem::at(&base, &["currency"], e));
        Currency::EUR
    });
    let mut plan = ChargingPlan::new(name, currency);
    if let Some(csv_path) = &raw.rates_csv {
        let path = base_dir.join(csv_path);
        match crate::rates_csv::read_rates(&path) {
            Ok(rates) => {
                for rate in rates {
                    let prefix = rate.prefix.clone();
                    let _ = plan.rates.insert(&prefix, rate);
                }
            }
            Err(mut file_problems) => {
                for p in &mut file_problems {
                    if p.key.is_empty() {
                        p.key = vec!["plans".into(), name.into(), "rates_csv".into()];
                    }
                }
                problems.extend(file_problems);
            }
        }
    }
    // Rates written in the policy come after the CSV and replace its lines.
    for (i, raw_rate) in raw.rates.iter().enumerate() {
        let rate_base = vec![
            "plans".to_string(),
            name.to_string(),
            "rates".to_string(),
            i.to_string(),
        ];
        if let Some(rate) = rate_from_raw(raw_rate, &rate_base, problems) {
            let prefix = rate.prefix.clone();
            let _ = plan.rates.insert(&prefix, rate);
        }
    }
    plan
}

fn schedule_from_raw(name: &str, raw: &RawSchedule, problems: &mut Vec<Problem>) -> Schedule {
    let base = vec!["schedules".to_string(), name.to_string()];
    let time_zone = parse_time_zone(&raw.time_zone).unwrap_or_else(|e| {
        problems.push(Problem::at(&base, &["time_zone"], e));
        Tz::UTC
    });
    let mut spans = |list: Option<&Vec<String>>, field: &str| -> Option<Vec<OpenSpan>> {
        list.map(|l| {
            l.iter()
                .filter_map(|s| {
                    parse_span(s)
                        .map_err(|e| problems.push(Problem::at(&base, &[field], e)))
                        .ok()
                })
                .collect()
        })
    };
    let weekdays = spans(raw.weekdays.as_ref(), "weekdays").unwrap_or_default();
    let days = [
        (raw.monday.as_ref(), "monday", true),
        (raw.tuesday.as_ref(), "tuesday", true),
        (raw.wednesday.as_ref(), "wednesday", true),
        (raw.thursday.as_ref(), "thursday", true),
        (raw.friday.as_ref(), "friday", true),
        (raw.saturday.as_ref(), "saturday", false),
        (raw.sunday.as_ref(), "sunday", false),
    ];
    let mut weekly: [Vec<OpenSpan>; 7] = Default::default();
    for (i, (list, field, is_weekday)) in days.into_iter().enumerate() {
        weekly[i] = match spans(list, field) {
            Some(s) => s,
            None if is_weekday => weekdays.clone(),
            None => Vec::new(),
        };
    }
    let mut holidays = Vec::new();
    for h in &raw.holidays {
        match h.parse::<NaiveDate>() {
            Ok(d) => holidays.push(d),
            Err(_) => problems.push(Problem::at(
                &base,
                &["holidays"],
                format!("{h:?} is not a date (expected YYYY-MM-DD)"),
            )),
        }
    }
    holidays.sort();
    let default_outside = [
        DestinationClass::Emergency,
        DestinationClass::Internal,
        DestinationClass::National,
        DestinationClass::Mobile,
        DestinationClass::TollFree,
    ];
    let outside_hours_classes = match &raw.outside_hours_classes {
        Some(list) => parse_classes(list).unwrap_or_else(|e| {
            problems.push(Problem::at(&base, &["outside_hours_classes"], e));
            ClassSet::EMPTY
        }),
        None => default_outside.into_iter().collect(),
    };
    Schedule {
        name: name.to_string(),
        time_zone,
        weekly,
        holidays,
        outside_hours_classes,
    }
}

/// What a validated policy file gives the service.
#[derive(Clone, Debug)]
pub struct Settings {
    pub server: ServerSettings,
    pub tokens: Vec<TokenSpec>,
    pub guard: GuardSettings,
    pub firewall: FirewallSettings,
    /// Alert channels, secret file paths made relative to the policy's directory.
    pub alerts: tollgate_notify::ChannelsConfig,
    /// `[audit]`, checked.
    pub audit: AuditSettings,
    /// `[agi]`: the FastAGI server, when configured.
    pub agi: Option<tollgate_agi::AgiSettings>,
    /// `[hangup]`, secret file paths made relative to the policy's directory.
    pub hangup: tollgate_hangup::HangupConfig,
}

/// `[audit]` after checking; `None` keeps the audit's own default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditSettings {
    pub min_password_score: Option<u8>,
    pub min_password_length: Option<usize>,
    pub min_pin_length: Option<usize>,
    pub test_patterns: Option<Vec<String>>,
    pub unused_after_days: Option<u32>,
    pub firmware: Vec<crate::raw::RawFirmwareRule>,
}

fn audit_from_raw(raw: &crate::raw::RawAudit, problems: &mut Vec<Problem>) -> AuditSettings {
    let mut out = AuditSettings {
        min_password_score: raw.min_password_score,
        min_password_length: raw.min_password_length,
        min_pin_length: raw.min_pin_length,
        test_patterns: raw.test_patterns.clone(),
        unused_after_days: None,
        firmware: raw.firmware.clone(),
    };
    if raw.min_password_score.is_some_and(|s| s > 4) {
        problems.push(Problem::new(
            &["audit", "min_password_score"],
            "a zxcvbn score is 0 to 4",
        ));
    }
    if raw
        .min_password_length
        .is_some_and(|l| !(1..=128).contains(&l))
    {
        problems.push(Problem::new(
            &["audit", "min_password_length"],
            "must be 1 to 128",
        ));
    }
    if raw.min_pin_length.is_some_and(|l| !(1..=20).contains(&l)) {
        problems.push(Problem::new(
            &["audit", "min_pin_length"],
            "must be 1 to 20",
        ));
    }
    if let Some(patterns) = &raw.test_patterns {
        if patterns.iter().any(|p| p.trim().is_empty()) {
            problems.push(Problem::new(
                &["audit", "test_patterns"],
                "an empty pattern would mark every extension",
            ));
        }
    }
    if let Some(d) = &raw.unused_after {
        match parse_duration(d) {
            Ok(s) => out.unused_after_days = Some((s / 86_400).min(u64::from(u32::MAX)) as u32),
            Err(e) => problems.push(Problem::new(&["audit", "unused_after"], e)),
        }
    }
    for (i, rule) in raw.firmware.iter().enumerate() {
        let index = i.to_string();
        if rule.vendor.trim().is_empty() {
            problems.push(Problem::new(
                &["audit", "firmware", &index, "vendor"],
                "must not be empty",
            ));
        }
        if !rule
            .min_version
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
        {
            problems.push(Problem::new(
                &["audit", "firmware", &index, "min_version"],
                format!(
                    "{:?} is not a version such as \"66.86.0.160\"",
                    rule.min_version
                ),
            ));
        }
    }
    out
}

/// The guard's rules and its log sources.
#[derive(Clone, Debug)]
pub struct GuardSettings {
    pub enabled: bool,
    pub policy: tollgate_core::guard::GuardPolicy,
    pub logs: Vec<LogSource>,
}

/// A log file to tail and how to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    pub path: PathBuf,
    /// "asterisk", "freeswitch", "kamailio" or "regex".
    pub format: String,
    pub regex: Option<String>,
    pub time_format: Option<String>,
    /// Read a file seen the first time from its beginning (else from its end).
    pub from_beginning: bool,
    /// The zone the log's wall-clock times are in.
    pub time_zone: Tz,
}

/// Where bans are enforced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirewallBackend {
    Nftables {
        nft: Vec<String>,
    },
    Iptables,
    Command {
        ban: Vec<String>,
        unban: Vec<String>,
    },
    DryRun,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallSettings {
    pub backend: FirewallBackend,
    pub ports: Vec<u16>,
    pub trusted: Vec<IpNet>,
    pub rtp_ports: (u16, u16),
}

fn guard_from_raw(
    raw: &crate::raw::RawGuard,
    base_dir: &Path,
    problems: &mut Vec<Problem>,
) -> GuardSettings {
    use tollgate_core::guard::{
        builtin_scanners, EnumerationRule, GuardPolicy, Jail, PikeRule, ScannerAgent,
    };
    let defaults = GuardPolicy::default();
    fn key<'a>(rest: &[&'a str]) -> Vec<&'a str> {
        let mut k = vec!["guard"];
        k.extend_from_slice(rest);
        k
    }
    let dur = |raw: Option<&RawDuration>,
               default: u64,
               rest: &[&str],
               problems: &mut Vec<Problem>|
     -> u64 {
        match raw.map(parse_duration) {
            None => default,
            Some(Ok(0)) => {
                problems.push(Problem::new(&key(rest), "must be more than 0"));
                default
            }
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                problems.push(Problem::new(&key(rest), e));
                default
            }
        }
    };
    let mut allowlist = Vec::new();
    for text in &raw.allowlist {
        match text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            Ok(net) => allowlist.push(net.trunc()),
            Err(_) => problems.push(Problem::new(
                &key(&["allowlist"]),
                format!("{text:?} is not an IP address or CIDR"),
            )),
        }
    }
    let aggregate_v4 = match raw.aggregate_ipv4 {
        None | Some(32) => 32,
        Some(24) => 24,
        Some(other) => {
            problems.push(Problem::new(
                &key(&["aggregate_ipv4"]),
                format!("{other} must be 32 (one address) or 24"),
            ));
            32
        }
    };
    let aggregate_v6 = match raw.aggregate_ipv6 {
        None | Some(128) => 128,
        Some(64) => 64,
        Some(other) => {
            problems.push(Problem::new(
                &key(&["aggregate_ipv6"]),
                format!("{other} must be 128 (one address) or 64"),
            ));
            128
        }
    };
    let mut scanners = if raw.scanner_user_agents_builtin == Some(false) {
        Vec::new()
    } else {
        builtin_scanners()
    };
    for (i, s) in raw.scanner_user_agents.iter().enumerate() {
        let pattern = s.pattern.trim().to_ascii_lowercase();
        if pattern.len() < 3 {
            problems.push(Problem::new(
                &key(&["scanner_user_agents", &i.to_string(), "pattern"]),
                "a pattern needs at least 3 characters (it is matched as a substring)",
            ));
        } else {
            scanners.push(ScannerAgent {
                pattern,
                reason: s.reason.clone(),
            });
        }
    }
    let jails = match &raw.jails {
        None => defaults.jails.clone(),
        Some(map) => map
            .iter()
            .map(|(name, j)| {
                if j.maxretry == 0 {
                    problems.push(Problem::new(
                        &key(&["jails", name, "maxretry"]),
                        "must be at least 1",
                    ));
                }
                let bantime_s = dur(
                    Some(&j.bantime),
                    3600,
                    &["jails", name, "bantime"],
                    problems,
                );
                Jail {
                    name: name.clone(),
                    maxretry: j.maxretry.max(1),
                    findtime_s: dur(
                        Some(&j.findtime),
                        600,
                        &["jails", name, "findtime"],
                        problems,
                    ),
                    bantime_s,
                    bantime_factor: j.bantime_factor.unwrap_or(2).clamp(1, 100),
                    bantime_max_s: dur(
                        j.bantime_max.as_ref(),
                        bantime_s.saturating_mul(168),
                        &["jails", name, "bantime_max"],
                        problems,
                    )
                    .max(bantime_s),
                }
            })
            .collect(),
    };
    let enumeration = match &raw.enumeration {
        None => defaults.enumeration.clone(),
        Some(e) if e.enabled == Some(false) => None,
        Some(e) => Some(EnumerationRule {
            distinct_users: e.distinct_users.unwrap_or(10).max(2),
            findtime_s: dur(
                e.findtime.as_ref(),
                600,
                &["enumeration", "findtime"],
                problems,
            ),
            bantime_s: dur(
                e.bantime.as_ref(),
                86_400,
                &["enumeration", "bantime"],
                problems,
            ),
        }),
    };
    let pike = match &raw.pike {
        None => defaults.pike.clone(),
        Some(p) if p.enabled == Some(false) => None,
        Some(p) => Some(PikeRule {
            window_s: dur(p.window.as_ref(), 2, &["pike", "window"], problems),
            density: p.density.unwrap_or(60).max(1),
            subnet_density: p.subnet_density.unwrap_or(300).max(1),
            bantime_s: dur(p.bantime.as_ref(), 600, &["pike", "bantime"], problems),
            max_nodes: p.max_nodes.unwrap_or(200_000).clamp(100, 10_000_000),
        }),
    };
    let mut logs = Vec::new();
    for (i, l) in raw.logs.iter().enumerate() {
        let index = i.to_string();
        if !matches!(
            l.format.as_str(),
            "asterisk" | "freeswitch" | "kamailio" | "regex"
        ) {
            problems.push(Problem::new(&key(&["logs", &index, "format"]), format!("unknown log format {:?} (expected \"asterisk\", \"freeswitch\", \"kamailio\" or \"regex\")", l.format)));
        }
        if l.format == "regex" {
            match &l.regex {
                None => problems.push(Problem::new(
                    &key(&["logs", &index, "regex"]),
                    "format \"regex\" needs a regex with a named group host",
                )),
                Some(r) if !r.contains("(?P<host>") && !r.contains("(?<host>") => {
                    problems.push(Problem::new(
                        &key(&["logs", &index, "regex"]),
                        "the regex needs a named group (?P<host>...)",
                    ))
                }
                Some(_) => {}
            }
        } else if l.regex.is_some() {
            problems.push(Problem::new(
                &key(&["logs", &index, "regex"]),
                "regex is only for format = \"regex\"",
            ));
        }
        let from_beginning = match l.start.as_deref() {
            None | Some("end") => false,
            Some("beginning") => true,
            Some(other) => {
                problems.push(Problem::new(
                    &key(&["logs", &index, "start"]),
                    format!("{other:?} must be \"end\" or \"beginning\""),
                ));
                false
            }
        };
        let time_zone = match l.time_zone.as_deref() {
            None => Tz::UTC,
            Some(name) => parse_time_zone(name).unwrap_or_else(|e| {
                problems.push(Problem::new(&key(&["logs", &index, "time_zone"]), e));
                Tz::UTC
            }),
        };
        logs.push(LogSource {
            time_zone,
            path: base_dir.join(&l.path),
            format: l.format.clone(),
            regex: l.regex.clone(),
            time_format: l.time_format.clone(),
            from_beginning,
        });
    }
    GuardSettings {
        enabled: raw.enabled.unwrap_or(true),
        policy: GuardPolicy {
            jails,
            allowlist,
            scanners,
            scanner_bantime_s: dur(
                raw.scanner_bantime.as_ref(),
                defaults.scanner_bantime_s,
                &["scanner_bantime"],
                problems,
            ),
            enumeration,
            pike,
            aggregate_v4,
            aggregate_v6,
            offense_memory_s: dur(
                raw.offense_memory.as_ref(),
                defaults.offense_memory_s,
                &["offense_memory"],
                problems,
            ),
            max_tracked: defaults.max_tracked,
            enforce_registration_cidrs: raw.registration_cidrs.unwrap_or(true),
        },
        logs,
    }
}

fn firewall_from_raw(
    raw: &crate::raw::RawFirewall,
    problems: &mut Vec<Problem>,
) -> FirewallSettings {
    let argv = |list: &Option<Vec<String>>,
                name: &str,
                problems: &mut Vec<Problem>|
     -> Vec<String> {
        match list {
            Some(v) if !v.is_empty() && !v[0].is_empty() => v.clone(),
            _ => {
                problems.push(Problem::new(&["firewall", name], format!("backend \"command\" needs {name} as an argv list, e.g. [\"/usr/local/bin/block\", \"{{ip}}\", \"{{timeout}}\"]")));
                Vec::new()
            }
        }
    };
    let backend = match raw.backend.as_deref().unwrap_or("nftables") {
        "nftables" => FirewallBackend::Nftables {
            nft: raw
                .nft
                .clone()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| vec!["nft".to_string()]),
        },
        "iptables" => FirewallBackend::Iptables,
        "command" => FirewallBackend::Command {
            ban: argv(&raw.ban_command, "ban_command", problems),
            unban: argv(&raw.unban_command, "unban_command", problems),
        },
        "dry-run" => FirewallBackend::DryRun,
        "none" => FirewallBackend::None,
        other => {
            problems.push(Problem::new(&["firewall", "backend"], format!("{other:?} must be \"nftables\", \"iptables\", \"command\", \"dry-run\" or \"none\"")));
            FirewallBackend::DryRun
        }
    };
    let ports = raw.ports.clone().unwrap_or_else(|| vec![5060, 5061]);
    if ports.is_empty() || ports.contains(&0) {
        problems.push(Problem::new(
            &["firewall", "ports"],
            "needs at least one port, none of them 0",
        ));
    }
    let mut trusted = Vec::new();
    for text in &raw.trusted {
        match text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            Ok(net) => trusted.push(net.trunc()),
            Err(_) => problems.push(Problem::new(
                &["firewall", "trusted"],
                format!("{text:?} is not an IP address or CIDR"),
            )),
        }
    }
    let rtp_ports = match raw.rtp_ports.as_deref() {
        None => (10_000, 20_000),
        Some(text) => match text
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        {
            Some((a, b)) if a > 0 && a <= b => (a, b),
            _ => {
                problems.push(Problem::new(
                    &["firewall", "rtp_ports"],
                    format!("{text:?} must be \"FIRST-LAST\", e.g. \"10000-20000\""),
                ));
                (10_000, 20_000)
            }
        },
    };
    FirewallSettings {
        backend,
        ports,
        trusted,
        rtp_ports,
    }
}

/// Validates a whole raw policy. Relative paths are resolved against `base_dir`.
pub fn build(raw: &RawPolicy, base_dir: &Path) -> (Policy, Settings, Vec<Problem>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut policy = Policy::empty();

    // Server.
    let listen = match &raw.server.listen {
        Some(text) => text.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.push(Problem::new(
                &["server", "listen"],
                format!("{text:?} is not an address:port (e.g. \"127.0.0.1:8480\")"),
            ));
            SocketAddr::from(([127, 0, 0, 1], 8480))
        }),
        None => SocketAddr::from(([127, 0, 0, 1], 8480)),
    };
    if !listen.ip().is_loopback() {
        warnings.push(Problem::new(&["server", "listen"], format!("the API listens on {listen}, beyond loopback: put it behind a firewall or TLS proxy")));
    }
    let durability = match raw.server.durability.as_deref() {
        None | Some("normal") => Durability::Normal,
        Some("full") => Durability::Full,
        Some(other) => {
            problems.push(Problem::new(&["server", "durability"], format!("{other:?} must be \"normal\" (survives a crash of tollgate) or \"full\" (also survives power loss)")));
            Durability::Normal
        }
    };
    let server = ServerSettings {
        listen,
        database: base_dir.join(raw.server.database.as_deref().unwrap_or("tollgate.db")),
        durability,
        max_body_bytes: raw
            .server
            .max_body_bytes
            .unwrap_or(64 * 1024)
            .clamp(1024, 16 * 1024 * 1024) as usize,
    };

    // Tokens.
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let base = ["tokens".to_string(), i.to_string()];
        let mut scopes = Vec::new();
        for s in &t.scopes {
            match s.as_str() {
                "calls" => scopes.push(Scope::Calls),
                "read" => scopes.push(Scope::Read),
                "admin" => scopes.push(Scope::Admin),
                other => problems.push(Problem::at(
                    &base,
                    &["scopes"],
                    format!("unknown scope {other:?} (expected \"calls\", \"read\" or \"admin\")"),
                )),
            }
        }
        let sources = [t.sha256.is_some(), t.file.is_some(), t.env.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if sources != 1 {
            problems.push(Problem::at(
                &base,
                &[],
                format!(
                    "token {:?} needs exactly one of sha256, file or env",
                    t.name
                ),
            ));
            continue;
        }
        let source = if let Some(hex_text) = &t.sha256 {
            match decode_sha256(hex_text) {
                Some(bytes) => TokenSource::Sha256(bytes),
                None => {
                    problems.push(Problem::at(
                        &base,
                        &["sha256"],
                        "must be 64 hex digits (sha256sum of the token)",
                    ));
                    continue;
                }
            }
        } else if let Some(file) = &t.file {
            TokenSource::File(base_dir.join(file))
        } else {
            TokenSource::Env(t.env.clone().unwrap_or_default())
        };
        tokens.push(TokenSpec {
            name: t.name.clone(),
            scopes,
            source,
        });
    }
    if tokens.is_empty() {
        warnings.push(Problem::new(
            &["tokens"],
            "no API tokens: every /v1 request will be refused",
        ));
    }

    // Credit, emergency numbers, high-risk list.
    let defaults = CreditSettings::default();
    policy.credit = CreditSettings {
        answer_timeout_s: duration_field(
            raw.credit.answer_timeout.as_ref(),
            u64::from(defaults.answer_timeout_s),
            &["credit".into()],
            "answer_timeout",
            &mut problems,
        )
        .min(86_400) as u32,
        expiry_grace_s: duration_field(
            raw.credit.expiry_grace.as_ref(),
            u64::from(defaults.expiry_grace_s),
            &["credit".into()],
            "expiry_grace",
            &mut problems,
        )
        .min(86_400) as u32,
    };
    if let Some(numbers) = &raw.emergency_numbers {
        policy.emergency_numbers = Vec::new();
        for n in numbers {
            if n.is_empty() || n.len() > 8 || !n.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(Problem::new(
                    &["emergency_numbers"],
                    format!("{n:?} must be a short code of 1 to 8 digits"),
                ));
            } else {
                policy.emergency_numbers.push(n.clone());
            }
        }
    }
    if raw.high_risk_builtin == Some(false) {
        policy.high_risk = HighRiskList::new();
    }
    for (i, entry) in raw.high_risk.iter().enumerate() {
        if let Err(e) = policy.high_risk.add(&entry.prefix, &entry.reason) {
            problems.push(Problem::new(&["high_risk", &i.to_string(), "prefix"], e));
        }
    }

    for (name, raw_plan) in &raw.plans {
        let plan = plan_from_raw(name, raw_plan, base_dir, &mut problems);
        if plan.rates.is_empty() {
            warnings.push(Problem::new(
                &["plans", name],
                format!("plan {name} has no rates: every call charged by it will be denied"),
            ));
        }
        policy.plans.insert(name.clone(), plan);
    }
    for (name, raw_schedule) in &raw.schedules {
        let schedule = schedule_from_raw(name, raw_schedule, &mut problems);
        policy.schedules.insert(name.clone(), schedule);
    }

    // Accounts, parents first.
    let mut pending: Vec<(&String, &RawAccount)> = raw.accounts.iter().collect();
    loop {
        let before = pending.len();
        let mut rest = Vec::new();
        for (id, acc) in pending {
            let ready = acc
                .parent
                .as_ref()
                .is_none_or(|p| policy.accounts.contains_key(p) || !raw.accounts.contains_key(p));
            if !ready {
                rest.push((id, acc));
                continue;
            }
            let base = vec!["accounts".to_string(), id.clone()];
            match account_from_raw(id, acc, &policy, Origin::Policy, &base, &mut warnings) {
                Ok(account) => {
                    if let Err(e) = policy.upsert_account(account) {
                        problems.push(Problem::at(&base, &[], e.to_string()));
                    }
                }
                Err(p) => problems.extend(p),
            }
        }
        pending = rest;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    for (id, _) in pending {
        problems.push(Problem::new(
            &["accounts", id, "parent"],
            format!("account {id} is part of a parent cycle"),
        ));
    }
    for (id, ext) in &raw.extensions {
        let base = vec!["extensions".to_string(), id.clone()];
        match extension_from_raw(id, ext, &policy, Origin::Policy, &base, &mut warnings) {
            Ok(extension) => {
                if let Err(e) = policy.upsert_extension(extension) {
                    problems.push(Problem::at(&base, &[], e.to_string()));
                }
            }
            Err(p) => problems.extend(p),
        }
    }
    policy.shadow = raw.shadow.unwrap_or(false);
    if policy.shadow {
        warnings.push(Problem::new(
            &["shadow"],
            "shadow mode: decisions are recorded but not enforced (calls allowed, bans dry-run, no call ended)",
        ));
    }
    policy.monitor = crate::monitor::monitor_from_raw(
        &raw.monitor,
        &policy.schedules,
        &mut problems,
        &mut warnings,
    );
    let guard = guard_from_raw(&raw.guard, base_dir, &mut problems);
    let firewall = firewall_from_raw(&raw.firewall, &mut problems);
    let audit = audit_from_raw(&raw.audit, &mut problems);
    let mut hangup = raw.hangup.clone();
    hangup.resolve_paths(base_dir);
    let agi = raw.agi.clone();
    if let Some(Err(e)) = agi.as_ref().map(|a| a.validate()) {
        problems.push(Problem::new(&["agi"], e.to_string()));
    }
    let mut alerts = raw.alerts.clone();
    for webhook in &mut alerts.webhook {
        if let Some(file) = &mut webhook.secret_file {
            *file = base_dir.join(&*file);
        }
    }
    for smtp in &mut alerts.smtp {
        if let Some(file) = &mut smtp.password_file {
            *file = base_dir.join(&*file);
        }
    }
    (
        policy,
        Settings {
            server,
            tokens,
            guard,
            firewall,
            alerts,
            audit,
            agi,
            hangup,
        },
        problems,
        warnings,
    )
}

fn decode_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("90", 90),
            ("90s", 90),
            ("2m", 120),
            ("1h30m", 5400),
            ("1d", 86_400),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(&RawDuration::Text(text.into())).unwrap(),
                secs,
                "{text}"
            );
        }
        assert_eq!(parse_duration(&RawDuration::Seconds(5)).unwrap(), 5);
        for bad in ["", "1x", "m", "1.5h", "-3s"] {
            assert!(
                parse_duration(&RawDuration::Text(bad.into())).is_err(),
                "{bad}"
            );
        }
        assert!(parse_duration(&RawDuration::Seconds(-1)).is_err());
    }

    #[test]
    fn amounts_refuse_floats() {
        assert_eq!(
            parse_amount(&RawAmount::Integer(20)).unwrap(),
            Money::from_cents(2000)
        );
        assert_eq!(
            parse_amount(&RawAmount::Text("0.05".into())).unwrap(),
            Money::from_cents(5)
        );
        let err = parse_amount(&RawAmount::Float(0.05)).unwrap_err();
        assert!(err.contains("quoted decimal"), "{err}");
        assert_eq!(
            parse_limit(&RawAmount::Text("unlimited".into())).unwrap(),
            Limit::Unlimited
        );
        assert!(parse_limit(&RawAmount::Text("-1".into())).is_err());
    }
}

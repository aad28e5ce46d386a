//! What the call-pattern monitor watches: metrics, scopes, destination profiles, threshold
//! rules with warning and critical levels (stricter outside business hours), learned
//! baselines, and the actions each level takes. Built by `tollgate-config` from the
//! policy's `[monitor]` section; plain data here.

use std::fmt;
use std::str::FromStr;

use crate::number::{ClassSet, Destination};

/// What a rule counts over its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Authorize requests, allowed or denied.
    Attempts,
    /// Calls reported answered.
    Answered,
    /// Calls allowed and not yet ended (a gauge, not windowed).
    Concurrent,
    /// Billed minutes of ended calls (kept in seconds).
    Minutes,
    /// Money charged for ended calls (micros of the subject's currency).
    Spend,
    /// Distinct numbers called (counted up to [`RECENT_CAP`]).
    DistinctDestinations,
    /// The most calls to any one number.
    RepeatedCalls,
    /// Percent of answered calls that lasted less than `short_call_s`.
    ShortCallRatio,
    /// Attempts while the extension's business-hours schedule is closed.
    AfterHours,
    /// Attempts tollgate denied.
    Denied,
    /// Extensions created (account and global scope).
    ExtensionsCreated,
    /// Changes of an extension's or account's permissions: rules, limits, CIDRs, schedule.
    PermissionChanges,
}

/// How many recent destinations a distinct/repeated window keeps per subject: the
/// metrics saturate there, which is far above any sensible threshold.
pub const RECENT_CAP: usize = 512;

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::Attempts,
        Metric::Answered,
        Metric::Concurrent,
        Metric::Minutes,
        Metric::Spend,
        Metric::DistinctDestinations,
        Metric::RepeatedCalls,
        Metric::ShortCallRatio,
        Metric::AfterHours,
        Metric::Denied,
        Metric::ExtensionsCreated,
        Metric::PermissionChanges,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Attempts => "attempts",
            Metric::Answered => "answered",
            Metric::Concurrent => "concurrent",
            Metric::Minutes => "minutes",
            Metric::Spend => "spend",
            Metric::DistinctDestinations => "distinct_destinations",
            Metric::RepeatedCalls => "repeated_calls",
            Metric::ShortCallRatio => "short_call_ratio",
            Metric::AfterHours => "after_hours",
            Metric::Denied => "denied",
            Metric::ExtensionsCreated => "extensions_created",
            Metric::PermissionChanges => "permission_changes",
        }
    }

    /// Whether calls are filtered by the rule's destination profile for this metric
    /// (directory metrics have no destination).
    pub fn is_call_metric(self) -> bool {
        !matches!(self, Metric::ExtensionsCreated | Metric::PermissionChanges)
    }

    /// Renders a value of this metric for people: minutes from seconds, money from micros.
    pub fn display(self, value: u64) -> String {
        match self {
            Metric::Minutes => format!("{} min", value.div_ceil(60)),
            Metric::Spend => crate::money::Money::from_micros(value as i64).to_string(),
            Metric::ShortCallRatio => format!("{value}%"),
            _ => value.to_string(),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Metric, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown metric {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// Whom a rule counts for: each extension, each account (a parent account counts the calls
/// of every account below it), or everything together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Extension,
    Account,
    Global,
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "extension" => Ok(Scope::Extension),
            "account" => Ok(Scope::Account),
            "global" => Ok(Scope::Global),
            _ => Err(format!(
                "unknown scope {s:?}: expected extension, account or global"
            )),
        }
    }
}

/// Which calls a rule counts: those matching any listed class, country or prefix; every
/// call when all three lists are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub classes: ClassSet,
    /// ISO 3166 regions ("CU") or "001" for non-geographic ranges.
    pub countries: Vec<String>,
    /// E.164 digits without '+'.
    pub prefixes: Vec<String>,
}

impl Profile {
    pub fn is_everything(&self) -> bool {
        self.classes == ClassSet::EMPTY && self.countries.is_empty() && self.prefixes.is_empty()
    }

    pub fn matches(&self, destination: &Destination) -> bool {
        if self.is_everything() {
            return true;
        }
        if self.classes.contains(destination.class) {
            return true;
        }
        if let Some(country) = &destination.country {
            if self.countries.iter().any(|c| c == country) {
                return true;
            }
        }
        let digits = destination.digits();
        self.prefixes.iter().any(|p| digits.starts_with(p.as_str()))
    }

    /// "high_risk, country CU, +88216" or "all calls", for messages.
    pub fn describe(&self) -> String {
        if self.is_everything() {
            return "all calls".to_string();
        }
        let mut parts: Vec<String> = self
            .classes
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        parts.extend(self.countries.iter().map(|c| format!("country {c}")));
        parts.extend(self.prefixes.iter().map(|p| format!("+{p}")));
        parts.join(", ")
    }
}

/// What a level does when reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Raise (or escalate) the alert; every level does.
    Alert,
    /// Deny further calls of the rule's profile for the subject (for `action_for`, or
    /// until the alert closes).
    DenyProfile,
    /// Suspend the extension that placed the triggering call.
    SuspendExtension,
    /// Suspend the account of the triggering call's extension (its own account).
    SuspendAccount,
    /// Ban the triggering call's source address through the intrusion guard.
    BanIp,
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        match s {
            "alert" => Ok(Action::Alert),
            "deny_profile" => Ok(Action::DenyProfile),
            "suspend_extension" => Ok(Action::SuspendExtension),
            "suspend_account" => Ok(Action::SuspendAccount),
            "ban_ip" => Ok(Action::BanIp),
            _ => Err(format!(
                "unknown action {s:?}: expected alert, deny_profile, suspend_extension, suspend_account or ban_ip"
            )),
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::DenyProfile => "deny_profile",
            Action::SuspendExtension => "suspend_extension",
            Action::SuspendAccount => "suspend_account",
            Action::BanIp => "ban_ip",
        }
    }
}

/// A warning and a critical level; either may be absent (but not both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Levels {
    pub warning: Option<u64>,
    pub critical: Option<u64>,
}

/// What a rule does at each level, and for how long its deny/suspend/ban lasts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reaction {
    pub on_warning: Vec<Action>,
    pub on_critical: Vec<Action>,
    /// `None`: a suspension lasts until a person lifts it; a profile deny until the alert
    /// closes; a ban lasts one hour.
    pub action_for_s: Option<u64>,
    /// Shadow mode for this rule: alerts are raised, actions only recorded as "would ...".
    pub shadow: bool,
}

/// A fixed-threshold rule over a sliding window, in the spirit of OpenSIPS' fraud_detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThresholdRule {
    pub name: String,
    pub metric: Metric,
    pub scope: Scope,
    /// Sliding window length (ignored for the `concurrent` gauge).
    pub window_s: u64,
    pub profile: Profile,
    pub levels: Levels,
    /// Levels while the schedule is closed (nights, weekends, holidays).
    pub off_hours: Option<Levels>,
    /// The schedule whose closed hours are "off hours"; `None`: the calling extension's.
    pub schedule: Option<String>,
    /// `short_call_ratio` only: no verdict on fewer answered calls than this.
    pub min_calls: u64,
    pub reaction: Reaction,
}

/// A rule that learns each subject's normal activity per hour of week and fires on a
/// departure from it.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineRule {
    pub name: String,
    /// `attempts` or `spend`.
    pub metric: Metric,
    /// `extension` or `account`.
    pub scope: Scope,
    pub profile: Profile,
    /// Warning when the hour's count exceeds `mean × factor` ...
    pub factor: f64,
    /// ... and `mean + deviations × standard deviation` ...
    pub deviations: f64,
    /// ... and this floor (so a quiet hour's mean of 0.1 does not alert at 1 call).
    pub floor: u64,
    /// Critical at `critical_factor` times the warning level.
    pub critical_factor: f64,
    /// Weight of a new week in the running estimate (0 < rate ≤ 1).
    pub learning_rate: f64,
    /// Hours of learning before the rule may fire.
    pub warmup_hours: u32,
    pub reaction: Reaction,
}

/// The `[monitor]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorSettings {
    pub rules: Vec<ThresholdRule>,
    pub baselines: Vec<BaselineRule>,
    /// An answered call shorter than this counts as short.
    pub short_call_s: u64,
}

/// At most this many rules and baselines together: a call's matches are one `u64` mask.
pub const MAX_RULES: usize = 64;

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            rules: Vec::new(),
            baselines: Vec::new(),
            short_call_s: 10,
        }
    }
}

impl MonitorSettings {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.baselines.is_empty()
    }
}

//! Call-pattern monitoring: sliding-window thresholds and learned baselines over what the
//! engine sees (attempts, answers, ends, directory changes), raising alerts as incidents
//! and deciding the automatic actions (deny a destination profile, suspend an extension or
//! account, ban a source address).
//!
//! Pure like the rest of the core: observations and time in, [`MonitorEffect`]s out
//! (drained by the server, which stores and delivers them). Suspensions and profile denies
//! decided here are also kept here, so the very next `authorize` sees them.
//!
//! Memory: state exists only for subjects some rule is interested in, windows are fixed
//! rings ([`window::Ring`]), and idle subjects are dropped by [`Monitor::tick`]; learned
//! baselines (1.3 KiB per subject and baseline rule) are kept.

pub mod baseline;
pub mod rules;
pub mod window;

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

use crate::money::Money;
use crate::number::Destination;
use crate::schedule::Schedule;

use baseline::{Baseline, Expectation};
pub use rules::{
    Action, BaselineRule, Levels, Metric, MonitorSettings, Profile, Reaction, Scope, ThresholdRule,
    MAX_RULES,
};
use window::{Recent, Ring};

/// Whom an alert or a suspension is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MonitorSubject {
    Extension(String),
    Account(String),
    Global,
}

impl MonitorSubject {
    pub fn kind(&self) -> &'static str {
        match self {
            MonitorSubject::Extension(_) => "extension",
            MonitorSubject::Account(_) => "account",
            MonitorSubject::Global => "global",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            MonitorSubject::Extension(id) | MonitorSubject::Account(id) => id,
            MonitorSubject::Global => "*",
        }
    }

    /// The inverse of `kind()`/`id()`, for the store.
    pub fn from_parts(kind: &str, id: &str) -> Option<MonitorSubject> {
        match kind {
            "extension" => Some(MonitorSubject::Extension(id.to_string())),
            "account" => Some(MonitorSubject::Account(id.to_string())),
            "global" => Some(MonitorSubject::Global),
            _ => None,
        }
    }
}

/// As text: "extension 1001", "account acme", "global".
impl serde::Serialize for MonitorSubject {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self {
            MonitorSubject::Global => ser.serialize_str("global"),
            other => ser.collect_str(&format_args!("{} {}", other.kind(), other.id())),
        }
    }
}

impl<'de> serde::Deserialize<'de> for MonitorSubject {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        MonitorSubject::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not \"extension ID\", \"account ID\" or \"global\""
            ))
        })
    }
}

impl MonitorSubject {
    /// Parses "extension 1001", "account acme" or "global".
    pub fn parse(text: &str) -> Option<MonitorSubject> {
        let text = text.trim();
        if text == "global" {
            return Some(MonitorSubject::Global);
        }
        let (kind, id) = text.split_once(' ')?;
        let id = id.trim();
        if id.is_empty() || kind == "global" {
            return None;
        }
        MonitorSubject::from_parts(kind, id)
    }
}

impl fmt::Display for MonitorSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorSubject::Global => f.write_str("all traffic"),
            other => write!(f, "{} {}", other.kind(), other.id()),
        }
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Threshold,
    Baseline,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Threshold => "threshold",
            AlertKind::Baseline => "baseline",
        }
    }
}

/// What happened to an alert, for the store and the channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    Opened,
    /// Warning became critical.
    Escalated,
    /// The figures changed (peak grew); stored, not sent to people.
    Updated,
    Closed,
    Acknowledged,
}

/// An incident: one per rule and subject while it goes on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    pub id: u64,
    /// The policy path of the rule: `monitor.rules.NAME` or `monitor.baselines.NAME`.
    pub rule: String,
    pub kind: AlertKind,
    pub metric: Metric,
    pub subject: MonitorSubject,
    /// Which calls the rule counts ("high_risk, +88216" or "all calls").
    pub profile: String,
    pub severity: Severity,
    pub open: bool,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The metric when last evaluated, and the highest it reached.
    pub value: u64,
    pub peak: u64,
    pub warning_at: Option<u64>,
    pub critical_at: Option<u64>,
    /// The window the value is counted over (3600 for baselines: the current hour).
    pub window_s: u64,
    /// For baselines: the learned mean for this hour of the week.
    pub expected: Option<String>,
    /// One line for people, with the figures.
    pub summary: String,
    /// What tollgate did (or asked for), in order.
    pub actions: Vec<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
}

/// A suspension decided by a rule (or restored from the store).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Suspension {
    pub subject: MonitorSubject,
    pub since: DateTime<Utc>,
    /// `None`: until a person lifts it.
    pub until: Option<DateTime<Utc>>,
    pub rule: String,
    pub alert_id: Option<u64>,
    pub reason: String,
}

/// What the server must carry out or record, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorEffect {
    Alert {
        alert: Alert,
        event: AlertEvent,
    },
    Suspended(Suspension),
    /// A timed suspension ran out.
    Lifted(Suspension),
    BanIp {
        ip: IpAddr,
        for_s: Option<u64>,
        rule: String,
        alert_id: u64,
    },
}

/// A call attempt as the engine saw it.
#[derive(Clone, Debug)]
pub struct AttemptObservation<'a> {
    pub call_id: &'a str,
    pub extension: &'a str,
    /// The extension's account, then its parents.
    pub accounts: &'a [String],
    pub source_ip: IpAddr,
    pub destination: &'a Destination,
    pub allowed: bool,
    /// Whether the extension's business-hours schedule was closed.
    pub off_hours: bool,
}

/// A directory change, for the inventory metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryChange {
    ExtensionCreated,
    PermissionsChanged,
}

/// Why a call is refused by a rule's `deny_profile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileBlock {
    pub rule: String,
    pub subject: MonitorSubject,
    pub alert_id: u64,
    pub profile: String,
    pub until: Option<DateTime<Utc>>,
}

/// A rule's running state for one subject.
#[derive(Clone, Debug)]
enum Tracker {
    Sum(Ring),
    Ratio { short: Ring, total: Ring },
    Recent(Recent),
    Gauge(u64),
    Baseline(Baseline),
}

#[derive(Clone, Debug)]
struct Entry {
    rule: u16,
    tracker: Tracker,
    open_alert: Option<u64>,
}

#[derive(Clone, Debug, Default)]
struct SubjectState {
    entries: Vec<Entry>,
}

impl SubjectState {
    fn entry(&mut self, rule: u16, make: impl FnOnce() -> Tracker) -> &mut Entry {
        let index = match self.entries.iter().position(|e| e.rule == rule) {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    rule,
                    tracker: make(),
                    open_alert: None,
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[index]
    }
}

/// One rule of either kind, by index: thresholds first, then baselines.
#[derive(Clone, Copy)]
enum RuleRef<'a> {
    Threshold(&'a ThresholdRule),
    Baseline(&'a BaselineRule),
}

impl RuleRef<'_> {
    fn metric(&self) -> Metric {
        match self {
            RuleRef::Threshold(r) => r.metric,
            RuleRef::Baseline(r) => r.metric,
        }
    }
    fn scope(&self) -> Scope {
        match self {
            RuleRef::Threshold(r) => r.scope,
            RuleRef::Baseline(r) => r.scope,
        }
    }
    fn profile(&self) -> &Profile {
        match self {
            RuleRef::Threshold(r) => &r.profile,
            RuleRef::Baseline(r) => &r.profile,
        }
    }
    fn reaction(&self) -> &Reaction {
        match self {
            RuleRef::Threshold(r) => &r.reaction,
            RuleRef::Baseline(r) => &r.reaction,
        }
    }
    fn path(&self) -> String {
        match self {
            RuleRef::Threshold(r) => format!("monitor.rules.{}", r.name),
            RuleRef::Baseline(r) => format!("monitor.baselines.{}", r.name),
        }
    }
}

/// The triggering event's context, for actions that need a call (suspend its extension,
/// ban its source).
struct Trigger<'a> {
    extension: Option<&'a str>,
    account: Option<&'a str>,
    source_ip: Option<IpAddr>,
    off_hours: bool,
}

#[derive(Clone, Debug)]
struct TrackedCall {
    extension: Box<str>,
    accounts: Box<[String]>,
    mask: u64,
    answered: bool,
    source_ip: IpAddr,
    off_hours: bool,
}

#[derive(Clone, Debug)]
struct OpenAlert {
    alert: Alert,
    rule: u16,
    /// Whether the stored copy is behind (peak or value changed since last written).
    dirty: bool,
    off_hours: bool,
    /// A restored alert is kept open until one window after the restart (its window's
    /// past counts were not stored): until then new traffic may confirm it, and the tick
    /// does not close it for lack of data.
    hold_until: Option<i64>,
}

#[derive(Clone, Debug)]
struct BlockEntry {
    rule: u16,
    block: ProfileBlock,
}

/// The monitor: rules, per-subject state, open alerts, suspensions and profile blocks.
#[derive(Clone, Debug)]
pub struct Monitor {
    settings: MonitorSettings,
    /// Rules' own schedules (`schedule = "..."`), by name.
    schedules: HashMap<String, Schedule>,
    extensions: HashMap<Box<str>, SubjectState>,
    accounts: HashMap<Box<str>, SubjectState>,
    global: SubjectState,
    calls: HashMap<Box<str>, TrackedCall>,
    alerts: HashMap<u64, OpenAlert>,
    blocks: Vec<BlockEntry>,
    suspensions: HashMap<MonitorSubject, Suspension>,
    next_alert_id: u64,
    last_sweep: i64,
    outbox: Vec<MonitorEffect>,
}

fn destination_key(destination: &Destination) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    destination.digits().hash(&mut hasher);
    hasher.finish()
}

fn duration_text(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Monitor {
    /// A monitor for `settings`; `schedules` are the policy's, for rules naming one.
    pub fn new(settings: MonitorSettings, schedules: &HashMap<String, Schedule>) -> Monitor {
        let mut own = HashMap::new();
        for rule in &settings.rules {
            if let Some(name) = &rule.schedule {
                if let Some(s) = schedules.get(name) {
                    own.insert(name.clone(), s.clone());
                }
            }
        }
        Monitor {
            settings,
            schedules: own,
            extensions: HashMap::new(),
            accounts: HashMap::new(),
            global: SubjectState::default(),
            calls: HashMap::new(),
            alerts: HashMap::new(),
            blocks: Vec::new(),
            suspensions: HashMap::new(),
            next_alert_id: 1,
            last_sweep: i64::MIN,
            outbox: Vec::new(),
        }
    }

    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Whether any suspension or profile block is in force: `authorize` checks them only
    /// then, so the common case costs no lookup.
    pub fn restricts_anything(&self) -> bool {
        !self.suspensions.is_empty() || !self.blocks.is_empty()
    }

    fn rule(&self, index: u16) -> Option<RuleRef<'_>> {
        let i = usize::from(index);
        let thresholds = self.settings.rules.len();
        if i < thresholds {
            self.settings.rules.get(i).map(RuleRef::Threshold)
        } else {
            self.settings
                .baselines
                .get(i - thresholds)
                .map(RuleRef::Baseline)
        }
    }

    fn rule_count(&self) -> usize {
        (self.settings.rules.len() + self.settings.baselines.len()).min(MAX_RULES)
    }

    fn rule_index_by_path(&self, path: &str) -> Option<u16> {
        (0..self.rule_count() as u16).find(|i| self.rule(*i).is_some_and(|r| r.path() == path))
    }

    /// Effects decided since the last drain, in order.
    pub fn drain_effects(&mut self) -> Vec<MonitorEffect> {
        std::mem::take(&mut self.outbox)
    }

    pub fn open_alerts(&self) -> Vec<Alert> {
        let mut out: Vec<Alert> = self.alerts.values().map(|a| a.alert.clone()).collect();
        out.sort_by_key(|a| a.id);
        out
    }

    pub fn open_alert(&self, id: u64) -> Option<&Alert> {
        self.alerts.get(&id).map(|a| &a.alert)
    }

    pub fn suspensions(&self) -> Vec<Suspension> {
        let mut out: Vec<Suspension> = self.suspensions.values().cloned().collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }

    /// Tracked subjects with state (extensions, accounts, global), for metrics and benchmarks.
    pub fn tracked_subjects(&self) -> usize {
        self.extensions.len() + self.accounts.len() + usize::from(!self.global.entries.is_empty())
    }

    /// The rule-decided suspension in force for `subject` at `now`.
    pub fn suspension(&self, subject: &MonitorSubject, now: DateTime<Utc>) -> Option<&Suspension> {
        self.suspensions
            .get(subject)
            .filter(|s| s.until.is_none_or(|until| until > now))
    }

    /// The first profile block that refuses a call from `extension` (with `accounts`) to
    /// `destination` at `now`.
    pub fn blocked(
        &self,
        extension: &str,
        accounts: &[String],
        destination: &Destination,
        now: DateTime<Utc>,
    ) -> Option<&ProfileBlock> {
        self.blocks
            .iter()
            .find(|entry| {
                let block = &entry.block;
                let applies = match &block.subject {
                    MonitorSubject::Extension(id) => id == extension,
                    MonitorSubject::Account(id) => accounts.iter().any(|a| a == id),
                    MonitorSubject::Global => true,
                };
                applies
                    && block.until.is_none_or(|until| until > now)
                    && self
                        .rule(entry.rule)
                        .is_some_and(|r| r.profile().matches(destination))
            })
            .map(|entry| &entry.block)
    }

    /// Whether a rule in `mask` counts `metric`.
    fn watches(&self, metric: Metric, mask: u64) -> bool {
        (0..self.rule_count() as u16)
            .any(|i| mask & (1 << i) != 0 && self.rule(i).is_some_and(|r| r.metric() == metric))
    }

    fn mask_for(&self, destination: &Destination) -> u64 {
        let mut mask = 0u64;
        for i in 0..self.rule_count() as u16 {
            if let Some(rule) = self.rule(i) {
                if rule.metric().is_call_metric() && rule.profile().matches(destination) {
                    mask |= 1 << i;
                }
            }
        }
        mask
    }

    /// Records an authorize request and its decision.
    pub fn observe_attempt(&mut self, obs: &AttemptObservation<'_>, now: DateTime<Utc>) {
        if self.settings.is_empty() {
            return;
        }
        let mask = self.mask_for(obs.destination);
        if mask == 0 {
            return;
        }
        let key = destination_key(obs.destination);
        let trigger = Trigger {
            extension: Some(obs.extension),
            account: obs.accounts.first().map(String::as_str),
            source_ip: Some(obs.source_ip),
            off_hours: obs.off_hours,
        };
        let allowed = obs.allowed;
        let off_hours = obs.off_hours;
        self.apply(
            obs.extension,
            obs.accounts,
            mask,
            &trigger,
            now,
            |metric| match metric {
                Metric::Attempts => Some(Update::Add(1)),
                Metric::Denied if !allowed => Some(Update::Add(1)),
                Metric::AfterHours if off_hours => Some(Update::Add(1)),
                Metric::DistinctDestinations | Metric::RepeatedCalls => {
                    Some(Update::Destination(key))
                }
                Metric::Concurrent if allowed => Some(Update::GaugeUp),
                _ => None,
            },
        );
        if allowed {
            self.calls.insert(
                obs.call_id.into(),
                TrackedCall {
                    extension: obs.extension.into(),
                    accounts: obs.accounts.into(),
                    mask,
                    answered: false,
                    source_ip: obs.source_ip,
                    off_hours,
                },
            );
        }
    }

    /// Records that a call was answered.
    pub fn observe_answer(&mut self, call_id: &str, now: DateTime<Utc>) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.answered {
            return;
        }
        call.answered = true;
        let mask = call.mask;
        if !self.watches(Metric::Answered, mask) {
            return;
        }
        let Some(call) = self.calls.get(call_id).cloned() else {
            return;
        };
        let trigger = Trigger {
            extension: Some(&call.extension),
            account: call.accounts.first().map(String::as_str),
            source_ip: Some(call.source_ip),
            off_hours: call.off_hours,
        };
        self.apply(
            &call.extension,
            &call.accounts,
            call.mask,
            &trigger,
            now,
            |metric| (metric == Metric::Answered).then_some(Update::Add(1)),
        );
    }

    /// Records a settled call: its billed seconds and charge.
    pub fn observe_end(
        &mut self,
        call_id: &str,
        duration_s: u64,
        billed_s: u64,
        charged: Money,
        now: DateTime<Utc>,
    ) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        let trigger = Trigger {
            extension: Some(&call.extension),
            account: call.accounts.first().map(String::as_str),
            source_ip: Some(call.source_ip),
            off_hours: call.off_hours,
        };
        let short = call.answered && duration_s < self.settings.short_call_s;
        let answered = call.answered;
        let spend = charged.micros().max(0) as u64;
        self.apply(
            &call.extension,
            &call.accounts,
            call.mask,
            &trigger,
            now,
            |metric| match metric {
                Metric::Concurrent => Some(Update::GaugeDown),
                Metric::Minutes if billed_s > 0 => Some(Update::Add(billed_s)),
                Metric::Spend if spend > 0 => Some(Update::Add(spend)),
                Metric::ShortCallRatio if answered => Some(Update::Ratio { short }),
                _ => None,
            },
        );
    }

    /// Records an extension created or a change of permissions.
    pub fn observe_directory(
        &mut self,
        change: DirectoryChange,
        extension: Option<&str>,
        accounts: &[String],
        now: DateTime<Utc>,
    ) {
        if self.settings.is_empty() {
            return;
        }
        let wanted = match change {
            DirectoryChange::ExtensionCreated => Metric::ExtensionsCreated,
            DirectoryChange::PermissionsChanged => Metric::PermissionChanges,
        };
        let mut mask = 0u64;
        for i in 0..self.rule_count() as u16 {
            if self.rule(i).is_some_and(|r| r.metric() == wanted) {
                mask |= 1 << i;
            }
        }
        if mask == 0 {
            return;
        }
        let trigger = Trigger {
            extension,
            account: accounts.first().map(String::as_str),
            source_ip: None,
            off_hours: false,
        };
        self.apply(
            extension.unwrap_or(""),
            accounts,
            mask,
            &trigger,
            now,
            |metric| (metric == wanted).then_some(Update::Add(1)),
        );
    }

    /// Updates every interested rule at every level (extension, each account, global) and
    /// evaluates what changed.
    fn apply(
        &mut self,
        extension: &str,
        accounts: &[String],
        mask: u64,
        trigger: &Trigger<'_>,
        now: DateTime<Utc>,
        update_for: impl Fn(Metric) -> Option<Update>,
    ) {
        let t = now.timestamp();
        for i in 0..self.rule_count() as u16 {
            if mask & (1 << i) == 0 {
                continue;
            }
            let Some(rule) = self.rule(i) else { continue };
            let Some(update) = update_for(rule.metric()) else {
                continue;
            };
            let scope = rule.scope();
            match scope {
                Scope::Extension => {
                    if !extension.is_empty() {
                        self.update_and_evaluate(
                            i,
                            SubjectRef::Extension(extension),
                            update,
                            trigger,
                            t,
                            now,
                        );
                    }
                }
                Scope::Account => {
                    for account in accounts {
                        self.update_and_evaluate(
                            i,
                            SubjectRef::Account(account),
                            update,
                            trigger,
                            t,
                            now,
                        );
                    }
                }
                Scope::Global => {
                    self.update_and_evaluate(i, SubjectRef::Global, update, trigger, t, now);
                }
            }
        }
    }

    fn state_mut(&mut self, subject: SubjectRef<'_>) -> &mut SubjectState {
        match subject {
            SubjectRef::Extension(id) => self.extensions.entry(id.into()).or_default(),
            SubjectRef::Account(id) => self.accounts.entry(id.into()).or_default(),
            SubjectRef::Global => &mut self.global,
        }
    }

    fn state(&self, subject: &MonitorSubject) -> Option<&SubjectState> {
        self.state_of(SubjectRef::from(subject))
    }

    fn state_of(&self, subject: SubjectRef<'_>) -> Option<&SubjectState> {
        match subject {
            SubjectRef::Extension(id) => self.extensions.get(id),
            SubjectRef::Account(id) => self.accounts.get(id),
            SubjectRef::Global => Some(&self.global),
        }
    }

    fn update_and_evaluate(
        &mut self,
        rule_index: u16,
        subject: SubjectRef<'_>,
        update: Update,
        trigger: &Trigger<'_>,
        t: i64,
        now: DateTime<Utc>,
    ) {
        let Some(rule) = self.rule(rule_index) else {
            return;
        };
        let (window_s, learning_rate) = match rule {
            RuleRef::Threshold(r) => (r.window_s, 0.0),
            RuleRef::Baseline(r) => (3600, r.learning_rate),
        };
        let metric = rule.metric();
        let is_baseline = matches!(rule, RuleRef::Baseline(_));
        let state = self.state_mut(subject);
        let entry = state.entry(rule_index, || new_tracker(metric, is_baseline, t));
        let hour = t.div_euclid(3600);
        match (&mut entry.tracker, update) {
            (Tracker::Sum(ring), Update::Add(n)) => ring.add(window_s, t, n),
            (Tracker::Ratio { short, total }, Update::Ratio { short: is_short }) => {
                total.add(window_s, t, 1);
                short.add(window_s, t, u64::from(is_short));
            }
            (Tracker::Recent(recent), Update::Destination(key)) => recent.add(window_s, t, key),
            (Tracker::Gauge(g), Update::GaugeUp) => *g = g.saturating_add(1),
            (Tracker::Gauge(g), Update::GaugeDown) => *g = g.saturating_sub(1),
            (Tracker::Baseline(b), Update::Add(n)) => {
                b.add(hour, n, learning_rate);
                if entry.open_alert.is_some() {
                    b.taint();
                }
            }
            _ => {}
        }
        let Some(measured) = self.measure(rule_index, subject, t, trigger.off_hours) else {
            return;
        };
        // The common case, nothing to report and no incident going on, allocates nothing.
        let open = self
            .state_of(subject)
            .and_then(|s| s.entries.iter().find(|e| e.rule == rule_index))
            .is_some_and(|e| e.open_alert.is_some());
        if open || level_of(measured.value, measured.levels).is_some() {
            self.transition(rule_index, subject.to_owned(), measured, Some(trigger), now);
        }
    }

    /// The rule's current value for a subject and the levels that apply.
    fn measure(
        &self,
        rule_index: u16,
        subject: SubjectRef<'_>,
        t: i64,
        off_hours: bool,
    ) -> Option<Measured> {
        let rule = self.rule(rule_index)?;
        let entry = self
            .state_of(subject)?
            .entries
            .iter()
            .find(|e| e.rule == rule_index)?;
        match rule {
            RuleRef::Threshold(r) => {
                let w = r.window_s;
                let value = match &entry.tracker {
                    Tracker::Sum(ring) => ring.sum(w, t),
                    Tracker::Ratio { short, total } => {
                        let total = total.sum(w, t);
                        if total < r.min_calls.max(1) {
                            0
                        } else {
                            short.sum(w, t) * 100 / total
                        }
                    }
                    Tracker::Recent(recent) => match r.metric {
                        Metric::RepeatedCalls => recent.most_repeated(w, t),
                        _ => recent.distinct(w, t),
                    },
                    Tracker::Gauge(g) => *g,
                    Tracker::Baseline(_) => 0,
                };
                let off = match &r.schedule {
                    Some(name) => self.schedules.get(name).is_some_and(|s| {
                        DateTime::from_timestamp(t, 0).is_some_and(|at| !s.is_open(at))
                    }),
                    None => off_hours,
                };
                let levels = match (&r.off_hours, off) {
                    (Some(levels), true) => *levels,
                    _ => r.levels,
                };
                Some(Measured {
                    value,
                    levels,
                    expected: None,
                    off_hours: off,
                })
            }
            RuleRef::Baseline(r) => {
                let Tracker::Baseline(b) = &entry.tracker else {
                    return None;
                };
                let hour = t.div_euclid(3600);
                if b.hours_learned() < r.warmup_hours {
                    return Some(Measured {
                        value: 0,
                        levels: Levels::default(),
                        expected: None,
                        off_hours,
                    });
                }
                let e: Expectation =
                    b.expectation(hour, r.factor, r.deviations, r.floor, r.critical_factor);
                Some(Measured {
                    value: b.current(hour),
                    levels: Levels {
                        warning: Some(e.warning_at),
                        critical: Some(e.critical_at),
                    },
                    expected: Some(format!(
                        "{} ± {} for this hour of the week",
                        r.metric.display(e.mean.round() as u64),
                        r.metric.display(e.stddev.round() as u64)
                    )),
                    off_hours,
                })
            }
        }
    }

    fn transition(
        &mut self,
        rule_index: u16,
        subject: MonitorSubject,
        measured: Measured,
        trigger: Option<&Trigger<'_>>,
        now: DateTime<Utc>,
    ) {
        let Some(rule) = self.rule(rule_index) else {
            return;
        };
        let (kind, window_s) = match rule {
            RuleRef::Threshold(r) => (AlertKind::Threshold, r.window_s),
            RuleRef::Baseline(_) => (AlertKind::Baseline, 3600),
        };
        let (path, metric, profile, reaction) = (
            rule.path(),
            rule.metric(),
            rule.profile().describe(),
            rule.reaction().clone(),
        );
        let severity = level_of(measured.value, measured.levels);
        let open_id = self
            .state(&subject)
            .and_then(|s| s.entries.iter().find(|e| e.rule == rule_index))
            .and_then(|e| e.open_alert);
        match (open_id, severity) {
            (None, None) => {}
            (None, Some(severity)) => {
                let id = self.next_alert_id;
                self.next_alert_id += 1;
                let mut alert = Alert {
                    id,
                    rule: path,
                    kind,
                    metric,
                    subject: subject.clone(),
                    profile,
                    severity,
                    open: true,
                    opened_at: now,
                    updated_at: now,
                    closed_at: None,
                    value: measured.value,
                    peak: measured.value,
                    warning_at: measured.levels.warning,
                    critical_at: measured.levels.critical,
                    window_s,
                    expected: measured.expected.clone(),
                    summary: String::new(),
                    actions: Vec::new(),
                    acknowledged_at: None,
                    acknowledged_by: None,
                };
                alert.summary = summarize(&alert, measured.off_hours);
                let mut actions: Vec<Action> = reaction.on_warning.clone();
                if severity == Severity::Critical {
                    for a in &reaction.on_critical {
                        if !actions.contains(a) {
                            actions.push(*a);
                        }
                    }
                }
                if let Some(entry) = self
                    .state_mut(SubjectRef::from(&subject))
                    .entries
                    .iter_mut()
                    .find(|e| e.rule == rule_index)
                {
                    entry.open_alert = Some(id);
                    if let Tracker::Baseline(b) = &mut entry.tracker {
                        b.taint();
                    }
                }
                self.carry_out(&mut alert, rule_index, &actions, &reaction, trigger, now);
                self.outbox.push(MonitorEffect::Alert {
                    alert: alert.clone(),
                    event: AlertEvent::Opened,
                });
                self.alerts.insert(
                    id,
                    OpenAlert {
                        alert,
                        rule: rule_index,
                        dirty: false,
                        off_hours: measured.off_hours,
                        hold_until: None,
                    },
                );
            }
            (Some(id), severity) => {
                let Some(mut open) = self.alerts.remove(&id) else {
                    return;
                };
                open.alert.value = measured.value;
                open.off_hours = measured.off_hours;
                if measured.value > open.alert.peak {
                    open.alert.peak = measured.value;
                    open.alert.warning_at = measured.levels.warning;
                    open.alert.critical_at = measured.levels.critical;
                    open.alert.expected = measured.expected.clone();
                    open.alert.updated_at = now;
                    open.alert.summary = summarize(&open.alert, measured.off_hours);
                    open.dirty = true;
                }
                if severity == Some(Severity::Critical) && open.alert.severity == Severity::Warning
                {
                    open.alert.severity = Severity::Critical;
                    open.alert.updated_at = now;
                    open.alert.summary = summarize(&open.alert, measured.off_hours);
                    let actions: Vec<Action> = reaction
                        .on_critical
                        .iter()
                        .filter(|a| !reaction.on_warning.contains(a))
                        .copied()
                        .collect();
                    self.carry_out(
                        &mut open.alert,
                        rule_index,
                        &actions,
                        &reaction,
                        trigger,
                        now,
                    );
                    open.dirty = false;
                    self.outbox.push(MonitorEffect::Alert {
                        alert: open.alert.clone(),
                        event: AlertEvent::Escalated,
                    });
                }
                self.alerts.insert(id, open);
            }
        }
    }

    /// Applies a level's actions; records each in the alert.
    fn carry_out(
        &mut self,
        alert: &mut Alert,
        rule_index: u16,
        actions: &[Action],
        reaction: &Reaction,
        trigger: Option<&Trigger<'_>>,
        now: DateTime<Utc>,
    ) {
        let (action_for_s, shadow) = (reaction.action_for_s, reaction.shadow);
        let until = action_for_s.map(|s| now + Duration::seconds(s as i64));
        let lasting = match action_for_s {
            Some(s) => format!("for {}", duration_text(s)),
            None => "until lifted".to_string(),
        };
        for action in actions {
            if *action != Action::Alert && shadow {
                alert.actions.push(format!(
                    "shadow mode: would {}",
                    action.as_str().replace('_', " ")
                ));
                continue;
            }
            match action {
                Action::Alert => {}
                Action::DenyProfile => {
                    self.blocks
                        .retain(|b| !(b.rule == rule_index && b.block.subject == alert.subject));
                    self.blocks.push(BlockEntry {
                        rule: rule_index,
                        block: ProfileBlock {
                            rule: alert.rule.clone(),
                            subject: alert.subject.clone(),
                            alert_id: alert.id,
                            profile: alert.profile.clone(),
                            until,
                        },
                    });
                    alert.actions.push(format!(
                        "denied {} for {} {}",
                        alert.profile,
                        alert.subject,
                        match action_for_s {
                            Some(s) => format!("for {}", duration_text(s)),
                            None => "until the alert closes".to_string(),
                        }
                    ));
                }
                Action::SuspendExtension | Action::SuspendAccount => {
                    let subject = match (action, &alert.subject) {
                        (Action::SuspendExtension, MonitorSubject::Extension(id)) => {
                            Some(MonitorSubject::Extension(id.clone()))
                        }
                        (Action::SuspendExtension, _) => trigger
                            .and_then(|t| t.extension)
                            .filter(|e| !e.is_empty())
                            .map(|e| MonitorSubject::Extension(e.to_string())),
                        (_, MonitorSubject::Account(id)) => {
                            Some(MonitorSubject::Account(id.clone()))
                        }
                        _ => trigger
                            .and_then(|t| t.account)
                            .map(|a| MonitorSubject::Account(a.to_string())),
                    };
                    let Some(subject) = subject else {
                        alert
                            .actions
                            .push(format!("{} skipped: no call to act on", action.as_str()));
                        continue;
                    };
                    let suspension = Suspension {
                        subject: subject.clone(),
                        since: now,
                        until,
                        rule: alert.rule.clone(),
                        alert_id: Some(alert.id),
                        reason: format!("alert {}: {}", alert.id, alert.summary),
                    };
                    alert.actions.push(format!("suspended {subject} {lasting}"));
                    self.suspensions.insert(subject, suspension.clone());
                    self.outbox.push(MonitorEffect::Suspended(suspension));
                }
                Action::BanIp => match trigger.and_then(|t| t.source_ip) {
                    Some(ip) => {
                        alert.actions.push(format!("banned {ip}"));
                        self.outbox.push(MonitorEffect::BanIp {
                            ip,
                            for_s: action_for_s,
                            rule: alert.rule.clone(),
                            alert_id: alert.id,
                        });
                    }
                    None => alert
                        .actions
                        .push("ban_ip skipped: no source address".to_string()),
                },
            }
        }
    }

    /// Closes alerts whose metric fell below their levels, writes back changed figures,
    /// lifts timed suspensions and blocks that ran out, and drops idle state. Call it every
    /// few seconds.
    pub fn tick(&mut self, now: DateTime<Utc>) {
        let t = now.timestamp();
        let mut ids: Vec<u64> = self.alerts.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(open) = self.alerts.get(&id) else {
                continue;
            };
            if open.hold_until.is_some_and(|h| t < h) {
                continue;
            }
            let (rule, subject, off_hours) =
                (open.rule, open.alert.subject.clone(), open.off_hours);
            let measured = self.measure(rule, SubjectRef::from(&subject), t, off_hours);
            let below = match &measured {
                Some(m) => level_of(m.value, m.levels).is_none(),
                None => true,
            };
            if below {
                self.close(id, now, measured.map(|m| m.value));
            } else if let Some(open) = self.alerts.get_mut(&id) {
                if open.dirty {
                    open.dirty = false;
                    self.outbox.push(MonitorEffect::Alert {
                        alert: open.alert.clone(),
                        event: AlertEvent::Updated,
                    });
                }
            }
        }
        self.blocks
            .retain(|b| b.block.until.is_none_or(|until| until > now));
        let mut expired: Vec<MonitorSubject> = self
            .suspensions
            .iter()
            .filter(|(_, s)| s.until.is_some_and(|until| until <= now))
            .map(|(k, _)| k.clone())
            .collect();
        expired.sort();
        for subject in expired {
            if let Some(s) = self.suspensions.remove(&subject) {
                self.outbox.push(MonitorEffect::Lifted(s));
            }
        }
        if t >= self.last_sweep.saturating_add(60) {
            self.last_sweep = t;
            self.sweep(t);
        }
    }

    fn close(&mut self, id: u64, now: DateTime<Utc>, value: Option<u64>) {
        let Some(mut open) = self.alerts.remove(&id) else {
            return;
        };
        open.alert.open = false;
        open.alert.closed_at = Some(now);
        open.alert.updated_at = now;
        if let Some(v) = value {
            open.alert.value = v;
        }
        if let Some(state) = self.state_mut_existing(&open.alert.subject) {
            if let Some(entry) = state.entries.iter_mut().find(|e| e.rule == open.rule) {
                entry.open_alert = None;
            }
        }
        // A deny "until the alert closes" ends with it.
        self.blocks
            .retain(|b| !(b.block.alert_id == id && b.block.until.is_none()));
        self.outbox.push(MonitorEffect::Alert {
            alert: open.alert,
            event: AlertEvent::Closed,
        });
    }

    fn state_mut_existing(&mut self, subject: &MonitorSubject) -> Option<&mut SubjectState> {
        match subject {
            MonitorSubject::Extension(id) => self.extensions.get_mut(id.as_str()),
            MonitorSubject::Account(id) => self.accounts.get_mut(id.as_str()),
            MonitorSubject::Global => Some(&mut self.global),
        }
    }

    /// Drops per-subject state that holds nothing: every window empty, no call up, no
    /// open alert, no baseline.
    fn sweep(&mut self, t: i64) {
        let settings = &self.settings;
        let idle = |state: &SubjectState| {
            state.entries.iter().all(|e| {
                e.open_alert.is_none()
                    && match &e.tracker {
                        Tracker::Sum(ring) => settings
                            .rules
                            .get(usize::from(e.rule))
                            .is_none_or(|r| ring.is_idle(r.window_s, t)),
                        Tracker::Ratio { total, .. } => settings
                            .rules
                            .get(usize::from(e.rule))
                            .is_none_or(|r| total.is_idle(r.window_s, t)),
                        Tracker::Recent(recent) => settings
                            .rules
                            .get(usize::from(e.rule))
                            .is_none_or(|r| recent.is_idle(r.window_s, t)),
                        Tracker::Gauge(g) => *g == 0,
                        Tracker::Baseline(_) => false,
                    }
            })
        };
        self.extensions.retain(|_, s| !idle(s));
        self.accounts.retain(|_, s| !idle(s));
    }

    /// A person acknowledged an open alert: it stays open (the condition goes on) but is
    /// marked as seen.
    pub fn acknowledge(&mut self, id: u64, by: &str, now: DateTime<Utc>) -> Option<Alert> {
        let open = self.alerts.get_mut(&id)?;
        open.alert.acknowledged_at = Some(now);
        open.alert.acknowledged_by = Some(by.to_string());
        open.alert.updated_at = now;
        let alert = open.alert.clone();
        self.outbox.push(MonitorEffect::Alert {
            alert: alert.clone(),
            event: AlertEvent::Acknowledged,
        });
        Some(alert)
    }

    /// A person lifted a rule's suspension; the caller records it (no effect is queued).
    pub fn lift(&mut self, subject: &MonitorSubject) -> Option<Suspension> {
        self.suspensions.remove(subject)
    }

    /// Learned baselines changed since the last call, as `(rule path, subject, bytes)`,
    /// for the store.
    pub fn take_baseline_snapshots(&mut self) -> Vec<(String, MonitorSubject, Vec<u8>)> {
        let paths: Vec<String> = (0..self.rule_count() as u16)
            .map(|i| self.rule(i).map(|r| r.path()).unwrap_or_default())
            .collect();
        let mut out = Vec::new();
        let mut collect = |subject: MonitorSubject, state: &mut SubjectState| {
            for entry in &mut state.entries {
                if let Tracker::Baseline(b) = &mut entry.tracker {
                    if b.is_dirty() {
                        if let Some(path) = paths.get(usize::from(entry.rule)) {
                            out.push((path.clone(), subject.clone(), b.to_bytes()));
                        }
                    }
                }
            }
        };
        for (id, state) in &mut self.extensions {
            collect(MonitorSubject::Extension(id.to_string()), state);
        }
        for (id, state) in &mut self.accounts {
            collect(MonitorSubject::Account(id.to_string()), state);
        }
        out
    }

    /// Every learned baseline, changed or not (for carrying them over a policy reload).
    pub fn all_baseline_snapshots(&mut self) -> Vec<(String, MonitorSubject, Vec<u8>)> {
        for state in self
            .extensions
            .values_mut()
            .chain(self.accounts.values_mut())
        {
            for entry in &mut state.entries {
                if let Tracker::Baseline(b) = &mut entry.tracker {
                    b.mark_dirty();
                }
            }
        }
        self.take_baseline_snapshots()
    }

    /// The id the next alert gets.
    pub fn next_alert_id(&self) -> u64 {
        self.next_alert_id
    }

    /// Puts stored baselines back; those of rules no longer in the policy, or unreadable,
    /// are skipped (their count is returned).
    pub fn restore_baselines(
        &mut self,
        snapshots: Vec<(String, MonitorSubject, Vec<u8>)>,
    ) -> usize {
        let mut skipped = 0;
        for (path, subject, bytes) in snapshots {
            let rule = self
                .rule_index_by_path(&path)
                .filter(|i| matches!(self.rule(*i), Some(RuleRef::Baseline(_))));
            match (rule, Baseline::from_bytes(&bytes)) {
                (Some(rule), Some(b)) if subject != MonitorSubject::Global => {
                    let state = self.state_mut(SubjectRef::from(&subject));
                    state.entries.retain(|e| e.rule != rule);
                    state.entries.push(Entry {
                        rule,
                        tracker: Tracker::Baseline(b),
                        open_alert: None,
                    });
                }
                _ => skipped += 1,
            }
        }
        skipped
    }

    /// Restores open alerts, suspensions and the id counter after a restart. Alerts of
    /// rules no longer in the policy are closed (see [`Monitor::drain_effects`]).
    pub fn restore(
        &mut self,
        open_alerts: Vec<Alert>,
        suspensions: Vec<Suspension>,
        next_alert_id: u64,
        now: DateTime<Utc>,
    ) {
        self.next_alert_id = self.next_alert_id.max(next_alert_id);
        for s in suspensions {
            self.suspensions.insert(s.subject.clone(), s);
        }
        for mut alert in open_alerts {
            self.next_alert_id = self.next_alert_id.max(alert.id + 1);
            match self.rule_index_by_path(&alert.rule) {
                Some(rule) => {
                    let is_baseline = matches!(self.rule(rule), Some(RuleRef::Baseline(_)));
                    let metric = alert.metric;
                    let subject = alert.subject.clone();
                    let t = now.timestamp();
                    let entry = self
                        .state_mut(SubjectRef::from(&subject))
                        .entry(rule, || new_tracker(metric, is_baseline, t));
                    entry.open_alert = Some(alert.id);
                    let window = i64::try_from(alert.window_s.max(60)).unwrap_or(3600);
                    // Its deny, if the rule has one at this severity, holds again.
                    if let Some(r) = self.rule(rule) {
                        let reaction = r.reaction();
                        let denies = reaction.on_warning.contains(&Action::DenyProfile)
                            || (alert.severity == Severity::Critical
                                && reaction.on_critical.contains(&Action::DenyProfile));
                        if denies {
                            let until = reaction
                                .action_for_s
                                .map(|s| alert.opened_at + Duration::seconds(s as i64));
                            if until.is_none_or(|u| u > now) {
                                let block = ProfileBlock {
                                    rule: alert.rule.clone(),
                                    subject: alert.subject.clone(),
                                    alert_id: alert.id,
                                    profile: alert.profile.clone(),
                                    until,
                                };
                                self.blocks.push(BlockEntry { rule, block });
                            }
                        }
                    }
                    self.alerts.insert(
                        alert.id,
                        OpenAlert {
                            alert,
                            rule,
                            dirty: false,
                            off_hours: false,
                            hold_until: Some(t + window),
                        },
                    );
                }
                None => {
                    alert.open = false;
                    alert.closed_at = Some(now);
                    alert.updated_at = now;
                    alert
                        .actions
                        .push("closed: its rule is no longer in the policy".into());
                    self.outbox.push(MonitorEffect::Alert {
                        alert,
                        event: AlertEvent::Closed,
                    });
                }
            }
        }
    }
}

fn new_tracker(metric: Metric, is_baseline: bool, t: i64) -> Tracker {
    if is_baseline {
        return Tracker::Baseline(Baseline::new(t.div_euclid(3600)));
    }
    match metric {
        Metric::Concurrent => Tracker::Gauge(0),
        Metric::ShortCallRatio => Tracker::Ratio {
            short: Ring::default(),
            total: Ring::default(),
        },
        Metric::DistinctDestinations | Metric::RepeatedCalls => Tracker::Recent(Recent::default()),
        _ => Tracker::Sum(Ring::default()),
    }
}

fn level_of(value: u64, levels: Levels) -> Option<Severity> {
    if levels.critical.is_some_and(|c| value >= c) {
        Some(Severity::Critical)
    } else if levels.warning.is_some_and(|w| value >= w) {
        Some(Severity::Warning)
    } else {
        None
    }
}

fn summarize(alert: &Alert, off_hours: bool) -> String {
    let metric = alert.metric;
    let window = match alert.kind {
        AlertKind::Threshold if metric == Metric::Concurrent => "now".to_string(),
        AlertKind::Threshold => format!("in {}", duration_text(alert.window_s)),
        AlertKind::Baseline => "this hour".to_string(),
    };
    let level = match alert.severity {
        Severity::Critical => alert.critical_at,
        Severity::Warning => alert.warning_at,
    };
    let mut text = format!(
        "{}: {} {} ({}) {}",
        alert.subject,
        metric.display(alert.peak),
        metric.as_str().replace('_', " "),
        alert.profile,
        window
    );
    if let Some(level) = level {
        text.push_str(&format!(
            ", {} at {}{}",
            alert.severity.as_str(),
            metric.display(level),
            if off_hours { " (off hours)" } else { "" }
        ));
    }
    if let Some(expected) = &alert.expected {
        text.push_str(&format!("; usually {expected}"));
    }
    text
}

#[derive(Clone, Copy, Debug)]
enum Update {
    Add(u64),
    Ratio { short: bool },
    Destination(u64),
    GaugeUp,
    GaugeDown,
}

struct Measured {
    value: u64,
    levels: Levels,
    expected: Option<String>,
    off_hours: bool,
}

#[derive(Clone, Copy)]
enum SubjectRef<'a> {
    Extension(&'a str),
    Account(&'a str),
    Global,
}

impl SubjectRef<'_> {
    fn to_owned(self) -> MonitorSubject {
        match self {
            SubjectRef::Extension(id) => MonitorSubject::Extension(id.to_string()),
            SubjectRef::Account(id) => MonitorSubject::Account(id.to_string()),
            SubjectRef::Global => MonitorSubject::Global,
        }
    }
}

impl<'a> From<&'a MonitorSubject> for SubjectRef<'a> {
    fn from(s: &'a MonitorSubject) -> Self {
        match s {
            MonitorSubject::Extension(id) => SubjectRef::Extension(id),
            MonitorSubject::Account(id) => SubjectRef::Account(id),
            MonitorSubject::Global => SubjectRef::Global,
        }
    }
}

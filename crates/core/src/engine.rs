//! The decision: `authorize`, `answer`, `extend`, `end` and expiry, over a [`Policy`] and a
//! [`Ledger`]. Time is always an argument; nothing here reads a clock or does I/O.
//!
//! `authorize` runs the checks in a fixed order and stops at the first that denies:
//! emergency (always allowed, free) → suspension → source IP → destination rules (extension,
//! then each account up the hierarchy) → business hours → charging plan → concurrent calls
//! → credit. [`Engine::explain`] runs the same checks without stopping or reserving and
//! returns every verdict.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::ledger::{
    ActiveCall, CallLevel, Headroom, Ledger, LedgerError, LedgerEvent, LimitKind, Periods,
    SettleReason, Settlement, Subject, SubjectKind,
};
use crate::money::{Currency, Money};
use crate::monitor::{AttemptObservation, DirectoryChange, Monitor, MonitorSubject};
use crate::number::{classify, Destination, DestinationClass, NumberError};
use crate::policy::{
    Account, DestinationRules, Extension, Limit, Limits, Policy, DEFAULT_ALLOWED_CLASSES,
    DEFAULT_CLASS_NOTE,
};
use crate::rating::Rate;

/// A call to authorize.
#[derive(Clone, Debug)]
pub struct AuthorizeRequest<'a> {
    pub call_id: &'a str,
    pub extension: &'a str,
    pub source_ip: IpAddr,
    pub number: &'a str,
    /// What the PBX needs to end this call later (the kill switch): a Kamailio dialog's
    /// `h_entry:h_id`, an Asterisk channel name, a FreeSWITCH uuid. Opaque here.
    pub pbx_ref: Option<&'a str>,
}

/// Stable machine codes for a denied call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyCode {
    ExtensionSuspended,
    AccountSuspended,
    IpNotAllowed,
    DestinationBlocked,
    ClassNotAllowed,
    OutsideBusinessHours,
    NoRate,
    TooManyConcurrentCalls,
    InsufficientCredit,
    /// `extend` only: the call already has the extension's `max_call_duration`.
    MaxCallDurationReached,
    /// `extend` only: the call's grant (plus grace) has run out.
    CallExpired,
    /// A monitoring rule's `deny_profile` action refuses this kind of call for a while.
    BlockedByMonitor,
}

impl DenyCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::ExtensionSuspended => "extension_suspended",
            DenyCode::AccountSuspended => "account_suspended",
            DenyCode::IpNotAllowed => "ip_not_allowed",
            DenyCode::DestinationBlocked => "destination_blocked",
            DenyCode::ClassNotAllowed => "class_not_allowed",
            DenyCode::OutsideBusinessHours => "outside_business_hours",
            DenyCode::NoRate => "no_rate",
            DenyCode::TooManyConcurrentCalls => "too_many_concurrent_calls",
            DenyCode::InsufficientCredit => "insufficient_credit",
            DenyCode::MaxCallDurationReached => "max_call_duration_reached",
            DenyCode::CallExpired => "call_expired",
            DenyCode::BlockedByMonitor => "blocked_by_monitor",
        }
    }
}

/// A refusal: the code, the rule that decided (a policy path) and a message with figures.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Deny {
    pub code: DenyCode,
    pub rule: String,
    pub message: String,
}

/// The rate a call is charged at, for the answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RateView {
    pub plan: String,
    pub prefix: String,
    pub description: String,
    pub price_per_minute: Money,
    pub connection_fee: Money,
    pub increments: String,
    pub currency: Currency,
}

/// A granted call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Grant {
    pub max_duration_s: u64,
    /// `None` for free calls (internal, emergency).
    pub rate: Option<RateView>,
    pub reserved: Money,
    pub currency: Currency,
    pub destination: Destination,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "one decision per request, returned by value and serialized at once: boxing would only add an allocation"
)]
pub enum Decision {
    Allow(Grant),
    Deny(Deny),
}

/// A request the engine cannot act on: bad input, not a policy decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown extension {0:?}")]
    UnknownExtension(String),
    #[error("extension {extension:?} belongs to unknown account {account:?}")]
    UnknownAccount { extension: String, account: String },
    #[error(transparent)]
    Number(#[from] NumberError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("call id must be 1 to 128 printable characters")]
    BadCallId,
    #[error("pbx_ref must be 1 to 256 printable characters")]
    BadPbxRef,
    #[error("the end of a call cannot be before its start")]
    EndBeforeStart,
}

/// One rule's verdict in an explanation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub rule: String,
    pub passed: bool,
    pub detail: String,
}

/// Everything `explain` knows about a request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    pub extension: String,
    pub account_chain: Vec<String>,
    pub destination: Destination,
    pub rate: Option<RateView>,
    pub credit: Vec<Headroom>,
    pub checks: Vec<Check>,
    pub decision: Decision,
}

/// The result of `extend`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExtendOutcome {
    pub call_id: String,
    /// Total granted seconds from answer, after the extension.
    pub granted_s: u64,
    pub added_s: u64,
    pub reserved: Money,
    /// Why no (or less) time was added, when that is so.
    pub limited_by: Option<Deny>,
}

/// Policy and ledger together; one per service, behind one lock.
#[derive(Clone, Debug)]
pub struct Engine {
    pub policy: Policy,
    pub ledger: Ledger,
    /// Call-pattern monitoring; its suspensions and profile blocks are checked by
    /// `authorize`, and every decision, answer and end is observed by it.
    pub monitor: Monitor,
}

fn check_call_id(call_id: &str) -> Result<(), RequestError> {
    if call_id.is_empty() || call_id.len() > 128 || !call_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(RequestError::BadCallId);
    }
    Ok(())
}

fn rate_view(plan: &str, currency: Currency, rate: &Rate) -> RateView {
    RateView {
        plan: plan.to_string(),
        prefix: format!("+{}", rate.prefix),
        description: rate.description.clone(),
        price_per_minute: rate.price_per_minute,
        connection_fee: rate.connection_fee,
        increments: rate.increments.to_string(),
        currency,
    }
}

/// Collects verdicts for `explain`, or stops at the first denial for `authorize`.
struct Verdicts {
    trace: Option<Vec<Check>>,
    first_deny: Option<Deny>,
}

impl Verdicts {
    fn pass(&mut self, rule: impl FnOnce() -> (String, String)) {
        if let Some(trace) = &mut self.trace {
            let (rule, detail) = rule();
            trace.push(Check {
                rule,
                passed: true,
                detail,
            });
        }
    }

    /// Records a denial; returns true when evaluation should stop.
    fn deny(&mut self, deny: Deny) -> bool {
        if let Some(trace) = &mut self.trace {
            trace.push(Check {
                rule: deny.rule.clone(),
                passed: false,
                detail: deny.message.clone(),
            });
        }
        if self.first_deny.is_none() {
            self.first_deny = Some(deny);
        }
        self.trace.is_none()
    }
}

/// The destination verdict of one level's rules.
enum RuleVerdict {
    Denied(Deny),
    Allowed(String),
}

fn level_rules_verdict(
    level_name: &str,
    rules: &DestinationRules,
    default_classes: bool,
    destination: &Destination,
) -> RuleVerdict {
    let digits = destination.digits();
    let is_e164 = destination.e164.is_some();
    if is_e164 {
        if let Some(prefix) = rules
            .deny_prefixes
            .iter()
            .find(|p| digits.starts_with(p.as_str()))
        {
            return RuleVerdict::Denied(Deny {
                code: DenyCode::DestinationBlocked,
                rule: format!("{level_name} rules.deny_prefixes"),
                message: format!(
                    "{level_name}: {} matches denied prefix +{prefix}",
                    destination.e164.as_deref().unwrap_or(digits)
                ),
            });
        }
        if let Some(country) = destination.country.as_deref() {
            if rules.deny_countries.iter().any(|c| c == country) {
                return RuleVerdict::Denied(Deny {
                    code: DenyCode::DestinationBlocked,
                    rule: format!("{level_name} rules.deny_countries"),
                    message: format!("{level_name}: calls to country {country} are denied"),
                });
            }
        }
        if let Some(prefix) = rules
            .allow_prefixes
            .iter()
            .find(|p| digits.starts_with(p.as_str()))
        {
            return RuleVerdict::Allowed(format!("explicitly allowed prefix +{prefix}"));
        }
        if let Some(country) = destination.country.as_deref() {
            if rules.allow_countries.iter().any(|c| c == country) {
                return RuleVerdict::Allowed(format!("explicitly allowed country {country}"));
            }
        }
    }
    let class = destination.class;
    match rules.allowed_classes {
        Some(allowed) if allowed.contains(class) => {
            RuleVerdict::Allowed(format!("class {class} is allowed"))
        }
        Some(allowed) => RuleVerdict::Denied(Deny {
            code: DenyCode::ClassNotAllowed,
            rule: format!("{level_name} rules.allowed_classes"),
            message: format!(
                "{level_name}: {class} destinations are not allowed (allowed: {allowed}){}",
                destination
                    .high_risk
                    .as_ref()
                    .map(|h| format!("; +{} is high risk: {}", h.prefix, h.reason))
                    .unwrap_or_default()
            ),
        }),
        None if default_classes => {
            if DEFAULT_ALLOWED_CLASSES.contains(&class) {
                RuleVerdict::Allowed(format!("class {class} is allowed by default"))
            } else {
                RuleVerdict::Denied(Deny {
                    code: DenyCode::ClassNotAllowed,
                    rule: format!("{level_name} rules.allowed_classes"),
                    message: format!(
                        "{level_name}: {class} destinations are not allowed ({DEFAULT_CLASS_NOTE}){}",
                        destination
                            .high_risk
                            .as_ref()
                            .map(|h| format!("; +{} is high risk: {}", h.prefix, h.reason))
                            .unwrap_or_default()
                    ),
                })
            }
        }
        None => RuleVerdict::Allowed("no class restriction at this level".to_string()),
    }
}

impl Engine {
    pub fn new(policy: Policy) -> Engine {
        Engine::with_ledger(policy, Ledger::new())
    }

    /// An engine over a restored ledger; the monitor starts empty.
    pub fn with_ledger(policy: Policy, ledger: Ledger) -> Engine {
        let monitor = Monitor::new(policy.monitor.clone(), &policy.schedules);
        Engine {
            policy,
            ledger,
            monitor,
        }
    }

    /// The calls in progress that count against `subject` (an extension's own calls, or
    /// every call under an account, at any depth): what the kill switch ends when the
    /// subject is suspended. Emergency calls are left out.
    pub fn calls_of(&self, subject: &Subject) -> Vec<&ActiveCall> {
        let mut calls: Vec<&ActiveCall> = self
            .ledger
            .calls()
            // An emergency call is never ended.
            .filter(|c| c.class != DestinationClass::Emergency)
            .filter(|c| match subject.kind {
                SubjectKind::Extension => c.extension == subject.id,
                SubjectKind::Account => c.levels.iter().any(|l| &l.subject == subject),
            })
            .collect();
        calls.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        calls
    }

    /// Lets the monitor close alerts, lift timed suspensions and forget idle state.
    pub fn tick(&mut self, now: DateTime<Utc>) {
        self.monitor.tick(now);
    }

    /// Records a directory change (extension created, permissions changed) for the
    /// inventory metrics.
    pub fn observe_directory(
        &mut self,
        change: DirectoryChange,
        extension: Option<&str>,
        account: &str,
        now: DateTime<Utc>,
    ) {
        if self.monitor.settings().is_empty() {
            return;
        }
        let chain: Vec<String> = self
            .policy
            .account_chain(account)
            .iter()
            .map(|a| a.id.clone())
            .collect();
        self.monitor
            .observe_directory(change, extension, &chain, now);
    }

    fn observe_attempt(
        &mut self,
        request: &AuthorizeRequest<'_>,
        account_chain: &[String],
        destination: &Destination,
        allowed: bool,
        now: DateTime<Utc>,
    ) {
        if self.monitor.settings().is_empty() {
            return;
        }
        let off_hours = self
            .policy
            .extensions
            .get(request.extension)
            .and_then(|ext| {
                let chain = self.policy.account_chain(&ext.account);
                self.policy
                    .schedule_for(ext, &chain)
                    .map(|s| !s.is_open(now))
            })
            .unwrap_or(false);
        self.monitor.observe_attempt(
            &AttemptObservation {
                call_id: request.call_id,
                extension: request.extension,
                accounts: account_chain,
                source_ip: request.source_ip.to_canonical(),
                destination,
                allowed,
                off_hours,
            },
            now,
        );
    }

    /// The time zone a level counts its days and months in.
    pub fn time_zone_of(policy: &Policy, subject: &Subject) -> Tz {
        let account = match subject.kind {
            SubjectKind::Account => policy.accounts.get(&subject.id),
            SubjectKind::Extension => policy
                .extensions
                .get(&subject.id)
                .and_then(|e| policy.accounts.get(&e.account)),
        };
        account.map(|a| a.time_zone).unwrap_or(Tz::UTC)
    }

    /// The limits of a level in the current policy (`None` if it no longer exists).
    pub fn limits_of<'a>(policy: &'a Policy, subject: &Subject) -> Option<&'a Limits> {
        match subject.kind {
            SubjectKind::Account => policy.accounts.get(&subject.id).map(|a| &a.limits),
            SubjectKind::Extension => policy.extensions.get(&subject.id).map(|e| &e.limits),
        }
    }

    /// Headroom of every level of an extension at `now`, extension first.
    pub fn credit_of(
        &self,
        extension: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Headroom>, RequestError> {
        let ext = self
            .policy
            .extensions
            .get(extension)
            .ok_or_else(|| RequestError::UnknownExtension(extension.to_string()))?;
        let chain = self.policy.account_chain(&ext.account);
        Ok(self.headrooms(ext, &chain, now))
    }

    fn headrooms(&self, ext: &Extension, chain: &[&Account], now: DateTime<Utc>) -> Vec<Headroom> {
        let mut out = Vec::with_capacity(1 + chain.len());
        let ext_tz = chain.first().map(|a| a.time_zone).unwrap_or(Tz::UTC);
        out.push(self.ledger.headroom(
            &Subject::extension(&ext.id),
            &ext.limits,
            Periods::at(now, ext_tz),
        ));
        for account in chain {
            out.push(self.ledger.headroom(
                &Subject::account(&account.id),
                &account.limits,
                Periods::at(now, account.time_zone),
            ));
        }
        out
    }

    /// Authorizes a call: answers allow (and reserves its cost at every level) or deny.
    pub fn authorize(
        &mut self,
        request: &AuthorizeRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Decision, Option<LedgerEvent>), RequestError> {
        check_call_id(request.call_id)?;
        if request.pbx_ref.is_some_and(|r| {
            r.is_empty() || r.len() > 256 || !r.chars().all(|c| c.is_ascii_graphic())
        }) {
            return Err(RequestError::BadPbxRef);
        }
        if self.ledger.call(request.call_id).is_some() {
            return Err(LedgerError::DuplicateCall(request.call_id.to_string()).into());
        }
        let mut verdicts = Verdicts {
            trace: None,
            first_deny: None,
        };
        let evaluation = self.evaluate(request, now, &mut verdicts)?;
        if let Some(deny) = verdicts.first_deny {
            self.observe_attempt(
                request,
                &evaluation.account_chain,
                &evaluation.destination,
                false,
                now,
            );
            return Ok((Decision::Deny(deny), None));
        }
        let granted = evaluation.granted_s;
        let reserved = evaluation
            .rate
            .as_ref()
            .map(|r| r.cost(granted))
            .unwrap_or(Money::ZERO);
        let levels = evaluation.levels;
        let call = ActiveCall {
            call_id: request.call_id.to_string(),
            extension: request.extension.to_string(),
            levels,
            destination: evaluation.destination.digits().to_string(),
            class: evaluation.destination.class,
            rate: evaluation.rate.clone(),
            granted_s: granted,
            cap_s: evaluation.cap_s,
            reserved,
            authorized_at: now,
            answered_at: None,
            expires_at: now
                + Duration::seconds(
                    i64::from(self.policy.credit.answer_timeout_s)
                        + granted as i64
                        + i64::from(self.policy.credit.expiry_grace_s),
                ),
            pbx_ref: request.pbx_ref.map(str::to_string),
        };
        let policy = &self.policy;
        let event = self
            .ledger
            .open(call, now, |s| Engine::time_zone_of(policy, s))?;
        self.observe_attempt(
            request,
            &evaluation.account_chain,
            &evaluation.destination,
            true,
            now,
        );
        Ok((
            Decision::Allow(Grant {
                max_duration_s: granted,
                rate: evaluation.rate_view,
                reserved,
                currency: evaluation.currency,
                destination: evaluation.destination,
            }),
            Some(event),
        ))
    }

    /// Every rule's verdict on a request, without reserving anything.
    pub fn explain(
        &self,
        request: &AuthorizeRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Explanation, RequestError> {
        let mut verdicts = Verdicts {
            trace: Some(Vec::new()),
            first_deny: None,
        };
        let evaluation = self.evaluate(request, now, &mut verdicts)?;
        let decision = match verdicts.first_deny {
            Some(deny) => Decision::Deny(deny),
            None => Decision::Allow(Grant {
                max_duration_s: evaluation.granted_s,
                reserved: evaluation
                    .rate
                    .as_ref()
                    .map(|r| r.cost(evaluation.granted_s))
                    .unwrap_or(Money::ZERO),
                rate: evaluation.rate_view.clone(),
                currency: evaluation.currency,
                destination: evaluation.destination.clone(),
            }),
        };
        Ok(Explanation {
            extension: request.extension.to_string(),
            account_chain: evaluation.account_chain,
            destination: evaluation.destination,
            rate: evaluation.rate_view,
            credit: evaluation.credit,
            checks: verdicts.trace.unwrap_or_default(),
            decision,
        })
    }

    fn evaluate(
        &self,
        request: &AuthorizeRequest<'_>,
        now: DateTime<Utc>,
        verdicts: &mut Verdicts,
    ) -> Result<Evaluation, RequestError> {
        let policy = &self.policy;
        let ext = policy
            .extensions
            .get(request.extension)
            .ok_or_else(|| RequestError::UnknownExtension(request.extension.to_string()))?;
        let chain = policy.account_chain(&ext.account);
        let Some(account) = chain.first() else {
            return Err(RequestError::UnknownAccount {
                extension: ext.id.clone(),
                account: ext.account.clone(),
            });
        };
        let destination = classify(
            request.number,
            &account.dial_plan,
            &policy.emergency_numbers,
            &policy.high_risk,
        )?;
        let ext_name = format!("extension {}", ext.id);
        let cap_s = u64::from(ext.max_call_duration_s);
        let mut evaluation = Evaluation {
            account_chain: chain.iter().map(|a| a.id.clone()).collect(),
            levels: Vec::new(),
            rate: None,
            rate_view: None,
            currency: account.currency,
            granted_s: cap_s,
            cap_s,
            credit: Vec::new(),
            destination,
        };
        let ext_periods = Periods::at(now, account.time_zone);
        evaluation.levels.push(CallLevel {
            subject: Subject::extension(&ext.id),
            day: ext_periods.day,
            month: ext_periods.month,
        });
        for acc in &chain {
            let periods = Periods::at(now, acc.time_zone);
            evaluation.levels.push(CallLevel {
                subject: Subject::account(&acc.id),
                day: periods.day,
                month: periods.month,
            });
        }
        let class = evaluation.destination.class;
        if class == DestinationClass::Emergency {
            verdicts.pass(|| {
                (
                    "emergency_numbers".to_string(),
                    format!(
                        "{} is an emergency number: always allowed, never charged",
                        evaluation.destination.dialed
                    ),
                )
            });
            // Counted at no level: it holds no money and takes no concurrent-call slot.
            evaluation.levels.clear();
            return Ok(evaluation);
        }

        // An IPv4 client seen through an IPv6 socket (::ffff:192.0.2.1) is that IPv4 address.
        let source_ip = request.source_ip.to_canonical();

        // Suspension.
        if ext.suspended {
            let stop = verdicts.deny(Deny {
                code: DenyCode::ExtensionSuspended,
                rule: format!("{ext_name} suspended"),
                message: format!("{ext_name} is suspended"),
            });
            if stop {
                return Ok(evaluation);
            }
        }
        for acc in &chain {
            if acc.suspended {
                let stop = verdicts.deny(Deny {
                    code: DenyCode::AccountSuspended,
                    rule: format!("account {} suspended", acc.id),
                    message: format!("account {} is suspended", acc.id),
                });
                if stop {
                    return Ok(evaluation);
                }
            }
        }
        // Suspensions and profile denies decided by monitoring rules.
        if self.monitor.restricts_anything() {
            let mut monitor_denies: Vec<Deny> = Vec::new();
            let ext_subject = MonitorSubject::Extension(ext.id.clone());
            if let Some(s) = self.monitor.suspension(&ext_subject, now) {
                monitor_denies.push(Deny {
                    code: DenyCode::ExtensionSuspended,
                    rule: s.rule.clone(),
                    message: format!("{ext_name} is suspended by {}: {}", s.rule, s.reason),
                });
            }
            for acc in &chain {
                let subject = MonitorSubject::Account(acc.id.clone());
                if let Some(s) = self.monitor.suspension(&subject, now) {
                    monitor_denies.push(Deny {
                        code: DenyCode::AccountSuspended,
                        rule: s.rule.clone(),
                        message: format!(
                            "account {} is suspended by {}: {}",
                            acc.id, s.rule, s.reason
                        ),
                    });
                }
            }
            if let Some(block) = self.monitor.blocked(
                &ext.id,
                &evaluation.account_chain,
                &evaluation.destination,
                now,
            ) {
                monitor_denies.push(Deny {
                    code: DenyCode::BlockedByMonitor,
                    rule: block.rule.clone(),
                    message: format!(
                        "{} calls are refused for {} {} (alert {})",
                        block.profile,
                        block.subject,
                        match block.until {
                            Some(until) =>
                                format!("until {}", until.format("%Y-%m-%d %H:%M:%S UTC")),
                            None => "while the alert is open".to_string(),
                        },
                        block.alert_id
                    ),
                });
            }
            for deny in monitor_denies {
                if verdicts.deny(deny) {
                    return Ok(evaluation);
                }
            }
        }
        if !ext.suspended && chain.iter().all(|a| !a.suspended) {
            verdicts.pass(|| {
                (
                    "suspension".into(),
                    "extension and accounts are active".into(),
                )
            });
        }

        // Source IP.
        if ext.allowed_cidrs.is_empty() {
            verdicts.pass(|| {
                (
                    format!("{ext_name} allowed_cidrs"),
                    "no source restriction: calls are accepted from any address".into(),
                )
            });
        } else if let Some(net) = ext.allowed_cidrs.iter().find(|n| n.contains(&source_ip)) {
            verdicts.pass(|| {
                (
                    format!("{ext_name} allowed_cidrs"),
                    format!("{source_ip} is in {net}"),
                )
            });
        } else {
            let nets: Vec<String> = ext.allowed_cidrs.iter().map(ToString::to_string).collect();
            let stop = verdicts.deny(Deny {
                code: DenyCode::IpNotAllowed,
                rule: format!("{ext_name} allowed_cidrs"),
                message: format!(
                    "{ext_name}: source {} is not in {}",
                    source_ip,
                    nets.join(", ")
                ),
            });
            if stop {
                return Ok(evaluation);
            }
        }

        // Destination rules: the extension's, then each account's up the hierarchy.
        let mut levels: Vec<(String, &DestinationRules, bool)> =
            vec![(ext_name.clone(), &ext.rules, false)];
        for acc in &chain {
            levels.push((format!("account {}", acc.id), &acc.rules, true));
        }
        for (level_name, rules, default_classes) in levels {
            match level_rules_verdict(&level_name, rules, default_classes, &evaluation.destination)
            {
                RuleVerdict::Allowed(detail) => {
                    verdicts.pass(|| (format!("{level_name} rules"), detail));
                }
                RuleVerdict::Denied(deny) => {
                    if verdicts.deny(deny) {
                        return Ok(evaluation);
                    }
                }
            }
        }

        // Business hours.
        if let Some(schedule) = policy.schedule_for(ext, &chain) {
            let state = schedule.open_at(now);
            let rule = format!("schedule {}", schedule.name);
            if state.open {
                verdicts.pass(|| (rule, state.detail));
            } else if schedule.allows_when_closed(class) {
                verdicts.pass(|| {
                    (
                        rule,
                        format!(
                            "{}; {class} calls are allowed outside business hours",
                            state.detail
                        ),
                    )
                });
            } else {
                let stop = verdicts.deny(Deny {
                    code: DenyCode::OutsideBusinessHours,
                    rule: format!("{rule} outside_hours_classes"),
                    message: format!(
                        "{}; outside business hours only {} calls are allowed",
                        state.detail, schedule.outside_hours_classes
                    ),
                });
                if stop {
                    return Ok(evaluation);
                }
            }
        }

        // Charging plan: internal calls are free; everything else needs a rate.
        if class != DestinationClass::Internal {
            match policy.plan_for(&chain) {
                None => {
                    let stop = verdicts.deny(Deny {
                        code: DenyCode::NoRate,
                        rule: format!("account {} plan", account.id),
                        message: format!("account {} has no charging plan", account.id),
                    });
                    if stop {
                        return Ok(evaluation);
                    }
                }
                Some(plan) => match plan.rate_for(evaluation.destination.digits()) {
                    None => {
                        let stop = verdicts.deny(Deny {
                            code: DenyCode::NoRate,
                            rule: format!("plan {}", plan.name),
                            message: format!(
                                "plan {} has no rate for {}",
                                plan.name,
                                evaluation.destination.e164.as_deref().unwrap_or("")
                            ),
                        });
                        if stop {
                            return Ok(evaluation);
                        }
                    }
                    Some(rate) if rate.blocked => {
                        let stop = verdicts.deny(Deny {
                            code: DenyCode::DestinationBlocked,
                            rule: format!("plan {} rate +{}", plan.name, rate.prefix),
                            message: format!(
                                "plan {} blocks +{} ({})",
                                plan.name, rate.prefix, rate.description
                            ),
                        });
                        if stop {
                            return Ok(evaluation);
                        }
                    }
                    Some(rate) => {
                        verdicts.pass(|| {
                            (
                                format!("plan {} rate +{}", plan.name, rate.prefix),
                                format!(
                                    "{}: {} {} per minute, {} connection, billed {}",
                                    rate.description,
                                    rate.price_per_minute,
                                    plan.currency,
                                    rate.connection_fee,
                                    rate.increments
                                ),
                            )
                        });
                        evaluation.rate_view = Some(rate_view(&plan.name, plan.currency, rate));
                        evaluation.rate = Some(rate.clone());
                    }
                },
            }
        }

        // Concurrent calls (a backstop only: money limits are what stop fraud).
        if let Some(max) = ext.max_concurrent_calls {
            let active = self
                .ledger
                .level(SubjectKind::Extension, &ext.id)
                .active_calls;
            if active >= max {
                let stop = verdicts.deny(Deny {
                    code: DenyCode::TooManyConcurrentCalls,
                    rule: format!("{ext_name} max_concurrent_calls"),
                    message: format!("{ext_name}: {active} of {max} concurrent calls in progress"),
                });
                if stop {
                    return Ok(evaluation);
                }
            }
        }

        // Credit: the tightest limit of every level decides the longest grant.
        let headrooms = self.headrooms(ext, &chain, now);
        let tightest = headrooms
            .iter()
            .filter(|h| h.available.is_some())
            .min_by_key(|h| h.available);
        match (&evaluation.rate, tightest) {
            (None, _) | (_, None) => {
                evaluation.granted_s = cap_s;
                verdicts.pass(|| {
                    (
                        "credit".into(),
                        if evaluation.rate.is_none() {
                            "free call: capped only by max_call_duration".into()
                        } else {
                            "no money limit applies (unlimited at every level)".into()
                        },
                    )
                });
            }
            (Some(rate), Some(tight)) => {
                let budget = tight.available.unwrap_or(Money::ZERO);
                let granted = rate.max_duration_within(budget, cap_s);
                evaluation.granted_s = granted;
                let describe = |h: &Headroom| match &h.binding {
                    Some(u) => format!(
                        "{}: {} of {} {} {} spent or reserved",
                        h.subject,
                        u.spent.saturating_add(u.reserved),
                        u.limit,
                        evaluation.currency,
                        u.kind
                    ),
                    None => format!("{}: no limit", h.subject),
                };
                if granted == 0 {
                    let stop = verdicts.deny(Deny {
                        code: DenyCode::InsufficientCredit,
                        rule: format!(
                            "{} {}",
                            tight.subject,
                            tight
                                .binding
                                .map(|b| b.kind.to_string())
                                .unwrap_or_default()
                        ),
                        message: format!(
                            "{} (the first {} s cost {})",
                            describe(tight),
                            rate.increments.first,
                            rate.cost(1)
                        ),
                    });
                    if stop {
                        return Ok(evaluation);
                    }
                } else {
                    verdicts.pass(|| {
                        (
                            "credit".into(),
                            format!("{}; grants {granted} s", describe(tight)),
                        )
                    });
                }
            }
        }
        evaluation.credit = headrooms;
        Ok(evaluation)
    }

    /// Marks a call answered: its grant now counts from `at`.
    pub fn answer(
        &mut self,
        call_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(ActiveCall, LedgerEvent), RequestError> {
        let grace = i64::from(self.policy.credit.expiry_grace_s);
        let call = self
            .ledger
            .call(call_id)
            .ok_or_else(|| LedgerError::UnknownCall(call_id.to_string()))?;
        if at < call.authorized_at {
            return Err(RequestError::EndBeforeStart);
        }
        let event = self.ledger.update(
            call_id,
            |call| {
                if call.answered_at.is_none() {
                    call.answered_at = Some(at);
                    call.expires_at = at + Duration::seconds(call.granted_s as i64 + grace);
                }
            },
            Money::ZERO,
        )?;
        let LedgerEvent::Updated(call) = &event else {
            return Err(LedgerError::UnknownCall(call_id.to_string()).into());
        };
        self.monitor.observe_answer(call_id, at);
        Ok((call.clone(), event))
    }

    /// Asks for `seconds` more (default: up to the cap), within the credit left.
    pub fn extend(
        &mut self,
        call_id: &str,
        seconds: Option<u64>,
        at: DateTime<Utc>,
    ) -> Result<(ExtendOutcome, Option<LedgerEvent>), RequestError> {
        let call = self
            .ledger
            .call(call_id)
            .ok_or_else(|| LedgerError::UnknownCall(call_id.to_string()))?
            .clone();
        let outcome = |added_s: u64, granted_s: u64, reserved: Money, limited_by: Option<Deny>| {
            ExtendOutcome {
                call_id: call_id.to_string(),
                granted_s,
                added_s,
                reserved,
                limited_by,
            }
        };
        let refuse = |deny: Deny| Ok((outcome(0, call.granted_s, call.reserved, Some(deny)), None));
        // A call whose extension or account was suspended or removed gets no more time.
        let ext = self.policy.extensions.get(&call.extension);
        let chain = ext
            .map(|e| self.policy.account_chain(&e.account))
            .unwrap_or_default();
        match ext {
            None => {
                return refuse(Deny {
                    code: DenyCode::ExtensionSuspended,
                    rule: format!("extension {}", call.extension),
                    message: format!("extension {} no longer exists", call.extension),
                })
            }
            Some(e) if e.suspended => {
                return refuse(Deny {
                    code: DenyCode::ExtensionSuspended,
                    rule: format!("extension {} suspended", e.id),
                    message: format!("extension {} is suspended", e.id),
                })
            }
            Some(_) => {}
        }
        let currency = chain.first().map(|a| a.currency).unwrap_or(Currency::EUR);
        if let Some(acc) = chain.iter().find(|a| a.suspended) {
            return refuse(Deny {
                code: DenyCode::AccountSuspended,
                rule: format!("account {} suspended", acc.id),
                message: format!("account {} is suspended", acc.id),
            });
        }
        if self.monitor.restricts_anything() {
            let suspended = std::iter::once(MonitorSubject::Extension(call.extension.clone()))
                .chain(chain.iter().map(|a| MonitorSubject::Account(a.id.clone())))
                .find_map(|subject| self.monitor.suspension(&subject, at).cloned());
            if let Some(s) = suspended {
                return refuse(Deny {
                    code: match s.subject {
                        MonitorSubject::Account(_) => DenyCode::AccountSuspended,
                        _ => DenyCode::ExtensionSuspended,
                    },
                    rule: s.rule.clone(),
                    message: format!("{} is suspended by {}: {}", s.subject, s.rule, s.reason),
                });
            }
        }
        let target = seconds
            .map(|s| call.granted_s.saturating_add(s))
            .unwrap_or(call.cap_s)
            .min(call.cap_s);
        if at >= call.expires_at {
            return refuse(Deny {
                code: DenyCode::CallExpired,
                rule: "credit expiry_grace".to_string(),
                message: format!(
                    "call {call_id} expired at {}: it is being settled at its granted amount",
                    call.expires_at
                ),
            });
        }
        if target <= call.granted_s {
            return refuse(Deny {
                code: DenyCode::MaxCallDurationReached,
                rule: format!("extension {} max_call_duration", call.extension),
                message: format!("call {call_id} already has its maximum of {} s", call.cap_s),
            });
        }
        let Some(rate) = call.rate.clone() else {
            // Free call: extend to the target without money.
            let event = self.ledger.update(
                call_id,
                |c| {
                    c.granted_s = target;
                    c.expires_at += Duration::seconds((target - call.granted_s) as i64);
                },
                Money::ZERO,
            )?;
            return Ok((
                outcome(target - call.granted_s, target, call.reserved, None),
                Some(event),
            ));
        };
        // Headroom of each of the call's levels under the current limits.
        let mut tightest: Option<Headroom> = None;
        for level in &call.levels {
            let Some(limits) = Engine::limits_of(&self.policy, &level.subject) else {
                continue;
            };
            let tz = Engine::time_zone_of(&self.policy, &level.subject);
            let current = Periods::at(at, tz);
            let mut headrooms = vec![self.ledger.headroom(&level.subject, limits, current)];
            // The extra is held in today's headroom but charged in the day and month the
            // call started in (see `Ledger::settle`), so once the call has crossed a local
            // midnight or month end it must fit there too. The ledger keeps only the spend
            // of its latest day and month: a period it has moved past cannot take more.
            let charged_in = Periods {
                day: level.day,
                month: level.month,
            };
            let mut past = Limits::UNLIMITED;
            if charged_in.day != current.day {
                past.daily = limits.daily;
            }
            if charged_in.month != current.month {
                past.monthly = limits.monthly;
            }
            if past != Limits::UNLIMITED {
                let state = self.ledger.level(level.subject.kind, &level.subject.id);
                let closed = if past.daily != Limit::Unlimited && state.day != Some(charged_in.day)
                {
                    Some((LimitKind::Daily, format!("day {}", charged_in.day)))
                } else if past.monthly != Limit::Unlimited && state.month != Some(charged_in.month)
                {
                    Some((LimitKind::Monthly, format!("month {}", charged_in.month)))
                } else {
                    None
                };
                if let Some((kind, period)) = closed {
                    return refuse(Deny {
                        code: DenyCode::InsufficientCredit,
                        rule: format!("{} {kind}", level.subject),
                        message: format!(
                            "{}: call {call_id} counts in the {kind} of {period}, which has ended: it gets no more time",
                            level.subject
                        ),
                    });
                }
                headrooms.push(self.ledger.headroom(&level.subject, &past, charged_in));
            }
            for headroom in headrooms {
                if headroom.available.is_some()
                    && tightest
                        .as_ref()
                        .is_none_or(|t| headroom.available < t.available)
                {
                    tightest = Some(headroom);
                }
            }
        }
        let budget = tightest
            .as_ref()
            .and_then(|t| t.available)
            .map(|a| a.saturating_add(call.reserved));
        let new_granted = match budget {
            None => target,
            Some(budget) => rate.max_duration_within(budget, target).max(call.granted_s),
        };
        if new_granted <= call.granted_s {
            let tight = tightest.as_ref();
            return refuse(Deny {
                code: DenyCode::InsufficientCredit,
                rule: tight
                    .map(|t| {
                        format!(
                            "{} {}",
                            t.subject,
                            t.binding.map(|b| b.kind.to_string()).unwrap_or_default()
                        )
                    })
                    .unwrap_or_default(),
                message: tight
                    .and_then(|t| {
                        t.binding.map(|u| {
                            format!(
                                "{}: {} of {} {} {} spent or reserved",
                                t.subject,
                                u.spent.saturating_add(u.reserved),
                                u.limit,
                                currency,
                                u.kind
                            )
                        })
                    })
                    .unwrap_or_else(|| "no credit left".into()),
            });
        }
        let new_reserved = rate.cost(new_granted).max(call.reserved);
        let extra = new_reserved.saturating_sub(call.reserved);
        let added = new_granted - call.granted_s;
        let event = self.ledger.update(
            call_id,
            |c| {
                c.granted_s = new_granted;
                c.expires_at += Duration::seconds(added as i64);
            },
            extra,
        )?;
        let limited_by = (new_granted < target).then(|| Deny {
            code: DenyCode::InsufficientCredit,
            rule: tightest
                .as_ref()
                .map(|t| t.subject.to_string())
                .unwrap_or_default(),
            message: format!("only {added} s of credit left"),
        });
        Ok((
            outcome(added, new_granted, new_reserved, limited_by),
            Some(event),
        ))
    }

    /// Ends a call: bills `duration_s` (default: from answer to `at`; 0 if unanswered) by
    /// the rate's increments, never above the reservation, and releases the rest.
    pub fn end(
        &mut self,
        call_id: &str,
        duration_s: Option<u64>,
        at: DateTime<Utc>,
    ) -> Result<(Settlement, LedgerEvent), RequestError> {
        let call = self
            .ledger
            .call(call_id)
            .ok_or_else(|| LedgerError::UnknownCall(call_id.to_string()))?;
        if at < call.authorized_at {
            return Err(RequestError::EndBeforeStart);
        }
        let duration = match (duration_s, call.answered_at) {
            (Some(d), _) => d,
            (None, Some(answered)) => (at - answered).num_seconds().max(0) as u64,
            (None, None) => 0,
        };
        let event = self
            .ledger
            .settle(call_id, SettleReason::Ended, at, duration)?;
        let LedgerEvent::Settled(settlement) = &event else {
            return Err(LedgerError::UnknownCall(call_id.to_string()).into());
        };
        self.monitor.observe_end(
            call_id,
            settlement.duration_s,
            settlement.billed_s,
            settlement.charged,
            at,
        );
        Ok((settlement.clone(), event))
    }

    /// Settles every call whose expiry has passed at its reserved amount (lost `end`).
    pub fn expire_due(&mut self, now: DateTime<Utc>) -> Vec<LedgerEvent> {
        let due = self.ledger.due(now);
        let mut events = Vec::with_capacity(due.len());
        for call_id in due {
            let granted = self.ledger.call(&call_id).map(|c| c.granted_s).unwrap_or(0);
            if let Ok(event) = self
                .ledger
                .settle(&call_id, SettleReason::Expired, now, granted)
            {
                if let LedgerEvent::Settled(settlement) = &event {
                    self.monitor.observe_end(
                        &call_id,
                        settlement.duration_s,
                        settlement.billed_s,
                        settlement.charged,
                        now,
                    );
                }
                events.push(event);
            }
        }
        events
    }
}

/// What `evaluate` found, for `authorize` and `explain`.
struct Evaluation {
    account_chain: Vec<String>,
    levels: Vec<CallLevel>,
    rate: Option<Rate>,
    rate_view: Option<RateView>,
    currency: Currency,
    granted_s: u64,
    cap_s: u64,
    credit: Vec<Headroom>,
    destination: Destination,
}

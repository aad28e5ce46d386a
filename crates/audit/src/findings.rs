//! Audit findings: what is wrong with an imported PBX configuration or a tollgate policy,
//! each with a severity, a stable code, the subject, the evidence and how to fix it.
//!
//! This module owns the rules that turn an [`Inventory`] (from the importers) or a typed
//! [`Policy`] into findings. It is pure apart from one [`random_key`] per inventory audit
//! (for the keyed digests that find a password reused by several extensions), so the same
//! input gives the same findings in the same order.
//!
//! INVARIANT: no finding's subject, evidence or fix contains a secret: the credential
//! checks' messages never quote the credential, reuse is found by keyed digest and reported
//! by extension names, and nothing here formats a [`crate::inventory::Secret`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tollgate_core::number::DestinationClass;
use tollgate_core::policy::{Limit, Limits};
use tollgate_core::Policy;

use crate::acl::{AclPlatform, AclVerdict, UnresolvedReason};
use crate::credentials::{
    check_password, check_pin, keyed_digest, PasswordPolicy, PinPolicy, WeaknessCode,
};
use crate::defaults::{matching_logins, vendors_using_password};
use crate::firmware::{firmware_findings, list_some, vendor_of, Device, FirmwareRule};
use crate::generate::random_key;
use crate::inventory::{Credential, ImportedExtension, Inventory, Mailbox, SourceKind};

/// How bad a finding is; ordered from least to most severe, so `>=` means "at least".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    /// Case-insensitive, since operators type it on command lines and in cron jobs.
    fn from_str(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == lower)
            .ok_or_else(|| {
                format!("unknown severity {text:?} (expected info, low, medium, high or critical)")
            })
    }
}

/// Which credential a finding says should be replaced, for `tollgate audit --fix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Replace {
    /// A SIP password.
    SipPassword,
    /// A voicemail PIN of `mailbox`: a new PIN must not equal it (or its reverse).
    VoicemailPin { mailbox: String },
}

/// One thing wrong, for a person and for a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable snake_case code, never renamed once shipped (reports and scripts filter on it).
    pub code: String,
    /// What the finding is about, with where it is defined: "extension 1001 (pjsip.conf:30)".
    pub subject: String,
    /// Why it is a finding. Never a secret.
    pub evidence: String,
    /// What to do about it.
    pub fix: String,
    /// Set when the fix is a new credential that `--fix` can generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Replace>,
}

impl Finding {
    pub(crate) fn new(
        severity: Severity,
        code: impl Into<String>,
        subject: impl Into<String>,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            severity,
            code: code.into(),
            subject: subject.into(),
            evidence: evidence.into(),
            fix: fix.into(),
            replace: None,
        }
    }

    fn replacing(mut self, replace: Replace) -> Self {
        self.replace = Some(replace);
        self
    }
}

/// Most severe first, then by subject and code, so reports read top-down and diff cleanly.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.subject.cmp(&b.subject))
            .then_with(|| a.code.cmp(&b.code))
            .then_with(|| a.evidence.cmp(&b.evidence))
    });
}

/// What the inventory audit checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    pub password: PasswordPolicy,
    pub pin: PinPolicy,
    /// Case-insensitive substrings of an id or display name that mark a test extension.
    pub test_patterns: Vec<String>,
    /// sip.conf `call-limit` above this is reported as unlimited-ish.
    pub max_call_limit: u32,
    /// pjsip `max_contacts` above this is reported: each contact is a device that may call.
    pub max_contacts: u32,
    /// Minimum firmware per vendor and model (`[[audit.firmware]]`), applied to the
    /// `user_agent` of inventory records and by [`crate::audit_firmware`] to devices seen
    /// registering. Default: none, so no firmware is judged.
    pub firmware: Vec<FirmwareRule>,
    /// Days without a registration or a call after which an extension is unused
    /// ([`crate::audit_usage`]); 0 turns the check off. Default: 30.
    pub unused_after_days: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            password: PasswordPolicy::default(),
            pin: PinPolicy::default(),
            test_patterns: ["test", "demo", "temp", "trial"]
                .into_iter()
                .map(String::from)
                .collect(),
            // A desk phone rarely needs more than a handful of simultaneous calls; fraud
            // runs dozens in parallel through one stolen credential.
            max_call_limit: 10,
            max_contacts: 3,
            firmware: Vec::new(),
            unused_after_days: 30,
        }
    }
}

fn extension_subject(ext: &ImportedExtension) -> String {
    format!("extension {} ({})", ext.id, ext.location)
}

fn mailbox_subject(mailbox: &Mailbox) -> String {
    match &mailbox.context {
        Some(context) => format!(
            "mailbox {}@{} ({})",
            mailbox.mailbox, context, mailbox.location
        ),
        None => format!("mailbox {} ({})", mailbox.mailbox, mailbox.location),
    }
}

/// `f` over `items` on every available core, results in order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            // A worker that panicked re-raises here: dropping its part would misalign results.
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Every finding about an imported inventory, sorted (see [`sort_findings`]).
pub fn audit_inventory(inv: &Inventory, options: &AuditOptions) -> Vec<Finding> {
    // The key only keeps the digests below from being comparable with anything outside
    // this call; they never leave it. Should the OS generator fail, a fixed key still finds
    // reuse correctly, and the digests are dropped on return all the same.
    let key = random_key().unwrap_or([0u8; 32]);
    let mut findings = Vec::new();
    let mut by_digest: HashMap<[u8; 32], Vec<&ImportedExtension>> = HashMap::new();

    // zxcvbn takes about a millisecond per password: score them on every core first.
    let password_weaknesses = parallel_map(&inv.extensions, |ext| match &ext.secret {
        Some(Credential::Plain(secret)) => {
            let mut context: Vec<&str> = vec![ext.id.as_str()];
            // A username equal to the id would report the same weakness twice.
            if let Some(username) = ext.username.as_deref().filter(|u| *u != ext.id) {
                context.push(username);
            }
            check_password(secret.expose(), &context, &options.password)
        }
        _ => Vec::new(),
    });
    // Named ACLs that could not be resolved, with the extensions naming them.
    let mut unresolved: BTreeMap<(AclPlatform, String), (UnresolvedReason, Vec<String>)> =
        BTreeMap::new();
    for (ext, weaknesses) in inv.extensions.iter().zip(password_weaknesses) {
        let subject = extension_subject(ext);
        default_login_findings(ext, &subject, &mut findings);
        match &ext.secret {
            Some(Credential::Plain(secret)) => {
                for weakness in weaknesses {
                    let severity = match weakness.code {
                        WeaknessCode::CommonPassword | WeaknessCode::ContainsContext => {
                            Severity::Critical
                        }
                        _ => Severity::High,
                    };
                    findings.push(
                        Finding::new(
                            severity,
                            format!("weak_password_{}", weakness.code),
                            subject.clone(),
                            format!("SIP password {}", weakness.message),
                            "replace it with a generated password (tollgate passwd)",
                        )
                        .replacing(Replace::SipPassword),
                    );
                }
                if !secret.expose().is_empty() {
                    by_digest
                        .entry(keyed_digest(secret.expose(), &key))
                        .or_default()
                        .push(ext);
                }
            }
            Some(Credential::Hashed) => findings.push(Finding::new(
                Severity::Info,
                "credential_hashed",
                subject.clone(),
                "only a hash of the SIP password is in the file, so its strength cannot be judged",
                "make sure the password was generated (tollgate passwd)",
            )),
            Some(Credential::Unresolved { reference }) => {
                let default = reference.contains("default_password");
                let (severity, evidence) = if default {
                    (
                        Severity::Medium,
                        format!("the SIP password is the shared ${{{reference}}}: every extension using it has the same password"),
                    )
                } else {
                    (
                        Severity::Info,
                        format!("the SIP password refers to ${{{reference}}}, which the audit does not expand"),
                    )
                };
                findings.push(Finding::new(
                    severity,
                    "credential_unresolved",
                    subject.clone(),
                    evidence,
                    "give the extension its own generated password (tollgate passwd)",
                ));
            }
            None => {}
        }

        let verdict = inv.acls.resolve(ext);
        if let AclVerdict::Unresolved(acls) = &verdict {
            let platform = AclPlatform::of(ext.source).unwrap_or(AclPlatform::Asterisk);
            for acl in acls {
                unresolved
                    .entry((platform, acl.name.clone()))
                    .or_insert_with(|| (acl.reason.clone(), Vec::new()))
                    .1
                    .push(subject.trim_start_matches("extension ").to_string());
            }
        }
        if !verdict.restricts() && ext.identify.is_empty() {
            findings.push(no_ip_restriction(ext, &verdict, &subject));
        }

        if let Some(pattern) = test_pattern(ext, &options.test_patterns) {
            findings.push(Finding::new(
                Severity::Medium,
                "test_extension",
                subject.clone(),
                format!("the id or display name contains \"{pattern}\""),
                "remove test and demo extensions once they are no longer needed",
            ));
        }

        limit_findings(ext, &subject, options, &mut findings);
    }

    for ((platform, name), (reason, users)) in unresolved {
        findings.push(unresolved_acl(inv, platform, &name, &reason, &users));
    }

    let devices: Vec<Device<'_>> = inv
        .extensions
        .iter()
        .filter_map(|ext| {
            Some(Device {
                subject: extension_subject(ext),
                user_agent: ext.user_agent.as_deref()?,
                ip: None,
                last_seen: None,
            })
        })
        .collect();
    findings.extend(firmware_findings(&devices, &options.firmware));

    for (_, group) in by_digest {
        if group.len() < 2 {
            continue;
        }
        let names: Vec<String> = group
            .iter()
            .map(|ext| format!("{} ({})", ext.id, ext.location))
            .collect();
        findings.push(Finding::new(
            Severity::High,
            "password_reused",
            format!("extensions {}", names.join(", ")),
            format!(
                "{} extensions share one SIP password (found by keyed digest)",
                group.len()
            ),
            // No `replace`: one new password for the group would be reused again.
            "give each extension its own generated password (tollgate passwd)",
        ));
    }

    for mailbox in &inv.mailboxes {
        let subject = mailbox_subject(mailbox);
        match &mailbox.pin {
            Credential::Plain(pin) => {
                for weakness in check_pin(pin.expose(), &mailbox.mailbox, &options.pin) {
                    let severity = match weakness.code {
                        WeaknessCode::CommonPin
                        | WeaknessCode::RepeatedDigits
                        | WeaknessCode::SequentialDigits
                        | WeaknessCode::EqualsExtension => Severity::High,
                        _ => Severity::Medium,
                    };
                    let locked = if mailbox.pin_locked {
                        " (and the user cannot change it)"
                    } else {
                        ""
                    };
                    findings.push(
                        Finding::new(
                            severity,
                            format!("weak_pin_{}", weakness.code),
                            subject.clone(),
                            format!("voicemail PIN {}{locked}", weakness.message),
                            "replace it with a generated PIN (tollgate pin)",
                        )
                        .replacing(Replace::VoicemailPin {
                            mailbox: mailbox.mailbox.clone(),
                        }),
                    );
                }
            }
            Credential::Hashed | Credential::Unresolved { .. } => findings.push(Finding::new(
                Severity::Info,
                "pin_not_checked",
                subject,
                "the PIN is hashed or a reference, so its strength cannot be judged",
                "make sure the PIN was generated (tollgate pin)",
            )),
        }
    }

    sort_findings(&mut findings);
    findings
}

/// `no_ip_restriction`: what lets the world in, and how to close it on that platform.
fn no_ip_restriction(ext: &ImportedExtension, verdict: &AclVerdict, subject: &str) -> Finding {
    let AclVerdict::Resolved(resolved) = verdict else {
        return Finding::new(
            Severity::Medium,
            "no_ip_restriction",
            subject,
            "no permit, acl or identify: the extension may register and call from any address",
            "restrict it to the networks its phones use (permit=, or an acl)",
        );
    };
    let verb = if resolved.sources.len() == 1 {
        "lets in"
    } else {
        "together let in"
    };
    let (why, fix) = match AclPlatform::of(ext.source) {
        Some(AclPlatform::Asterisk) => (
            " (Asterisk permits what no rule denies, and the last matching rule decides)",
            "deny=0.0.0.0/0.0.0.0 first, then permit= only the networks its phones use",
        ),
        Some(AclPlatform::FreeSwitch) => (
            " (FreeSWITCH: the most specific node decides, a /0 node never does, the list default covers the rest)",
            "give the list default=\"deny\" and allow only the networks its phones use",
        ),
        None => ("", "permit only the networks its phones use"),
    };
    Finding::new(
        Severity::Medium,
        "no_ip_restriction",
        subject,
        format!(
            "{} {verb} {}: the extension may register and call from almost any address{why}",
            resolved.sources.join(" and "),
            resolved.openness()
        ),
        fix,
    )
}

/// `unknown_acl` (an acl file was imported but does not define the name) or
/// `unresolved_acl` (nothing to resolve it against, or entries the audit cannot read).
fn unresolved_acl(
    inv: &Inventory,
    platform: AclPlatform,
    name: &str,
    reason: &UnresolvedReason,
    users: &[String],
) -> Finding {
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let named_by = format!(
        "named by {} {}",
        if users.len() == 1 {
            "extension"
        } else {
            "extensions"
        },
        list_some(&users, 10)
    );
    let subject = format!("{platform} acl \"{name}\"");
    match reason {
        UnresolvedReason::NotDefined => {
            let files: Vec<String> = inv
                .acls
                .files(platform)
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            let consequence = match platform {
                AclPlatform::Asterisk => "Asterisk refuses every address through an undefined named ACL",
                AclPlatform::FreeSwitch => "FreeSWITCH lets no address through a list it does not know",
            };
            Finding::new(
                Severity::Medium,
                "unknown_acl",
                subject,
                format!(
                    "{named_by}, but not defined in any acl file imported ({}): {consequence}, so these extensions cannot be used, unless it comes from a file the audit did not read",
                    files.join(", ")
                ),
                format!(
                    "define it in {}, or correct the name",
                    platform.acl_file()
                ),
            )
        }
        UnresolvedReason::NoAclFile => Finding::new(
            Severity::Info,
            "unresolved_acl",
            subject,
            format!(
                "{named_by}; no {} was imported, so the audit takes it on trust as a restriction",
                platform.acl_file()
            ),
            format!(
                "import {} too, so the audit can check what the ACL lets in",
                platform.acl_file()
            ),
        ),
        UnresolvedReason::Opaque(what) => Finding::new(
            Severity::Info,
            "unresolved_acl",
            subject,
            format!(
                "{named_by}; it has {what}, which the audit does not resolve, so it takes it on trust as a restriction"
            ),
            "check by hand which addresses it lets in",
        ),
    }
}

/// `default_device_credential`: a SIP password that is a phone's factory-default
/// password, or a phone web login (CSV/JSON `device_user`/`device_password`) that is still
/// its factory default. Names vendors only, never a password or user name.
fn default_login_findings(ext: &ImportedExtension, subject: &str, findings: &mut Vec<Finding>) {
    if let Some(Credential::Plain(secret)) = &ext.secret {
        let vendors = vendors_using_password(secret.expose());
        if !vendors.is_empty() {
            findings.push(
                Finding::new(
                    Severity::Critical,
                    "default_device_credential",
                    subject,
                    format!(
                        "the SIP password is a factory-default device password (of {} devices): scanners try these first",
                        vendors.join(", ")
                    ),
                    "replace it with a generated password (tollgate passwd)",
                )
                .replacing(Replace::SipPassword),
            );
        }
    }
    let Some(password) = &ext.device_password else {
        return;
    };
    let vendor = ext.user_agent.as_deref().and_then(vendor_of);
    let matches = matching_logins(
        vendor.as_deref(),
        ext.device_user.as_deref(),
        password.expose(),
    );
    if matches.is_empty() {
        return;
    }
    let mut vendors: Vec<&str> = Vec::new();
    for credential in &matches {
        if !vendors.contains(&credential.vendor) {
            vendors.push(credential.vendor);
        }
    }
    // No user name either: for several vendors it is also the password.
    findings.push(Finding::new(
        Severity::Critical,
        "default_device_credential",
        subject,
        format!(
            "the phone's web login is still a factory default of {}: whoever reaches its web page can read or change its SIP account",
            vendors.join(", ")
        ),
        "change the phone's web password, and keep its web interface off the internet",
    ));
}

fn test_pattern<'a>(ext: &ImportedExtension, patterns: &'a [String]) -> Option<&'a str> {
    let id = ext.id.to_lowercase();
    let name = ext.display_name.as_deref().unwrap_or("").to_lowercase();
    patterns
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .find(|p| {
            let p = p.to_lowercase();
            id.contains(&p) || name.contains(&p)
        })
}

fn limit_findings(
    ext: &ImportedExtension,
    subject: &str,
    options: &AuditOptions,
    findings: &mut Vec<Finding>,
) {
    // call-limit is a chan_sip notion; other sources have no such key, so its absence there
    // says nothing.
    if ext.source == SourceKind::SipConf {
        match ext.call_limit {
            None | Some(0) => findings.push(Finding::new(
                Severity::Low,
                "no_call_limit",
                subject,
                "no call-limit: the peer may hold any number of calls at once",
                format!(
                    "set call-limit to what the phone needs (at most {})",
                    options.max_call_limit
                ),
            )),
            Some(limit) if limit > options.max_call_limit => findings.push(Finding::new(
                Severity::Low,
                "high_call_limit",
                subject,
                format!("call-limit={limit}, above {}", options.max_call_limit),
                "lower call-limit to what the phone needs",
            )),
            Some(_) => {}
        }
    }
    if let Some(contacts) = ext.max_contacts {
        if contacts > options.max_contacts {
            findings.push(Finding::new(
                Severity::Low,
                "many_contacts",
                subject,
                format!(
                    "max_contacts={contacts}, above {}: that many devices may register with one credential",
                    options.max_contacts
                ),
                "lower max_contacts to the number of phones the extension has",
            ));
        }
    }
}

/// Every finding about a tollgate policy, sorted (see [`sort_findings`]).
pub fn audit_policy(policy: &Policy) -> Vec<Finding> {
    let mut findings = Vec::new();

    for ext in policy.extensions.values() {
        let subject = format!("policy extension {}", ext.id);
        unlimited_money(&ext.limits, &subject, &mut findings);
        if ext.allowed_cidrs.is_empty() {
            findings.push(Finding::new(
                Severity::Medium,
                "no_allowed_cidrs",
                subject.clone(),
                "no allowed_cidrs: calls are accepted from any source address",
                "set allowed_cidrs to the networks the extension's phones use",
            ));
        }
    }

    for account in policy.accounts.values() {
        let subject = format!("policy account {}", account.id);
        unlimited_money(&account.limits, &subject, &mut findings);

        let risky: Vec<&str> = account
            .rules
            .allowed_classes
            .map(|classes| {
                classes
                    .iter()
                    .filter(|c| {
                        matches!(
                            c,
                            DestinationClass::International
                                | DestinationClass::Premium
                                | DestinationClass::Satellite
                                | DestinationClass::HighRisk
                        )
                    })
                    .map(DestinationClass::as_str)
                    .collect()
            })
            .unwrap_or_default();
        let scheduled = policy
            .account_chain(&account.id)
            .iter()
            .any(|a| a.schedule.is_some());
        if !risky.is_empty() && !scheduled {
            findings.push(Finding::new(
                Severity::Medium,
                "no_business_hours",
                subject.clone(),
                format!(
                    "allows {} at any hour: no schedule on the account or its parents",
                    risky.join(", ")
                ),
                "set a business-hours schedule, since fraud peaks at night and on weekends",
            ));
        }

        if account.extension_defaults.max_concurrent_calls.is_none() {
            findings.push(Finding::new(
                Severity::Low,
                "unlimited_concurrent_calls",
                subject,
                "no extension_defaults max_concurrent_calls: extensions may run unlimited concurrent calls",
                "set a default max_concurrent_calls for the account's extensions",
            ));
        }
    }

    sort_findings(&mut findings);
    findings
}

fn unlimited_money(limits: &Limits, subject: &str, findings: &mut Vec<Finding>) {
    let periods: Vec<&str> = [("daily", limits.daily), ("monthly", limits.monthly)]
        .into_iter()
        .filter(|(_, limit)| *limit == Limit::Unlimited)
        .map(|(name, _)| name)
        .collect();
    if !periods.is_empty() {
        findings.push(Finding::new(
            Severity::High,
            "unlimited_money_limit",
            subject,
            format!("{} money limit is unlimited", periods.join(" and ")),
            "set an amount: a stolen credential can otherwise spend without bound",
        ));
    }
}

/// Counts per severity, least severe first, every severity present (zero included).
pub fn count_by_severity(findings: &[Finding]) -> Vec<(Severity, usize)> {
    Severity::ALL
        .into_iter()
        .map(|s| (s, findings.iter().filter(|f| f.severity == s).count()))
        .collect()
}

/// Whether any finding is at least `threshold`.
pub fn any_at_least(findings: &[Finding], threshold: Severity) -> bool {
    findings
        .iter()
        .any(|f| f.severity.cmp(&threshold) != Ordering::Less)
}

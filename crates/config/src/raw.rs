//! The policy file as written: serde structs with `deny_unknown_fields`, no validation.
//!
//! The same account and extension shapes are the JSON bodies of the directory API, and
//! what the store keeps for entries created through it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole policy file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Shadow mode for the whole policy: decisions are computed, stored and counted, but
    /// calls are allowed, bans go to dry-run and no call is ended.
    pub shadow: Option<bool>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    #[serde(default)]
    pub credit: RawCredit,
    pub emergency_numbers: Option<Vec<String>>,
    pub high_risk_builtin: Option<bool>,
    #[serde(default)]
    pub high_risk: Vec<RawHighRisk>,
    #[serde(default)]
    pub plans: BTreeMap<String, RawPlan>,
    #[serde(default)]
    pub schedules: BTreeMap<String, RawSchedule>,
    #[serde(default)]
    pub accounts: BTreeMap<String, RawAccount>,
    #[serde(default)]
    pub extensions: BTreeMap<String, RawExtension>,
    #[serde(default)]
    pub guard: RawGuard,
    #[serde(default)]
    pub firewall: RawFirewall,
    #[serde(default)]
    pub monitor: RawMonitor,
    /// What `tollgate audit` holds extensions and credentials to.
    #[serde(default)]
    pub audit: RawAudit,
    /// The FastAGI server for Asterisk (`agi://HOST:4573/authorize`); off without this section.
    #[serde(default, skip_serializing)]
    pub agi: Option<tollgate_agi::AgiSettings>,
    /// The kill switch: how to end calls in progress through the PBX (Kamailio JSON-RPC,
    /// Asterisk AMI, FreeSWITCH event socket).
    #[serde(default, skip_serializing)]
    pub hangup: tollgate_hangup::HangupConfig,
    /// Where alerts go: the log, webhooks, e-mail, syslog (`tollgate-notify`'s settings).
    #[serde(default, skip_serializing)]
    pub alerts: tollgate_notify::ChannelsConfig,
}

/// Call-pattern monitoring: threshold rules and learned baselines, by name.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    /// An answered call shorter than this counts as short (default 10s).
    pub short_call: Option<RawDuration>,
    #[serde(default)]
    pub rules: BTreeMap<String, RawMonitorRule>,
    #[serde(default)]
    pub baselines: BTreeMap<String, RawBaseline>,
}

/// Which calls a monitoring rule counts (any of; all calls when empty).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevels {
    pub warning: Option<RawAmount>,
    pub critical: Option<RawAmount>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitorRule {
    pub metric: String,
    pub scope: Option<String>,
    pub window: Option<RawDuration>,
    pub destinations: Option<RawProfile>,
    /// Counts as integers; `spend` as money ("5.00"); `minutes` in minutes;
    /// `short_call_ratio` in percent.
    pub warning: Option<RawAmount>,
    pub critical: Option<RawAmount>,
    /// Stricter levels while the schedule is closed.
    pub off_hours: Option<RawLevels>,
    pub schedule: Option<String>,
    pub min_calls: Option<u64>,
    pub on_warning: Option<Vec<String>>,
    pub on_critical: Option<Vec<String>>,
    pub action_for: Option<RawDuration>,
    /// Raise the alerts but only record the actions ("would suspend ...").
    pub shadow: Option<bool>,
}

/// A plain number that may be written as an integer or a decimal (not money).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawNumber {
    Integer(i64),
    Float(f64),
}

impl RawNumber {
    pub fn value(self) -> f64 {
        match self {
            RawNumber::Integer(i) => i as f64,
            RawNumber::Float(f) => f,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBaseline {
    pub metric: String,
    pub scope: Option<String>,
    pub destinations: Option<RawProfile>,
    pub factor: Option<RawNumber>,
    pub deviations: Option<RawNumber>,
    pub floor: Option<RawAmount>,
    pub critical_factor: Option<RawNumber>,
    pub learning_rate: Option<RawNumber>,
    pub warmup: Option<RawDuration>,
    pub on_warning: Option<Vec<String>>,
    pub on_critical: Option<Vec<String>>,
    pub action_for: Option<RawDuration>,
    /// Raise the alerts but only record the actions ("would suspend ...").
    pub shadow: Option<bool>,
}

/// The intrusion guard: jails, scanners, enumeration, flood detection, log sources.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    pub enabled: Option<bool>,
    #[serde(default)]
    pub allowlist: Vec<String>,
    pub aggregate_ipv4: Option<u8>,
    pub aggregate_ipv6: Option<u8>,
    pub offense_memory: Option<RawDuration>,
    pub registration_cidrs: Option<bool>,
    pub scanner_bantime: Option<RawDuration>,
    pub scanner_user_agents_builtin: Option<bool>,
    #[serde(default)]
    pub scanner_user_agents: Vec<RawScanner>,
    /// Jails by name; without any, one "sip-auth" jail (5 in 10m, 1h, doubling to 1w).
    pub jails: Option<BTreeMap<String, RawJail>>,
    pub enumeration: Option<RawEnumeration>,
    pub pike: Option<RawPike>,
    #[serde(default)]
    pub logs: Vec<RawLogSource>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawScanner {
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJail {
    pub maxretry: u32,
    pub findtime: RawDuration,
    pub bantime: RawDuration,
    pub bantime_factor: Option<u32>,
    pub bantime_max: Option<RawDuration>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnumeration {
    pub enabled: Option<bool>,
    pub distinct_users: Option<u32>,
    pub findtime: Option<RawDuration>,
    pub bantime: Option<RawDuration>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPike {
    pub enabled: Option<bool>,
    pub window: Option<RawDuration>,
    pub density: Option<u64>,
    pub subnet_density: Option<u64>,
    pub bantime: Option<RawDuration>,
    pub max_nodes: Option<usize>,
}

/// A log file to tail.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogSource {
    pub path: String,
    /// "asterisk", "freeswitch", "kamailio" or "regex".
    pub format: String,
    /// For format = "regex": named groups `host` (required), `user`, `time`.
    pub regex: Option<String>,
    /// chrono format of the `time` group (default RFC 3339).
    pub time_format: Option<String>,
    /// Where to start in a file seen the first time: "end" (default) or "beginning".
    pub start: Option<String>,
    /// Time zone the log's wall-clock times are written in (default UTC).
    pub time_zone: Option<String>,
}

/// Where bans go, and the baseline ruleset of `tollgate firewall render`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirewall {
    /// "nftables" (default), "iptables", "command", "dry-run" or "none".
    pub backend: Option<String>,
    /// SIP ports the drop rule covers (default 5060, 5061).
    pub ports: Option<Vec<u16>>,
    /// The nft command as an argv (default ["nft"]).
    pub nft: Option<Vec<String>>,
    pub ban_command: Option<Vec<String>>,
    pub unban_command: Option<Vec<String>>,
    /// Networks `firewall render` opens SIP and RTP to (providers, customer sites).
    #[serde(default)]
    pub trusted: Vec<String>,
    /// RTP port range, "10000-20000".
    pub rtp_ports: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub durability: Option<String>,
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: String,
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the token.
    pub sha256: Option<String>,
    /// A file holding the token; generated (mode 0600) on first start when missing.
    pub file: Option<String>,
    /// An environment variable holding the token.
    pub env: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredit {
    pub answer_timeout: Option<RawDuration>,
    pub expiry_grace: Option<RawDuration>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHighRisk {
    pub prefix: String,
    pub reason: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub currency: String,
    /// A CSV file of rates (relative to the policy file).
    pub rates_csv: Option<String>,
    #[serde(default)]
    pub rates: Vec<RawRate>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub prefix: String,
    #[serde(default)]
    pub description: String,
    pub price_per_minute: Option<RawAmount>,
    pub connection_fee: Option<RawAmount>,
    pub increments: Option<String>,
    #[serde(default)]
    pub blocked: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub time_zone: String,
    /// Monday to Friday, unless a day is given on its own.
    pub weekdays: Option<Vec<String>>,
    pub monday: Option<Vec<String>>,
    pub tuesday: Option<Vec<String>>,
    pub wednesday: Option<Vec<String>>,
    pub thursday: Option<Vec<String>>,
    pub friday: Option<Vec<String>>,
    pub saturday: Option<Vec<String>>,
    pub sunday: Option<Vec<String>>,
    #[serde(default)]
    pub holidays: Vec<String>,
    pub outside_hours_classes: Option<Vec<String>>,
}

/// A money amount as written: a decimal string, an integer, or (refused) a float.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawAmount {
    Integer(i64),
    Text(String),
    Float(f64),
}

/// A duration as written: seconds, or text such as "90s", "2m", "1h30m", "1d".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(i64),
    Text(String),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub daily: Option<RawAmount>,
    pub monthly: Option<RawAmount>,
    pub balance: Option<RawAmount>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    pub allowed_classes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_countries: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_countries: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_prefixes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtensionDefaults {
    pub limits: Option<RawLimits>,
    pub max_call_duration: Option<RawDuration>,
    pub max_concurrent_calls: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: Option<String>,
    pub parent: Option<String>,
    pub currency: Option<String>,
    pub time_zone: Option<String>,
    pub country: Option<String>,
    pub international_prefix: Option<String>,
    pub national_prefix: Option<String>,
    /// "MIN-MAX" digits of internal extension numbers, e.g. "3-4".
    pub internal_digits: Option<String>,
    pub plan: Option<String>,
    pub schedule: Option<String>,
    pub limits: Option<RawLimits>,
    pub rules: Option<RawRules>,
    pub extension_defaults: Option<RawExtensionDefaults>,
    /// Shadow mode for this account and those below it (decisions recorded, not enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtension {
    pub account: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    pub limits: Option<RawLimits>,
    pub rules: Option<RawRules>,
    pub schedule: Option<String>,
    pub max_call_duration: Option<RawDuration>,
    pub max_concurrent_calls: Option<u32>,
}

/// `[audit]`: the bar `tollgate audit` sets (every key optional; the audit's defaults
/// otherwise).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Lowest zxcvbn score of a SIP password, 0-4 (default 3).
    pub min_password_score: Option<u8>,
    /// Fewest characters of a SIP password (default 12).
    pub min_password_length: Option<usize>,
    /// Fewest digits of a voicemail PIN (default 6).
    pub min_pin_length: Option<usize>,
    /// Case-insensitive substrings of an id or name that mark a test extension.
    pub test_patterns: Option<Vec<String>>,
    /// No registration and no call for this long: unused (default "30d"; 0 turns it off).
    pub unused_after: Option<RawDuration>,
    /// Minimum firmware per vendor and model, for the User-Agents seen at registration.
    #[serde(default)]
    pub firmware: Vec<RawFirmwareRule>,
}

/// `[[audit.firmware]]`: e.g. `{ vendor = "Yealink", model = "T4", min_version = "66.86.0.160" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirmwareRule {
    pub vendor: String,
    pub model: Option<String>,
    pub min_version: String,
    pub note: Option<String>,
}

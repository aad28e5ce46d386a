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

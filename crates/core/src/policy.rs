//! The typed, validated policy: accounts, extensions, limits, destination rules, plans and
//! schedules. Built by `tollgate-config` from a file, or by code; never parsed here.
//!
//! The directory (accounts and extensions) can change while the service runs (API create,
//! update, delete); [`Policy::upsert_extension`] and friends keep its invariants: every
//! extension's account exists, account parents form no cycle, every named plan and
//! schedule exists.

use std::collections::HashMap;
use std::fmt;

use chrono_tz::Tz;
use ipnet::IpNet;

use crate::money::{Currency, Money};
use crate::number::{ClassSet, DestinationClass, DialPlan, HighRiskList};
use crate::rating::ChargingPlan;
use crate::schedule::Schedule;

/// A money limit that must be set: an amount, or explicitly unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Amount(Money),
    Unlimited,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Amount(m) => m.fmt(f),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// Money limits at one level of the hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Per calendar day in the account's time zone.
    pub daily: Limit,
    /// Per calendar month in the account's time zone.
    pub monthly: Limit,
    /// Prepaid balance: total spend allowed, whatever the period (top-ups raise it).
    pub balance: Option<Money>,
}

impl Limits {
    pub const UNLIMITED: Limits = Limits {
        daily: Limit::Unlimited,
        monthly: Limit::Unlimited,
        balance: None,
    };
}

/// Destination rules at one level. Deny lists win over everything but emergency numbers;
/// explicit allows (prefix or country) admit a number whatever its class; otherwise the
/// class must be allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationRules {
    /// `None`: no restriction by class at this level (accounts default to
    /// [`DEFAULT_ALLOWED_CLASSES`]).
    pub allowed_classes: Option<ClassSet>,
    /// ISO 3166 regions (or "001"), upper case.
    pub allow_countries: Vec<String>,
    pub deny_countries: Vec<String>,
    /// E.164 digits without '+'.
    pub allow_prefixes: Vec<String>,
    pub deny_prefixes: Vec<String>,
}

/// Classes an account may call when its policy does not say: no international, premium,
/// satellite or high-risk destinations until an operator opts in.
pub const DEFAULT_ALLOWED_CLASSES: [DestinationClass; 5] = [
    DestinationClass::Emergency,
    DestinationClass::Internal,
    DestinationClass::National,
    DestinationClass::Mobile,
    DestinationClass::TollFree,
];

/// Said in a denial by the default class set.
pub const DEFAULT_CLASS_NOTE: &str =
    "by default an account may call only emergency, internal, national, mobile and toll_free";

impl DestinationRules {
    pub fn is_empty(&self) -> bool {
        *self == DestinationRules::default()
    }
}

/// Where a directory entry comes from: the policy file (which owns it) or the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Policy,
    Api,
}

/// An organization; may belong to a parent account (a reseller).
#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub currency: Currency,
    pub time_zone: Tz,
    pub dial_plan: DialPlan,
    /// Charging plan name; `None` inherits the parent's.
    pub plan: Option<String>,
    pub limits: Limits,
    pub rules: DestinationRules,
    /// Business-hours schedule name; `None` inherits the parent's (or always open).
    pub schedule: Option<String>,
    pub suspended: bool,
    /// Shadow mode for this account and the accounts below it.
    pub shadow: bool,
    /// Defaults for extensions that do not set their own.
    pub extension_defaults: ExtensionDefaults,
    pub origin: Origin,
}

/// Extension settings an account gives to its extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionDefaults {
    pub limits: Option<Limits>,
    pub max_call_duration_s: u32,
    pub max_concurrent_calls: Option<u32>,
}

impl Default for ExtensionDefaults {
    fn default() -> Self {
        ExtensionDefaults {
            limits: None,
            max_call_duration_s: 3600,
            max_concurrent_calls: None,
        }
    }
}

/// A SIP extension (a phone or trunk user) of an account.
#[derive(Clone, Debug)]
pub struct Extension {
    pub id: String,
    pub account: String,
    /// Source networks calls may come from; empty means anywhere (audited as a finding).
    pub allowed_cidrs: Vec<IpNet>,
    pub limits: Limits,
    pub rules: DestinationRules,
    /// Overrides the account's schedule.
    pub schedule: Option<String>,
    pub max_call_duration_s: u32,
    pub max_concurrent_calls: Option<u32>,
    pub suspended: bool,
    pub origin: Origin,
}

/// Credit-control timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditSettings {
    /// How long an authorized call may ring before its reservation starts to count down.
    pub answer_timeout_s: u32,
    /// Added to the granted time before a call without an `end` is settled.
    pub expiry_grace_s: u32,
}

impl Default for CreditSettings {
    fn default() -> Self {
        CreditSettings {
            answer_timeout_s: 120,
            expiry_grace_s: 60,
        }
    }
}

/// Everything the decision core needs.
#[derive(Clone, Debug)]
pub struct Policy {
    pub accounts: HashMap<String, Account>,
    pub extensions: HashMap<String, Extension>,
    pub plans: HashMap<String, ChargingPlan>,
    pub schedules: HashMap<String, Schedule>,
    pub high_risk: HighRiskList,
    /// Dialed strings that are emergency calls: always allowed, never charged.
    pub emergency_numbers: Vec<String>,
    pub credit: CreditSettings,
    /// Call-pattern monitoring rules (`[monitor]`).
    pub monitor: crate::monitor::MonitorSettings,
    /// Shadow mode for the whole policy (see [`Policy::shadow_for`]).
    pub shadow: bool,
}

/// A directory change that would break the policy's invariants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("account {0:?} does not exist")]
    UnknownAccount(String),
    #[error("extension {0:?} does not exist")]
    UnknownExtension(String),
    #[error("charging plan {0:?} does not exist")]
    UnknownPlan(String),
    #[error("schedule {0:?} does not exist")]
    UnknownSchedule(String),
    #[error("account {0:?} would be its own ancestor")]
    ParentCycle(String),
    #[error("account {account:?} has {extensions} extensions and {children} sub-accounts: delete them first")]
    AccountInUse {
        account: String,
        extensions: usize,
        children: usize,
    },
    #[error(
        "account {account:?} uses currency {account_currency} but {other} uses {other_currency}"
    )]
    CurrencyMismatch {
        account: String,
        account_currency: Currency,
        other: String,
        other_currency: Currency,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Policy {
    /// An empty policy with the shipped high-risk list and the usual emergency numbers.
    pub fn empty() -> Policy {
        Policy {
            accounts: HashMap::new(),
            extensions: HashMap::new(),
            plans: HashMap::new(),
            schedules: HashMap::new(),
            high_risk: HighRiskList::builtin(),
            emergency_numbers: vec!["112".into(), "911".into()],
            credit: CreditSettings::default(),
            monitor: crate::monitor::MonitorSettings::default(),
            shadow: false,
        }
    }

    /// Whether calls of `extension` are in shadow mode: the whole policy, or any account
    /// of its chain. A denial is then recorded but not enforced.
    pub fn shadow_for(&self, extension: &str) -> bool {
        if self.shadow {
            return true;
        }
        self.extensions
            .get(extension)
            .map(|e| self.account_chain(&e.account).iter().any(|a| a.shadow))
            .unwrap_or(false)
    }

    /// The account chain of an extension: its account, then each parent up to the root.
    pub fn account_chain<'a>(&'a self, account: &str) -> Vec<&'a Account> {
        let mut chain = Vec::with_capacity(2);
        let mut next = self.accounts.get(account);
        while let Some(acc) = next {
            // INVARIANT: parents form no cycle (checked on every upsert); the bound is a
            // second guard against a corrupted directory.
            if chain.len() > 64 {
                break;
            }
            chain.push(acc);
            next = acc.parent.as_deref().and_then(|p| self.accounts.get(p));
        }
        chain
    }

    /// The charging plan that applies to an account (its own or the nearest ancestor's).
    pub fn plan_for<'a>(&'a self, chain: &[&'a Account]) -> Option<&'a ChargingPlan> {
        chain
            .iter()
            .find_map(|a| a.plan.as_deref())
            .and_then(|name| self.plans.get(name))
    }

    /// The schedule for an extension: its own, or the nearest account's.
    pub fn schedule_for<'a>(
        &'a self,
        extension: &Extension,
        chain: &[&'a Account],
    ) -> Option<&'a Schedule> {
        extension
            .schedule
            .as_deref()
            .or_else(|| chain.iter().find_map(|a| a.schedule.as_deref()))
            .and_then(|name| self.schedules.get(name))
    }

    /// Adds or replaces an account after checking parent, plan, schedule and currency.
    pub fn upsert_account(&mut self, account: Account) -> Result<(), DirectoryError> {
        if let Some(plan) = &account.plan {
            let found = self
                .plans
                .get(plan)
                .ok_or_else(|| DirectoryError::UnknownPlan(plan.clone()))?;
            if found.currency != account.currency {
                return Err(DirectoryError::CurrencyMismatch {
                    account: account.id.clone(),
                    account_currency: account.currency,
                    other: format!("plan {:?}", found.name),
                    other_currency: found.currency,
                });
            }
        }
        if let Some(schedule) = &account.schedule {
            if !self.schedules.contains_key(schedule) {
                return Err(DirectoryError::UnknownSchedule(schedule.clone()));
            }
        }
        if let Some(parent) = &account.parent {
            let mut cursor = Some(parent.clone());
            let mut steps = 0;
            while let Some(id) = cursor {
                if id == account.id || steps > 64 {
                    return Err(DirectoryError::ParentCycle(account.id.clone()));
                }
                let found = self
                    .accounts
                    .get(&id)
                    .ok_or_else(|| DirectoryError::UnknownAccount(id.clone()))?;
                if found.currency != account.currency {
                    return Err(DirectoryError::CurrencyMismatch {
                        account: account.id.clone(),
                        account_currency: account.currency,
                        other: format!("parent account {:?}", found.id),
                        other_currency: found.currency,
                    });
                }
                cursor = found.parent.clone();
                steps += 1;
            }
        }
        self.accounts.insert(account.id.clone(), account);
        Ok(())
    }

    /// Adds or replaces an extension after checking its account and schedule.
    pub fn upsert_extension(&mut self, extension: Extension) -> Result<(), DirectoryError> {
        if !self.accounts.contains_key(&extension.account) {
            return Err(DirectoryError::UnknownAccount(extension.account.clone()));
        }
        if let Some(schedule) = &extension.schedule {
            if !self.schedules.contains_key(schedule) {
                return Err(DirectoryError::UnknownSchedule(schedule.clone()));
            }
        }
        if extension.max_call_duration_s == 0 {
            return Err(DirectoryError::Invalid(format!(
                "extension {:?}: max_call_duration must be at least 1 second",
                extension.id
            )));
        }
        self.extensions.insert(extension.id.clone(), extension);
        Ok(())
    }

    pub fn remove_extension(&mut self, id: &str) -> Result<Extension, DirectoryError> {
        self.extensions
            .remove(id)
            .ok_or_else(|| DirectoryError::UnknownExtension(id.to_string()))
    }

    pub fn remove_account(&mut self, id: &str) -> Result<Account, DirectoryError> {
        if !self.accounts.contains_key(id) {
            return Err(DirectoryError::UnknownAccount(id.to_string()));
        }
        let extensions = self.extensions.values().filter(|e| e.account == id).count();
        let children = self
            .accounts
            .values()
            .filter(|a| a.parent.as_deref() == Some(id))
            .count();
        if extensions > 0 || children > 0 {
            return Err(DirectoryError::AccountInUse {
                account: id.to_string(),
                extensions,
                children,
            });
        }
        self.accounts
            .remove(id)
            .ok_or_else(|| DirectoryError::UnknownAccount(id.to_string()))
    }
}

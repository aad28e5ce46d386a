//! Unused extensions: configured, but neither registered nor called for weeks.
//!
//! This module owns the rule that turns what a PBX or tollgate's store knows about each
//! extension's activity into `unused_extension` findings. An unused extension is a
//! credential nobody watches: its owner would not notice it being used by someone else.
//! It is pure: the activity and the present time (`now`) are passed in.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::findings::{sort_findings, Finding, Severity};

/// What is known of one extension's use. Several records for one extension are merged
/// (the latest registration and call, the earliest creation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub extension: String,
    pub last_registration: Option<DateTime<Utc>>,
    pub last_call: Option<DateTime<Utc>>,
    /// When the extension was created, if known.
    pub created: Option<DateTime<Utc>>,
}

/// `unused_extension` (medium) for every extension of `extension_ids` with no registration
/// and no call in the `unused_after_days` days before `now`, sorted. One never used is not
/// reported while it was created less than that long ago (it may not be handed out yet);
/// one with no activity record at all counts as never used. `unused_after_days == 0` turns
/// the check off. Activity of extensions not in `extension_ids` is ignored.
pub fn audit_usage(
    extension_ids: &[String],
    activity: &[Activity],
    now: DateTime<Utc>,
    unused_after_days: u32,
) -> Vec<Finding> {
    if unused_after_days == 0 {
        return Vec::new();
    }
    let cutoff = now
        .checked_sub_signed(TimeDelta::days(i64::from(unused_after_days)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);

    let mut merged: HashMap<&str, Activity> = HashMap::new();
    for record in activity {
        let entry = merged
            .entry(record.extension.as_str())
            .or_insert_with(|| Activity {
                extension: record.extension.clone(),
                last_registration: None,
                last_call: None,
                created: None,
            });
        entry.last_registration = entry.last_registration.max(record.last_registration);
        entry.last_call = entry.last_call.max(record.last_call);
        entry.created = match (entry.created, record.created) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    let mut findings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in extension_ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        let record = merged.get(id.as_str());
        let registration = record.and_then(|r| r.last_registration);
        let call = record.and_then(|r| r.last_call);
        let created = record.and_then(|r| r.created);
        let last_used = registration.max(call);
        if last_used.is_some_and(|used| used >= cutoff) {
            continue;
        }
        if last_used.is_none() && created.is_some_and(|created| created > cutoff) {
            continue;
        }
        let mut evidence = format!(
            "last registration {}, last call {}: nothing in the last {unused_after_days} days",
            date(registration),
            date(call)
        );
        if let Some(created) = created {
            evidence.push_str(&format!(" (created {})", created.format("%Y-%m-%d")));
        }
        findings.push(Finding::new(
            Severity::Medium,
            "unused_extension",
            format!("extension {id}"),
            evidence,
            "delete or disable it",
        ));
    }
    sort_findings(&mut findings);
    findings
}

fn date(when: Option<DateTime<Utc>>) -> String {
    when.map_or_else(|| "never".to_string(), |t| t.format("%Y-%m-%d").to_string())
}

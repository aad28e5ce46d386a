//! `tollgate audit`: import PBX configuration files, audit them (and optionally a policy),
//! print the findings and exit non-zero at or above `--fail-on`.
//!
//! The rules live in `tollgate_audit::findings` and the rendering in
//! `tollgate_audit::report`; this module only reads the sources named on the command line,
//! prints import problems, writes the outputs and, with `--fix`, generated replacements.
//! Replacement credentials are the only secrets this command ever prints, and only on
//! request.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use tollgate_audit::findings::{any_at_least, audit_inventory, audit_policy, Replace};
use tollgate_audit::firmware::{audit_firmware, FirmwareRule, SeenDevice};
use tollgate_audit::generate::{generate_password, generate_pin};
use tollgate_audit::import::{
    import_acl_conf, import_csv, import_freeswitch, import_json, import_pjsip, import_sip_conf,
    import_voicemail,
};
use tollgate_audit::inventory::Inventory;
use tollgate_audit::report::Report;
use tollgate_audit::usage::{audit_usage, Activity};
use tollgate_audit::{check_pin, AuditOptions, Finding, Severity};
use tollgate_config::Loaded;
use tollgate_store::{Durability, SqliteStore, Store};

/// Length of a `--fix` SIP password: the same default as `tollgate passwd`.
const FIX_PASSWORD_LENGTH: usize = 20;
/// zxcvbn score of a `--fix` SIP password: the same default as `tollgate passwd`.
const FIX_PASSWORD_SCORE: u8 = 4;
/// New PINs that clash with their mailbox are drawn again; a clash has a chance of 2 in
/// 10^6, so this bound is never met unless the generator is broken.
const FIX_PIN_TRIES: usize = 100;

/// What a `--from` source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pjsip,
    Sip,
    Voicemail,
    Acl,
    FreeSwitch,
    Csv,
    Json,
}

/// One `--from KIND:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: Kind,
    pub path: PathBuf,
}

/// Parses `KIND:PATH` for clap (whose error exits with status 2, a usage error). The first
/// colon separates, so a path may itself contain colons.
pub fn parse_source(text: &str) -> Result<Source, String> {
    let Some((kind, path)) = text.split_once(':') else {
        return Err(format!(
            "{text:?}: expected KIND:PATH, KIND one of pjsip, sip, voicemail, acl, freeswitch, csv, json"
        ));
    };
    let kind = match kind.trim().to_ascii_lowercase().as_str() {
        "pjsip" => Kind::Pjsip,
        "sip" => Kind::Sip,
        "voicemail" => Kind::Voicemail,
        "acl" => Kind::Acl,
        "freeswitch" => Kind::FreeSwitch,
        "csv" => Kind::Csv,
        "json" => Kind::Json,
        other => {
            return Err(format!(
            "unknown kind {other:?} (expected pjsip, sip, voicemail, acl, freeswitch, csv or json)"
        ))
        }
    };
    if path.is_empty() {
        return Err(format!("{text:?}: no path after the kind"));
    }
    Ok(Source {
        kind,
        path: PathBuf::from(path),
    })
}

fn import(source: &Source) -> Inventory {
    match source.kind {
        Kind::Pjsip => import_pjsip(&source.path),
        Kind::Sip => import_sip_conf(&source.path),
        Kind::Voicemail => import_voicemail(&source.path),
        Kind::Acl => import_acl_conf(&source.path),
        Kind::FreeSwitch => import_freeswitch(&source.path),
        Kind::Csv => import_csv(&source.path),
        Kind::Json => import_json(&source.path),
    }
}

/// The command's flags, checked by clap.
pub struct Options<'a> {
    pub sources: &'a [Source],
    pub json: bool,
    pub html: Option<&'a Path>,
    pub fail_on: Option<Severity>,
    pub fix: bool,
    pub database: Option<&'a Path>,
    pub unused_after: Option<u32>,
    pub min_score: Option<u8>,
    pub min_length: Option<usize>,
    pub min_pin_length: Option<usize>,
    pub test_patterns: &'a [String],
}

/// The audit's settings: its defaults, then the policy's `[audit]`, then the flags.
fn audit_options(loaded: Option<&Loaded>, options: &Options<'_>) -> AuditOptions {
    let mut out = AuditOptions::default();
    if let Some(settings) = loaded.map(|l| &l.settings.audit) {
        if let Some(v) = settings.min_password_score {
            out.password.min_score = v;
        }
        if let Some(v) = settings.min_password_length {
            out.password.min_length = v;
        }
        if let Some(v) = settings.min_pin_length {
            out.pin.min_length = v;
        }
        if let Some(v) = &settings.test_patterns {
            out.test_patterns = v.clone();
        }
        if let Some(v) = settings.unused_after_days {
            out.unused_after_days = v;
        }
        out.firmware = settings
            .firmware
            .iter()
            .map(|r| FirmwareRule {
                vendor: r.vendor.clone(),
                model: r.model.clone(),
                min_version: r.min_version.clone(),
                note: r.note.clone(),
            })
            .collect();
    }
    if let Some(v) = options.min_score {
        out.password.min_score = v;
    }
    if let Some(v) = options.min_length {
        out.password.min_length = v;
    }
    if let Some(v) = options.min_pin_length {
        out.pin.min_length = v;
    }
    if !options.test_patterns.is_empty() {
        out.test_patterns = options.test_patterns.to_vec();
    }
    if let Some(v) = options.unused_after {
        out.unused_after_days = v;
    }
    out
}

/// What the store knows of registrations and calls, for the unused and firmware checks.
struct History {
    devices: Vec<SeenDevice>,
    activity: Vec<Activity>,
}

fn read_history(path: &Path) -> Result<History> {
    let store = SqliteStore::open(path, Durability::Normal)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    let registrations = store.registrations().context("cannot read registrations")?;
    let last_calls = store.last_calls().context("cannot read calls")?;
    let mut activity: BTreeMap<String, Activity> = BTreeMap::new();
    let mut devices = Vec::new();
    for r in registrations {
        if let Some(ua) = &r.user_agent {
            devices.push(SeenDevice {
                extension: r.extension.clone(),
                user_agent: ua.clone(),
                ip: r.ip,
                last_seen: r.at,
            });
        }
        activity
            .entry(r.extension.clone())
            .or_insert_with(|| Activity {
                extension: r.extension.clone(),
                last_registration: None,
                last_call: None,
                created: None,
            })
            .last_registration = Some(r.at);
    }
    for (extension, at) in last_calls {
        activity
            .entry(extension.clone())
            .or_insert_with(|| Activity {
                extension,
                last_registration: None,
                last_call: None,
                created: None,
            })
            .last_call = Some(at);
    }
    Ok(History {
        devices,
        activity: activity.into_values().collect(),
    })
}

pub fn run(loaded: Option<&Loaded>, options: &Options<'_>) -> Result<ExitCode> {
    let mut inventory = Inventory::default();
    for source in options.sources {
        inventory.merge(import(source));
    }
    inventory.resolve_acls();
    for problem in &inventory.problems {
        eprintln!("{problem}");
    }

    let audit_options = audit_options(loaded, options);
    let mut findings = audit_inventory(&inventory, &audit_options);
    if let Some(loaded) = loaded {
        findings.extend(audit_policy(&loaded.policy));
    }
    // History: the named database, or the policy's when it exists.
    let database = options.database.map(Path::to_path_buf).or_else(|| {
        loaded
            .map(|l| l.settings.server.database.clone())
            .filter(|p| p.exists())
    });
    match &database {
        Some(path) => {
            let history = read_history(path)?;
            findings.extend(audit_firmware(&history.devices, &audit_options.firmware));
            let mut ids: BTreeSet<String> =
                inventory.extensions.iter().map(|e| e.id.clone()).collect();
            if let Some(loaded) = loaded {
                ids.extend(loaded.policy.extensions.keys().cloned());
            }
            let ids: Vec<String> = ids.into_iter().collect();
            findings.extend(audit_usage(
                &ids,
                &history.activity,
                Utc::now(),
                audit_options.unused_after_days,
            ));
        }
        None => eprintln!(
            "note: no database (--database, or --config with an existing one): unused extensions and the firmware of registered phones are not checked"
        ),
    }
    tollgate_audit::findings::sort_findings(&mut findings);
    let report = Report::new(findings, &inventory.problems);

    if let Some(path) = options.html {
        std::fs::write(path, report.to_html())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }

    let stdout = std::io::stdout();
    let colour = stdout.is_terminal();
    let mut out = stdout.lock();
    let text = if options.json {
        let mut json = report
            .to_json()
            .context("cannot render the report as JSON")?;
        json.push('\n');
        json
    } else {
        report.to_text(colour)
    };
    out.write_all(text.as_bytes())
        .context("cannot write to standard output")?;
    if options.fix {
        let fixes = fixes(&report.findings, &audit_options)?;
        for line in fixes {
            writeln!(out, "{line}").context("cannot write to standard output")?;
        }
    }
    out.flush().context("cannot write to standard output")?;

    let failed = options
        .fail_on
        .is_some_and(|threshold| any_at_least(&report.findings, threshold));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One replacement per weak credential (an extension with three password weaknesses gets
/// one new password), in the report's order.
fn fixes(findings: &[Finding], options: &AuditOptions) -> Result<Vec<String>> {
    let mut done = BTreeSet::new();
    let mut lines = Vec::new();
    for finding in findings {
        let Some(replace) = &finding.replace else {
            continue;
        };
        if !done.insert(finding.subject.clone()) {
            continue;
        }
        match replace {
            Replace::SipPassword => {
                let password = generate_password(FIX_PASSWORD_LENGTH, FIX_PASSWORD_SCORE)
                    .context("cannot generate a password")?;
                lines.push(format!(
                    "new SIP password for {}: {password}",
                    finding.subject
                ));
            }
            Replace::VoicemailPin { mailbox } => {
                let pin = fix_pin(mailbox, options)?;
                lines.push(format!("new voicemail PIN for {}: {pin}", finding.subject));
            }
        }
    }
    Ok(lines)
}

/// A generated PIN that is also not the mailbox number or its reverse (`generate_pin`
/// cannot know the mailbox).
fn fix_pin(mailbox: &str, options: &AuditOptions) -> Result<String> {
    let length = options.pin.min_length.max(6);
    for _ in 0..FIX_PIN_TRIES {
        let pin = generate_pin(length).context("cannot generate a PIN")?;
        if check_pin(&pin, mailbox, &options.pin).is_empty() {
            return Ok(pin);
        }
    }
    bail!("cannot generate a PIN for mailbox {mailbox} that passes the PIN checks")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[test]
    fn from_is_kind_colon_path() {
        assert_eq!(
            parse_source("pjsip:/etc/asterisk/pjsip.conf"),
            Ok(Source {
                kind: Kind::Pjsip,
                path: PathBuf::from("/etc/asterisk/pjsip.conf")
            })
        );
        assert_eq!(
            parse_source("FreeSWITCH:dir:with:colons").map(|s| (s.kind, s.path)),
            Ok((Kind::FreeSwitch, PathBuf::from("dir:with:colons")))
        );
        for (text, kind) in [
            ("sip:a", Kind::Sip),
            ("voicemail:a", Kind::Voicemail),
            ("csv:a", Kind::Csv),
            ("json:a", Kind::Json),
        ] {
            assert_eq!(parse_source(text).map(|s| s.kind), Ok(kind));
        }
        assert!(parse_source("pjsip.conf").is_err());
        assert!(parse_source("iax:iax.conf").is_err());
        assert!(parse_source("sip:").is_err());
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        let parse = |args: &[&str]| crate::Cli::try_parse_from(args).map(|_| ());
        assert!(parse(&["tollgate", "audit", "--from", "sip:a", "--from", "csv:b"]).is_ok());
        assert!(parse(&["tollgate", "audit", "--config", "p.toml"]).is_ok());
        // Neither a source nor a policy; a bad kind; a bad severity; --fix with --json.
        for bad in [
            &["tollgate", "audit"][..],
            &["tollgate", "audit", "--from", "iax:a"],
            &[
                "tollgate",
                "audit",
                "--from",
                "sip:a",
                "--fail-on",
                "severe",
            ],
            &["tollgate", "audit", "--from", "sip:a", "--json", "--fix"],
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn fixed_pins_pass_the_checks_for_their_mailbox() {
        let options = AuditOptions::default();
        for mailbox in ["123456", "1001", "654321"] {
            let pin = fix_pin(mailbox, &options).unwrap();
            assert!(check_pin(&pin, mailbox, &options.pin).is_empty());
        }
    }
}

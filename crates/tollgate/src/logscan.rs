//! `tollgate logscan`: a one-shot run of the guard's jails over a PBX log, printing per
//! source address the failures counted and the bans it would get. Streams the file (flat
//! memory whatever its size) and uses the log's own timestamps, so `findtime` and ban
//! expiry follow the log's time, not the wall clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tollgate_config::Loaded;
use tollgate_core::guard::{Ban, Guard, GuardAction};
use tollgate_core::guard_event::AuthOutcome;
use tollgate_ingest::{LogFormat, TimeContext, YearRule};

#[derive(Serialize)]
struct SourceReport {
    ip: IpAddr,
    failures: u64,
    successes: u64,
    /// Digest challenges (FreeSWITCH logs them): recorded, not counted by the jails.
    challenges: u64,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    bans: Vec<Ban>,
}

#[derive(Serialize)]
struct Report {
    file: String,
    format: String,
    lines: u64,
    events: u64,
    events_without_time: u64,
    sources: Vec<SourceReport>,
}

pub struct Options<'a> {
    pub format: &'a str,
    pub file: &'a Path,
    pub json: bool,
    pub year: Option<i32>,
    pub time_zone: Option<&'a str>,
}

/// Runs over `options.file` with the guard settings and directory of `loaded`, or, without
/// a policy, with the guard's built-in defaults (one `sip-auth` jail: 5 failures in 10
/// minutes) and no directory (so no registration source checks). Not loading a policy
/// also skips compiling libphonenumber's metadata, which a log scan does not need and
/// which would cost most of its memory and start-up time.
pub fn run(loaded: Option<&Loaded>, options: &Options<'_>) -> Result<ExitCode> {
    let format: LogFormat = options.format.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let zone = match options.time_zone {
        Some(name) => name
            .parse::<chrono_tz::Tz>()
            .map_err(|_| anyhow::anyhow!("unknown time zone {name:?}"))?,
        None => chrono_tz::Tz::UTC,
    };
    let started = Utc::now();
    let ctx = TimeContext {
        zone,
        year: match options.year {
            Some(year) => YearRule::Fixed(year),
            None => YearRule::Recent(started),
        },
    };
    let file = std::fs::File::open(options.file)
        .with_context(|| format!("cannot open {}", options.file.display()))?;
    let empty = std::collections::HashMap::new();
    let (guard_policy, directory) = match loaded {
        Some(loaded) => (
            loaded.settings.guard.policy.clone(),
            &loaded.policy.extensions,
        ),
        None => (tollgate_core::guard::GuardPolicy::default(), &empty),
    };
    let mut guard = Guard::new(guard_policy);
    let mut sources: HashMap<IpAddr, SourceReport> = HashMap::new();
    let mut events = 0u64;
    let mut without_time = 0u64;
    // Events without a time of their own happen at the last time seen (or now).
    let mut clock: Option<DateTime<Utc>> = None;
    let mut last_expiry: Option<DateTime<Utc>> = None;
    let stats =
        tollgate_ingest::scan_reader(&format, std::io::BufReader::new(file), &ctx, |event| {
            events += 1;
            let now = match event.at {
                Some(at) => {
                    clock = Some(clock.map_or(at, |c| c.max(at)));
                    at
                }
                None => {
                    without_time += 1;
                    clock.unwrap_or(started)
                }
            };
            if last_expiry.is_none_or(|t| (now - t).num_seconds() >= 1) {
                guard.expire(now);
                last_expiry = Some(now);
            }
            let source = sources.entry(event.ip).or_insert_with(|| SourceReport {
                ip: event.ip,
                failures: 0,
                successes: 0,
                challenges: 0,
                first_seen: None,
                last_seen: None,
                bans: Vec::new(),
            });
            match event.outcome {
                AuthOutcome::Failure => source.failures += 1,
                AuthOutcome::Success => source.successes += 1,
                AuthOutcome::Challenge => source.challenges += 1,
            }
            source.first_seen = source.first_seen.or(event.at);
            if event.at.is_some() {
                source.last_seen = event.at;
            }
            let (_, actions) = guard.on_auth_event(directory, &event, now);
            for action in actions {
                if let GuardAction::Ban(ban) = action {
                    source.bans.push(ban);
                }
            }
        })
        .with_context(|| format!("cannot read {}", options.file.display()))?;
    let mut sources: Vec<SourceReport> = sources.into_values().collect();
    sources.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.ip.cmp(&b.ip)));
    let report = Report {
        file: options.file.display().to_string(),
        format: options.format.to_string(),
        lines: stats.lines,
        events,
        events_without_time: without_time,
        sources,
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(report: &Report) {
    use std::fmt::Write as _;
    let mut out = String::new();
    let failures: u64 = report.sources.iter().map(|s| s.failures).sum();
    let banned = report.sources.iter().filter(|s| !s.bans.is_empty()).count();
    let _ = writeln!(
        out,
        "{}: {} lines, {} events ({} failures) from {} addresses; {} would be banned",
        report.file,
        report.lines,
        report.events,
        failures,
        report.sources.len(),
        banned
    );
    if report.events_without_time > 0 {
        let _ = writeln!(
        out,
            "note: {} events had no usable time (no year in the log? pass --year): they count at the last time seen",
            report.events_without_time
        );
    }
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>9}  bans",
        "address", "failures", "successes"
    );
    for source in &report.sources {
        let bans = if source.bans.is_empty() {
            "-".to_string()
        } else {
            source
                .bans
                .iter()
                .map(|b| {
                    let length = b
                        .expires_at
                        .map(|e| format!("{} s", (e - b.banned_at).num_seconds()))
                        .unwrap_or_else(|| "until lifted".into());
                    format!(
                        "{} {} at {} ({length}, offense {})",
                        b.target,
                        b.rule,
                        b.banned_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        b.offense
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            out,
            "{:<40} {:>9} {:>9}  {bans}",
            source.ip.to_string(),
            source.failures,
            source.successes
        );
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
}

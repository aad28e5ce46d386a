//! Call-pattern monitoring, in process: what the detectors cost.
//!
//! Builds a policy with 100,000 extensions (from TOML for the accounts and rules, the
//! extensions cloned in code) and the twelve detectors of a realistic `[monitor]` section
//! (every metric, two learned baselines), then measures, each as the median of `--runs`:
//!
//! - `authorize` + `answer` + `end` cycles on random extensions with the rules, and the
//!   same engine without them in the same run: the added cost per call and per authorize;
//! - the monitor's tick with its idle sweep over every tracked subject;
//! - call events per second through the detectors alone (the monitor fed attempts,
//!   answers and ends directly, three events per call);
//! - resident memory per tracked extension once every extension has made a call.
//!
//! `cargo run --release -p tollgate-bench --bin monitor [-- --extensions 100000 --ops 200000]`

#![allow(
    clippy::expect_used,
    reason = "a benchmark: a failed authorize is a bug to stop on, not to handle"
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use clap::Parser;
use tollgate_bench::{median, mib, rss_bytes, Rng};
use tollgate_core::engine::{AuthorizeRequest, Decision};
use tollgate_core::monitor::{AttemptObservation, Monitor};
use tollgate_core::number::classify;
use tollgate_core::{Engine, Money};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    extensions: usize,
    /// Calls per pass.
    #[arg(long, default_value_t = 200_000)]
    ops: usize,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// A pass stops after this many seconds even if it has not done `--ops`.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
}

const POLICY: &str = r#"
[plans.std]
currency = "EUR"
rates = [
  { prefix = "+33",  description = "France", price_per_minute = "0.01", increments = "60/60" },
  { prefix = "+336", description = "France mobile", price_per_minute = "0.05", increments = "30/6" },
  { prefix = "+44",  description = "United Kingdom", price_per_minute = "0.02", increments = "1/1" },
  { prefix = "+49",  description = "Germany", price_per_minute = "0.02", increments = "1/1" },
]

[accounts.acme]
country = "FR"
time_zone = "Europe/Paris"
plan = "std"
limits = { daily = "unlimited", monthly = "unlimited" }
rules = { allowed_classes = ["emergency", "internal", "national", "mobile", "toll_free", "international"] }
extension_defaults = { limits = { daily = "100000.00", monthly = "1000000.00" } }

[extensions.template]
account = "acme"
allowed_cidrs = ["192.0.2.0/24"]
"#;

const RULES: &str = r#"
[monitor.rules.satellite_burst]
metric = "attempts"
destinations = { classes = ["satellite", "high_risk", "premium"] }
window = "10m"
warning = 3
critical = 5
[monitor.rules.attempts_per_hour]
metric = "attempts"
window = "1h"
warning = 300
critical = 600
off_hours = { warning = 50, critical = 100 }
[monitor.rules.international]
metric = "attempts"
destinations = { classes = ["international"] }
scope = "account"
window = "1h"
warning = 1000000
[monitor.rules.concurrent]
metric = "concurrent"
warning = 40
critical = 80
[monitor.rules.minutes]
metric = "minutes"
window = "1h"
warning = 500
[monitor.rules.spend]
metric = "spend"
scope = "account"
window = "1d"
warning = "100000.00"
[monitor.rules.distinct]
metric = "distinct_destinations"
window = "1h"
warning = 250
[monitor.rules.repeated]
metric = "repeated_calls"
window = "10m"
warning = 50
[monitor.rules.short_calls]
metric = "short_call_ratio"
window = "1h"
warning = 95
min_calls = 100
[monitor.rules.denied]
metric = "denied"
window = "10m"
warning = 50
[monitor.baselines.usual_attempts]
metric = "attempts"
floor = 1000
[monitor.baselines.usual_spend]
metric = "spend"
scope = "account"
floor = "100000.00"
"#;

fn engine(extensions: usize, with_rules: bool) -> Result<Engine> {
    let text = if with_rules {
        format!("{POLICY}\n{RULES}")
    } else {
        POLICY.to_string()
    };
    let loaded = tollgate_config::load_str(&text, Path::new("bench.toml"), Path::new("."))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut policy = loaded.policy;
    let template = policy
        .extensions
        .remove("template")
        .context("template extension")?;
    for i in 0..extensions {
        let mut ext = template.clone();
        ext.id = format!("{}", 100_000 + i);
        policy.extensions.insert(ext.id.clone(), ext);
    }
    Ok(Engine::new(policy))
}

fn number(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=4 => rng.digits("+33142XXXXXX"),
        5..=7 => rng.digits("+336XXXXXXXX"),
        8 => rng.digits("+44207XXXXXXX"),
        _ => rng.digits("+4930XXXXXXXX"),
    }
}

/// `ops` authorize + answer + end cycles; returns seconds per cycle (ticks excluded) and
/// per authorize.
fn cycles(engine: &mut Engine, args: &Args, start: DateTime<Utc>, seed: u64) -> (f64, f64) {
    let mut rng = Rng::new(seed);
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let numbers: Vec<String> = (0..4096).map(|_| number(&mut rng)).collect();
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut authorize_time = Duration::ZERO;
    let mut tick_time = Duration::ZERO;
    let began = Instant::now();
    let mut done = 0;
    for i in 0..args.ops {
        if Instant::now() > deadline {
            break;
        }
        let ext = format!("{}", 100_000 + rng.index(args.extensions));
        let call_id = format!("s{seed}-{i}");
        // Spread over a day so windows slide and baselines roll hours.
        let at = start + chrono::Duration::milliseconds((i as i64) * 400);
        let t = Instant::now();
        let (decision, _) = engine
            .authorize(
                &AuthorizeRequest {
                    call_id: &call_id,
                    extension: &ext,
                    source_ip: ip,
                    number: &numbers[i % numbers.len()],
                    pbx_ref: None,
                },
                at,
            )
            .expect("authorize");
        authorize_time += t.elapsed();
        if matches!(decision, Decision::Allow(_)) {
            let _ = engine.answer(&call_id, at);
            let _ = engine.end(
                &call_id,
                Some(30 + (i % 200) as u64),
                at + chrono::Duration::seconds(1),
            );
        }
        let _ = black_box(engine.monitor.drain_effects());
        if i % 1000 == 0 {
            // The service ticks every 5 s of wall time; timed apart (see the sweep figure).
            let t = Instant::now();
            engine.tick(at);
            tick_time += t.elapsed();
        }
        done += 1;
    }
    let total = (began.elapsed() - tick_time).as_secs_f64();
    (
        total / done as f64,
        authorize_time.as_secs_f64() / done as f64,
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    tollgate_core::number::warm_up();
    let start = Utc
        .with_ymd_and_hms(2026, 11, 26, 8, 0, 0)
        .single()
        .context("time")?;
    println!(
        "monitoring benchmark: {} extensions, {} calls per pass, {} runs, 12 detectors",
        args.extensions, args.ops, args.runs
    );

    let rss0 = rss_bytes().unwrap_or(0);
    let mut with = engine(args.extensions, true)?;
    let rss_built = rss_bytes().unwrap_or(0);
    let mut without = engine(args.extensions, false)?;

    // Memory: one call from every extension, so each is tracked by every extension rule.
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let before = rss_bytes().unwrap_or(0);
    for i in 0..args.extensions {
        let ext = format!("{}", 100_000 + i);
        let call_id = format!("m{i}");
        let (d, _) = with
            .authorize(
                &AuthorizeRequest {
                    call_id: &call_id,
                    extension: &ext,
                    source_ip: ip,
                    number: "+33142685300",
                    pbx_ref: None,
                },
                start,
            )
            .expect("authorize");
        if matches!(d, Decision::Allow(_)) {
            let _ = with.end(&call_id, Some(60), start);
        }
    }
    let _ = with.monitor.drain_effects();
    let after = rss_bytes().unwrap_or(0);
    let tracked = with.monitor.tracked_subjects();
    println!(
        "memory: policy with rules {}; {} subjects tracked after one call each: {}, {:.0} bytes per tracked extension (ledger levels included)",
        mib(rss_built.saturating_sub(rss0) as f64),
        tracked,
        mib(after.saturating_sub(before) as f64),
        after.saturating_sub(before) as f64 / args.extensions as f64
    );

    // The tick with an idle sweep over every tracked subject (once a minute in service).
    let mut sweeps = Vec::new();
    for k in 0..args.runs {
        let at = start + chrono::Duration::minutes(2 * (k as i64 + 1));
        let t = Instant::now();
        with.tick(at);
        sweeps.push(t.elapsed().as_secs_f64());
    }
    println!(
        "tick with the idle sweep over {} tracked subjects: {:.1} ms (once a minute in the service)",
        with.monitor.tracked_subjects(),
        median(&sweeps) * 1e3
    );

    let mut cyc_with = Vec::new();
    let mut cyc_without = Vec::new();
    let mut auth_with = Vec::new();
    let mut auth_without = Vec::new();
    for run in 0..args.runs {
        let day = start + chrono::Duration::days(1 + run as i64);
        let (c, a) = cycles(&mut without, &args, day, 7 + run as u64);
        cyc_without.push(c);
        auth_without.push(a);
        let (c, a) = cycles(&mut with, &args, day, 7 + run as u64);
        cyc_with.push(c);
        auth_with.push(a);
    }
    let (cw, co) = (median(&cyc_with), median(&cyc_without));
    let (aw, ao) = (median(&auth_with), median(&auth_without));
    println!("cycle (authorize+answer+end, ticks apart): without rules {:.2} µs, with 12 detectors {:.2} µs: +{:.2} µs ({:.2}×)", co * 1e6, cw * 1e6, (cw - co) * 1e6, cw / co);
    println!(
        "authorize alone: without rules {:.2} µs, with {:.2} µs: +{:.2} µs added latency ({:.2}×)",
        ao * 1e6,
        aw * 1e6,
        (aw - ao) * 1e6,
        aw / ao
    );

    // The detectors alone: attempts, answers and ends straight into a Monitor.
    let settings = with.policy.monitor.clone();
    let mut rng = Rng::new(99);
    let accounts = vec!["acme".to_string()];
    let plan = &with.policy.accounts["acme"].dial_plan;
    let destinations: Vec<_> = (0..4096)
        .map(|_| classify(&number(&mut rng), plan, &[], &with.policy.high_risk).expect("classify"))
        .collect();
    let mut rates = Vec::new();
    for run in 0..args.runs {
        let mut monitor = Monitor::new(settings.clone(), &with.policy.schedules);
        let exts: Vec<String> = (0..args.extensions)
            .map(|i| format!("{}", 100_000 + i))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
        let began = Instant::now();
        let mut events = 0u64;
        let base = start + chrono::Duration::days(10 + run as i64);
        for i in 0..args.ops {
            if Instant::now() > deadline {
                break;
            }
            let at = base + chrono::Duration::milliseconds(i as i64 * 400);
            let call_id = format!("e{i}");
            let ext = &exts[rng.index(exts.len())];
            monitor.observe_attempt(
                &AttemptObservation {
                    call_id: &call_id,
                    extension: ext,
                    accounts: &accounts,
                    source_ip: ip,
                    destination: &destinations[i % destinations.len()],
                    allowed: true,
                    off_hours: false,
                },
                at,
            );
            monitor.observe_answer(&call_id, at);
            monitor.observe_end(&call_id, 60, 60, Money::from_cents(2), at);
            let _ = black_box(monitor.drain_effects());
            if i % 1000 == 0 {
                monitor.tick(at);
            }
            events += 3;
        }
        rates.push(events as f64 / began.elapsed().as_secs_f64());
    }
    println!(
        "detectors alone: {:.0} call events/s (median; 3 events per call, {} extensions)",
        median(&rates),
        args.extensions
    );
    Ok(())
}

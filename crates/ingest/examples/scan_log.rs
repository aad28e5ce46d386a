//! Scans a log file with a built-in format and prints failures per address and the
//! throughput: `cargo run --release -p tollgate-ingest --example scan_log -- asterisk FILE`.
//! A stand-in for `tollgate logscan` when measuring the parser alone (time, memory).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use tollgate_core::guard_event::AuthOutcome;
use tollgate_ingest::{scan_reader, LogFormat, TimeContext};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: scan_log asterisk|freeswitch|kamailio FILE";
    let format: LogFormat = args.next().ok_or(usage)?.parse()?;
    let path = args.next().ok_or(usage)?;
    let start = Instant::now();
    let mut failures: BTreeMap<IpAddr, u64> = BTreeMap::new();
    let file = std::fs::File::open(&path)?;
    let stats = scan_reader(&format, file, &TimeContext::utc(), |e| {
        if e.outcome == AuthOutcome::Failure {
            *failures.entry(e.ip).or_default() += 1;
        }
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    for (ip, n) in &failures {
        println!("{ip}\t{n}");
    }
    eprintln!(
        "{} lines, {} events, {} failures from {} addresses in {:.3} s: {:.2} M lines/s",
        stats.lines,
        stats.events,
        failures.values().sum::<u64>(),
        failures.len(),
        elapsed,
        stats.lines as f64 / elapsed / 1e6
    );
    Ok(())
}

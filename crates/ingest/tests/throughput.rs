//! Throughput of the Asterisk scanner on a generated 1,000,000-line log (ignored by
//! default; run in release):
//!
//! ```text
//! cargo test --release -p tollgate-ingest --test throughput -- --ignored --nocapture
//! ```
//!
//! With `TOLLGATE_BENCH_FAIL2BAN=1` it also times `fail2ban-regex` with fail2ban's
//! `asterisk` filter on the same file and prints the ratio (about 15 s).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::time::{Duration, Instant};

use tollgate_core::guard_event::AuthOutcome;
use tollgate_ingest::{generate_asterisk_log, scan_bytes, scan_reader, LogFormat, TimeContext};

const LINES: usize = 1_000_000;

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.unwrap())
}

#[test]
#[ignore = "benchmark: run in release with --ignored"]
fn asterisk_scan_throughput() {
    let log = generate_asterisk_log(LINES, 1);
    println!(
        "generated {} lines ({:.1} MB), {} failures from {} addresses, {} successes",
        log.lines,
        log.text.len() as f64 / 1e6,
        log.failures,
        log.failures_by_ip.len(),
        log.successes
    );

    let (mem, (failures, successes)) = best_of(5, || {
        let (mut f, mut s) = (0usize, 0usize);
        scan_bytes(&LogFormat::Asterisk, log.text.as_bytes(), |e| {
            match e.outcome {
                AuthOutcome::Failure => f += 1,
                AuthOutcome::Success => s += 1,
                AuthOutcome::Challenge => {}
            }
        });
        (f, s)
    });
    assert_eq!(failures, log.failures);
    assert_eq!(successes, log.successes);
    let mem_rate = LINES as f64 / mem.as_secs_f64();
    println!(
        "scan_bytes (in memory): {:.3} s, {:.2} M lines/s, {:.0} MB/s",
        mem.as_secs_f64(),
        mem_rate / 1e6,
        log.text.len() as f64 / 1e6 / mem.as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full");
    std::fs::write(&path, &log.text).unwrap();
    let (file, stats) = best_of(5, || {
        let f = std::fs::File::open(&path).unwrap();
        scan_reader(&LogFormat::Asterisk, f, &TimeContext::utc(), |_| {}).unwrap()
    });
    assert_eq!(stats.lines as usize, LINES);
    assert_eq!(stats.events as usize, log.failures + log.successes);
    let file_rate = LINES as f64 / file.as_secs_f64();
    println!(
        "scan_reader (file, 1 MiB chunks): {:.3} s, {:.2} M lines/s",
        file.as_secs_f64(),
        file_rate / 1e6
    );

    if std::env::var_os("TOLLGATE_BENCH_FAIL2BAN").is_some() {
        let start = Instant::now();
        let out = std::process::Command::new("fail2ban-regex")
            .arg(&path)
            .arg("/etc/fail2ban/filter.d/asterisk.conf")
            .output()
            .expect("fail2ban-regex (Debian package fail2ban)");
        let f2b = start.elapsed();
        let text = String::from_utf8_lossy(&out.stdout);
        let matched = text
            .lines()
            .find(|l| l.starts_with("Lines:"))
            .unwrap_or("")
            .to_owned();
        let f2b_rate = LINES as f64 / f2b.as_secs_f64();
        println!(
            "fail2ban-regex: {:.1} s, {:.0} lines/s ({matched}); tollgate is {:.0}x faster (file)",
            f2b.as_secs_f64(),
            f2b_rate,
            file_rate / f2b_rate
        );
    }
}

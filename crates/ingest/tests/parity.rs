//! fail2ban parity: the built-in Asterisk and FreeSWITCH formats catch every failure
//! line that fail2ban's own `asterisk` and `freeswitch` filters catch, with the same
//! address (issue 3).
//!
//! The sample logs in `tests/fixtures/` are ours (see `tests/fixtures/README.md`): one
//! or more lines for every alternative of every `failregex` of the two filters, in
//! every prefix shape the filters accept, plus lines they do not match. What fail2ban
//! 1.0.2 matched in them is committed beside them (`*.f2b`), so the core of the check
//! runs anywhere; the `live_*` tests run `fail2ban-regex` itself (Debian package
//! `fail2ban`) on our samples, on the sample logs fail2ban ships in its own test suite
//! (read where the package installed them, not copied), and on a generated log, and
//! fail when it is not installed. `TOLLGATE_BLESS=1` rewrites the `*.f2b` files and the
//! `*.tollgate.jsonl` golden files from the current output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tollgate_core::guard_event::{AuthEvent, AuthOutcome};
use tollgate_ingest::{generate_asterisk_log, scan_bytes, LogFormat};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn blessing() -> bool {
    std::env::var_os("TOLLGATE_BLESS").is_some()
}

/// The filter file of fail2ban's `name` filter.
fn filter(name: &str) -> PathBuf {
    PathBuf::from(format!("/etc/fail2ban/filter.d/{name}.conf"))
}

/// Runs `fail2ban-regex` on `log` with filter `name` and returns, for each match, the
/// matched line and the address fail2ban names.
fn fail2ban_matches(log: &Path, name: &str) -> Vec<(String, String)> {
    let out = Command::new("fail2ban-regex")
        .arg("--out")
        .arg("<ip>\t<msg>")
        .arg(log)
        .arg(filter(name))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run fail2ban-regex ({e}): the parity tests need the Debian package \
                 `fail2ban` (apt-get install -y fail2ban)"
            )
        });
    assert!(
        out.status.success(),
        "fail2ban-regex failed on {}: {}",
        log.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(ip, msg)| (msg.to_owned(), ip.to_owned()))
        .collect()
}

/// Where fail2ban's own sample logs are installed: beside the `fail2ban` Python
/// package that `fail2ban-regex` runs on (its shebang names the interpreter).
fn fail2ban_sample_logs() -> PathBuf {
    let script = std::fs::read_to_string("/usr/bin/fail2ban-regex").unwrap_or_default();
    let python = script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map_or("/usr/bin/python3", str::trim);
    let out = Command::new(python)
        .args([
            "-c",
            "import fail2ban, os; print(os.path.dirname(fail2ban.__file__))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let dir = String::from_utf8(out.stdout).unwrap();
    let logs = Path::new(dir.trim()).join("tests/files/logs");
    assert!(
        logs.join("asterisk").is_file(),
        "fail2ban's sample logs are not at {} (Debian package fail2ban installs them)",
        logs.display()
    );
    logs
}

/// Checks that `format` gives a failure with `ip` for `line`.
fn assert_caught(format: &LogFormat, line: &str, ip: &str, origin: &str) {
    let Ok(expected) = ip.parse::<IpAddr>() else {
        // fail2ban's <HOST> also matches things like 999.51.100.1, which are not
        // addresses and cannot be banned; tollgate drops those lines.
        assert_eq!(
            format.parse_line(line),
            None,
            "{origin}: fail2ban matched the non-address {ip:?}; tollgate should drop the line\n  {line}"
        );
        return;
    };
    let got = format.parse_line(line);
    match got {
        // Caught with the same address: as a failure, or as a digest challenge (which
        // fail2ban counts as a failure and tollgate records without counting).
        Some(AuthEvent {
            ip,
            outcome: AuthOutcome::Failure | AuthOutcome::Challenge,
            ..
        }) if ip == expected.to_canonical() => {}
        other => panic!(
            "{origin}: fail2ban bans {expected} for this line, tollgate says {other:?}\n  {line}"
        ),
    }
}

/// Reads a committed `*.f2b` file: `LINE_NUMBER<TAB>ADDRESS` per fail2ban match.
fn read_expected(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (n, ip) = l.split_once('\t').unwrap();
            (n.parse().unwrap(), ip.to_owned())
        })
        .collect()
}

/// Turns fail2ban's matches on `text` into line numbers (1-based).
fn number_matches(text: &str, matches: &[(String, String)]) -> Vec<(usize, String)> {
    let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        positions.entry(line).or_default().push(i + 1);
    }
    let mut used: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (msg, ip) in matches {
        let lines = positions
            .get(msg.as_str())
            .unwrap_or_else(|| panic!("fail2ban matched a line not in the file: {msg}"));
        let k = used.entry(msg.as_str()).or_default();
        out.push((lines[(*k).min(lines.len() - 1)], ip.clone()));
        *k += 1;
    }
    out
}

fn check_static(format: &LogFormat, name: &str) {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.log"))).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let expected = read_expected(&fixtures().join(format!("{name}.f2b")));
    assert!(expected.len() > 10, "{name}.f2b lists too few matches");
    for (n, ip) in &expected {
        assert_caught(format, lines[n - 1], ip, &format!("{name}.log:{n}"));
    }
}

#[test]
fn asterisk_catches_what_fail2ban_caught() {
    check_static(&LogFormat::Asterisk, "asterisk");
}

#[test]
fn freeswitch_catches_what_fail2ban_caught() {
    check_static(&LogFormat::FreeSwitch, "freeswitch");
}

/// Golden files: tollgate's full answer for every fixture line, so that a change in
/// what is extracted (user, port, transport, time, reason) shows in review.
fn check_golden(format: &LogFormat, name: &str) {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.log"))).unwrap();
    let mut actual = String::new();
    for (i, line) in text.lines().enumerate() {
        let event = format.parse_line(line);
        let row = serde_json::json!({ "line": i + 1, "event": event });
        actual.push_str(&serde_json::to_string(&row).unwrap());
        actual.push('\n');
    }
    let golden = fixtures().join(format!("{name}.tollgate.jsonl"));
    if blessing() {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    for (a, e) in actual.lines().zip(expected.lines()) {
        assert_eq!(a, e, "{name}: output differs from {}", golden.display());
    }
    assert_eq!(
        actual.lines().count(),
        expected.lines().count(),
        "{name}: line count differs from {} (TOLLGATE_BLESS=1 to accept)",
        golden.display()
    );
}

#[test]
fn asterisk_golden() {
    check_golden(&LogFormat::Asterisk, "asterisk");
}

#[test]
fn freeswitch_golden() {
    check_golden(&LogFormat::FreeSwitch, "freeswitch");
}

#[test]
fn kamailio_golden() {
    check_golden(&LogFormat::Kamailio, "kamailio");
}

fn live_on_fixture(format: &LogFormat, name: &str) {
    let path = fixtures().join(format!("{name}.log"));
    let text = std::fs::read_to_string(&path).unwrap();
    let matches = fail2ban_matches(&path, name);
    let numbered = number_matches(&text, &matches);
    let lines: Vec<&str> = text.lines().collect();
    for (n, ip) in &numbered {
        assert_caught(format, lines[n - 1], ip, &format!("{name}.log:{n} (live)"));
    }
    let expected_path = fixtures().join(format!("{name}.f2b"));
    if blessing() {
        let mut out = format!(
            "# fail2ban-regex --out '<ip>\\t<msg>' {name}.log /etc/fail2ban/filter.d/{name}.conf\n\
             # (fail2ban 1.0.2, Debian 12): line number and address of every match.\n"
        );
        for (n, ip) in &numbered {
            out.push_str(&format!("{n}\t{ip}\n"));
        }
        std::fs::write(&expected_path, out).unwrap();
    } else {
        assert_eq!(
            numbered,
            read_expected(&expected_path),
            "fail2ban's matches on {name}.log changed: check the new filter, then \
             TOLLGATE_BLESS=1 to record them"
        );
    }
}

#[test]
fn live_asterisk_fixture() {
    live_on_fixture(&LogFormat::Asterisk, "asterisk");
}

#[test]
fn live_freeswitch_fixture() {
    live_on_fixture(&LogFormat::FreeSwitch, "freeswitch");
}

/// fail2ban's own samples (its test suite's logs, GPL-2, read in place).
fn live_on_fail2ban_samples(format: &LogFormat, name: &str) {
    let path = fail2ban_sample_logs().join(name);
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    let matches = fail2ban_matches(&path, name);
    assert!(
        matches.len() > 5,
        "fail2ban matched too little of {}",
        path.display()
    );
    for (msg, ip) in &matches {
        assert!(text.lines().any(|l| l == msg));
        assert_caught(format, msg, ip, &format!("fail2ban's {name} sample"));
    }
    eprintln!(
        "{name}: tollgate catches all {} lines fail2ban matches in {}",
        matches.len(),
        path.display()
    );
}

#[test]
fn live_asterisk_fail2ban_samples() {
    live_on_fail2ban_samples(&LogFormat::Asterisk, "asterisk");
}

#[test]
fn live_freeswitch_fail2ban_samples() {
    live_on_fail2ban_samples(&LogFormat::FreeSwitch, "freeswitch");
}

/// On a generated log: fail2ban and tollgate count the same failures, per address,
/// and the generator's own count agrees.
#[test]
fn live_generated_log_same_counts() {
    let log = generate_asterisk_log(20_000, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full");
    std::fs::write(&path, &log.text).unwrap();

    let mut f2b: HashMap<IpAddr, usize> = HashMap::new();
    let matches = fail2ban_matches(&path, "asterisk");
    for (_, ip) in &matches {
        *f2b.entry(ip.parse().unwrap()).or_default() += 1;
    }
    let mut ours: HashMap<IpAddr, usize> = HashMap::new();
    let mut successes = 0;
    scan_bytes(&LogFormat::Asterisk, log.text.as_bytes(), |e| {
        match e.outcome {
            AuthOutcome::Failure => *ours.entry(e.ip).or_default() += 1,
            AuthOutcome::Success => successes += 1,
            AuthOutcome::Challenge => {}
        }
    });
    let generated: HashMap<IpAddr, usize> = log.failures_by_ip.clone().into_iter().collect();
    assert_eq!(matches.len(), log.failures, "fail2ban's count");
    assert_eq!(f2b, generated, "fail2ban's count per address");
    assert_eq!(ours, generated, "tollgate's count per address");
    assert_eq!(successes, log.successes);
}

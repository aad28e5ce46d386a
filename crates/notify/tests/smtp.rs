//! The e-mail channel against a real SMTP server: Debian's `python3-aiosmtpd` on a loopback
//! port, storing into a Maildir that the test then reads (parsed by Python's `email` package,
//! which undoes the header and body encodings).
//!
//! `./scripts/test` installs `python3-aiosmtpd`; without it this test fails and says so.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{critical_notification, fast_options, WAIT};
use tollgate_notify::{ChannelsConfig, Notifier, SmtpChannel, SmtpTls};

/// Debian's Python, which has `aiosmtpd` (a pyenv `python3` on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// The SMTP server process, killed and reaped when the test ends, pass or fail.
struct SmtpServer {
    child: Child,
    port: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_aiosmtpd() {
    let found = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "{PYTHON} cannot import aiosmtpd: run ./scripts/test, which installs the Debian \
         package python3-aiosmtpd that this test needs"
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts aiosmtpd with its Maildir handler and waits (bounded) until it accepts.
fn start_smtp_server(maildir: &Path) -> SmtpServer {
    require_aiosmtpd();
    let port = free_port();
    let child = Command::new(PYTHON)
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start aiosmtpd");
    let mut server = SmtpServer { child, port };
    let until = Instant::now() + WAIT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("aiosmtpd exited before accepting connections: {status}");
        }
        assert!(
            Instant::now() < until,
            "aiosmtpd did not accept on port {port} in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The messages the Maildir handler stored.
fn stored_messages(maildir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(maildir.join("new"))
        .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// From, To, Subject (decoded) and the plain-text body, read by Python's `email` package.
fn parse_message(path: &Path) -> serde_json::Value {
    let script = "import email, email.policy, json, sys\n\
                  m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)\n\
                  print(json.dumps({'from': str(m['From']), 'to': str(m['To']), \
                  'subject': str(m['Subject']), 'content_type': m.get_content_type(), \
                  'body': m.get_content()}))";
    let output = Command::new(PYTHON)
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_critical_alert_is_mailed_with_subject_recipients_summary_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    // The handler makes the Maildir (and its tmp, new, cur) only if the directory is new.
    let maildir = dir.path().join("Maildir");
    let server = start_smtp_server(&maildir);

    let mut channel = SmtpChannel::new(
        "127.0.0.1",
        "Tollgate <tollgate@example.com>",
        vec!["noc@example.com".into(), "oncall@example.net".into()],
    );
    channel.port = Some(server.port);
    channel.tls = SmtpTls::None;
    let config = ChannelsConfig {
        log: false,
        smtp: vec![channel],
        ..ChannelsConfig::default()
    };
    let notifier = Notifier::start_with(&config, fast_options()).unwrap();
    notifier.notify(critical_notification());
    let stats = notifier.shutdown(WAIT);
    assert_eq!(
        (stats[0].delivered, stats[0].failed),
        (1, 0),
        "{:?}",
        stats[0]
    );
    assert_eq!(stats[0].target, format!("127.0.0.1:{}", server.port));

    let messages = stored_messages(&maildir);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = parse_message(&messages[0]);
    assert_eq!(message["from"], "Tollgate <tollgate@example.com>");
    assert_eq!(message["to"], "noc@example.com, oncall@example.net");
    assert_eq!(
        message["subject"],
        "[tollgate] CRITICAL opened: extension 1001 — monitor.rules.satellite_burst"
    );
    assert_eq!(message["content_type"], "text/plain");
    let body = message["body"].as_str().unwrap();
    for expected in [
        "12 calls to high_risk in 10 min (critical at 10)",
        "alert:     a-000123",
        "rule:      monitor.rules.satellite_burst",
        "action:    suspended extension 1001 for 1h",
        "\"calls\": 12,",
        "\"window_s\": 600",
    ] {
        assert!(
            body.contains(expected),
            "{expected:?} not in the body:\n{body}"
        );
    }
}

#[test]
fn a_refused_connection_is_retried_then_given_up() {
    // Nothing listens on this port once the listener is dropped.
    let port = free_port();
    let mut channel = SmtpChannel::new(
        "127.0.0.1",
        "tollgate@example.com",
        vec!["noc@example.com".into()],
    );
    channel.port = Some(port);
    channel.tls = SmtpTls::None;
    channel.max_attempts = 2;
    let config = ChannelsConfig {
        log: false,
        smtp: vec![channel],
        ..ChannelsConfig::default()
    };
    let notifier = Notifier::start_with(&config, fast_options()).unwrap();
    notifier.notify(critical_notification());
    let stats = notifier.shutdown(WAIT);
    assert_eq!(
        (stats[0].delivered, stats[0].retried, stats[0].failed),
        (0, 1, 1)
    );
}

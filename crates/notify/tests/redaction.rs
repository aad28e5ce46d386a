//! No secret ever leaves through a log line, an error or `Debug`: the webhook key, the SMTP
//! password and the token a webhook URL carries in its path. Every log line of this test
//! binary is captured (one test, so the capture is not shared with another test's lines),
//! and the test also checks that the failures it provokes were logged at all.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::{critical_notification, fast_options, Answer, HttpReceiver, WAIT};
use tollgate_notify::{ChannelsConfig, Notifier, SmtpChannel, WebhookChannel};

const WEBHOOK_KEY: &str = "WEBHOOK-K3Y-must-not-leak";
const SMTP_PASSWORD: &str = "SMTP-PASSW0RD-must-not-leak";
const URL_TOKEN: &str = "PATHTOKEN-must-not-leak";

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [WEBHOOK_KEY, SMTP_PASSWORD, URL_TOKEN] {
        assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
    }
}

#[test]
fn secrets_appear_in_no_log_line_error_or_debug_output() {
    let captured = Capture(Arc::new(Mutex::new(Vec::new())));
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("webhook.key");
    std::fs::write(&key_file, WEBHOOK_KEY).unwrap();
    let password_file = dir.path().join("smtp.password");
    std::fs::write(&password_file, SMTP_PASSWORD).unwrap();

    // A webhook that fails transiently, then permanently; its URL carries a token.
    let receiver = HttpReceiver::start(
        &format!("/services/{URL_TOKEN}?token={URL_TOKEN}"),
        vec![
            Answer::Status(500),
            Answer::Status(500),
            Answer::Status(401),
        ],
    );
    let mut webhook = WebhookChannel::new(receiver.url.clone());
    webhook.secret_file = Some(key_file.clone());
    webhook.max_attempts = 2;

    // An SMTP relay with a login that refuses connections.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut smtp = SmtpChannel::new(
        "127.0.0.1",
        "tollgate@example.com",
        vec!["noc@example.com".into()],
    );
    smtp.port = Some(closed_port);
    smtp.username = Some("alerts".into());
    smtp.password_file = Some(password_file.clone());
    smtp.max_attempts = 2;

    let config = ChannelsConfig {
        log: true,
        webhook: vec![webhook.clone()],
        smtp: vec![smtp.clone()],
        ..ChannelsConfig::default()
    };
    assert_no_secret("Debug of the config", &format!("{config:?}"));

    let notifier = Notifier::start_with(&config, fast_options()).unwrap();
    assert_no_secret("Debug of the notifier", &format!("{notifier:?}"));
    notifier.notify(critical_notification());
    notifier.notify(critical_notification());
    let stats = notifier.shutdown(WAIT);
    assert_no_secret("the stats", &format!("{stats:?}"));
    // The receiver got the requests: the URL token was used, only never shown.
    assert_eq!(receiver.requests.try_iter().count(), 3);

    // Start-up errors about channels that hold secrets.
    let mut bad_webhook = webhook.clone();
    bad_webhook.timeout_s = 0;
    let mut bad_smtp = smtp.clone();
    bad_smtp.to.clear();
    for broken in [
        ChannelsConfig {
            webhook: vec![bad_webhook],
            ..ChannelsConfig::default()
        },
        ChannelsConfig {
            smtp: vec![bad_smtp],
            ..ChannelsConfig::default()
        },
        ChannelsConfig {
            webhook: vec![WebhookChannel::new(format!(
                "ftp://example.com/{URL_TOKEN}"
            ))],
            ..ChannelsConfig::default()
        },
    ] {
        let error = Notifier::start(&broken).unwrap_err();
        assert_no_secret("an error", &format!("{error} / {error:?}"));
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The failures were logged (so the capture works and the check below means something).
    for expected in [
        "alert delivery failed, will retry",
        "giving up after the last attempt",
        "permanent failure, giving up",
        "answered 401",
        "channel=\"smtp[0]\"",
        "alert opened: 12 calls to high_risk",
    ] {
        assert!(logs.contains(expected), "{expected:?} not logged:\n{logs}");
    }
    // ureq's own debug records (through the `log` bridge) show the request line, so the
    // URL path there; the key and the password must be absent even from those.
    for secret in [WEBHOOK_KEY, SMTP_PASSWORD] {
        assert!(!logs.contains(secret), "the logs show {secret:?}:\n{logs}");
    }
    let ours: Vec<&str> = logs
        .lines()
        .filter(|line| !line.contains(" ureq::"))
        .collect();
    assert!(ours.len() > 5, "{logs}");
    assert_no_secret("tollgate's log lines", &ours.join("\n"));
}

//! The webhook channel against a real HTTP receiver on 127.0.0.1: what is sent and how it is
//! signed, retries on 503, no retry on 400, and a receiver that hangs delaying no one else.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::{critical_notification, fast_options, Answer, HttpReceiver, WAIT};
use tollgate_notify::{ChannelStats, ChannelsConfig, Notifier, WebhookChannel};

fn webhooks(channels: Vec<WebhookChannel>) -> ChannelsConfig {
    ChannelsConfig {
        log: false,
        webhook: channels,
        ..ChannelsConfig::default()
    }
}

fn counts(stats: &ChannelStats) -> (u64, u64, u64, u64) {
    (stats.delivered, stats.retried, stats.failed, stats.dropped)
}

#[test]
fn posts_the_json_payload_signed_with_hmac_sha256_over_timestamp_dot_body() {
    let key = "k3y-for-the-webhook-test";
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("webhook.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let receiver = HttpReceiver::start("/hooks/tollgate?source=test", vec![]);
    let mut channel = WebhookChannel::new(receiver.url.clone());
    channel.secret_file = Some(key_file);
    let notifier = Notifier::start_with(&webhooks(vec![channel]), fast_options()).unwrap();

    notifier.notify(critical_notification());
    let request = receiver.next_request();
    let stats = notifier.shutdown(WAIT);

    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/tollgate?source=test");
    assert_eq!(request.header("content-type"), Some("application/json"));

    let timestamp = request.header("x-tollgate-timestamp").unwrap();
    let sent_at: u64 = timestamp.parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(sent_at) < 300,
        "timestamp {sent_at}, now {now}"
    );

    // Recompute the signature from the key, the timestamp header and the raw body.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        request.header("x-tollgate-signature"),
        Some(expected.as_str())
    );

    let payload: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({
            "version": 1,
            "alert_id": "a-000123",
            "event": "opened",
            "severity": "critical",
            "rule": "monitor.rules.satellite_burst",
            "subject": "extension 1001",
            "summary": "12 calls to high_risk in 10 min (critical at 10)",
            "figures": {
                "calls": 12,
                "critical_at": 10,
                "warning_at": 5,
                "window_s": 600,
                "class": "high_risk",
            },
            "action": "suspended extension 1001 for 1h",
            "at": "2023-11-14T22:13:20.123456Z",
        })
    );
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].name, "webhook[0]");
    assert_eq!(counts(&stats[0]), (1, 0, 0, 0));
}

#[test]
fn without_a_key_there_is_no_signature_header() {
    let receiver = HttpReceiver::start("/", vec![]);
    let config = webhooks(vec![WebhookChannel::new(receiver.url.clone())]);
    let notifier = Notifier::start_with(&config, fast_options()).unwrap();
    notifier.notify(critical_notification());
    let request = receiver.next_request();
    notifier.shutdown(WAIT);
    assert!(request.header("x-tollgate-timestamp").is_some());
    assert_eq!(request.header("x-tollgate-signature"), None);
}

#[test]
fn two_503_then_200_is_delivered_at_the_third_attempt() {
    let receiver = HttpReceiver::start(
        "/hook",
        vec![
            Answer::Status(503),
            Answer::Status(503),
            Answer::Status(200),
        ],
    );
    let config = webhooks(vec![WebhookChannel::new(receiver.url.clone())]);
    let notifier = Notifier::start_with(&config, fast_options()).unwrap();
    notifier.notify(critical_notification());
    let stats = notifier.shutdown(WAIT);

    let attempts: Vec<_> = receiver.requests.try_iter().collect();
    assert_eq!(attempts.len(), 3);
    // Each attempt carries the same payload.
    assert!(attempts.iter().all(|r| r.body == attempts[0].body));
    assert_eq!(counts(&stats[0]), (1, 2, 0, 0));
}

#[test]
fn a_400_is_not_retried() {
    let receiver = HttpReceiver::start("/hook", vec![Answer::Status(400)]);
    let config = webhooks(vec![WebhookChannel::new(receiver.url.clone())]);
    let notifier = Notifier::start_with(&config, fast_options()).unwrap();
    notifier.notify(critical_notification());
    let stats = notifier.shutdown(WAIT);

    assert_eq!(receiver.requests.try_iter().count(), 1);
    assert_eq!(counts(&stats[0]), (0, 0, 1, 0));
}

#[test]
fn retries_stop_at_max_attempts() {
    let receiver = HttpReceiver::start("/hook", vec![Answer::Status(500); 10]);
    let mut channel = WebhookChannel::new(receiver.url.clone());
    channel.max_attempts = 3;
    let notifier = Notifier::start_with(&webhooks(vec![channel]), fast_options()).unwrap();
    notifier.notify(critical_notification());
    let stats = notifier.shutdown(WAIT);

    assert_eq!(receiver.requests.try_iter().count(), 3);
    assert_eq!(counts(&stats[0]), (0, 2, 1, 0));
}

#[test]
fn a_receiver_that_never_answers_blocks_neither_notify_nor_the_other_webhook() {
    let hung = HttpReceiver::start("/hung", vec![Answer::HoldThen200]);
    let good = HttpReceiver::start("/good", vec![]);
    let mut hung_channel = WebhookChannel::new(hung.url.clone());
    // Longer than the test: only the release below ends the hung attempt.
    hung_channel.timeout_s = 120;
    let config = webhooks(vec![hung_channel, WebhookChannel::new(good.url.clone())]);
    let notifier = Notifier::start_with(&config, fast_options()).unwrap();

    // notify() from another thread: if it blocked, `done` would never come.
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let notifier = &notifier;
        scope.spawn(move || {
            notifier.notify(critical_notification());
            done_tx.send(()).unwrap();
        });
        assert_eq!(done_rx.recv_timeout(WAIT), Ok(()), "notify() blocked");
    });

    // The hung receiver holds its request, and meanwhile the good one is delivered to.
    let held = hung.next_request();
    assert_eq!(held.path, "/hung");
    let delivered = good.next_request();
    assert_eq!(delivered.path, "/good");
    let during = notifier.stats();
    assert_eq!(
        during[0].delivered, 0,
        "the hung webhook cannot have delivered yet"
    );

    // A second alert still reaches the good webhook while the first is held.
    notifier.notify(critical_notification());
    assert_eq!(good.next_request().path, "/good");

    hung.release();
    let stats = notifier.shutdown(WAIT);
    assert_eq!(
        counts(&stats[0]),
        (2, 0, 0, 0),
        "hung webhook: {:?}",
        stats[0]
    );
    assert_eq!(
        counts(&stats[1]),
        (2, 0, 0, 0),
        "good webhook: {:?}",
        stats[1]
    );
}

#[test]
fn a_webhook_timeout_is_retried() {
    let slow = HttpReceiver::start("/slow", vec![Answer::HoldThen200, Answer::Status(200)]);
    let mut channel = WebhookChannel::new(slow.url.clone());
    channel.timeout_s = 1;
    let notifier = Notifier::start_with(&webhooks(vec![channel]), fast_options()).unwrap();
    notifier.notify(critical_notification());
    // The first attempt is held past its 1 s timeout; the retry is answered.
    let _first = slow.next_request();
    let _second = slow.next_request();
    slow.release();
    let stats = notifier.shutdown(WAIT);
    assert_eq!(counts(&stats[0]), (1, 1, 0, 0));
}

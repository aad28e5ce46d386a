//! The kill switch through the real binary: calls in progress are ended through the PBX
//! when their extension is suspended by hand, by a monitoring rule, or runs out of credit on
//! `extend`. The PBX here is a scripted Asterisk Manager Interface that speaks AMI as
//! Asterisk does (banner, Login, Hangup, Logoff, CRLF framing, ActionID echoed) and records
//! the channels it was asked to hang up. Emergency calls are never ended.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{start_in, TEST_POLICY};
use serde_json::json;

/// A scripted AMI on 127.0.0.1: sends each hung-up channel to the test.
fn fake_ami() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream
                    .write_all(b"Asterisk Call Manager/6.0.0\r\n")
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut headers = Vec::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_string();
                        if line.is_empty() {
                            break;
                        }
                        let (k, v) = line.split_once(':').unwrap();
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    let get = |k: &str| {
                        headers
                            .iter()
                            .find(|(h, _)| h == k)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    let id = get("actionid");
                    let reply = match get("action").to_ascii_lowercase().as_str() {
                        "login" if get("secret") == "ami-secret" => format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"),
                        "login" => format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"),
                        "hangup" => {
                            tx.send(get("channel")).unwrap();
                            format!("Response: Success\r\nActionID: {id}\r\nMessage: Channel Hungup\r\n\r\n")
                        }
                        "logoff" => {
                            let _ = stream.write_all(format!("Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n").as_bytes());
                            return;
                        }
                        _ => format!("Response: Error\r\nActionID: {id}\r\nMessage: Invalid/unknown command\r\n\r\n"),
                    };
                    stream.write_all(reply.as_bytes()).unwrap();
                }
            });
        }
    });
    (port, rx)
}

/// The channels hung up: waits for `expected` of them (bounded), then briefly for extras
/// that must not come.
fn hung_up(rx: &mpsc::Receiver<String>, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < expected {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(channel) => out.push(channel),
            Err(_) => break,
        }
    }
    while let Ok(extra) = rx.recv_timeout(Duration::from_millis(300)) {
        out.push(extra);
    }
    out.sort();
    out
}

fn authorize(
    server: &common::Server,
    call: &str,
    ext: &str,
    number: &str,
    channel: &str,
) -> serde_json::Value {
    let body = json!({"call_id": call, "extension": ext, "source_ip": "127.0.0.1", "number": number, "pbx_ref": channel});
    let (status, answer) = server.post("/v1/calls/authorize", &server.pbx, &body.to_string());
    assert_eq!(status, 200, "{answer}");
    answer
}

#[test]
fn suspending_ends_calls_in_progress_through_the_pbx() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ami.secret"), "ami-secret\n").unwrap();
    let (port, rx) = fake_ami();
    let policy = format!(
        r#"{TEST_POLICY}
[extensions.3001]
account = "acme"
allowed_cidrs = ["127.0.0.0/8"]
limits = {{ daily = "20.00", monthly = "100.00" }}

[hangup]
timeout_s = 5
asterisk_ami = {{ address = "127.0.0.1:{port}", username = "tollgate", secret_file = "ami.secret" }}

[monitor.rules.french_burst]
metric = "attempts"
destinations = {{ countries = ["FR"] }}
window = "10m"
critical = 3
on_critical = ["suspend_extension"]
"#
    );
    let server = start_in(dir.path(), &policy);

    // By hand: two UK calls of 3001 and an emergency call are up; 1002 has one too.
    for (call, ext, number, channel) in [
        ("k1", "3001", "+442071234567", "PJSIP/3001-00000001"),
        ("k2", "3001", "+442071234568", "PJSIP/3001-00000002"),
        ("k3", "3001", "112", "PJSIP/3001-00000003"),
        ("k4", "1002", "+442071234569", "PJSIP/1002-00000004"),
    ] {
        let answer = authorize(&server, call, ext, number, channel);
        assert_eq!(answer["decision"], "allow", "{call}: {answer}");
    }
    let (status, _) = server.post("/v1/extensions/3001/suspend", &server.admin, "");
    assert_eq!(status, 200);
    let channels = hung_up(&rx, 2);
    assert_eq!(
        channels,
        vec!["PJSIP/3001-00000001", "PJSIP/3001-00000002"],
        "not the emergency call, not 1002's"
    );
    let (_, _) = server.call("GET", "/healthz", None, None);

    // By a monitoring rule: 1002's third French attempt is critical and suspends it (the
    // second was refused for credit: refused attempts count); its calls in progress, the
    // UK one from above and the first French one, are ended.
    let mut decisions = Vec::new();
    for i in 0..3 {
        let answer = authorize(
            &server,
            &format!("fr{i}"),
            "1002",
            &format!("+3314268530{i}"),
            &format!("PJSIP/1002-1000000{i}"),
        );
        decisions.push(answer["decision"].as_str().unwrap().to_string());
    }
    assert_eq!(decisions, vec!["allow", "deny", "deny"], "third: suspended");
    let channels = hung_up(&rx, 2);
    assert_eq!(channels, vec!["PJSIP/1002-00000004", "PJSIP/1002-10000000"]);

    // Credit running dry on extend: 3001 was resumed, its one remaining call asks for an
    // hour more than its 20.00 can pay; the extension's calls are ended.
    let (status, _) = server.post("/v1/extensions/3001/resume", &server.admin, "");
    assert_eq!(status, 200);
    for call in ["k1", "k2"] {
        let (status, _) = server.post(
            &format!("/v1/calls/{call}/end"),
            &server.pbx,
            r#"{"duration_s": 1}"#,
        );
        assert_eq!(status, 200);
    }
    let first = authorize(&server, "d1", "3001", "+33142685310", "PJSIP/3001-20000001");
    assert_eq!(first["decision"], "allow", "{first}");
    let (status, _) = server.post("/v1/calls/d1/answer", &server.pbx, "{}");
    assert_eq!(status, 200);
    let (status, extended) =
        server.post("/v1/calls/d1/extend", &server.pbx, r#"{"seconds": 3600}"#);
    assert_eq!(status, 200, "{extended}");
    assert_eq!(extended["added_s"], 0, "{extended}");
    assert_eq!(
        extended["limited_by"]["code"], "insufficient_credit",
        "{extended}"
    );
    assert_eq!(hung_up(&rx, 1), vec!["PJSIP/3001-20000001"]);
}

//! Call-pattern monitoring through the real binary: a burst opens an alert and suspends
//! the extension in the very next authorize; alerts are listed, read and acknowledged;
//! suspensions are listed and lifted; alerts and suspensions survive a restart.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{start_in, TEST_POLICY};
use serde_json::json;

fn policy(hook_port: u16) -> String {
    format!(
        r#"{TEST_POLICY}
[[alerts.webhook]]
url = "http://127.0.0.1:{hook_port}/hooks/tollgate"
secret_file = "hook.key"

[monitor.rules.uk_burst]
metric = "attempts"
destinations = {{ countries = ["GB"] }}
window = "10m"
warning = 2
critical = 4
on_critical = ["suspend_extension"]
"#
    )
}

#[test]
fn a_burst_suspends_then_alerts_and_suspensions_are_managed_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.key"), "webhook-signing-key\n").unwrap();
    // A webhook receiver: hands each request (head and body) to the test.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    let (hook_tx, hook_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if data.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = hook_tx.send(String::from_utf8_lossy(&data).to_string());
        }
    });
    let server = start_in(dir.path(), &policy(hook_port));
    let mut decisions = Vec::new();
    for i in 0..6 {
        let (status, answer) =
            server.authorize(&format!("b{i}"), "1002", "127.0.0.1", "+442071234567");
        assert_eq!(status, 200, "{answer}");
        if answer["decision"] == "allow" {
            let (status, ended) = server.post(
                &format!("/v1/calls/b{i}/end"),
                &server.pbx,
                r#"{"duration_s": 10}"#,
            );
            assert_eq!(status, 200, "{ended}");
        }
        decisions.push(answer);
    }
    // Attempts 1-4 are allowed; the 4th is critical and suspends; the 5th is refused.
    for (i, d) in decisions.iter().enumerate() {
        let expected = if i < 4 { "allow" } else { "deny" };
        assert_eq!(d["decision"], expected, "attempt {}: {d}", i + 1);
    }
    assert_eq!(decisions[4]["code"], "extension_suspended");
    assert_eq!(decisions[4]["rule"], "monitor.rules.uk_burst");
    // Other extensions are untouched.
    let (_, other) = server.authorize("o1", "1001", "127.0.0.1", "+33142685300");
    assert_eq!(other["decision"], "allow", "{other}");

    let (status, list) = server.get("/v1/alerts", &server.reader);
    assert_eq!(status, 200, "{list}");
    let alerts = list["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{list}");
    let alert = &alerts[0];
    assert_eq!(alert["rule"], "monitor.rules.uk_burst");
    assert_eq!(alert["subject"], "extension 1002");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["open"], true);
    assert!(
        alert["actions"][0]
            .as_str()
            .unwrap()
            .contains("suspended extension 1002 until lifted"),
        "{alert}"
    );
    let id = alert["id"].as_u64().unwrap();

    // The webhook got the warning, then the escalation, signed, off the call path.
    let timeout = std::time::Duration::from_secs(10);
    let first = hook_rx
        .recv_timeout(timeout)
        .expect("webhook for the warning");
    let second = hook_rx
        .recv_timeout(timeout)
        .expect("webhook for the escalation");
    for (request, event) in [(&first, "opened"), (&second, "escalated")] {
        assert!(
            request.starts_with("POST /hooks/tollgate HTTP/1.1"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-tollgate-signature: sha256="),
            "{request}"
        );
        let body: serde_json::Value =
            serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["event"], event, "{body}");
        assert_eq!(body["rule"], "monitor.rules.uk_burst");
        assert_eq!(body["subject"], "extension 1002");
        assert!(!request.contains("webhook-signing-key"));
    }
    assert!(second.contains("suspended extension 1002"), "{second}");

    // Reading needs the read scope; acknowledging needs admin.
    let (status, _) = server.post(&format!("/v1/alerts/{id}/ack"), &server.reader, "{}");
    assert_eq!(status, 403);
    let (status, acked) = server.post(
        &format!("/v1/alerts/{id}/ack"),
        &server.admin,
        &json!({"by": "noc"}).to_string(),
    );
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["acknowledged_by"], "noc");
    let (status, _) = server.get("/v1/alerts/999", &server.reader);
    assert_eq!(status, 404);
    let (status, bad) = server.get("/v1/alerts?state=sometimes", &server.reader);
    assert_eq!(status, 422, "{bad}");

    let (status, suspensions) = server.get("/v1/suspensions", &server.reader);
    assert_eq!(status, 200);
    assert_eq!(
        suspensions["suspensions"][0]["subject"], "extension 1002",
        "{suspensions}"
    );
    assert_eq!(suspensions["suspensions"][0]["by"], "rule");

    // The same through the CLI.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .args(["--config"])
            .arg(dir.path().join("policy.toml"))
            .args(["--url", &server.base])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = cli(&["alerts"]);
    assert!(
        listed.contains("critical") && listed.contains("open, acked"),
        "{listed}"
    );
    assert!(
        listed.contains("-> suspended extension 1002 until lifted"),
        "{listed}"
    );
    let suspended = cli(&["suspend", "list"]);
    assert!(
        suspended.contains("extension 1002") && suspended.contains("by rule"),
        "{suspended}"
    );

    // A restart keeps the alert and the suspension.
    drop(server);
    let server = start_in(dir.path(), &policy(hook_port));
    let (_, after) = server.authorize("r1", "1002", "127.0.0.1", "+33142685300");
    assert_eq!(after["code"], "extension_suspended", "{after}");
    let (_, stored) = server.get(&format!("/v1/alerts/{id}"), &server.reader);
    assert_eq!(stored["acknowledged_by"], "noc", "{stored}");

    let (status, lifted) = server.post("/v1/suspensions/extension/1002/lift", &server.admin, "");
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(
        lifted["lifted_rule_suspension"]["rule"],
        "monitor.rules.uk_burst"
    );
    let (status, again) = server.post("/v1/suspensions/extension/1002/lift", &server.admin, "");
    assert_eq!(status, 409, "{again}");
    let (_, resumed) = server.authorize("r2", "1002", "127.0.0.1", "+33142685300");
    assert_eq!(resumed["decision"], "allow", "{resumed}");
    let (_, suspensions) = server.get("/v1/suspensions", &server.reader);
    assert_eq!(suspensions["suspensions"], json!([]));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["suspend", "lift", "extension", "1002", "--config"])
        .arg(dir.path().join("policy.toml"))
        .args(["--url", &server.base])
        .output()
        .unwrap();
    assert!(!out.status.success(), "lifting twice must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not suspended"));
}

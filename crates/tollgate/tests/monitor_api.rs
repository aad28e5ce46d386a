//! Call-pattern monitoring through the real binary: a burst opens an alert and suspends
//! the extension in the very next authorize; alerts are listed, read and acknowledged;
//! suspensions are listed and lifted; alerts and suspensions survive a restart.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{start_in, TEST_POLICY};
use serde_json::json;

fn policy() -> String {
    format!(
        r#"{TEST_POLICY}
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
    let server = start_in(dir.path(), &policy());
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
    let server = start_in(dir.path(), &policy());
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

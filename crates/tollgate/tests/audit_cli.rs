//! `tollgate audit` end to end: history from a running service's database (registrations
//! with User-Agents, calls) feeds the unused-extension and firmware checks, `[audit]` in the
//! policy and the flags set the bar, named ACLs are resolved from `--from acl:`, and
//! `--fail-on` sets the exit status.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{start_in, TEST_POLICY};
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../audit/tests/fixtures")
        .join(name)
}

fn audit(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("audit")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let report =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (out.status.code().unwrap(), report, stderr)
}

fn codes_for(report: &Value, subject_part: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["subject"].as_str().unwrap().contains(subject_part))
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn history_from_the_service_finds_unused_extensions_and_outdated_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        r#"{TEST_POLICY}
[guard]
allowlist = ["192.0.2.0/24"]

[audit]
unused_after = "30d"
min_password_length = 16

[[audit.firmware]]
vendor = "Yealink"
model = "T4"
min_version = "66.86.0.160"
note = "fixes remote provisioning flaws"
"#
    );
    let server = start_in(dir.path(), &policy);
    // 1001 registers from an old Yealink; 1002 places a call; 2001 does nothing.
    let success = json!({"ip": "127.0.0.1", "user": "1001", "user_agent": "Yealink SIP-T46S 66.85.0.5", "outcome": "success", "reason": ""});
    let (status, verdict) =
        server.post("/v1/events/registration", &server.pbx, &success.to_string());
    assert_eq!(status, 200, "{verdict}");
    let (_, d) = server.authorize("h1", "1002", "127.0.0.1", "+33142685300");
    assert_eq!(d["decision"], "allow", "{d}");
    let (status, _) = server.post("/v1/calls/h1/end", &server.pbx, r#"{"duration_s": 30}"#);
    assert_eq!(status, 200);
    drop(server);

    let config = dir.path().join("policy.toml");
    let (code, report, _) = audit(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "no --fail-on: exit 0");
    assert!(
        codes_for(&report, "extension 1001").contains(&"outdated_firmware".to_string()),
        "{report}"
    );
    assert!(!codes_for(&report, "extension 1001").contains(&"unused_extension".to_string()));
    assert!(!codes_for(&report, "extension 1002").contains(&"unused_extension".to_string()));
    assert!(
        codes_for(&report, "extension 2001").contains(&"unused_extension".to_string()),
        "{report}"
    );
    let firmware = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "outdated_firmware")
        .unwrap();
    let evidence = firmware["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("66.85.0.5") && evidence.contains("66.86.0.160"),
        "{firmware}"
    );

    // The flag overrides the policy: --unused-after 0 turns the check off.
    let (_, report, _) = audit(&["--config", config.to_str().unwrap(), "--unused-after", "0"]);
    assert!(codes_for(&report, "extension 2001")
        .iter()
        .all(|c| c != "unused_extension"));
    // --fail-on high: the outdated firmware is high.
    let (code, _, _) = audit(&["--config", config.to_str().unwrap(), "--fail-on", "high"]);
    assert_eq!(code, 1);
}

#[test]
fn named_acls_are_resolved_and_the_policy_bar_applies() {
    let (code, report, stderr) = audit(&[
        "--from",
        &format!("pjsip:{}", fixture("pjsip-acl.conf").display()),
        "--from",
        &format!("acl:{}", fixture("acl.conf").display()),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let codes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"unknown_acl"), "{codes:?}");
    assert!(stderr.contains("note: no database"), "{stderr}");
    // Without the acl file the names cannot be resolved: said, not guessed.
    let (_, report, _) = audit(&[
        "--from",
        &format!("pjsip:{}", fixture("pjsip-acl.conf").display()),
    ]);
    let codes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"unresolved_acl"), "{codes:?}");

    // A stricter password bar from the flags turns a strong-enough password weak.
    let csv = format!("csv:{}", fixture("inventory.csv").display());
    let (_, relaxed, _) = audit(&["--from", &csv]);
    let (_, strict, _) = audit(&["--from", &csv, "--min-length", "20"]);
    let weak = |r: &Value| {
        codes_for(r, "extension 1002")
            .iter()
            .filter(|c| c.starts_with("weak_password"))
            .count()
    };
    assert_eq!(weak(&relaxed), 0, "{relaxed}");
    assert!(weak(&strict) > 0, "{strict}");
}

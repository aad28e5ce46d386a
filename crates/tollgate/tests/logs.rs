//! `--log-format json`: every line the service logs at start is one JSON object with a
//! level and a message, and no API token appears in the log.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

#[test]
fn json_logs_are_one_object_per_line_and_carry_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[tokens]]\nname = \"pbx\"\nscopes = [\"calls\"]\nfile = \"pbx.token\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&policy)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("listening on ") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
    }
    child.kill().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child.wait().unwrap();
    let token = std::fs::read_to_string(dir.path().join("pbx.token")).unwrap();
    assert!(!stderr.contains(token.trim()), "a token was logged");
    let mut messages = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(object["level"].is_string(), "{line}");
        messages.push(object["message"].as_str().unwrap_or("").to_string());
    }
    assert!(
        messages
            .iter()
            .any(|m| m.contains("tollgate listening on http://127.0.0.1:")),
        "{messages:?}"
    );
}

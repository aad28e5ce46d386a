//! Changing a running service: 50 reloads, valid and invalid alternating, while a load
//! thread runs authorize/end cycles. No request fails, no settlement is lost, the ledger
//! balances afterwards, an invalid file leaves the old policy in force with an error that
//! names the file, line and key, and SIGHUP reloads too.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{start_in, TEST_POLICY};
use serde_json::json;

fn with_limit(daily: &str) -> String {
    format!(
        "{TEST_POLICY}\n[extensions.4001]\naccount = \"acme\"\nallowed_cidrs = [\"127.0.0.0/8\"]\nlimits = {{ daily = \"{daily}\", monthly = \"500.00\" }}\n"
    )
}

/// Exact decimal sum of money strings ("0.001").
fn micros(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac = format!("{frac:0<6}");
    i64::from_str(whole).unwrap() * 1_000_000 + i64::from_str(&frac[..6]).unwrap()
}

#[test]
fn fifty_reloads_under_load_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(start_in(dir.path(), &with_limit("20.00")));
    let policy_path = dir.path().join("policy.toml");

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let server = server.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut charged = 0i64;
            let mut cycles = 0u32;
            while !stop.load(Ordering::Relaxed) && cycles < 5_000 {
                let call = format!("r{cycles}");
                let (status, answer) =
                    server.authorize(&call, "4001", "127.0.0.1", "+442071234567");
                assert_eq!(status, 200, "{answer}");
                assert_eq!(answer["decision"], "allow", "{answer}");
                let (status, ended) = server.post(
                    &format!("/v1/calls/{call}/end"),
                    &server.pbx,
                    r#"{"duration_s": 2}"#,
                );
                assert_eq!(status, 200, "{ended}");
                charged += micros(ended["charged"].as_str().unwrap());
                cycles += 1;
            }
            (cycles, charged)
        })
    };

    let mut invalid_answers = Vec::new();
    for i in 0..50 {
        if i % 2 == 0 {
            let daily = if i % 4 == 0 { "20.00" } else { "25.00" };
            std::fs::write(&policy_path, with_limit(daily)).unwrap();
            let (status, answer) = server.post("/v1/admin/reload", &server.admin, "");
            assert_eq!(status, 200, "reload {i}: {answer}");
            assert_eq!(answer["reloaded"], true);
        } else {
            // A misspelt key in an otherwise valid file.
            std::fs::write(
                &policy_path,
                with_limit("99.00").replace("expiry_grace", "expiry_grase"),
            )
            .unwrap();
            let (status, answer) = server.post("/v1/admin/reload", &server.admin, "");
            assert_eq!(status, 422, "reload {i}: {answer}");
            invalid_answers.push(answer["error"]["message"].as_str().unwrap().to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (cycles, charged) = load.join().unwrap();
    assert!(cycles > 0);
    let message = &invalid_answers[0];
    assert!(
        message.contains("policy.toml") && message.contains("expiry_grase"),
        "{message}"
    );

    // The last valid policy (i = 48: 20.00) is in force; every settlement is in the ledger.
    let credit = server.credit("4001");
    let level = &credit["levels"][0];
    assert_eq!(level["limits"]["daily"], "20.00", "{credit}");
    assert_eq!(level["reserved"], "0.00", "{credit}");
    assert_eq!(
        micros(level["spent_today"].as_str().unwrap()),
        charged,
        "{cycles} cycles: {credit}"
    );
    eprintln!("reload under load: 50 reloads (25 refused), {cycles} authorize/end cycles, no failure, spend {charged} micros == ledger");
}

#[test]
fn sighup_reloads_and_an_invalid_file_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), &with_limit("20.00"));
    let policy_path = dir.path().join("policy.toml");
    let pid = server.child.id().to_string();
    let daily =
        |server: &common::Server| server.credit("4001")["levels"][0]["limits"]["daily"].clone();

    std::fs::write(&policy_path, "this is not toml = = =\n").unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        daily(&server),
        json!("20.00"),
        "an invalid file changes nothing"
    );

    std::fs::write(&policy_path, with_limit("30.00")).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while daily(&server) != json!("30.00") {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

//! `tollgate init` against fixture Asterisk and FreeSWITCH configurations (templates,
//! named ACLs, broken lines): the policy it writes passes `tollgate check`, holds what the
//! fixtures say (extensions, their networks), is in shadow mode, copies no secret, and the
//! command reports what it could not read and what to review.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn tollgate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn fixtures(rest: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rest)
        .display()
        .to_string()
}

#[test]
fn init_from_asterisk_writes_a_checked_shadow_policy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tollgate.toml");
    let from = format!("asterisk:{}", fixtures("tests/fixtures/init/asterisk"));
    let (ok, _, err) = tollgate(&[
        "init",
        "--from",
        &from,
        "--out",
        out.to_str().unwrap(),
        "--country",
        "FR",
        "--time-zone",
        "Europe/Paris",
        "--currency",
        "EUR",
    ]);
    assert!(ok, "{err}");
    let policy = std::fs::read_to_string(&out).unwrap();
    let (ok, check_out, check_err) = tollgate(&["check", out.to_str().unwrap()]);
    assert!(ok, "{check_out}{check_err}");
    assert!(check_out.contains("4 extensions"), "{check_out}");

    assert!(policy.contains("shadow = true"));
    // The named ACL resolved to its networks; the home worker's own permit; 3001 open.
    let section = |id: &str| {
        let start = policy
            .find(&format!("[extensions.\"{id}\"]"))
            .unwrap_or_else(|| panic!("{id} missing:\n{policy}"));
        let rest = &policy[start + 1..];
        rest[..rest.find("\n[").unwrap_or(rest.len())].to_string()
    };
    assert!(
        section("1001").contains(r#"allowed_cidrs = ["192.0.2.0/24", "2001:db8:100::/48"]"#),
        "{}",
        section("1001")
    );
    assert!(section("1002").contains("192.0.2.0/24"));
    assert!(
        section("2001").contains(r#"allowed_cidrs = ["198.51.100.7/32"]"#),
        "{}",
        section("2001")
    );
    assert!(
        section("3001").contains("REVIEW: no IP restriction"),
        "{}",
        section("3001")
    );
    for secret in [
        "Correct-Horse-Battery-9",
        "another-Long-secret-42",
        "Home-Worker-Secret-77",
        "Open-To-The-World-55",
    ] {
        assert!(
            !policy.contains(secret) && !err.contains(secret),
            "a secret was copied"
        );
    }
    assert!(err.contains("imported 4 extensions"), "{err}");
    assert!(
        err.contains("pjsip.conf:") && err.contains("could not read"),
        "the broken line is reported: {err}"
    );
    assert!(err.contains("review: extension 3001"), "{err}");
    // Never overwrites.
    let (ok, _, err) = tollgate(&["init", "--from", &from, "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("exists"), "{err}");
}

#[test]
fn init_from_freeswitch_and_from_a_bad_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fs.toml");
    let from = format!(
        "freeswitch:{}",
        fixtures("../audit/tests/fixtures/freeswitch-conf")
    );
    let (ok, _, err) = tollgate(&["init", "--from", &from, "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, check_out, check_err) = tollgate(&["check", out.to_str().unwrap()]);
    assert!(ok, "{check_out}{check_err}");
    let policy = std::fs::read_to_string(&out).unwrap();
    assert!(policy.contains("[extensions.\"6001\"]"), "{policy}");

    let (ok, _, err) = tollgate(&["init", "--from", "asterisk:/nonexistent/dir"]);
    assert!(!ok && err.contains("not a folder"), "{err}");
    let (ok, _, err) = tollgate(&["init", "--from", "kamailio:/etc"]);
    assert!(!ok && err.contains("unknown kind"), "{err}");
}

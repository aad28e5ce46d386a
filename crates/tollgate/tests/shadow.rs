//! Shadow mode through the binary: a call the policy denies is allowed (capped), its
//! denial stored and counted, its answer and end accepted and its cost recorded (not
//! charged); a call the policy allows is handled as usual; `tollgate report shadow` sums it
//! up.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{start_in, TEST_POLICY};

#[test]
fn shadow_mode_records_denials_and_allows_the_calls() {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!("shadow = true\n{TEST_POLICY}");
    let server = start_in(dir.path(), &policy);

    // 2001 may call only from 10.0.0.0/8: denied by the policy, allowed by shadow mode.
    let (status, answer) = server.authorize("s1", "2001", "127.0.0.1", "+33142685300");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(
        answer["max_duration_s"], 3600,
        "capped at the extension's longest call"
    );
    assert_eq!(answer["reserved"], "0.00");
    let (status, answered) = server.post("/v1/calls/s1/answer", &server.pbx, "{}");
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["shadow"], true);
    let (status, ended) = server.post("/v1/calls/s1/end", &server.pbx, r#"{"duration_s": 120}"#);
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["shadow"], true);
    // France fixed: 0.60 a minute, 60/60: two minutes.
    assert_eq!(ended["would_have_cost"], "1.20", "{ended}");
    assert_eq!(server.credit("2001")["levels"][0]["spent_today"], "0.00");

    // An allowed call is an ordinary call.
    let (_, normal) = server.authorize("n1", "1002", "127.0.0.1", "+33142685300");
    assert_eq!(normal["decision"], "allow");
    assert_ne!(normal["reserved"], "0.00", "{normal}");
    let (status, _) = server.post("/v1/calls/n1/end", &server.pbx, r#"{"duration_s": 60}"#);
    assert_eq!(status, 200);

    let (_, metrics) = server.call("GET", "/metrics", None, None);
    let _ = metrics;
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["report", "shadow", "--since", "1d", "--database"])
        .arg(dir.path().join("tollgate.db"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("would have denied 1 calls; those calls cost 1.20"),
        "{text}"
    );
    assert!(text.contains("ip_not_allowed"), "{text}");
    assert!(text.contains("2001"), "{text}");
}

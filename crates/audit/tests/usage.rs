//! Unused extensions, with a fixed `now`.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use tollgate_audit::{audit_usage, Activity, AuditOptions, Severity};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn unused_extensions_with_a_fixed_now() {
    let now = Utc.with_ymd_and_hms(2025, 6, 30, 12, 0, 0).unwrap();
    let ids: Vec<String> = [
        "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1003",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let activity =
        |ext: &str, reg: Option<&str>, call: Option<&str>, created: Option<&str>| Activity {
            extension: ext.into(),
            last_registration: reg.map(at),
            last_call: call.map(at),
            created: created.map(at),
        };
    let records = [
        activity("1001", Some("2025-06-29T10:00:00Z"), None, None),
        activity(
            "1002",
            Some("2025-04-01T10:00:00Z"),
            Some("2025-06-01T10:00:00Z"),
            None,
        ),
        activity(
            "1003",
            Some("2025-04-01T10:00:00Z"),
            Some("2025-05-01T10:00:00Z"),
            None,
        ),
        activity("1004", None, None, Some("2025-06-20T10:00:00Z")),
        activity("1005", None, None, Some("2025-01-01T10:00:00Z")),
        // 1006 has no record at all.
        activity(
            "1007",
            Some("2025-01-01T10:00:00Z"),
            None,
            Some("2024-01-01T00:00:00Z"),
        ),
        activity("1007", None, Some("2025-06-25T10:00:00Z"), None),
        // Exactly 30 days ago still counts as used within them.
        activity("1008", Some("2025-05-31T12:00:00Z"), None, None),
        activity("9999", None, None, None),
    ];
    let findings = audit_usage(&ids, &records, now, 30);
    let subjects: Vec<&str> = findings.iter().map(|f| f.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["extension 1003", "extension 1005", "extension 1006"]
    );
    for f in &findings {
        assert_eq!(f.code, "unused_extension");
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.fix, "delete or disable it");
    }
    assert_eq!(
        findings[0].evidence,
        "last registration 2025-04-01, last call 2025-05-01: nothing in the last 30 days"
    );
    assert_eq!(
        findings[1].evidence,
        "last registration never, last call never: nothing in the last 30 days (created 2025-01-01)"
    );
    assert_eq!(
        findings[2].evidence,
        "last registration never, last call never: nothing in the last 30 days"
    );
    // A longer window forgives 1003; a shorter one catches 1002, 1008 and 1004 (created
    // longer ago than the window); 0 turns the check off.
    let subjects = |days| -> Vec<String> {
        audit_usage(&ids, &records, now, days)
            .into_iter()
            .map(|f| f.subject)
            .collect()
    };
    assert_eq!(subjects(90), ["extension 1005", "extension 1006"]);
    assert_eq!(
        subjects(7),
        [
            "extension 1002",
            "extension 1003",
            "extension 1004",
            "extension 1005",
            "extension 1006",
            "extension 1008"
        ]
    );
    assert!(subjects(0).is_empty());
    assert_eq!(AuditOptions::default().unused_after_days, 30);
}

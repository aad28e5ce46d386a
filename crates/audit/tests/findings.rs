//! The audit findings against the importer fixtures and the example policy: which codes
//! each extension and mailbox gets, and that no finding ever shows a secret.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tollgate_audit::findings::{any_at_least, audit_inventory, audit_policy, Replace};
use tollgate_audit::import::{
    import_acl_conf, import_csv, import_freeswitch, import_json, import_pjsip, import_sip_conf,
    import_voicemail,
};
use tollgate_audit::inventory::{Credential, Inventory};
use tollgate_audit::{AuditOptions, Finding, FirmwareRule, Severity};
use tollgate_core::policy::Limits;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn everything() -> Inventory {
    let mut inv = Inventory::default();
    inv.merge(import_pjsip(fixture("pjsip.conf")));
    inv.merge(import_sip_conf(fixture("sip.conf")));
    inv.merge(import_voicemail(fixture("voicemail.conf")));
    inv.merge(import_freeswitch(fixture("freeswitch")));
    inv.merge(import_csv(fixture("inventory.csv")));
    inv
}

/// Codes of the findings whose subject starts with `prefix` and names `file`.
fn codes(findings: &[Finding], prefix: &str, file: &str) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.subject.starts_with(prefix) && f.subject.contains(file))
        .map(|f| f.code.clone())
        .collect()
}

#[test]
fn each_fixture_entry_gets_the_findings_it_deserves() {
    let findings = audit_inventory(&everything(), &AuditOptions::default());
    // (subject prefix, file, codes that must be there, codes that must not)
    let table: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "extension 1001 (",
            "pjsip.conf",
            &["weak_password_too_short", "weak_password_contains_context"],
            &["no_ip_restriction", "test_extension"],
        ),
        // deny=0.0.0.0/0.0.0.0 and no permit refuse every IPv4 address: restricted.
        (
            "extension 1002 (",
            "pjsip.conf",
            &["many_contacts"],
            &[
                "weak_password_too_short",
                "weak_password_low_score",
                "no_ip_restriction",
            ],
        ),
        (
            "extension test (",
            "pjsip.conf",
            &["test_extension", "credential_hashed"],
            &["no_ip_restriction"],
        ),
        (
            "extension provider (",
            "pjsip.conf",
            &[],
            &["no_ip_restriction"],
        ),
        // permit=10.1.1.1 without a deny first restricts nothing: Asterisk permits by
        // default.
        (
            "extension 2001 (",
            "pjsip.conf",
            &[
                "weak_password_common_password",
                "weak_password_too_short",
                "no_ip_restriction",
            ],
            &[],
        ),
        (
            "extension 101 (",
            "sip.conf",
            &["weak_password_too_short", "weak_password_contains_context"],
            &["no_call_limit", "no_ip_restriction"],
        ),
        (
            "extension 102 (",
            "sip.conf",
            &["no_call_limit"],
            &["weak_password_too_short"],
        ),
        (
            "extension demo (",
            "sip.conf",
            &["test_extension", "no_ip_restriction", "no_call_limit"],
            &[],
        ),
        (
            "extension 103 (",
            "sip.conf",
            &["credential_hashed"],
            &["no_call_limit"],
        ),
        (
            "extension 1001 (",
            "freeswitch",
            &["credential_unresolved"],
            &["no_ip_restriction"],
        ),
        (
            "extension 1002 (",
            "freeswitch",
            &[],
            &["no_ip_restriction"],
        ),
        (
            "extension 1001 (",
            "inventory.csv",
            &["weak_password_too_short", "weak_password_low_score"],
            &["no_ip_restriction"],
        ),
        (
            "mailbox 1001@default (",
            "voicemail.conf",
            &["weak_pin_repeated_digits", "weak_pin_common_pin"],
            &[],
        ),
        (
            "mailbox 1002@default (",
            "voicemail.conf",
            &["weak_pin_sequential_digits"],
            &[],
        ),
        (
            "mailbox 1003@default (",
            "voicemail.conf",
            &[],
            &["weak_pin_too_short"],
        ),
        (
            "mailbox 1004@default (",
            "voicemail.conf",
            &["pin_not_checked"],
            &[],
        ),
        (
            "mailbox 2001@other (",
            "voicemail.conf",
            &["weak_pin_equals_extension"],
            &[],
        ),
        (
            "mailbox 1001 (",
            "freeswitch",
            &["weak_pin_equals_extension"],
            &[],
        ),
    ];
    for (prefix, file, present, absent) in table {
        let found = codes(&findings, prefix, file);
        for code in *present {
            assert!(
                found.iter().any(|c| c == code),
                "{prefix}{file}: no {code} in {found:?}"
            );
        }
        for code in *absent {
            assert!(
                !found.iter().any(|c| c == code),
                "{prefix}{file}: {code} in {found:?}"
            );
        }
    }
    // FreeSWITCH's shared default password is worth more than a note.
    let unresolved = findings
        .iter()
        .find(|f| f.code == "credential_unresolved")
        .unwrap();
    assert_eq!(unresolved.severity, Severity::Medium);
    // Weak credentials carry what --fix replaces.
    for finding in &findings {
        if finding.code.starts_with("weak_password_") {
            assert_eq!(finding.replace, Some(Replace::SipPassword));
        }
        if finding.code.starts_with("weak_pin_") {
            assert!(matches!(
                finding.replace,
                Some(Replace::VoicemailPin { .. })
            ));
        }
    }
    // One finding per weakness, even when the username is the extension number.
    let mut seen = std::collections::HashSet::new();
    for f in &findings {
        assert!(
            seen.insert((&f.subject, &f.code, &f.evidence)),
            "twice: {f:?}"
        );
    }
    // Sorted most severe first.
    assert!(findings.windows(2).all(|w| w[0].severity >= w[1].severity));
    assert!(any_at_least(&findings, Severity::Critical));
}

#[test]
fn no_finding_shows_a_secret() {
    let mut inv = everything();
    inv.merge(import_csv(fixture("inventory-devices.csv")));
    inv.merge(import_json(fixture("inventory-devices.json")));
    inv.merge(import_acl_conf(fixture("acl.conf")));
    inv.merge(import_pjsip(fixture("pjsip-acl.conf")));
    inv.merge(import_freeswitch(fixture("freeswitch-conf")));
    let options = AuditOptions {
        firmware: vec![FirmwareRule {
            vendor: "Yealink".into(),
            model: None,
            min_version: "99".into(),
            note: None,
        }],
        ..AuditOptions::default()
    };
    let findings = audit_inventory(&inv, &options);
    for code in [
        "default_device_credential",
        "outdated_firmware",
        "unrecognized_user_agent",
        "unknown_acl",
        "unresolved_acl",
    ] {
        assert!(findings.iter().any(|f| f.code == code), "no {code}");
    }
    let ids: Vec<&str> = inv
        .extensions
        .iter()
        .map(|e| e.id.as_str())
        .chain(inv.mailboxes.iter().map(|m| m.mailbox.as_str()))
        .collect();
    let secrets: Vec<String> = inv
        .extensions
        .iter()
        .filter_map(|e| e.secret.as_ref().and_then(Credential::plaintext))
        .chain(inv.mailboxes.iter().filter_map(|m| m.pin.plaintext()))
        .chain(
            inv.extensions
                .iter()
                .filter_map(|e| e.device_password.as_ref()),
        )
        .map(|s| s.expose().to_string())
        // A PIN equal to its mailbox number is public through the subject itself.
        .filter(|s| s.len() >= 4 && !ids.contains(&s.as_str()))
        .collect();
    assert!(secrets.len() >= 8, "{secrets:?}");
    for public_default in ["admin", "0000"] {
        assert!(secrets.iter().any(|s| s == public_default), "{secrets:?}");
    }
    for finding in &findings {
        let text = format!(
            "{} {} {} {} {finding:?}",
            finding.code, finding.subject, finding.evidence, finding.fix
        );
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{finding:?}");
        }
    }
}

#[test]
fn one_password_shared_by_several_extensions_is_one_finding() {
    let mut inv = everything();
    // 1001 in pjsip.conf and 2001 reuse nothing; make two share one by importing twice.
    inv.merge(import_pjsip(fixture("pjsip.conf")));
    let findings = audit_inventory(&inv, &AuditOptions::default());
    let reused: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.code == "password_reused")
        .collect();
    assert!(!reused.is_empty());
    assert!(reused
        .iter()
        .any(|f| f.subject.contains("1001 (") && f.severity == Severity::High));
}

#[test]
fn test_patterns_are_configurable() {
    let options = AuditOptions {
        test_patterns: vec!["RECEPTION".into()],
        ..AuditOptions::default()
    };
    let findings = audit_inventory(&import_pjsip(fixture("pjsip.conf")), &options);
    let tests = codes(&findings, "extension 1001 (", "pjsip.conf");
    assert!(tests.iter().any(|c| c == "test_extension"), "{tests:?}");
    assert!(codes(&findings, "extension test (", "pjsip.conf")
        .iter()
        .all(|c| c != "test_extension"));
}

#[test]
fn policy_findings() {
    let mut policy = tollgate_config::load_default().unwrap().policy;
    let findings = audit_policy(&policy);
    let of = |findings: &[Finding], subject: &str| -> Vec<String> {
        findings
            .iter()
            .filter(|f| f.subject == subject)
            .map(|f| f.code.clone())
            .collect()
    };
    // The reseller allows international and premium with no schedule above or on it.
    let reseller = of(&findings, "policy account reseller");
    assert!(
        reseller.contains(&"no_business_hours".to_string()),
        "{reseller:?}"
    );
    assert!(reseller.contains(&"unlimited_concurrent_calls".to_string()));
    // acme has a schedule and a concurrency default; its extensions have allowed_cidrs.
    assert!(of(&findings, "policy account acme").is_empty());
    assert!(of(&findings, "policy extension 1001").is_empty());

    let ext = policy.extensions.get_mut("1001").unwrap();
    ext.limits = Limits::UNLIMITED;
    ext.allowed_cidrs.clear();
    let findings = audit_policy(&policy);
    let ext = of(&findings, "policy extension 1001");
    assert!(
        ext.contains(&"unlimited_money_limit".to_string()),
        "{ext:?}"
    );
    assert!(ext.contains(&"no_allowed_cidrs".to_string()));
    let unlimited = findings
        .iter()
        .find(|f| f.code == "unlimited_money_limit")
        .unwrap();
    assert_eq!(unlimited.severity, Severity::High);
    assert_eq!(
        unlimited.evidence,
        "daily and monthly money limit is unlimited"
    );
    assert!(findings.windows(2).all(|w| w[0].severity >= w[1].severity));
}

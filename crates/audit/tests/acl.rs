//! Named ACLs against fixture files: Asterisk acl.conf with pjsip.conf and sip.conf,
//! FreeSWITCH acl.conf.xml in a conf folder; finding by finding, and the effective networks
//! an extension may really be used from.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tollgate_audit::acl::{AclPlatform, AclVerdict, UnresolvedReason};
use tollgate_audit::import::{import_acl_conf, import_freeswitch, import_pjsip, import_sip_conf};
use tollgate_audit::inventory::{ImportedExtension, Inventory};
use tollgate_audit::{audit_inventory, AuditOptions, Finding, Severity};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn line_of(name: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in {name}"))
}

fn extension<'a>(inv: &'a Inventory, id: &str) -> &'a ImportedExtension {
    let found: Vec<_> = inv.extensions.iter().filter(|e| e.id == id).collect();
    assert_eq!(found.len(), 1, "extension {id}");
    found[0]
}

fn problems(inv: &Inventory) -> Vec<(String, usize, String)> {
    inv.problems
        .iter()
        .map(|p| {
            let file = p.location.file.file_name().unwrap().to_string_lossy();
            (file.into_owned(), p.location.line, p.message.clone())
        })
        .collect()
}

fn assert_problem(inv: &Inventory, file: &str, line: usize, fragment: &str) {
    assert!(
        problems(inv)
            .iter()
            .any(|(f, l, m)| f == file && *l == line && m.contains(fragment)),
        "no problem {file}:{line} containing {fragment:?} in {:#?}",
        problems(inv)
    );
}

/// The effective networks of an extension after resolution, as strings.
fn effective(inv: &Inventory, id: &str) -> Option<Vec<String>> {
    extension(inv, id)
        .effective_permit()
        .map(|nets| nets.iter().map(ToString::to_string).collect())
}

/// Every finding's (code, severity) whose subject starts with `subject`.
fn about<'a>(findings: &'a [Finding], subject: &str) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| f.subject.starts_with(subject))
        .collect()
}

fn codes(findings: &[Finding], subject: &str) -> Vec<String> {
    about(findings, subject)
        .iter()
        .map(|f| f.code.clone())
        .collect()
}

fn asterisk_inventory() -> Inventory {
    let mut inv = Inventory::default();
    inv.merge(import_acl_conf(fixture("acl.conf")));
    inv.merge(import_pjsip(fixture("pjsip-acl.conf")));
    inv.merge(import_sip_conf(fixture("sip-acl.conf")));
    inv
}

#[test]
fn acl_conf_sections_rules_and_broken_lines() {
    let inv = import_acl_conf(fixture("acl.conf"));
    let f = "acl.conf";
    assert_problem(&inv, f, line_of(f, "permit=10.0.0.0/33"), "\"10.0.0.0/33\"");
    assert_problem(&inv, f, line_of(f, "colour=blue"), "unknown key \"colour\"");
    let second_office = std::fs::read_to_string(fixture(f))
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[office]")
        .map(|(i, _)| i + 1)
        .nth(1)
        .unwrap();
    assert_problem(&inv, f, second_office, "already defined");
    assert_problem(
        &inv,
        f,
        line_of(f, "this line is not an acl rule"),
        "key = value",
    );
    assert_eq!(inv.problems.len(), 4, "{:#?}", problems(&inv));

    assert_eq!(inv.acls.files(AclPlatform::Asterisk), [fixture(f)]);
    let names: Vec<&str> = inv
        .acls
        .iter(AclPlatform::Asterisk)
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "branch",
            "broken",
            "leaky",
            "office",
            "permit-only",
            "v6-office",
            "v6-open"
        ],
        "templates are not ACLs"
    );
    let office = inv.acls.get(AclPlatform::Asterisk, "office").unwrap();
    assert_eq!(office.location.line, line_of(f, "[office]"));
    assert_eq!(office.rules.len(), 3, "the first [office] is kept");
    let branch = inv.acls.get(AclPlatform::Asterisk, "branch").unwrap();
    assert_eq!(branch.rules.len(), 2, "the template's deny comes first");
}

#[test]
fn an_unreadable_acl_file_is_not_an_imported_one() {
    let inv = import_acl_conf(fixture("no-such-acl.conf"));
    assert_eq!(inv.problems.len(), 1);
    assert!(inv.problems[0].message.starts_with("cannot read"));
    assert!(inv.acls.files(AclPlatform::Asterisk).is_empty());
}

#[test]
fn asterisk_effective_networks() {
    let mut inv = asterisk_inventory();
    inv.resolve_acls();
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("4001", Some(&["10.20.0.0/16", "192.168.10.0/24"])),
        ("4002", None),
        ("4003", None),
        ("4004", Some(&["10.0.0.0/8"])),
        ("4005", Some(&["10.30.0.0/16", "2001:db8:10::/48"])),
        ("4006", None),
        ("4007", None),
        ("4008", Some(&["172.16.5.0/24"])),
        ("5001", Some(&["10.20.0.0/16", "192.168.10.0/24"])),
        ("5002", None),
        ("5003", None),
    ];
    for (id, expected) in cases {
        let expected = expected.map(|nets| nets.iter().map(|n| n.to_string()).collect());
        assert_eq!(effective(&inv, id), expected, "extension {id}");
    }
    let restricted = |id| extension(&inv, id).has_ip_restriction();
    for id in ["4001", "4003", "4004", "4005", "4008", "5001", "5003"] {
        assert!(restricted(id), "{id}");
    }
    for id in ["4002", "4006", "4007", "5002"] {
        assert!(!restricted(id), "{id}");
    }
    assert!(matches!(
        &extension(&inv, "4003").acl_verdict,
        Some(AclVerdict::Unresolved(acls))
            if acls.len() == 1 && acls[0].reason == UnresolvedReason::NotDefined
    ));
}

#[test]
fn asterisk_acl_findings() {
    let inv = asterisk_inventory();
    let findings = audit_inventory(&inv, &AuditOptions::default());

    for subject in [
        "extension 4001 (",
        "extension 4004 (",
        "extension 4005 (",
        "extension 4008 (",
    ] {
        let found = codes(&findings, subject);
        assert!(found.is_empty(), "{subject}: {found:?}");
    }
    let defined = |name: &str| {
        format!(
            "acl \"{name}\" ({}:{})",
            fixture("acl.conf").display(),
            line_of("acl.conf", &format!("[{name}]"))
        )
    };
    for (subject, acl) in [
        ("extension 4002 (", defined("leaky")),
        ("extension 4006 (", defined("v6-open")),
        ("extension 4007 (", "its own permit/deny".to_string()),
        ("extension 5002 (", defined("leaky")),
    ] {
        let found = about(&findings, subject);
        assert_eq!(found.len(), 1, "{subject}: {found:?}");
        let finding = found[0];
        assert_eq!(finding.code, "no_ip_restriction");
        assert_eq!(finding.severity, Severity::Medium);
        assert!(finding.evidence.contains(&acl), "{}", finding.evidence);
        assert!(
            finding.fix.contains("deny=0.0.0.0/0.0.0.0"),
            "{}",
            finding.fix
        );
    }
    let v6 = about(&findings, "extension 4006 (")[0];
    assert!(v6.evidence.contains("public IPv6"), "{}", v6.evidence);
    assert!(!v6.evidence.contains("public IPv4"), "{}", v6.evidence);
    let leaky = about(&findings, "extension 4002 (")[0];
    assert!(
        leaky
            .evidence
            .contains("of the 3,702,258,688 public IPv4 addresses"),
        "{}",
        leaky.evidence
    );

    // Undefined names: one finding per name, naming each extension using it.
    for (name, users) in [("office-typo", ["4003 ("]), ("nowhere", ["5003 ("])] {
        let found = about(&findings, &format!("Asterisk acl \"{name}\""));
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert_eq!(found[0].code, "unknown_acl");
        assert_eq!(found[0].severity, Severity::Medium);
        for user in users {
            assert!(found[0].evidence.contains(user), "{}", found[0].evidence);
        }
        assert!(
            found[0].evidence.contains("acl.conf"),
            "{}",
            found[0].evidence
        );
        assert!(codes(&findings, &format!("extension {}", users[0])).is_empty());
    }
    assert!(!findings.iter().any(|f| f.code == "unresolved_acl"));
}

#[test]
fn without_an_acl_file_named_acls_are_taken_on_trust() {
    let inv = import_pjsip(fixture("pjsip-acl.conf"));
    let findings = audit_inventory(&inv, &AuditOptions::default());
    // As before named ACLs were resolved: a named ACL counts as a restriction...
    for id in ["4001", "4002", "4003", "4006"] {
        assert!(extension(&inv, id).has_ip_restriction(), "{id}");
        assert!(
            codes(&findings, &format!("extension {id} (")).is_empty(),
            "{id}"
        );
    }
    // ...with one note per ACL name, naming its users.
    let office = about(&findings, "Asterisk acl \"office\"");
    assert_eq!(office.len(), 1);
    assert_eq!(office[0].code, "unresolved_acl");
    assert_eq!(office[0].severity, Severity::Info);
    assert!(office[0].evidence.contains("4001 ("));
    assert!(office[0].evidence.contains("no acl.conf was imported"));
    assert!(!findings.iter().any(|f| f.code == "unknown_acl"));
    // Own rules are still judged: a permit alone restricts nothing.
    assert_eq!(codes(&findings, "extension 4007 ("), ["no_ip_restriction"]);
}

#[test]
fn freeswitch_conf_folder_reads_the_directory_and_its_network_lists() {
    let dir = "freeswitch-conf";
    let mut inv = import_freeswitch(fixture(dir));
    let f = "acl.conf.xml";
    let acl_file = format!("{dir}/autoload_configs/{f}");
    assert_problem(
        &inv,
        f,
        line_of(&acl_file, "default=\"maybe\""),
        "\"maybe\"",
    );
    assert_problem(
        &inv,
        f,
        line_of(&acl_file, "10.0.0.0/40"),
        "\"10.0.0.0/40\"",
    );
    assert_problem(
        &inv,
        f,
        line_of(&acl_file, "<node type=\"allow\"/>"),
        "without cidr",
    );
    assert_eq!(inv.problems.len(), 3, "{:#?}", problems(&inv));
    assert_eq!(inv.extensions.len(), 9);
    assert_eq!(
        inv.acls.files(AclPlatform::FreeSwitch),
        [fixture(&acl_file)]
    );
    let phones = inv.acls.get(AclPlatform::FreeSwitch, "phones").unwrap();
    assert_eq!(phones.location.line, line_of(&acl_file, "name=\"phones\""));

    inv.resolve_acls();
    let cases: &[(&str, Option<&[&str]>)] = &[
        (
            "6001",
            Some(&[
                "10.40.0.0/18",
                "10.40.64.0/19",
                "10.40.96.0/23",
                "10.40.98.0/24",
                "10.40.100.0/22",
                "10.40.104.0/21",
                "10.40.112.0/20",
                "10.40.128.0/17",
                "192.168.50.0/24",
            ]),
        ),
        ("6002", None),
        ("6003", None),
        ("6004", None),
        (
            "6005",
            Some(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
        ),
        ("6006", Some(&["10.0.0.0/8", "192.168.0.0/16"])),
        ("6007", Some(&["2001:db8:20::/48"])),
        ("6008", None),
        ("6009", None),
    ];
    for (id, expected) in cases {
        let expected = expected.map(|nets| nets.iter().map(|n| n.to_string()).collect());
        assert_eq!(effective(&inv, id), expected, "user {id}");
    }

    let findings = audit_inventory(&inv, &AuditOptions::default());
    for id in ["6001", "6003", "6004", "6005", "6006", "6007", "6008"] {
        assert!(
            !codes(&findings, &format!("extension {id} (")).contains(&"no_ip_restriction".into()),
            "{id}"
        );
    }
    for (id, list) in [("6002", "acl \"lan\" ("), ("6009", "acl \"slash-zero\" (")] {
        let found = about(&findings, &format!("extension {id} ("));
        let open: Vec<_> = found
            .iter()
            .filter(|f| f.code == "no_ip_restriction")
            .collect();
        assert_eq!(open.len(), 1, "{id}: {found:?}");
        assert!(open[0].evidence.contains(list), "{}", open[0].evidence);
        assert!(open[0].fix.contains("default=\"deny\""), "{}", open[0].fix);
    }
    let missing = about(&findings, "FreeSWITCH acl \"missing\"");
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].code, "unknown_acl");
    assert!(missing[0].evidence.contains("6004 ("));
    for (name, why) in [
        ("domains", "domain="),
        ("localnet.auto", "host's own address"),
    ] {
        let found = about(&findings, &format!("FreeSWITCH acl \"{name}\""));
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(found[0].code, "unresolved_acl");
        assert!(found[0].evidence.contains(why), "{}", found[0].evidence);
    }
    // Built-in lists and CIDR lists are never "unknown".
    assert_eq!(
        findings
            .iter()
            .filter(|f| f.code == "unknown_acl" || f.code == "unresolved_acl")
            .count(),
        3
    );
}

#[test]
fn freeswitch_acl_names_do_not_resolve_against_asterisk_acls() {
    let mut inv = import_freeswitch(fixture("freeswitch"));
    inv.merge(import_acl_conf(fixture("acl.conf")));
    let findings = audit_inventory(&inv, &AuditOptions::default());
    // 1002 names "lan": no FreeSWITCH acl file, so taken on trust.
    let lan = about(&findings, "FreeSWITCH acl \"lan\"");
    assert_eq!(lan.len(), 1);
    assert_eq!(lan[0].code, "unresolved_acl");
    assert!(lan[0].evidence.contains("no acl.conf.xml was imported"));
}

#[test]
fn an_acl_defined_in_two_files_is_a_problem_at_the_second() {
    let mut inv = import_acl_conf(fixture("acl.conf"));
    inv.merge(import_acl_conf(fixture("acl.conf")));
    let duplicates = inv
        .problems
        .iter()
        .filter(|p| p.message.contains("already defined"))
        .count();
    // The file's own duplicate [office] twice, and each of its 7 ACLs once more.
    assert_eq!(duplicates, 2 + 7);
}

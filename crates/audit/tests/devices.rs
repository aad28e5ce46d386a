//! The devices behind the extensions: User-Agents parsed to vendor, model and version,
//! outdated firmware and factory-default logins.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tollgate_audit::findings::Replace;
use tollgate_audit::import::{import_csv, import_json};
use tollgate_audit::inventory::Inventory;
use tollgate_audit::{
    audit_firmware, audit_inventory, parse_user_agent, AuditOptions, Finding, FirmwareRule,
    SeenDevice, Severity, Version,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// (User-Agent, vendor, model, version as written).
const USER_AGENTS: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "Yealink SIP-T46S 66.86.0.15",
        "Yealink",
        Some("T46S"),
        "66.86.0.15",
    ),
    (
        "Yealink SIP-T54W 96.86.0.100",
        "Yealink",
        Some("T54W"),
        "96.86.0.100",
    ),
    (
        "Yealink W60B 77.85.0.20",
        "Yealink",
        Some("W60B"),
        "77.85.0.20",
    ),
    (
        "Yealink SIP VP-T49G 51.80.0.100",
        "Yealink",
        Some("VP-T49G"),
        "51.80.0.100",
    ),
    (
        "PolycomVVX-VVX_450-UA/6.4.3.5018",
        "Polycom",
        Some("VVX_450"),
        "6.4.3.5018",
    ),
    (
        "PolycomSoundPointIP-SPIP_331-UA/4.0.15.1009",
        "Polycom",
        Some("SPIP_331"),
        "4.0.15.1009",
    ),
    (
        "Poly/CCX_500-UA/7.2.3.0000",
        "Poly",
        Some("CCX_500"),
        "7.2.3.0000",
    ),
    (
        "PolyCCX-CCX_500-UA/9.4.1.0508",
        "Poly",
        Some("CCX_500"),
        "9.4.1.0508",
    ),
    (
        "Grandstream GXP2170 1.0.11.3",
        "Grandstream",
        Some("GXP2170"),
        "1.0.11.3",
    ),
    (
        "Grandstream HT801 1.0.43.11",
        "Grandstream",
        Some("HT801"),
        "1.0.43.11",
    ),
    ("Cisco/SPA504G-7.6.2", "Cisco", Some("SPA504G"), "7.6.2"),
    (
        "Linksys/SPA942-6.1.5(a)",
        "Linksys",
        Some("SPA942"),
        "6.1.5(a)",
    ),
    (
        "Cisco-CP7841-3PCC/11.3.7",
        "Cisco",
        Some("CP7841-3PCC"),
        "11.3.7",
    ),
    ("snom760/10.1.54.13", "snom", Some("760"), "10.1.54.13"),
    ("snomD785/10.1.73.16", "snom", Some("D785"), "10.1.73.16"),
    ("snom370-SIP 8.7.5.35", "snom", Some("370"), "8.7.5.35"),
    ("Fanvil X6U 2.12.1", "Fanvil", Some("X6U"), "2.12.1"),
    (
        "Fanvil V64 2.12.24.2 0c383e15bfe6",
        "Fanvil",
        Some("V64"),
        "2.12.24.2",
    ),
    (
        "OBIHAI/OBi202-3.2.2.5921EX",
        "Obihai",
        Some("OBi202"),
        "3.2.2.5921EX",
    ),
    (
        "Aastra 6757i/3.3.1.4322",
        "Aastra",
        Some("6757i"),
        "3.3.1.4322",
    ),
    (
        "Mitel 6867i/5.1.0.2051",
        "Mitel",
        Some("6867i"),
        "5.1.0.2051",
    ),
    (
        "Panasonic_KX-UT136/01.133",
        "Panasonic",
        Some("KX-UT136"),
        "01.133",
    ),
    (
        "Panasonic_KX-TGP600/06.001 (0080F0123456)",
        "Panasonic",
        Some("KX-TGP600"),
        "06.001",
    ),
    (
        "Gigaset N510 IP PRO/42.250.00.000.000",
        "Gigaset",
        Some("N510 IP PRO"),
        "42.250.00.000.000",
    ),
    ("Z 5.5.9 v2.10.12.0", "Zoiper", None, "5.5.9"),
    ("Zoiper rv2.10.8.2", "Zoiper", None, "2.10.8.2"),
    ("MicroSIP/3.21.3", "MicroSIP", None, "3.21.3"),
    (
        "Linphone/4.4.9 (belle-sip/4.4.0)",
        "Linphone",
        None,
        "4.4.9",
    ),
    (
        "LinphoneiOS/4.3.0 (Bob's iPhone) LinphoneSDK/4.4.0",
        "Linphone",
        Some("iOS"),
        "4.3.0",
    ),
    (
        "Linphone Desktop/4.2.5 (macOS 10.15, Qt 5.15.2) LinphoneCore/4.4.19",
        "Linphone",
        Some("Desktop"),
        "4.2.5",
    ),
    (
        "Bria 6 release 6.5.3 stamp 110286",
        "Bria",
        Some("6"),
        "6.5.3",
    ),
    (
        "Bria iOS release 6.13.1 stamp 2099",
        "Bria",
        Some("iOS"),
        "6.13.1",
    ),
    ("Asterisk PBX 18.12.0", "Asterisk", None, "18.12.0"),
    (
        "Asterisk PBX certified/18.9-cert4",
        "Asterisk",
        None,
        "18.9-cert4",
    ),
    (
        "FPBX-16.0.33(18.15.0)",
        "Asterisk",
        Some("FreePBX"),
        "18.15.0",
    ),
    (
        "FreeSWITCH-mod_sofia/1.10.7-release+git~20211021T1650Z~64bit",
        "FreeSWITCH",
        None,
        "1.10.7-release+git~20211021T1650Z~64bit",
    ),
];

#[test]
fn user_agents_parse_to_vendor_model_and_version() {
    for (ua, vendor, model, version) in USER_AGENTS {
        let parsed = parse_user_agent(ua).unwrap_or_else(|| panic!("{ua:?} not parsed"));
        assert_eq!(parsed.vendor, *vendor, "{ua}");
        assert_eq!(parsed.model.as_deref(), *model, "{ua}");
        assert_eq!(parsed.version.as_str(), *version, "{ua}");
    }
    let numbers = |ua: &str| parse_user_agent(ua).unwrap().version.numbers().to_vec();
    assert_eq!(numbers("OBIHAI/OBi202-3.2.2.5921EX"), [3, 2, 2, 5921]);
    assert_eq!(numbers("Panasonic_KX-UT136/01.133"), [1, 133]);
    assert_eq!(numbers("Linksys/SPA942-6.1.5(a)"), [6, 1, 5]);
}

#[test]
fn unknown_user_agents_are_none() {
    for ua in [
        "",
        "friendly-scanner",
        "sipvicious",
        "Yealink",
        "Yealink SIP-T46S",
        "Yealink 66.86.0.15",
        "Polycom",
        "PolycomVVX-VVX_450/6.4.3",
        "Cisco/SPA504G",
        "Z abc",
        "MicroSIP/",
        "Grandstream GXP2170 latest",
        "Bria 6",
        "Asterisk PBX GIT-master-abc123",
    ] {
        assert!(parse_user_agent(ua).is_none(), "{ua:?}");
    }
}

#[test]
fn hostile_user_agents_are_refused_or_parsed_safely() {
    let long = format!("Yealink SIP-T46S 66.86.0.15 {}", "A".repeat(10_000));
    assert!(parse_user_agent(&long).is_none());
    assert!(parse_user_agent(&"9.".repeat(5_000)).is_none());
    for ua in [
        "Yealink SIP-T46S 66.86.0.15\u{7}",
        "Yealink SIP-T46S\n66.86.0.15",
        "Yealink\u{0}SIP-T46S 66.86.0.15",
        "Yéalink SIP-T46S 66.86.0.15",
        "Yealink SIP-T46S 66.86.0.15555555555555555",
    ] {
        assert!(parse_user_agent(ua).is_none(), "{ua:?}");
    }
    // Non-ASCII where a model goes is kept as text, not a reason to fail.
    let odd = parse_user_agent("Yealink ЅIP-Т46Ѕ 66.86.0.15").unwrap();
    assert_eq!(odd.model.as_deref(), Some("ЅIP-Т46Ѕ"));
    assert_eq!(
        parse_user_agent("snom\u{1F600}/10.1.2")
            .unwrap()
            .model
            .as_deref(),
        Some("\u{1F600}")
    );

    // Every cut of every example, with multi-byte characters spliced in, and a stream of
    // pseudo-random text: no panic, and anything parsed has a version.
    let mut inputs: Vec<String> = Vec::new();
    for (ua, ..) in USER_AGENTS {
        for (i, _) in ua.char_indices() {
            inputs.push(ua[..i].to_string());
            inputs.push(format!("{}é€\u{1F600}{}", &ua[..i], &ua[i..]));
        }
    }
    let alphabet: Vec<char> = "YealinkPolycm/-_. 0123456789()é€\u{1F600}\u{7}SIPUAsnomZ"
        .chars()
        .collect();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        let mut text = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 40) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        inputs.push(text);
    }
    for input in &inputs {
        if let Some(ua) = parse_user_agent(input) {
            assert!(!ua.version.numbers().is_empty(), "{input:?}");
        }
    }
}

#[test]
fn version_ordering() {
    let v = |text: &str| Version::parse(text).unwrap();
    let mut versions = [
        v("66.86.0.160"),
        v("66.86.0.15"),
        v("1.0.43.11"),
        v("1.0.43.2"),
        v("01.133"),
        v("1.99"),
        v("6.1.5(a)"),
        v("6.1.5"),
    ];
    versions.sort();
    let shown: Vec<&str> = versions.iter().map(Version::as_str).collect();
    assert_eq!(
        shown,
        [
            "1.0.43.2",
            "1.0.43.11",
            "1.99",
            "01.133",
            "6.1.5",
            "6.1.5(a)",
            "66.86.0.15",
            "66.86.0.160"
        ]
    );
    assert!(v("3.2.2.5921EX").is_below(&v("3.2.2.5922")));
    assert!(!v("3.2.2.5921EX").is_below(&v("3.2.2.5921")));
    assert!(!v("1.10").is_below(&v("1.9.99")));
}

fn rule(vendor: &str, model: Option<&str>, min: &str, note: Option<&str>) -> FirmwareRule {
    FirmwareRule {
        vendor: vendor.into(),
        model: model.map(Into::into),
        min_version: min.into(),
        note: note.map(Into::into),
    }
}

fn seen(extension: &str, ua: &str, ip: Option<&str>, when: &str) -> SeenDevice {
    SeenDevice {
        extension: extension.into(),
        user_agent: ua.into(),
        ip: ip.map(|ip| ip.parse::<IpAddr>().unwrap()),
        last_seen: at(when),
    }
}

fn of<'a>(findings: &'a [Finding], subject: &str) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| f.subject.starts_with(subject))
        .collect()
}

#[test]
fn firmware_findings_outdated_current_and_unmatched() {
    let rules = [
        rule(
            "yealink",
            Some("t46"),
            "66.86.0.160",
            Some("CVE-2021-27561"),
        ),
        rule("Yealink", None, "1.0", None),
        rule("Polycom", Some("VVX 4"), "6.4.4", None),
        rule("Grandstream", Some("GXP21"), "1.0.11.3", None),
        rule("Fanvil", None, "latest", None),
    ];
    let devices = [
        seen(
            "1001",
            "Yealink SIP-T46S 66.86.0.15",
            Some("192.0.2.10"),
            "2025-06-01T08:00:00Z",
        ),
        // 1002 was upgraded: only what it runs now counts.
        seen(
            "1002",
            "Yealink SIP-T46S 66.86.0.15",
            None,
            "2025-05-01T08:00:00Z",
        ),
        seen(
            "1002",
            "Yealink SIP-T46S 66.86.0.160",
            None,
            "2025-06-01T08:00:00Z",
        ),
        seen(
            "1003",
            "Grandstream GXP2170 1.0.11.3",
            None,
            "2025-06-01T08:00:00Z",
        ),
        seen("1004", "Fanvil X6U 2.12.1", None, "2025-06-01T08:00:00Z"),
        seen("1005", "Cisco/SPA504G-7.6.2", None, "2025-06-01T08:00:00Z"),
        seen("1006", "friendly-scanner", None, "2025-06-01T08:00:00Z"),
        seen("1007", "friendly-scanner", None, "2025-06-01T08:00:00Z"),
        seen("1007", "friendly-scanner", None, "2025-06-02T08:00:00Z"),
        seen(
            "1008",
            "PolycomVVX-VVX_450-UA/6.4.3.5018",
            None,
            "2025-06-01T08:00:00Z",
        ),
        seen(
            "1009",
            "Yealink W60B 77.85.0.20",
            None,
            "2025-06-01T08:00:00Z",
        ),
    ];
    let findings = audit_firmware(&devices, &rules);

    let yealink = of(&findings, "extension 1001 ");
    assert_eq!(yealink.len(), 1, "{findings:#?}");
    let f = yealink[0];
    assert_eq!(f.code, "outdated_firmware");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(
        f.subject,
        "extension 1001 device Yealink T46S at 192.0.2.10"
    );
    assert!(
        f.evidence.contains("\"Yealink SIP-T46S 66.86.0.15\""),
        "{}",
        f.evidence
    );
    assert!(f.evidence.contains("minimum 66.86.0.160"), "{}", f.evidence);
    assert!(f.evidence.contains("CVE-2021-27561"), "{}", f.evidence);
    assert!(
        f.evidence.contains("2025-06-01 08:00 UTC"),
        "{}",
        f.evidence
    );
    assert_eq!(f.fix, "upgrade the firmware to ≥ 66.86.0.160");

    let polycom = of(&findings, "extension 1008 ");
    assert_eq!(polycom.len(), 1);
    assert_eq!(polycom[0].code, "outdated_firmware");
    assert!(polycom[0].fix.ends_with("6.4.4"));

    for ext in ["1002", "1003", "1004", "1005", "1009"] {
        assert!(
            of(&findings, &format!("extension {ext} ")).is_empty(),
            "{ext}"
        );
    }

    let scanner = of(&findings, "user agent \"friendly-scanner\"");
    assert_eq!(scanner.len(), 1, "once per distinct User-Agent");
    assert_eq!(scanner[0].code, "unrecognized_user_agent");
    assert_eq!(scanner[0].severity, Severity::Info);
    assert!(scanner[0].evidence.contains("extensions 1006, 1007"));

    let invalid = of(&findings, "firmware rule 5");
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].code, "invalid_firmware_rule");
    assert!(invalid[0].evidence.contains("\"latest\""));

    assert_eq!(findings.len(), 4);
    assert!(
        audit_firmware(&devices, &[]).is_empty(),
        "no rules, no findings"
    );
}

#[test]
fn firmware_rules_deserialize_strictly() {
    #[derive(serde::Deserialize)]
    struct Audit {
        firmware: Vec<FirmwareRule>,
    }
    let rules: Audit = serde_json::from_str(
        r#"{"firmware": [{"vendor": "Yealink", "model": "T46S", "min_version": "66.86.0.160"},
                         {"vendor": "Polycom", "min_version": "6.4.4", "note": "VVX advisory"}]}"#,
    )
    .unwrap();
    assert_eq!(rules.firmware.len(), 2);
    assert_eq!(rules.firmware[1].model, None);
    assert!(rules.firmware.iter().all(|r| r.check().is_ok()));
    let typo = serde_json::from_str::<FirmwareRule>(
        r#"{"vendor": "Yealink", "min_versoin": "1.0", "min_version": "1.0"}"#,
    );
    assert!(typo.is_err());
}

fn device_inventory() -> Inventory {
    let mut inv = import_csv(fixture("inventory-devices.csv"));
    inv.merge(import_json(fixture("inventory-devices.json")));
    inv
}

fn codes(findings: &[Finding], subject: &str) -> Vec<String> {
    let mut codes: Vec<String> = of(findings, subject)
        .iter()
        .map(|f| f.code.clone())
        .collect();
    codes.sort();
    codes
}

#[test]
fn device_columns_are_read_and_checked() {
    let inv = device_inventory();
    let problems: Vec<String> = inv.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("inventory-devices.json:4: user_agent"),
        "{problems:?}"
    );
    assert!(problems[1].contains("\"device_password\" must be a string"));
    let e = inv.extensions.iter().find(|e| e.id == "7001").unwrap();
    assert_eq!(e.user_agent.as_deref(), Some("Yealink SIP-T46S 66.86.0.15"));
    assert_eq!(e.device_user.as_deref(), Some("admin"));
    assert!(e.device_password.is_some());
    let e = inv.extensions.iter().find(|e| e.id == "8002").unwrap();
    assert_eq!(e.user_agent, None, "a control character: refused");

    let options = AuditOptions {
        firmware: vec![rule("Yealink", Some("T46S"), "66.86.0.160", None)],
        ..AuditOptions::default()
    };
    let findings = audit_inventory(&inv, &options);
    let subject = |id: &str, file: &str| format!("extension {id} ({}", fixture(file).display());
    let csv = "inventory-devices.csv";
    assert_eq!(
        codes(&findings, &subject("7001", csv)),
        ["default_device_credential", "outdated_firmware"]
    );
    assert!(codes(&findings, &subject("7002", csv)).is_empty());
    assert!(codes(&findings, &subject("7007", csv)).is_empty());

    let default_of = |id: &str, file: &str| -> &Finding {
        let found: Vec<&Finding> = of(&findings, &subject(id, file))
            .into_iter()
            .filter(|f| f.code == "default_device_credential")
            .collect();
        assert_eq!(found.len(), 1, "{id}: {found:?}");
        assert_eq!(found[0].severity, Severity::Critical);
        found[0]
    };
    let f = default_of("7001", csv);
    assert!(
        f.evidence.contains("factory default of Yealink:"),
        "{}",
        f.evidence
    );
    assert_eq!(f.replace, None, "the phone's login, not the SIP password");
    // The SIP password "admin" is every such vendor's default.
    let f = default_of("7003", csv);
    assert!(
        f.evidence
            .contains("of Yealink, Grandstream, Linksys, Fanvil, Obihai devices"),
        "{}",
        f.evidence
    );
    assert_eq!(f.replace, Some(Replace::SipPassword));
    // The vendor from the User-Agent narrows the check; without one, every vendor.
    assert!(default_of("7004", csv)
        .evidence
        .contains("default of Polycom:"));
    assert!(default_of("7006", csv)
        .evidence
        .contains("default of Polycom, Poly:"));
    let json = "inventory-devices.json";
    assert!(default_of("8001", json)
        .evidence
        .contains("default of snom:"));

    let mystery = of(&findings, "user agent \"Mystery Phone 1.0\"");
    assert_eq!(mystery.len(), 1);
    assert!(mystery[0].evidence.contains("7005 ("));

    // No firmware rules: devices are still checked for default logins, not firmware.
    let plain = audit_inventory(&inv, &AuditOptions::default());
    assert!(!plain
        .iter()
        .any(|f| f.code.contains("firmware") || f.code.contains("user_agent")));
    assert_eq!(
        plain
            .iter()
            .filter(|f| f.code == "default_device_credential")
            .count(),
        5
    );
}

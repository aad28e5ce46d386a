//! The importers against fixture files, extension by extension: what was read, how its
//! credential checks out, and that every unreadable line is reported with file and line.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tollgate_audit::import::{
    import_acl_conf, import_csv, import_freeswitch, import_json, import_pjsip, import_sip_conf,
    import_voicemail,
};
use tollgate_audit::inventory::{Credential, ImportedExtension, Inventory, Mailbox, SourceKind};
use tollgate_audit::{check_password, check_pin, PasswordPolicy, PinPolicy, WeaknessCode};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The 1-based line of the first line of a fixture containing `needle`, so tests survive
/// edits to the fixtures above the line they look at.
fn line_of(name: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in {name}"))
}

fn extension<'a>(inventory: &'a Inventory, id: &str) -> &'a ImportedExtension {
    let found: Vec<_> = inventory.extensions.iter().filter(|e| e.id == id).collect();
    assert_eq!(
        found.len(),
        1,
        "extension {id}: {:#?}",
        inventory.extensions
    );
    found[0]
}

fn mailbox<'a>(inventory: &'a Inventory, context: Option<&str>, id: &str) -> &'a Mailbox {
    inventory
        .mailboxes
        .iter()
        .find(|m| m.mailbox == id && m.context.as_deref() == context)
        .unwrap_or_else(|| panic!("mailbox {id}: {:#?}", inventory.mailboxes))
}

/// The weakness codes of an extension's plaintext password, judged with its id and
/// username as context, the way the audit will.
fn password_codes(extension: &ImportedExtension) -> Vec<WeaknessCode> {
    let secret = match &extension.secret {
        Some(Credential::Plain(secret)) => secret,
        other => panic!("{}: no plaintext password: {other:?}", extension.id),
    };
    let mut context = vec![extension.id.as_str()];
    context.extend(extension.username.as_deref());
    check_password(secret.expose(), &context, &PasswordPolicy::default())
        .into_iter()
        .map(|w| w.code)
        .collect()
}

fn pin_codes(mailbox: &Mailbox) -> Vec<WeaknessCode> {
    let pin = mailbox.pin.plaintext().unwrap();
    check_pin(pin.expose(), &mailbox.mailbox, &PinPolicy::default())
        .into_iter()
        .map(|w| w.code)
        .collect()
}

fn nets(nets: &[ipnet::IpNet]) -> Vec<String> {
    nets.iter().map(ToString::to_string).collect()
}

/// Every problem as "file-name:line: message", sorted by line within each file.
fn problems(inventory: &Inventory) -> Vec<(String, usize, String)> {
    inventory
        .problems
        .iter()
        .map(|p| {
            let file = p
                .location
                .file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (file, p.location.line, p.message.clone())
        })
        .collect()
}

fn has_problem(inventory: &Inventory, file: &str, line: usize, fragment: &str) -> bool {
    problems(inventory)
        .iter()
        .any(|(f, l, m)| f == file && *l == line && m.contains(fragment))
}

fn assert_problem(inventory: &Inventory, file: &str, line: usize, fragment: &str) {
    assert!(
        has_problem(inventory, file, line, fragment),
        "no problem {file}:{line} containing {fragment:?} in {:#?}",
        problems(inventory)
    );
}

#[test]
fn pjsip_endpoints_with_templates_auth_and_acl() {
    let inv = import_pjsip(fixture("pjsip.conf"));
    let ids: Vec<&str> = inv.extensions.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1001", "1002", "test", "provider", "2001", "3001"]);

    let e = extension(&inv, "1001");
    assert_eq!(e.source, SourceKind::Pjsip);
    assert_eq!(
        e.location.line,
        line_of("pjsip.conf", "[1001](endpoint-tpl")
    );
    assert_eq!(e.username.as_deref(), Some("1001"));
    assert_eq!(e.context.as_deref(), Some("from-internal"));
    assert_eq!(e.display_name.as_deref(), Some("\"Reception\" <1001>"));
    assert_eq!(nets(&e.permit), ["192.168.10.0/24", "10.20.0.0/16"]);
    assert_eq!(nets(&e.deny), ["0.0.0.0/0"]);
    assert_eq!(e.max_contacts, Some(1));
    assert!(e.has_ip_restriction());
    let codes = password_codes(e);
    assert!(codes.contains(&WeaknessCode::TooShort), "{codes:?}");
    assert!(codes.contains(&WeaknessCode::ContainsContext), "{codes:?}");

    let e = extension(&inv, "1002");
    assert_eq!(e.username.as_deref(), Some("alice"));
    assert_eq!(
        e.context.as_deref(),
        Some("international"),
        "own key overrides the template's"
    );
    assert!(e.permit.is_empty());
    assert_eq!(nets(&e.deny), ["0.0.0.0/0"]);
    // deny=0.0.0.0/0 alone refuses every IPv4 address: restricted (unusable), not open.
    assert!(e.has_ip_restriction());
    assert_eq!(
        e.max_contacts,
        Some(5),
        "own max_contacts overrides the template's"
    );
    // The escaped semicolon is part of the password, not a comment.
    assert_eq!(
        e.secret
            .as_ref()
            .and_then(Credential::plaintext)
            .map(|s| s.expose().len()),
        Some(19)
    );
    assert_eq!(password_codes(e), []);

    let e = extension(&inv, "test");
    assert!(matches!(e.secret, Some(Credential::Hashed)));
    assert_eq!(e.username.as_deref(), Some("test"));
    assert_eq!(e.display_name.as_deref(), Some("Test Phone"));

    let e = extension(&inv, "provider");
    assert!(e.secret.is_none());
    assert_eq!(e.context.as_deref(), Some("from-provider"));
    assert_eq!(
        nets(&e.identify),
        [
            "203.0.113.10/32",
            "203.0.113.11/32",
            "198.51.100.0/24",
            "192.0.2.1/32"
        ]
    );
    assert!(e.permit.is_empty());

    // 2001 names a missing template: still read from its own lines.
    let e = extension(&inv, "2001");
    assert_eq!(nets(&e.permit), ["10.1.1.1/32"]);
    assert_eq!(e.context, None);
    assert!(password_codes(e).contains(&WeaknessCode::CommonPassword));

    // 3001 comes from the included file, with the template from the including one.
    let e = extension(&inv, "3001");
    assert_eq!(e.location.file, fixture("pjsip-extra.conf"));
    assert_eq!(e.context.as_deref(), Some("from-internal"));
    assert_eq!(nets(&e.permit), ["10.0.0.5/32", "10.0.0.0/8"]);
    assert_eq!(e.acl_names, ["phones"]);
    assert_eq!(password_codes(e), []);
}

#[test]
fn pjsip_broken_lines_are_reported_with_file_and_line() {
    let inv = import_pjsip(fixture("pjsip.conf"));
    let f = "pjsip.conf";
    assert_problem(
        &inv,
        f,
        line_of(f, "this line has no equals sign"),
        "key = value",
    );
    assert_problem(
        &inv,
        f,
        line_of(f, "[2001](missing-tpl)"),
        "\"missing-tpl\"",
    );
    assert_problem(&inv, f, line_of(f, "[broken-header"), "closing \"]\"");
    assert_problem(
        &inv,
        f,
        line_of(f, "#include does-not-exist.conf"),
        "cannot read included",
    );
    let extra = "pjsip-extra.conf";
    assert_problem(
        &inv,
        extra,
        line_of(extra, "#include pjsip.conf"),
        "include loop",
    );
    assert_problem(
        &inv,
        extra,
        line_of(extra, "permit=not-an-address"),
        "\"not-an-address\"",
    );
    assert_eq!(inv.problems.len(), 6, "{:#?}", problems(&inv));
}

#[test]
fn unreadable_file_is_one_problem_naming_it() {
    let path = fixture("no-such-file.conf");
    for inv in [
        import_acl_conf(&path),
        import_pjsip(&path),
        import_sip_conf(&path),
        import_voicemail(&path),
        import_freeswitch(&path),
        import_csv(&path),
        import_json(&path),
    ] {
        assert!(inv.extensions.is_empty() && inv.mailboxes.is_empty());
        assert_eq!(inv.problems.len(), 1);
        assert_eq!(inv.problems[0].location.file, path);
        assert!(
            inv.problems[0].message.starts_with("cannot read"),
            "{}",
            inv.problems[0]
        );
    }
}

#[test]
fn sip_conf_peers() {
    let inv = import_sip_conf(fixture("sip.conf"));
    let ids: Vec<&str> = inv.extensions.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["101", "102", "demo", "103", "trunk"]);

    let e = extension(&inv, "101");
    assert_eq!(e.source, SourceKind::SipConf);
    assert_eq!(e.context.as_deref(), Some("from-internal"));
    assert_eq!(nets(&e.permit), ["192.168.1.0/24"]);
    assert_eq!(nets(&e.deny), ["0.0.0.0/0"]);
    assert_eq!(e.call_limit, Some(2));
    assert!(password_codes(e).contains(&WeaknessCode::TooShort));

    let e = extension(&inv, "102");
    assert_eq!(e.call_limit, Some(0));
    assert_eq!(password_codes(e), []);

    let e = extension(&inv, "demo");
    assert!(e.secret.is_none());
    assert!(!e.has_ip_restriction());

    assert!(matches!(
        extension(&inv, "103").secret,
        Some(Credential::Hashed)
    ));
    let e = extension(&inv, "trunk");
    assert!(e.permit.is_empty());

    let f = "sip.conf";
    assert_problem(&inv, f, line_of(f, "permit=not-an-address"), "permit");
    assert_problem(&inv, f, line_of(f, "call-limit=lots"), "not a number");
    assert_problem(&inv, f, line_of(f, "[weird]"), "unknown type \"phone\"");
    assert_eq!(inv.problems.len(), 3, "{:#?}", problems(&inv));
}

#[test]
fn voicemail_pins() {
    let inv = import_voicemail(fixture("voicemail.conf"));
    assert_eq!(inv.mailboxes.len(), 5, "{:#?}", inv.mailboxes);

    let m = mailbox(&inv, Some("default"), "1001");
    assert!(!m.pin_locked);
    assert!(pin_codes(m).contains(&WeaknessCode::RepeatedDigits));
    let m = mailbox(&inv, Some("default"), "1002");
    assert!(m.pin_locked, "a leading - locks the PIN");
    assert!(pin_codes(m).contains(&WeaknessCode::SequentialDigits));
    assert_eq!(pin_codes(mailbox(&inv, Some("default"), "1003")), []);
    assert!(matches!(
        mailbox(&inv, Some("default"), "1004").pin,
        Credential::Hashed
    ));
    let m = mailbox(&inv, Some("other"), "2001");
    assert!(pin_codes(m).contains(&WeaknessCode::EqualsExtension));

    let f = "voicemail.conf";
    assert_problem(&inv, f, line_of(f, "1005 1234"), "key = value");
    assert_eq!(inv.problems.len(), 1, "{:#?}", problems(&inv));
}

#[test]
fn freeswitch_directory_users() {
    let inv = import_freeswitch(fixture("freeswitch"));
    assert!(inv.problems.is_empty(), "{:#?}", problems(&inv));
    let ids: Vec<&str> = inv.extensions.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1001", "1002"]);

    let e = extension(&inv, "1001");
    assert_eq!(e.source, SourceKind::FreeSwitch);
    assert_eq!(e.location.file, fixture("freeswitch/1001.xml"));
    assert_eq!(e.location.line, 2);
    assert!(
        matches!(&e.secret, Some(Credential::Unresolved { reference }) if reference == "default_password")
    );
    assert_eq!(nets(&e.permit), ["192.168.1.0/24"]);
    assert_eq!(e.context.as_deref(), Some("default"));
    assert_eq!(e.display_name.as_deref(), Some("Extension 1001"));
    let m = mailbox(&inv, None, "1001");
    assert!(pin_codes(m).contains(&WeaknessCode::EqualsExtension));

    let e = extension(&inv, "1002");
    assert_eq!(e.acl_names, ["lan"]);
    assert!(e.permit.is_empty());
    assert!(e.has_ip_restriction());
    assert_eq!(e.context.as_deref(), Some("public"));
    // &amp; was unescaped: the password is 16 characters and strong.
    assert_eq!(
        e.secret
            .as_ref()
            .and_then(Credential::plaintext)
            .map(|s| s.expose().len()),
        Some(16)
    );
    assert_eq!(password_codes(e), []);
    assert_eq!(pin_codes(mailbox(&inv, None, "1002")), []);
}

#[test]
fn freeswitch_malformed_xml_is_a_problem_with_its_line() {
    let f = "freeswitch-broken.xml";
    let inv = import_freeswitch(fixture(f));
    assert_problem(&inv, f, line_of(f, "</usr>"), "malformed XML");
    assert_eq!(inv.problems.len(), 1, "{:#?}", problems(&inv));
    // What was read before the error is kept.
    assert_eq!(password_codes(extension(&inv, "1003")), []);
}

#[test]
fn csv_inventory() {
    let f = "inventory.csv";
    let inv = import_csv(fixture(f));
    let ids: Vec<&str> = inv.extensions.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1001", "1002", "1003"]);

    let e = extension(&inv, "1001");
    assert_eq!(e.source, SourceKind::Csv);
    assert_eq!(e.location.line, 2);
    assert_eq!(nets(&e.permit), ["192.168.1.0/24", "10.0.0.0/8"]);
    assert_eq!(e.context.as_deref(), Some("from-internal"));
    assert!(password_codes(e).contains(&WeaknessCode::TooShort));
    assert!(pin_codes(mailbox(&inv, Some("from-internal"), "1001"))
        .contains(&WeaknessCode::RepeatedDigits));

    let e = extension(&inv, "1002");
    assert_eq!(e.username, None);
    assert_eq!(e.context, None);
    assert_eq!(password_codes(e), []);
    assert!(
        !inv.mailboxes.iter().any(|m| m.mailbox == "1002"),
        "empty PIN: no mailbox"
    );

    let e = extension(&inv, "1003");
    assert!(e.secret.is_none());
    assert!(e.permit.is_empty());
    assert_eq!(e.username.as_deref(), Some("bob"));

    assert_problem(&inv, f, 4, "\"not-a-cidr\"");
    assert_problem(&inv, f, 5, "unreadable record");
    assert_eq!(inv.problems.len(), 2, "{:#?}", problems(&inv));

    let inv = import_csv(fixture("inventory-unknown-column.csv"));
    assert_problem(
        &inv,
        "inventory-unknown-column.csv",
        1,
        "unknown column \"pasword\"",
    );
}

#[test]
fn json_inventory() {
    let f = "inventory.json";
    let inv = import_json(fixture(f));
    let ids: Vec<&str> = inv.extensions.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1001", "1002"]);

    let e = extension(&inv, "1001");
    assert_eq!(e.source, SourceKind::Json);
    assert_eq!(e.location.line, 2);
    assert_eq!(e.username.as_deref(), Some("1001"));
    assert_eq!(nets(&e.permit), ["192.168.1.0/24"]);
    assert!(password_codes(e).contains(&WeaknessCode::TooShort));
    assert!(pin_codes(mailbox(&inv, Some("from-internal"), "1001"))
        .contains(&WeaknessCode::RepeatedDigits));

    let e = extension(&inv, "1002");
    assert_eq!(e.location.line, 4);
    assert_eq!(password_codes(e), []);

    assert_problem(
        &inv,
        f,
        line_of(f, "\"extension\": \"1003\"") - 1,
        "unknown field \"pasword\"",
    );
    assert_problem(
        &inv,
        f,
        line_of(f, "\"1004\""),
        "\"voicemail_pin\" must be a string",
    );
    assert_problem(&inv, f, line_of(f, "not an object"), "not an object");
    assert_eq!(inv.problems.len(), 3, "{:#?}", problems(&inv));
}

#[test]
fn malformed_json_names_its_line() {
    let dir = std::env::temp_dir().join(format!("tollgate-audit-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.json");
    std::fs::write(&path, "[\n  {\"extension\": \"1001\",}\n]\n").unwrap();
    let inv = import_json(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(inv.problems.len(), 1);
    assert_eq!(inv.problems[0].location.line, 2);
    assert!(inv.problems[0].message.contains("malformed JSON"));
}

#[test]
fn formatting_an_inventory_never_shows_a_fixture_secret() {
    let mut all = Inventory::default();
    all.merge(import_pjsip(fixture("pjsip.conf")));
    all.merge(import_sip_conf(fixture("sip.conf")));
    all.merge(import_voicemail(fixture("voicemail.conf")));
    all.merge(import_freeswitch(fixture("freeswitch")));
    all.merge(import_freeswitch(fixture("freeswitch-broken.xml")));
    all.merge(import_csv(fixture("inventory.csv")));
    all.merge(import_csv(fixture("inventory-unknown-column.csv")));
    all.merge(import_json(fixture("inventory.json")));
    all.merge(import_csv(fixture("inventory-devices.csv")));
    all.merge(import_json(fixture("inventory-devices.json")));
    all.merge(import_acl_conf(fixture("acl.conf")));
    all.merge(import_pjsip(fixture("pjsip-acl.conf")));
    all.merge(import_freeswitch(fixture("freeswitch-conf")));
    all.resolve_acls();
    assert!(!all.extensions.is_empty() && !all.mailboxes.is_empty() && !all.problems.is_empty());
    assert!(all.extensions.iter().any(|e| e.device_password.is_some()));

    let shown = format!("{all:?} {all:#?}");
    let problems: String = all.problems.iter().map(|p| format!("{p}\n")).collect();
    // Secrets distinct from any id, line number or key, so a hit can only be a leak.
    let secrets = [
        "1001pass",
        "Vq7#tR2m!xK9pLw4",
        "letmein",
        "Hx4!mQ9#cW2zT7vB",
        "0123456789abcdef",
        "101101",
        "Kp4!zR8#wQ2vN6xJ",
        "804713",
        "5f4dcc3b5aa765d61d8327deb882cf99",
        "1111",
        "-1234",
        "r9&Tq2Lx!Vm7#Pz4",
        "r9&amp;Tq2Lx",
        "582946",
        "Wn5#kP8!sD3qL7zR",
        "secret123",
        "Zt8#qW3!nL6vR1xP",
        "000000",
        "Jm3!vQ8#rT5wX2kN",
        "Bq6#nW1!xR4tY8mK",
        "not-read",
        // inventory-devices.csv and .json: SIP passwords and phone web passwords.
        "Wq8#zT3!mK6vR2xL",
        "Hn4!pX7#sD2qL9zR",
        "Rt5#kW8!nB3vX6pM",
        "Kp2#vN8!xR5tQ7mW",
        "Jd6!qM3#wT8zK4nP",
        "Bv7#rL2!xN9kW5sQ",
        "Tz3!hF8#mQ5vR1cX",
        "Yq4#nD7!kS2wL8mB",
        "Mf5#tR9!wK2xL7qZ",
        "Xc3!nW8#pL5vT2kR",
        "22222",
    ];
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} shown by Debug");
        assert!(!problems.contains(secret), "{secret:?} shown in a problem");
    }
    assert!(shown.contains("<redacted>"));
}

/// Every prefix of every fixture (a file cut off anywhere, even inside a UTF-8 character)
/// imports without panicking and without showing a secret: a poor man's fuzz run of each
/// parser, deterministic and fast.
#[test]
fn truncated_fixtures_never_panic() {
    type Importer = fn(&Path) -> Inventory;
    let cases: [(&str, &str, Importer); 10] = [
        ("inventory-devices.csv", "csv", |p| import_csv(p)),
        ("inventory-devices.json", "json", |p| import_json(p)),
        ("pjsip.conf", "conf", |p| import_pjsip(p)),
        ("acl.conf", "conf", |p| import_acl_conf(p)),
        (
            "freeswitch-conf/autoload_configs/acl.conf.xml",
            "xml",
            |p| import_freeswitch(p),
        ),
        ("sip.conf", "conf", |p| import_sip_conf(p)),
        ("voicemail.conf", "conf", |p| import_voicemail(p)),
        ("freeswitch/1002.xml", "xml", |p| import_freeswitch(p)),
        ("inventory.csv", "csv", |p| import_csv(p)),
        ("inventory.json", "json", |p| import_json(p)),
    ];
    let dir = std::env::temp_dir().join(format!("tollgate-audit-cut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, ext, import) in cases {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let path = dir.join(format!("cut.{ext}"));
        for end in 0..=bytes.len() {
            std::fs::write(&path, &bytes[..end]).unwrap();
            let inventory = import(&path);
            let shown = format!("{inventory:?}");
            assert!(
                !shown.contains("Vq7#tR2m") && !shown.contains("r9&Tq2Lx"),
                "{name}[..{end}]"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn freeswitch_bad_escape_is_reported_without_the_value() {
    let f = "freeswitch-bad-escape.xml";
    let inv = import_freeswitch(fixture(f));
    assert_problem(&inv, f, line_of(f, "secretpart"), "invalid escape");
    assert_eq!(inv.problems.len(), 1, "{:#?}", problems(&inv));
    assert!(!format!("{inv:?} {}", inv.problems[0]).contains("secretpart"));
    assert!(extension(&inv, "1004").secret.is_none());
}

//! The parsers under hostile input: random bytes, random mixes of the tokens the
//! parsers look for, and real lines cut or corrupted at random. None may panic, and
//! bulk scanning must agree with line-by-line parsing whatever the input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::Read;

use proptest::prelude::*;
use tollgate_core::guard_event::{AuthEvent, AuthOutcome};
use tollgate_ingest::{
    scan_bytes_with, scan_reader, CustomFormat, LogFormat, TimeContext, YearRule,
};

fn formats() -> Vec<LogFormat> {
    vec![
        LogFormat::Asterisk,
        LogFormat::FreeSwitch,
        LogFormat::Kamailio,
        LogFormat::Custom(
            CustomFormat::new(
                r"^(?P<time>\S+ \S+) auth failed user=(?P<user>\S*) from (?P<host>\S+?)(?::(?P<port>\d+))?$",
                Some("%Y-%m-%d %H:%M:%S"),
                AuthOutcome::Failure,
            )
            .unwrap(),
        ),
    ]
}

/// Every fixture line, as material to corrupt.
fn fixture_lines() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut lines = Vec::new();
    for name in ["asterisk.log", "freeswitch.log", "kamailio.log"] {
        let text = std::fs::read(dir.join(name)).unwrap();
        lines.extend(text.split(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    lines
}

/// Pieces the parsers branch on, so that random sequences reach deep into them.
const TOKENS: &[&str] = &[
    "[2026-11-26 12:00:00] ",
    "[Nov 26 12:00:00] ",
    "11-26 12:00:00.5 ",
    "2026-11-26T12:00:00+01:00 ",
    "NOTICE[123] chan_sip.c: ",
    "SECURITY[1] res_security_log.c: ",
    "WARNING[1][C-0000001d] Ext. s: ",
    ":12 in f: ",
    ": ",
    "Registration from '",
    "' failed for '",
    "' - Wrong password",
    "Request 'INVITE' from '",
    "(callid: ",
    ") - No matching endpoint found",
    " after 5 tries in 1.0 ms",
    "Call from '",
    " (UDP:",
    ") to extension '",
    "' rejected because extension not found in context",
    "Host ",
    " failed to authenticate",
    " failed MD5 authentication",
    " tried to authenticate with nonexistent user",
    "No registration for peer '",
    " (from ",
    "hacking attempt detected '",
    "SecurityEvent=\"",
    "InvalidPassword",
    "SuccessfulAuth",
    ",RemoteAddress=\"",
    "IPV4/UDP/",
    "IPV6/TLS/",
    ",AccountID=\"",
    "\"Rejecting unknown SIP connection from ",
    "sofia_reg.c:1478 ",
    "[sofia_reg.c:1478] ",
    "SIP auth failure (",
    "SIP auth challenge (",
    "REGISTER",
    ") on sofia profile '",
    "' for [",
    "] from ip ",
    "Can't find user [",
    "] from ",
    "tollgate: ",
    "auth=failure ",
    "auth=success ",
    "ip=",
    " port=",
    " ua=\"",
    "\\\"",
    "\\",
    " ts=1764158400.5",
    "192.0.2.1",
    "2001:db8::1",
    "[2001:db8::1]",
    "::ffff:192.0.2.1",
    "999.1.1.1",
    ":5060",
    ":99999",
    "sip:1001@pbx",
    "'",
    "\"",
    "]",
    "[",
    ")",
    "(",
    " ",
    ":",
    "/",
    "@",
    "\u{00e9}",
    "\u{fffd}",
];

fn token_line() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(TOKENS).prop_map(|t| t.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..4),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

fn corrupted_fixture() -> impl Strategy<Value = Vec<u8>> {
    let lines = fixture_lines();
    (
        prop::sample::select(lines),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<u8>(), 0..6),
        0..4u8,
    )
        .prop_map(|(line, i, j, noise, how)| {
            let mut line = line;
            let at = i.index(line.len() + 1);
            match how {
                // Cut short.
                0 => line.truncate(at),
                // Cut at both ends.
                1 => {
                    let from = j.index(at + 1);
                    line = line[from..at].to_vec();
                }
                // Noise inserted.
                2 => {
                    line.splice(at..at, noise);
                }
                // A byte replaced.
                _ => {
                    if let (Some(b), Some(n)) = (line.get_mut(at), noise.first()) {
                        *b = *n;
                    }
                }
            }
            line
        })
}

fn any_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        token_line(),
        corrupted_fixture(),
        ".{0,200}".prop_map(String::into_bytes),
    ]
}

fn contexts() -> Vec<TimeContext> {
    vec![
        TimeContext::utc(),
        TimeContext {
            zone: chrono_tz::Europe::Paris,
            year: YearRule::Fixed(2026),
        },
        TimeContext::live(chrono_tz::America::New_York, chrono::Utc::now()),
    ]
}

/// A reader that hands out a few bytes at a time, to hit every chunk boundary.
struct Dribble<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn check_event(e: &AuthEvent) {
    for s in [&e.user, &e.user_agent].into_iter().flatten() {
        assert!(s.len() <= 256 * 3, "field too long: {}", s.len());
    }
    assert!(e.reason.len() <= 256 * 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn single_lines_never_panic(line in any_line()) {
        for format in formats() {
            for ctx in contexts() {
                if let Some(e) = format.parse_bytes(&line, &ctx) {
                    check_event(&e);
                }
            }
            if let Ok(s) = std::str::from_utf8(&line) {
                let _ = format.parse_line(s);
            }
        }
    }

    #[test]
    fn bulk_scan_agrees_with_line_by_line(
        lines in prop::collection::vec(any_line(), 0..20),
        sizes in prop::collection::vec(1..9usize, 1..5),
        final_newline in any::<bool>(),
    ) {
        // Lines may not contain newlines of their own for this comparison.
        let lines: Vec<Vec<u8>> = lines
            .into_iter()
            .map(|l| l.into_iter().filter(|&b| b != b'\n').collect())
            .collect();
        let mut text = lines.join(&b'\n');
        if final_newline && !text.is_empty() {
            text.push(b'\n');
        }
        let ctx = TimeContext::utc();
        for format in formats() {
            let one_by_one: Vec<AuthEvent> = text
                .split(|&b| b == b'\n')
                .filter_map(|l| format.parse_bytes(l, &ctx))
                .collect();
            let mut bulk = Vec::new();
            scan_bytes_with(&format, &text, &ctx, |e| bulk.push(e));
            prop_assert_eq!(&bulk, &one_by_one);
            let mut streamed = Vec::new();
            let reader = Dribble { data: &text, sizes: sizes.clone(), turn: 0 };
            let stats = scan_reader(&format, reader, &ctx, |e| streamed.push(e)).unwrap();
            prop_assert_eq!(&streamed, &one_by_one);
            prop_assert_eq!(stats.events as usize, one_by_one.len());
            prop_assert_eq!(stats.bytes as usize, text.len());
        }
    }
}

#[test]
fn huge_lines_are_skipped_not_parsed() {
    let line = format!(
        "[2026-11-26 12:00:00] NOTICE[1] chan_sip.c: Registration from '<sip:{}@x>' failed for '192.0.2.1' - Wrong password",
        "a".repeat(70_000)
    );
    assert_eq!(LogFormat::Asterisk.parse_line(&line), None);
    let mut text = line.into_bytes();
    text.extend_from_slice(
        b"\n[2026-11-26 12:00:01] NOTICE[1] chan_sip.c: Registration from '<sip:1@x>' failed for '192.0.2.2' - Wrong password\n",
    );
    let mut events = Vec::new();
    let stats = scan_reader(&LogFormat::Asterisk, &text[..], &TimeContext::utc(), |e| {
        events.push(e)
    })
    .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].ip.to_string(), "192.0.2.2");
    assert_eq!(stats.lines, 2);
    assert_eq!(stats.long_lines, 1);
}

#[test]
fn pathological_repetition_stays_fast() {
    // Many separators in one line: parsing must stay linear in the line.
    let mut line = String::from(
        "[2026-11-26 12:00:00] NOTICE[1] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '",
    );
    while line.len() < 60_000 {
        line.push_str("' failed for '192.0.2.1' (callid: ");
    }
    line.push_str(") - No matching endpoint found");
    let start = std::time::Instant::now();
    for format in formats() {
        let _ = format.parse_line(&line);
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn custom_format_errors() {
    let err = CustomFormat::new("(", None, AuthOutcome::Failure).unwrap_err();
    assert!(err.to_string().starts_with("invalid regex \"(\""), "{err}");
    let err = CustomFormat::new(r"from (?P<ip>\S+)", None, AuthOutcome::Failure).unwrap_err();
    assert_eq!(
        err.to_string(),
        "regex \"from (?P<ip>\\\\S+)\" has no named group \"host\" (write (?P<host>...))"
    );
    let err = CustomFormat::new(r"(?P<host>\S+)", Some("%Q"), AuthOutcome::Failure).unwrap_err();
    assert_eq!(err.to_string(), "invalid time format \"%Q\"");
}

#[test]
fn custom_format_reads_groups_and_time() {
    let f = LogFormat::Custom(
        CustomFormat::new(
            r"^(?P<time>\w{3} +\d+ [\d:]+) pbx auth: (?P<outcome>ok|bad) user=(?P<user>\S+) from \[?(?P<host>[^\]\s]+)\]?:(?P<port>\d+)",
            Some("%b %e %H:%M:%S"),
            AuthOutcome::Failure,
        )
        .unwrap(),
    );
    let ctx = TimeContext {
        zone: chrono_tz::UTC,
        year: YearRule::Fixed(2026),
    };
    let e = f
        .parse_bytes(
            b"Nov  6 12:00:01 pbx auth: bad user=1001 from [2001:db8::1]:5070",
            &ctx,
        )
        .unwrap();
    assert_eq!(e.ip.to_string(), "2001:db8::1");
    assert_eq!(e.port, Some(5070));
    assert_eq!(e.user.as_deref(), Some("1001"));
    assert_eq!(e.at.unwrap().to_rfc3339(), "2026-11-06T12:00:01+00:00");
    assert_eq!(e.outcome, AuthOutcome::Failure);
    // Year-less without a year rule: no time rather than a guess.
    let e = f
        .parse_line("Nov  6 12:00:01 pbx auth: bad user=1001 from 192.0.2.1:5070")
        .unwrap();
    assert_eq!(e.at, None);

    let rfc = LogFormat::Custom(
        CustomFormat::new(
            r"^(?P<time>\S+) login ok (?P<host>\S+)",
            None,
            AuthOutcome::Success,
        )
        .unwrap(),
    );
    let e = rfc
        .parse_line("2026-11-26T12:00:00.5+01:00 login ok 192.0.2.7")
        .unwrap();
    assert_eq!(e.outcome, AuthOutcome::Success);
    assert_eq!(e.at.unwrap().to_rfc3339(), "2026-11-26T11:00:00.500+00:00");
    assert_eq!(
        rfc.parse_line("2026-11-26T12:00:00 login ok not-an-ip"),
        None
    );

    let spec: tollgate_ingest::CustomFormatSpec =
        serde_json::from_str(r#"{"regex": "from (?P<host>\\S+)", "outcome": "success"}"#).unwrap();
    let c = CustomFormat::from_spec(&spec).unwrap();
    assert_eq!(c.outcome(), AuthOutcome::Success);
    assert!(serde_json::from_str::<tollgate_ingest::CustomFormatSpec>(
        r#"{"regex": "x", "regexp": "y"}"#
    )
    .is_err());
}

//! End to end, with the real programs: phones call through a real Kamailio running the
//! documented configuration `examples/kamailio/tollgate-calls.cfg`, which asks tollgate
//! before every call, caps each call at tollgate's grant (Kamailio sends the BYEs),
//! reports answers, ends and registrations, and counts requests per address for tollgate's
//! flood detection. The steps:
//!
//! 1. registered phones call: a national call connects and is cut at tollgate's
//!    `max_duration_s`; a call to a high-risk satellite range and a call outside business
//!    hours are refused with 403;
//! 2. fifty concurrent calls from one extension with a small daily limit: the calls beyond
//!    the credit are refused and the settled spend never exceeds the limit;
//! 3. sipvicious (`svwar`, then `svcrack` with a word list) from an attacker: no extension
//!    found, the attacker banned in nftables after `maxretry` failures, no password found;
//!    then an OPTIONS flood from a second address, banned by the flood detection;
//! 4. an extension suspended mid-call: tollgate ends the call through Kamailio's JSON-RPC
//!    (the kill switch) and both ends get the BYE within a second;
//! 5. tollgate stopped: the next call is refused with 503 (the configuration's default,
//!    fail-closed).
//!
//! The test builds its own hosts out of network namespaces and never touches the machine's
//! network or firewall (see `common/lab.rs`):
//!
//! ```text
//!   phones   10.201.1.2          ──veth── 10.201.1.1 ┐
//!   callee   10.201.2.2          ──veth── 10.201.2.1 ├ server: Kamailio (UDP 5060),
//!   attacker 10.201.3.2, .3.3    ──veth── 10.201.3.1 ┘   tollgate (127.0.0.1:8480), nftables
//! ```
//!
//! Kamailio runs a small wrapper that `#!define`s the addresses, the token and the
//! subscriber table (db_text) and then `include_file`s the example itself, so the example
//! is what is tested. The phones are SIPp (`tests/e2e/register.xml`, `call_uac.xml`), the
//! callee ("the PSTN gateway") a SIPp UAS that echoes the Record-Route
//! (`callee_uas.xml`), the flood `options.xml`.
//!
//! It needs root and Debian's iproute2, nftables, kamailio, kamailio-utils-modules
//! (http_client), kamailio-extra-modules (jansson), sip-tester, sipvicious and curl
//! (`./scripts/test` installs them); it fails with the package to install when one is
//! missing. Every external program runs under `timeout`, every wait has a deadline, and the
//! namespaces (with every process left in them) are removed in `Drop`, also on failure.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::lab::{ms, path, read_trace, require_tools, wait_for, Host, Lab, Link, TraceMessage};
use serde_json::Value;

const SERVER_FOR_PHONES: &str = "10.201.1.1";
const PHONE: &str = "10.201.1.2";
const SERVER_FOR_CALLEE: &str = "10.201.2.1";
const CALLEE: &str = "10.201.2.2";
const SERVER_FOR_ATTACKER: &str = "10.201.3.1";
const ATTACKER: &str = "10.201.3.2";
/// A second address in the attacker's namespace, for the flood.
const FLOODER: &str = "10.201.3.3";

/// tollgate's API in the server namespace: fixed, because Kamailio's configuration names it.
const TOLLGATE_LISTEN: &str = "127.0.0.1:8480";

/// The jail: 5 failures ban.
const MAXRETRY: usize = 5;
/// 1001's daily limit, 0.04 at 0.60 per minute billed per second: a 4 s grant.
const GRANT_S: f64 = 4.0;
/// 1002: 0.50 a day, at most 5 s per call (0.05 reserved each): 10 calls fit.
const CONCURRENT: usize = 50;
const CAP_S: f64 = 5.0;
const DAILY_1002_MICROS: i64 = 500_000;
const FITTING_CALLS: usize = 10;

const NATIONAL: &str = "0142685300";
const SATELLITE: &str = "+88216123456";

/// The passwords of the subscribers: none is in the attacker's word list.
fn password(extension: &str) -> String {
    format!("Kx9.{extension}.vQ7m")
}

/// The test policy: tokens, a plan billed per second, a schedule that is never open, two
/// accounts (one on that schedule), three extensions, the guard with one jail (no
/// User-Agent rule: the jail is what step 3 checks; e2e_guard checks the scanner rule) and a
/// flood threshold, bans in nftables. The phones' and the callee's networks are
/// allowlisted, as an operator would list offices and carriers.
fn policy() -> String {
    format!(
        r#"
[[tokens]]
name = "pbx"
scopes = ["calls"]
file = "pbx.token"
[[tokens]]
name = "reader"
scopes = ["read"]
file = "reader.token"
[[tokens]]
name = "admin"
scopes = ["admin"]
file = "admin.token"

[credit]
answer_timeout = "30s"
expiry_grace = "5s"

[plans.std]
currency = "EUR"
rates = [
  {{ prefix = "+33", description = "France", price_per_minute = "0.60", increments = "1/1" }},
]

# Never open: every day closed.
[schedules.closed]
time_zone = "Europe/Paris"
weekdays = []
saturday = []
sunday = []
outside_hours_classes = ["internal"]

[accounts.office]
country = "FR"
time_zone = "Europe/Paris"
plan = "std"
limits = {{ daily = "100.00", monthly = "1000.00" }}

[accounts.night]
country = "FR"
time_zone = "Europe/Paris"
plan = "std"
schedule = "closed"
limits = {{ daily = "100.00", monthly = "1000.00" }}

[extensions.1001]
account = "office"
allowed_cidrs = ["10.201.1.0/24"]
limits = {{ daily = "0.04", monthly = "10.00" }}

[extensions.1002]
account = "office"
allowed_cidrs = ["10.201.1.0/24"]
limits = {{ daily = "0.50", monthly = "10.00" }}
max_call_duration = "5s"

[extensions.1003]
account = "night"
allowed_cidrs = ["10.201.1.0/24"]
limits = {{ daily = "1.00", monthly = "10.00" }}

# Step 4: a long call, ended by the kill switch when the extension is suspended.
[extensions.1004]
account = "office"
allowed_cidrs = ["10.201.1.0/24"]
limits = {{ daily = "5.00", monthly = "10.00" }}
max_call_duration = "60s"

[hangup]
timeout_s = 2
kamailio = {{ url = "http://127.0.0.1:5071/RPC" }}

[guard]
allowlist = ["10.201.1.0/24", "10.201.2.0/24"]
scanner_user_agents_builtin = false
jails = {{ sip-auth = {{ maxretry = {MAXRETRY}, findtime = "10m", bantime = "1h" }} }}
pike = {{ window = "2s", density = 400, subnet_density = 5000, bantime = "10m" }}

[firewall]
backend = "nftables"
ports = [5060]
"#
    )
}

/// The subscriber table for auth_db (db_text: a `version` table and `subscriber`).
fn write_subscribers(dir: &Path) -> PathBuf {
    let db = dir.join("dbtext");
    fs::create_dir_all(&db).unwrap();
    fs::write(
        db.join("version"),
        "id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n",
    )
    .unwrap();
    let mut subscribers =
        String::from("id(int,auto) username(string) domain(string) password(string) \n");
    for (i, ext) in ["1001", "1002", "1003", "1004"].iter().enumerate() {
        subscribers.push_str(&format!(
            "{}:{ext}:{SERVER_FOR_PHONES}:{}\n",
            i + 1,
            password(ext)
        ));
    }
    fs::write(db.join("subscriber"), subscribers).unwrap();
    db
}

/// The wrapper Kamailio runs: the example, with this lab's settings.
fn write_kamailio_cfg(dir: &Path, token: &str, db: &Path) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/kamailio/tollgate-calls.cfg")
        .canonicalize()
        .unwrap();
    let cfg = format!(
        r#"#!KAMAILIO
# tollgate's end-to-end test (e2e_calls.rs): the example with this lab's settings.
#!define TOLLGATE_URL "http://{TOLLGATE_LISTEN}"
#!define TOLLGATE_TOKEN "{token}"
#!define DBURL "text://{db}"
#!define PSTN_GATEWAY "sip:{CALLEE}:5060"
#!define PSTN_GATEWAY_IP "{CALLEE}"
#!define KAMAILIO_CHILDREN 4
#!define TOLLGATE_HANGUP
listen=tcp:127.0.0.1:5071
listen=udp:{SERVER_FOR_PHONES}:5060
listen=udp:{SERVER_FOR_CALLEE}:5060
listen=udp:{SERVER_FOR_ATTACKER}:5060
include_file "{example}"
"#,
        db = path(db),
        example = path(&example),
    );
    let file = dir.join("kamailio.cfg");
    fs::write(&file, cfg).unwrap();
    file
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e")
        .join(name)
}

/// Money as tollgate writes it ("0.45") in micros.
fn micros(amount: &Value) -> i64 {
    let text = amount
        .as_str()
        .unwrap_or_else(|| panic!("not an amount: {amount}"));
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut fraction = fraction.to_string();
    fraction.truncate(6);
    while fraction.len() < 6 {
        fraction.push('0');
    }
    units.parse::<i64>().unwrap() * 1_000_000 + fraction.parse::<i64>().unwrap()
}

/// One call as the caller's SIPp saw it.
#[derive(Debug, Default)]
struct CallOutcome {
    extension: String,
    number: String,
    /// The final answer to the INVITE with credentials, and its reason phrase.
    status: Option<u16>,
    reason: String,
    answered: Option<At>,
    /// A BYE the caller received (Kamailio's, at the end of the grant).
    bye_received: Option<At>,
}

/// The calls of a caller's trace, by Call-ID.
fn call_outcomes(trace: &[TraceMessage]) -> BTreeMap<String, CallOutcome> {
    let mut calls: BTreeMap<String, CallOutcome> = BTreeMap::new();
    for m in trace {
        let Some(call_id) = m.header("Call-ID") else {
            continue;
        };
        let call = calls.entry(call_id.to_string()).or_default();
        if m.sent && m.first_line().starts_with("INVITE ") {
            call.number = m
                .first_line()
                .split_whitespace()
                .nth(1)
                .and_then(|uri| uri.strip_prefix("sip:"))
                .and_then(|uri| uri.split('@').next())
                .unwrap_or("")
                .to_string();
            call.extension = m
                .header("From")
                .and_then(|f| f.split("sip:").nth(1))
                .and_then(|f| f.split('@').next())
                .unwrap_or("")
                .to_string();
        }
        if !m.sent && m.method() == Some("INVITE") {
            if let Some(status) = m.status() {
                let second = m.header("CSeq").is_some_and(|c| c.starts_with("2 "));
                if status >= 200 && second {
                    call.status = Some(status);
                    call.reason = m
                        .first_line()
                        .splitn(3, ' ')
                        .nth(2)
                        .unwrap_or("")
                        .to_string();
                    if status == 200 {
                        call.answered.get_or_insert(m.at);
                    }
                }
            }
        }
        if !m.sent && m.first_line().starts_with("BYE ") {
            call.bye_received.get_or_insert(m.at);
        }
    }
    calls
}

/// A moment in a SIPp trace.
type At = chrono::DateTime<chrono::Utc>;

/// When the callee answered a call (its 200 to the INVITE) and received the BYE.
#[derive(Clone, Copy, Debug, Default)]
struct CalleeSide {
    answered: Option<At>,
    bye: Option<At>,
}

/// The callee's side of each call, by Call-ID.
fn callee_times(trace: &[TraceMessage]) -> BTreeMap<String, CalleeSide> {
    let mut calls: BTreeMap<String, CalleeSide> = BTreeMap::new();
    for m in trace {
        let Some(call_id) = m.header("Call-ID") else {
            continue;
        };
        let entry = calls.entry(call_id.to_string()).or_default();
        if m.sent && m.status() == Some(200) && m.method() == Some("INVITE") {
            entry.answered.get_or_insert(m.at);
        }
        if !m.sent && m.first_line().starts_with("BYE ") {
            entry.bye.get_or_insert(m.at);
        }
    }
    calls
}

fn seconds(from: At, to: At) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6
}

impl Lab {
    /// Runs SIPp on the phones' host to the end: `calls` calls of `extension` to `number`,
    /// at `rate` per second, all in parallel at most; returns its exit code and trace.
    fn sipp_calls(
        &self,
        phone: &Host,
        extension: &str,
        number: &str,
        calls: usize,
        rate: usize,
        tag: &str,
    ) -> (Option<i32>, Vec<TraceMessage>) {
        let csv = self.dir.join(format!("{tag}.csv"));
        fs::write(
            &csv,
            format!(
                "SEQUENTIAL\n{extension};{number};[authentication username={extension} password={}]\n",
                password(extension)
            ),
        )
        .unwrap();
        self.sipp_run(
            phone,
            &scenario("call_uac.xml"),
            &csv,
            calls,
            rate,
            30_000,
            tag,
        )
    }

    /// One SIPp client run in the foreground (under `timeout`, `-nostdin`): `calls` calls
    /// at `rate` per second, all at once at most, each answer awaited at most
    /// `recv_timeout_ms`; its exit code and message trace.
    #[allow(clippy::too_many_arguments)]
    fn sipp_run(
        &self,
        from: &Host,
        scenario: &Path,
        csv: &Path,
        calls: usize,
        rate: usize,
        recv_timeout_ms: u32,
        tag: &str,
    ) -> (Option<i32>, Vec<TraceMessage>) {
        let trace = self.dir.join(format!("{tag}.messages.log"));
        let _ = fs::remove_file(&trace);
        let server = format!("{}:5060", from.server_ip);
        let (calls, rate) = (calls.to_string(), rate.to_string());
        let recv_timeout = recv_timeout_ms.to_string();
        let argv = [
            path(&self.tools.sipp),
            &server,
            "-sf",
            path(scenario),
            "-inf",
            path(csv),
            "-i",
            from.ip,
            "-p",
            "0",
            "-m",
            &calls,
            "-l",
            &calls,
            "-r",
            &rate,
            "-recv_timeout",
            &recv_timeout,
            "-timeout",
            "45s",
            // Through Kamailio's parallel workers a 180 may come after the 200.
            "-default_behaviors",
            "all,-abortunexp",
            "-nostdin",
            "-trace_msg",
            "-message_file",
            path(&trace),
        ];
        let status = self
            .in_ns(&from.ns, Duration::from_secs(50), &argv)
            // The trace's times are wall-clock times without a zone: make them UTC.
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        (status.code(), read_trace(&trace))
    }

    /// Registers `extensions` from the phones' host: the number of 200s.
    fn register(&self, phone: &Host, extensions: &[&str], tag: &str) -> usize {
        let csv = self.dir.join(format!("{tag}.csv"));
        let mut lines = String::from("SEQUENTIAL\n");
        for ext in extensions {
            lines.push_str(&format!(
                "{ext};[authentication username={ext} password={}]\n",
                password(ext)
            ));
        }
        fs::write(&csv, lines).unwrap();
        let (_, trace) = self.sipp_run(
            phone,
            &scenario("register.xml"),
            &csv,
            extensions.len(),
            10,
            1_000,
            tag,
        );
        trace
            .iter()
            .filter(|m| !m.sent && m.status() == Some(200))
            .count()
    }

    /// The extension's own level in its credit report.
    fn credit(&self, api: &str, token: &str, extension: &str) -> Value {
        let (status, body) = self.api(
            api,
            "GET",
            &format!("/v1/extensions/{extension}/credit"),
            token,
            None,
        );
        assert_eq!(status, 200, "{body}");
        body["levels"][0].clone()
    }

    fn bans(&self, api: &str, token: &str) -> Vec<Value> {
        let (status, body) = self.api(api, "GET", "/v1/bans", token, None);
        assert_eq!(status, 200, "{body}");
        body["bans"].as_array().cloned().unwrap_or_default()
    }

    /// Kamailio's dialogs still in memory (`kamcmd stats.get_statistics`).
    fn active_dialogs(&self, rundir: &Path) -> u64 {
        let socket = format!("unix:{}", path(&rundir.join("kamailio_ctl")));
        let (code, out, err) = self.run_in(
            &self.server,
            Duration::from_secs(5),
            &[
                path(&self.tools.kamcmd),
                "-s",
                &socket,
                "stats.get_statistics",
                "active_dialogs",
            ],
        );
        assert_eq!(code, Some(0), "kamcmd: {err}");
        out.split('=')
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("kamcmd answered {out:?}"))
    }
}

fn ban_of<'a>(bans: &'a [Value], ip: &str) -> Option<&'a Value> {
    let target = format!("{ip}/32");
    bans.iter().find(|b| b["target"] == target.as_str())
}

/// A counter of tollgate's /metrics (0 when absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[test]
fn calls_through_kamailio_are_authorized_capped_and_guarded_by_tollgate() {
    let started = Instant::now();
    let tools = require_tools(
        "e2e_calls",
        &[
            ("http_client.so", "kamailio-utils-modules"),
            ("jansson.so", "kamailio-extra-modules"),
            ("dialog.so", "kamailio"),
            ("htable.so", "kamailio"),
            ("rtimer.so", "kamailio"),
            ("db_text.so", "kamailio"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    // Declared after `dir`, so dropped before it: the processes stop before their files go.
    let mut lab = Lab::new(
        tools,
        dir.path(),
        "e2c",
        &[
            Link {
                name: "ph",
                client_ip: PHONE,
                server_ip: SERVER_FOR_PHONES,
                prefix: 24,
            },
            Link {
                name: "gw",
                client_ip: CALLEE,
                server_ip: SERVER_FOR_CALLEE,
                prefix: 24,
            },
            Link {
                name: "att",
                client_ip: ATTACKER,
                server_ip: SERVER_FOR_ATTACKER,
                prefix: 24,
            },
        ],
    );
    lab.logs = vec!["kamailio.log", "tollgate.log"];
    let (phone, callee, attacker) = (lab.host("ph"), lab.host("gw"), lab.host("att"));
    lab.ip(&[
        "-n",
        &attacker.ns,
        "addr",
        "add",
        &format!("{FLOODER}/24"),
        "dev",
        "eth0",
    ]);
    let flooder = Host {
        ip: FLOODER,
        ..attacker.clone()
    };

    // tollgate first: Kamailio's configuration needs the token it creates.
    fs::write(dir.path().join("policy.toml"), policy()).unwrap();
    let api = lab.start_tollgate("policy.toml", TOLLGATE_LISTEN);
    lab.wait_for_tollgate_table();
    let token = |name: &str| {
        fs::read_to_string(dir.path().join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let (pbx, reader, admin) = (
        token("pbx.token"),
        token("reader.token"),
        token("admin.token"),
    );

    let db = write_subscribers(dir.path());
    let config = write_kamailio_cfg(dir.path(), &pbx, &db);
    let rundir = dir.path().join("kamailio-run");
    lab.start_kamailio(&config, &rundir, 256, "kamailio.log");

    // The callee: a SIPp UAS for the whole test, its trace read after each step.
    let callee_trace = dir.path().join("callee.messages.log");
    let uas = lab
        .in_ns(
            &callee.ns,
            Duration::from_secs(300),
            &[
                path(&lab.tools.sipp),
                "-sf",
                path(&scenario("callee_uas.xml")),
                "-i",
                CALLEE,
                "-p",
                "5060",
                "-default_behaviors",
                "all,-abortunexp",
                "-nostdin",
                "-trace_msg",
                "-message_file",
                path(&callee_trace),
            ],
        )
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.push(uas);

    // Kamailio is up when it answers a registration.
    wait_for(
        "Kamailio answering a registration",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || (lab.register(&phone, &["1001"], "probe") == 1).then_some(()),
    );
    let setup = started.elapsed();

    // 1. Registered phones call.
    let registered = lab.register(&phone, &["1001", "1002", "1003"], "register");
    assert_eq!(registered, 3, "1001, 1002 and 1003 register (200)");
    let step1 = Instant::now();
    let (code, satellite_trace) = lab.sipp_calls(&phone, "1001", SATELLITE, 1, 10, "satellite");
    assert_eq!(code, Some(0), "SIPp's satellite call");
    let satellite = call_outcomes(&satellite_trace)
        .into_values()
        .next()
        .unwrap();
    assert_eq!(
        (satellite.status, satellite.reason.as_str()),
        (Some(403), "Forbidden (class_not_allowed)"),
        "{satellite:?}"
    );
    let (code, night_trace) = lab.sipp_calls(&phone, "1003", NATIONAL, 1, 10, "night");
    assert_eq!(code, Some(0), "SIPp's night call");
    let night = call_outcomes(&night_trace).into_values().next().unwrap();
    assert_eq!(
        (night.status, night.reason.as_str()),
        (Some(403), "Forbidden (outside_business_hours)"),
        "{night:?}"
    );
    let (code, national_trace) = lab.sipp_calls(&phone, "1001", NATIONAL, 1, 10, "national");
    assert_eq!(code, Some(0), "SIPp's national call");
    let (national_id, national) = call_outcomes(&national_trace).into_iter().next().unwrap();
    assert_eq!(national.status, Some(200), "{national:?}");
    let caller_bye = national
        .bye_received
        .unwrap_or_else(|| panic!("the caller got no BYE from Kamailio: {national:?}"));
    let (callee_answered, callee_bye) = wait_for(
        "the callee's BYE in its trace",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || match callee_times(&read_trace(&callee_trace)).get(&national_id) {
            Some(CalleeSide {
                answered: Some(a),
                bye: Some(b),
            }) => Some((*a, *b)),
            _ => None,
        },
    );
    let held = seconds(callee_answered, callee_bye);
    // The dialog lives the grant less one second, and Kamailio's dialog timer ticks once a
    // second: the BYE comes in the last two seconds of the grant, never after it.
    assert!(
        held > GRANT_S - 2.2 && held <= GRANT_S + 0.1,
        "the callee got Kamailio's BYE {held:.2} s after answering, for a grant of {GRANT_S} s"
    );
    let caller_held = seconds(national.answered.unwrap(), caller_bye);
    let record = wait_for(
        "tollgate settling the national call",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            let (_, calls) = lab.api(&api, "GET", "/v1/extensions/1001/calls", &reader, None);
            calls["calls"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["call_id"] == national_id.as_str())
                .cloned()
        },
    );
    assert_eq!(record["overrun_s"], 0, "{record}");
    assert!(
        record["duration_s"].as_u64().unwrap() <= GRANT_S as u64,
        "{record}"
    );
    let credit_1001 = lab.credit(&api, &reader, "1001");
    assert!(
        micros(&credit_1001["spent_today"]) <= 40_000,
        "{credit_1001}"
    );
    assert_eq!(micros(&credit_1001["reserved"]), 0, "{credit_1001}");
    let step1_time = step1.elapsed();

    // 2. Fifty concurrent calls from 1002: 10 fit in its daily limit.
    let step2 = Instant::now();
    let (code, burst_trace) = lab.sipp_calls(&phone, "1002", NATIONAL, CONCURRENT, 100, "burst");
    assert_eq!(code, Some(0), "SIPp's fifty calls");
    let burst = call_outcomes(&burst_trace);
    assert_eq!(burst.len(), CONCURRENT, "one outcome per call");
    let answered = burst.values().filter(|c| c.status == Some(200)).count();
    let refused: Vec<&CallOutcome> = burst.values().filter(|c| c.status == Some(403)).collect();
    let others: Vec<&CallOutcome> = burst
        .values()
        .filter(|c| !matches!(c.status, Some(200) | Some(403)))
        .collect();
    assert!(
        others.is_empty(),
        "calls neither answered nor refused: {others:?}"
    );
    assert_eq!(
        answered, FITTING_CALLS,
        "the calls that fit in 0.50 at 0.05 each"
    );
    assert!(
        refused
            .iter()
            .all(|c| c.reason == "Forbidden (insufficient_credit)"),
        "{refused:?}"
    );
    let cut = burst
        .values()
        .filter(|c| c.status == Some(200) && c.bye_received.is_some())
        .count();
    let longest = burst
        .values()
        .filter_map(|c| Some(seconds(c.answered?, c.bye_received?)))
        .fold(0.0, f64::max);
    assert_eq!(
        cut, answered,
        "Kamailio cut every answered call at its grant"
    );
    assert!(
        longest <= CAP_S + 0.1,
        "a call lasted {longest:.2} s for a cap of {CAP_S} s"
    );
    let credit_1002 = wait_for(
        "tollgate settling the fifty calls",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let credit = lab.credit(&api, &reader, "1002");
            (micros(&credit["reserved"]) == 0 && credit["active_calls"] == 0).then_some(credit)
        },
    );
    let spent_1002 = micros(&credit_1002["spent_today"]);
    assert!(
        spent_1002 <= DAILY_1002_MICROS,
        "1002 spent {} of its 0.50 daily limit: {credit_1002}",
        credit_1002["spent_today"]
    );
    let callee_burst = callee_times(&read_trace(&callee_trace))
        .keys()
        .filter(|id| burst.contains_key(*id))
        .count();
    assert_eq!(
        callee_burst, answered,
        "the callee saw only the allowed calls"
    );
    let step2_time = step2.elapsed();

    // 3. sipvicious from the attacker: svwar finds nothing (every user gets the same
    //    challenge), svcrack is banned after MAXRETRY failures and finds no password.
    let step3 = Instant::now();
    let (_, svwar_out, svwar_err) = lab.run_in(
        &attacker.ns,
        Duration::from_secs(30),
        &[
            path(&lab.tools.svwar),
            "--force",
            "-e1000-1100",
            SERVER_FOR_ATTACKER,
        ],
    );
    let svwar_text = format!("{svwar_out}{svwar_err}");
    assert!(
        svwar_text.contains("found nothing"),
        "svwar found extensions: {svwar_text}"
    );
    assert!(
        ban_of(&lab.bans(&api, &admin), ATTACKER).is_none(),
        "svwar's unauthenticated REGISTERs are no failures"
    );
    let words = [
        "123456", "password", "letmein", "1001", "secret", "qwerty", "admin", "1234", "abc123",
        "passw0rd", "welcome", "changeme",
    ];
    fs::write(dir.path().join("words.txt"), words.join("\n") + "\n").unwrap();
    let drops_before = lab.drop_counter();
    let crack_started = Instant::now();
    let (_, svcrack_out, svcrack_err) = lab.run_in(
        &attacker.ns,
        // svcrack gives up 10 s after the last answer.
        Duration::from_secs(30),
        &[
            path(&lab.tools.svcrack),
            "-u",
            "1001",
            "-d",
            "words.txt",
            SERVER_FOR_ATTACKER,
        ],
    );
    let crack_time = crack_started.elapsed();
    let svcrack_text = format!("{svcrack_out}{svcrack_err}");
    assert!(
        svcrack_text.contains("found nothing") && !svcrack_text.contains(&password("1001")),
        "svcrack: {svcrack_text}"
    );
    let bans = lab.bans(&api, &admin);
    let ban = ban_of(&bans, ATTACKER)
        .unwrap_or_else(|| panic!("the attacker is not banned: {bans:?}"))
        .clone();
    assert_eq!(ban["rule"], "jail sip-auth", "{ban}");
    let events = ban["events"].as_array().unwrap().len();
    assert_eq!(events, MAXRETRY, "{ban}");
    assert!(
        lab.banned_v4().contains(&ATTACKER.to_string()),
        "the attacker in nft's banned_v4"
    );
    let (_, metrics) = lab.api_text(&api, "GET", "/metrics", &reader, None);
    let failures = metric(&metrics, "tollgate_auth_events_total{outcome=\"failure\"");
    assert_eq!(
        failures, MAXRETRY as u64,
        "only MAXRETRY guesses reached Kamailio: the rest were dropped"
    );
    let dropped = lab.drop_counter() - drops_before;
    assert!(
        dropped >= 1,
        "svcrack's guesses after the ban hit the drop rule"
    );

    //    A flood of OPTIONS from the flooder's address: Kamailio's per-address counts reach
    //    tollgate every second, which bans the flooder.
    let flood_csv = dir.path().join("flood.csv");
    fs::write(&flood_csv, "SEQUENTIAL\nflood\n").unwrap();
    let flood_started = Instant::now();
    let (_, flood_trace) = lab.sipp_run(
        &flooder,
        &scenario("options.xml"),
        &flood_csv,
        2000,
        500,
        500,
        "flood",
    );
    let flood_time = flood_started.elapsed();
    let flood_sent = flood_trace.iter().filter(|m| m.sent).count();
    let flood_answered = flood_trace.iter().filter(|m| !m.sent).count();
    let bans = lab.bans(&api, &admin);
    let flood_ban = ban_of(&bans, FLOODER)
        .unwrap_or_else(|| panic!("the flooder is not banned: {bans:?}"))
        .clone();
    assert_eq!(flood_ban["rule"], "pike", "{flood_ban}");
    assert!(lab.banned_v4().contains(&FLOODER.to_string()));
    assert!(
        flood_answered < flood_sent,
        "the flood went on being answered ({flood_answered} of {flood_sent})"
    );
    assert!(
        ban_of(&bans, PHONE).is_none(),
        "the phones (allowlisted) are not banned"
    );
    let step3_time = step3.elapsed();

    // Kamailio logged no error so far (tollgate was there for every call).
    let kamailio_errors: Vec<String> = fs::read_to_string(dir.path().join("kamailio.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" ERROR: ") || l.contains(" CRITICAL: "))
        .map(String::from)
        .collect();
    assert!(
        kamailio_errors.is_empty(),
        "Kamailio errors: {kamailio_errors:#?}"
    );

    // 4. The kill switch: 1004's call is up (a 60 s grant); 1004 is suspended through the
    //    API; tollgate ends the call through Kamailio's JSON-RPC (dlg.end_dlg with the
    //    dialog's h_entry:h_id it got at authorize) and both ends get Kamailio's BYE.
    let step4 = Instant::now();
    let (suspended_at, (code, kill_trace)) = std::thread::scope(|scope| {
        let caller = scope.spawn(|| lab.sipp_calls(&phone, "1004", NATIONAL, 1, 1, "kill"));
        wait_for(
            "1004's call answered",
            Duration::from_secs(15),
            Duration::from_millis(100),
            || {
                (lab.active_dialogs(&rundir) == 1
                    && lab.credit(&api, &reader, "1004")["active_calls"] == 1)
                    .then_some(())
            },
        );
        // The call is confirmed: give the ACK a moment to pass Kamailio.
        std::thread::sleep(Duration::from_millis(500));
        let at = chrono::Utc::now();
        let (status, body) = lab.api(&api, "POST", "/v1/extensions/1004/suspend", &admin, None);
        assert_eq!(status, 200, "{body}");
        (at, caller.join().unwrap())
    });
    assert_eq!(code, Some(0), "SIPp's call ended by the kill switch");
    let bye_to_caller = kill_trace
        .iter()
        .find(|m| !m.sent && m.method() == Some("BYE"))
        .expect("the caller got a BYE");
    let kill_delay = (bye_to_caller.at - suspended_at).num_milliseconds() as f64 / 1000.0;
    assert!(
        kill_delay < 1.0,
        "the BYE came {kill_delay:.2} s after the suspension (at most 1 s)"
    );
    let reason = bye_to_caller.header("Reason").unwrap_or("").to_string();
    let (_, metrics_text) = lab.api_text(&api, "GET", "/metrics", &reader, None);
    assert!(
        metrics_text.contains("tollgate_calls_ended_total{result=\"ended\"} 1"),
        "the kill switch's count: {}",
        metrics_text
            .lines()
            .filter(|l| l.contains("calls_ended"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // SIPp writes its trace as it goes: give the callee's a moment.
    wait_for(
        "the callee's BYE after the suspension",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            read_trace(&callee_trace)
                .into_iter()
                .any(|m| !m.sent && m.method() == Some("BYE") && m.at >= suspended_at)
                .then_some(())
        },
    );
    let step4_time = step4.elapsed();

    // Nothing left behind by the calls: no dialog in Kamailio, nothing reserved.
    let dialogs = lab.active_dialogs(&rundir);
    assert_eq!(dialogs, 0, "dialogs left in Kamailio");

    // 5. tollgate stuck (SIGSTOP: connections are accepted, nothing answers): the call is
    //    refused with 503 after the configuration's 1 s timeout (fail-closed). Then tollgate
    //    stopped: refused with 503 at once.
    lab.signal_in(&lab.server, "tollgate", "-STOP");
    let stuck = Instant::now();
    let (code, stuck_trace) = lab.sipp_calls(&phone, "1001", NATIONAL, 1, 10, "stuck");
    let stuck_time = stuck.elapsed();
    lab.signal_in(&lab.server, "tollgate", "-CONT");
    assert_eq!(code, Some(0), "SIPp's call while tollgate is stuck");
    let stuck_call = call_outcomes(&stuck_trace).into_values().next().unwrap();
    assert_eq!(
        (stuck_call.status, stuck_call.reason.as_str()),
        (Some(503), "Call Control Unavailable"),
        "{stuck_call:?}"
    );
    assert!(
        stuck_time >= Duration::from_secs(1) && stuck_time < Duration::from_secs(3),
        "refused after {stuck_time:?} for a 1 s timeout"
    );
    lab.stop_tollgate();
    let down = Instant::now();
    let (code, down_trace) = lab.sipp_calls(&phone, "1001", NATIONAL, 1, 10, "down");
    let down_time = down.elapsed();
    assert_eq!(code, Some(0), "SIPp's call while tollgate is down");
    let down_call = call_outcomes(&down_trace).into_values().next().unwrap();
    assert_eq!(
        (down_call.status, down_call.reason.as_str()),
        (Some(503), "Call Control Unavailable"),
        "{down_call:?}"
    );
    assert_eq!(lab.active_dialogs(&rundir), 0, "dialogs left in Kamailio");

    println!("e2e calls (Kamailio with examples/kamailio/tollgate-calls.cfg, SIPp, sipvicious, tollgate, nftables in network namespaces):");
    println!(
        "  setup (namespaces, tollgate, Kamailio, first registration): {}",
        ms(setup)
    );
    println!(
        "  1. {registered} phones registered; 1001 -> {SATELLITE}: {} {:?}; 1003 (closed schedule) -> {NATIONAL}: {} {:?}; \
         1001 -> {NATIONAL}: 200, Kamailio's BYE {held:.2} s after the callee's 200 (caller: {caller_held:.2} s) for a grant of {GRANT_S} s; \
         tollgate billed {} s, charged {}, overrun {} ({})",
        satellite.status.unwrap(),
        satellite.reason,
        night.status.unwrap(),
        night.reason,
        record["billed_s"],
        record["charged"].as_str().unwrap_or(""),
        record["overrun_s"],
        ms(step1_time)
    );
    println!(
        "  2. {CONCURRENT} calls from 1002 at once (0.50 daily, {CAP_S} s cap at 0.01/s): {answered} answered (all cut by Kamailio, longest {longest:.2} s), \
         {} refused 403 insufficient_credit; settled spend {} of 0.50, reserved {} ({})",
        refused.len(),
        credit_1002["spent_today"].as_str().unwrap_or(""),
        credit_1002["reserved"].as_str().unwrap_or(""),
        ms(step2_time)
    );
    println!(
        "  3. svwar 1000-1100: found nothing; svcrack ({} words, password not among them): found nothing in {:.1} s, \
         banned by {} after {events} failures ({failures} reached tollgate, {dropped} packets dropped after the ban); \
         OPTIONS flood from {FLOODER}: banned by {} ({}), {flood_answered} of {flood_sent} answered, {:.1} s ({})",
        words.len(),
        crack_time.as_secs_f64(),
        ban["rule"].as_str().unwrap_or(""),
        flood_ban["rule"].as_str().unwrap_or(""),
        flood_ban["reason"].as_str().unwrap_or(""),
        flood_time.as_secs_f64(),
        ms(step3_time)
    );
    println!(
        "  4. 1004 suspended mid-call: both ends got Kamailio's BYE, the caller's {kill_delay:.2} s after the suspension (Reason: {reason}); \
         tollgate_calls_ended_total{{result=\"ended\"}} 1 ({})",
        ms(step4_time)
    );
    println!(
        "  5. tollgate stuck (SIGSTOP): 1001's call refused {} {:?} in {} (1 s timeout); tollgate stopped: refused {} {:?} in {} (fail-closed); \
         Kamailio holds {dialogs} dialogs",
        stuck_call.status.unwrap(),
        stuck_call.reason,
        ms(stuck_time),
        down_call.status.unwrap(),
        down_call.reason,
        ms(down_time)
    );
    println!("  total {}", ms(started.elapsed()));
}

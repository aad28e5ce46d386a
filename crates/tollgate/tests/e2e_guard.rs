//! End to end, with the real programs: SIPp guesses passwords against a real Kamailio, the
//! failures reach tollgate through Kamailio's log, tollgate bans the guesser in nftables,
//! the kernel drops its packets, and the ban ends on time. An allowlisted office that fails
//! as often is never banned, and a password cracker (sipvicious' svcrack) is banned as a
//! known scanner at its first failure.
//!
//! The test builds its own hosts out of network namespaces and never touches the machine's
//! network or firewall:
//!
//! ```text
//!   attacker 10.200.1.2 ──veth── 10.200.1.1 ┐
//!   office   10.200.2.2 ──veth── 10.200.2.1 ├ server: Kamailio (UDP 5060), tollgate, nftables
//!   scanner  10.200.3.2 ──veth── 10.200.3.1 ┘
//! ```
//!
//! Kamailio (`tests/e2e/kamailio.cfg`) is a registrar with digest authentication that writes
//! tollgate's Kamailio line to its stderr, which goes to `kamailio.log`; tollgate runs in the
//! server namespace too, tails that log and drives `nft` there. SIPp runs the scenario
//! `tests/e2e/register.xml` (one REGISTER / 401 / REGISTER with credentials / 403 or 200 per
//! call). The service's API listens on the server namespace's loopback, which this process
//! cannot reach, so it is read with `tollgate ban list --json` run inside the namespace (the
//! CLI prints `GET /v1/bans` as is).
//!
//! It needs root and Debian's iproute2, nftables, kamailio, sip-tester and sipvicious
//! (`./scripts/test` installs them); it fails with the package to install when one is
//! missing. Every external program runs under `timeout`, every wait has a deadline, and the
//! namespaces (with every process left in them) are removed in `Drop`, also on failure.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use common::lab::{ms, path, read_trace, require_tools, wait_for, Host, Lab, Link};
use serde_json::Value;

/// The server's side of each link, and the three clients. Fixed: the namespaces are private
/// to one run, so parallel runs do not collide.
const SERVER_FOR_ATTACKER: &str = "10.200.1.1";
const ATTACKER: &str = "10.200.1.2";
const SERVER_FOR_OFFICE: &str = "10.200.2.1";
const OFFICE: &str = "10.200.2.2";
const SERVER_FOR_SCANNER: &str = "10.200.3.1";
const SCANNER: &str = "10.200.3.2";

/// The jail of the test policy: small, so that a run is short and expiry can be watched.
const MAXRETRY: u32 = 5;
const BANTIME: Duration = Duration::from_secs(5);

/// The test policy: an admin token for the CLI, one jail, the office allowlisted, the
/// Kamailio log tailed from its beginning (so nothing written before tollgate was up is
/// missed), bans into nftables (the `nft` tollgate runs is the server namespace's, because
/// tollgate runs there).
fn policy() -> String {
    format!(
        r#"
[[tokens]]
name = "admin"
scopes = ["admin"]
file = "admin.token"

[guard]
allowlist = ["{OFFICE}/32"]
scanner_bantime = "1m"
jails = {{ sip-auth = {{ maxretry = {MAXRETRY}, findtime = "1m", bantime = "{}s" }} }}

[[guard.logs]]
path = "kamailio.log"
format = "kamailio"
start = "beginning"

[firewall]
backend = "nftables"
ports = [5060]
"#,
        BANTIME.as_secs()
    )
}

/// What one SIPp run did, from its message trace.
struct SippRun {
    code: Option<i32>,
    /// Messages SIPp sent (retransmissions included) and received.
    sent: usize,
    received: usize,
    /// When the last REGISTER with credentials left.
    last_auth_sent: Option<DateTime<Utc>>,
}

/// A SIPp run in the background (two of them run at once in the ban phase).
struct Sipp {
    child: Child,
    trace: PathBuf,
}

impl Lab {
    /// Starts SIPp on `from`: `calls` registration attempts of `user` with `password`
    /// toward the server, at 20 per second, every answer awaited at most 1 s.
    fn sipp(&self, from: &Host, user: &str, password: &str, calls: u32, tag: &str) -> Sipp {
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/register.xml");
        // The whole [authentication ...] keyword is one field: SIPp 3.6 does not expand
        // fields nested inside it.
        let csv = self.dir.join(format!("{tag}.csv"));
        fs::write(
            &csv,
            format!("SEQUENTIAL\n{user};[authentication username={user} password={password}]\n"),
        )
        .unwrap();
        let trace = self.dir.join(format!("{tag}.messages.log"));
        let _ = fs::remove_file(&trace);
        let child = self
            .in_ns(
                &from.ns,
                Duration::from_secs(20),
                &[
                    path(&self.tools.sipp),
                    &format!("{}:5060", from.server_ip),
                    "-sf",
                    path(&scenario),
                    "-inf",
                    path(&csv),
                    // The local address given, so that SIPp does not resolve the host name.
                    "-i",
                    from.ip,
                    "-m",
                    &calls.to_string(),
                    "-r",
                    "20",
                    "-recv_timeout",
                    "1000",
                    "-timeout",
                    "15s",
                    // -bg would escape `timeout`: foreground, without reading the terminal.
                    "-nostdin",
                    "-trace_msg",
                    "-message_file",
                    path(&trace),
                ],
            )
            // The trace's times are wall-clock times without a zone: make them UTC.
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Sipp { child, trace }
    }

    fn sipp_wait(&self, mut sipp: Sipp) -> SippRun {
        let status = sipp.child.wait().unwrap();
        let trace = read_trace(&sipp.trace);
        SippRun {
            code: status.code(),
            sent: trace.iter().filter(|m| m.sent).count(),
            received: trace.iter().filter(|m| !m.sent).count(),
            last_auth_sent: trace
                .iter()
                .filter(|m| m.sent && m.header("Authorization").is_some())
                .map(|m| m.at)
                .next_back(),
        }
    }

    fn sipp_run(&self, from: &Host, user: &str, password: &str, calls: u32, tag: &str) -> SippRun {
        let sipp = self.sipp(from, user, password, calls, tag);
        self.sipp_wait(sipp)
    }

    /// `GET /v1/bans` through the CLI, run where the API is reachable.
    fn bans(&self, api: &str) -> Vec<Value> {
        let out = self
            .in_ns(
                &self.server,
                Duration::from_secs(10),
                &[
                    env!("CARGO_BIN_EXE_tollgate"),
                    "ban",
                    "list",
                    "--json",
                    "--config",
                    "policy.toml",
                    "--url",
                    api,
                    "--token-file",
                    "admin.token",
                ],
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tollgate ban list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body: Value = serde_json::from_slice(&out.stdout).unwrap();
        body["bans"].as_array().cloned().unwrap_or_default()
    }

    /// When Kamailio wrote each failure line for `ip` (its `ts=` field).
    fn failure_times(&self, ip: &str) -> Vec<SystemTime> {
        let needle = format!("tollgate: auth=failure ip={ip} ");
        fs::read_to_string(self.dir.join("kamailio.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.rsplit_once(" ts=").map(|(_, ts)| ts.trim().to_string()))
            .map(|ts| {
                let seconds: f64 = ts.parse().unwrap_or_else(|e| panic!("ts={ts}: {e}"));
                SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds)
            })
            .collect()
    }

    /// Failure lines for `ip` Kamailio wrote so far.
    fn failures_logged(&self, ip: &str) -> usize {
        let needle = format!("tollgate: auth=failure ip={ip} ");
        fs::read_to_string(self.dir.join("kamailio.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }
}

fn ban_of<'a>(bans: &'a [Value], ip: &str) -> Option<&'a Value> {
    let target = format!("{ip}/32");
    bans.iter().find(|b| b["target"] == target.as_str())
}

/// Additions to the nft sets as `nft monitor` reports them, with the time each was seen:
/// the precise moment an address enters the set, without polling.
type Additions = Arc<Mutex<Vec<(SystemTime, String)>>>;

fn added_at(additions: &Additions, ip: &str) -> Option<SystemTime> {
    let needle = format!("{{ {ip} ");
    additions
        .lock()
        .unwrap()
        .iter()
        .find(|(_, line)| line.contains(&needle))
        .map(|(t, _)| *t)
}

#[test]
fn sipp_failures_through_kamailio_are_banned_in_nftables_dropped_and_expire() {
    let started = Instant::now();
    let tools = require_tools("e2e_guard", &[]);
    let dir = tempfile::tempdir().unwrap();
    // Declared after `dir`, so dropped before it: the processes stop before their files go.
    let mut lab = Lab::new(
        tools,
        dir.path(),
        "e2e",
        &[
            Link {
                name: "att",
                client_ip: ATTACKER,
                server_ip: SERVER_FOR_ATTACKER,
                prefix: 30,
            },
            Link {
                name: "off",
                client_ip: OFFICE,
                server_ip: SERVER_FOR_OFFICE,
                prefix: 30,
            },
            Link {
                name: "scn",
                client_ip: SCANNER,
                server_ip: SERVER_FOR_SCANNER,
                prefix: 30,
            },
        ],
    );
    lab.logs = vec!["kamailio.log", "tollgate.log"];
    let (attacker_host, office_host, scanner_host) =
        (lab.host("att"), lab.host("off"), lab.host("scn"));

    // nft monitor first, so that it sees the table being made and every ban after.
    let additions: Additions = Arc::default();
    let mut monitor = lab
        .in_ns(
            &lab.server,
            Duration::from_secs(120),
            &[path(&lab.tools.nft), "monitor"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let monitor_out = monitor.stdout.take().unwrap();
    lab.children.push(monitor);
    {
        let additions = Arc::clone(&additions);
        std::thread::spawn(move || {
            for line in BufReader::new(monitor_out).lines().map_while(Result::ok) {
                if (line.starts_with("add element") || line.starts_with("create element"))
                    && line.contains(" tollgate banned_v4 ")
                {
                    additions.lock().unwrap().push((SystemTime::now(), line));
                }
            }
        });
    }

    // Kamailio, its stderr (-E) appended to the log tollgate tails.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/kamailio.cfg");
    let rundir = dir.path().join("kamailio-run");
    lab.start_kamailio(&config, &rundir, 256, "kamailio.log");

    // tollgate in the server namespace; the API's address is on its first line.
    fs::write(dir.path().join("policy.toml"), policy()).unwrap();
    let api = lab.start_tollgate("policy.toml", "127.0.0.1:0");
    // Its table is made by its firewall worker, just after it starts listening.
    lab.wait_for_tollgate_table();

    // The office registers with the right password: Kamailio answers (it is up), and the
    // auth=success line it writes goes through tollgate's parser without effect.
    let probe = wait_for(
        "Kamailio answering the office",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let run = lab.sipp_run(&office_host, "1002", "s3cret-1002", 1, "probe");
            (run.code == Some(0)).then_some(run)
        },
    );
    assert_eq!(probe.received, 2, "401 then 200");
    let setup = started.elapsed();

    // 1. maxretry - 1 failures ban nobody; the next one bans the attacker, not the office.
    let attacker = lab.sipp_run(&attacker_host, "1001", "guess", MAXRETRY - 1, "att1");
    assert_eq!(
        (attacker.code, attacker.received),
        (Some(0), 2 * (MAXRETRY as usize - 1)),
        "every attempt answered 401 and 403"
    );
    let office = lab.sipp_run(&office_host, "1001", "typo", MAXRETRY - 1, "off1");
    assert_eq!(
        (office.code, office.received),
        (Some(0), 2 * (MAXRETRY as usize - 1))
    );
    // tollgate takes milliseconds: half a second without a ban means none is coming.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.failures_logged(ATTACKER), MAXRETRY as usize - 1);
    assert!(
        lab.banned_v4().is_empty(),
        "{} failures must not ban",
        MAXRETRY - 1
    );
    assert!(lab.bans(&api).is_empty());

    let last = lab.sipp_run(&attacker_host, "1001", "guess", 1, "att2");
    assert_eq!(
        (last.code, last.received),
        (Some(0), 2),
        "the last failure is answered (403)"
    );
    let last_sent: SystemTime = last
        .last_auth_sent
        .expect("SIPp traced its REGISTER")
        .into();
    let banned_at = wait_for(
        "the attacker in the nft set",
        Duration::from_secs(5),
        Duration::from_millis(5),
        || added_at(&additions, ATTACKER),
    );
    let latency = banned_at.duration_since(last_sent).unwrap_or_default();
    let logged_latency = banned_at
        .duration_since(lab.failure_times(ATTACKER)[MAXRETRY as usize - 1])
        .unwrap_or_default();
    assert!(
        lab.banned_v4().contains(&ATTACKER.to_string()),
        "nft -j list set shows it"
    );
    let bans = lab.bans(&api);
    let ban = ban_of(&bans, ATTACKER)
        .unwrap_or_else(|| panic!("GET /v1/bans lacks the attacker: {bans:?}"));
    assert_eq!(ban["rule"], "jail sip-auth", "{ban}");
    let events: Vec<&str> = ban["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.len(), MAXRETRY as usize, "{ban}");
    assert!(events.iter().all(|e| e.contains(ATTACKER)), "{events:?}");
    let reason = ban["reason"].as_str().unwrap().to_string();
    assert!(
        reason.starts_with(&format!("{MAXRETRY} failures")),
        "{reason}"
    );
    let office_last = lab.sipp_run(&office_host, "1001", "typo", 1, "off2");
    assert_eq!(office_last.received, 2);

    // 2. While banned: the attacker's REGISTERs are dropped (counter up, no answer),
    //    the office is answered. Both at once.
    let counter_before = lab.drop_counter();
    let calls = 3;
    let attacking = lab.sipp(&attacker_host, "1001", "guess", calls, "att3");
    let working = lab.sipp(&office_host, "1001", "typo", calls, "off3");
    let dropped = lab.sipp_wait(attacking);
    let answered = lab.sipp_wait(working);
    let counter_after = lab.drop_counter();
    let in_ban = SystemTime::now()
        .duration_since(banned_at)
        .unwrap_or_default();
    assert!(
        in_ban < BANTIME,
        "the ban phase overran the ban ({in_ban:?}): the checks below would be meaningless"
    );
    assert_eq!(dropped.received, 0, "a banned attacker gets no answer");
    assert_ne!(dropped.code, Some(0), "its attempts time out");
    assert!(dropped.sent >= calls as usize);
    // Every REGISTER the attacker sent, retransmissions included, hit the drop rule.
    let dropped_packets = counter_after - counter_before;
    assert!(
        dropped_packets >= dropped.sent as u64,
        "drop counter {counter_before} -> {counter_after} for {} REGISTERs sent",
        dropped.sent
    );
    assert_eq!(
        (answered.code, answered.received),
        (Some(0), 2 * calls as usize),
        "the office is answered meanwhile"
    );
    assert_eq!(
        lab.failures_logged(ATTACKER),
        MAXRETRY as usize,
        "nothing from the attacker reached Kamailio"
    );

    // 3. The ban ends on time: the element leaves the set after bantime, the API forgets
    //    it, and the attacker is answered again. Meanwhile svcrack, a known scanner, tries
    //    passwords from the scanner's namespace.
    fs::write(
        dir.path().join("words.txt"),
        "123456\npassword\nletmein\n1001\n",
    )
    .unwrap();
    let mut svcrack = lab
        .in_ns(
            &scanner_host.ns,
            // svcrack waits 10 s for late answers once done: 4 s is plenty for 4 guesses.
            Duration::from_secs(4),
            &[
                path(&lab.tools.svcrack),
                "-u",
                "1001",
                "-d",
                "words.txt",
                SERVER_FOR_SCANNER,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gone_at = wait_for(
        "the ban's expiry in nftables",
        BANTIME + Duration::from_secs(3),
        Duration::from_millis(20),
        || (!lab.banned_v4().contains(&ATTACKER.to_string())).then(SystemTime::now),
    );
    let held = gone_at.duration_since(banned_at).unwrap_or_default();
    assert!(
        held + Duration::from_millis(250) >= BANTIME && held <= BANTIME + Duration::from_secs(1),
        "the element stayed {held:?} for a bantime of {BANTIME:?}"
    );
    let api_gone = wait_for(
        "the ban's expiry in the API",
        Duration::from_secs(3),
        Duration::from_millis(50),
        || {
            ban_of(&lab.bans(&api), ATTACKER)
                .is_none()
                .then(SystemTime::now)
        },
    );
    let api_held = api_gone.duration_since(banned_at).unwrap_or_default();
    let again = lab.sipp_run(&attacker_host, "1001", "guess", 1, "att4");
    assert_eq!(
        (again.code, again.received),
        (Some(0), 2),
        "answered again after the ban"
    );
    let office_again = lab.sipp_run(&office_host, "1001", "typo", 1, "off4");
    assert_eq!(office_again.received, 2);

    // The scanner: banned at once by its User-Agent (friendly-scanner).
    let _ = svcrack.wait();
    let bans = lab.bans(&api);
    let scan_ban =
        ban_of(&bans, SCANNER).unwrap_or_else(|| panic!("svcrack was not banned: {bans:?}"));
    assert_eq!(scan_ban["rule"], "scanner", "{scan_ban}");
    let scanner_guesses = lab.failures_logged(SCANNER);
    assert!(scanner_guesses >= 1);
    let scanner_in_set = added_at(&additions, SCANNER).expect("the scanner in the nft set");
    let scanner_latency = scanner_in_set
        .duration_since(lab.failure_times(SCANNER)[0])
        .unwrap_or_default();
    assert!(lab.banned_v4().contains(&SCANNER.to_string()));

    // 4. The office failed as often as the attacker tried, and was never banned.
    let office_failures = lab.failures_logged(OFFICE);
    let attacker_attempts = MAXRETRY as usize + calls as usize + 1;
    assert_eq!(
        office_failures, attacker_attempts,
        "every office failure reached Kamailio's log"
    );
    assert!(
        added_at(&additions, OFFICE).is_none(),
        "the office entered the nft set"
    );
    assert!(ban_of(&lab.bans(&api), OFFICE).is_none());
    assert!(!lab.banned_v4().contains(&OFFICE.to_string()));

    println!("e2e guard (Kamailio, SIPp, svcrack, tollgate, nftables in network namespaces):");
    println!(
        "  setup (namespaces, Kamailio, tollgate, first answer): {}",
        ms(setup)
    );
    println!(
        "  1. ban after {MAXRETRY} failures: last failing REGISTER sent -> attacker in nft set: {} \
         (SIPp trace time to nft monitor event)",
        ms(latency)
    );
    println!(
        "     Kamailio's failure line (its ts) -> nft set: {}",
        ms(logged_latency)
    );
    println!(
        "     GET /v1/bans: rule {:?}, reason {reason:?}, {} events, first {:?}",
        ban["rule"].as_str().unwrap_or(""),
        events.len(),
        events[0]
    );
    println!(
        "  2. while banned: attacker sent {} REGISTERs ({calls} attempts), got {} answers, exit {:?}; \
         drop counter {counter_before} -> {counter_after} (+{dropped_packets} packets); office got {}/{} answers",
        dropped.sent, dropped.received, dropped.code, answered.received, 2 * calls
    );
    println!(
        "  3. bantime {BANTIME:?}: element left the nft set after {} (API after {}); attacker answered again",
        ms(held),
        ms(api_held)
    );
    println!(
        "     scanner (svcrack, friendly-scanner): banned by rule \"scanner\" {} after its first failure line; \
         {scanner_guesses} guess(es) reached Kamailio",
        ms(scanner_latency)
    );
    println!(
        "  4. office (allowlisted): {office_failures} failures logged by Kamailio, never banned; attacker: {} failures logged of {attacker_attempts} attempts",
        lab.failures_logged(ATTACKER)
    );
    println!("  total {}", ms(started.elapsed()));
}

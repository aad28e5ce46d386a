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

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
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

/// Absolute paths of the programs the test runs (root's PATH may lack /usr/sbin under
/// `cargo test`, and `ip netns exec` needs a program it can find).
struct Tools {
    ip: PathBuf,
    nft: PathBuf,
    kamailio: PathBuf,
    sipp: PathBuf,
    svcrack: PathBuf,
    timeout: PathBuf,
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

/// Fails at once, naming the Debian package, when something the test needs is missing.
fn require_tools() -> Tools {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "e2e_guard needs root (it creates network namespaces and nftables rules in them): run the tests as root"
    );
    let get = |program: &str, package: &str| {
        find_program(program).unwrap_or_else(|| {
            panic!(
                "e2e_guard needs `{program}`: install Debian's `{package}` package \
                 (./scripts/test installs the test dependencies)"
            )
        })
    };
    Tools {
        ip: get("ip", "iproute2"),
        nft: get("nft", "nftables"),
        kamailio: get("kamailio", "kamailio"),
        sipp: get("sipp", "sip-tester"),
        svcrack: get("svcrack", "sipvicious"),
        timeout: get("timeout", "coreutils"),
    }
}

/// `timeout` around every external program, so that none can hang the test; `-k` kills it
/// if it ignores the TERM.
fn bounded(tools: &Tools, limit: Duration, argv: &[&str]) -> Command {
    let mut cmd = Command::new(&tools.timeout);
    cmd.args(["-k", "2", &format!("{:.1}", limit.as_secs_f64())])
        .args(argv);
    cmd
}

fn run(tools: &Tools, limit: Duration, argv: &[&str]) -> Output {
    bounded(tools, limit, argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

fn run_ok(tools: &Tools, limit: Duration, argv: &[&str]) -> String {
    let out = run(tools, limit, argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for `check` to give a value, polling every `every`, at most `limit`.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(every);
    }
}

/// A client host: its namespace, its address, and the server's address on its link.
#[derive(Clone)]
struct Host {
    ns: String,
    ip: &'static str,
    server_ip: &'static str,
}

/// The namespaces and what runs in them; `Drop` removes everything.
struct Lab {
    tools: Tools,
    dir: PathBuf,
    server: String,
    attacker: Host,
    office: Host,
    scanner: Host,
    /// The namespaces created so far (removed in `Drop`).
    created: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn new(tools: Tools, dir: &Path) -> Lab {
        let pid = std::process::id();
        let mut lab = Lab {
            tools,
            dir: dir.to_path_buf(),
            server: format!("tg-e2e-srv-{pid}"),
            attacker: Host {
                ns: format!("tg-e2e-att-{pid}"),
                ip: ATTACKER,
                server_ip: SERVER_FOR_ATTACKER,
            },
            office: Host {
                ns: format!("tg-e2e-off-{pid}"),
                ip: OFFICE,
                server_ip: SERVER_FOR_OFFICE,
            },
            scanner: Host {
                ns: format!("tg-e2e-scn-{pid}"),
                ip: SCANNER,
                server_ip: SERVER_FOR_SCANNER,
            },
            created: Vec::new(),
            children: Vec::new(),
        };
        lab.remove_stale();
        let names = [
            lab.server.clone(),
            lab.attacker.ns.clone(),
            lab.office.ns.clone(),
            lab.scanner.ns.clone(),
        ];
        for ns in names {
            lab.ip(&["netns", "add", &ns]);
            lab.created.push(ns.clone());
            lab.ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        // One veth pair per client, created from inside the namespaces (`-n`, peer moved
        // straight into the client's namespace) so that no interface ever appears on the
        // host, not even for a moment.
        let server = lab.server.clone();
        let links = [
            (lab.attacker.clone(), "att"),
            (lab.office.clone(), "off"),
            (lab.scanner.clone(), "scn"),
        ];
        for (host, link) in links {
            let (client, server_ip, client_ip) = (host.ns, host.server_ip, host.ip);
            lab.ip(&[
                "-n", &server, "link", "add", link, "type", "veth", "peer", "name", "eth0",
                "netns", &client,
            ]);
            lab.ip(&[
                "-n",
                &server,
                "addr",
                "add",
                &format!("{server_ip}/30"),
                "dev",
                link,
            ]);
            lab.ip(&["-n", &server, "link", "set", link, "up"]);
            lab.ip(&[
                "-n",
                &client,
                "addr",
                "add",
                &format!("{client_ip}/30"),
                "dev",
                "eth0",
            ]);
            lab.ip(&["-n", &client, "link", "set", "eth0", "up"]);
        }
        lab
    }

    /// Namespaces left by an earlier run that was killed before its `Drop` (its pid is gone).
    fn remove_stale(&self) {
        let list = run(
            &self.tools,
            Duration::from_secs(5),
            &[path(&self.tools.ip), "netns", "list"],
        );
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(rest) = name.strip_prefix("tg-e2e-") else {
                continue;
            };
            let Some((_, pid)) = rest.split_once('-') else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
                self.stop_processes_in(name);
                let _ = run(
                    &self.tools,
                    Duration::from_secs(5),
                    &[path(&self.tools.ip), "netns", "del", name],
                );
            }
        }
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec![path(&self.tools.ip)];
        argv.extend_from_slice(args);
        run_ok(&self.tools, Duration::from_secs(10), &argv)
    }

    /// `ip netns exec NS timeout ... PROGRAM ARGS`: the command, bounded, in a namespace.
    fn in_ns(&self, ns: &str, limit: Duration, argv: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tools.ip);
        cmd.args(["netns", "exec", ns])
            .arg(&self.tools.timeout)
            .args(["-k", "2", &format!("{:.1}", limit.as_secs_f64())])
            .args(argv)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    fn nft_json(&self, args: &[&str]) -> Value {
        let mut argv = vec![path(&self.tools.nft), "-j"];
        argv.extend_from_slice(args);
        let out = self
            .in_ns(&self.server, Duration::from_secs(5), &argv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The addresses in `inet tollgate banned_v4` (`nft -j list set`).
    fn banned_v4(&self) -> Vec<String> {
        let set = self.nft_json(&["list", "set", "inet", "tollgate", "banned_v4"]);
        set["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["set"]["elem"].as_array())
            .flatten()
            .filter_map(|e| {
                // Elements with a timeout come as {"elem": {"val": ...}}, others bare.
                e["elem"]["val"].as_str().or(e.as_str()).map(String::from)
            })
            .collect()
    }

    /// The packet counter of the drop rule for `banned_v4`.
    fn drop_counter(&self) -> u64 {
        let chain = self.nft_json(&["list", "chain", "inet", "tollgate", "input"]);
        chain["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["rule"]["comment"] == "tollgate banned_v4")
            .filter_map(|o| o["rule"]["expr"].as_array())
            .flatten()
            .find_map(|e| e["counter"]["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter on the banned_v4 drop rule: {chain}"))
    }

    /// Sends TERM, then KILL, to every process left in a namespace: only processes this
    /// test started can be there, since the namespace's name carries this run's pid.
    fn stop_processes_in(&self, ns: &str) {
        let pids = |lab: &Lab| -> Vec<String> {
            let out = run(
                &lab.tools,
                Duration::from_secs(5),
                &[path(&lab.tools.ip), "netns", "pids", ns],
            );
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        for signal in ["-TERM", "-KILL"] {
            let list = pids(self);
            if list.is_empty() {
                return;
            }
            // The shell's own `kill`: /usr/bin/kill (procps) is not on every machine.
            let mut argv = vec!["sh", "-c", "kill \"$@\"", "kill", signal];
            argv.extend(list.iter().map(String::as_str));
            let _ = run(&self.tools, Duration::from_secs(5), &argv);
            let deadline = Instant::now() + Duration::from_secs(3);
            while !pids(self).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn tail_of(&self, file: &str, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- kamailio.log (end) ---\n{}\n--- tollgate.log (end) ---\n{}\n---",
                self.tail_of("kamailio.log", 30),
                self.tail_of("tollgate.log", 30)
            );
        }
        for ns in self.created.clone() {
            self.stop_processes_in(&ns);
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.created {
            let _ = run(
                &self.tools,
                Duration::from_secs(10),
                &[path(&self.tools.ip), "netns", "del", ns],
            );
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
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
        let text = fs::read_to_string(&sipp.trace).unwrap_or_default();
        let mut run = SippRun {
            code: status.code(),
            sent: 0,
            received: 0,
            last_auth_sent: None,
        };
        // Each message: a line of dashes and the time, "UDP message sent|received ...",
        // then the message.
        for block in text.split("----------------------------------------------- ") {
            let mut lines = block.lines();
            let Some(when) = lines.next() else { continue };
            let Some(kind) = lines.next() else { continue };
            if kind.contains("message sent") {
                run.sent += 1;
                if block.contains("\nAuthorization:") {
                    let at = NaiveDateTime::parse_from_str(when.trim(), "%Y-%m-%d %H:%M:%S%.f")
                        .unwrap_or_else(|e| panic!("SIPp trace time {when:?}: {e}"));
                    run.last_auth_sent = Some(at.and_utc());
                }
            } else if kind.contains("message received") {
                run.received += 1;
            }
        }
        run
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

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn sipp_failures_through_kamailio_are_banned_in_nftables_dropped_and_expire() {
    let started = Instant::now();
    let tools = require_tools();
    let dir = tempfile::tempdir().unwrap();
    // Declared after `dir`, so dropped before it: the processes stop before their files go.
    let mut lab = Lab::new(tools, dir.path());

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
    fs::create_dir(&rundir).unwrap();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("kamailio.log"))
        .unwrap();
    let kamailio = lab
        .in_ns(
            &lab.server,
            Duration::from_secs(120),
            &[
                path(&lab.tools.kamailio),
                "-f",
                path(&config),
                "-DD",
                "-E",
                "-m",
                "256",
                "-M",
                "32",
                "-Y",
                path(&rundir),
            ],
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    lab.children.push(kamailio);

    // tollgate in the server namespace; the API's address is on its first line.
    fs::write(dir.path().join("policy.toml"), policy()).unwrap();
    let tollgate_log = fs::File::create(dir.path().join("tollgate.log")).unwrap();
    let mut tollgate = lab
        .in_ns(
            &lab.server,
            Duration::from_secs(120),
            &[
                env!("CARGO_BIN_EXE_tollgate"),
                "serve",
                "--config",
                "policy.toml",
                "--listen",
                "127.0.0.1:0",
                "--database",
                "tollgate.db",
            ],
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(tollgate_log)
        .spawn()
        .unwrap();
    let stdout = tollgate.stdout.take().unwrap();
    lab.children.push(tollgate);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Reads on to the end, so that tollgate never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let api = format!(
        "http://{}",
        rx.recv_timeout(Duration::from_secs(30))
            .expect("tollgate did not start listening")
    );
    // Its table is made by its firewall worker, just after it starts listening.
    wait_for(
        "tollgate's nftables table",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            lab.in_ns(
                &lab.server,
                Duration::from_secs(5),
                &[
                    path(&lab.tools.nft),
                    "list",
                    "chain",
                    "inet",
                    "tollgate",
                    "input",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
            .then_some(())
        },
    );

    // The office registers with the right password: Kamailio answers (it is up), and the
    // auth=success line it writes goes through tollgate's parser without effect.
    let probe = wait_for(
        "Kamailio answering the office",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            let run = lab.sipp_run(&lab.office, "1002", "s3cret-1002", 1, "probe");
            (run.code == Some(0)).then_some(run)
        },
    );
    assert_eq!(probe.received, 2, "401 then 200");
    let setup = started.elapsed();

    // 1. maxretry - 1 failures ban nobody; the next one bans the attacker, not the office.
    let attacker = lab.sipp_run(&lab.attacker, "1001", "guess", MAXRETRY - 1, "att1");
    assert_eq!(
        (attacker.code, attacker.received),
        (Some(0), 2 * (MAXRETRY as usize - 1)),
        "every attempt answered 401 and 403"
    );
    let office = lab.sipp_run(&lab.office, "1001", "typo", MAXRETRY - 1, "off1");
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

    let last = lab.sipp_run(&lab.attacker, "1001", "guess", 1, "att2");
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
    let office_last = lab.sipp_run(&lab.office, "1001", "typo", 1, "off2");
    assert_eq!(office_last.received, 2);

    // 2. While banned: the attacker's REGISTERs are dropped (counter up, no answer),
    //    the office is answered. Both at once.
    let counter_before = lab.drop_counter();
    let calls = 3;
    let attacking = lab.sipp(&lab.attacker, "1001", "guess", calls, "att3");
    let working = lab.sipp(&lab.office, "1001", "typo", calls, "off3");
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
            &lab.scanner.ns,
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
    let again = lab.sipp_run(&lab.attacker, "1001", "guess", 1, "att4");
    assert_eq!(
        (again.code, again.received),
        (Some(0), 2),
        "answered again after the ban"
    );
    let office_again = lab.sipp_run(&lab.office, "1001", "typo", 1, "off4");
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

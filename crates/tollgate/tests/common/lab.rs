//! A lab of network namespaces for the end-to-end tests with real programs (Kamailio, SIPp,
//! sipvicious, nftables): a server namespace with one veth link to each client namespace,
//! every external program run under `timeout`, every wait bounded, and everything (the
//! processes left in the namespaces, then the namespaces) removed in `Drop`, also when the
//! test fails.
//!
//! ```text
//!   client A  CLIENT_IP ──veth── SERVER_IP ┐
//!   client B  CLIENT_IP ──veth── SERVER_IP ├ server namespace
//!   ...                                    ┘
//! ```
//!
//! Nothing here touches the machine's own network or firewall: the veth pairs are created
//! from inside the namespaces (`ip -n`), and nftables runs in the server namespace only.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// Absolute paths of the programs the tests run (root's PATH may lack /usr/sbin under
/// `cargo test`, and `ip netns exec` needs a program it can find).
pub struct Tools {
    pub ip: PathBuf,
    pub nft: PathBuf,
    pub kamailio: PathBuf,
    pub kamcmd: PathBuf,
    pub sipp: PathBuf,
    pub svcrack: PathBuf,
    pub svwar: PathBuf,
    pub curl: PathBuf,
    pub timeout: PathBuf,
}

pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

/// Fails at once, naming the Debian package, when something the test needs is missing:
/// root, the programs, and the Kamailio modules in `modules` (file name, package).
pub fn require_tools(test: &str, modules: &[(&str, &str)]) -> Tools {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "{test} needs root (it creates network namespaces and nftables rules in them): run the tests as root"
    );
    let get = |program: &str, package: &str| {
        find_program(program).unwrap_or_else(|| {
            panic!(
                "{test} needs `{program}`: install Debian's `{package}` package \
                 (./scripts/test installs the test dependencies)"
            )
        })
    };
    let tools = Tools {
        ip: get("ip", "iproute2"),
        nft: get("nft", "nftables"),
        kamailio: get("kamailio", "kamailio"),
        kamcmd: get("kamcmd", "kamailio"),
        sipp: get("sipp", "sip-tester"),
        svcrack: get("svcrack", "sipvicious"),
        svwar: get("svwar", "sipvicious"),
        curl: get("curl", "curl"),
        timeout: get("timeout", "coreutils"),
    };
    for (module, package) in modules {
        assert!(
            kamailio_module_exists(module),
            "{test} needs Kamailio's module `{module}`: install Debian's `{package}` package \
             (./scripts/test installs the test dependencies)"
        );
    }
    tools
}

/// Whether Kamailio's module `name` (e.g. "http_client.so") is installed, in Debian's
/// multiarch folder or a plain one.
fn kamailio_module_exists(name: &str) -> bool {
    let mut dirs = vec![PathBuf::from("/usr/lib/kamailio/modules")];
    if let Ok(entries) = fs::read_dir("/usr/lib") {
        for entry in entries.flatten() {
            dirs.push(entry.path().join("kamailio/modules"));
        }
    }
    dirs.iter().any(|d| d.join(name).is_file())
}

/// `timeout` around every external program, so that none can hang the test; `-k` kills it
/// if it ignores the TERM.
pub fn bounded(tools: &Tools, limit: Duration, argv: &[&str]) -> Command {
    let mut cmd = Command::new(&tools.timeout);
    cmd.args(["-k", "2", &format!("{:.1}", limit.as_secs_f64())])
        .args(argv);
    cmd
}

pub fn run(tools: &Tools, limit: Duration, argv: &[&str]) -> Output {
    bounded(tools, limit, argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

pub fn run_ok(tools: &Tools, limit: Duration, argv: &[&str]) -> String {
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
pub fn wait_for<T>(
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

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A client host: its namespace, its address, and the server's address on its link.
#[derive(Clone)]
pub struct Host {
    pub ns: String,
    pub ip: &'static str,
    pub server_ip: &'static str,
}

/// One client of the lab: a short name (part of its namespace's name), its address, the
/// server's address on their link, and the link's prefix length.
pub struct Link {
    pub name: &'static str,
    pub client_ip: &'static str,
    pub server_ip: &'static str,
    pub prefix: u8,
}

/// The namespaces and what runs in them; `Drop` removes everything.
pub struct Lab {
    pub tools: Tools,
    pub dir: PathBuf,
    /// `tg-<tag>-`: every namespace of this lab starts with it.
    prefix: String,
    pub server: String,
    pub hosts: Vec<(&'static str, Host)>,
    /// The namespaces created so far (removed in `Drop`).
    created: Vec<String>,
    pub children: Vec<Child>,
    /// tollgate, once started (see `stop_tollgate`).
    tollgate: Option<Child>,
    /// Files whose ends `Drop` prints when the test fails.
    pub logs: Vec<&'static str>,
}

impl Lab {
    /// Namespaces `tg-<tag>-srv-<pid>` and `tg-<tag>-<name>-<pid>` per link: fixed
    /// addresses are safe, the namespaces being private to one run. Each client gets a
    /// default route through the server (so that it answers whichever server address a
    /// message came from).
    pub fn new(tools: Tools, dir: &Path, tag: &str, links: &[Link]) -> Lab {
        let pid = std::process::id();
        let prefix = format!("tg-{tag}-");
        let mut lab = Lab {
            tools,
            dir: dir.to_path_buf(),
            server: format!("{prefix}srv-{pid}"),
            hosts: links
                .iter()
                .map(|l| {
                    (
                        l.name,
                        Host {
                            ns: format!("{prefix}{}-{pid}", l.name),
                            ip: l.client_ip,
                            server_ip: l.server_ip,
                        },
                    )
                })
                .collect(),
            prefix,
            created: Vec::new(),
            children: Vec::new(),
            tollgate: None,
            logs: Vec::new(),
        };
        lab.remove_stale();
        let names: Vec<String> = std::iter::once(lab.server.clone())
            .chain(lab.hosts.iter().map(|(_, h)| h.ns.clone()))
            .collect();
        for ns in names {
            lab.ip(&["netns", "add", &ns]);
            lab.created.push(ns.clone());
            lab.ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        // One veth pair per client, created from inside the namespaces (`-n`, peer moved
        // straight into the client's namespace) so that no interface ever appears on the
        // host, not even for a moment.
        let server = lab.server.clone();
        for link in links {
            let client = lab.host(link.name).ns;
            let (server_cidr, client_cidr) = (
                format!("{}/{}", link.server_ip, link.prefix),
                format!("{}/{}", link.client_ip, link.prefix),
            );
            lab.ip(&[
                "-n", &server, "link", "add", link.name, "type", "veth", "peer", "name", "eth0",
                "netns", &client,
            ]);
            lab.ip(&["-n", &server, "addr", "add", &server_cidr, "dev", link.name]);
            lab.ip(&["-n", &server, "link", "set", link.name, "up"]);
            lab.ip(&["-n", &client, "addr", "add", &client_cidr, "dev", "eth0"]);
            lab.ip(&["-n", &client, "link", "set", "eth0", "up"]);
            lab.ip(&[
                "-n",
                &client,
                "route",
                "add",
                "default",
                "via",
                link.server_ip,
            ]);
        }
        lab
    }

    /// The client host called `name` in `Lab::new`.
    pub fn host(&self, name: &str) -> Host {
        self.hosts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| panic!("no host {name:?} in the lab"))
    }

    /// Namespaces of this lab's kind left by an earlier run that was killed before its
    /// `Drop` (their pid is gone).
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
            if !name.starts_with(&self.prefix) {
                continue;
            }
            let Some((_, pid)) = name.rsplit_once('-') else {
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

    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec![path(&self.tools.ip)];
        argv.extend_from_slice(args);
        run_ok(&self.tools, Duration::from_secs(10), &argv)
    }

    /// `ip netns exec NS timeout ... PROGRAM ARGS`: the command, bounded, in a namespace,
    /// run from the lab's folder.
    pub fn in_ns(&self, ns: &str, limit: Duration, argv: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tools.ip);
        cmd.args(["netns", "exec", ns])
            .arg(&self.tools.timeout)
            .args(["-k", "2", &format!("{:.1}", limit.as_secs_f64())])
            .args(argv)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a command in a namespace to its end: its exit code, stdout and stderr.
    pub fn run_in(
        &self,
        ns: &str,
        limit: Duration,
        argv: &[&str],
    ) -> (Option<i32>, String, String) {
        let out = self
            .in_ns(ns, limit, argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {ns}: {e}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts Kamailio in the server namespace (`-DD -E`: foreground, log to stderr, which
    /// is appended to `log` in the lab's folder), with its control socket in `rundir`.
    pub fn start_kamailio(&mut self, config: &Path, rundir: &Path, memory_mb: u32, log: &str) {
        fs::create_dir_all(rundir).unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))
            .unwrap();
        let memory = memory_mb.to_string();
        let kamailio = self
            .in_ns(
                &self.server,
                Duration::from_secs(600),
                &[
                    path(&self.tools.kamailio),
                    "-f",
                    path(config),
                    "-DD",
                    "-E",
                    "-m",
                    &memory,
                    "-M",
                    "32",
                    "-Y",
                    path(rundir),
                ],
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(kamailio);
    }

    /// Starts `tollgate serve --config POLICY --listen LISTEN --database tollgate.db` in the
    /// server namespace (stderr to `tollgate.log`); returns its API's base URL once it
    /// listens.
    pub fn start_tollgate(&mut self, policy: &str, listen: &str) -> String {
        let log = fs::File::create(self.dir.join("tollgate.log")).unwrap();
        let mut tollgate = self
            .in_ns(
                &self.server,
                Duration::from_secs(600),
                &[
                    env!("CARGO_BIN_EXE_tollgate"),
                    "serve",
                    "--config",
                    policy,
                    "--listen",
                    listen,
                    "--database",
                    "tollgate.db",
                ],
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = tollgate.stdout.take().unwrap();
        self.tollgate = Some(tollgate);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads on to the end, so that tollgate never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        format!(
            "http://{}",
            rx.recv_timeout(Duration::from_secs(30))
                .expect("tollgate did not start listening")
        )
    }

    /// Waits for the table tollgate's firewall worker makes just after it starts listening.
    pub fn wait_for_tollgate_table(&self) {
        wait_for(
            "tollgate's nftables table",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                self.in_ns(
                    &self.server,
                    Duration::from_secs(5),
                    &[
                        path(&self.tools.nft),
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
    }

    /// An API request from inside the server namespace (the API listens on its loopback,
    /// which this process cannot reach) with curl: the status and the JSON body (Null when
    /// not JSON). The token goes in a header file, not on the command line.
    pub fn api(
        &self,
        base: &str,
        method: &str,
        route: &str,
        token: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, text) = self.api_text(base, method, route, token, body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Like `api`, with the body as text (e.g. `/metrics`).
    pub fn api_text(
        &self,
        base: &str,
        method: &str,
        route: &str,
        token: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let headers = self.dir.join("curl-headers.txt");
        fs::write(
            &headers,
            format!("Authorization: Bearer {token}\nContent-Type: application/json\n"),
        )
        .unwrap();
        let url = format!("{base}{route}");
        let header_arg = format!("@{}", path(&headers));
        let mut argv = vec![
            path(&self.tools.curl),
            "-sS",
            "--max-time",
            "5",
            "-X",
            method,
            "-H",
            &header_arg,
            "-w",
            "\n%{http_code}",
        ];
        if let Some(body) = body {
            argv.extend(["--data-binary", body]);
        }
        argv.push(&url);
        let (code, stdout, stderr) = self.run_in(&self.server, Duration::from_secs(10), &argv);
        assert_eq!(code, Some(0), "curl {method} {route}: {stderr}");
        let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn nft_json(&self, args: &[&str]) -> Value {
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
    pub fn banned_v4(&self) -> Vec<String> {
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
    pub fn drop_counter(&self) -> u64 {
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
    pub fn stop_processes_in(&self, ns: &str) {
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

    /// Sends `signal` (e.g. "-STOP") to the processes called `program` in a namespace.
    pub fn signal_in(&self, ns: &str, program: &str, signal: &str) {
        let out = run(
            &self.tools,
            Duration::from_secs(5),
            &[path(&self.tools.ip), "netns", "pids", ns],
        );
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == program)
            })
            .map(String::from)
            .collect();
        assert!(!pids.is_empty(), "no {program} in {ns}");
        let mut argv = vec!["sh", "-c", "kill \"$@\"", "kill", signal];
        argv.extend(pids.iter().map(String::as_str));
        let _ = run(&self.tools, Duration::from_secs(5), &argv);
    }

    /// Stops tollgate (TERM to its `timeout`, which passes it on), waiting at most 5 s.
    pub fn stop_tollgate(&mut self) {
        let Some(mut child) = self.tollgate.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = run(
            &self.tools,
            Duration::from_secs(5),
            &["sh", "-c", "kill -TERM \"$1\"", "kill", &pid],
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn tail_of(&self, file: &str, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.logs {
                eprintln!("--- {log} (end) ---\n{}", self.tail_of(log, 40));
            }
            eprintln!("---");
        }
        for ns in self.created.clone() {
            self.stop_processes_in(&ns);
        }
        for child in self.children.iter_mut().chain(self.tollgate.as_mut()) {
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

/// One message of a SIPp message trace (`-trace_msg -message_file FILE`).
#[derive(Clone, Debug)]
pub struct TraceMessage {
    /// When SIPp sent or received it (the trace's local time: run SIPp with `TZ=UTC`).
    pub at: DateTime<Utc>,
    pub sent: bool,
    /// The SIP message: first line, headers, body.
    pub text: String,
}

impl TraceMessage {
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// The value of the first header `name` (case-insensitive, full names only).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.first_line()
            .strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
    }

    /// The method of a request, or of the request a response answers (from CSeq).
    pub fn method(&self) -> Option<&str> {
        self.header("CSeq")
            .and_then(|cseq| cseq.split_whitespace().nth(1))
    }
}

/// Reads a SIPp message trace: each message is a line of dashes and the time, a line
/// "UDP message sent|received ...", then the message; failed sends are left out.
pub fn read_trace(file: &Path) -> Vec<TraceMessage> {
    let text = fs::read_to_string(file).unwrap_or_default();
    let mut messages = Vec::new();
    for block in text.split("----------------------------------------------- ") {
        let mut lines = block.lines();
        let Some(when) = lines.next() else { continue };
        let Some(kind) = lines.next() else { continue };
        let sent = kind.contains("message sent");
        if !sent && !kind.contains("message received") {
            continue;
        }
        let Ok(at) = NaiveDateTime::parse_from_str(when.trim(), "%Y-%m-%d %H:%M:%S%.f") else {
            panic!("SIPp trace time {when:?} in {}", file.display());
        };
        let message: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
        messages.push(TraceMessage {
            at: at.and_utc(),
            sent,
            text: message.join("\n"),
        });
    }
    messages
}

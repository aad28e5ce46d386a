//! Test support: throw-away network namespaces (never the host's ruleset), a veth pair between
//! two of them, and a UDP helper that runs inside a namespace by re-invoking the test binary.
//!
//! These tests need root, `ip` (iproute2) and `nft` (nftables); the ipset tests also need
//! `ipset` and `iptables`. Without them the tests fail with a message saying what is missing:
//! passing silently would hide that the firewall code was never exercised.

#![allow(dead_code, reason = "each test binary uses part of this module")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support outside #[test] functions: a failure here is a test failure"
)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Fails the test unless we are root and every tool is on the PATH.
pub fn require(tools: &[&str]) {
    let uid = Command::new("id").arg("-u").output().expect("run `id -u`");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "these tests create network namespaces and need root"
    );
    for tool in tools {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/usr/sbin", "/sbin"])
            .any(|dir| Path::new(dir).join(tool).is_file());
        assert!(
            found,
            "`{tool}` is missing: install the Debian packages iproute2 nftables (and ipset iptables for the ipset tests)"
        );
    }
}

/// A short random hex tag, different per call and per process.
pub fn tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(N.fetch_add(1, Ordering::Relaxed));
    format!("{:06x}", h.finish() & 0xff_ffff)
}

/// Runs a command and fails the test with its stderr if it fails.
pub fn sh(argv: &[&str]) -> Output {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace that is deleted when dropped, even when the test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        require(&["ip", "nft"]);
        let name = format!("tg-test-{}", tag());
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        sh(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The argv prefix that runs a program inside the namespace.
    pub fn prefix(&self, program: &str) -> Vec<String> {
        ["ip", "netns", "exec", &self.name, program]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Runs `argv` inside the namespace; fails the test if it fails.
    pub fn run(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        sh(&full)
    }

    /// `nft -j ...` inside the namespace, parsed.
    pub fn nft_json(&self, args: &[&str]) -> serde_json::Value {
        let mut argv = vec!["nft", "-j"];
        argv.extend_from_slice(args);
        serde_json::from_slice(&self.run(&argv).stdout).expect("nft JSON")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: `a` (the protected host, 10.99.7.1 and fd99::1)
/// and `b` (the peers, 10.99.7.2 and .3, fd99::2 and ::3).
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

pub const A4: &str = "10.99.7.1";
pub const B4: [&str; 2] = ["10.99.7.2", "10.99.7.3"];
pub const A6: &str = "fd99::1";
pub const B6: [&str; 2] = ["fd99::2", "fd99::3"];

impl Pair {
    pub fn new() -> Self {
        let a = Netns::new();
        let b = Netns::new();
        let t = tag();
        let (va, vb) = (format!("tga{t}"), format!("tgb{t}"));
        sh(&[
            "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb,
            "netns", &b.name,
        ]);
        sh(&[
            "ip",
            "-n",
            &a.name,
            "addr",
            "add",
            &format!("{A4}/24"),
            "dev",
            &va,
        ]);
        // nodad: usable at once instead of after duplicate address detection.
        sh(&[
            "ip",
            "-n",
            &a.name,
            "addr",
            "add",
            &format!("{A6}/64"),
            "dev",
            &va,
            "nodad",
        ]);
        for addr in B4 {
            sh(&[
                "ip",
                "-n",
                &b.name,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &vb,
            ]);
        }
        for addr in B6 {
            sh(&[
                "ip",
                "-n",
                &b.name,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                &vb,
                "nodad",
            ]);
        }
        sh(&["ip", "-n", &a.name, "link", "set", &va, "up"]);
        sh(&["ip", "-n", &b.name, "link", "set", &vb, "up"]);
        Pair { a, b }
    }
}

// ---- the UDP helper, run inside a namespace as `TEST_BINARY helper_udp --exact` ----

const HELPER_ENV: &str = "TOLLGATE_TEST_UDP_HELPER";

/// Body of the `helper_udp` test of each test binary: does nothing in a normal run; when
/// re-invoked with the helper's environment, it sends or listens and prints what it saw.
pub fn helper_main() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let arg = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    match mode.as_str() {
        "send" => {
            let src: std::net::IpAddr = arg("TG_SRC").parse().unwrap();
            let dst: SocketAddr = arg("TG_DST").parse().unwrap();
            let count: u32 = arg("TG_COUNT").parse().unwrap();
            let payload = arg("TG_PAYLOAD");
            let sock = UdpSocket::bind((src, 0)).unwrap();
            for _ in 0..count {
                sock.send_to(payload.as_bytes(), dst).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        "listen" => {
            let bind: SocketAddr = arg("TG_BIND").parse().unwrap();
            let secs: u64 = arg("TG_SECS").parse().unwrap();
            let sock = UdpSocket::bind(bind).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            println!("READY");
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut buf = [0u8; 1500];
            while Instant::now() < deadline {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    println!("FROM {} {text}", from.ip());
                    if text == "stop" {
                        break;
                    }
                }
            }
            println!("DONE");
        }
        other => panic!("unknown helper mode {other}"),
    }
}

fn helper(ns: &Netns, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name]).arg(exe).args([
        "helper_udp",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Sends `count` datagrams from `src` (an address of `ns`) to `dst`, inside `ns`.
pub fn send_udp(ns: &Netns, src: &str, dst: SocketAddr, count: u32, payload: &str) {
    let status = helper(
        ns,
        &[
            (HELPER_ENV, "send".into()),
            ("TG_SRC", src.into()),
            ("TG_DST", dst.to_string()),
            ("TG_COUNT", count.to_string()),
            ("TG_PAYLOAD", payload.into()),
        ],
    )
    .stdout(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success(), "UDP sender in {} failed", ns.name);
}

/// A UDP listener inside a namespace; [`Listener::finish`] returns the sources it heard
/// from, one entry per datagram (payload "stop" ends it).
pub struct Listener {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Listener {
    pub fn start(ns: &Netns, bind: SocketAddr, secs: u64) -> Self {
        let mut child = helper(
            ns,
            &[
                (HELPER_ENV, "listen".into()),
                ("TG_BIND", bind.to_string()),
                ("TG_SECS", secs.to_string()),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the UDP listener did not start");
            // libtest prints "test helper_udp ... " before running it, on the same line.
            if line.ends_with("READY") {
                break;
            }
        }
        Listener { child, lines: rx }
    }

    /// Waits for the listener to end and returns "SOURCE PAYLOAD" per datagram.
    pub fn finish(mut self) -> Vec<String> {
        let mut heard = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(15)) {
            if line.ends_with("DONE") {
                break;
            }
            if let Some((_, rest)) = line.split_once("FROM ") {
                heard.push(rest.to_string());
            }
        }
        let _ = self.child.wait();
        heard
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Our own child, by its handle, in case the test failed before finish().
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Median of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

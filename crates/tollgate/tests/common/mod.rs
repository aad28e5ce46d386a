//! Runs the real `tollgate` binary on port 0 in a temporary folder and talks HTTP to it.

#![allow(dead_code)]
// Test harness: a failure to start or reach the server must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Network namespaces, Kamailio, SIPp and nftables for the end-to-end tests.
pub mod lab;

/// The tokens (files in the test folder) and the dry-run firewall every test policy
/// starts with: tests never touch the host's firewall.
#[macro_export]
macro_rules! test_header {
    () => {
        r#"
[[tokens]]
name = "pbx"
scopes = ["calls"]
file = "pbx.token"
[[tokens]]
name = "admin"
scopes = ["admin"]
file = "admin.token"
[[tokens]]
name = "reader"
scopes = ["read"]
file = "reader.token"

# Tests never touch the host's firewall.
[firewall]
backend = "dry-run"
"#
    };
}

/// A policy for API tests: one reseller, one account, extensions with small limits, no
/// business-hours schedule (so tests do not depend on the time of day).
pub const TEST_POLICY: &str = concat!(
    test_header!(),
    r#"
[credit]
answer_timeout = "30s"
expiry_grace = "5s"

[plans.std]
currency = "EUR"
rates = [
  { prefix = "+33",  description = "France fixed",  price_per_minute = "0.60", increments = "60/60" },
  { prefix = "+336", description = "France mobile", price_per_minute = "0.60", connection_fee = "0.10", increments = "30/6" },
  { prefix = "+44",  description = "UK", price_per_minute = "0.06", increments = "1/1" },
]

[accounts.reseller]
country = "FR"
time_zone = "Europe/Paris"
plan = "std"
limits = { daily = "100.00", monthly = "1000.00" }
rules = { allowed_classes = ["emergency", "internal", "national", "mobile", "toll_free", "international"] }

[accounts.acme]
parent = "reseller"
country = "FR"
time_zone = "Europe/Paris"
limits = { daily = "50.00", monthly = "500.00" }
rules = { allowed_classes = ["emergency", "internal", "national", "mobile", "toll_free", "international"] }
extension_defaults = { limits = { daily = "10.00", monthly = "100.00" }, max_call_duration = "1h" }

[extensions.1001]
account = "acme"
allowed_cidrs = ["127.0.0.0/8", "::1/128"]
limits = { daily = "1.00", monthly = "10.00" }

[extensions.1002]
account = "acme"
allowed_cidrs = ["127.0.0.0/8"]

[extensions.2001]
account = "acme"
allowed_cidrs = ["10.0.0.0/8"]
"#
);

pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub admin: String,
    pub pbx: String,
    pub reader: String,
    /// The FastAGI address, when the policy has `[agi]`.
    pub agi: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tollgate serve` with `policy` written into `dir` (database in `dir` too).
pub fn start_in(dir: &Path, policy: &str) -> Server {
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&policy_path)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reader = BufReader::new(stdout);
    let mut agi = None;
    while !line.starts_with("listening on ") {
        line.clear();
        assert!(Instant::now() < deadline, "server did not start");
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("server exited before listening: {:?}", child.wait());
        }
        if let Some(addr) = line.trim().strip_prefix("agi listening on ") {
            agi = Some(addr.to_string());
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    let addr = line.trim().trim_start_matches("listening on ").to_string();
    let token = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    Server {
        child,
        base: format!("http://{addr}"),
        dir: dir.to_path_buf(),
        admin: token("admin.token"),
        pbx: token("pbx.token"),
        reader: token("reader.token"),
        agi,
    }
}

impl Server {
    /// Sends a request; returns the status and the JSON body (Null when not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        let mut request = agent.request(method, &format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(body),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn post(&self, path: &str, token: &str, body: &str) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(body))
    }

    pub fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None)
    }

    pub fn authorize(
        &self,
        call_id: &str,
        extension: &str,
        ip: &str,
        number: &str,
    ) -> (u16, Value) {
        let body = serde_json::json!({ "call_id": call_id, "extension": extension, "source_ip": ip, "number": number });
        self.post("/v1/calls/authorize", &self.pbx, &body.to_string())
    }

    /// The extension's level of its credit report.
    pub fn credit(&self, extension: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/extensions/{extension}/credit"), &self.reader);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Stops the server with SIGKILL (no chance to flush anything).
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

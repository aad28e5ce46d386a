//! The Kamailio adapter against a real Kamailio (Debian's 5.6) on loopback, configured with
//! `examples/kamailio/hangup.cfg` (xhttp + jsonrpcs + dialog):
//!
//! - an unknown dialog, by reference and by Call-ID, is `Ended::NotFound` (the request and
//!   the error parsing against the real server), and a wrong URL path is an error, never
//!   "not found";
//! - a real call, SIPp caller → Kamailio → SIPp callee, is ended by `end_call`, by its
//!   dialog reference (read from Kamailio's log, as the cfg would send it at authorize) and
//!   by its Call-ID alone: both SIPp ends receive Kamailio's BYE with tollgate's `Reason`
//!   header, answer it, and exit successfully.
//!
//! Needs Debian's kamailio and sip-tester (`./scripts/test` installs them): the test fails,
//! naming the package, when one is missing. Everything listens on 127.0.0.1 with ports
//! picked free; every external program runs under `timeout`, every wait has a deadline, and
//! Kamailio's and SIPp's process groups are stopped in `Drop`, also on failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_hangup::{CallHandle, CallTerminator, Ended, HangupConfig, HangupError};

const REASON: &str = "tollgate test: extension 1001 suspended";

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

fn require(program: &str, package: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| {
        panic!(
            "this test needs `{program}`: install Debian's `{package}` package \
             (run ./scripts/test, which installs the test dependencies)"
        )
    })
}

/// A port nobody listens on now, for UDP (SIP) or TCP (HTTP).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Kamailio on loopback with the example endpoint, and the SIPp ends of calls.
struct Lab {
    dir: tempfile::TempDir,
    timeout: PathBuf,
    sipp: PathBuf,
    sip_port: u16,
    http_port: u16,
    /// A second TCP listener (as a SIP-over-TCP one would be), where the endpoint must not
    /// answer.
    other_tcp_port: u16,
    /// Process groups to stop (each program runs under `timeout`, which leads its group).
    children: Vec<(String, Child)>,
    /// Children reaped already (their group is empty: SIPp does not fork), whose pid must
    /// not be signalled any more.
    reaped: Vec<String>,
}

impl Lab {
    fn start() -> Lab {
        let kamailio = require("kamailio", "kamailio");
        let sipp = require("sipp", "sip-tester");
        let timeout = require("timeout", "coreutils");
        let modules = Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules");
        assert!(
            modules.join("xhttp.so").is_file() && modules.join("jsonrpcs.so").is_file(),
            "Kamailio's xhttp and jsonrpcs modules are missing from {modules:?}: install \
             Debian's `kamailio` package (run ./scripts/test)"
        );
        let dir = tempfile::tempdir().unwrap();
        let sip_port = free_udp_port();
        let http_port = free_tcp_port();
        let other_tcp_port = free_tcp_port();
        let mut lab = Lab {
            dir,
            timeout,
            sipp,
            sip_port,
            http_port,
            other_tcp_port,
            children: Vec::new(),
            reaped: Vec::new(),
        };
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/kamailio/hangup.cfg")
            .canonicalize()
            .unwrap();
        let cfg = lab.dir.path().join("kamailio.cfg");
        fs::write(
            &cfg,
            kamailio_cfg(sip_port, http_port, other_tcp_port, &example, modules),
        )
        .unwrap();
        let rundir = lab.dir.path().join("run");
        fs::create_dir(&rundir).unwrap();
        let log = fs::File::create(lab.dir.path().join("kamailio.log")).unwrap();
        let child = lab
            .bounded(Duration::from_secs(120), &kamailio)
            .args(["-f", cfg.to_str().unwrap(), "-DD", "-E", "-Y"])
            .arg(&rundir)
            .args(["-m", "1024", "-M", "64"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        lab.children.push(("kamailio".into(), child));
        lab.wait_for_http();
        lab
    }

    /// `timeout` around a program, in a process group of its own.
    fn bounded(&self, limit: Duration, program: &Path) -> Command {
        let mut cmd = Command::new(&self.timeout);
        cmd.args(["-k", "2", &limit.as_secs().to_string()])
            .arg(program)
            .current_dir(self.dir.path())
            .process_group(0);
        cmd
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.path().join("kamailio.log")).unwrap_or_default())
            .into_owned()
    }

    fn wait_for_http(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", self.http_port)).is_ok() {
                return;
            }
            if let Some(status) = self.children[0].1.try_wait().unwrap() {
                panic!(
                    "kamailio exited ({status}) before its HTTP port answered:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "kamailio's HTTP port {} did not answer within 15 s:\n{}",
                self.http_port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/RPC", self.http_port)
    }

    fn terminator(&self, url: &str) -> Arc<dyn CallTerminator> {
        let config: HangupConfig = toml::from_str(&format!(
            "timeout_s = 5\nkamailio = {{ url = \"{url}\" }}\n"
        ))
        .unwrap();
        config.build().unwrap().remove(0)
    }

    /// A JSON-RPC call made by the test itself (to watch the dialog's state).
    fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let response = match ureq::post(&self.url()).send_string(&body.to_string()) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method}: {e}"),
        };
        serde_json::from_str(&response.into_string().unwrap()).unwrap()
    }

    /// Starts SIPp with `scenario` (in tests/kamailio/) on `port`; `extra` are its last
    /// arguments (the target, for the caller).
    fn sipp(&mut self, name: &str, scenario: &str, port: u16, extra: &[String]) {
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/kamailio")
            .join(scenario);
        let out = fs::File::create(self.dir.path().join(format!("{name}.out"))).unwrap();
        let child = self
            .bounded(Duration::from_secs(40), &self.sipp.clone())
            .arg("-sf")
            .arg(&scenario)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "1",
                "-nostdin",
            ])
            .args([
                "-default_behaviors",
                "all,-abortunexp",
                "-trace_msg",
                "-message_file",
            ])
            .arg(self.dir.path().join(format!("{name}.msg")))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.children.push((name.into(), child));
    }

    /// Waits until a UDP port is taken (SIPp is listening), at most 10 s.
    fn wait_for_udp(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "SIPp did not bind port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the SIPp run `name` to end, at most `limit`.
    fn wait_for(&mut self, name: &str, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let index = self.children.iter().position(|(n, _)| n == name).unwrap();
        loop {
            if let Some(status) = self.children[index].1.try_wait().unwrap() {
                self.reaped.push(name.to_owned());
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "SIPp {name} did not end within {limit:?}:\n{}",
                self.read(&format!("{name}.out"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn read(&self, file: &str) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.path().join(file)).unwrap_or_default())
            .into_owned()
    }

    /// Places a call SIPp caller → Kamailio → SIPp callee and waits until Kamailio has the
    /// dialog confirmed. Returns the Call-ID and the dialog reference the cfg computed
    /// (`$var(tollgate_pbx_ref)`, logged by the test cfg where a real one would send it to
    /// tollgate's authorize).
    fn place_call(&mut self) -> (String, String) {
        let (uas_port, uac_port) = (free_udp_port(), free_udp_port());
        // The cfg routes every initial INVITE to the port in the Request-URI's user part.
        self.sipp("uas", "uas.xml", uas_port, &[]);
        self.wait_for_udp(uas_port);
        let target = format!("127.0.0.1:{}", self.sip_port);
        self.sipp(
            "uac",
            "uac.xml",
            uac_port,
            &["-s".into(), uas_port.to_string(), target],
        );

        let deadline = Instant::now() + Duration::from_secs(15);
        let (call_id, pbx_ref) = loop {
            let log = self.log();
            let found = log.lines().find_map(|line| {
                let rest = line.split("TOLLGATE-TEST ").nth(1)?;
                let call_id = rest.split("ci=").nth(1)?.split(' ').next()?;
                let pbx_ref = rest.split("pbx_ref=").nth(1)?.trim();
                Some((call_id.to_owned(), pbx_ref.to_owned()))
            });
            if let Some(found) = found {
                break found;
            }
            assert!(
                Instant::now() < deadline,
                "Kamailio did not route the INVITE within 15 s:\n{log}\n--- uac ---\n{}",
                self.read("uac.out")
            );
            std::thread::sleep(Duration::from_millis(50));
        };

        // Confirmed (state 4) once the 200 and the ACK went through.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let reply = self.rpc("dlg.dlg_list", serde_json::json!([call_id]));
            if reply["result"]["state"] == 4 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the dialog was not confirmed within 15 s: {reply}\n--- uac ---\n{}\n--- uas ---\n{}",
                self.read("uac.out"),
                self.read("uas.out")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (call_id, pbx_ref)
    }

    /// Both SIPp ends got the BYE (with tollgate's Reason), answered it and passed.
    fn assert_both_ends_got_the_bye(&mut self) {
        for name in ["uac", "uas"] {
            let status = self.wait_for(name, Duration::from_secs(30));
            let trace = self.read(&format!("{name}.msg"));
            assert!(
                status.success(),
                "SIPp {name} failed ({status}):\n{}\n--- messages ---\n{trace}",
                self.read(&format!("{name}.out"))
            );
            let bye = trace
                .split("\n\n")
                .find(|m| m.contains("BYE sip:"))
                .unwrap_or_else(|| panic!("SIPp {name} received no BYE:\n{trace}"));
            assert!(
                bye.contains(&format!("Reason: Q.850;cause=21;text=\"{REASON}\"")),
                "the BYE to {name} lacks tollgate's Reason header:\n{bye}"
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- kamailio.log (end) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        // TERM to each group (the program and its children: Kamailio forks workers), then
        // KILL to what is left. The groups are ours: each was made for a child we spawned,
        // with `timeout` as its leader, so the group id is the child's pid.
        let mut pending: Vec<(&mut Child, String)> = self
            .children
            .iter_mut()
            .filter(|(name, _)| !self.reaped.contains(name))
            .map(|(_, child)| {
                let group = format!("-{}", child.id());
                (child, group)
            })
            .collect();
        for signal in ["-TERM", "-KILL"] {
            pending.retain_mut(|(child, group)| group_alive(child, group));
            for (_, group) in &pending {
                // The shell's own `kill` (dash's takes no `--`: a negative pid follows the
                // signal directly).
                let _ = Command::new("sh")
                    .args(["-c", "kill \"$@\" 2>/dev/null", "kill", signal, group])
                    .status();
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while !pending.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                pending.retain_mut(|(child, group)| group_alive(child, group));
            }
        }
        drop(pending);
        for (name, child) in &mut self.children {
            if !self.reaped.contains(name) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Whether the process group `group` (`-PGID`) of `leader` still has a process: the
/// leader is reaped first (a zombie still counts for `kill -0`), then `kill -0` to the group.
fn group_alive(leader: &mut Child, group: &str) -> bool {
    let _ = leader.try_wait();
    Command::new("sh")
        .args(["-c", "kill -0 \"$1\" 2>/dev/null", "kill", group])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The Kamailio configuration of the test: a record-routing proxy that tracks dialogs
/// through the example's route and sends each initial INVITE to 127.0.0.1 at the port in
/// its Request-URI's user part (the SIPp callee).
fn kamailio_cfg(
    sip_port: u16,
    http_port: u16,
    other_tcp_port: u16,
    example: &Path,
    modules: &Path,
) -> String {
    format!(
        r#"#!KAMAILIO
#!define TOLLGATE_RPC_PORT {http_port}
debug=2
log_stderror=yes
children=2
tcp_children=2
dns=no
rev_dns=no
listen=udp:127.0.0.1:{sip_port}
listen=tcp:127.0.0.1:{http_port}
listen=tcp:127.0.0.1:{other_tcp_port}
mpath="{modules}/"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "dialog.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
modparam("jsonrpcs", "transport", 1)

include_file "{example}"

request_route {{
	if (is_method("INVITE") && !has_totag()) {{
		record_route();
		route(TOLLGATE_DIALOG);
		xlog("L_NOTICE", "TOLLGATE-TEST ci=$ci pbx_ref=$var(tollgate_pbx_ref)\n");
		$du = "sip:127.0.0.1:" + $rU;
		t_relay();
		exit;
	}}
	if (has_totag()) {{
		if (loose_route()) {{
			t_relay();
			exit;
		}}
		if (is_method("ACK") && t_check_trans()) {{
			t_relay();
		}}
		exit;
	}}
	if (is_method("CANCEL")) {{
		if (t_check_trans()) {{
			t_relay();
		}}
		exit;
	}}
	sl_send_reply("405", "Method Not Allowed");
}}
"#,
        modules = modules.display(),
        example = example.display(),
    )
}

#[test]
fn an_unknown_dialog_is_not_found_and_a_wrong_path_is_an_error() {
    let lab = Lab::start();
    let t = lab.terminator(&lab.url());

    let by_ref = CallHandle::new("nobody@127.0.0.1", Some("1:1".into()));
    assert_eq!(t.end_call(&by_ref, REASON).unwrap(), Ended::NotFound);
    let by_call_id = CallHandle::new("nobody@127.0.0.1", None);
    assert_eq!(t.end_call(&by_call_id, REASON).unwrap(), Ended::NotFound);

    // The endpoint answers 404 outside /RPC, without JSON-RPC: not "already gone".
    let wrong = lab.terminator(&format!("http://127.0.0.1:{}/nope", lab.http_port));
    let err = wrong.end_call(&by_ref, REASON).unwrap_err();
    assert!(matches!(err, HangupError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("404"), "{err}");

    // xhttp answers on every TCP listener; the example's route serves JSON-RPC only on
    // TOLLGATE_RPC_PORT and refuses the others with 403.
    let other = lab.terminator(&format!("http://127.0.0.1:{}/RPC", lab.other_tcp_port));
    let err = other.end_call(&by_ref, REASON).unwrap_err();
    assert!(matches!(err, HangupError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("403"), "{err}");

    // Nothing listening: a transient error, worth a retry.
    let closed = lab.terminator(&format!("http://127.0.0.1:{}/RPC", free_tcp_port()));
    let err = closed.end_call(&by_ref, REASON).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[test]
fn ends_a_real_call_by_its_dialog_reference() {
    let mut lab = Lab::start();
    let t = lab.terminator(&lab.url());
    let (call_id, pbx_ref) = lab.place_call();
    assert!(
        pbx_ref.split(':').count() == 2 && pbx_ref.split(':').all(|n| n.parse::<u32>().is_ok()),
        "the cfg's pbx_ref is not h_entry:h_id: {pbx_ref:?}"
    );
    let call = CallHandle::new(call_id, Some(pbx_ref));
    assert_eq!(t.end_call(&call, REASON).unwrap(), Ended::Ended);
    lab.assert_both_ends_got_the_bye();
    // Ended once: Kamailio does not know it any more.
    assert_eq!(t.end_call(&call, REASON).unwrap(), Ended::NotFound);
}

#[test]
fn ends_a_real_call_by_its_call_id_alone() {
    let mut lab = Lab::start();
    let t = lab.terminator(&lab.url());
    let (call_id, _) = lab.place_call();
    let call = CallHandle::new(call_id, None);
    assert_eq!(t.end_call(&call, REASON).unwrap(), Ended::Ended);
    lab.assert_both_ends_got_the_bye();
}

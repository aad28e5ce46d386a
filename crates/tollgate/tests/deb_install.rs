//! The Debian package, installed for real in a throwaway Debian root: it builds the `.deb`
//! with cargo-deb, unpacks a minimal bookworm (made once with `debootstrap` and cached as a
//! tarball under `target/deb-install/`), and inside it with `chroot`:
//!
//! 1. `dpkg -i`: the binary, the policy (a conffile), the unit, the `tollgate` system user
//!    and `/var/lib/tollgate` (theirs, 0750) land where the README says;
//! 2. `systemd-analyze verify` accepts the unit and `systemd-analyze security` scores it;
//! 3. the installed binary, run as systemd would (the unit's `ExecStart`, as `tollgate`),
//!    starts on the packaged policy, writes its state in `/var/lib/tollgate`, answers
//!    `/healthz` and the API with the token it created, reloads on SIGHUP and stops on
//!    SIGTERM;
//! 4. upgrades keep a locally edited policy: silently when the new package's policy is the
//!    same, and with `--force-confold` (the new one beside it as `.dpkg-dist`) when it changed.
//!
//! Every command in the root runs as `unshare --mount-proc=ROOT/proc chroot ROOT ...`: /proc
//! is mounted in a private mount namespace that ends with the command, so no mount outlives
//! it even when the test is killed, and removing the root can never reach through a mount
//! into the host (`Drop` checks that none is left before deleting anything). debootstrap runs
//! in its own mount namespace for the same reason.
//!
//! The `.deb` is rebuilt only when a source is newer than the cached one
//! (`TOLLGATE_DEB_REBUILD=1` forces it). It is built with the dev profile the test suite
//! already uses (CI stays on one profile); the README builds the package with release. The upgrade packages are the first one repacked with `dpkg-deb` under a higher
//! version, so they need no second build.
//!
//! Needs root, cargo-deb and Debian's debootstrap, systemd (systemd-analyze), util-linux
//! (unshare) and dpkg (`./scripts/test` installs them); fails, naming what to install, when
//! one is missing. Every external program runs under `timeout`; each run has its own folder
//! and the server listens on a port it picks (`--listen 127.0.0.1:0`), so runs in parallel
//! do not collide.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The cargo-deb the package is built and documented with (README, `scripts/test`).
const CARGO_DEB_VERSION: &str = "3.8.0";
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Added to minbase: the package's Depends that minbase lacks (procps for `/bin/kill`),
/// and systemd, so that `systemd-analyze verify --root` finds the units ours refers to.
const INCLUDE: &[&str] = &["procps", "systemd"];

const POLICY: &str = "/etc/tollgate/tollgate.toml";
const UNIT: &str = "/lib/systemd/system/tollgate.service";
const STATE: &str = "/var/lib/tollgate";
/// A local edit to the policy that must survive upgrades.
const EDIT_FROM: &str = "max_body_bytes = 65536\n";
const EDIT_TO: &str = "max_body_bytes = 32768   # edited on this server\n";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

// ---------------------------------------------------------------------------------------
// Tools, bounded commands, timings

struct Tools {
    timeout: PathBuf,
    unshare: PathBuf,
    chroot: PathBuf,
    debootstrap: PathBuf,
    tar: PathBuf,
    dpkg_deb: PathBuf,
    systemd_analyze: PathBuf,
    kill: PathBuf,
    md5sum: PathBuf,
    cargo: PathBuf,
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

/// Fails at once, naming what to install, when something the test needs is missing.
fn require_tools() -> Tools {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "deb_install needs root (debootstrap, chroot, dpkg in the root): run the tests as root"
    );
    let get = |program: &str, package: &str| {
        find_program(program).unwrap_or_else(|| {
            panic!(
                "deb_install needs `{program}`: install Debian's `{package}` package \
                 (./scripts/test installs the test dependencies)"
            )
        })
    };
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| find_program("cargo"))
        .expect("deb_install needs cargo (run it with `cargo test`)");
    let tools = Tools {
        timeout: get("timeout", "coreutils"),
        unshare: get("unshare", "util-linux"),
        chroot: get("chroot", "coreutils"),
        debootstrap: get("debootstrap", "debootstrap"),
        tar: get("tar", "tar"),
        dpkg_deb: get("dpkg-deb", "dpkg"),
        systemd_analyze: get("systemd-analyze", "systemd"),
        kill: get("kill", "procps"),
        md5sum: get("md5sum", "coreutils"),
        cargo,
    };
    let version = Command::new(&tools.cargo)
        .args(["deb", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| {
            panic!(
                "deb_install needs cargo-deb: cargo install cargo-deb --version {CARGO_DEB_VERSION} \
                 --locked (./scripts/test installs it)"
            )
        });
    if !version.ends_with(CARGO_DEB_VERSION) {
        println!("note: {version}, the package is documented with cargo-deb {CARGO_DEB_VERSION}");
    }
    tools
}

/// `timeout` around every external program, so that none can hang the test; `-k` kills it
/// if it ignores the TERM.
fn bounded(tools: &Tools, limit: Duration, program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(&tools.timeout);
    cmd.args(["-k", "5", &format!("{:.0}", limit.as_secs_f64())])
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn output(mut cmd: Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn check_ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}{}):\n{}\n{}",
        out.status,
        if out.status.code() == Some(124) {
            ", timed out"
        } else {
            ""
        },
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_ok(tools: &Tools, limit: Duration, program: &Path, args: &[&str]) -> String {
    let what = format!("{} {}", program.display(), args.join(" "));
    check_ok(output(bounded(tools, limit, program, args), &what), &what)
}

/// Prints each stage's duration as it ends, and all of them at the end.
struct Timings {
    start: Instant,
    stages: Vec<(String, Duration)>,
}

impl Timings {
    fn new() -> Timings {
        Timings {
            start: Instant::now(),
            stages: Vec::new(),
        }
    }

    fn stage<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        println!("stage {name} ...");
        let value = f();
        let took = start.elapsed();
        println!("stage {name}: {:.1} s", took.as_secs_f64());
        self.stages.push((name.to_string(), took));
        value
    }

    fn print(&self) {
        println!("timings:");
        for (name, took) in &self.stages {
            println!("  {name:<54} {:>7.1} s", took.as_secs_f64());
        }
        println!(
            "  {:<54} {:>7.1} s",
            "total",
            self.start.elapsed().as_secs_f64()
        );
    }
}

// ---------------------------------------------------------------------------------------
// The package

/// The newest modification time of what goes into the package.
fn newest_source(ws: &Path) -> SystemTime {
    fn walk(path: &Path, newest: &mut SystemTime) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if let Ok(modified) = meta.modified() {
            *newest = (*newest).max(modified);
        }
        if meta.is_dir() {
            for entry in fs::read_dir(path).into_iter().flatten().flatten() {
                if !entry.file_name().to_string_lossy().starts_with('.') {
                    walk(&entry.path(), newest);
                }
            }
        }
    }
    let mut newest = UNIX_EPOCH;
    for part in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "crates",
        "packaging",
        "examples",
    ] {
        walk(&ws.join(part), &mut newest);
    }
    newest
}

/// `cargo deb -p tollgate`, or the cached package when it is newer than every source.
fn build_deb(tools: &Tools, cache: &Path) -> PathBuf {
    let ws = workspace();
    let cached = cache.join("tollgate.deb");
    let fresh = fs::metadata(&cached)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built > newest_source(&ws));
    if fresh && std::env::var_os("TOLLGATE_DEB_REBUILD").is_none() {
        println!(
            "reusing {} (newer than the sources; TOLLGATE_DEB_REBUILD=1 rebuilds)",
            cached.display()
        );
        return cached;
    }
    let out = cache.join(unique("build"));
    let manifest = ws.join("Cargo.toml");
    let args = [
        "deb",
        "-p",
        "tollgate",
        "--locked",
        // The test's build profile, not release: CI stays on one profile (the package is
        // the same but for the binary's optimisation; README builds it with release).
        "--profile",
        "dev",
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--output",
        &format!("{}/", out.display()),
    ];
    let mut cmd = bounded(tools, Duration::from_secs(3600), &tools.cargo, &args);
    // Without the variables `cargo test` sets for this test: build scripts that watch
    // them (ring watches CARGO_MANIFEST_DIR) would make this build differ from a plain
    // `cargo deb` / `cargo build --release`, and each would rebuild after the other.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cmd.env_remove(name.as_ref());
        }
    }
    check_ok(output(cmd, "cargo deb"), "cargo deb -p tollgate");
    let deb = fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("cargo deb wrote no .deb in {}", out.display()));
    // Renamed into place: a concurrent run reads either the old package or the new one.
    fs::rename(&deb, &cached).unwrap();
    fs::remove_dir_all(&out).unwrap();
    cached
}

fn deb_field(tools: &Tools, deb: &Path, field: &str) -> String {
    run_ok(
        tools,
        Duration::from_secs(60),
        &tools.dpkg_deb,
        &["-f", deb.to_str().unwrap(), field],
    )
    .trim()
    .to_string()
}

/// The package again under `version`, its policy with `policy_extra` appended: what an
/// upgrade brings, without a second build.
fn repack(
    tools: &Tools,
    deb: &Path,
    work: &Path,
    version: &str,
    policy_extra: Option<&str>,
) -> PathBuf {
    let dir = work.join(format!("repack-{version}"));
    let long = Duration::from_secs(300);
    run_ok(
        tools,
        long,
        &tools.dpkg_deb,
        &["-R", deb.to_str().unwrap(), dir.to_str().unwrap()],
    );
    let control = dir.join("DEBIAN/control");
    let text = fs::read_to_string(&control).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version: ") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(&control, text).unwrap();
    if let Some(extra) = policy_extra {
        let policy = dir.join(POLICY.trim_start_matches('/'));
        let mut text = fs::read_to_string(&policy).unwrap();
        text.push_str(extra);
        fs::write(&policy, text).unwrap();
    }
    let out = work.join(format!("tollgate_{version}.deb"));
    run_ok(
        tools,
        long,
        &tools.dpkg_deb,
        &[
            "-Zgzip",
            "-z1",
            "--root-owner-group",
            "-b",
            dir.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    fs::remove_dir_all(&dir).unwrap();
    out
}

// ---------------------------------------------------------------------------------------
// The root

/// The cached minimal root, made with debootstrap on first use.
fn root_tarball(tools: &Tools, cache: &Path) -> PathBuf {
    let tarball = cache.join(format!("{SUITE}-minbase-{}.tar", INCLUDE.join("-")));
    if tarball.is_file() {
        println!("reusing {}", tarball.display());
        return tarball;
    }
    let dir = cache.join(unique("debootstrap"));
    let include = format!("--include={}", INCLUDE.join(","));
    // Its own mount namespace: whatever debootstrap mounts in the root ends with it.
    let out = output(
        bounded(
            tools,
            Duration::from_secs(1800),
            &tools.unshare,
            &[
                "--mount",
                tools.debootstrap.to_str().unwrap(),
                "--variant=minbase",
                &include,
                SUITE,
                dir.to_str().unwrap(),
                MIRROR,
            ],
        ),
        "debootstrap",
    );
    if !out.status.success() {
        let log = fs::read_to_string(dir.join("debootstrap/debootstrap.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        remove_tree(&dir);
        panic!(
            "debootstrap {SUITE} from {MIRROR} failed ({}; is the mirror reachable?):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail.join("\n")
        );
    }
    // The downloaded packages are not needed in the root.
    for entry in fs::read_dir(dir.join("var/cache/apt/archives"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "deb") {
            fs::remove_file(entry.path()).unwrap();
        }
    }
    let part = cache.join(unique("root-tar"));
    run_ok(
        tools,
        Duration::from_secs(600),
        &tools.tar,
        &[
            "--numeric-owner",
            "-C",
            dir.to_str().unwrap(),
            "-cf",
            part.to_str().unwrap(),
            ".",
        ],
    );
    fs::rename(&part, &tarball).unwrap();
    remove_tree(&dir);
    tarball
}

/// Mount points at or under `dir`, from this process's mount table.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// Removes a folder that may hold a Debian root, but never through a mount.
fn remove_tree(dir: &Path) {
    let mounts = mounts_under(dir);
    if mounts.is_empty() {
        let _ = fs::remove_dir_all(dir);
    } else {
        eprintln!(
            "not removing {}: mounts are left under it: {mounts:?}",
            dir.display()
        );
    }
}

/// One run: its folder (with the root in it) and the server started in the root. The
/// folder is removed when the test passes and kept, for a look, when it fails.
struct Run {
    tools: Tools,
    dir: PathBuf,
    root: PathBuf,
    server: Option<Server>,
}

struct Server {
    /// The `timeout` around the server.
    child: Child,
    /// tollgate itself (`unshare` and `chroot` exec it: the child of `timeout`).
    pid: u32,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = Command::new(&self.tools.kill)
                .args(["-KILL", &server.pid.to_string()])
                .status();
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "deb_install failed: its root is kept in {}",
                self.dir.display()
            );
        } else {
            remove_tree(&self.dir);
        }
    }
}

impl Run {
    fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside.trim_start_matches('/'))
    }

    /// `unshare --mount-proc=ROOT/proc chroot [--userspec=U:G] ROOT ARGS`, bounded, with a
    /// clean environment.
    fn in_root(&self, limit: Duration, userspec: Option<&str>, args: &[&str]) -> Command {
        let mount_proc = format!("--mount-proc={}", self.path("/proc").display());
        let mut argv = vec![mount_proc, self.tools.chroot.to_string_lossy().to_string()];
        if let Some(spec) = userspec {
            argv.push(format!("--userspec={spec}"));
        }
        argv.push(self.root.to_string_lossy().to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut cmd = bounded(&self.tools, limit, &self.tools.unshare, &argv);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .env("HOME", "/root")
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    fn in_root_ok(&self, args: &[&str]) -> String {
        let what = format!("in the root: {}", args.join(" "));
        check_ok(
            output(self.in_root(Duration::from_secs(300), None, args), &what),
            &what,
        )
    }

    /// `dpkg -i` of a package copied into the root's /tmp.
    fn dpkg_install(&self, deb: &Path, options: &[&str]) -> String {
        let name = deb.file_name().unwrap().to_string_lossy().to_string();
        fs::copy(deb, self.path("/tmp").join(&name)).unwrap();
        let inside = format!("/tmp/{name}");
        let mut args = vec!["dpkg"];
        args.extend_from_slice(options);
        args.extend(["-i", inside.as_str()]);
        let out = self.in_root_ok(&args);
        fs::remove_file(self.path(&inside)).unwrap();
        out
    }

    /// uid, gid, home and shell of a user of the root.
    fn user(&self, name: &str) -> Option<(u32, u32, String, String)> {
        fs::read_to_string(self.path("/etc/passwd"))
            .unwrap()
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() == 7 && f[0] == name)
            .map(|f| {
                (
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[5].to_string(),
                    f[6].to_string(),
                )
            })
    }

    fn md5(&self, inside: &str) -> String {
        let out = run_ok(
            &self.tools,
            Duration::from_secs(60),
            &self.tools.md5sum,
            &[self.path(inside).to_str().unwrap()],
        );
        out.split_whitespace().next().unwrap().to_string()
    }

    /// `dpkg-query -W -f FORMAT tollgate`.
    fn query(&self, format: &str) -> String {
        self.in_root_ok(&["dpkg-query", "-W", "-f", format, "tollgate"])
    }
}

// ---------------------------------------------------------------------------------------
// The server in the root

/// The unit's `ExecStart` and `User`.
fn unit_exec_and_user(unit: &str) -> (Vec<String>, String) {
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("the unit has no {key}"))
            .to_string()
    };
    let exec = value("ExecStart=")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (exec, value("User="))
}

fn start_server(run: &mut Run, exec: &[String], userspec: &str) {
    let mut args: Vec<&str> = exec.iter().map(String::as_str).collect();
    args.extend(["--listen", "127.0.0.1:0"]);
    let mut cmd = run.in_root(Duration::from_secs(600), Some(userspec), &args);
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (tx, stdout) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let timeout_pid = child.id();
    run.server = Some(Server {
        child,
        pid: 0,
        stdout,
        stderr,
    });
    let server = run.server.as_mut().unwrap();
    // `timeout`'s one child, which `unshare` and `chroot` have become by exec.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = child_of(timeout_pid) {
            if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "tollgate")
            {
                server.pid = pid;
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start: {:?}",
            server.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process whose parent is `parent` (from /proc/PID/stat: the field after the command).
fn child_of(parent: u32) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}

fn server_address(run: &Run) -> String {
    let server = run.server.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.stdout.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return addr.to_string();
                }
            }
            Err(e) => panic!(
                "the installed tollgate did not print `listening on` ({e}); its log:\n{}",
                server.stderr.lock().unwrap().join("\n")
            ),
        }
    }
}

fn wait_for_log(run: &Run, what: &str, limit: Duration) {
    let server = run.server.as_ref().unwrap();
    let deadline = Instant::now() + limit;
    while !server
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains(what))
    {
        assert!(
            Instant::now() < deadline,
            "the server did not log {what:?} within {limit:?}; its log:\n{}",
            server.stderr.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(run: &Run, name: &str) {
    let pid = run.server.as_ref().unwrap().pid.to_string();
    run_ok(
        &run.tools,
        Duration::from_secs(10),
        &run.tools.kill,
        &[&format!("-{name}"), &pid],
    );
}

fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------

#[test]
fn deb_installs_serves_and_keeps_the_edited_policy_on_upgrade() {
    let tools = require_tools();
    let mut timings = Timings::new();
    let cache = target_dir().join("deb-install");
    fs::create_dir_all(&cache).unwrap();
    let ws = workspace();

    let deb = timings.stage("build the package (cargo deb)", || {
        build_deb(&tools, &cache)
    });
    let version = deb_field(&tools, &deb, "Version");
    let depends = deb_field(&tools, &deb, "Depends");
    println!(
        "package {} version {version}, Depends: {depends}",
        deb.display()
    );

    let tarball = timings.stage("debootstrap or cached root", || {
        root_tarball(&tools, &cache)
    });
    let dir = cache.join(unique("run"));
    let mut run = Run {
        tools,
        root: dir.join("root"),
        dir,
        server: None,
    };
    timings.stage("unpack the root", || {
        fs::create_dir_all(&run.root).unwrap();
        run_ok(
            &run.tools,
            Duration::from_secs(600),
            &run.tools.tar,
            &[
                "--numeric-owner",
                "-xpf",
                tarball.to_str().unwrap(),
                "-C",
                run.root.to_str().unwrap(),
            ],
        );
    });

    // 1. Install: files, user, state folder, conffile.
    let (uid, gid) = timings.stage("dpkg -i and the installed files", || {
        let out = run.dpkg_install(&deb, &[]);
        println!("{}", out.trim());
        let binary = fs::metadata(run.path("/usr/bin/tollgate")).unwrap();
        assert!(binary.is_file() && binary.permissions().mode() & 0o777 == 0o755);
        assert_eq!(
            fs::read_to_string(run.path(POLICY)).unwrap(),
            fs::read_to_string(ws.join("packaging/tollgate.toml")).unwrap(),
            "{POLICY} is not packaging/tollgate.toml"
        );
        assert_eq!(
            fs::read_to_string(run.path(UNIT)).unwrap(),
            fs::read_to_string(ws.join("packaging/debian/tollgate.service")).unwrap(),
            "{UNIT} is not packaging/debian/tollgate.service"
        );
        let (uid, gid, home, shell) = run
            .user("tollgate")
            .expect("postinst created no `tollgate` user");
        assert!(uid < 1000, "tollgate is not a system user (uid {uid})");
        assert_eq!(
            (home.as_str(), shell.as_str()),
            (STATE, "/usr/sbin/nologin")
        );
        let group = fs::read_to_string(run.path("/etc/group")).unwrap();
        assert!(
            group
                .lines()
                .any(|l| l.starts_with(&format!("tollgate:x:{gid}:"))),
            "no `tollgate` group with gid {gid}"
        );
        let state = fs::metadata(run.path(STATE)).unwrap();
        assert!(state.is_dir());
        assert_eq!((state.uid(), state.gid()), (uid, gid), "{STATE} owner");
        assert_eq!(state.permissions().mode() & 0o7777, 0o750, "{STATE} mode");
        let conffiles = run.query("${Conffiles}");
        assert!(
            conffiles.contains(POLICY),
            "{POLICY} is not a conffile: {conffiles:?}"
        );
        let check = run.in_root_ok(&["tollgate", "check", POLICY]);
        assert!(check.contains(": ok: "), "{check}");
        (uid, gid)
    });
    let pristine_md5 = run.md5(POLICY);

    // 2. The unit: verify, score, enable.
    timings.stage("systemd-analyze verify and security", || {
        let root_arg = format!("--root={}", run.root.display());
        let out = output(
            bounded(
                &run.tools,
                Duration::from_secs(120),
                &run.tools.systemd_analyze,
                &["verify", &root_arg, UNIT],
            ),
            "systemd-analyze verify",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {UNIT} ({}):\n{stderr}",
            out.status
        );
        let security = run_ok(
            &run.tools,
            Duration::from_secs(120),
            &run.tools.systemd_analyze,
            &["security", "--offline=true", &root_arg, "tollgate.service"],
        );
        let score_line = security
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no score in:\n{security}"));
        println!("{}", score_line.trim());
        let score: f64 = score_line
            .split(": ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the score in {score_line:?}"));
        assert!(
            score <= 2.5,
            "the unit's hardening got weaker: exposure {score} (README quotes 1.9)"
        );
        run.in_root_ok(&["systemctl", "enable", "tollgate.service"]);
        assert!(run
            .path("/etc/systemd/system/multi-user.target.wants/tollgate.service")
            .symlink_metadata()
            .is_ok());
    });

    // 3. The installed binary, as the unit runs it.
    let admin_token = timings.stage("serve as the unit does, /healthz, SIGHUP, SIGTERM", || {
        let unit = fs::read_to_string(run.path(UNIT)).unwrap();
        let (exec, user) = unit_exec_and_user(&unit);
        assert_eq!(user, "tollgate");
        start_server(&mut run, &exec, &format!("{uid}:{gid}"));
        let address = server_address(&run);
        let base = format!("http://{address}");
        let (status, body) = get(&format!("{base}/healthz"), None);
        assert_eq!(status, 200, "{body}");
        println!("GET {base}/healthz: {status} {body}");

        for name in ["tollgate.db", "admin.token", "pbx.token"] {
            let meta = fs::metadata(run.path(&format!("{STATE}/{name}")))
                .unwrap_or_else(|e| panic!("{STATE}/{name}: {e}"));
            assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{name} owner");
            if name.ends_with(".token") {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name} mode");
            }
        }
        let token = fs::read_to_string(run.path(&format!("{STATE}/admin.token")))
            .unwrap()
            .trim()
            .to_string();
        let (status, body) = get(&format!("{base}/v1/bans"), Some(&token));
        assert_eq!(status, 200, "GET /v1/bans with the admin token: {body}");
        let (status, _) = get(&format!("{base}/v1/bans"), None);
        assert_eq!(status, 401, "GET /v1/bans without a token");

        signal(&run, "HUP");
        wait_for_log(&run, "SIGHUP: policy reloaded", Duration::from_secs(20));
        assert_eq!(get(&format!("{base}/healthz"), None).0, 200);

        signal(&run, "TERM");
        let mut server = run.server.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "tollgate did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = server.stderr.lock().unwrap().clone();
        assert!(
            status.success(),
            "tollgate exited with {status}:\n{}",
            log.join("\n")
        );
        for line in &log {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| {
                panic!("--log-format json wrote a line that is not JSON ({e}): {line}")
            });
        }
        assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
        token
    });

    // 4. Upgrades keep the edited policy.
    let policy_path = run.path(POLICY);
    let edited = fs::read_to_string(&policy_path)
        .unwrap()
        .replacen(EDIT_FROM, EDIT_TO, 1);
    assert!(
        edited.contains(EDIT_TO),
        "the policy has no {EDIT_FROM:?} to edit"
    );
    fs::write(&policy_path, &edited).unwrap();
    let leftovers = |run: &Run| -> Vec<String> {
        fs::read_dir(run.path("/etc/tollgate"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n != "tollgate.toml")
            .collect()
    };

    timings.stage("upgrade, same policy in the package", || {
        let v2 = format!("{version}+upgrade1");
        let deb2 = repack(&run.tools, &deb, &run.dir, &v2, None);
        let out = run.dpkg_install(&deb2, &[]);
        println!("{}", out.trim());
        assert_eq!(run.query("${Version}"), v2);
        assert_eq!(
            fs::read_to_string(&policy_path).unwrap(),
            edited,
            "the upgrade did not keep the edited {POLICY}"
        );
        assert_eq!(leftovers(&run), Vec::<String>::new());
        // dpkg still knows the packaged file's digest: it keeps the edit as a local change.
        let conffiles = run.query("${Conffiles}");
        assert!(
            conffiles.contains(&format!("{POLICY} {pristine_md5}")),
            "{conffiles:?} should hold {POLICY} with the packaged digest {pristine_md5}"
        );
        assert_ne!(run.md5(POLICY), pristine_md5);
        // The user, the state and the enabled unit are kept too.
        let (uid2, gid2, _, _) = run.user("tollgate").unwrap();
        assert_eq!((uid2, gid2), (uid, gid));
        let token = fs::read_to_string(run.path(&format!("{STATE}/admin.token"))).unwrap();
        assert_eq!(token.trim(), admin_token);
        assert!(run.path(&format!("{STATE}/tollgate.db")).is_file());
        assert!(run
            .path("/etc/systemd/system/multi-user.target.wants/tollgate.service")
            .symlink_metadata()
            .is_ok());
    });

    timings.stage(
        "upgrade, new policy in the package (--force-confold)",
        || {
            let v3 = format!("{version}+upgrade2");
            let extra = "# A line the next version added.\n";
            let deb3 = repack(&run.tools, &deb, &run.dir, &v3, Some(extra));
            let out = run.dpkg_install(&deb3, &["--force-confdef", "--force-confold"]);
            println!("{}", out.trim());
            assert_eq!(run.query("${Version}"), v3);
            assert_eq!(
                fs::read_to_string(&policy_path).unwrap(),
                edited,
                "the upgrade did not keep the edited {POLICY}"
            );
            let dist = fs::read_to_string(run.path(&format!("{POLICY}.dpkg-dist")))
                .expect("dpkg did not put the new policy beside the kept one as .dpkg-dist");
            assert!(dist.ends_with(extra));
            let check = run.in_root_ok(&["tollgate", "check", POLICY]);
            assert!(check.contains(": ok: "), "{check}");
        },
    );

    timings.print();
}

//! Running an external program (nft, ipset, iptables, a user hook) with a deadline, without a
//! shell: the argv goes to `execve` as is, so no value can be reinterpreted as shell syntax.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::EnforceError;

/// How much of a program's stdout we keep; the rest is drained and dropped so that the program
/// never blocks on a full pipe. 64 MiB holds the JSON of a set with about a million elements.
const STDOUT_CAP: u64 = 64 << 20;
/// How much of stderr ends up in an error message.
const STDERR_CAP: u64 = 64 << 10;
/// How long we wait, once the program has exited, for output still held open by a grandchild
/// (a hook that leaves a background job behind).
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// What a successful run printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: String,
}

enum Stream {
    Out,
    Err,
}

/// `argv` as a shell-like line for messages (arguments with spaces quoted).
pub(crate) fn display(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || c == '\'' || c == '"')
            {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a firewall tool (`nft`, `ipset`, `iptables`), feeding it `stdin` if given, and kills
/// it after `timeout`. The tool runs with `LC_ALL=C` because we read its messages ("File
/// exists", "interval overlaps"), which a translated libc would word otherwise.
///
/// A non-zero exit is an [`EnforceError::Command`] carrying the program's stderr.
pub(crate) fn run(
    argv: &[String],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Output, EnforceError> {
    checked(argv, run_inner(argv, stdin, timeout, true)?)
}

/// Runs a user's hook like [`run`], in the locale tollgate itself runs in.
pub(crate) fn run_hook(argv: &[String], timeout: Duration) -> Result<Output, EnforceError> {
    checked(argv, run_inner(argv, None, timeout, false)?)
}

fn checked(
    argv: &[String],
    (status, output): (ExitStatus, Output),
) -> Result<Output, EnforceError> {
    if status.success() {
        Ok(output)
    } else {
        Err(EnforceError::Command {
            command: display(argv),
            status: status.to_string(),
            stderr: output.stderr,
        })
    }
}

/// Like [`run`], but a non-zero exit is returned rather than turned into an error (for probes
/// such as `iptables -C`).
pub(crate) fn run_status(
    argv: &[String],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(ExitStatus, Output), EnforceError> {
    run_inner(argv, stdin, timeout, true)
}

fn run_inner(
    argv: &[String],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    c_locale: bool,
) -> Result<(ExitStatus, Output), EnforceError> {
    let command = || display(argv);
    let Some((program, args)) = argv.split_first() else {
        return Err(EnforceError::Config {
            backend: "command",
            reason: "empty argv".into(),
        });
    };
    let mut cmd = Command::new(program);
    if c_locale {
        cmd.env("LC_ALL", "C");
    }
    let mut child = cmd
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| EnforceError::Spawn {
            command: command(),
            source,
        })?;

    // Writing stdin from its own thread: a program that prints while it reads (ipset restore
    // reporting errors) would otherwise deadlock against us once both pipes fill.
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
        thread::spawn(move || {
            // A write error means the program exited early; its status tells why.
            let _ = pipe.write_all(&bytes);
        });
    }
    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
    if let Some(pipe) = child.stdout.take() {
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = tx.send((Stream::Out, read_capped(pipe, STDOUT_CAP)));
        });
    }
    if let Some(pipe) = child.stderr.take() {
        thread::spawn(move || {
            let _ = tx.send((Stream::Err, read_capped(pipe, STDERR_CAP)));
        });
    } else {
        drop(tx);
    }

    let deadline = Instant::now() + timeout;
    let mut out: Option<Vec<u8>> = None;
    let mut err: Option<Vec<u8>> = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                return Err(EnforceError::Spawn {
                    command: command(),
                    source,
                })
            }
        }
        let now = Instant::now();
        if now >= deadline {
            // Our own child, by its handle: nothing else is signalled.
            let _ = child.kill();
            let _ = child.wait();
            return Err(EnforceError::Timeout {
                command: command(),
                timeout,
            });
        }
        if out.is_some() && err.is_some() {
            // Both pipes closed: the program is exiting; wait for the kernel to say so.
            thread::sleep(Duration::from_micros(50).min(deadline - now));
            continue;
        }
        // The pipes close when the program exits, so this wakes up at once in the usual case
        // instead of sleeping a fixed slice (which would add to every ban's latency).
        if let Ok((stream, bytes)) = rx.recv_timeout(Duration::from_millis(5).min(deadline - now)) {
            match stream {
                Stream::Out => out = Some(bytes),
                Stream::Err => err = Some(bytes),
            }
        }
    };
    let grace = Instant::now() + OUTPUT_GRACE;
    while out.is_none() || err.is_none() {
        let now = Instant::now();
        if now >= grace {
            break;
        }
        match rx.recv_timeout(grace - now) {
            Ok((Stream::Out, bytes)) => out = Some(bytes),
            Ok((Stream::Err, bytes)) => err = Some(bytes),
            Err(_) => break,
        }
    }
    let stderr = String::from_utf8_lossy(&err.unwrap_or_default())
        .trim()
        .to_string();
    Ok((
        status,
        Output {
            stdout: out.unwrap_or_default(),
            stderr,
        },
    ))
}

/// Reads up to `cap` bytes, then drains the rest so the writer never blocks.
fn read_capped(pipe: impl Read, cap: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut limited = pipe.take(cap);
    let _ = limited.read_to_end(&mut buf);
    let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn captures_stdout_and_feeds_stdin() {
        let out = run(
            &argv(&["cat"]),
            Some(b"hello".to_vec()),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout, b"hello");
    }

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let err = run(
            &argv(&["sh", "-c", "echo nope >&2; exit 3"]),
            None,
            Duration::from_secs(5),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`sh -c 'echo nope >&2; exit 3'`"), "{msg}");
        assert!(msg.contains("nope"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(&argv(&["/nonexistent/nft"]), None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, EnforceError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/nft"));
    }

    #[test]
    fn slow_program_is_killed_at_the_deadline() {
        let start = Instant::now();
        let err = run(&argv(&["sleep", "5"]), None, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, EnforceError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_background_grandchild_does_not_hold_us() {
        // The hook exits at once but leaves a job holding its stdout open.
        let start = Instant::now();
        run(
            &argv(&["sh", "-c", "sleep 3 & exit 0"]),
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn large_output_does_not_deadlock() {
        let out = run(
            &argv(&[
                "sh",
                "-c",
                "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2",
            ]),
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout.len(), 300_000);
    }
}

//! `ban_latency`: time from a failure event to the address being in an nftables set, run
//! by `bench/ban-latency.sh` inside a network namespace (with `ip netns exec`), next to the
//! service and its firewall table.
//!
//! For each of `--addresses` distinct IPv4 addresses it sends `--failures` failure events
//! (one at a time, each waiting for the previous answer), checks with one poll that the
//! address is not in the set before the last one, then sends the last one (the one that
//! crosses `maxretry`), and polls the set until the address is there. Two modes:
//!
//! - HTTP (`--addr`): `POST /v1/events/registration` over one keep-alive connection; the
//!   answer to the last event must already carry the ban (checked);
//! - log (`--log FILE`): appends Asterisk `chan_sip` failure lines to FILE, for a daemon that
//!   tails it (fail2ban as the reference); there is no answer to time.
//!
//! Polling: one long-lived `nft -i` (interactive, line-buffered with `stdbuf -oL`) that
//! answers `get element inet TABLE SET { ADDR }` for each poll, back to back (or
//! `--poll-gap-us` apart). A poll that finds the address ends the measure, so the figure is
//! an upper bound, late by at most about one poll: the cost of one poll is measured and
//! printed as the resolution. A process per poll (`nft get element ...`) costs some
//! milliseconds; the interactive one, a fraction of one.
//!
//! Cross-check: `nft monitor new elements` runs beside the poller and timestamps each
//! `add element` or `create element` as the kernel announces it, with no polling delay; its
//! latency is printed too (it can come before the HTTP answer, hence signed figures from the
//! answer).
//!
//! `--warmup` addresses (from `--warmup-first`, not counted) go first: the first
//! ban of a daemon may set its table up, and the monitor is known to work once it has seen
//! one of them. The run stops after `--max-seconds` whatever is left; an address that does
//! not show up within `--max-wait-ms` counts as missing.
//!
//! Prints p50/p90/p99/max of each latency and one `RESULT key=value ...` line for scripts.
//!
//! `ban_latency --addr 127.0.0.1:PORT --token T --addresses 200 [--failures 5]`

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::Value;
use tollgate_bench::percentile;

#[derive(Parser)]
#[command(
    about = "Latency from a failure event to the address in an nftables set (run it in a namespace)"
)]
struct Args {
    /// tollgate's address (HTTP mode); must be a loopback address.
    #[arg(long, conflicts_with = "log")]
    addr: Option<SocketAddr>,
    /// Bearer token with the "calls" scope (or TOLLGATE_BENCH_TOKEN).
    #[arg(long, env = "TOLLGATE_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Log mode: append Asterisk failure lines to this file instead of calling the API.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Measured addresses.
    #[arg(long, default_value_t = 200)]
    addresses: u32,
    /// The first measured address; the next ones follow it (all within 198.18.0.0/15).
    #[arg(long, default_value = "198.18.0.1")]
    first: Ipv4Addr,
    /// Addresses sent first and not measured.
    #[arg(long, default_value_t = 5)]
    warmup: u32,
    /// The first warm-up address; the next ones follow it (all within 198.18.0.0/15).
    #[arg(long, default_value = "198.19.255.1")]
    warmup_first: Ipv4Addr,
    /// Failure events per address: the jail's maxretry (the last one bans).
    #[arg(long, default_value_t = 5)]
    failures: u32,
    /// The nft command (an argv, split on spaces).
    #[arg(long, default_value = "nft")]
    nft: String,
    /// Table (family inet) and set that the ban lands in.
    #[arg(long, default_value = "tollgate")]
    table: String,
    #[arg(long, default_value = "banned_v4")]
    set: String,
    /// Pause between two polls, in microseconds (0: back to back).
    #[arg(long, default_value_t = 0)]
    poll_gap_us: u64,
    /// An address not in the set this long after its last event counts as missing.
    #[arg(long, default_value_t = 2_000)]
    max_wait_ms: u64,
    /// Stop after this many seconds whatever is left.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Also time with `nft monitor` (no polling delay).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    monitor: bool,
    /// A name for the RESULT line.
    #[arg(long, default_value = "run")]
    label: String,
}

/// A long-lived `nft -i` that answers one `get element` per poll.
struct Poller {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<std::io::PipeReader>,
    table: String,
    set: String,
    line: String,
    /// Polls that nft could not answer because the ruleset changed meanwhile.
    interrupted: u64,
}

impl Poller {
    fn start(nft: &[String], table: &str, set: &str) -> Result<Poller> {
        // One pipe for both streams: an absent element is an error on stderr, a present one
        // a listing on stdout. `stdbuf -oL` makes nft's stdout line-buffered on a pipe.
        let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .args(nft)
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .spawn()
            .with_context(|| format!("cannot start `stdbuf -oL {} -i`", nft.join(" ")))?;
        let input = child.stdin.take();
        Ok(Poller {
            child,
            input,
            output: BufReader::new(reader),
            table: table.to_string(),
            set: set.to_string(),
            line: String::new(),
            interrupted: 0,
        })
    }

    /// Whether `ip` is in the set now. A missing element (or a missing set or table, before
    /// a daemon's first ban) reads "No such file or directory": absent; "Interrupted system
    /// call" (the ruleset changed during the dump) reads as absent too, and is counted.
    fn contains(&mut self, ip: Ipv4Addr) -> Result<bool> {
        let Some(input) = self.input.as_mut() else {
            bail!("the poller is closed");
        };
        writeln!(
            input,
            "get element inet {} {} {{ {ip} }}",
            self.table, self.set
        )?;
        input.flush()?;
        let mut error: Option<String> = None;
        let mut seen = false;
        // A reply is a few lines; the bound only guards against an endless one.
        for _ in 0..10_000 {
            self.line.clear();
            if self.output.read_line(&mut self.line)? == 0 {
                bail!("nft -i exited (last error: {error:?})");
            }
            let line = self.line.trim_end();
            if line.starts_with("Error:") {
                error = Some(line.to_string());
            } else if let Some(message) = &error {
                // nft repeats the command, then underlines it: the end of an error.
                if !line.is_empty() && line.chars().all(|c| matches!(c, '^' | '~' | ' ')) {
                    if message.contains("No such file or directory") {
                        return Ok(false);
                    }
                    // The ruleset changed during nft's dump (a ban being committed): the
                    // answer is unknown, so ask again with the next poll.
                    if message.contains("Interrupted system call") {
                        self.interrupted += 1;
                        return Ok(false);
                    }
                    bail!("nft: {message}");
                }
            } else if line.trim_start().starts_with("elements = {") {
                seen = line.contains(&format!(" {ip} ")) || line.contains(&format!(" {ip},"));
            } else if line == "}" {
                // The end of the table's listing.
                if !seen {
                    bail!("nft listed the set without {ip}");
                }
                return Ok(true);
            }
        }
        bail!("no end to nft's reply")
    }

    fn stop(mut self) {
        drop(self.input.take()); // end of input: nft -i exits
        let _ = self.child.wait();
    }
}

/// Never leaves an `nft -i` behind, also when the run fails.
impl Drop for Poller {
    fn drop(&mut self) {
        drop(self.input.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nft monitor new elements` on a thread: (address, when it was announced).
struct Monitor {
    child: Child,
    events: mpsc::Receiver<(Ipv4Addr, Instant)>,
}

impl Monitor {
    fn start(nft: &[String], table: &str, set: &str) -> Result<Monitor> {
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .args(nft)
            .args(["monitor", "new", "elements"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start `nft monitor`")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, events) = mpsc::channel();
        // The monitor echoes the verb used: `add element` (fail2ban) or `create element`.
        let tail = format!(" element inet {table} {set} {{");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let Some(rest) = ["add", "create"]
                    .iter()
                    .find_map(|verb| line.strip_prefix(verb)?.strip_prefix(&tail))
                else {
                    continue;
                };
                for token in rest.split([' ', ',', '}']) {
                    if let Ok(ip) = token.parse::<Ipv4Addr>() {
                        if tx.send((ip, at)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Monitor { child, events })
    }

    fn stop(mut self) -> HashMap<Ipv4Addr, Instant> {
        // Late announcements still in the pipe: give them a moment.
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut seen = HashMap::new();
        while let Ok((ip, at)) = self.events.try_recv() {
            seen.entry(ip).or_insert(at);
        }
        seen
    }
}

/// Never leaves an `nft monitor` behind, also when the run fails.
impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the failures go.
enum Sink {
    Http {
        agent: ureq::Agent,
        url: String,
        authorization: String,
    },
    Log {
        file: std::fs::File,
    },
}

impl Sink {
    /// Sends one failure from `ip`; returns the ban target the answer names (HTTP), if any.
    fn failure(&mut self, ip: Ipv4Addr) -> Result<Option<String>> {
        match self {
            Sink::Http {
                agent,
                url,
                authorization,
            } => {
                let body = serde_json::json!({
                    "ip": ip.to_string(), "port": 5060, "transport": "udp", "user": "1001",
                    "user_agent": "Yealink SIP-T46S 66.86.0.15", "outcome": "failure",
                    "reason": "wrong password",
                });
                let response = agent
                    .post(url)
                    .set("Authorization", authorization)
                    .send_json(body)
                    .map_err(|e| match e {
                        ureq::Error::Status(code, r) => {
                            anyhow::anyhow!("HTTP {code}: {}", r.into_string().unwrap_or_default())
                        }
                        other => anyhow::anyhow!("{other}"),
                    })?;
                let verdict: Value = response.into_json()?;
                Ok(verdict
                    .get("ban")
                    .and_then(|b| b.get("target"))
                    .and_then(Value::as_str)
                    .map(str::to_string))
            }
            Sink::Log { file } => {
                let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
                let line = format!(
                    "[{now}] NOTICE[4242] chan_sip.c: Registration from '\"1001\" <sip:1001@192.168.1.2>' failed for '{ip}:5060' - Wrong password\n"
                );
                // One write per line: the tailer sees each line whole.
                file.write_all(line.as_bytes())?;
                Ok(None)
            }
        }
    }
}

/// What one address measured.
struct Sample {
    /// Sending the last failure to the poll that found the address.
    from_send_us: u64,
    /// The answer to the last failure to that poll (HTTP only).
    from_answer_us: Option<u64>,
    /// The last failure's answer time (HTTP only).
    answer_us: Option<u64>,
    /// Sending the last failure to the end of the last poll that did not find it (a lower
    /// bound); `None` when the first poll found it.
    last_absent_us: Option<u64>,
    polls: u64,
    sent_at: Instant,
    answered_at: Instant,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn signed_micros(later: Instant, earlier: Instant) -> i64 {
    match later.checked_duration_since(earlier) {
        Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        None => -i64::try_from(earlier.duration_since(later).as_micros()).unwrap_or(i64::MAX),
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn ms_signed(us: i64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// p50/p90/p99/max of unsigned microseconds, as text and as RESULT fields.
fn summary(name: &str, values: &mut [u64], result: &mut Vec<String>) -> String {
    values.sort_unstable();
    let p = |q| percentile(values, q);
    let (p50, p90, p99) = (p(50.0), p(90.0), p(99.0));
    let max = values.last().copied().unwrap_or(0);
    result.push(format!(
        "{name}_p50_us={p50} {name}_p90_us={p90} {name}_p99_us={p99} {name}_max_us={max}"
    ));
    format!(
        "p50 {:>8} p90 {:>8} p99 {:>8} max {:>8} ms",
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max)
    )
}

fn summary_signed(name: &str, values: &mut [i64], result: &mut Vec<String>) -> String {
    values.sort_unstable();
    let p = |q: f64| -> i64 {
        if values.is_empty() {
            return 0;
        }
        let rank = ((q / 100.0) * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    };
    let (p50, p90, p99) = (p(50.0), p(90.0), p(99.0));
    let max = values.last().copied().unwrap_or(0);
    result.push(format!(
        "{name}_p50_us={p50} {name}_p90_us={p90} {name}_p99_us={p99} {name}_max_us={max}"
    ));
    format!(
        "p50 {:>8} p90 {:>8} p99 {:>8} max {:>8} ms",
        ms_signed(p50),
        ms_signed(p90),
        ms_signed(p99),
        ms_signed(max)
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    let nft: Vec<String> = args.nft.split_whitespace().map(str::to_string).collect();
    if nft.is_empty() || args.failures == 0 || args.addresses == 0 {
        bail!("--nft, --failures and --addresses must not be empty or 0");
    }
    let mut sink = match (&args.addr, &args.log) {
        (Some(addr), None) => {
            if !addr.ip().is_loopback() {
                bail!("{addr} is not a loopback address: the benchmark sends traffic to this host only");
            }
            Sink::Http {
                agent: ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(10))
                    .max_idle_connections_per_host(1)
                    .build(),
                url: format!("http://{addr}/v1/events/registration"),
                authorization: format!("Bearer {}", args.token.clone().unwrap_or_default()),
            }
        }
        (None, Some(path)) => Sink::Log {
            file: std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        },
        _ => bail!("give either --addr (the events API) or --log (a log file to append to)"),
    };
    let bench_net: ipnet::Ipv4Net = "198.18.0.0/15".parse()?;
    let run = |from: Ipv4Addr, count: u32| -> Vec<Ipv4Addr> {
        (0..count)
            .map(|i| Ipv4Addr::from(u32::from(from).saturating_add(i)))
            .collect()
    };
    let addresses = run(args.first, args.addresses);
    let warmups = run(args.warmup_first, args.warmup);
    if addresses
        .iter()
        .chain(&warmups)
        .any(|a| !bench_net.contains(a))
    {
        bail!("the addresses must stay within 198.18.0.0/15 (--first, --warmup-first)");
    }
    if addresses.iter().any(|a| warmups.contains(a)) {
        bail!("measured addresses overlap the warm-up ones");
    }

    let monitor = if args.monitor {
        Some(Monitor::start(&nft, &args.table, &args.set)?)
    } else {
        None
    };
    let mut poller = Poller::start(&nft, &args.table, &args.set)?;
    // Let the monitor subscribe before anything can be announced.
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let max_wait = Duration::from_millis(args.max_wait_ms);
    let mut samples: Vec<(Ipv4Addr, Sample)> = Vec::new();
    let mut poll_us: Vec<u64> = Vec::new();
    let mut missing: Vec<Ipv4Addr> = Vec::new();
    let mut early = 0u64;
    let mut no_ban_in_answer = 0u64;
    let mut stopped_early = false;
    let http = matches!(sink, Sink::Http { .. });
    let all = warmups
        .iter()
        .map(|a| (*a, true))
        .chain(addresses.iter().map(|a| (*a, false)));
    for (ip, warm) in all {
        if Instant::now() >= deadline {
            stopped_early = true;
            break;
        }
        for _ in 1..args.failures {
            if sink.failure(ip)?.is_some() {
                early += 1;
            }
        }
        if poller.contains(ip)? {
            early += 1;
        }
        let sent_at = Instant::now();
        let ban = sink.failure(ip)?;
        let answered_at = Instant::now();
        if http && ban.as_deref() != Some(&format!("{ip}/32")) {
            no_ban_in_answer += 1;
        }
        let mut polls = 0u64;
        let mut last_absent: Option<Instant> = None;
        let found = loop {
            let before = Instant::now();
            if before.duration_since(answered_at) > max_wait || before >= deadline {
                break None;
            }
            let present = poller.contains(ip)?;
            let after = Instant::now();
            polls += 1;
            poll_us.push(micros(after - before));
            if present {
                break Some(after);
            }
            last_absent = Some(after);
            if args.poll_gap_us > 0 {
                std::thread::sleep(Duration::from_micros(args.poll_gap_us));
            }
        };
        let Some(found_at) = found else {
            if !warm {
                missing.push(ip);
            }
            continue;
        };
        if !warm {
            samples.push((
                ip,
                Sample {
                    from_send_us: micros(found_at - sent_at),
                    from_answer_us: http.then(|| micros(found_at - answered_at)),
                    answer_us: http.then(|| micros(answered_at - sent_at)),
                    last_absent_us: last_absent.map(|t| micros(t - sent_at)),
                    polls,
                    sent_at,
                    answered_at,
                },
            ));
        }
    }
    let elapsed = started.elapsed();
    let interrupted = poller.interrupted;
    poller.stop();
    let announced = monitor.map(Monitor::stop);

    // ---- Report ---------------------------------------------------------------------------
    let mut result = vec![
        format!("label={}", args.label),
        format!("mode={}", if http { "http" } else { "log" }),
        format!("addresses={}", samples.len()),
        format!("missing={}", missing.len()),
        format!("early={early}"),
        format!("no_ban_in_answer={no_ban_in_answer}"),
    ];
    println!(
        "{}: {} addresses measured ({} warm-up first), {} missing, {} early (in the set or banned before the last failure){}; {:.1} s",
        args.label,
        samples.len(),
        warmups.len(),
        missing.len(),
        early,
        if http {
            format!(", {no_ban_in_answer} answers to the last failure without the ban")
        } else {
            String::new()
        },
        elapsed.as_secs_f64()
    );
    if stopped_early {
        println!(
            "  stopped at --max-seconds {} before the last address",
            args.max_seconds
        );
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().take(5).map(ToString::to_string).collect();
        println!(
            "  missing (not in the set {} ms after the last failure): {} ...",
            args.max_wait_ms,
            list.join(", ")
        );
    }
    let mut polls_each: Vec<u64> = samples.iter().map(|(_, s)| s.polls).collect();
    polls_each.sort_unstable();
    println!(
        "  one poll (`get element` through nft -i): {} (the resolution: a figure below is late by at most about one poll); polls per address after the last failure: median {}; {} polls interrupted by a commit (asked again)",
        summary("poll", &mut poll_us, &mut result),
        percentile(&polls_each, 50.0),
        interrupted
    );
    result.push(format!("interrupted_polls={interrupted}"));
    let mut from_send: Vec<u64> = samples.iter().map(|(_, s)| s.from_send_us).collect();
    println!(
        "  last failure sent -> address in the set (poll):     {}",
        summary("send", &mut from_send, &mut result)
    );
    let mut lower: Vec<u64> = samples
        .iter()
        .map(|(_, s)| s.last_absent_us.unwrap_or(0))
        .collect();
    println!(
        "  last failure sent -> last poll that missed it:      {}  (lower bound; 0: found at the first poll)",
        summary("lower", &mut lower, &mut result)
    );
    if http {
        let mut from_answer: Vec<u64> = samples
            .iter()
            .filter_map(|(_, s)| s.from_answer_us)
            .collect();
        println!(
            "  its answer (with the ban) -> in the set (poll):    {}",
            summary("answer_to_set", &mut from_answer, &mut result)
        );
        let mut answer: Vec<u64> = samples.iter().filter_map(|(_, s)| s.answer_us).collect();
        println!(
            "  answer time of the last failure:                   {}",
            summary("answer", &mut answer, &mut result)
        );
    }
    match &announced {
        Some(seen) if !seen.is_empty() => {
            let mut mon_send: Vec<i64> = Vec::new();
            let mut mon_answer: Vec<i64> = Vec::new();
            for (ip, s) in &samples {
                if let Some(at) = seen.get(ip) {
                    mon_send.push(signed_micros(*at, s.sent_at));
                    mon_answer.push(signed_micros(*at, s.answered_at));
                }
            }
            result.push(format!("monitor_seen={}", mon_send.len()));
            println!(
                "  last failure sent -> announced by nft monitor:      {}  ({} of {} seen)",
                summary_signed("monitor", &mut mon_send, &mut result),
                mon_send.len(),
                samples.len()
            );
            if http {
                println!(
                    "  its answer -> announced by nft monitor:             {}  (negative: before the answer)",
                    summary_signed("monitor_answer", &mut mon_answer, &mut result)
                );
            }
        }
        Some(_) => println!("  nft monitor announced nothing (not measured)"),
        None => {}
    }
    println!("RESULT {}", result.join(" "));
    Ok(())
}

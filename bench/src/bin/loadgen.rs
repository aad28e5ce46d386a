//! `loadgen`: the HTTP load generator of `bench/http.sh`, run as its own process.
//!
//! Opens `--connections` keep-alive HTTP/1.1 connections to a loopback address (hyper
//! client on tokio) and runs call cycles: `POST /v1/calls/authorize` for a distinct call id
//! from one of `--extensions` extensions, then, when the answer is an allow, `POST
//! /v1/calls/{id}/end`. Runs `--warmup` cycles that are not measured, then `--cycles` that
//! are, stopping early after `--max-seconds`.
//!
//! - closed loop (`--rate 0`): every connection sends its next cycle as soon as the last
//!   one is answered: the most the server (and this generator) can do;
//! - open loop (`--rate R`): cycle k is due at `start + k / R`, whichever connection is
//!   free takes it. Latency counts from when it was due if no connection was free then
//!   (the server's queueing is not hidden: no coordinated omission), and from when it was
//!   sent otherwise (tokio's timer has millisecond granularity: its lateness is this
//!   generator's, not the server's; it is printed as `generator lateness`).
//!
//! Prints cycles/s, p50/p90/p99/max latency of authorize and of end, the counts of allowed,
//! denied and failed calls, and one `RESULT key=value ...` line for scripts.
//!
//! `target/release/loadgen --addr 127.0.0.1:PORT --token T --connections 32 --cycles 20000 [--rate 10000]`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tollgate_bench::{grouped, percentile, Rng};

#[derive(Parser, Clone)]
#[command(about = "HTTP load generator for the tollgate benchmark (loopback only)")]
struct Args {
    /// Server address; must be a loopback address.
    #[arg(long)]
    addr: SocketAddr,
    /// Bearer token (or TOLLGATE_BENCH_TOKEN).
    #[arg(long, env = "TOLLGATE_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured cycles (authorize, then end when allowed).
    #[arg(long, default_value_t = 20_000)]
    cycles: u64,
    /// Cycles run first and not measured.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Stop after this many seconds (warm-up included) even if cycles remain.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
    /// Target cycles per second (open loop); 0 for closed loop.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Extensions `{extension_prefix}{0..N}` (zero-padded to 4 digits) to spread calls over.
    #[arg(long, default_value_t = 1000)]
    extensions: u64,
    #[arg(long, default_value = "ext")]
    extension_prefix: String,
    /// Number dialed; each `X` is a random digit (default: French fixed numbers).
    #[arg(long, default_value = "01XXXXXXXX")]
    number: String,
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: String,
    /// Duration reported by `end`.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Worker threads of this generator's runtime (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A name for the RESULT line.
    #[arg(long, default_value = "run")]
    label: String,
}

/// What one connection measured.
#[derive(Default)]
struct Stats {
    authorize_us: Vec<u64>,
    end_us: Vec<u64>,
    lateness_us: Vec<u64>,
    allowed: u64,
    denied: u64,
    errors: u64,
    first_error: Option<String>,
    measured: u64,
    last_done: Option<Instant>,
}

struct Shared {
    args: Args,
    authorization: String,
    next: AtomicU64,
    start: Instant,
    /// When the first measured cycle was due (open loop) or sent (closed loop), in ns
    /// after `start`.
    measure_from_ns: AtomicU64,
    deadline: Instant,
    /// A tag that keeps call ids distinct from earlier runs against the same server.
    run_tag: String,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the server closes it.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request; returns the status and body.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    shared: &Shared,
    path: &str,
    body: String,
) -> Result<(StatusCode, Bytes)> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, shared.args.addr.to_string())
        .header(header::AUTHORIZATION, &shared.authorization)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

async fn worker(shared: Arc<Shared>, index: usize) -> Stats {
    let args = &shared.args;
    let mut stats = Stats::default();
    let mut rng = Rng::new(0x5EED ^ (index as u64).wrapping_mul(0x9E37_79B9));
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let total = args.warmup + args.cycles;
    loop {
        let k = shared.next.fetch_add(1, Ordering::Relaxed);
        if k >= total || Instant::now() >= shared.deadline {
            break;
        }
        let measured = k >= args.warmup;
        // Open loop: wait until the cycle is due; note whether a connection was free then.
        let claimed = Instant::now();
        let due = (args.rate > 0)
            .then(|| shared.start + Duration::from_secs_f64(k as f64 / args.rate as f64));
        if let Some(due) = due {
            if due > claimed {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let sent = Instant::now();
        if k == args.warmup {
            let from = due.unwrap_or(sent).saturating_duration_since(shared.start);
            shared
                .measure_from_ns
                .store(from.as_nanos() as u64, Ordering::Relaxed);
        }
        let origin = match due {
            // Free before it was due: the wait past `due` is the timer's, not the server's.
            Some(due) if claimed <= due => {
                if measured {
                    stats
                        .lateness_us
                        .push(micros(sent.saturating_duration_since(due)));
                }
                sent
            }
            Some(due) => due,
            None => sent,
        };
        let conn = match &mut sender {
            Some(s) if !s.is_closed() => s,
            _ => match connect(args.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    stats.errors += u64::from(measured);
                    stats.first_error.get_or_insert_with(|| format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let call_id = format!("lg-{}-{k}", shared.run_tag);
        let extension = format!(
            "{}{:04}",
            args.extension_prefix,
            rng.below(args.extensions.max(1))
        );
        let body = format!(
            r#"{{"call_id":"{call_id}","extension":"{extension}","source_ip":"{}","number":"{}"}}"#,
            args.source_ip,
            rng.digits(&args.number)
        );
        let allowed = match send(conn, &shared, "/v1/calls/authorize", body).await {
            Ok((status, body)) if status == StatusCode::OK => {
                if measured {
                    stats.authorize_us.push(micros(origin.elapsed()));
                }
                let allowed = body.windows(18).any(|w| w == br#""decision":"allow""#);
                if measured {
                    if allowed {
                        stats.allowed += 1;
                    } else {
                        stats.denied += 1;
                    }
                }
                allowed
            }
            Ok((status, body)) => {
                stats.errors += u64::from(measured);
                stats.first_error.get_or_insert_with(|| {
                    format!("authorize: {status}: {}", String::from_utf8_lossy(&body))
                });
                false
            }
            Err(e) => {
                stats.errors += u64::from(measured);
                stats
                    .first_error
                    .get_or_insert_with(|| format!("authorize: {e:#}"));
                sender = None;
                continue;
            }
        };
        if allowed {
            let started = Instant::now();
            let body = format!(r#"{{"duration_s":{}}}"#, args.duration_s);
            match send(conn, &shared, &format!("/v1/calls/{call_id}/end"), body).await {
                Ok((status, _)) if status == StatusCode::OK => {
                    if measured {
                        stats.end_us.push(micros(started.elapsed()));
                    }
                }
                Ok((status, body)) => {
                    stats.errors += u64::from(measured);
                    stats.first_error.get_or_insert_with(|| {
                        format!("end: {status}: {}", String::from_utf8_lossy(&body))
                    });
                }
                Err(e) => {
                    stats.errors += u64::from(measured);
                    stats
                        .first_error
                        .get_or_insert_with(|| format!("end: {e:#}"));
                    sender = None;
                }
            }
        }
        if measured {
            stats.measured += 1;
            stats.last_done = Some(Instant::now());
        }
    }
    stats
}

/// p50, p90, p99, max of a latency list, in µs.
fn quantiles(mut values: Vec<u64>) -> [u64; 4] {
    values.sort_unstable();
    [
        percentile(&values, 50.0),
        percentile(&values, 90.0),
        percentile(&values, 99.0),
        values.last().copied().unwrap_or(0),
    ]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        bail!(
            "{} is not a loopback address: the benchmark sends traffic to this machine only",
            args.addr
        );
    }
    if args.connections == 0 || args.cycles == 0 {
        bail!("--connections and --cycles must be at least 1");
    }
    let token = args.token.clone().unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let run_tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let (stats, measured_from) = runtime.block_on(async {
        let start = Instant::now() + Duration::from_millis(20);
        let shared = Arc::new(Shared {
            authorization: format!("Bearer {token}"),
            next: AtomicU64::new(0),
            start,
            measure_from_ns: AtomicU64::new(0),
            deadline: start + Duration::from_secs(args.max_seconds),
            run_tag,
            args: args.clone(),
        });
        let handles: Vec<_> = (0..args.connections)
            .map(|i| tokio::spawn(worker(shared.clone(), i)))
            .collect();
        let mut all = Vec::with_capacity(handles.len());
        for handle in handles {
            all.push(handle.await?);
        }
        let from = Duration::from_nanos(shared.measure_from_ns.load(Ordering::Relaxed));
        Ok::<_, anyhow::Error>((all, start + from))
    })?;
    let measured: u64 = stats.iter().map(|s| s.measured).sum();
    let end = stats
        .iter()
        .filter_map(|s| s.last_done)
        .max()
        .unwrap_or(measured_from);
    let elapsed = end.saturating_duration_since(measured_from);
    let rate = if elapsed.as_secs_f64() > 0.0 {
        measured as f64 / elapsed.as_secs_f64()
    } else {
        0.0
    };
    let (mut auth, mut end_l, mut late) = (Vec::new(), Vec::new(), Vec::new());
    let (mut allowed, mut denied, mut errors) = (0, 0, 0);
    let mut first_error = None;
    for s in stats {
        auth.extend(s.authorize_us);
        end_l.extend(s.end_us);
        late.extend(s.lateness_us);
        allowed += s.allowed;
        denied += s.denied;
        errors += s.errors;
        if first_error.is_none() {
            first_error = s.first_error;
        }
    }
    let requests = auth.len() + end_l.len();
    let a = quantiles(auth);
    let e = quantiles(end_l);
    let l = quantiles(late);
    let mode = if args.rate > 0 {
        format!("open loop at {}/s", grouped(args.rate as f64))
    } else {
        "closed loop".to_string()
    };
    println!(
        "loadgen {}: {mode}, {} connections, {} cycles measured after {} warm-up",
        args.label,
        args.connections,
        grouped(measured as f64),
        grouped(args.warmup as f64)
    );
    println!(
        "  {} cycles/s ({} requests/s) over {:.2} s; allowed {allowed}, denied {denied}, errors {errors}",
        grouped(rate),
        grouped(requests as f64 / elapsed.as_secs_f64().max(1e-9)),
        elapsed.as_secs_f64()
    );
    println!(
        "  authorize latency  p50 {} µs  p90 {} µs  p99 {} µs  max {} µs",
        a[0], a[1], a[2], a[3]
    );
    println!(
        "  end latency        p50 {} µs  p90 {} µs  p99 {} µs  max {} µs",
        e[0], e[1], e[2], e[3]
    );
    if args.rate > 0 {
        println!("  generator lateness p50 {} µs  p99 {} µs (timer wake-up after a cycle was due; not counted as latency)", l[0], l[2]);
    }
    if let Some(error) = &first_error {
        println!("  first error: {error}");
    }
    println!(
        "RESULT label={} rate_target={} cycles={measured} secs={:.3} cycles_per_s={:.0} auth_p50_us={} auth_p90_us={} auth_p99_us={} auth_max_us={} end_p50_us={} end_p90_us={} end_p99_us={} end_max_us={} allowed={allowed} denied={denied} errors={errors}",
        args.label,
        args.rate,
        elapsed.as_secs_f64(),
        rate,
        a[0], a[1], a[2], a[3], e[0], e[1], e[2], e[3]
    );
    Ok(())
}

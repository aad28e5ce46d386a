//! Writes a generated Asterisk log for benchmarks:
//! `cargo run --release -p tollgate-ingest --example gen_asterisk_log -- LINES SEED > full.log`.
//! Prints the number of failure lines and the addresses they come from on stderr.

use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let lines = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000usize);
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1u64);
    let log = tollgate_ingest::generate_asterisk_log(lines, seed);
    std::io::stdout().lock().write_all(log.text.as_bytes())?;
    eprintln!(
        "{} lines, {} failures from {} addresses, {} successes",
        log.lines,
        log.failures,
        log.failures_by_ip.len(),
        log.successes
    );
    Ok(())
}

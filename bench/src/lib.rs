//! # tollgate-bench
//!
//! Benchmarks run by hand, never by the test suite (see `bench/README.md`):
//!
//! - `inprocess`: the decision core alone (`Engine::authorize` / `end`) over a large
//!   generated directory and rate deck, with baselines measured in the same run;
//! - `bare` and `loadgen`, driven by `bench/http.sh`: the HTTP service over loopback
//!   against a bare axum handler on the same stack;
//! - `ban_latency`, driven by `bench/ban-latency.sh` in a network namespace: from a failure
//!   event to the address in the nftables set.
//!
//! This library holds what the binaries share: a seeded generator (so two runs decide the
//! same calls), medians and percentiles, and the process's resident memory.
//!
//! The machine the figures come from is shared and noisy, so every figure that matters is
//! a median of several runs and is printed next to a baseline measured in the same run.

use std::time::Duration;

/// A small seeded generator (SplitMix64): deterministic workloads without a dependency.
/// Not for anything that needs unpredictability.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform index into a slice of length `len`.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One item chosen by weight; `None` only for an empty or all-zero table.
    pub fn weighted<'a, T>(&mut self, table: &'a [(u32, T)]) -> Option<&'a T> {
        let total: u64 = table.iter().map(|(w, _)| u64::from(*w)).sum();
        let mut pick = self.below(total);
        for (weight, item) in table {
            let weight = u64::from(*weight);
            if pick < weight {
                return Some(item);
            }
            pick -= weight;
        }
        None
    }

    /// `template` with every `X` replaced by a random digit.
    pub fn digits(&mut self, template: &str) -> String {
        template
            .chars()
            .map(|c| {
                if c == 'X' {
                    char::from(b'0' + self.below(10) as u8)
                } else {
                    c
                }
            })
            .collect()
    }
}

/// The median of `values` (the mean of the two middle ones for an even count); 0 if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `p`-th percentile (0–100, nearest rank) of an ascending slice; 0 if empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Resident memory of this process in bytes (`VmRSS` in `/proc/self/status`); `None` where
/// there is no procfs.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// A rate per second, with thousands separated for reading ("1 234 567/s").
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// An integer with a thin space every three digits: "1 234 567".
pub fn grouped(value: f64) -> String {
    let text = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(text.len() + text.len() / 3);
    for (i, c) in text.chars().enumerate() {
        if i > 0 && (text.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn generator_is_deterministic_and_templates_fill_digits() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let number = a.digits("+33 1XX");
        assert!(number.starts_with("+33 1") && number.len() == 7, "{number}");
        assert!(number[5..].bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(grouped(1234567.0), "1 234 567");
        assert_eq!(grouped(999.0), "999");
    }
}

//! `tollgate passwd` and `tollgate pin`: print generated credentials, one per line.
//!
//! The arguments are checked here, before anything is generated, so a bad request prints
//! one error and no partial output; generation and its limits live in `tollgate-audit`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tollgate_audit::generate::{
    generate_password, generate_pin, MAX_PASSWORD_LENGTH, MAX_PIN_LENGTH, MIN_PASSWORD_LENGTH,
    MIN_PIN_LENGTH,
};

/// Most credentials one command prints: enough to provision a large PBX in one go, small
/// enough that a typo (an extra zero) does not run for minutes.
const MAX_COUNT: usize = 10_000;

pub fn passwd(length: usize, count: usize, min_score: u8) -> Result<ExitCode> {
    check_count(count)?;
    if !(MIN_PASSWORD_LENGTH..=MAX_PASSWORD_LENGTH).contains(&length) {
        bail!("--length {length}: a SIP password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters");
    }
    if min_score > 4 {
        bail!("--min-score {min_score}: zxcvbn scores go from 0 to 4");
    }
    print_all(count, || {
        generate_password(length, min_score).context("cannot generate a password")
    })
}

pub fn pin(length: usize, count: usize) -> Result<ExitCode> {
    check_count(count)?;
    if !(MIN_PIN_LENGTH..=MAX_PIN_LENGTH).contains(&length) {
        bail!("--length {length}: a PIN needs {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} digits");
    }
    print_all(count, || {
        generate_pin(length).context("cannot generate a PIN")
    })
}

fn check_count(count: usize) -> Result<()> {
    if count == 0 || count > MAX_COUNT {
        bail!("--count {count}: between 1 and {MAX_COUNT}");
    }
    Ok(())
}

fn print_all(count: usize, mut make: impl FnMut() -> Result<String>) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for _ in 0..count {
        writeln!(out, "{}", make()?).context("cannot write to standard output")?;
    }
    out.flush().context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_refused_before_anything_is_printed() {
        let refused = |r: Result<ExitCode>| r.unwrap_err().to_string();
        assert_eq!(
            refused(passwd(11, 1, 4)),
            "--length 11: a SIP password needs 12 to 128 characters"
        );
        assert_eq!(
            refused(passwd(20, 10_001, 4)),
            "--count 10001: between 1 and 10000"
        );
        assert_eq!(refused(passwd(20, 0, 4)), "--count 0: between 1 and 10000");
        assert_eq!(
            refused(passwd(20, 1, 5)),
            "--min-score 5: zxcvbn scores go from 0 to 4"
        );
        assert_eq!(refused(pin(3, 1)), "--length 3: a PIN needs 4 to 20 digits");
        assert_eq!(
            refused(pin(6, 10_001)),
            "--count 10001: between 1 and 10000"
        );
    }
}

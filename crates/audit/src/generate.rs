//! Generated SIP passwords and voicemail PINs, from the OS CSPRNG.
//!
//! This module owns the SIP-safe alphabet, uniform sampling from it, and the rule that a
//! generated credential must pass the same checks an audit applies (`credentials`): a
//! candidate that fails any check is thrown away and another drawn, a bounded number of
//! times. Randomness comes only from the operating system (`getrandom`), never from a
//! seeded or user-space generator.

use crate::credentials::{check_password, check_pin, PasswordPolicy, PinPolicy};

/// Characters a generated password is drawn from.
///
/// Letters and digits, minus those a person misreads when copying a password from a screen
/// to a phone's keypad or web page: 0/O/o, 1/l/I. Plus six symbols that mean nothing special
/// in any place a SIP secret is written. Left out on purpose:
/// - `"` `'` `\` : quoting and escaping in pjsip.conf/sip.conf values, XML attributes
///   (FreeSWITCH directory), JSON and shells;
/// - `;` `#` : start comments in Asterisk's .conf files (the rest of the line is lost);
/// - `,` : separates values in .conf lists and CSV inventories;
/// - `:` `@` : delimit user, password and host in a SIP or HTTP URI (`sip:user:pass@host`);
/// - `<` `>` `&` : XML markup;
/// - `%` `?` `/` `[` `]` `{` `}` `$` `!` `*` `|` `^` `(` `)` `` ` ``: URI escaping, Asterisk
///   dialplan and variable expansion (`${...}`), shell globbing and substitution;
/// - space: trimmed or split by most config parsers.
///
/// INVARIANT: ASCII only, no duplicates (the tests check both), so one byte is one symbol
/// and sampling is uniform.
pub const PASSWORD_ALPHABET: &[u8] =
    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789-_.+=~";

/// Fewest characters `generate_password` makes: below this a password is brute-forceable
/// by SIP scanners whatever its alphabet.
pub const MIN_PASSWORD_LENGTH: usize = 12;
/// Most characters `generate_password` makes: more adds nothing, and some phones' and
/// PBXs' fields stop at 64 to 128 characters.
pub const MAX_PASSWORD_LENGTH: usize = 128;
/// Fewest digits `generate_pin` makes: voicemail systems accept four at least.
pub const MIN_PIN_LENGTH: usize = 4;
/// Most digits `generate_pin` makes: longer PINs are refused by many voicemail systems.
pub const MAX_PIN_LENGTH: usize = 20;

/// How many candidates are drawn before giving up. A uniform password of 12 or more
/// characters passes on the first try except with tiny probability, and at most ~3% of
/// four-digit PINs are refused, so reaching this means the request cannot be met.
const MAX_ATTEMPTS: usize = 1000;

/// Why no credential was made.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("length {length} is outside {min}..={max}")]
    Length {
        length: usize,
        min: usize,
        max: usize,
    },
    #[error("minimum score {0} is above 4, zxcvbn's highest")]
    Score(u8),
    #[error("the operating system's random generator failed: {0}")]
    Random(getrandom::Error),
    #[error("no candidate passed the checks in {0} attempts")]
    Exhausted(usize),
}

/// A password of `length` characters from [`PASSWORD_ALPHABET`] that `check_password`
/// finds nothing wrong with at `min_score` (0-4).
pub fn generate_password(length: usize, min_score: u8) -> Result<String, GenerateError> {
    check_length(length, MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH)?;
    if min_score > 4 {
        return Err(GenerateError::Score(min_score));
    }
    let policy = PasswordPolicy {
        min_length: length,
        min_score,
    };
    for _ in 0..MAX_ATTEMPTS {
        let candidate = sample(PASSWORD_ALPHABET, length)?;
        if check_password(&candidate, &[], &policy).is_empty() {
            return Ok(candidate);
        }
    }
    Err(GenerateError::Exhausted(MAX_ATTEMPTS))
}

/// A PIN of `length` digits that `check_pin` finds nothing wrong with (no repeats, runs,
/// common PINs or years). No extension is known here, so callers that have one should
/// check the result against it with `check_pin` too (the chance of a clash is 2 in 10^length).
pub fn generate_pin(length: usize) -> Result<String, GenerateError> {
    check_length(length, MIN_PIN_LENGTH, MAX_PIN_LENGTH)?;
    let policy = PinPolicy { min_length: length };
    for _ in 0..MAX_ATTEMPTS {
        let candidate = sample(b"0123456789", length)?;
        if check_pin(&candidate, "", &policy).is_empty() {
            return Ok(candidate);
        }
    }
    Err(GenerateError::Exhausted(MAX_ATTEMPTS))
}

/// A fresh key for `credentials::keyed_digest`, one per audit run.
pub fn random_key() -> Result<[u8; 32], GenerateError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(GenerateError::Random)?;
    Ok(key)
}

fn check_length(length: usize, min: usize, max: usize) -> Result<(), GenerateError> {
    if (min..=max).contains(&length) {
        Ok(())
    } else {
        Err(GenerateError::Length { length, min, max })
    }
}

/// `length` symbols drawn uniformly from `alphabet` (at most 256 symbols).
///
/// Uniform by rejection: `byte % n` alone would favour the first `256 % n` symbols, so bytes
/// at or above the largest multiple of `n` are discarded and replaced.
fn sample(alphabet: &[u8], length: usize) -> Result<String, GenerateError> {
    let n = alphabet.len();
    // INVARIANT: 1 <= n <= 256, so `limit` is a positive multiple of n no larger than 256.
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(length);
    let mut pool = [0u8; 64];
    while out.len() < length {
        getrandom::fill(&mut pool).map_err(GenerateError::Random)?;
        for &byte in &pool {
            if usize::from(byte) < limit {
                out.push(char::from(alphabet[usize::from(byte) % n]));
                if out.len() == length {
                    break;
                }
            }
        }
    }
    // The pool may hold unused random bytes: wipe them (they are not the secret, but there
    // is no reason to leave them on the stack).
    pool.fill(0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn alphabet_is_ascii_unique_and_sip_safe() {
        let set: HashSet<u8> = PASSWORD_ALPHABET.iter().copied().collect();
        assert_eq!(
            set.len(),
            PASSWORD_ALPHABET.len(),
            "duplicates skew sampling"
        );
        assert!(PASSWORD_ALPHABET.is_ascii());
        for hostile in b"0Oo1lI\"'\\;#,:@<>&%?/[]{}$!*|^()` \t" {
            assert!(
                !set.contains(hostile),
                "{:?} in alphabet",
                char::from(*hostile)
            );
        }
    }

    #[test]
    fn generated_passwords_pass_the_checks_and_respect_length_and_alphabet() {
        for length in [12, 16, 20, 32, 64] {
            for _ in 0..20 {
                let password = generate_password(length, 4).unwrap();
                assert_eq!(password.len(), length);
                assert!(password.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
                let policy = PasswordPolicy {
                    min_length: length,
                    min_score: 4,
                };
                assert!(check_password(&password, &[], &policy).is_empty());
            }
        }
    }

    #[test]
    fn generated_passwords_differ() {
        let many: HashSet<String> = (0..200)
            .map(|_| generate_password(20, 4).unwrap())
            .collect();
        assert_eq!(many.len(), 200);
    }

    #[test]
    fn every_alphabet_symbol_appears_about_as_often() {
        // 8,000 symbols over 62: each expected ~129 times. The bounds are about 6 standard
        // deviations out, so a correct sampler fails this far less than once in a million
        // runs, while a missing symbol or a 2x bias fails it.
        let text: String = (0..400)
            .map(|_| generate_password(20, 0).unwrap())
            .collect();
        let mut counts: HashMap<u8, usize> = HashMap::new();
        for b in text.bytes() {
            *counts.entry(b).or_default() += 1;
        }
        let expected = text.len() as f64 / PASSWORD_ALPHABET.len() as f64;
        for &symbol in PASSWORD_ALPHABET {
            let count = counts.get(&symbol).copied().unwrap_or(0) as f64;
            assert!(
                (expected - 6.0 * expected.sqrt()..=expected + 6.0 * expected.sqrt())
                    .contains(&count),
                "{:?} seen {count} times, expected about {expected:.0}",
                char::from(symbol)
            );
        }
    }

    #[test]
    fn generated_pins_pass_the_checks() {
        for length in [4, 5, 6, 8, 20] {
            for _ in 0..200 {
                let pin = generate_pin(length).unwrap();
                assert_eq!(pin.len(), length);
                assert!(pin.bytes().all(|b| b.is_ascii_digit()));
                let policy = PinPolicy { min_length: length };
                assert!(check_pin(&pin, "", &policy).is_empty(), "{pin}");
            }
        }
    }

    #[test]
    fn pin_digits_all_appear() {
        let digits: HashSet<char> = (0..100)
            .flat_map(|_| generate_pin(6).unwrap().chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(digits.len(), 10);
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(matches!(
            generate_password(11, 4),
            Err(GenerateError::Length {
                length: 11,
                min: 12,
                max: 128
            })
        ));
        assert!(matches!(
            generate_password(129, 4),
            Err(GenerateError::Length { .. })
        ));
        assert!(matches!(
            generate_password(20, 5),
            Err(GenerateError::Score(5))
        ));
        assert!(matches!(generate_pin(3), Err(GenerateError::Length { .. })));
        assert!(matches!(
            generate_pin(21),
            Err(GenerateError::Length { .. })
        ));
        assert_eq!(
            generate_pin(3).unwrap_err().to_string(),
            "length 3 is outside 4..=20"
        );
    }

    #[test]
    fn sampling_is_uniform_over_a_non_power_of_two_alphabet() {
        // With 3 symbols, plain `byte % 3` would give 'a' 86/256 and the others 85/256;
        // too small to see here, so check the rejection bound directly instead.
        assert_eq!(256 - 256 % 3, 255);
        assert_eq!(256 - 256 % PASSWORD_ALPHABET.len(), 248);
        let s = sample(b"abc", 3000).unwrap();
        assert!(s.bytes().all(|b| b"abc".contains(&b)));
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(random_key().unwrap(), random_key().unwrap());
    }
}

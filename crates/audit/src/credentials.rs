//! Password and PIN checks: what is weak about a credential, as data.
//!
//! This module owns the rules for "weak SIP password" and "weak voicemail PIN", the shipped
//! common-password and common-PIN lists (`data/`), and the keyed digest that lets an audit
//! find one password reused by several extensions without keeping any of them.
//!
//! Everything here is pure: the caller passes the secret, its context and the policy, and
//! gets back every weakness found (not just the first), so an audit report can list them all.
//! Messages name the rule and the figures ("shorter than 12 characters (has 8)"), never the
//! secret itself: they end up in reports, logs and terminals.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shipped list of common passwords, lowercase, one per line (`#` comments allowed).
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");
/// Shipped list of common PINs, one per line (`#` comments allowed).
const COMMON_PINS: &str = include_str!("../data/common-pins.txt");

static COMMON_PASSWORD_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| list_entries(COMMON_PASSWORDS).collect());
static COMMON_PIN_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| list_entries(COMMON_PINS).collect());

fn list_entries(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// zxcvbn's matchers grow faster than linearly with the input, and an audited file may hold
/// anything: only this many characters are scored (zxcvbn's own authors advise a cap near
/// 100). Anything longer is far above every score threshold anyway.
const MAX_SCORED_CHARS: usize = 128;

/// Context values shorter than this are not looked for inside a password: a one- or
/// two-digit extension ("7") would flag most passwords that contain a digit.
const MIN_CONTEXT_CHARS: usize = 3;

/// What a SIP password must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters allowed.
    pub min_length: usize,
    /// Lowest zxcvbn score allowed, 0 (guessable in seconds) to 4 (very unguessable).
    pub min_score: u8,
}

impl Default for PasswordPolicy {
    /// 12 characters and a score of 3: SIP digest credentials are attacked online at high
    /// rates by scanners (friendly-scanner, sipvicious), so the bar is above a web login's.
    fn default() -> Self {
        PasswordPolicy {
            min_length: 12,
            min_score: 3,
        }
    }
}

/// What a voicemail PIN must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinPolicy {
    /// Fewest digits allowed.
    pub min_length: usize,
}

impl Default for PinPolicy {
    /// Six digits: a four-digit PIN has only 10,000 values, and voicemail boxes that can dial
    /// out (callback, DISA) are a classic toll-fraud door.
    fn default() -> Self {
        PinPolicy { min_length: 6 }
    }
}

/// The kind of a weakness, with a stable code for reports, JSON and `--fail-on` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WeaknessCode {
    /// Fewer characters (or digits) than the policy's minimum.
    TooShort,
    /// zxcvbn scores the password below the policy's minimum.
    LowScore,
    /// The password contains the extension number, username or domain.
    ContainsContext,
    /// The password is on the shipped common-password list.
    CommonPassword,
    /// The PIN has characters other than the digits 0-9.
    NotDigits,
    /// The PIN is one digit repeated (1111).
    RepeatedDigits,
    /// The PIN is an ascending or descending run (1234, 4321, 7890).
    SequentialDigits,
    /// The PIN is the extension number or the extension reversed.
    EqualsExtension,
    /// The PIN is on the shipped common-PIN list.
    CommonPin,
    /// The PIN is four digits that read as a year from 1950 to 2030 (a birth year).
    LooksLikeYear,
}

impl WeaknessCode {
    /// The stable code: lowercase with underscores, never renamed once shipped.
    pub fn as_str(self) -> &'static str {
        match self {
            WeaknessCode::TooShort => "too_short",
            WeaknessCode::LowScore => "low_score",
            WeaknessCode::ContainsContext => "contains_context",
            WeaknessCode::CommonPassword => "common_password",
            WeaknessCode::NotDigits => "not_digits",
            WeaknessCode::RepeatedDigits => "repeated_digits",
            WeaknessCode::SequentialDigits => "sequential_digits",
            WeaknessCode::EqualsExtension => "equals_extension",
            WeaknessCode::CommonPin => "common_pin",
            WeaknessCode::LooksLikeYear => "looks_like_year",
        }
    }
}

impl fmt::Display for WeaknessCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with a credential: its code and a message for a person.
///
/// INVARIANT: `message` never contains the secret (it may contain the context values, the
/// extension, username or domain, which are not secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weakness {
    pub code: WeaknessCode,
    pub message: String,
}

impl Weakness {
    fn new(code: WeaknessCode, message: impl Into<String>) -> Self {
        Weakness {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Every weakness of a SIP password, in a fixed order (length, score, context, list).
///
/// `context` holds the values a password must not contain: the extension number, the
/// username, the domain (empty and very short values are skipped). They are also given to
/// zxcvbn, which then scores a password built on them as guessable.
pub fn check_password(password: &str, context: &[&str], policy: &PasswordPolicy) -> Vec<Weakness> {
    let mut found = Vec::new();
    let length = password.chars().count();
    if length < policy.min_length {
        found.push(Weakness::new(
            WeaknessCode::TooShort,
            format!(
                "shorter than {} characters (has {length})",
                policy.min_length
            ),
        ));
    }

    if let Some(weakness) = score_weakness(password, context, policy.min_score) {
        found.push(weakness);
    }

    let lower = password.to_lowercase();
    for item in context {
        let item = item.trim();
        if item.chars().count() < MIN_CONTEXT_CHARS {
            continue;
        }
        if lower.contains(&item.to_lowercase()) {
            found.push(Weakness::new(
                WeaknessCode::ContainsContext,
                format!("contains \"{item}\" (extension, username or domain)"),
            ));
        }
    }

    if COMMON_PASSWORD_SET.contains(lower.as_str()) {
        found.push(Weakness::new(
            WeaknessCode::CommonPassword,
            "is on the list of most common passwords",
        ));
    }
    found
}

fn score_weakness(password: &str, context: &[&str], min_score: u8) -> Option<Weakness> {
    // An empty password is already "too short"; zxcvbn would add nothing useful.
    if password.is_empty() || min_score == 0 {
        return None;
    }
    let scored = match password.char_indices().nth(MAX_SCORED_CHARS) {
        Some((end, _)) => &password[..end],
        None => password,
    };
    let entropy = zxcvbn::zxcvbn(scored, context);
    let score = u8::from(entropy.score());
    if score >= min_score {
        return None;
    }
    let mut message = format!("strength score {score} of 4, below the minimum {min_score}");
    // zxcvbn's feedback is generic advice ("add another word or two"), never the input.
    if let Some(feedback) = entropy.feedback() {
        if let Some(warning) = feedback.warning() {
            message.push_str(&format!("; {warning}"));
        }
        for suggestion in feedback.suggestions() {
            message.push_str(&format!("; {suggestion}"));
        }
    }
    Some(Weakness::new(WeaknessCode::LowScore, message))
}

/// Every weakness of a voicemail PIN for `extension`, in a fixed order.
///
/// A PIN with anything but digits gets `not_digits` alone: the digit patterns mean nothing
/// for it, and most PBXs would refuse it at entry anyway.
pub fn check_pin(pin: &str, extension: &str, policy: &PinPolicy) -> Vec<Weakness> {
    if pin.is_empty() || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return vec![Weakness::new(
            WeaknessCode::NotDigits,
            "must be digits 0-9 only",
        )];
    }
    let mut found = Vec::new();
    // INVARIANT: from here the PIN is ASCII digits, so bytes are characters.
    let digits: Vec<u8> = pin.bytes().map(|b| b - b'0').collect();

    if digits.len() < policy.min_length {
        found.push(Weakness::new(
            WeaknessCode::TooShort,
            format!(
                "shorter than {} digits (has {})",
                policy.min_length,
                digits.len()
            ),
        ));
    }
    let repeated = digits.len() >= 2 && digits.iter().all(|&d| d == digits[0]);
    if repeated {
        found.push(Weakness::new(
            WeaknessCode::RepeatedDigits,
            "is one digit repeated",
        ));
    }
    // Repeated digits are a run with step 0; report them once, under their own code.
    if !repeated && is_sequential(&digits) {
        found.push(Weakness::new(
            WeaknessCode::SequentialDigits,
            "is an ascending or descending run of digits",
        ));
    }
    let extension = extension.trim();
    if !extension.is_empty() {
        let reversed: String = extension.chars().rev().collect();
        if pin == extension {
            found.push(Weakness::new(
                WeaknessCode::EqualsExtension,
                format!("is the extension number {extension}"),
            ));
        } else if pin == reversed {
            found.push(Weakness::new(
                WeaknessCode::EqualsExtension,
                format!("is the extension number {extension} reversed"),
            ));
        }
    }
    if COMMON_PIN_SET.contains(pin) {
        found.push(Weakness::new(
            WeaknessCode::CommonPin,
            "is on the list of most common PINs",
        ));
    }
    if looks_like_year(&digits) {
        found.push(Weakness::new(
            WeaknessCode::LooksLikeYear,
            "reads as a year between 1950 and 2030",
        ));
    }
    found
}

/// An ascending or descending run of three or more digits, wrapping around 9-0 the way the
/// keypad's digits are often typed (7890, 8901, 3210, 1098).
fn is_sequential(digits: &[u8]) -> bool {
    if digits.len() < 3 {
        return false;
    }
    let step_up = |a: u8, b: u8| (a + 1) % 10 == b;
    let ascending = digits.windows(2).all(|w| step_up(w[0], w[1]));
    let descending = digits.windows(2).all(|w| step_up(w[1], w[0]));
    ascending || descending
}

fn looks_like_year(digits: &[u8]) -> bool {
    if digits.len() != 4 {
        return false;
    }
    let value = digits.iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d));
    (1950..=2030).contains(&value)
}

/// HMAC-SHA256 of `secret` under `key`: equal secrets give equal digests under one key, so
/// an audit can find a password reused by several extensions by comparing digests and then
/// drop the secrets. The key is random per audit run (see `generate::random_key`), so the
/// digests are useless outside that run: no precomputed table of common passwords matches
/// them, and two runs cannot be linked.
pub fn keyed_digest(secret: &str, key: &[u8; 32]) -> [u8; 32] {
    // HMAC pads a key shorter than the hash's block (64 bytes for SHA-256) with zeros, so
    // padding the 32-byte key ourselves gives the same MAC while using the fixed-size
    // constructor, which cannot fail (the slice one returns a Result for any length).
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as Mac>::new(&block.into());
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(found: &[Weakness]) -> Vec<&'static str> {
        found.iter().map(|w| w.code.as_str()).collect()
    }

    const PIN_POLICY: PinPolicy = PinPolicy { min_length: 4 };

    #[test]
    fn pins_weak_and_strong() {
        // (pin, extension, expected codes)
        let table: &[(&str, &str, &[&str])] = &[
            ("1111", "", &["repeated_digits", "common_pin"]),
            ("000000", "", &["repeated_digits"]),
            ("1234", "", &["sequential_digits", "common_pin"]),
            ("4321", "", &["sequential_digits", "common_pin"]),
            ("345678", "", &["sequential_digits"]),
            ("987654", "", &["sequential_digits"]),
            ("7890", "", &["sequential_digits"]),
            ("8901", "", &["sequential_digits"]),
            ("2580", "", &["common_pin"]),
            ("1001", "1001", &["equals_extension"]),
            ("2004", "4002", &["equals_extension", "looks_like_year"]),
            ("1984", "", &["looks_like_year"]),
            ("2030", "", &["looks_like_year"]),
            ("19", "", &["too_short"]),
            ("12a4", "", &["not_digits"]),
            ("", "", &["not_digits"]),
            ("١٢٣٤", "", &["not_digits"]),
            // Strong: none of the patterns.
            ("8305", "1001", &[]),
            ("1949", "", &[]),
            ("2031", "", &[]),
            ("57", "", &["too_short"]),
            ("790213", "1001", &[]),
            ("1357", "", &["common_pin"]),
            ("1243", "", &[]),
        ];
        for (pin, extension, expected) in table {
            let found = check_pin(pin, extension, &PIN_POLICY);
            assert_eq!(
                &codes(&found),
                expected,
                "pin {pin:?} extension {extension:?}"
            );
        }
    }

    #[test]
    fn pin_minimum_length_is_the_policys() {
        let found = check_pin("8305", "", &PinPolicy { min_length: 6 });
        assert_eq!(codes(&found), ["too_short"]);
        assert_eq!(found[0].message, "shorter than 6 digits (has 4)");
        assert!(check_pin("830519", "", &PinPolicy::default()).is_empty());
    }

    #[test]
    fn passwords_weak_and_strong() {
        let policy = PasswordPolicy {
            min_length: 12,
            min_score: 3,
        };
        let context = ["1001", "alice", "pbx.example.com"];
        // (password, codes that must be present, codes that must be absent)
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "password",
                &["too_short", "low_score", "common_password"],
                &["contains_context"],
            ),
            ("PassWord", &["common_password"], &[]),
            ("1001secret", &["too_short", "contains_context"], &[]),
            (
                "Alice-is-my-name-2024",
                &["contains_context"],
                &["too_short"],
            ),
            ("voip.PBX.EXAMPLE.COM", &["contains_context"], &[]),
            ("Tr0ub4dor&3", &["too_short"], &["common_password"]),
            (
                "qwertyuiop",
                &["too_short", "low_score", "common_password"],
                &[],
            ),
            ("aaaaaaaaaaaaaaaa", &["low_score"], &["too_short"]),
            ("", &["too_short"], &["low_score"]),
        ];
        for (password, present, absent) in table {
            let found = codes(&check_password(password, &context, &policy));
            for code in *present {
                assert!(
                    found.contains(code),
                    "{password:?}: want {code}, got {found:?}"
                );
            }
            for code in *absent {
                assert!(
                    !found.contains(code),
                    "{password:?}: unwanted {code}, got {found:?}"
                );
            }
        }
        for strong in [
            "k7Qm-x9Tz.4Rw+Hn2=Vb",
            "correct horse battery staple vortex",
        ] {
            let found = check_password(strong, &context, &policy);
            assert!(found.is_empty(), "{strong:?}: {found:?}");
        }
    }

    #[test]
    fn short_context_values_are_not_searched() {
        let policy = PasswordPolicy::default();
        let found = check_password("k7Qm-x9Tz.4Rw+Hn2=Vb", &["7", "", "x9"], &policy);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn low_score_message_carries_zxcvbn_feedback_but_never_the_secret() {
        let secret = "monkey12345";
        let found = check_password(secret, &["1001"], &PasswordPolicy::default());
        let low = found
            .iter()
            .find(|w| w.code == WeaknessCode::LowScore)
            .expect("low score");
        assert!(
            low.message.starts_with("strength score "),
            "{}",
            low.message
        );
        assert!(low.message.contains("; "), "no feedback: {}", low.message);
        for weakness in &found {
            assert!(!weakness.message.contains(secret), "{}", weakness.message);
            assert!(
                !weakness.message.to_lowercase().contains("monkey"),
                "{}",
                weakness.message
            );
        }
    }

    #[test]
    fn pin_messages_never_hold_the_pin() {
        for pin in ["1111", "1234", "2580", "1984", "19", "2004"] {
            for weakness in check_pin(pin, "4002", &PIN_POLICY) {
                assert!(
                    !weakness.message.contains(pin) || pin == "4002",
                    "{weakness}"
                );
            }
        }
    }

    #[test]
    fn very_long_passwords_are_scored_quickly() {
        // A deterministic but patternless string (a repeated chunk would score low).
        let mut state = 0x2545_f491_u32;
        let long: String = (0..40_000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from(
                    b"abcdefghjkmnpqrstuvwxyzABCDEFGH23456789-_."[(state >> 16) as usize % 42],
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let found = check_password(&long, &[], &PasswordPolicy::default());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn shipped_lists_are_clean() {
        for entry in list_entries(COMMON_PASSWORDS) {
            assert_eq!(
                entry,
                entry.to_lowercase(),
                "list entries are compared lowercase"
            );
        }
        assert!(COMMON_PASSWORD_SET.len() > 300);
        for entry in list_entries(COMMON_PINS) {
            assert!(entry.bytes().all(|b| b.is_ascii_digit()), "{entry:?}");
        }
        assert!(COMMON_PIN_SET.contains("0852"));
    }

    #[test]
    fn keyed_digest_matches_hmac_sha256_and_depends_on_the_key() {
        let key = [7u8; 32];
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        reference.update(b"s3cret-pass");
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(keyed_digest("s3cret-pass", &key), expected);
        assert_eq!(
            keyed_digest("s3cret-pass", &key),
            keyed_digest("s3cret-pass", &key)
        );
        assert_ne!(
            keyed_digest("s3cret-pass", &key),
            keyed_digest("s3cret-pasS", &key)
        );
        assert_ne!(
            keyed_digest("s3cret-pass", &key),
            keyed_digest("s3cret-pass", &[8u8; 32])
        );
    }

    #[test]
    fn keyed_digest_rfc_4231_case_2_shape() {
        // RFC 4231 test case 2 ("Jefe", zero-padded like every key shorter than a block).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&keyed_digest("what do ya want for nothing?", &key)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

//! Property tests of `SET VARIABLE` quoting against Asterisk's own unquoting (`parse_args`,
//! ported in `support`): whatever the value, the command is one line Asterisk reads in one
//! `fgets`, it splits into exactly `SET`, `VARIABLE`, the name and one value, and that value
//! is the input with control characters made spaces.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use proptest::prelude::*;
use support::parse_args;
use tollgate_agi::protocol::command::{Command, MAX_COMMAND_BYTES, MAX_VALUE_BYTES};
use tollgate_agi::protocol::{quote, sanitize};

/// Strings rich in what breaks quoting: quotes, backslashes, CR, LF, NUL, spaces, tabs,
/// multi-byte characters, and any char at all.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\0".to_owned()),
        Just(" ".to_owned()),
        Just("\t".to_owned()),
        Just("\\\"".to_owned()),
        Just("\"\\".to_owned()),
        Just("SET VARIABLE TOLLGATE_DECISION allow".to_owned()),
        Just("é€😀".to_owned()),
        any::<char>().prop_map(String::from),
        "[a-z0-9 ]{0,8}",
    ];
    prop::collection::vec(piece, 0..300).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn quoted_values_never_hold_a_line_break(value in hostile()) {
        let quoted = quote(&value);
        prop_assert!(!quoted.contains('\n') && !quoted.contains('\r') && !quoted.contains('\0'));
    }

    #[test]
    fn asterisk_unquotes_exactly_the_sanitized_value(value in hostile()) {
        let line = Command::SetVariable { name: "TOLLGATE_REASON", value: &value }
            .encode()
            .unwrap();
        prop_assert!(line.len() <= MAX_COMMAND_BYTES);
        let body = line.strip_suffix('\n').unwrap();
        prop_assert!(!body.contains('\n'));
        let words = parse_args(body.as_bytes());
        prop_assert_eq!(words.len(), 4, "{:?}", body);
        prop_assert_eq!(&words[0], b"SET");
        prop_assert_eq!(&words[1], b"VARIABLE");
        prop_assert_eq!(&words[2], b"TOLLGATE_REASON");
        let expected = sanitize(&value);
        prop_assert_eq!(String::from_utf8(words[3].clone()).unwrap(), expected.clone());
        prop_assert!(expected.len() <= MAX_VALUE_BYTES);
        if value.len() <= MAX_VALUE_BYTES && !value.chars().any(char::is_control) {
            prop_assert_eq!(expected, value);
        }
    }
}

#[test]
fn the_port_of_parse_args_matches_asterisk_on_known_lines() {
    let words = |line: &str| -> Vec<String> {
        parse_args(line.as_bytes())
            .into_iter()
            .map(|w| String::from_utf8(w).unwrap())
            .collect()
    };
    assert_eq!(words("SET VARIABLE X \"\""), ["SET", "VARIABLE", "X", ""]);
    assert_eq!(
        words("SET  VARIABLE\tX \"a \\\"b\\\" \\\\ c\""),
        ["SET", "VARIABLE", "X", "a \"b\" \\ c"]
    );
    assert_eq!(words("VERBOSE a\\ b 1"), ["VERBOSE", "a b", "1"]);
    assert_eq!(words("x\"y z\"w"), ["xy zw"]);
}

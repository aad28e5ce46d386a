//! Every parser takes arbitrary input without panicking, and what it accepts keeps its
//! limits.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use tollgate_agi::handler::{parse_address, AUTHORIZE_PARAMS, END_PARAMS};
use tollgate_agi::protocol::command::parse_reply_line;
use tollgate_agi::protocol::env::{MAX_LINE_BYTES, MAX_VARIABLES};
use tollgate_agi::protocol::{split_network_script, AgiEnvironment, Params};
use tollgate_agi::AgiCall;

/// Bytes shaped like an environment block: names, colons, newlines and noise.
fn block() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"agi_".to_vec()),
        Just(b": ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"agi_network_script: authorize?extension=1&number=%2B1&ip=1.2.3.4\n".to_vec()),
        Just(b"agi_uniqueid: 1.1\n".to_vec()),
        Just(b"agi_arg_1: x\n".to_vec()),
        "[a-z_0-9]{1,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    prop::collection::vec(piece, 0..64).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_environment_parser_takes_anything(bytes in block()) {
        if let Ok(env) = AgiEnvironment::parse(&bytes) {
            prop_assert!(env.variables().len() <= MAX_VARIABLES);
            prop_assert!(env.variables().keys().all(|k| k.starts_with("agi_")));
            prop_assert!(env.variables().values().all(|v| v.len() <= 3 * MAX_LINE_BYTES));
            let call = AgiCall::new(env);
            let _ = call.authorize_args();
            let _ = call.end_args();
        }
    }

    #[test]
    fn the_other_parsers_take_anything(text in "\\PC{0,64}|[%&=?/a-z0-9+]{0,64}") {
        let _ = parse_reply_line(&text);
        let _ = parse_address(&text);
        let (_, query) = split_network_script(&text);
        let _ = Params::parse(query, "authorize", AUTHORIZE_PARAMS);
        let _ = Params::parse(&text, "end", END_PARAMS);
    }
}

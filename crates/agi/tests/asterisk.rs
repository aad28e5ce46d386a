//! The server against a scripted Asterisk 20: real environment blocks, commands split into
//! words as `parse_args` does, replies as `agi_handle_command` gives them.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::{fast_settings, Asterisk, End, Env, Mode, Server, TestHandler};
use tollgate_agi::{AgiSettings, AuthorizeArgs, EndArgs, MAX_SECONDS_CAP};

const AUTHORIZE: &str = "authorize?extension=1001&number=%2B442071234567&ip=203.0.113.45%3A5060";

fn decision(asterisk: &Asterisk) -> (&str, &str, &str, &str) {
    (
        asterisk.var("TOLLGATE_DECISION").unwrap_or("<unset>"),
        asterisk.var("TOLLGATE_MAX_SECONDS").unwrap_or("<unset>"),
        asterisk.var("TOLLGATE_CODE").unwrap_or("<unset>"),
        asterisk.var("TOLLGATE_REASON").unwrap_or("<unset>"),
    )
}

#[tokio::test]
async fn allow_sets_the_four_variables_decision_last() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), AgiSettings::default()).await;
    let mut asterisk = Asterisk::new();
    let end = asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;

    assert_eq!(end, End::Closed);
    assert_eq!(
        asterisk.commands,
        [
            "SET VARIABLE TOLLGATE_MAX_SECONDS \"3600\"",
            "SET VARIABLE TOLLGATE_REASON \"rate uk-landline 0.0125/min: 3600 s reserve 0.75 of 20.00 daily\"",
            "SET VARIABLE TOLLGATE_CODE \"\"",
            "SET VARIABLE TOLLGATE_DECISION \"allow\"",
        ]
    );
    assert_eq!(
        decision(&asterisk),
        (
            "allow",
            "3600",
            "",
            "rate uk-landline 0.0125/min: 3600 s reserve 0.75 of 20.00 daily"
        )
    );
    assert_eq!(
        handler.authorized(),
        [AuthorizeArgs {
            call_id: "1718012345.42".into(),
            extension: "1001".into(),
            number: "+442071234567".into(),
            source_ip: Some("203.0.113.45".parse().unwrap()),
            channel: "PJSIP/1001-0000002a".into(),
        }]
    );
    let summary = server.stop().await;
    assert_eq!(
        (summary.accepted, summary.completed, summary.failed),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn deny_sets_code_reason_and_zero_seconds() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), AgiSettings::default()).await;
    let mut asterisk = Asterisk::new();
    asterisk
        .call(
            server.addr,
            &Env::asterisk20("authorize?extension=1001&number=%2B881631234567&ip=203.0.113.45")
                .bytes(),
        )
        .await;
    assert_eq!(
        decision(&asterisk),
        (
            "deny",
            "0",
            "class_not_allowed",
            "extension 1001: class satellite is not allowed (extension 1001 rules.allowed_classes)"
        )
    );
    assert_eq!(asterisk.names_set().last(), Some(&"TOLLGATE_DECISION"));
    assert_eq!(handler.authorized()[0].number, "+881631234567");
    server.stop().await;
}

#[tokio::test]
async fn positional_arguments_and_environment_fallbacks() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), AgiSettings::default()).await;

    // AGI(agi://127.0.0.1:4573/authorize,${CHANNEL(endpoint)},${EXTEN},${CHANNEL(pjsip,remote_addr)})
    let env = Env::with_args("authorize", &["alice", "0044201", "[2001:db8::7]:5061"]);
    Asterisk::new().call(server.addr, &env.bytes()).await;
    let got = handler.authorized().pop().unwrap();
    assert_eq!(
        (got.extension.as_str(), got.number.as_str(), got.source_ip),
        ("alice", "0044201", Some("2001:db8::7".parse().unwrap()))
    );

    // No parameters and no arguments: caller id, extension, and the address asked of
    // Asterisk with GET VARIABLE (a function call: Asterisk evaluates names ending in `)`).
    let mut asterisk = Asterisk::new();
    asterisk.channel.insert(
        "CHANNEL(pjsip,remote_addr)".into(),
        "198.51.100.20:5060".into(),
    );
    asterisk
        .call(server.addr, &Env::asterisk20("authorize").bytes())
        .await;
    assert_eq!(
        asterisk.commands[0],
        "GET VARIABLE CHANNEL(pjsip,remote_addr)"
    );
    assert_eq!(asterisk.var("TOLLGATE_DECISION"), Some("allow"));
    let got = handler.authorized().pop().unwrap();
    assert_eq!(
        (got.extension.as_str(), got.number.as_str(), got.source_ip),
        (
            "1001",
            "+442071234567",
            Some("198.51.100.20".parse().unwrap())
        )
    );

    // Asterisk has no address (200 result=0): the handler is asked without one.
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20("authorize").bytes())
        .await;
    assert_eq!(asterisk.var("TOLLGATE_DECISION"), Some("allow"));
    assert_eq!(handler.authorized().pop().unwrap().source_ip, None);

    // Not a PJSIP channel: no question asked.
    let mut asterisk = Asterisk::new();
    let env = Env::asterisk20("authorize").set("agi_type", "IAX2");
    asterisk.call(server.addr, &env.bytes()).await;
    assert!(asterisk
        .commands
        .iter()
        .all(|c| c.starts_with("SET VARIABLE")));
    server.stop().await;
}

#[tokio::test]
async fn end_reports_billsec_and_answered_from_a_hangup_handler() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), AgiSettings::default()).await;

    // The hangup handler runs on the same channel: same uniqueid as the authorize.
    let mut asterisk = Asterisk::new();
    asterisk
        .call(
            server.addr,
            &Env::asterisk20("end?billsec=125&dialstatus=ANSWER")
                .set("agi_extension", "s")
                .set("agi_context", "tollgate-end")
                .set("agi_priority", "1")
                .bytes(),
        )
        .await;
    assert_eq!(asterisk.commands, ["SET VARIABLE TOLLGATE_END \"ok\""]);

    // Not answered: empty ${ANSWEREDTIME}, DIALSTATUS=BUSY.
    let mut asterisk = Asterisk::new();
    asterisk
        .call(
            server.addr,
            &Env::asterisk20("end?billsec=&dialstatus=BUSY").bytes(),
        )
        .await;
    assert_eq!(asterisk.var("TOLLGATE_END"), Some("ok"));

    assert_eq!(
        handler.ended(),
        [
            EndArgs {
                call_id: "1718012345.42".into(),
                duration_s: Some(125),
                answered: true
            },
            EndArgs {
                call_id: "1718012345.42".into(),
                duration_s: None,
                answered: false
            },
        ]
    );

    // A bad figure is refused without calling the handler.
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20("end?billsec=12s").bytes())
        .await;
    assert_eq!(asterisk.var("TOLLGATE_END"), Some("error"));
    assert_eq!(handler.ended().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn end_failure_is_reported_to_the_dialplan() {
    let handler = TestHandler::new(Mode::Fail("database is locked".into()));
    let server = Server::start(handler.clone(), fast_settings()).await;
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20("end?billsec=3").bytes())
        .await;
    assert_eq!(asterisk.var("TOLLGATE_END"), Some("error"));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_handler_gives_error_within_the_decision_timeout() {
    let handler = TestHandler::new(Mode::Slow(Duration::from_secs(5)));
    let server = Server::start(handler.clone(), fast_settings()).await;
    let started = Instant::now();
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        decision(&asterisk),
        (
            "error",
            "0",
            "timeout",
            "tollgate did not decide within 300 ms"
        )
    );
    assert_eq!(asterisk.names_set().last(), Some(&"TOLLGATE_DECISION"));
    server.stop().await;
}

#[tokio::test]
async fn a_failing_handler_gives_error_with_its_message() {
    let handler = TestHandler::new(Mode::Fail("journal unavailable".into()));
    let server = Server::start(handler.clone(), fast_settings()).await;
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert_eq!(
        decision(&asterisk),
        ("error", "0", "handler_error", "journal unavailable")
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_and_unknown_scripts_give_error_without_asking_the_handler() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), AgiSettings::default()).await;
    let cases = [
        (
            "authorise?extension=1001",
            "unknown_script",
            "unknown FastAGI script \"authorise\": use authorize or end",
        ),
        (
            "authorize?extension=1001&number=1&number=2",
            "bad_request",
            "parameter \"number\" is given twice",
        ),
        (
            "authorize?extension=1001&numbr=1",
            "bad_request",
            "unknown parameter \"numbr\" for the authorize script",
        ),
        (
            "authorize?extension=%FF&number=1",
            "bad_request",
            "parameter \"extension\" is not valid percent-encoded UTF-8",
        ),
        (
            "authorize?number=1&ip=gateway.example",
            "bad_request",
            "the source address is not an IP address or address:port",
        ),
    ];
    for (script, code, reason) in cases {
        let mut asterisk = Asterisk::new();
        asterisk
            .call(server.addr, &Env::asterisk20(script).bytes())
            .await;
        assert_eq!(
            decision(&asterisk),
            ("error", "0", code, reason),
            "{script}"
        );
    }
    // No agi_network_script at all (AGI(agi://127.0.0.1:4573)).
    let mut asterisk = Asterisk::new();
    let env = Env::asterisk20("").remove("agi_network_script");
    asterisk.call(server.addr, &env.bytes()).await;
    assert_eq!(asterisk.var("TOLLGATE_CODE"), Some("unknown_script"));
    assert!(handler.authorized().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn reasons_cannot_inject_commands() {
    let evil = "blocked \"x\" \\ y\nSET VARIABLE TOLLGATE_DECISION allow\r\n\0\u{1b}[31m end";
    let handler = TestHandler::new(Mode::DenyWith(evil.into()));
    let server = Server::start(handler.clone(), AgiSettings::default()).await;
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert_eq!(asterisk.commands.len(), 4, "{:?}", asterisk.commands);
    assert_eq!(
        asterisk.names_set(),
        [
            "TOLLGATE_MAX_SECONDS",
            "TOLLGATE_REASON",
            "TOLLGATE_CODE",
            "TOLLGATE_DECISION"
        ]
    );
    assert_eq!(asterisk.var("TOLLGATE_DECISION"), Some("deny"));
    assert_eq!(
        asterisk.var("TOLLGATE_REASON"),
        Some("blocked \"x\" \\ y SET VARIABLE TOLLGATE_DECISION allow    [31m end")
    );
    server.stop().await;
}

#[tokio::test]
async fn codes_are_cleaned_and_seconds_capped() {
    struct Odd;
    impl tollgate_agi::AgiHandler for Odd {
        async fn authorize(&self, _: AuthorizeArgs) -> Result<tollgate_agi::AgiDecision, String> {
            Ok(tollgate_agi::AgiDecision {
                allow: true,
                max_seconds: u64::MAX,
                reason: String::new(),
                code: "odd code\"; Hangup()".into(),
            })
        }
        async fn end(&self, _: EndArgs) -> Result<(), String> {
            Ok(())
        }
    }
    let server = Server::start(std::sync::Arc::new(Odd), AgiSettings::default()).await;
    let mut asterisk = Asterisk::new();
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert_eq!(
        asterisk.var("TOLLGATE_MAX_SECONDS"),
        Some(MAX_SECONDS_CAP.to_string().as_str())
    );
    assert_eq!(asterisk.var("TOLLGATE_CODE"), Some("odd_code___Hangup__"));
    server.stop().await;
}

#[tokio::test]
async fn hangup_notices_are_skipped() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), AgiSettings::default()).await;
    let mut asterisk = Asterisk::new();
    // The caller hangs up while tollgate decides: Asterisk says HANGUP, then SET VARIABLE
    // still works (it is allowed on a dead channel).
    asterisk.before_first_reply = vec!["HANGUP".into()];
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert_eq!(asterisk.var("TOLLGATE_DECISION"), Some("allow"));
    let summary = server.stop().await;
    assert_eq!((summary.completed, summary.failed), (1, 0));
}

#[tokio::test]
async fn a_dead_channel_stops_the_script_quietly_and_other_refusals_fail_it() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), AgiSettings::default()).await;
    let replies = [
        "511 Command Not Permitted on a dead channel or intercepted",
        "510 Invalid or unknown command",
        "520 Invalid command syntax.  Proper usage not available.",
    ];
    for reply in replies {
        let mut asterisk = Asterisk::new();
        asterisk.answer = Some(Box::new(move |_, _| Some(vec![reply.to_owned()])));
        let end = asterisk
            .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
            .await;
        assert_eq!(end, End::Closed);
        assert_eq!(
            asterisk.commands.len(),
            1,
            "stops at the first refusal: {reply}"
        );
    }
    // A multi-line usage block is read to its end before the script stops.
    let mut asterisk = Asterisk::new();
    asterisk.answer = Some(Box::new(|_, _| {
        Some(vec![
            "520-Invalid command syntax.  Proper usage follows:".into(),
            " Usage: SET VARIABLE <variablename> <value>".into(),
            "520 End of proper usage.".into(),
        ])
    }));
    asterisk
        .call(server.addr, &Env::asterisk20(AUTHORIZE).bytes())
        .await;
    assert_eq!(asterisk.commands.len(), 1);
    let summary = server.stop().await;
    assert_eq!((summary.completed, summary.failed), (1, 3));
}

#[tokio::test]
async fn many_calls_at_once() {
    let handler = TestHandler::new(Mode::Policy);
    let server = Server::start(handler.clone(), AgiSettings::default()).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..50 {
        let addr = server.addr;
        calls.spawn(async move {
            let mut asterisk = Asterisk::new();
            let script = format!("{AUTHORIZE}&call_id=call-{i}");
            asterisk.call(addr, &Env::asterisk20(&script).bytes()).await;
            asterisk.var("TOLLGATE_DECISION").map(str::to_owned)
        });
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(result.unwrap().as_deref(), Some("allow"));
    }
    let mut ids: Vec<String> = handler
        .authorized()
        .into_iter()
        .map(|a| a.call_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    let summary = server.stop().await;
    assert_eq!(summary.completed, 50);
}

//! Asterisk through FastAGI against the real binary: a scripted Asterisk sends the
//! environment block Asterisk 20 sends and answers each command as Asterisk does; the
//! decision is tollgate's (the same reservation, ledger and monitor as over HTTP), the
//! `end` script settles the call, and a call from outside the extension's networks is
//! refused with its code.

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{start_in, TEST_POLICY};

/// Runs one AGI conversation; returns every `SET VARIABLE` (name, value) in order.
fn asterisk(addr: &str, script: &str, uniqueid: &str) -> Vec<(String, String)> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let env = [
        ("agi_network", "yes".to_string()),
        ("agi_network_script", script.to_string()),
        ("agi_request", format!("agi://{addr}/{script}")),
        ("agi_channel", "PJSIP/1001-0000002a".to_string()),
        ("agi_language", "en".to_string()),
        ("agi_type", "PJSIP".to_string()),
        ("agi_uniqueid", uniqueid.to_string()),
        ("agi_version", "20.8.1".to_string()),
        ("agi_callerid", "1001".to_string()),
        ("agi_calleridname", "Alice Martin".to_string()),
        ("agi_callingpres", "0".to_string()),
        ("agi_callingani2", "0".to_string()),
        ("agi_callington", "0".to_string()),
        ("agi_callingtns", "0".to_string()),
        ("agi_dnid", "+33142685300".to_string()),
        ("agi_rdnis", "unknown".to_string()),
        ("agi_context", "outbound".to_string()),
        ("agi_extension", "+33142685300".to_string()),
        ("agi_priority", "3".to_string()),
        ("agi_enhanced", "0.0".to_string()),
        ("agi_accountcode", String::new()),
        ("agi_threadid", "139872464172736".to_string()),
    ];
    let mut block = String::new();
    for (k, v) in env {
        block.push_str(&format!("{k}: {v}\n"));
    }
    block.push('\n');
    stream.write_all(block.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut set = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            return set;
        }
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("SET VARIABLE ") {
            let (name, value) = rest.split_once(' ').unwrap();
            let value = value
                .trim_matches('"')
                .replace("\\\"", "\"")
                .replace("\\\\", "\\");
            set.push((name.to_string(), value));
            stream.write_all(b"200 result=1\n").unwrap();
        } else {
            // GET VARIABLE and anything else: what Asterisk answers for an unset variable.
            stream.write_all(b"200 result=0\n").unwrap();
        }
    }
}

fn var<'a>(set: &'a [(String, String)], name: &str) -> &'a str {
    set.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} not set: {set:?}"))
}

#[test]
fn asterisk_asks_over_fastagi_and_reports_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!("{TEST_POLICY}\n[agi]\nlisten = \"127.0.0.1:0\"\n");
    let server = start_in(dir.path(), &policy);
    let agi = server.agi.clone().expect("agi listening line");

    let set = asterisk(
        &agi,
        "authorize?extension=1001&number=%2B33142685300&ip=127.0.0.1",
        "1718012345.42",
    );
    assert_eq!(var(&set, "TOLLGATE_DECISION"), "allow", "{set:?}");
    // 1.00 daily at 0.60/min, 60/60: one minute.
    assert_eq!(var(&set, "TOLLGATE_MAX_SECONDS"), "60");
    assert_eq!(
        set.last().unwrap().0,
        "TOLLGATE_DECISION",
        "the decision is set last"
    );
    // The same call is in the ledger, with the channel as its PBX handle.
    let (status, call) = server.get("/v1/calls/1718012345.42", &server.reader);
    assert_eq!(status, 200, "{call}");

    let set = asterisk(&agi, "end?billsec=30&dialstatus=ANSWER", "1718012345.42");
    assert_eq!(var(&set, "TOLLGATE_END"), "ok", "{set:?}");
    let credit = server.credit("1001");
    let level = &credit["levels"][0];
    assert_eq!(
        level["spent_today"], "0.60",
        "one started minute billed: {credit}"
    );
    assert_eq!(level["reserved"], "0.00", "{credit}");
    let (status, _) = server.get("/v1/calls/1718012345.42", &server.reader);
    assert_eq!(status, 404, "settled calls are no longer active");

    // 2001 may call only from 10.0.0.0/8.
    let set = asterisk(
        &agi,
        "authorize?extension=2001&number=%2B33142685300&ip=127.0.0.1",
        "1718012345.43",
    );
    assert_eq!(var(&set, "TOLLGATE_DECISION"), "deny");
    assert_eq!(var(&set, "TOLLGATE_CODE"), "ip_not_allowed");
    // An unknown extension is an error for the dialplan to handle (fail closed by default).
    let set = asterisk(
        &agi,
        "authorize?extension=9999&number=%2B33142685300&ip=127.0.0.1",
        "1718012345.44",
    );
    assert_eq!(var(&set, "TOLLGATE_DECISION"), "error");
}

//! The intrusion guard through the real binary's API: registration events, scanners,
//! source restriction, flood reports, the ban list in JSON and text, manual bans, expiry,
//! and bans surviving a restart. The firewall is the dry-run backend here; the nftables
//! adapter has its own tests in network namespaces (crates/enforce).

// Test code: failures must fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{start_in, TEST_POLICY};
use serde_json::{json, Value};

fn policy() -> String {
    format!(
        r#"{TEST_POLICY}
[guard]
allowlist = ["192.0.2.0/24"]
jails = {{ sip-auth = {{ maxretry = 5, findtime = "10m", bantime = "1h" }}, slow = {{ maxretry = 20, findtime = "1d", bantime = "1d" }} }}
pike = {{ window = "2s", density = 100, subnet_density = 400, bantime = "10m" }}
"#
    )
}

fn failure(ip: &str, user: &str) -> String {
    json!({"ip": ip, "port": 5060, "transport": "udp", "user": user, "user_agent": "Yealink SIP-T46S", "outcome": "failure", "reason": "wrong password"}).to_string()
}

#[test]
fn failures_ban_after_maxretry_and_the_ban_list_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), &policy());
    for i in 0..4 {
        let (status, verdict) = server.post(
            "/v1/events/registration",
            &server.pbx,
            &failure("203.0.113.7", "1001"),
        );
        assert_eq!(status, 200, "{verdict}");
        assert_eq!(verdict["accepted"], false);
        assert!(verdict["ban"].is_null(), "failure {i}: {verdict}");
    }
    let (_, verdict) = server.post(
        "/v1/events/registration",
        &server.pbx,
        &failure("203.0.113.7", "1001"),
    );
    assert_eq!(verdict["ban"]["target"], "203.0.113.7/32", "{verdict}");
    assert_eq!(verdict["ban"]["rule"], "jail sip-auth");
    assert_eq!(verdict["ban"]["events"].as_array().unwrap().len(), 5);

    let (status, list) = server.get("/v1/bans", &server.reader);
    assert_eq!(status, 200);
    let bans = list["bans"].as_array().unwrap();
    assert_eq!(bans.len(), 1);
    assert!(
        bans[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("5 failures in "),
        "{list}"
    );
    // Plain text for a proxy that polls.
    let response = ureq::get(&format!("{}/v1/bans?format=text", server.base))
        .set("Authorization", &format!("Bearer {}", server.pbx))
        .call()
        .unwrap();
    assert!(response.content_type().starts_with("text/plain"));
    assert_eq!(response.into_string().unwrap(), "203.0.113.7/32\n");

    // A success from a banned source is refused.
    let ok = json!({"ip": "203.0.113.7", "user": "1001", "outcome": "success"}).to_string();
    let (_, verdict) = server.post("/v1/events/registration", &server.pbx, &ok);
    assert_eq!(verdict["accepted"], false);
    assert!(
        verdict["reason"].as_str().unwrap().contains("is banned"),
        "{verdict}"
    );

    // Bans survive a restart.
    drop(server);
    let server = start_in(dir.path(), &policy());
    let (_, list) = server.get("/v1/bans", &server.reader);
    assert_eq!(list["bans"][0]["target"], "203.0.113.7/32", "{list}");
}

#[test]
fn scanners_outside_sources_floods_and_manual_bans() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), &policy());
    // A known scanner is banned at its first request.
    let scan = json!({"ip": "198.51.100.66", "user": "100", "user_agent": "friendly-scanner", "outcome": "failure"}).to_string();
    let (_, verdict) = server.post("/v1/events/registration", &server.pbx, &scan);
    assert_eq!(verdict["ban"]["rule"], "scanner", "{verdict}");
    // The right password from the wrong place is refused.
    let outside = json!({"ip": "198.51.100.5", "user": "1001", "outcome": "success"}).to_string();
    let (_, verdict) = server.post("/v1/events/registration", &server.pbx, &outside);
    assert_eq!(verdict["accepted"], false);
    assert_eq!(
        verdict["reason"],
        "extension 1001 may register only from 127.0.0.0/8, ::1/128, not 198.51.100.5"
    );
    let inside = json!({"ip": "127.0.0.1", "user": "1001", "outcome": "success"}).to_string();
    let (_, verdict) = server.post("/v1/events/registration", &server.pbx, &inside);
    assert_eq!(verdict["accepted"], true, "{verdict}");
    // An allowlisted office is never banned, scanner or not.
    let office =
        json!({"ip": "192.0.2.9", "user": "100", "user_agent": "sipvicious", "outcome": "failure"})
            .to_string();
    let (_, verdict) = server.post("/v1/events/registration", &server.pbx, &office);
    assert!(verdict["ban"].is_null(), "{verdict}");

    // A batch of events, then a flood report.
    let batch = json!({"events": (0..3).map(|i| json!({"ip": "2001:db8::7", "user": format!("u{i}"), "outcome": "failure"})).collect::<Vec<_>>()});
    let (status, results) =
        server.post("/v1/events/registrations", &server.pbx, &batch.to_string());
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["results"].as_array().unwrap().len(), 3);
    let counts = json!({"counts": [{"ip": "198.51.100.200", "count": 150}, {"ip": "198.51.100.201", "count": 5}]});
    let (_, flood) = server.post("/v1/events/requests", &server.pbx, &counts.to_string());
    assert_eq!(flood["bans"].as_array().unwrap().len(), 1, "{flood}");
    assert_eq!(flood["bans"][0]["rule"], "pike");
    assert_eq!(flood["bans"][0]["target"], "198.51.100.200/32");

    // By hand.
    let (status, ban) = server.post(
        "/v1/bans",
        &server.admin,
        r#"{"target":"203.0.113.0/24","reason":"abuse report 4711"}"#,
    );
    assert_eq!(status, 201, "{ban}");
    assert_eq!(ban["ban"]["rule"], "manual");
    assert!(ban["ban"]["expires_at"].is_null());
    let (status, refused) = server.post("/v1/bans", &server.admin, r#"{"target":"192.0.2.0/25"}"#);
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (409, Value::from("allowlisted"))
    );
    let (status, _) = server.post("/v1/bans", &server.pbx, r#"{"target":"203.0.114.1"}"#);
    assert_eq!(status, 403, "the PBX token may not ban by hand");
    let (status, _) = server.call(
        "DELETE",
        "/v1/bans?target=203.0.113.0/24",
        Some(&server.admin),
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = server.call(
        "DELETE",
        "/v1/bans?target=203.0.113.0/24",
        Some(&server.admin),
        None,
    );
    assert_eq!(status, 404);
    let (_, list) = server.get("/v1/bans", &server.reader);
    let targets: Vec<&str> = list["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, vec!["198.51.100.66/32", "198.51.100.200/32"]);
}

#[test]
fn short_bans_expire_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), &policy());
    // A 2 s ban (by hand: the jails' bans last longer) leaves the list on time, through
    // the service's expiry task.
    let (status, _) = server.post(
        "/v1/bans",
        &server.admin,
        r#"{"target":"203.0.113.99","duration_s":2}"#,
    );
    assert_eq!(status, 201);
    let (_, list) = server.get("/v1/bans", &server.reader);
    assert_eq!(list["bans"].as_array().unwrap().len(), 1);
    let started = Instant::now();
    loop {
        let (_, list) = server.get("/v1/bans", &server.reader);
        if list["bans"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the 2 s ban is still listed: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn bad_events_are_refused_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), &policy());
    let cases = [
        (r#"{"ip":"300.1.1.1","outcome":"failure"}"#, "ip"),
        (r#"{"ip":"203.0.113.1","outcome":"maybe"}"#, "outcome"),
        (r#"{"ip":"203.0.113.1"}"#, "outcome"),
        (
            r#"{"ip":"203.0.113.1","outcome":"failure","transport":"carrier-pigeon"}"#,
            "transport",
        ),
        (
            r#"{"ip":"203.0.113.1","outcome":"failure","port":70000}"#,
            "port",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = server.post("/v1/events/registration", &server.pbx, body);
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (status, answer) = server.post(
        "/v1/events/registrations",
        &server.pbx,
        r#"{"events":[{"ip":"203.0.113.1","outcome":"failure"},{"ip":"x","outcome":"failure"}]}"#,
    );
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (422, Value::from("events[1].ip"))
    );
    let (status, answer) = server.post(
        "/v1/events/requests",
        &server.pbx,
        r#"{"counts":[{"ip":"203.0.113.1","count":-1}]}"#,
    );
    assert_eq!(status, 422, "{answer}");
    let (_, list) = server.get("/v1/bans", &server.reader);
    assert!(
        list["bans"].as_array().unwrap().is_empty(),
        "nothing was banned by bad input"
    );
}

#[test]
fn failures_in_a_tailed_log_ban_within_a_fraction_of_a_second_and_restarts_resume() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("security.log");
    std::fs::write(&log, "old history that must not be read\n").unwrap();
    let policy = format!(
        "{}\n[[guard.logs]]\npath = \"security.log\"\nformat = \"asterisk\"\n",
        policy()
    );
    let server = start_in(dir.path(), &policy);
    let line = |n: u32| {
        format!(
            "[2026-11-26 12:00:{n:02}] NOTICE[1234] chan_sip.c: Registration from '<sip:100{n}@192.0.2.1>' failed for '203.0.113.44:5060' - Wrong password\n"
        )
    };
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for n in 0..4 {
        file.write_all(line(n).as_bytes()).unwrap();
    }
    file.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (_, list) = server.get("/v1/bans", &server.reader);
    assert!(
        list["bans"].as_array().unwrap().is_empty(),
        "4 failures must not ban: {list}"
    );
    file.write_all(line(4).as_bytes()).unwrap();
    file.flush().unwrap();
    let written = Instant::now();
    let latency = loop {
        let (_, list) = server.get("/v1/bans", &server.reader);
        if let Some(ban) = list["bans"].as_array().unwrap().first() {
            assert_eq!(ban["target"], "203.0.113.44/32");
            assert_eq!(ban["events"].as_array().unwrap().len(), 5);
            break written.elapsed();
        }
        assert!(
            written.elapsed() < Duration::from_secs(5),
            "no ban from the log"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!("log line to ban: {latency:?}");

    // Rotation: the log is renamed and a new one started; failures there count too.
    drop(server);
    std::fs::rename(&log, dir.path().join("security.log.1")).unwrap();
    let mut fresh = std::fs::File::create(&log).unwrap();
    let other = |n: u32| line(n).replace("203.0.113.44", "203.0.113.45");
    let server = start_in(dir.path(), &policy);
    for n in 0..5 {
        fresh.write_all(other(n).as_bytes()).unwrap();
    }
    fresh.flush().unwrap();
    let started = Instant::now();
    loop {
        let (_, list) = server.get("/v1/bans", &server.reader);
        let targets: Vec<String> = list["bans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["target"].as_str().unwrap().to_string())
            .collect();
        if targets.contains(&"203.0.113.45/32".to_string()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new log was not read: {targets:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! The HTTP API of the real binary on port 0: auth and scopes, decisions and credit
//! control, bad input refused without changing anything, the directory, and restarts.

mod common;

use common::{start_in, TEST_POLICY};
use serde_json::{json, Value};

#[test]
fn health_and_metrics_are_open_but_v1_needs_a_token_with_the_right_scope() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), TEST_POLICY);
    assert_eq!(server.call("GET", "/healthz", None, None).0, 200);
    let (status, _) = server.call("GET", "/metrics", None, None);
    assert_eq!(status, 200);

    for path in [
        "/v1/extensions",
        "/v1/openapi.json",
        "/v1/extensions/1001/credit",
    ] {
        let (status, body) = server.call("GET", path, None, None);
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = server.call("GET", path, Some("not-a-token"), None);
        assert_eq!(status, 401, "{path}");
    }
    // The PBX token may not change the directory; the read token may not authorize.
    let (status, body) = server.call(
        "PUT",
        "/v1/extensions/9999",
        Some(&server.pbx),
        Some(r#"{"account":"acme"}"#),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = server.post(
        "/v1/calls/authorize",
        &server.reader,
        r#"{"call_id":"x","extension":"1001","source_ip":"127.0.0.1","number":"0142685300"}"#,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(server.get("/v1/extensions", &server.reader).0, 200);
    // Token files are private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "token file mode {mode:o}");
    }
}

#[test]
fn concurrent_calls_reserve_and_settle_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), TEST_POLICY);
    // 1001 has 1.00 a day; France fixed costs 0.60 per started minute: one minute fits.
    let (status, first) = server.authorize("c1", "1001", "127.0.0.1", "01 42 68 53 00");
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["decision"], "allow", "{first}");
    assert_eq!(first["max_duration_s"], 60);
    assert_eq!(first["reserved"], "0.60");
    assert_eq!(first["destination"]["e164"], "+33142685300");
    assert_eq!(first["rate"]["prefix"], "+33");

    // A second call at the same time: only 0.40 left, less than the first minute.
    let (_, second) = server.authorize("c2", "1001", "127.0.0.1", "0142685301");
    assert_eq!(second["decision"], "deny", "{second}");
    assert_eq!(second["code"], "insufficient_credit");
    assert_eq!(
        second["message"],
        "extension 1001: 0.60 of 1.00 EUR daily limit spent or reserved (the first 60 s cost 0.60)"
    );

    let credit = server.credit("1001");
    assert_eq!(credit["levels"][0]["reserved"], "0.60");
    assert_eq!(credit["levels"][0]["available"], "0.40");
    assert_eq!(credit["levels"][1]["id"], "acme");
    assert_eq!(credit["levels"][1]["reserved"], "0.60");
    assert_eq!(credit["active_calls"].as_array().unwrap().len(), 1);

    let (status, answered) = server.post("/v1/calls/c1/answer", &server.pbx, "");
    assert_eq!(status, 200, "{answered}");
    let (status, ended) = server.post("/v1/calls/c1/end", &server.pbx, r#"{"duration_s": 30}"#);
    assert_eq!(status, 200, "{ended}");
    assert_eq!(
        ended,
        json!({"call_id":"c1","duration_s":30,"billed_s":60,"charged":"0.60","rated":"0.60","released":"0.00","overrun_s":0})
    );

    // UK at 0.06/min billed per second: the 0.40 left buys 400 s.
    let (_, uk) = server.authorize("c3", "1001", "::1", "+44 20 7946 0000");
    assert_eq!(uk["decision"], "allow", "{uk}");
    assert_eq!(uk["max_duration_s"], 400);
    let (_, ended) = server.post("/v1/calls/c3/end", &server.pbx, r#"{"duration_s": 0}"#);
    assert_eq!(ended["charged"], "0.00", "an unanswered call costs nothing");

    let credit = server.credit("1001");
    assert_eq!(credit["levels"][0]["spent_today"], "0.60");
    assert_eq!(credit["levels"][0]["reserved"], "0.00");
    assert_eq!(credit["levels"][2]["id"], "reseller");
    assert_eq!(credit["levels"][2]["spent_today"], "0.60");
    let (status, history) = server.get("/v1/extensions/1001/calls", &server.reader);
    assert_eq!(status, 200);
    let calls = history["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{history}");

    // Denials carry a code, the rule and a message naming the figures.
    let (_, denied) = server.authorize("c4", "2001", "127.0.0.1", "0142685300");
    assert_eq!(denied["code"], "ip_not_allowed");
    assert_eq!(
        denied["message"],
        "extension 2001: source 127.0.0.1 is not in 10.0.0.0/8"
    );
    let (_, denied) = server.authorize("c5", "1002", "127.0.0.1", "+88216123456");
    assert_eq!(denied["code"], "class_not_allowed", "{denied}");
    let (_, emergency) = server.authorize("c6", "2001", "192.0.2.1", "112");
    assert_eq!(
        emergency["decision"], "allow",
        "emergency from anywhere: {emergency}"
    );
    assert_eq!(emergency["reserved"], "0.00");

    let (_, metrics) = server.call("GET", "/metrics", None, None);
    let _ = metrics;
}

#[test]
fn bad_input_gets_a_4xx_naming_the_field_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), TEST_POLICY);
    let (_, ok) = server.authorize("held", "1002", "127.0.0.1", "0142685300");
    assert_eq!(ok["decision"], "allow");
    let before = server.credit("1002");

    let cases: Vec<(&str, String, u16, &str, Option<&str>)> = vec![
        ("/v1/calls/authorize", "{\"call_id\":".into(), 400, "malformed_json", None),
        ("/v1/calls/authorize", "".into(), 400, "malformed_json", None),
        ("/v1/calls/authorize", r#"{"call_id":"a","source_ip":"127.0.0.1","number":"0142685300"}"#.into(), 422, "invalid_field", Some("extension")),
        ("/v1/calls/authorize", r#"{"call_id":"a","extension":"nope","source_ip":"127.0.0.1","number":"0142685300"}"#.into(), 422, "unknown_extension", Some("extension")),
        ("/v1/calls/authorize", r#"{"call_id":"a","extension":"1002","source_ip":"127.0.0.1","number":"12;DROP TABLE"}"#.into(), 422, "invalid_number", Some("number")),
        ("/v1/calls/authorize", r#"{"call_id":"a","extension":"1002","source_ip":"999.1.1.1","number":"0142685300"}"#.into(), 422, "invalid_field", Some("source_ip")),
        ("/v1/calls/authorize", r#"{"call_id":"a","extension":"1002","source_ip":"127.0.0.1","number":"0142685300","extra":1}"#.into(), 422, "invalid_field", None),
        ("/v1/calls/authorize", r#"{"call_id":"held","extension":"1002","source_ip":"127.0.0.1","number":"0142685300"}"#.into(), 409, "duplicate_call", Some("call_id")),
        ("/v1/calls/authorize", r#"{"call_id":"","extension":"1002","source_ip":"127.0.0.1","number":"0142685300"}"#.into(), 422, "invalid_field", Some("call_id")),
        ("/v1/calls/authorize", r#"{"call_id":"a","extension":"1002","source_ip":"127.0.0.1","number":"0142685300","at":"1999-01-01T00:00:00Z"}"#.into(), 422, "invalid_field", Some("at")),
        ("/v1/calls/held/end", r#"{"duration_s":-5}"#.into(), 422, "invalid_field", Some("duration_s")),
        ("/v1/calls/held/end", r#"{"duration_s":"10"}"#.into(), 422, "invalid_field", Some("duration_s")),
        ("/v1/calls/held/extend", r#"{"seconds":0}"#.into(), 422, "invalid_field", Some("seconds")),
        ("/v1/calls/unknown/end", r#"{"duration_s":5}"#.into(), 404, "unknown_call", Some("call_id")),
        ("/v1/calls/unknown/answer", "".into(), 404, "unknown_call", Some("call_id")),
    ];
    for (path, body, status, code, field) in cases {
        let (got, answer) = server.post(path, &server.pbx, &body);
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{path} {body}: {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{path} {body}: {answer}");
        }
    }
    // Too large a body.
    let huge = format!(r#"{{"call_id":"{}"}}"#, "x".repeat(200_000));
    let (status, answer) = server.post("/v1/calls/authorize", &server.pbx, &huge);
    assert_eq!(status, 413, "{answer}");
    // Nothing changed: same reservation, same calls in progress.
    assert_eq!(server.credit("1002"), before);
    let (_, unknown) = server.get("/v1/calls/a", &server.pbx);
    assert_eq!(unknown["error"]["code"], "unknown_call");
}

#[test]
fn directory_changes_through_the_api_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), TEST_POLICY);
    let admin = server.admin.clone();
    let account = json!({"parent": "reseller", "country": "GB", "time_zone": "Europe/London", "limits": {"daily": "5.00", "monthly": "50.00"}, "rules": {"allowed_classes": ["national", "mobile"]}});
    let (status, body) = server.call(
        "PUT",
        "/v1/accounts/globex",
        Some(&admin),
        Some(&account.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let extension = json!({"account": "globex", "allowed_cidrs": ["127.0.0.1"], "limits": {"daily": "2.00", "monthly": "20.00"}});
    let (status, body) = server.call(
        "PUT",
        "/v1/extensions/3001",
        Some(&admin),
        Some(&extension.to_string()),
    );
    assert_eq!(status, 201, "{body}");
    // Validation errors name the field, and nothing is created.
    let bad = json!({"account": "globex", "allowed_cidrs": ["10.0.0.300/8"], "limits": {"daily": "2.00", "monthly": "20.00"}});
    let (status, body) = server.call(
        "PUT",
        "/v1/extensions/3002",
        Some(&admin),
        Some(&bad.to_string()),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "allowed_cidrs");
    assert_eq!(server.get("/v1/extensions/3002", &admin).0, 404);
    let (status, body) = server.call(
        "PUT",
        "/v1/extensions/3003",
        Some(&admin),
        Some(r#"{"account":"globex","allowed_cidrs":["127.0.0.1"]}"#),
    );
    assert_eq!(
        status, 422,
        "an extension without limits (and no account defaults) is refused: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("daily money limit"),
        "{body}"
    );
    // Entries from the policy file are changed in the file, not through the API.
    let (status, body) = server.call(
        "PUT",
        "/v1/extensions/1001",
        Some(&admin),
        Some(&extension.to_string()),
    );
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, Value::from("managed_by_policy"))
    );
    let (status, _) = server.call("DELETE", "/v1/accounts/globex", Some(&admin), None);
    assert_eq!(status, 409, "an account with extensions cannot be deleted");

    // London dial plan: 020 is national.
    let (_, allowed) = server.authorize("g1", "3001", "127.0.0.1", "020 7946 0000");
    assert_eq!(allowed["decision"], "allow", "{allowed}");
    assert_eq!(allowed["destination"]["e164"], "+442079460000");
    let (status, _) = server.post("/v1/extensions/3001/suspend", &admin, "");
    assert_eq!(status, 200);
    let (_, denied) = server.authorize("g2", "3001", "127.0.0.1", "020 7946 0000");
    assert_eq!(denied["code"], "extension_suspended");
    let (status, _) = server.post("/v1/accounts/acme/suspend", &admin, "");
    assert_eq!(status, 200);
    let (_, denied) = server.authorize("a1", "1002", "127.0.0.1", "0142685300");
    assert_eq!(denied["code"], "account_suspended");

    drop(server);
    let server = start_in(dir.path(), TEST_POLICY);
    let (status, ext) = server.get("/v1/extensions/3001", &server.admin);
    assert_eq!(status, 200, "{ext}");
    assert_eq!(ext["suspended"], true);
    assert_eq!(ext["origin"], "api");
    assert_eq!(ext["definition"]["account"], "globex");
    // The call authorized before the restart is still held.
    let (status, call) = server.get("/v1/calls/g1", &server.pbx);
    assert_eq!(status, 200, "{call}");
    let (_, denied) = server.authorize("a2", "1002", "127.0.0.1", "0142685300");
    assert_eq!(
        denied["code"], "account_suspended",
        "suspension of a policy account survives a restart"
    );
    let (status, _) = server.post("/v1/accounts/acme/resume", &server.admin, "");
    assert_eq!(status, 200);
    let (_, allowed) = server.authorize("a3", "1002", "127.0.0.1", "0142685300");
    assert_eq!(allowed["decision"], "allow");
    let (status, _) = server.post("/v1/calls/g1/end", &server.pbx, r#"{"duration_s": 10}"#);
    assert_eq!(status, 200);
    let (status, _) = server.call("DELETE", "/v1/extensions/3001", Some(&server.admin), None);
    assert_eq!(status, 204);
    let (status, _) = server.call("DELETE", "/v1/accounts/globex", Some(&server.admin), None);
    assert_eq!(status, 204);
    let (_, list) = server.get("/v1/accounts", &server.reader);
    assert_eq!(list["accounts"], json!(["acme", "reseller"]));
}

#[test]
fn every_documented_path_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), TEST_POLICY);
    let (status, doc) = server.get("/v1/openapi.json", &server.reader);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15);
    for (path, methods) in paths {
        let concrete = path
            .replace("{call_id}", "no-such-call")
            .replace("{id}", "no-such-id");
        for method in methods.as_object().unwrap().keys() {
            let body = matches!(method.as_str(), "post" | "put").then_some("{}");
            let (status, answer) =
                server.call(&method.to_uppercase(), &concrete, Some(&server.admin), body);
            assert!(
                status != 405 && answer["error"]["code"] != "no_route",
                "{method} {path} is documented but not routed: {status} {answer}"
            );
        }
    }
}

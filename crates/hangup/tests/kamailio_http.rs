//! The Kamailio adapter against scripted HTTP peers: what a real Kamailio answers (checked
//! against the real one in `kamailio.rs`) asserted byte for byte on the request side, and
//! hostile or broken endpoints on the answer side (silence, a huge body, a wrong id, a
//! non-JSON-RPC 404), each a clear error within the timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod peer;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use peer::{hold_until_closed, read_until, send, Peer};
use tollgate_hangup::{CallHandle, CallTerminator, Ended, HangupError};

fn terminator(
    peer: &Peer,
    timeout_s: u64,
) -> (tempfile::TempDir, std::sync::Arc<dyn CallTerminator>) {
    let dir = tempfile::tempdir().unwrap();
    let section = format!(
        "timeout_s = {timeout_s}\nkamailio = {{ url = \"http://{}/RPC\" }}\n",
        peer.addr
    );
    let t = peer::build(dir.path(), &section, &[]);
    (dir, t)
}

/// Reads one HTTP request (head and `Content-Length` body); returns the head and the body.
fn read_request(s: &mut TcpStream) -> Result<(String, serde_json::Value), String> {
    let head = read_until(s, "\r\n\r\n")?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).map_err(|e| e.to_string())?;
    let body = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok((head, body))
}

fn reply(s: &mut TcpStream, status: &str, body: &str) -> Result<(), String> {
    send(
        s,
        &format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn sends_end_dlg_with_the_reference_and_the_reason() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        let (head, body) = read_request(s)?;
        if !head.starts_with("POST /RPC HTTP/1.1\r\n") {
            return Err(format!("unexpected request line: {head:?}"));
        }
        let expected = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "dlg.end_dlg",
            "params": [1303, 6014, "Reason: Q.850;cause=21;text=\"credit exhausted for 1001 _x_\"\r\n"],
            "id": body["id"],
        });
        if body != expected || !body["id"].is_u64() {
            return Err(format!("expected {expected}, got {body}"));
        }
        reply(
            s,
            "200 OK",
            &format!(r#"{{"jsonrpc":"2.0","result":{{}},"id":{}}}"#, body["id"]),
        )
    }));
    let (_dir, t) = terminator(&peer, 5);
    let call = CallHandle::new("a84b4c76e66710@pc33", Some("1303:6014".into()));
    // A quote and a line break in the reason cannot break out of the header.
    let ended = t
        .end_call(&call, "credit exhausted for 1001 \"x\n")
        .unwrap();
    assert_eq!(ended, Ended::Ended);
    peer.finish();
}

#[test]
fn a_dialog_kamailio_does_not_know_is_already_gone() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        let (_, body) = read_request(s)?;
        reply(
            s,
            "404 Dialog not found",
            &format!(
                r#"{{"jsonrpc":"2.0","error":{{"code":404,"message":"Dialog not found"}},"id":{}}}"#,
                body["id"]
            ),
        )
    }));
    let (_dir, t) = terminator(&peer, 5);
    let call = CallHandle::new("x@y", Some("1:2".into()));
    assert_eq!(t.end_call(&call, "test").unwrap(), Ended::NotFound);
    peer.finish();
}

#[test]
fn finds_the_dialogs_of_a_call_id_and_ends_each() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        let (_, list) = read_request(s)?;
        if list["method"] != "dlg.dlg_list" || list["params"] != serde_json::json!(["c-1@h"]) {
            return Err(format!("expected dlg.dlg_list [\"c-1@h\"], got {list}"));
        }
        // Two dialogs of the Call-ID (a fork), and one of another (ignored).
        let dialogs = r#"[{"h_entry":7,"h_id":70,"call-id":"c-1@h","state":4},{"h_entry":8,"h_id":80,"call-id":"c-1@h","state":4},{"h_entry":9,"h_id":90,"call-id":"other","state":4}]"#;
        reply(
            s,
            "200 OK",
            &format!(
                r#"{{"jsonrpc":"2.0","result":{dialogs},"id":{}}}"#,
                list["id"]
            ),
        )?;
        for (entry, id) in [(7, 70), (8, 80)] {
            let (_, end) = read_request(s)?;
            if end["method"] != "dlg.end_dlg" || end["params"][0] != entry || end["params"][1] != id
            {
                return Err(format!("expected dlg.end_dlg {entry} {id}, got {end}"));
            }
            reply(
                s,
                "200 OK",
                &format!(r#"{{"jsonrpc":"2.0","result":{{}},"id":{}}}"#, end["id"]),
            )?;
        }
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 5);
    let call = CallHandle::new("c-1@h", None);
    assert_eq!(t.end_call(&call, "test").unwrap(), Ended::Ended);
    peer.finish();
}

#[test]
fn a_404_that_is_not_json_rpc_is_an_error_not_already_gone() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        read_request(s)?;
        send(
            s,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n",
        )
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t
        .end_call(&CallHandle::new("x@y", Some("1:2".into())), "test")
        .unwrap_err();
    assert!(matches!(err, HangupError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    peer.finish();
}

#[test]
fn an_answer_to_another_request_is_refused() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        read_request(s)?;
        reply(s, "200 OK", r#"{"jsonrpc":"2.0","result":{},"id":999999}"#)
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t
        .end_call(&CallHandle::new("x@y", Some("1:2".into())), "test")
        .unwrap_err();
    assert!(err.to_string().contains("id"), "{err}");
    peer.finish();
}

#[test]
fn a_huge_answer_is_cut_off() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        read_request(s)?;
        let size = 8 * 1024 * 1024;
        send(
            s,
            &format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n[\"")
        )?;
        let chunk = "x".repeat(64 * 1024);
        for _ in 0..size / chunk.len() {
            if send(s, &chunk).is_err() {
                break;
            }
        }
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t
        .end_call(&CallHandle::new("x@y", Some("1:2".into())), "test")
        .unwrap_err();
    assert!(matches!(err, HangupError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than"), "{err}");
    peer.finish();
}

#[test]
fn an_endpoint_that_never_answers_times_out() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        read_request(s)?;
        hold_until_closed(s);
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 1);
    let started = Instant::now();
    let err = t
        .end_call(&CallHandle::new("x@y", Some("1:2".into())), "test")
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, HangupError::Http { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(took < Duration::from_secs(3), "{took:?}");
    peer.finish();
}

//! The FreeSWITCH event socket adapter against scripted peers that speak ESL as
//! mod_event_socket does (`auth/request`, `command/reply` with `Reply-Text`, `api/response`
//! with a `Content-Length` body, the disconnect notice), and against hostile ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod peer;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use peer::{expect, flood_without_newline, hold_until_closed, send, Peer};
use tollgate_hangup::{CallHandle, CallTerminator, Ended, HangupError};

const PASSWORD: &str = "ClueCon-7f3a";
const UUID: &str = "4f1e8a0c-1b2d-4c3e-9f4a-5b6c7d8e9f00";
const AUTH_REQUEST: &str = "Content-Type: auth/request\n\n";
const AUTH: &str = "auth ClueCon-7f3a\n\n";
const ACCEPTED: &str = "Content-Type: command/reply\nReply-Text: +OK accepted\n\n";
const KILL: &str = "api uuid_kill 4f1e8a0c-1b2d-4c3e-9f4a-5b6c7d8e9f00 CALL_REJECTED\n\n";
const EXIT: &str = "exit\n\n";
const BYE: &str = "Content-Type: command/reply\nReply-Text: +OK bye\n\n";
const DISCONNECT: &str = "Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";

fn terminator(
    peer: &Peer,
    timeout_s: u64,
) -> (tempfile::TempDir, std::sync::Arc<dyn CallTerminator>) {
    let dir = tempfile::tempdir().unwrap();
    let section = format!(
        "timeout_s = {timeout_s}\nfreeswitch_esl = {{ address = \"{}\", password_file = \"esl.password\" }}\n",
        peer.addr
    );
    let t = peer::build(
        dir.path(),
        &section,
        &[("esl.password", &format!("{PASSWORD}\n"))],
    );
    (dir, t)
}

fn call() -> CallHandle {
    CallHandle::new("fs-call-1", Some(UUID.into()))
}

fn api_response(body: &str) -> String {
    format!(
        "Content-Type: api/response\nContent-Length: {}\n\n{body}",
        body.len()
    )
}

/// Auth, then `uuid_kill` answered with `body` (after an unrelated event), then exit.
fn freeswitch(body: &'static str) -> peer::Script {
    Box::new(move |s: &mut TcpStream| {
        send(s, AUTH_REQUEST)?;
        expect(s, "\n\n", AUTH)?;
        send(s, ACCEPTED)?;
        expect(s, "\n\n", KILL)?;
        // An event that was on its way (e.g. from an earlier `event` command) comes first.
        let event = "Event-Name: HEARTBEAT\nCore-UUID: 1234\n\n";
        send(
            s,
            &format!(
                "Content-Type: text/event-plain\nContent-Length: {}\n\n{event}",
                event.len()
            ),
        )?;
        send(s, &api_response(body))?;
        expect(s, "\n\n", EXIT)?;
        send(s, BYE)?;
        send(s, DISCONNECT)
    })
}

#[test]
fn kills_a_channel() {
    assert_eq!(DISCONNECT.split("\n\n").nth(1).unwrap().len(), 67);
    let peer = Peer::start(freeswitch("+OK\n"));
    let (_dir, t) = terminator(&peer, 5);
    assert_eq!(t.name(), "freeswitch_esl");
    assert_eq!(
        t.end_call(&call(), "account suspended").unwrap(),
        Ended::Ended
    );
    peer.finish();
}

#[test]
fn a_channel_freeswitch_does_not_know_is_already_gone() {
    let peer = Peer::start(freeswitch("-ERR No such channel!\n"));
    let (_dir, t) = terminator(&peer, 5);
    assert_eq!(t.end_call(&call(), "test").unwrap(), Ended::NotFound);
    peer.finish();
}

#[test]
fn other_errors_are_refusals() {
    let peer = Peer::start(freeswitch("-ERR Permission denied\n"));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Refused { .. }), "{err:?}");
    peer.finish();
}

#[test]
fn a_wrong_password_is_an_authentication_error_without_the_password() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, AUTH_REQUEST)?;
        expect(s, "\n\n", AUTH)?;
        send(
            s,
            "Content-Type: command/reply\nReply-Text: -ERR invalid\n\n",
        )?;
        send(s, DISCONNECT)
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("-ERR invalid"), "{err}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    assert!(!format!("{err:?}").contains(PASSWORD), "{err:?}");
    peer.finish();
}

#[test]
fn an_address_the_acl_refuses_is_an_authentication_error() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(
            s,
            "Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n",
        )
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("Access Denied"), "{err}");
    peer.finish();
}

#[test]
fn a_garbage_greeting_is_a_protocol_error() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")?;
        hold_until_closed(s);
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 1);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("SSH-2.0"), "{err}");
    peer.finish();
}

#[test]
fn a_huge_content_length_is_refused_before_reading() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, AUTH_REQUEST)?;
        expect(s, "\n\n", AUTH)?;
        send(s, ACCEPTED)?;
        expect(s, "\n\n", KILL)?;
        send(
            s,
            "Content-Type: api/response\nContent-Length: 999999999999\n\n+OK",
        )?;
        hold_until_closed(s);
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 5);
    let started = Instant::now();
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("Content-Length"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    peer.finish();
}

#[test]
fn a_short_body_times_out() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, AUTH_REQUEST)?;
        expect(s, "\n\n", AUTH)?;
        send(s, ACCEPTED)?;
        expect(s, "\n\n", KILL)?;
        send(
            s,
            "Content-Type: api/response\nContent-Length: 100\n\n+OK\n",
        )?;
        hold_until_closed(s);
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 1);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Timeout { .. }), "{err:?}");
    peer.finish();
}

#[test]
fn an_endless_line_is_cut_off() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        flood_without_newline(s, "Content-Type: ");
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(err.to_string().contains("longer than 8192 bytes"), "{err}");
    peer.finish();
}

#[test]
fn an_endless_stream_of_events_is_cut_off() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, AUTH_REQUEST)?;
        expect(s, "\n\n", AUTH)?;
        send(s, ACCEPTED)?;
        expect(s, "\n\n", KILL)?;
        for _ in 0..10_000 {
            if send(s, "Content-Type: log/data\nContent-Length: 3\n\nhi\n").is_err() {
                break;
            }
        }
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(
        err.to_string().contains("more than 256 other messages"),
        "{err}"
    );
    peer.finish();
}

#[test]
fn a_peer_that_never_answers_times_out() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        hold_until_closed(s);
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 1);
    let started = Instant::now();
    let err = t.end_call(&call(), "test").unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, HangupError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("auth/request"), "{err}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    peer.finish();
}

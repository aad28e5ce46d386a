//! The Asterisk AMI adapter against scripted peers that speak AMI as Asterisk does (banner,
//! `\r\n` line ends, an empty line after each message, `ActionID` echoed, an event after the
//! login), and against hostile ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod peer;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use peer::{expect, flood_without_newline, hold_until_closed, send, Peer};
use tollgate_hangup::{CallHandle, CallTerminator, Ended, HangupError};

const BANNER: &str = "Asterisk Call Manager/5.0.2\r\n";
const SECRET: &str = "s3cret-ami";
const LOGIN: &str = "Action: Login\r\nActionID: tollgate-1\r\nUsername: tollgate\r\nSecret: s3cret-ami\r\nEvents: off\r\n\r\n";
const LOGIN_OK: &str =
    "Response: Success\r\nActionID: tollgate-1\r\nMessage: Authentication accepted\r\n\r\n";
const FULLY_BOOTED: &str = "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1204\r\nLastReload: 1204\r\nStatus: Fully Booted\r\n\r\n";
const HANGUP: &str =
    "Action: Hangup\r\nActionID: tollgate-2\r\nChannel: PJSIP/1001-00000001\r\nCause: 21\r\n\r\n";
const LOGOFF: &str = "Action: Logoff\r\nActionID: tollgate-3\r\n\r\n";
const GOODBYE: &str =
    "Response: Goodbye\r\nActionID: tollgate-3\r\nMessage: Thanks for all the fish.\r\n\r\n";

fn terminator(
    peer: &Peer,
    timeout_s: u64,
) -> (tempfile::TempDir, std::sync::Arc<dyn CallTerminator>) {
    let dir = tempfile::tempdir().unwrap();
    let section = format!(
        "timeout_s = {timeout_s}\nasterisk_ami = {{ address = \"{}\", username = \"tollgate\", secret_file = \"ami.secret\" }}\n",
        peer.addr
    );
    let t = peer::build(
        dir.path(),
        &section,
        &[("ami.secret", &format!("{SECRET}\n"))],
    );
    (dir, t)
}

fn call() -> CallHandle {
    CallHandle::new("a84b4c76e66710@pc33", Some("PJSIP/1001-00000001".into()))
}

/// Login, the FullyBooted event, the hangup answered with `answer`, logoff.
fn pbx(answer: &'static str) -> peer::Script {
    Box::new(move |s: &mut TcpStream| {
        send(s, BANNER)?;
        expect(s, "\r\n\r\n", LOGIN)?;
        send(s, LOGIN_OK)?;
        send(s, FULLY_BOOTED)?;
        expect(s, "\r\n\r\n", HANGUP)?;
        send(s, answer)?;
        expect(s, "\r\n\r\n", LOGOFF)?;
        send(s, GOODBYE)
    })
}

#[test]
fn hangs_up_a_channel() {
    let peer = Peer::start(pbx(
        "Response: Success\r\nActionID: tollgate-2\r\nMessage: Channel Hungup\r\n\r\n",
    ));
    let (_dir, t) = terminator(&peer, 5);
    assert_eq!(t.name(), "asterisk_ami");
    assert_eq!(
        t.end_call(&call(), "extension 1001 suspended").unwrap(),
        Ended::Ended
    );
    peer.finish();
}

#[test]
fn a_channel_asterisk_does_not_know_is_already_gone() {
    let peer = Peer::start(pbx(
        "Response: Error\r\nActionID: tollgate-2\r\nMessage: No such channel\r\n\r\n",
    ));
    let (_dir, t) = terminator(&peer, 5);
    assert_eq!(
        t.end_call(&call(), "credit exhausted").unwrap(),
        Ended::NotFound
    );
    peer.finish();
}

#[test]
fn other_errors_are_refusals() {
    let peer = Peer::start(pbx(
        "Response: Error\r\nActionID: tollgate-2\r\nMessage: Permission denied\r\n\r\n",
    ));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("Permission denied"), "{err}");
    peer.finish();
}

#[test]
fn a_wrong_secret_is_an_authentication_error_without_the_secret() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, BANNER)?;
        expect(s, "\r\n\r\n", LOGIN)?;
        // Asterisk answers and closes the session.
        send(
            s,
            "Response: Error\r\nActionID: tollgate-1\r\nMessage: Authentication failed\r\n\r\n",
        )
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("Authentication failed"), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    assert!(!err.is_transient());
    peer.finish();
}

#[test]
fn a_garbage_banner_is_a_protocol_error() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?;
        hold_until_closed(s);
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("banner"), "{err}");
    assert!(err.to_string().contains("HTTP/1.1 400"), "{err}");
    peer.finish();
}

#[test]
fn an_endless_line_is_cut_off() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        flood_without_newline(s, "Asterisk Call Manager/");
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 5);
    let started = Instant::now();
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("longer than 8192 bytes"), "{err}");
    // The excerpt in the message is short.
    assert!(err.to_string().len() < 400, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    peer.finish();
}

#[test]
fn an_endless_message_is_cut_off() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, BANNER)?;
        expect(s, "\r\n\r\n", LOGIN)?;
        for n in 0..1000 {
            if send(s, &format!("X-Header-{n}: value\r\n")).is_err() {
                break;
            }
        }
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 5);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(err.to_string().contains("more than 128 headers"), "{err}");
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
    assert!(err.to_string().contains("banner"), "{err}");
    assert!(err.is_transient());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    peer.finish();
}

#[test]
fn a_peer_that_stalls_after_login_times_out() {
    let peer = Peer::start(Box::new(|s: &mut TcpStream| {
        send(s, BANNER)?;
        expect(s, "\r\n\r\n", LOGIN)?;
        send(s, LOGIN_OK)?;
        expect(s, "\r\n\r\n", HANGUP)?;
        // Drips bytes that never make a message.
        for _ in 0..40 {
            if send(s, "R").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }));
    let (_dir, t) = terminator(&peer, 1);
    let started = Instant::now();
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("ending the call"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    peer.finish();
}

#[test]
fn a_closed_port_is_a_transient_connect_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let section = format!(
        "asterisk_ami = {{ address = \"{addr}\", username = \"tollgate\", secret_file = \"ami.secret\" }}\n"
    );
    let t = peer::build(dir.path(), &section, &[("ami.secret", SECRET)]);
    let err = t.end_call(&call(), "test").unwrap_err();
    assert!(matches!(err, HangupError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
}

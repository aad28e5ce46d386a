//! FreeSWITCH: ends a channel through the event socket (`mod_event_socket`, inbound, TCP,
//! default port 8021), one connection per hangup:
//!
//! ```text
//! <- Content-Type: auth/request
//! -> auth PASSWORD
//! <- Content-Type: command/reply / Reply-Text: +OK accepted      (or -ERR invalid)
//! -> api uuid_kill <uuid> CALL_REJECTED
//! <- Content-Type: api/response / Content-Length: 4  +  "+OK\n"
//!    (or the body "-ERR No such channel!\n": already gone)
//! -> exit
//! <- Content-Type: command/reply / Reply-Text: +OK bye
//! ```
//!
//! Lines end with `\n`, an empty line ends the headers, a `Content-Length` header announces
//! a body. Anything else that arrives between (events, log lines) is skipped, up to a
//! bound. An address the socket's ACL refuses gets `Content-Type: text/rude-rejection`.
//!
//! `pbx_ref` is the channel's UUID, which the dialplan passes at authorize as `${uuid}`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{excerpt, HangupError};
use crate::secret::Secret;
use crate::wire::{Headers, Wire};
use crate::{CallHandle, CallTerminator, Ended};

const PBX: &str = "freeswitch_esl";
/// The most messages skipped (events, logs) while waiting for one answer.
const MAX_SKIPPED: usize = 256;
/// The largest body read (an `api` answer of `uuid_kill` is a line).
const MAX_BODY: usize = 64 * 1024;
/// The longest channel UUID accepted.
const MAX_UUID: usize = 128;
/// How long the goodbye after the hangup may take.
const EXIT_WAIT: Duration = Duration::from_millis(500);

/// Ends FreeSWITCH channels through the event socket.
pub struct EslTerminator {
    address: SocketAddr,
    password: Secret,
    timeout: Duration,
}

impl fmt::Debug for EslTerminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EslTerminator")
            .field("address", &self.address)
            .field("password", &self.password)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One event socket message: headers and the body `Content-Length` announced.
struct Message {
    headers: Headers,
    body: Vec<u8>,
}

impl Message {
    fn content_type(&self) -> &str {
        self.headers.get("Content-Type").unwrap_or_default()
    }
}

/// Checks a channel UUID (`pbx_ref`) before it goes on the wire: it is one word of the
/// `uuid_kill` command line, so only letters, digits, `-`, `_` and `.`.
pub(crate) fn check_uuid(uuid: &str) -> Result<(), String> {
    if uuid.is_empty() || uuid.len() > MAX_UUID {
        return Err(format!(
            "pbx_ref must be the channel UUID (${{uuid}}), 1 to {MAX_UUID} characters: {:?}",
            excerpt(uuid.as_bytes())
        ));
    }
    if !uuid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "pbx_ref is not a channel UUID (letters, digits, '-', '_', '.'): {:?}",
            excerpt(uuid.as_bytes())
        ));
    }
    Ok(())
}

impl EslTerminator {
    /// A terminator that authenticates to the event socket at `address`; each hangup takes
    /// at most `timeout`.
    pub(crate) fn new(address: SocketAddr, password: Secret, timeout: Duration) -> Self {
        EslTerminator {
            address,
            password,
            timeout,
        }
    }

    fn session(&self, wire: &mut Wire, uuid: &str) -> Result<Ended, HangupError> {
        let greeting = read_message(wire, "waiting for auth/request")?;
        match greeting.content_type() {
            "auth/request" => {}
            "text/rude-rejection" => {
                return Err(HangupError::AuthFailed {
                    pbx: PBX,
                    message: excerpt(greeting.body.trim_ascii()),
                })
            }
            other => {
                return Err(wire.protocol(format!(
                    "expected Content-Type auth/request, got {:?}",
                    excerpt(other.as_bytes())
                )))
            }
        }

        let auth = format!("auth {}\n\n", self.password.expose());
        wire.send(auth.as_bytes(), "authenticating")?;
        let reply = read_until(wire, "command/reply", "authenticating")?;
        let text = reply.headers.get("Reply-Text").unwrap_or_default();
        if !text.starts_with("+OK") {
            return Err(HangupError::AuthFailed {
                pbx: PBX,
                message: excerpt(text.as_bytes()),
            });
        }

        let kill = format!("api uuid_kill {uuid} CALL_REJECTED\n\n");
        wire.send(kill.as_bytes(), "ending the call")?;
        let answer = read_until(wire, "api/response", "ending the call")?;
        let body = String::from_utf8_lossy(&answer.body);
        let body = body.trim();
        let outcome = if body.starts_with("+OK") {
            Ok(Ended::Ended)
        } else if body.starts_with("-ERR No such channel") {
            Ok(Ended::NotFound)
        } else if body.starts_with("-ERR") || body.starts_with("-USAGE") {
            Err(HangupError::Refused {
                pbx: PBX,
                message: excerpt(body.as_bytes()),
            })
        } else {
            return Err(wire.protocol(format!(
                "unexpected answer to uuid_kill: {:?}",
                excerpt(body.as_bytes())
            )));
        };

        // The answer is in; the goodbye is politeness, not worth the whole timeout.
        wire.limit_deadline(EXIT_WAIT);
        if wire.send(b"exit\n\n", "logging off").is_ok() {
            let _ = read_until(wire, "command/reply", "logging off");
        }
        outcome
    }
}

/// Reads one message (empty lines before it skipped), with its body.
fn read_message(wire: &mut Wire, waiting_for: &'static str) -> Result<Message, HangupError> {
    for _ in 0..=MAX_SKIPPED {
        let headers = wire.read_headers(waiting_for)?;
        if headers.is_empty() {
            continue;
        }
        let body = match headers.get("Content-Length") {
            None => Vec::new(),
            Some(length) => {
                let n = length
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_BODY && length.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        wire.protocol(format!(
                            "a Content-Length that is not a number up to {MAX_BODY} while {waiting_for}: {:?}",
                            excerpt(length.as_bytes())
                        ))
                    })?;
                wire.read_exact(n, waiting_for)?
            }
        };
        return Ok(Message { headers, body });
    }
    Err(wire.protocol(format!(
        "more than {MAX_SKIPPED} empty lines while {waiting_for}"
    )))
}

/// Reads messages until one of `content_type` (others skipped, at most [`MAX_SKIPPED`]). A
/// disconnect notice ends the wait: the peer is closing.
fn read_until(
    wire: &mut Wire,
    content_type: &str,
    waiting_for: &'static str,
) -> Result<Message, HangupError> {
    for _ in 0..=MAX_SKIPPED {
        let message = read_message(wire, waiting_for)?;
        match message.content_type() {
            t if t == content_type => return Ok(message),
            "text/disconnect-notice" => {
                return Err(HangupError::Closed {
                    pbx: PBX,
                    waiting_for,
                })
            }
            _ => continue,
        }
    }
    Err(wire.protocol(format!(
        "more than {MAX_SKIPPED} other messages while {waiting_for}"
    )))
}

impl CallTerminator for EslTerminator {
    fn name(&self) -> &str {
        PBX
    }

    fn end_call(&self, call: &CallHandle, reason: &str) -> Result<Ended, HangupError> {
        let Some(uuid) = call.pbx_ref.as_deref() else {
            return Err(HangupError::bad_call(
                PBX,
                &call.call_id,
                "no pbx_ref: FreeSWITCH needs the channel UUID (${uuid}) given at authorize",
            ));
        };
        check_uuid(uuid).map_err(|p| HangupError::bad_call(PBX, &call.call_id, p))?;
        let mut wire = Wire::connect(PBX, self.address, self.timeout)?;
        let result = self.session(&mut wire, uuid);
        wire.close();
        if let Ok(ended) = &result {
            tracing::info!(pbx = PBX, call_id = %call.call_id, uuid, ?ended, reason, "hangup");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn accepts_uuids_and_refuses_command_injection() {
        for good in ["4f1e8a0c-1b2d-4c3e-9f4a-5b6c7d8e9f00", "my_custom.uuid-1"] {
            assert_eq!(check_uuid(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "abc def",
            "abc\n\napi shutdown",
            "abc;rm",
            "${uuid}",
            &"a".repeat(200),
        ] {
            assert!(check_uuid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_password_is_not_in_debug() {
        let t = EslTerminator::new(
            "127.0.0.1:8021".parse().unwrap(),
            Secret::for_tests("ClueCon-secret"),
            Duration::from_secs(1),
        );
        let debug = format!("{t:?}");
        assert!(!debug.contains("ClueCon"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert_eq!(t.name(), "freeswitch_esl");
    }

    #[test]
    fn a_call_without_uuid_is_refused_before_connecting() {
        let t = EslTerminator::new(
            "127.0.0.1:9".parse().unwrap(),
            Secret::for_tests("x"),
            Duration::from_secs(1),
        );
        let err = t
            .end_call(&CallHandle::new("c1", None), "test")
            .unwrap_err();
        assert!(matches!(err, HangupError::BadCall { .. }), "{err:?}");
    }
}

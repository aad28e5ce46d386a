//! Asterisk: ends a channel through the Asterisk Manager Interface (AMI, TCP, default port
//! 5038), one connection per hangup:
//!
//! ```text
//! <- Asterisk Call Manager/<version>
//! -> Action: Login / ActionID: tollgate-1 / Username: .. / Secret: .. / Events: off
//! <- Response: Success / ActionID: tollgate-1 / Message: Authentication accepted
//! -> Action: Hangup / ActionID: tollgate-2 / Channel: PJSIP/1001-00000001 / Cause: 21
//! <- Response: Success / ActionID: tollgate-2 / Message: Channel Hungup
//!    (or Response: Error / Message: No such channel: already gone)
//! -> Action: Logoff / ActionID: tollgate-3
//! <- Response: Goodbye / ActionID: tollgate-3 / Message: Thanks for all the fish.
//! ```
//!
//! Lines end with `\r\n`, an empty line ends a message. Events that arrive between
//! (`Event: FullyBooted` after the login) are skipped, up to a bound. Cause 21 is Q.850
//! "call rejected".
//!
//! `pbx_ref` is the channel name, which the dialplan passes at authorize as `${CHANNEL}`.
//! A name that starts with `/` is refused: AMI reads `Channel: /regex/` as a regular
//! expression and hangs up every channel it matches.
//!
//! The manager user needs `write = call` (or `system`) in `manager.conf`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{excerpt, HangupError};
use crate::secret::Secret;
use crate::wire::{Headers, Wire};
use crate::{CallHandle, CallTerminator, Ended};

const PBX: &str = "asterisk_ami";
/// The banner's beginning; the version follows.
const BANNER: &str = "Asterisk Call Manager/";
/// The most messages skipped (events) while waiting for one answer.
const MAX_SKIPPED: usize = 256;
/// The longest channel name accepted (Asterisk's own limit is 80).
const MAX_CHANNEL: usize = 256;
/// How long the goodbye after the hangup may take.
const LOGOFF_WAIT: Duration = Duration::from_millis(500);
/// Q.850 cause 21, call rejected.
const CAUSE: u8 = 21;

/// Ends Asterisk channels through AMI.
pub struct AmiTerminator {
    address: SocketAddr,
    username: String,
    secret: Secret,
    timeout: Duration,
}

impl fmt::Debug for AmiTerminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmiTerminator")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("secret", &self.secret)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Checks a channel name (`pbx_ref`) before it goes on the wire.
pub(crate) fn check_channel(channel: &str) -> Result<(), String> {
    let problem = if channel.is_empty() {
        "pbx_ref is empty: it must be the channel name (${CHANNEL})"
    } else if channel.len() > MAX_CHANNEL {
        "pbx_ref is too long for a channel name"
    } else if channel.starts_with('/') {
        "pbx_ref starts with '/', which AMI reads as a regular expression over all channels"
    } else if channel.chars().any(|c| c.is_control()) {
        "pbx_ref holds a line break or another control character"
    } else if channel.trim() != channel {
        "pbx_ref has leading or trailing spaces"
    } else if !channel.contains('/') {
        "pbx_ref is not a channel name (TECH/name, e.g. PJSIP/1001-00000001)"
    } else {
        return Ok(());
    };
    Err(format!("{problem}: {:?}", excerpt(channel.as_bytes())))
}

impl AmiTerminator {
    /// A terminator that logs in to the AMI at `address` as `username`; each hangup takes
    /// at most `timeout`.
    pub(crate) fn new(
        address: SocketAddr,
        username: &str,
        secret: Secret,
        timeout: Duration,
    ) -> Result<Self, HangupError> {
        if username.is_empty()
            || username.len() > 80
            || username
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(HangupError::invalid(
                "asterisk_ami.username",
                format!(
                    "{:?} is not a manager.conf user name (1 to 80 characters, no spaces)",
                    excerpt(username.as_bytes())
                ),
            ));
        }
        Ok(AmiTerminator {
            address,
            username: username.to_owned(),
            secret,
            timeout,
        })
    }

    fn session(&self, wire: &mut Wire, channel: &str) -> Result<Ended, HangupError> {
        let banner = wire.read_line("reading the banner")?;
        if !banner.starts_with(BANNER) {
            return Err(wire.protocol(format!(
                "expected the banner \"{BANNER}<version>\", got {:?}",
                excerpt(banner.as_bytes())
            )));
        }

        let login = format!(
            "Action: Login\r\nActionID: tollgate-1\r\nUsername: {}\r\nSecret: {}\r\nEvents: off\r\n\r\n",
            self.username,
            self.secret.expose()
        );
        wire.send(login.as_bytes(), "logging in")?;
        let answer = read_response(wire, "tollgate-1", "logging in")?;
        match response_kind(&answer) {
            Some(Kind::Success) => {}
            Some(Kind::Error) => {
                return Err(HangupError::AuthFailed {
                    pbx: PBX,
                    message: excerpt(answer.get("Message").unwrap_or_default().as_bytes()),
                })
            }
            None => return Err(unexpected(wire, "Login", &answer)),
        }

        let hangup = format!(
            "Action: Hangup\r\nActionID: tollgate-2\r\nChannel: {channel}\r\nCause: {CAUSE}\r\n\r\n"
        );
        wire.send(hangup.as_bytes(), "ending the call")?;
        let answer = read_response(wire, "tollgate-2", "ending the call")?;
        let message = answer.get("Message").unwrap_or_default();
        let outcome = match response_kind(&answer) {
            Some(Kind::Success) => Ok(Ended::Ended),
            Some(Kind::Error) if message.eq_ignore_ascii_case("No such channel") => {
                Ok(Ended::NotFound)
            }
            Some(Kind::Error) => Err(HangupError::Refused {
                pbx: PBX,
                message: excerpt(message.as_bytes()),
            }),
            None => return Err(unexpected(wire, "Hangup", &answer)),
        };

        // The answer is in; the goodbye is politeness, not worth the whole timeout.
        wire.limit_deadline(LOGOFF_WAIT);
        if wire
            .send(
                b"Action: Logoff\r\nActionID: tollgate-3\r\n\r\n",
                "logging off",
            )
            .is_ok()
        {
            let _ = read_response(wire, "tollgate-3", "logging off");
        }
        outcome
    }
}

enum Kind {
    Success,
    Error,
}

fn response_kind(answer: &Headers) -> Option<Kind> {
    match answer.get("Response") {
        Some(r) if r.eq_ignore_ascii_case("Success") => Some(Kind::Success),
        Some(r) if r.eq_ignore_ascii_case("Error") => Some(Kind::Error),
        _ => None,
    }
}

fn unexpected(wire: &Wire, action: &str, answer: &Headers) -> HangupError {
    wire.protocol(format!(
        "unexpected answer to {action}: Response {:?}",
        excerpt(answer.get("Response").unwrap_or_default().as_bytes())
    ))
}

/// Reads messages until the response to `action_id` (events and empty messages skipped, at
/// most [`MAX_SKIPPED`]). A response without an ActionID is taken as ours: the connection
/// is ours alone and one action is outstanding at a time.
fn read_response(
    wire: &mut Wire,
    action_id: &str,
    waiting_for: &'static str,
) -> Result<Headers, HangupError> {
    for _ in 0..=MAX_SKIPPED {
        let message = wire.read_headers(waiting_for)?;
        if message.is_empty() || message.get("Event").is_some() {
            continue;
        }
        if message.get("Response").is_none() {
            return Err(wire.protocol(format!(
                "a message that is neither a response nor an event while {waiting_for}: {:?}",
                excerpt(format!("{:?}", message.0).as_bytes())
            )));
        }
        match message.get("ActionID") {
            Some(id) if id != action_id => continue,
            _ => return Ok(message),
        }
    }
    Err(wire.protocol(format!(
        "more than {MAX_SKIPPED} other messages while {waiting_for}"
    )))
}

impl CallTerminator for AmiTerminator {
    fn name(&self) -> &str {
        PBX
    }

    fn end_call(&self, call: &CallHandle, reason: &str) -> Result<Ended, HangupError> {
        let Some(channel) = call.pbx_ref.as_deref() else {
            return Err(HangupError::bad_call(
                PBX,
                &call.call_id,
                "no pbx_ref: Asterisk needs the channel name (${CHANNEL}) given at authorize",
            ));
        };
        check_channel(channel).map_err(|p| HangupError::bad_call(PBX, &call.call_id, p))?;
        let mut wire = Wire::connect(PBX, self.address, self.timeout)?;
        let result = self.session(&mut wire, channel);
        wire.close();
        if let Ok(ended) = &result {
            tracing::info!(pbx = PBX, call_id = %call.call_id, channel, ?ended, reason, "hangup");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn accepts_channel_names_and_refuses_the_rest() {
        for good in [
            "PJSIP/1001-00000001",
            "SIP/provider-0000012a",
            "Local/100@from-internal-00000002;1",
            "IAX2/trunk-1234",
        ] {
            assert_eq!(check_channel(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("/^SIP/.*$/", "regular expression"),
            ("/PJSIP/1001-1", "regular expression"),
            ("PJSIP/1001\r\nAction: Originate", "control character"),
            (" PJSIP/1001-1", "spaces"),
            ("1001", "not a channel name"),
        ] {
            let err = check_channel(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(check_channel(&format!("PJSIP/{}", "1".repeat(300))).is_err());
    }

    #[test]
    fn the_secret_is_not_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ami.secret");
        std::fs::write(&path, "hunter2-ami\n").unwrap();
        let secret = crate::secret::read_secret_file("asterisk_ami.secret_file", &path).unwrap();
        let t = AmiTerminator::new(
            "127.0.0.1:5038".parse().unwrap(),
            "tollgate",
            secret,
            Duration::from_secs(1),
        )
        .unwrap();
        let debug = format!("{t:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert_eq!(t.name(), "asterisk_ami");
    }

    #[test]
    fn refuses_a_user_name_that_would_break_the_login() {
        let secret = Secret::for_tests("x");
        for bad in ["", "a b", "a\r\nAction: Originate"] {
            assert!(
                AmiTerminator::new(
                    "127.0.0.1:5038".parse().unwrap(),
                    bad,
                    secret.clone(),
                    Duration::from_secs(1)
                )
                .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_call_without_channel_is_refused_before_connecting() {
        let t = AmiTerminator::new(
            "127.0.0.1:9".parse().unwrap(),
            "tollgate",
            Secret::for_tests("x"),
            Duration::from_secs(1),
        )
        .unwrap();
        let err = t
            .end_call(&CallHandle::new("c1", None), "test")
            .unwrap_err();
        assert!(matches!(err, HangupError::BadCall { .. }), "{err:?}");
        let err = t
            .end_call(&CallHandle::new("c1", Some("/.*/".into())), "test")
            .unwrap_err();
        assert!(err.to_string().contains("regular expression"), "{err}");
    }
}

//! The one error type of this crate: why a terminator could not be built, or why the PBX
//! could not be asked to end a call. Each error names the adapter (`kamailio`,
//! `asterisk_ami`, `freeswitch_esl`) or the setting at fault; none contains a secret, and
//! what a peer sent appears only as a short escaped excerpt.

use std::path::PathBuf;
use std::time::Duration;

/// Why a terminator could not be built or a call could not be ended.
#[derive(Debug, thiserror::Error)]
pub enum HangupError {
    /// A setting has a value that cannot work.
    #[error("hangup.{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// A secret file (AMI secret, ESL password) could not be read.
    #[error("hangup.{field}: cannot read {path:?}: {source}")]
    SecretFile {
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The call handle cannot be used with this PBX (no `pbx_ref`, or a malformed one).
    #[error("{pbx}: call {call_id:?}: {problem}")]
    BadCall {
        pbx: &'static str,
        call_id: String,
        problem: String,
    },
    /// The PBX could not be reached.
    #[error("{pbx}: cannot connect to {address}: {source}")]
    Connect {
        pbx: &'static str,
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The PBX did not answer in time.
    #[error("{pbx}: no answer within {timeout:?} while {waiting_for}")]
    Timeout {
        pbx: &'static str,
        waiting_for: &'static str,
        timeout: Duration,
    },
    /// The connection failed while talking.
    #[error("{pbx}: connection failed while {doing}: {source}")]
    Io {
        pbx: &'static str,
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The PBX closed the connection before it answered.
    #[error("{pbx}: connection closed by the peer while {waiting_for}")]
    Closed {
        pbx: &'static str,
        waiting_for: &'static str,
    },
    /// The HTTP request failed (connection, timeout, unreadable answer).
    #[error("{pbx}: request to {url} failed: {problem}")]
    Http {
        pbx: &'static str,
        url: String,
        problem: String,
    },
    /// The peer does not speak the expected protocol (wrong banner, line too long,
    /// malformed answer).
    #[error("{pbx}: protocol error: {problem}")]
    Protocol { pbx: &'static str, problem: String },
    /// The PBX refused tollgate's credentials.
    #[error("{pbx}: authentication refused: {message:?}")]
    AuthFailed { pbx: &'static str, message: String },
    /// The PBX answered with an error other than "no such call".
    #[error("{pbx}: the PBX refused to end the call: {message:?}")]
    Refused { pbx: &'static str, message: String },
}

impl HangupError {
    /// Whether trying again later may succeed: the PBX could not be reached, or did not
    /// answer in time. Bad settings, bad handles, refused credentials and refusals do not
    /// get better by retrying.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HangupError::Connect { .. }
                | HangupError::Timeout { .. }
                | HangupError::Io { .. }
                | HangupError::Closed { .. }
                | HangupError::Http { .. }
        )
    }

    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        HangupError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn bad_call(pbx: &'static str, call_id: &str, problem: impl Into<String>) -> Self {
        HangupError::BadCall {
            pbx,
            call_id: excerpt(call_id.as_bytes()),
            problem: problem.into(),
        }
    }
}

/// The most of a peer's text an error quotes.
const EXCERPT_CHARS: usize = 120;

/// A short, printable excerpt of text from a peer, for an error or a log line: invalid
/// UTF-8 replaced, control characters escaped, at most [`EXCERPT_CHARS`] characters
/// (then `...`).
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(excerpt(b"No such channel"), "No such channel");
        assert_eq!(excerpt(b"a\r\nb\x00"), "a\\r\\nb\\u{0}");
        let long = vec![b'x'; 1000];
        let e = excerpt(&long);
        assert_eq!(e.len(), EXCERPT_CHARS + 3);
        assert!(e.ends_with("..."));
        assert_eq!(excerpt(&[0xff, b'a']), "\u{fffd}a");
    }
}

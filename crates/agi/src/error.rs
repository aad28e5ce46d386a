//! The error types of this crate, one per kind of failure:
//!
//! - [`ProtocolError`]: the FastAGI conversation itself broke (the socket, a limit, a timeout,
//!   a line that is not AGI). The connection is closed; nothing is told to the dialplan.
//! - [`RequestError`]: the conversation is fine but the request cannot be acted on (a missing
//!   or malformed parameter). The dialplan is told (`TOLLGATE_DECISION=error` with the
//!   message in `TOLLGATE_REASON`), so every message here is safe to show: it names the
//!   parameter at fault, never the value (which can be caller data).
//! - [`SettingsError`]: the `[agi]` settings cannot work; [`crate::serve`] refuses to start.

/// The FastAGI conversation broke. No variant carries what the peer sent: the environment
/// block can hold caller names and numbers.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer closed the connection in the middle of a line")]
    Truncated,
    #[error("a line is longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("the environment block has more than {limit} variables")]
    TooManyVariables { limit: usize },
    #[error("the environment block is larger than {limit} bytes")]
    EnvironmentTooLarge { limit: usize },
    #[error("line {line} of the environment block is not `agi_name: value`")]
    MalformedVariable { line: usize },
    #[error("environment variable {name:?} is sent twice")]
    DuplicateVariable { name: String },
    #[error("timed out waiting for {waiting_for}")]
    Timeout { waiting_for: &'static str },
    #[error("a reply is not an AGI status line")]
    MalformedReply,
    #[error("a multi-line reply has more than {limit} lines")]
    ReplyTooLong { limit: usize },
    #[error("asterisk refused a command with status {code}")]
    Refused { code: u16 },
    #[error("a command could not be encoded")]
    Unencodable,
}

/// A request that cannot be acted on. Shown to the dialplan in `TOLLGATE_REASON`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown parameter {name:?} for the {script} script")]
    UnknownParameter { script: &'static str, name: String },
    #[error("parameter {name:?} is given twice")]
    DuplicateParameter { name: String },
    #[error("more than {limit} parameters")]
    TooManyParameters { limit: usize },
    #[error("a parameter name is not 1 to {limit} letters, digits or '_'")]
    BadParameterName { limit: usize },
    #[error("parameter {name:?} is not valid percent-encoded UTF-8")]
    BadEncoding { name: String },
    #[error("no {what}: pass it as a parameter or an argument")]
    Missing { what: &'static str },
    #[error("{what} is not an IP address or address:port")]
    BadAddress { what: &'static str },
    #[error("{what} is not a whole number of seconds")]
    BadNumber { what: &'static str },
    #[error("{what} is not one of 1, 0, yes, no, true, false")]
    BadFlag { what: &'static str },
}

/// The `[agi]` settings cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("agi.{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

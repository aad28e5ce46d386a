//! The one error type of this crate: what stops [`crate::Notifier::start`]. Every error names
//! the channel (`webhook[0]`, `smtp[1]`, `syslog[0]`) and the setting at fault; none contains
//! a secret, only the path of the file it was to be read from.

use std::path::PathBuf;

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A setting has a value that cannot work.
    #[error("{channel}.{field}: {problem}")]
    Invalid {
        channel: String,
        field: &'static str,
        problem: String,
    },
    /// A secret file (webhook key, SMTP password) could not be read.
    #[error("{channel}.{field}: cannot read {path:?}: {source}")]
    SecretFile {
        channel: String,
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A socket the channel needs could not be opened.
    #[error("{channel}: cannot open a socket for {target:?}: {source}")]
    Socket {
        channel: String,
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// The channel's worker thread could not be started.
    #[error("{channel}: cannot start the worker thread: {source}")]
    Spawn {
        channel: String,
        #[source]
        source: std::io::Error,
    },
}

impl NotifyError {
    pub(crate) fn invalid(channel: &str, field: &'static str, problem: impl Into<String>) -> Self {
        NotifyError::Invalid {
            channel: channel.to_owned(),
            field,
            problem: problem.into(),
        }
    }
}

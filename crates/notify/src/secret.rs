//! Secrets read from files at start (the webhook HMAC key, the SMTP password): held in a type
//! whose `Debug` never shows them, and never put in a message, error or log line.

use std::fmt;
use std::path::Path;

use crate::error::NotifyError;

/// A secret read from a file. `Debug` prints `Secret(<redacted>)`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads a secret file: its whole content less the final line break (files written by
/// `echo` or an editor end with one). An empty secret is refused: it would sign or log in
/// with nothing.
pub(crate) fn read_secret_file(
    channel: &str,
    field: &'static str,
    path: &Path,
) -> Result<Secret, NotifyError> {
    let text = std::fs::read_to_string(path).map_err(|source| NotifyError::SecretFile {
        channel: channel.to_owned(),
        field,
        path: path.to_owned(),
        source,
    })?;
    let secret = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(NotifyError::invalid(
            channel,
            field,
            format!("{path:?} is empty"),
        ));
    }
    Ok(Secret(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_without_its_final_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cret value\n").unwrap();
        let secret = read_secret_file("webhook[0]", "secret_file", &path).unwrap();
        assert_eq!(secret.expose(), "s3cret value");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn refuses_an_empty_or_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = read_secret_file("smtp[0]", "password_file", &empty).unwrap_err();
        assert!(
            err.to_string().starts_with("smtp[0].password_file: "),
            "{err}"
        );
        assert!(err.to_string().contains("is empty"), "{err}");

        let missing = dir.path().join("missing");
        let err = read_secret_file("smtp[0]", "password_file", &missing).unwrap_err();
        assert!(
            matches!(err, NotifyError::SecretFile { .. }),
            "{err:?} should be a SecretFile error"
        );
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

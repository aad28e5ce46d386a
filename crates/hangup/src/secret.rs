//! Secrets read from files when the terminators are built (the AMI secret, the ESL
//! password): held in a type whose `Debug` never shows them, and never put in an error or a
//! log line.

use std::fmt;
use std::path::Path;

use crate::error::HangupError;

/// A secret read from a file. `Debug` prints `Secret(<redacted>)`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
impl Secret {
    pub(crate) fn for_tests(secret: &str) -> Secret {
        Secret(secret.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads a secret file: its whole content less the final line break. An empty secret is
/// refused, and so is one with a line break or another control character inside: it would
/// end the line of the login command early and let the rest be read as a command.
pub(crate) fn read_secret_file(field: &str, path: &Path) -> Result<Secret, HangupError> {
    let text = std::fs::read_to_string(path).map_err(|source| HangupError::SecretFile {
        field: field.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let secret = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(HangupError::invalid(field, format!("{path:?} is empty")));
    }
    if secret.chars().any(char::is_control) {
        return Err(HangupError::invalid(
            field,
            format!("{path:?} holds a line break or another control character"),
        ));
    }
    Ok(Secret(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn reads_the_file_without_its_final_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ami.secret");
        std::fs::write(&path, "s3cret value\n").unwrap();
        let secret = read_secret_file("asterisk_ami.secret_file", &path).unwrap();
        assert_eq!(secret.expose(), "s3cret value");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn refuses_empty_missing_or_multi_line_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = read_secret_file("freeswitch_esl.password_file", &empty).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("hangup.freeswitch_esl.password_file: "),
            "{err}"
        );
        assert!(err.to_string().contains("is empty"), "{err}");

        let two_lines = dir.path().join("two");
        std::fs::write(&two_lines, "pass\nAction: Originate\n").unwrap();
        let err = read_secret_file("asterisk_ami.secret_file", &two_lines).unwrap_err();
        assert!(err.to_string().contains("line break"), "{err}");
        assert!(!err.to_string().contains("pass"), "{err}");

        let missing = dir.path().join("missing");
        let err = read_secret_file("asterisk_ami.secret_file", &missing).unwrap_err();
        assert!(matches!(err, HangupError::SecretFile { .. }), "{err:?}");
    }
}

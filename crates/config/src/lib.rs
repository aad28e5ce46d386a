//! # tollgate-config
//!
//! Reads a policy file (TOML, plus CSV rate decks) and turns it into the core's typed
//! [`Policy`] and the service's [`Settings`]. Parsing and validation are separate steps: a
//! raw serde tree with `deny_unknown_fields` ([`raw`]), then typed values ([`validate`]).
//! Every problem is reported with the file, the line and the key it is about, and all of
//! them are reported at once.
//!
//! The embedded default policy ([`DEFAULT_POLICY`]) is the documented example in
//! `examples/tollgate.toml`.

pub mod monitor;
pub mod rates_csv;
pub mod raw;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use tollgate_core::Policy;

pub use validate::{
    Durability, FirewallBackend, FirewallSettings, GuardSettings, LogSource, Problem, Scope,
    ServerSettings, Settings, TokenSource, TokenSpec,
};

/// The sample policy compiled into the binary.
pub const DEFAULT_POLICY: &str = include_str!("../../../examples/tollgate.toml");

/// Where `DEFAULT_POLICY` is said to come from in messages.
pub const DEFAULT_POLICY_NAME: &str = "<embedded default policy>";

/// One problem or warning, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A policy that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Located>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// A valid policy.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub policy: Policy,
    pub settings: Settings,
    pub warnings: Vec<Located>,
    /// The raw tree, for seeding the store with the file's directory entries.
    pub raw_accounts: Vec<(String, raw::RawAccount)>,
    pub raw_extensions: Vec<(String, raw::RawExtension)>,
}

/// Reads and validates a policy file; relative paths inside are relative to its folder.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Located {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read policy: {e}"),
        }],
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&text, path, &base)
}

/// The embedded default policy; its relative paths (database, token files) are relative
/// to the current directory.
pub fn load_default() -> Result<Loaded, ConfigError> {
    load_str(
        DEFAULT_POLICY,
        Path::new(DEFAULT_POLICY_NAME),
        Path::new(""),
    )
}

/// Validates policy text said to come from `file`.
pub fn load_str(text: &str, file: &Path, base_dir: &Path) -> Result<Loaded, ConfigError> {
    let raw: raw::RawPolicy = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            return Err(ConfigError {
                problems: vec![Located {
                    file: file.to_path_buf(),
                    line: e.span().map(|s| line_of(text, s.start)),
                    key: None,
                    message: e.message().trim().to_string(),
                }],
            })
        }
    };
    let (policy, settings, problems, warnings) = validate::build(&raw, base_dir);
    let doc = toml_edit::Document::parse(text).ok();
    let locate = |p: Problem| -> Located {
        if let Some((other, line)) = p.file {
            return Located {
                file: other,
                line: (line > 0).then_some(line),
                key: (!p.key.is_empty()).then(|| p.key.join(".")),
                message: p.message,
            };
        }
        let line = doc.as_ref().and_then(|d| line_of_key(d, text, &p.key));
        Located {
            file: file.to_path_buf(),
            line,
            key: (!p.key.is_empty()).then(|| p.key.join(".")),
            message: p.message,
        }
    };
    if !problems.is_empty() {
        return Err(ConfigError {
            problems: problems.into_iter().map(locate).collect(),
        });
    }
    Ok(Loaded {
        policy,
        settings,
        warnings: warnings.into_iter().map(locate).collect(),
        raw_accounts: raw.accounts.into_iter().collect(),
        raw_extensions: raw.extensions.into_iter().collect(),
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line of the deepest part of `key` present in the document.
fn line_of_key(doc: &toml_edit::Document<&str>, text: &str, key: &[String]) -> Option<usize> {
    let mut item = doc.as_item();
    let mut span = None;
    for segment in key {
        let next = match segment.parse::<usize>() {
            Ok(i) => item.get(i).or_else(|| item.get(segment.as_str())),
            Err(_) => item.get(segment.as_str()),
        };
        match next {
            Some(found) => {
                item = found;
                if let Some(s) = found.span() {
                    span = Some(s);
                }
                if let Some(table) = found.as_table() {
                    if let Some(s) = table.span() {
                        span = Some(s);
                    }
                }
            }
            None => break,
        }
    }
    span.map(|s| line_of(text, s.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_policy_is_valid() {
        let loaded = load_default().unwrap_or_else(|e| panic!("{e}"));
        assert!(!loaded.policy.extensions.is_empty());
        assert!(!loaded.settings.tokens.is_empty());
        assert!(loaded.settings.server.listen.ip().is_loopback());
        assert_eq!(loaded.settings.server.listen.port(), 8480);
    }

    #[test]
    fn errors_name_file_key_and_line() {
        let text = r#"
[plans.std]
currency = "EUR"
rates = [ { prefix = "+33", price_per_minute = "0.01" } ]

[accounts.acme]
country = "FR"
plan = "std"
limits = { daily = "10.00" }

[extensions.1001]
account = "acme"
allowed_cidrs = ["10.0.0.0/8", "not-a-net"]
limits = { daily = 1.5, monthly = "10" }
"#;
        let err = load_str(text, Path::new("p.toml"), Path::new("")).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains(
                "p.toml:9: accounts.acme.limits.monthly: account acme needs a monthly money limit"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("p.toml:13: extensions.1001.allowed_cidrs: \"not-a-net\""),
            "{shown}"
        );
        assert!(
            shown.contains(
                "p.toml:14: extensions.1001.limits.daily: write money as a quoted decimal"
            ),
            "{shown}"
        );
    }

    #[test]
    fn syntax_and_unknown_keys_name_the_line() {
        let err = load_str(
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            Path::new("x.toml"),
            Path::new(""),
        )
        .unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("x.toml:3: unknown field `lisen`"),
            "{shown}"
        );
        let err = load_str("a = [\n", Path::new("y.toml"), Path::new("")).unwrap_err();
        assert!(err.to_string().starts_with("y.toml:"), "{err}");
    }

    #[test]
    fn unlimited_is_allowed_but_warned() {
        let text = r#"
[[tokens]]
name = "t"
scopes = ["admin"]
env = "X"
[plans.std]
currency = "EUR"
rates = [ { prefix = "+33", price_per_minute = "0.01" } ]
[accounts.acme]
country = "FR"
plan = "std"
limits = { daily = "unlimited", monthly = "100" }
[extensions.1001]
account = "acme"
allowed_cidrs = ["10.0.0.0/8"]
limits = { daily = "5", monthly = "unlimited" }
"#;
        let loaded = load_str(text, Path::new("p.toml"), Path::new("")).unwrap();
        let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("accounts.acme.limits.daily"),
            "{warnings:?}"
        );
    }
}

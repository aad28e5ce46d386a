//! User-defined formats: a regex with named groups, for logs tollgate has no built-in
//! parser for.
//!
//! Groups: `host` (required: the address, optionally bracketed or with `:port`),
//! and optionally `port`, `user`, `ua` (User-Agent), `reason` and `time`. `time` is
//! read with a chrono format string (`%Y-%m-%d %H:%M:%S`, `%b %e %H:%M:%S`, `%s`, ...;
//! a format without a year follows the [`TimeContext`]'s year rule, one without an
//! offset its zone), or as RFC 3339 when no format is given. Every match is a failure
//! unless the format says its matches are successes.

use chrono::format::{parse, Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, Utc};
use tollgate_core::guard_event::{AuthEvent, AuthOutcome};

use super::common::{field, opt_field, parse_host_port, parse_port, EventParts, TimeContext};

/// A compiled custom format. Build it with [`CustomFormat::new`] or from a
/// [`CustomFormatSpec`].
#[derive(Clone, Debug)]
pub struct CustomFormat {
    regex: regex::bytes::Regex,
    time_format: Option<String>,
    outcome: AuthOutcome,
}

/// A custom format as configuration writes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomFormatSpec {
    /// The regex, with at least a `host` group.
    pub regex: String,
    /// chrono format of the `time` group; RFC 3339 when absent.
    #[serde(default)]
    pub time_format: Option<String>,
    /// What a match is: `failure` (default) or `success`.
    #[serde(default)]
    pub outcome: Option<AuthOutcome>,
}

/// Why a custom format was refused.
#[derive(Debug, thiserror::Error)]
pub enum CustomFormatError {
    #[error("invalid regex {pattern:?}: {source}")]
    Regex {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("regex {pattern:?} has no named group \"host\" (write (?P<host>...))")]
    MissingHost { pattern: String },
    #[error("invalid time format {format:?}")]
    TimeFormat { format: String },
}

impl CustomFormat {
    /// Compiles a custom format. `time_format` is a chrono format string for the
    /// `time` group (RFC 3339 when `None`); `outcome` is what every match means.
    pub fn new(
        pattern: &str,
        time_format: Option<&str>,
        outcome: AuthOutcome,
    ) -> Result<Self, CustomFormatError> {
        let regex = regex::bytes::Regex::new(pattern).map_err(|e| CustomFormatError::Regex {
            pattern: pattern.to_owned(),
            source: Box::new(e),
        })?;
        if !regex.capture_names().any(|n| n == Some("host")) {
            return Err(CustomFormatError::MissingHost {
                pattern: pattern.to_owned(),
            });
        }
        if let Some(f) = time_format {
            if f.is_empty() || StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
                return Err(CustomFormatError::TimeFormat {
                    format: f.to_owned(),
                });
            }
        }
        Ok(Self {
            regex,
            time_format: time_format.map(str::to_owned),
            outcome,
        })
    }

    /// Compiles the format a configuration describes.
    pub fn from_spec(spec: &CustomFormatSpec) -> Result<Self, CustomFormatError> {
        Self::new(
            &spec.regex,
            spec.time_format.as_deref(),
            spec.outcome.unwrap_or(AuthOutcome::Failure),
        )
    }

    /// The regex as written.
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    /// The chrono format of the `time` group, if any.
    pub fn time_format(&self) -> Option<&str> {
        self.time_format.as_deref()
    }

    /// What a match means.
    pub fn outcome(&self) -> AuthOutcome {
        self.outcome
    }

    pub(crate) fn parse(&self, line: &[u8], ctx: &TimeContext) -> Option<AuthEvent> {
        let caps = self.regex.captures(line)?;
        let host = caps.name("host")?.as_bytes();
        let (ip, port_in_host) = parse_host_port(host, false)?;
        let port = caps
            .name("port")
            .and_then(|m| parse_port(m.as_bytes()))
            .flatten()
            .or(port_in_host);
        let text = |name: &str| caps.name(name).and_then(|m| opt_field(m.as_bytes()));
        let at = caps
            .name("time")
            .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
            .and_then(|s| self.time(s, ctx));
        let reason = caps.name("reason").map_or_else(
            || {
                match self.outcome {
                    AuthOutcome::Failure => "custom format: failure",
                    AuthOutcome::Success => "custom format: success",
                    AuthOutcome::Challenge => "custom format: challenge",
                }
                .to_owned()
            },
            |m| field(m.as_bytes()),
        );
        let parts = EventParts {
            ip,
            port,
            transport: None,
            user: text("user"),
            user_agent: text("ua"),
            outcome: self.outcome,
            reason,
        };
        Some(parts.into_event(at))
    }

    fn time(&self, s: &str, ctx: &TimeContext) -> Option<DateTime<Utc>> {
        let Some(format) = &self.time_format else {
            return DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc));
        };
        let mut parsed = Parsed::new();
        parse(&mut parsed, s, StrftimeItems::new(format)).ok()?;
        if parsed.timestamp().is_some() {
            return parsed.to_datetime_with_timezone(&Utc).ok();
        }
        let offset = parsed.offset().and_then(FixedOffset::east_opt);
        let has_year = parsed.year().is_some();
        ctx.resolve(
            has_year,
            |y| {
                let mut p = parsed.clone();
                if !has_year {
                    p.set_year(i64::from(y)).ok()?;
                }
                p.to_naive_datetime_with_offset(0).ok()
            },
            offset,
        )
    }
}

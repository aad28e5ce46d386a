//! The channel settings as an operator writes them (embedded in the policy file under
//! `[alerts]`): plain serde structs with `deny_unknown_fields` and defaults. They are checked,
//! and their secret files read, by [`crate::Notifier::start`]; nothing here does I/O.
//!
//! ```toml
//! log = true                      # the tracing log channel (default true)
//! log_min_severity = "warning"
//!
//! [[webhook]]
//! url = "https://hooks.example.com/tollgate"
//! secret_file = "/etc/tollgate/webhook.key"
//!
//! [[smtp]]
//! host = "mail.example.com"
//! from = "tollgate@example.com"
//! to = ["noc@example.com"]
//! min_severity = "critical"
//!
//! [[syslog]]
//! target = "udp:192.0.2.10:514"
//! facility = "local3"
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::AlertSeverity;

/// Every delivery channel. The default is the log channel alone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Emit every alert as a `tracing` event (warn for warning, error for critical).
    #[serde(default = "default_true")]
    pub log: bool,
    /// The least severity the log channel reports.
    #[serde(default)]
    pub log_min_severity: AlertSeverity,
    #[serde(default)]
    pub webhook: Vec<WebhookChannel>,
    #[serde(default)]
    pub smtp: Vec<SmtpChannel>,
    #[serde(default)]
    pub syslog: Vec<SyslogChannel>,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            log: true,
            log_min_severity: AlertSeverity::Warning,
            webhook: Vec::new(),
            smtp: Vec::new(),
            syslog: Vec::new(),
        }
    }
}

/// An HTTP(S) endpoint that receives each alert as a JSON POST.
///
/// `Debug` shows the URL without its path and query (chat-service webhook URLs carry their
/// token there) and never the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// `http://` or `https://` URL.
    pub url: String,
    /// A file holding the HMAC-SHA256 key; when set, each request carries
    /// `X-Tollgate-Signature: sha256=<hex of HMAC over "<timestamp>.<body>">`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Seconds one attempt may take, connection included (1 to 300).
    #[serde(default = "default_webhook_timeout_s")]
    pub timeout_s: u64,
    /// Attempts before giving up on one notification (1 to 20; 1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub min_severity: AlertSeverity,
}

impl WebhookChannel {
    /// A webhook to `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookChannel {
            url: url.into(),
            secret_file: None,
            timeout_s: default_webhook_timeout_s(),
            max_attempts: default_max_attempts(),
            min_severity: AlertSeverity::Warning,
        }
    }
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("url", &redact_url(&self.url))
            .field("secret_file", &self.secret_file)
            .field("timeout_s", &self.timeout_s)
            .field("max_attempts", &self.max_attempts)
            .field("min_severity", &self.min_severity)
            .finish()
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or network. Refused with a username,
    /// which would send the password in clear.
    None,
    /// STARTTLS, required (the default): the connection is upgraded before anything is sent,
    /// and a server that does not offer STARTTLS is a delivery failure, never a downgrade.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// An e-mail relay and the people to write to.
///
/// `Debug` shows the password file's path, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpChannel {
    pub host: String,
    /// Default: 25 for `tls = "none"` and `"starttls"`, 465 for `"tls"`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// Log in with this user name (needs `password_file`).
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the SMTP password (needs `username`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender: `tollgate@example.com` or `Tollgate <tollgate@example.com>`.
    pub from: String,
    /// The recipients, at least one.
    pub to: Vec<String>,
    /// Seconds one network operation may take (1 to 300).
    #[serde(default = "default_smtp_timeout_s")]
    pub timeout_s: u64,
    /// Attempts before giving up on one notification (1 to 20; 1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub min_severity: AlertSeverity,
}

impl SmtpChannel {
    /// Mail through `host` from `from` to `to`, every other setting at its default.
    pub fn new(host: impl Into<String>, from: impl Into<String>, to: Vec<String>) -> Self {
        SmtpChannel {
            host: host.into(),
            port: None,
            tls: SmtpTls::default(),
            username: None,
            password_file: None,
            from: from.into(),
            to,
            timeout_s: default_smtp_timeout_s(),
            max_attempts: default_max_attempts(),
            min_severity: AlertSeverity::Warning,
        }
    }

    /// The port actually used.
    pub fn effective_port(&self) -> u16 {
        match (self.port, self.tls) {
            (Some(port), _) => port,
            (None, SmtpTls::Tls) => 465,
            (None, SmtpTls::None | SmtpTls::Starttls) => 25,
        }
    }
}

/// The syslog facility alerts are filed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogFacility {
    User,
    /// The default: tollgate is a daemon.
    #[default]
    Daemon,
    Auth,
    Authpriv,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl SyslogFacility {
    /// The facility's number in the PRI (RFC 5424 section 6.2.1).
    pub fn code(self) -> u8 {
        match self {
            SyslogFacility::User => 1,
            SyslogFacility::Daemon => 3,
            SyslogFacility::Auth => 4,
            SyslogFacility::Authpriv => 10,
            SyslogFacility::Local0 => 16,
            SyslogFacility::Local1 => 17,
            SyslogFacility::Local2 => 18,
            SyslogFacility::Local3 => 19,
            SyslogFacility::Local4 => 20,
            SyslogFacility::Local5 => 21,
            SyslogFacility::Local6 => 22,
            SyslogFacility::Local7 => 23,
        }
    }
}

/// A syslog receiver, sent RFC 5424 messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogChannel {
    /// `unix:/dev/log` (the default) or `udp:HOST:PORT` (`udp:[2001:db8::1]:514` for IPv6).
    #[serde(default = "default_syslog_target")]
    pub target: String,
    #[serde(default)]
    pub facility: SyslogFacility,
    /// The APP-NAME field: 1 to 48 printable ASCII characters.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    #[serde(default)]
    pub min_severity: AlertSeverity,
}

impl SyslogChannel {
    /// Syslog to `target` with every other setting at its default.
    pub fn new(target: impl Into<String>) -> Self {
        SyslogChannel {
            target: target.into(),
            facility: SyslogFacility::default(),
            app_name: default_app_name(),
            min_severity: AlertSeverity::Warning,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_webhook_timeout_s() -> u64 {
    5
}

fn default_smtp_timeout_s() -> u64 {
    10
}

fn default_max_attempts() -> u32 {
    6
}

fn default_syslog_target() -> String {
    "unix:/dev/log".to_owned()
}

fn default_app_name() -> String {
    "tollgate".to_owned()
}

/// A URL fit for logs: scheme, host and port, with the path and query (where chat services
/// put their tokens) and any user info replaced by `…`.
pub(crate) fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("");
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if parsed.path() == "/" && parsed.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!("{}://{host}{port}{rest}", parsed.scheme())
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_config_is_the_log_channel_alone() {
        let config: ChannelsConfig = toml::from_str("").unwrap();
        assert_eq!(config, ChannelsConfig::default());
        assert!(config.log);
    }

    #[test]
    fn defaults_fill_what_is_not_written() {
        let config: ChannelsConfig = toml::from_str(
            r#"
            log = false
            [[webhook]]
            url = "https://hooks.example.com/x"
            [[smtp]]
            host = "mail.example.com"
            from = "tollgate@example.com"
            to = ["noc@example.com"]
            tls = "tls"
            [[syslog]]
            "#,
        )
        .unwrap();
        assert!(!config.log);
        assert_eq!(
            config.webhook,
            vec![WebhookChannel::new("https://hooks.example.com/x")]
        );
        let smtp = &config.smtp[0];
        assert_eq!(smtp.tls, SmtpTls::Tls);
        assert_eq!(smtp.effective_port(), 465);
        assert_eq!(smtp.timeout_s, 10);
        assert_eq!(smtp.max_attempts, 6);
        assert_eq!(config.syslog, vec![SyslogChannel::new("unix:/dev/log")]);
        assert_eq!(config.syslog[0].facility, SyslogFacility::Daemon);
        assert_eq!(
            SmtpChannel::new("h", "f@example.com", vec![]).effective_port(),
            25
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err =
            toml::from_str::<ChannelsConfig>("[[webhook]]\nurl = \"http://x\"\nsecret = \"k\"")
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `secret`"), "{err}");
    }

    #[test]
    fn debug_of_a_webhook_hides_the_url_path() {
        let channel = WebhookChannel::new(
            "https://hooks.example.com/services/T000/B000/XXXXSECRET?token=abc",
        );
        let debug = format!("{channel:?}");
        assert!(!debug.contains("XXXXSECRET"), "{debug}");
        assert!(!debug.contains("abc"), "{debug}");
        assert!(debug.contains("https://hooks.example.com/…"), "{debug}");
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:8080/"),
            "http://127.0.0.1:8080"
        );
    }
}

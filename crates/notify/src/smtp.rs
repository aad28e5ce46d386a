//! The e-mail channel: each alert as a plain-text message through an SMTP relay with
//! `lettre`'s blocking client (one connection per message, TLS by rustls), on the channel's
//! worker thread.
//!
//! Subject: `[tollgate] CRITICAL opened: extension 1001 — monitor.rules.satellite_burst`.
//! Body: the summary, every field, and the figures as pretty-printed JSON.
//!
//! SMTP 4xx answers and connection, network and TLS errors are retried; 5xx answers (and
//! errors of the client itself, such as no usable login mechanism) are permanent. The
//! password is read from its file at start and never appears in a message or log line.

use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};

use crate::config::{SmtpChannel, SmtpTls};
use crate::deliver::{check_max_attempts, check_timeout, AttemptError, Deliver};
use crate::dispatch::PreparedChannel;
use crate::error::NotifyError;
use crate::model::{AlertSeverity, Notification};
use crate::secret::read_secret_file;
use crate::text::{local_hostname, single_line};

pub(crate) fn prepare(
    channel: &str,
    settings: &SmtpChannel,
) -> Result<PreparedChannel, NotifyError> {
    let host = settings.host.as_str();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NotifyError::invalid(
            channel,
            "host",
            format!("{host:?} is not a host name or address"),
        ));
    }
    let port = settings.effective_port();
    if port == 0 {
        return Err(NotifyError::invalid(
            channel,
            "port",
            "port 0 cannot be used",
        ));
    }
    let from = Mailbox::from_str(&settings.from).map_err(|e| {
        NotifyError::invalid(
            channel,
            "from",
            format!("{:?} is not an e-mail address: {e}", settings.from),
        )
    })?;
    if settings.to.is_empty() {
        return Err(NotifyError::invalid(
            channel,
            "to",
            "no recipient: list at least one address",
        ));
    }
    let to = settings
        .to
        .iter()
        .map(|address| {
            Mailbox::from_str(address).map_err(|e| {
                NotifyError::invalid(
                    channel,
                    "to",
                    format!("{address:?} is not an e-mail address: {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_timeout(channel, settings.timeout_s)?;
    check_max_attempts(channel, settings.max_attempts)?;

    let credentials = match (&settings.username, &settings.password_file) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(NotifyError::invalid(
                channel,
                "password_file",
                "a username needs a password_file",
            ))
        }
        (None, Some(_)) => {
            return Err(NotifyError::invalid(
                channel,
                "username",
                "a password_file needs a username",
            ))
        }
        (Some(username), Some(path)) => {
            if settings.tls == SmtpTls::None {
                return Err(NotifyError::invalid(
                    channel,
                    "tls",
                    "\"none\" would send the password in clear: use \"starttls\" or \"tls\"",
                ));
            }
            let password = read_secret_file(channel, "password_file", path)?;
            Some(Credentials::new(
                username.clone(),
                password.expose().to_owned(),
            ))
        }
    };

    let tls_parameters = || {
        TlsParameters::new(host.to_owned()).map_err(|e| {
            NotifyError::invalid(
                channel,
                "tls",
                format!("cannot set up TLS for {host:?}: {e}"),
            )
        })
    };
    let tls = match settings.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_parameters()?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
    };
    let hello = local_hostname().map(ClientId::Domain).unwrap_or_default();
    let mut builder = SmtpTransport::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(settings.timeout_s)))
        .hello_name(hello);
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    Ok(PreparedChannel {
        name: channel.to_owned(),
        target: format!("{host}:{port}"),
        min_severity: settings.min_severity,
        max_attempts: settings.max_attempts,
        deliver: Box::new(SmtpSender {
            transport: builder.build(),
            from,
            to,
        }),
    })
}

struct SmtpSender {
    transport: SmtpTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Deliver for SmtpSender {
    fn attempt(&mut self, notification: &Notification) -> Result<(), AttemptError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(notification))
            .message_id(None)
            .header(ContentType::TEXT_PLAIN);
        for recipient in &self.to {
            builder = builder.to(recipient.clone());
        }
        let message = builder
            .body(body(notification))
            .map_err(|e| AttemptError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(&message) {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() || e.is_client() => {
                Err(AttemptError::Permanent(e.to_string()))
            }
            Err(e) => Err(AttemptError::Transient(e.to_string())),
        }
    }
}

/// `[tollgate] CRITICAL opened: extension 1001 — monitor.rules.satellite_burst`, on one line.
pub(crate) fn subject(n: &Notification) -> String {
    let severity = match n.severity {
        AlertSeverity::Warning => "WARNING",
        AlertSeverity::Critical => "CRITICAL",
    };
    single_line(&format!(
        "[tollgate] {severity} {}: {} — {}",
        n.event, n.subject, n.rule
    ))
}

/// The plain-text body: the summary first, then every field, then the figures.
pub(crate) fn body(n: &Notification) -> String {
    let figures =
        serde_json::to_string_pretty(&n.figures).unwrap_or_else(|_| n.figures.to_string());
    let action = n.action.as_deref().unwrap_or("none");
    format!(
        "{subject}: {summary}\n\
         \n\
         alert:     {alert_id}\n\
         event:     {event}\n\
         severity:  {severity}\n\
         rule:      {rule}\n\
         subject:   {subject}\n\
         summary:   {summary}\n\
         action:    {action}\n\
         at:        {at}\n\
         \n\
         figures:\n\
         {figures}\n\
         \n\
         -- \n\
         tollgate\n",
        subject = single_line(&n.subject),
        summary = single_line(&n.summary),
        alert_id = single_line(&n.alert_id),
        event = n.event,
        severity = n.severity,
        rule = single_line(&n.rule),
        action = single_line(action),
        at = n.at.to_rfc3339(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertEvent;

    fn critical() -> Notification {
        Notification {
            alert_id: "a-000123".into(),
            event: AlertEvent::Opened,
            severity: AlertSeverity::Critical,
            rule: "monitor.rules.satellite_burst".into(),
            subject: "extension 1001".into(),
            summary: "12 calls to high_risk in 10 min (critical at 10)".into(),
            figures: serde_json::json!({"calls": 12, "critical_at": 10, "window_s": 600}),
            action: Some("suspended extension 1001 for 1h".into()),
            at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn subject_names_severity_event_subject_and_rule_on_one_line() {
        assert_eq!(
            subject(&critical()),
            "[tollgate] CRITICAL opened: extension 1001 — monitor.rules.satellite_burst"
        );
        let mut hostile = critical();
        hostile.subject = "x\r\nBcc: victim@example.com".into();
        assert!(!subject(&hostile).contains('\n'));
    }

    #[test]
    fn body_has_every_field_and_the_figures_pretty_printed() {
        let text = body(&critical());
        for expected in [
            "extension 1001: 12 calls to high_risk in 10 min (critical at 10)\n",
            "alert:     a-000123\n",
            "severity:  critical\n",
            "action:    suspended extension 1001 for 1h\n",
            "at:        2023-11-14T22:13:20+00:00\n",
            "figures:\n{\n  \"calls\": 12,\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
    }

    fn base() -> SmtpChannel {
        SmtpChannel::new(
            "127.0.0.1",
            "tollgate@example.com",
            vec!["noc@example.com".into()],
        )
    }

    fn error(settings: SmtpChannel) -> String {
        prepare("smtp[0]", &settings)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_channel_and_field() {
        assert!(prepare("smtp[0]", &base()).is_ok());

        let mut empty = base();
        empty.to.clear();
        assert_eq!(
            error(empty),
            "smtp[0].to: no recipient: list at least one address"
        );
        let mut bad_to = base();
        bad_to.to.push("not an address".into());
        assert!(
            error(bad_to).starts_with("smtp[0].to: \"not an address\" is not an e-mail address")
        );
        let mut bad_from = base();
        bad_from.from = "tollgate".into();
        assert!(error(bad_from).starts_with("smtp[0].from: \"tollgate\" is not an e-mail address"));
        let mut no_password = base();
        no_password.username = Some("alerts".into());
        assert_eq!(
            error(no_password),
            "smtp[0].password_file: a username needs a password_file"
        );
        let mut missing = base();
        missing.username = Some("alerts".into());
        missing.password_file = Some("/nonexistent/tollgate/smtp.password".into());
        assert!(error(missing).starts_with(
            "smtp[0].password_file: cannot read \"/nonexistent/tollgate/smtp.password\""
        ));
    }

    #[test]
    fn a_password_is_never_sent_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "hunter2-very-secret\n").unwrap();
        let mut clear = base();
        clear.tls = SmtpTls::None;
        clear.username = Some("alerts".into());
        clear.password_file = Some(path);
        let message = error(clear);
        assert!(message.starts_with("smtp[0].tls: \"none\" would send the password in clear"));
        assert!(!message.contains("hunter2"));
    }
}

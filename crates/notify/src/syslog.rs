//! The syslog channel: each alert as one RFC 5424 message over a Unix datagram socket
//! (`unix:/dev/log`) or UDP (`udp:HOST:PORT`, RFC 5426).
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [tollgate@32473 alert_id="…" …] BOM MSG
//! ```
//!
//! PRI is the facility times 8 plus the severity: 2 (crit) for a critical alert, 4 (warning)
//! for a warning one, on every event of the alert. MSGID is `alert.<event>`. The structured
//! data carries alert_id, event, severity, rule, subject and figures (compact JSON); its
//! SD-ID uses enterprise number 32473, the one RFC 5612 reserves for documentation, until
//! tollgate has its own. Control characters in any value become spaces and `"`, `\` and `]`
//! in parameter values are escaped, so a hostile subject cannot end the structured data or
//! start a second record. Messages are capped at [`MAX_MESSAGE_BYTES`] (the MSG is cut).
//!
//! Note: some local daemons on `/dev/log` (journald, rsyslog's default socket parser) expect
//! the older BSD format and keep the RFC 5424 header as message text; a UDP receiver or
//! rsyslog's RFC 5424 parser reads the fields.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use crate::config::{SyslogChannel, SyslogFacility};
use crate::deliver::{AttemptError, Deliver};
use crate::dispatch::PreparedChannel;
use crate::error::NotifyError;
use crate::model::{AlertSeverity, Notification};
use crate::text::{local_hostname, single_line, truncate_bytes};

/// The largest message sent: far above RFC 5426's 2048-octet minimum, below rsyslog's
/// default 8 KiB.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The SD-ID of the structured data element.
pub const SD_ID: &str = "tollgate@32473";
/// Attempts per message: a local socket can be briefly missing while the daemon restarts.
const MAX_ATTEMPTS: u32 = 3;
/// The longest value of one structured-data parameter, before escaping.
const MAX_PARAM_BYTES: usize = 256;
/// The longest figures parameter, before escaping.
const MAX_FIGURES_BYTES: usize = 1024;
const BOM: &str = "\u{feff}";

/// Where the messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyslogTarget {
    Unix(PathBuf),
    Udp(SocketAddr),
}

/// Parses `unix:/ABSOLUTE/PATH` or `udp:HOST:PORT` (the host resolved now, once).
pub(crate) fn parse_target(channel: &str, raw: &str) -> Result<SyslogTarget, NotifyError> {
    if let Some(path) = raw.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(NotifyError::invalid(
                channel,
                "target",
                format!("{raw:?}: the socket path must be absolute"),
            ));
        }
        return Ok(SyslogTarget::Unix(PathBuf::from(path)));
    }
    if let Some(address) = raw.strip_prefix("udp:") {
        let resolved = address
            .to_socket_addrs()
            .map_err(|e| {
                NotifyError::invalid(
                    channel,
                    "target",
                    format!("{raw:?} is not a reachable HOST:PORT: {e}"),
                )
            })?
            .next()
            .ok_or_else(|| {
                NotifyError::invalid(channel, "target", format!("{raw:?} resolves to nothing"))
            })?;
        if resolved.port() == 0 {
            return Err(NotifyError::invalid(
                channel,
                "target",
                format!("{raw:?}: port 0 cannot be used"),
            ));
        }
        return Ok(SyslogTarget::Udp(resolved));
    }
    Err(NotifyError::invalid(
        channel,
        "target",
        format!("{raw:?} is neither \"unix:/PATH\" nor \"udp:HOST:PORT\""),
    ))
}

pub(crate) fn prepare(
    channel: &str,
    settings: &SyslogChannel,
) -> Result<PreparedChannel, NotifyError> {
    let app_name = settings.app_name.as_str();
    if app_name.is_empty() || app_name.len() > 48 || !app_name.bytes().all(is_print_us_ascii) {
        return Err(NotifyError::invalid(
            channel,
            "app_name",
            format!("{app_name:?} is not 1 to 48 printable ASCII characters without spaces"),
        ));
    }
    let target = parse_target(channel, &settings.target)?;
    let socket_error = |source| NotifyError::Socket {
        channel: channel.to_owned(),
        target: settings.target.clone(),
        source,
    };
    let socket = match target {
        SyslogTarget::Unix(path) => {
            Socket::Unix(UnixDatagram::unbound().map_err(socket_error)?, path)
        }
        SyslogTarget::Udp(address) => {
            let local: SocketAddr = if address.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            Socket::Udp(UdpSocket::bind(local).map_err(socket_error)?, address)
        }
    };
    let header = HeaderFields {
        facility: settings.facility,
        hostname: header_field(local_hostname().as_deref().unwrap_or("-"), 255),
        app_name: app_name.to_owned(),
        procid: std::process::id().to_string(),
    };
    Ok(PreparedChannel {
        name: channel.to_owned(),
        target: settings.target.clone(),
        min_severity: settings.min_severity,
        max_attempts: MAX_ATTEMPTS,
        deliver: Box::new(SyslogSender { socket, header }),
    })
}

enum Socket {
    Unix(UnixDatagram, PathBuf),
    Udp(UdpSocket, SocketAddr),
}

/// The header fields that do not change between messages.
#[derive(Debug, Clone)]
pub(crate) struct HeaderFields {
    pub(crate) facility: SyslogFacility,
    pub(crate) hostname: String,
    pub(crate) app_name: String,
    pub(crate) procid: String,
}

struct SyslogSender {
    socket: Socket,
    header: HeaderFields,
}

impl Deliver for SyslogSender {
    fn attempt(&mut self, notification: &Notification) -> Result<(), AttemptError> {
        let message = format_message(&self.header, notification);
        let sent = match &self.socket {
            Socket::Unix(socket, path) => socket.send_to(message.as_bytes(), path),
            Socket::Udp(socket, address) => socket.send_to(message.as_bytes(), address),
        };
        match sent {
            Ok(_) => Ok(()),
            Err(e) => Err(AttemptError::Transient(format!("cannot send: {e}"))),
        }
    }
}

/// The RFC 5424 message for `n`, at most [`MAX_MESSAGE_BYTES`] bytes.
pub(crate) fn format_message(header: &HeaderFields, n: &Notification) -> String {
    let severity = match n.severity {
        AlertSeverity::Critical => 2,
        AlertSeverity::Warning => 4,
    };
    let pri = u16::from(header.facility.code()) * 8 + severity;
    let timestamp = n.at.format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let figures = n.figures.to_string();
    let structured_data = format!(
        "[{SD_ID} alert_id=\"{}\" event=\"{}\" severity=\"{}\" rule=\"{}\" subject=\"{}\" figures=\"{}\"]",
        sd_param_value(&n.alert_id, MAX_PARAM_BYTES),
        n.event,
        n.severity,
        sd_param_value(&n.rule, MAX_PARAM_BYTES),
        sd_param_value(&n.subject, MAX_PARAM_BYTES),
        sd_param_value(&figures, MAX_FIGURES_BYTES),
    );
    let head = format!(
        "<{pri}>1 {timestamp} {} {} {} alert.{} {structured_data} {BOM}",
        header.hostname, header.app_name, header.procid, n.event
    );
    let mut text = format!(
        "{} alert {} {}: {}: {}",
        n.severity, n.alert_id, n.event, n.subject, n.summary
    );
    if let Some(action) = &n.action {
        text.push_str(" (action: ");
        text.push_str(action);
        text.push(')');
    }
    let text = single_line(&text);
    let room = MAX_MESSAGE_BYTES.saturating_sub(head.len());
    format!("{head}{}", truncate_bytes(&text, room))
}

/// A structured-data parameter value: control characters made spaces, cut to `max_bytes`,
/// then `"`, `\` and `]` escaped with a backslash (RFC 5424 section 6.3.3).
pub(crate) fn sd_param_value(raw: &str, max_bytes: usize) -> String {
    let clean = single_line(raw);
    let cut = truncate_bytes(&clean, max_bytes);
    let mut escaped = String::with_capacity(cut.len() + 8);
    for c in cut.chars() {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// PRINTUSASCII of RFC 5424: `!` to `~`.
fn is_print_us_ascii(byte: u8) -> bool {
    (33..=126).contains(&byte)
}

/// A header field (HOSTNAME): printable ASCII only, at most `max` bytes, `-` when empty.
fn header_field(raw: &str, max: usize) -> String {
    let field: String = raw
        .bytes()
        .filter(|b| is_print_us_ascii(*b))
        .take(max)
        .map(char::from)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertEvent;

    #[test]
    fn sd_values_escape_quote_backslash_and_bracket_and_lose_control_characters() {
        assert_eq!(
            sd_param_value("evil\"] \\ x\r\n<13>1 y", 256),
            "evil\\\"\\] \\\\ x  <13>1 y"
        );
        // Cutting happens before escaping, so an escape is never split.
        assert_eq!(sd_param_value("ab\"cd", 3), "ab\\\"");
    }

    #[test]
    fn targets_parse_or_name_the_problem() {
        assert_eq!(
            parse_target("syslog[0]", "unix:/dev/log").unwrap(),
            SyslogTarget::Unix("/dev/log".into())
        );
        assert_eq!(
            parse_target("syslog[0]", "udp:127.0.0.1:514").unwrap(),
            SyslogTarget::Udp(([127, 0, 0, 1], 514).into())
        );
        assert_eq!(
            parse_target("syslog[0]", "udp:[::1]:5514").unwrap(),
            SyslogTarget::Udp("[::1]:5514".parse().unwrap())
        );
        for (raw, expected) in [
            ("tcp:127.0.0.1:514", "is neither"),
            ("unix:dev/log", "must be absolute"),
            ("udp:127.0.0.1", "is not a reachable HOST:PORT"),
            ("udp:127.0.0.1:0", "port 0"),
        ] {
            let message = parse_target("syslog[1]", raw).unwrap_err().to_string();
            assert!(message.starts_with("syslog[1].target: "), "{message}");
            assert!(message.contains(expected), "{raw}: {message}");
        }
    }

    #[test]
    fn app_name_must_be_a_syslog_header_field() {
        let mut settings = SyslogChannel::new("udp:127.0.0.1:514");
        settings.app_name = "toll gate".into();
        let message = prepare("syslog[0]", &settings).err().unwrap().to_string();
        assert!(
            message.starts_with("syslog[0].app_name: \"toll gate\""),
            "{message}"
        );
    }

    #[test]
    fn long_messages_are_cut_to_the_limit_on_a_character_boundary() {
        let header = HeaderFields {
            facility: SyslogFacility::Local0,
            hostname: "pbx1".into(),
            app_name: "tollgate".into(),
            procid: "42".into(),
        };
        let n = Notification {
            alert_id: "a-1".into(),
            event: AlertEvent::Updated,
            severity: AlertSeverity::Warning,
            rule: "r".repeat(10_000),
            subject: "s".into(),
            summary: "é".repeat(10_000),
            figures: serde_json::json!({"big": "x".repeat(10_000)}),
            action: None,
            at: chrono::DateTime::from_timestamp(1_700_000_000, 5_000).unwrap(),
        };
        let message = format_message(&header, &n);
        assert!(message.len() <= MAX_MESSAGE_BYTES);
        assert!(message.len() >= MAX_MESSAGE_BYTES - 1);
        assert!(message.starts_with(
            "<132>1 2023-11-14T22:13:20.000005Z pbx1 tollgate 42 alert.updated [tollgate@32473 "
        ));
    }
}

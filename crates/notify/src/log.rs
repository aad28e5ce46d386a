//! The log channel: every alert as one `tracing` event under the target `tollgate::alert`
//! (warn for a warning alert, error for a critical one) with its fields structured, so it
//! reaches wherever the process's logs go. Always available, nothing to configure but the
//! least severity.

use crate::deliver::{AttemptError, Deliver};
use crate::dispatch::PreparedChannel;
use crate::model::{AlertSeverity, Notification};
use crate::text::single_line;

pub(crate) fn prepare(min_severity: AlertSeverity) -> PreparedChannel {
    PreparedChannel {
        name: "log".to_owned(),
        target: "tracing".to_owned(),
        min_severity,
        max_attempts: 1,
        deliver: Box::new(LogSender),
    }
}

struct LogSender;

impl Deliver for LogSender {
    fn attempt(&mut self, n: &Notification) -> Result<(), AttemptError> {
        // Free text is logged with `?` (quoted and escaped) so a hostile subject cannot
        // forge a log line; the message itself is reduced to one line.
        let figures = n.figures.to_string();
        let action = n.action.as_deref().unwrap_or("");
        let at = n.at.to_rfc3339();
        let message = single_line(&n.summary);
        match n.severity {
            AlertSeverity::Critical => tracing::error!(
                target: "tollgate::alert",
                alert_id = ?n.alert_id,
                event = n.event.as_str(),
                severity = n.severity.as_str(),
                rule = ?n.rule,
                subject = ?n.subject,
                figures = figures.as_str(),
                action = ?action,
                at = at.as_str(),
                "alert {}: {}",
                n.event,
                message
            ),
            AlertSeverity::Warning => tracing::warn!(
                target: "tollgate::alert",
                alert_id = ?n.alert_id,
                event = n.event.as_str(),
                severity = n.severity.as_str(),
                rule = ?n.rule,
                subject = ?n.subject,
                figures = figures.as_str(),
                action = ?action,
                at = at.as_str(),
                "alert {}: {}",
                n.event,
                message
            ),
        }
        Ok(())
    }
}

//! What a notification says: the alert event, its severity, the rule and figures behind it,
//! and the one JSON payload every machine-facing channel sends (`{"version":1, ...}`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version of the JSON payload; a receiver should refuse a version it does not know.
pub const PAYLOAD_VERSION: u32 = 1;

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    Opened,
    Updated,
    Escalated,
    Closed,
    Acknowledged,
}

impl AlertEvent {
    /// The snake_case name used in the payload, subjects and syslog MSGIDs.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::Opened => "opened",
            AlertEvent::Updated => "updated",
            AlertEvent::Escalated => "escalated",
            AlertEvent::Closed => "closed",
            AlertEvent::Acknowledged => "acknowledged",
        }
    }
}

impl std::fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad an alert is. Ordered: `Warning < Critical`, so a channel's `min_severity` is a
/// plain comparison.
///
/// Also the type of every channel's `min_severity` setting (`"warning"` or `"critical"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    #[default]
    Warning,
    Critical,
}

impl AlertSeverity {
    /// The snake_case name used in the payload and the syslog structured data.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for AlertSeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert event to deliver to people.
///
/// `severity` is the alert's severity, also on `Closed` and `Acknowledged` events: a channel
/// that was told a critical alert opened is also told it closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// The alert's stable id, e.g. `a-000123`.
    pub alert_id: String,
    pub event: AlertEvent,
    pub severity: AlertSeverity,
    /// The rule that raised the alert, as a policy path: `monitor.rules.satellite_burst`.
    pub rule: String,
    /// Whom the alert is about: `extension 1001`.
    pub subject: String,
    /// One human line: `12 calls to high_risk in 10 min (critical at 10)`.
    pub summary: String,
    /// The figures behind the alert: metric values, thresholds, window.
    pub figures: serde_json::Value,
    /// What tollgate did or suggests: `suspended extension 1001 for 1h`.
    pub action: Option<String>,
    /// When the event happened.
    pub at: DateTime<Utc>,
}

/// The payload's shape: the version first, then every field of the notification.
#[derive(Serialize)]
struct Payload<'a> {
    version: u32,
    #[serde(flatten)]
    notification: &'a Notification,
}

impl Notification {
    /// The JSON payload sent by the webhook channel: `{"version":1, "alert_id":..., ...}`.
    pub fn payload_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Payload {
            version: PAYLOAD_VERSION,
            notification: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_orders_warning_below_critical() {
        assert!(AlertSeverity::Warning < AlertSeverity::Critical);
        assert_eq!(AlertSeverity::default(), AlertSeverity::Warning);
    }

    #[test]
    fn payload_has_the_version_and_every_field_in_snake_case() {
        let notification = Notification {
            alert_id: "a-000123".into(),
            event: AlertEvent::Acknowledged,
            severity: AlertSeverity::Critical,
            rule: "monitor.rules.satellite_burst".into(),
            subject: "extension 1001".into(),
            summary: "12 calls".into(),
            figures: serde_json::json!({"calls": 12}),
            action: None,
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let value: serde_json::Value =
            serde_json::from_str(&notification.payload_json().unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "version": 1,
                "alert_id": "a-000123",
                "event": "acknowledged",
                "severity": "critical",
                "rule": "monitor.rules.satellite_burst",
                "subject": "extension 1001",
                "summary": "12 calls",
                "figures": {"calls": 12},
                "action": null,
                "at": "2023-11-14T22:13:20Z",
            })
        );
    }
}

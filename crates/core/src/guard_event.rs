//! What the intrusion guard consumes: registration (authentication) attempts and per-IP
//! SIP request counts, from the HTTP events API or from a PBX log line.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

/// Whether a registration or authentication attempt succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutcome {
    Success,
    Failure,
    /// The PBX asked for credentials (a digest challenge). Not a failure: every
    /// legitimate registration starts with one. FreeSWITCH logs them; fail2ban counts
    /// them as failures and so bans busy offices, tollgate records them but its jails
    /// do not count them.
    Challenge,
}

/// One registration or authentication attempt.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthEvent {
    /// When it happened; `None` when the source did not say (a log line without a
    /// parsable time): the receiver uses its clock.
    pub at: Option<DateTime<Utc>>,
    pub ip: IpAddr,
    pub port: Option<u16>,
    /// "udp", "tcp", "tls", "ws", "wss" when known.
    pub transport: Option<String>,
    /// The extension or user name tried.
    pub user: Option<String>,
    pub user_agent: Option<String>,
    pub outcome: AuthOutcome,
    /// Why it failed, as the source said it ("wrong password", "No matching endpoint
    /// found", ...), short.
    pub reason: String,
}
